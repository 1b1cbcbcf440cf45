//! The built-in voice: `conds.pt` as `Conditionals.save` writes it
//! (chatterbox `src/chatterbox/tts_turbo.py`): a `torch.save` of
//! `{"t3": T3Cond.__dict__, "gen": ref_dict}`.
//!
//! * `gen` (S3Gen): `prompt_token` `[1, P]` int64, `prompt_token_len`,
//!   `prompt_feat` `[1, 2P, 80]` (24 kHz mel), `prompt_feat_len` (None),
//!   `embedding` `[1, 192]` (CAMPPlus x-vector).
//! * `t3`: `speaker_emb` `[1, 256]`, `cond_prompt_speech_tokens` `[1, ≤375]`,
//!   and optional entries (`clap_emb`, `cond_prompt_speech_emb`, `emotion_adv`)
//!   that are None or plain numbers in the Turbo files.
//!
//! Read with candle's pickle reader, which takes one nested dict by key and
//! skips values that are not tensors.

use std::path::{Path, PathBuf};

use candle_core::pickle::PthTensors;
use candle_core::{DType, Device, Tensor};

use super::flow::VoiceConds;
use super::S3GenError;

/// T3's half of the built-in voice.
#[derive(Debug, Clone)]
pub struct T3Conds {
    /// Voice-encoder embedding `[1, 256]`.
    pub speaker_emb: Tensor,
    /// Speech tokens of the reference clip, when present.
    pub cond_prompt_speech_tokens: Option<Vec<u32>>,
    /// `emotion_adv` when stored as a tensor (Turbo stores a plain 0.5 or none).
    pub emotion_adv: Option<Tensor>,
}

/// Both halves of `conds.pt`.
#[derive(Debug, Clone)]
pub struct BuiltinVoice {
    pub t3: T3Conds,
    pub gen: VoiceConds,
}

struct Group {
    path: PathBuf,
    key: &'static str,
    tensors: PthTensors,
}

impl Group {
    fn open(path: &Path, key: &'static str) -> Result<Self, S3GenError> {
        let tensors = PthTensors::new(path, Some(key)).map_err(|e| conds_error(path, format!("reading \"{key}\": {e}")))?;
        Ok(Self { path: path.to_owned(), key, tensors })
    }

    fn get(&self, name: &str, device: &Device) -> Result<Option<Tensor>, S3GenError> {
        match self.tensors.get(name) {
            Ok(Some(t)) => Ok(Some(t.to_device(device)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(conds_error(&self.path, format!("{}.{name}: {e}", self.key))),
        }
    }

    fn require(&self, name: &str, device: &Device) -> Result<Tensor, S3GenError> {
        self.get(name, device)?.ok_or_else(|| conds_error(&self.path, format!("no tensor {}.{name}", self.key)))
    }
}

fn conds_error(path: &Path, reason: String) -> S3GenError {
    S3GenError::Conds { path: path.to_owned(), reason }
}

fn token_ids(t: &Tensor) -> Result<Vec<u32>, S3GenError> {
    let ids: Vec<i64> = t.flatten_all()?.to_dtype(DType::I64)?.to_vec1()?;
    Ok(ids.into_iter().map(|i| i.max(0) as u32).collect())
}

impl BuiltinVoice {
    /// Reads `conds.pt`; float tensors are converted to f32 on `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self, S3GenError> {
        let path = path.as_ref();
        let gen = Group::open(path, "gen")?;
        let prompt_tokens = token_ids(&gen.require("prompt_token", device)?)?;
        let prompt_feat = gen.require("prompt_feat", device)?.to_dtype(DType::F32)?;
        let embedding = gen.require("embedding", device)?.to_dtype(DType::F32)?;
        let prompt_feat = match prompt_feat.rank() {
            2 => prompt_feat.unsqueeze(0)?,
            _ => prompt_feat,
        };
        let embedding = embedding.reshape((1, ()))?;
        if prompt_feat.rank() != 3 {
            return Err(conds_error(path, format!("gen.prompt_feat has shape {:?}, expected [1, T, 80]", prompt_feat.dims())));
        }

        let t3 = Group::open(path, "t3")?;
        let speaker_emb = t3.require("speaker_emb", device)?.to_dtype(DType::F32)?;
        let cond_prompt_speech_tokens = t3.get("cond_prompt_speech_tokens", device)?.map(|t| token_ids(&t)).transpose()?;
        let emotion_adv = t3.get("emotion_adv", device)?.map(|t| t.to_dtype(DType::F32)).transpose()?;
        Ok(Self {
            t3: T3Conds { speaker_emb, cond_prompt_speech_tokens, emotion_adv },
            gen: VoiceConds { prompt_tokens, prompt_feat, embedding },
        })
    }
}
