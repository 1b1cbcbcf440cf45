//! Piper voices (VITS, `NAME.onnx` + `NAME.onnx.json`) run natively with candle.
//!
//! * [`onnx`] reads the weights out of the ONNX file and names them;
//! * [`vits`] is the model, written with candle ops;
//! * [`config`] is the voice's JSON;
//! * [`stream`] turns text into a stream of PCM chunks: phonemes per sentence,
//!   then the HiFi-GAN decoder streamed over windows of the latent, its
//!   layers keeping what the next window needs.

pub mod config;
pub mod onnx;
pub mod stream;
pub mod vits;

use std::path::{Path, PathBuf};

use candle_core::Device;

pub use self::config::VoiceConfig;
pub use self::stream::{PiperEngine, StreamConfig};
pub use self::vits::{Scales, Vits};
use self::onnx::OnnxWeights;

/// What can go wrong loading or running a Piper voice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PiperError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a usable Piper model: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error("{path} is not a usable Piper voice config: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("voice config not found: expected {expected} beside the model (Piper voices are NAME.onnx + NAME.onnx.json)")]
    MissingConfig { expected: PathBuf },
    #[error("the model lacks the weight `{0}`: this is not a Piper VITS voice, or the file is damaged")]
    MissingWeight(String),
    #[error("{path}: the model and its config disagree: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("speaker {id} does not exist: this voice has {count} speaker(s)")]
    UnknownSpeaker { id: u32, count: usize },
    #[error("speaker `{name}` does not exist; this voice's speakers are: {known}")]
    UnknownSpeakerName { name: String, known: String },
    #[error("phoneme id {id} is outside the voice's {vocab} symbols")]
    BadPhonemeId { id: i64, vocab: usize },
    #[error("no phonemes to synthesize")]
    EmptyInput,
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("model computation failed: {}", first_line(.0))]
    Compute(#[from] candle_core::Error),
}

/// candle errors may carry a captured backtrace after the message; users get the message.
fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// A loaded voice: its config and its model on a device.
pub struct PiperVoice {
    pub name: String,
    pub config: VoiceConfig,
    pub model: Vits,
}

impl PiperVoice {
    /// Loads `NAME.onnx` and the `NAME.onnx.json` beside it.
    pub fn load(onnx_path: &Path, device: &Device) -> Result<Self, PiperError> {
        let config_path = config_path_for(onnx_path);
        if !onnx_path.exists() {
            return Err(PiperError::Io {
                path: onnx_path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        if !config_path.exists() {
            return Err(PiperError::MissingConfig { expected: config_path });
        }
        let config = VoiceConfig::read(&config_path)?;
        let weights = OnnxWeights::read(onnx_path)?;
        Self::from_parts(voice_name(onnx_path), config, &weights, device).map_err(|e| match e {
            PiperError::Mismatch { reason, .. } => PiperError::Mismatch { path: onnx_path.to_path_buf(), reason },
            PiperError::MissingWeight(w) => PiperError::BadModel {
                path: onnx_path.to_path_buf(),
                reason: format!("it lacks the weight `{w}`: this is not a Piper VITS voice, or the file is damaged"),
            },
            other => other,
        })
    }

    /// Builds a voice from an already read config and weights.
    pub fn from_parts(name: String, config: VoiceConfig, weights: &OnnxWeights, device: &Device) -> Result<Self, PiperError> {
        let model = Vits::load(weights, device)?;
        let vocab = model.encoder.vocab_size();
        let mismatch = |reason: String| PiperError::Mismatch { path: PathBuf::new(), reason };
        if let Some(max) = config.phoneme_id_map.values().flatten().max() {
            if *max < 0 || *max as usize >= vocab {
                return Err(mismatch(format!("the config maps phonemes to ids up to {max}, the model has {vocab} symbols")));
            }
        }
        if let Some(n) = config.num_symbols {
            if n != vocab {
                return Err(mismatch(format!("the config says {n} symbols, the model has {vocab}")));
            }
        }
        if model.num_speakers() != config.num_speakers {
            return Err(mismatch(format!(
                "the config says {} speakers, the model has {}",
                config.num_speakers,
                model.num_speakers()
            )));
        }
        Ok(Self { name, config, model })
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    /// Resolves a speaker given as a number or a name from `speaker_id_map`.
    pub fn speaker_id(&self, speaker: Option<&str>) -> Result<Option<u32>, PiperError> {
        let Some(s) = speaker.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if let Ok(id) = s.parse::<u32>() {
            let count = self.model.num_speakers();
            if id as usize >= count {
                return Err(PiperError::UnknownSpeaker { id, count });
            }
            return Ok(Some(id));
        }
        self.config.speaker_id_map.get(s).copied().map(Some).ok_or_else(|| {
            let mut names: Vec<_> = self.config.speaker_id_map.keys().cloned().collect();
            names.sort();
            PiperError::UnknownSpeakerName {
                name: s.to_string(),
                known: if names.is_empty() { "(none: single-speaker voice)".into() } else { names.join(", ") },
            }
        })
    }
}

/// `dir/NAME.onnx` -> `dir/NAME.onnx.json`.
pub fn config_path_for(onnx_path: &Path) -> PathBuf {
    let mut s = onnx_path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

fn voice_name(onnx_path: &Path) -> String {
    onnx_path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".onnx").to_string())
        .unwrap_or_else(|| "voice".into())
}
