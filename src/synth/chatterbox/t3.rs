//! T3 ("token to token"), Chatterbox's text-to-speech-token language model, in
//! its Turbo/Nano form: a GPT-2 backbone over
//! `[speaker | prompt speech tokens | text tokens | start-of-speech]`, sampling
//! one 25 Hz S3 speech token per step until the stop token.
//!
//! Reference: `chatterbox/models/t3/t3.py` (`T3.prepare_conditioning`,
//! `prepare_input_embeds`, `inference_turbo`), `modules/cond_enc.py`
//! (`T3CondEnc`), `modules/t3_config.py`, and the Turbo hyper-parameters set in
//! `tts_turbo.py::ChatterboxTurboTTS.from_local`:
//!
//! * no T3 position embeddings (`input_pos_emb=None`): GPT-2's own `wpe` gives positions;
//! * conditioning = `spkr_enc(speaker_emb)` (one position) followed by
//!   `speech_emb(cond_prompt_speech_tokens)` (up to 375 positions); no perceiver,
//!   no CLAP, no emotion input;
//! * text tokens are the raw GPT-2 BPE ids (no start/stop text tokens);
//! * `speech_head` has a bias (`is_gpt`); `text_head` and `wte` are unused.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::gpt2::{Gpt2, Gpt2Config, Gpt2State};
use super::sampling::{Sampler, SamplingParams};
use super::{first_line, ChatterboxError};

/// T3's hyper-parameters (the Turbo subset of the reference's `T3Config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T3Config {
    pub text_tokens_dict_size: usize,
    pub speech_tokens_dict_size: usize,
    pub start_speech_token: u32,
    pub stop_speech_token: u32,
    /// Width of the VoiceEncoder speaker embedding.
    pub speaker_embed_size: usize,
    /// Longest speech-token prompt of a voice.
    pub speech_cond_prompt_len: usize,
    pub gpt2: Gpt2Config,
}

impl T3Config {
    /// Chatterbox-Turbo: GPT-2 medium.
    pub fn turbo() -> Self {
        Self {
            text_tokens_dict_size: 50276,
            speech_tokens_dict_size: 6563,
            start_speech_token: 6561,
            stop_speech_token: 6562,
            speaker_embed_size: 256,
            speech_cond_prompt_len: 375,
            gpt2: Gpt2Config::medium(),
        }
    }

    /// Chatterbox-Nano: the same model on GPT-2 small.
    pub fn nano() -> Self {
        Self { gpt2: Gpt2Config::small(), ..Self::turbo() }
    }

    /// Ids below this are S3 speech tokens that S3Gen can render.
    pub fn s3_vocab(&self) -> u32 {
        self.start_speech_token
    }
}

/// A voice's conditioning for T3 (the `t3` half of the reference's `conds.pt`).
#[derive(Debug, Clone)]
pub struct T3Cond {
    /// VoiceEncoder embedding, `[1, speaker_embed_size]` (any shape with that many values).
    pub speaker_emb: Tensor,
    /// S3 tokens of the voice's reference audio, `[1, P]` (u32), if any.
    pub cond_prompt_speech_tokens: Option<Tensor>,
    /// Their embeddings `[1, P, D]` when the voice file already carries them
    /// (the reference then uses these instead of embedding the tokens).
    pub cond_prompt_speech_emb: Option<Tensor>,
}

impl T3Cond {
    pub fn new(speaker_emb: Tensor, cond_prompt_speech_tokens: Option<Tensor>) -> Self {
        Self { speaker_emb, cond_prompt_speech_tokens, cond_prompt_speech_emb: None }
    }

    /// Reads the `t3` half of a voice file written by the reference's
    /// `Conditionals.save` (the checkpoint's built-in voice `conds.pt`).
    pub fn from_pth(path: &Path, device: &Device) -> std::result::Result<Self, ChatterboxError> {
        let bad = |reason: String| ChatterboxError::BadVoice { path: path.to_path_buf(), reason };
        if !path.is_file() {
            return Err(ChatterboxError::MissingFile { path: path.to_path_buf(), what: "the built-in voice" });
        }
        let pth = candle_core::pickle::PthTensors::new(path, Some("t3"))
            .map_err(|e| bad(format!("not a Chatterbox voice file (torch pickle with a `t3` dict): {e}")))?;
        let get = |name: &str| -> std::result::Result<Option<Tensor>, ChatterboxError> {
            let t = pth.get(name).map_err(|e| bad(format!("cannot read `t3.{name}`: {e}")))?;
            t.map(|t| t.to_device(device)).transpose().map_err(ChatterboxError::from)
        };
        let speaker_emb = get("speaker_emb")?.ok_or_else(|| bad("it has no `t3.speaker_emb`".into()))?;
        let tokens = get("cond_prompt_speech_tokens")?.map(|t| t.to_dtype(DType::U32)).transpose()?;
        Ok(Self { speaker_emb, cond_prompt_speech_tokens: tokens, cond_prompt_speech_emb: get("cond_prompt_speech_emb")? })
    }
}

/// One sampling run's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateParams {
    pub sampling: SamplingParams,
    /// The reference's `max_gen_len`: decoding steps after the first token, so
    /// at most `max_gen_len + 1` tokens are drawn (1000 steps = 40 s of speech).
    pub max_gen_len: usize,
    pub seed: u64,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self { sampling: SamplingParams::default(), max_gen_len: 1000, seed: 0 }
    }
}

/// The T3 model: backbone, embeddings, speaker projection and speech head.
pub struct T3 {
    tfmr: Gpt2,
    text_emb: Embedding,
    speech_emb: Embedding,
    speech_head: Linear,
    spkr_enc: Linear,
    config: T3Config,
}

impl T3 {
    /// Loads from a T3 state dict (`t3_turbo_v1.safetensors`, `t3_nano_v1.safetensors`).
    pub fn load(vb: VarBuilder, config: &T3Config) -> Result<Self> {
        let d = config.gpt2.n_embd;
        Ok(Self {
            tfmr: Gpt2::load(vb.pp("tfmr"), &config.gpt2)?,
            text_emb: candle_nn::embedding(config.text_tokens_dict_size, d, vb.pp("text_emb"))?,
            speech_emb: candle_nn::embedding(config.speech_tokens_dict_size, d, vb.pp("speech_emb"))?,
            speech_head: candle_nn::linear(d, config.speech_tokens_dict_size, vb.pp("speech_head"))?,
            spkr_enc: candle_nn::linear(config.speaker_embed_size, d, vb.pp("cond_enc").pp("spkr_enc"))?,
            config: config.clone(),
        })
    }

    /// Loads a T3 checkpoint file (`t3_turbo_v1.safetensors` / `t3_nano_v1.safetensors`),
    /// saying which model the file fits when it does not fit `config`.
    pub fn load_checkpoint(
        path: &Path,
        config: &T3Config,
        dtype: DType,
        device: &Device,
    ) -> std::result::Result<Self, ChatterboxError> {
        if !path.is_file() {
            return Err(ChatterboxError::MissingFile { path: path.to_path_buf(), what: "the T3 weights" });
        }
        let model = if config.gpt2 == Gpt2Config::small() { "Chatterbox-Nano" } else { "Chatterbox-Turbo" };
        let bad = |reason: String| ChatterboxError::BadCheckpoint {
            path: path.to_path_buf(),
            model: model.to_string(),
            reason,
        };
        // SAFETY: the file is mapped read-only and not modified while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, device) }
            .map_err(|e| bad(format!("not a readable safetensors file: {}", first_line(&e))))?;
        if let Ok(wpe) = vb.pp("tfmr").pp("wpe").get_unchecked("weight") {
            let width = wpe.dim(1)?;
            if width != config.gpt2.n_embd {
                let hint = match width {
                    768 => " (GPT-2 small: a Chatterbox-Nano checkpoint)",
                    1024 => " (GPT-2 medium: a Chatterbox-Turbo checkpoint)",
                    _ => "",
                };
                return Err(bad(format!("its GPT-2 is {width} wide{hint}, the model needs {}", config.gpt2.n_embd)));
            }
        }
        Self::load(vb, config).map_err(|e| bad(first_line(&e)))
    }

    pub fn config(&self) -> &T3Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        self.tfmr.device()
    }

    /// The backbone (for tests and benchmarks that drive it directly).
    pub fn backbone(&self) -> &Gpt2 {
        &self.tfmr
    }

    pub fn new_state(&self) -> Gpt2State {
        self.tfmr.new_state()
    }

    /// `[1, 1 + P, D]`: the projected speaker embedding, then the prompt tokens' embeddings.
    pub fn conditioning(&self, cond: &T3Cond) -> Result<Tensor> {
        let dtype = self.tfmr.dtype();
        let spk = cond.speaker_emb.to_dtype(dtype)?.reshape((1, self.config.speaker_embed_size))?;
        let spk = self.spkr_enc.forward(&spk)?.unsqueeze(1)?; // [1, 1, D]
        if let Some(emb) = &cond.cond_prompt_speech_emb {
            return Tensor::cat(&[spk, emb.to_dtype(dtype)?], 1);
        }
        match &cond.cond_prompt_speech_tokens {
            Some(tokens) => {
                let tokens = self.check_ids(tokens, self.config.speech_tokens_dict_size, "prompt speech")?;
                Tensor::cat(&[spk, self.speech_emb.forward(&tokens)?], 1)
            }
            None => Ok(spk),
        }
    }

    /// The prefill input `[1, L, D]`: conditioning, text, start-of-speech.
    pub fn prompt_embeds(&self, cond: &T3Cond, text_tokens: &[u32]) -> Result<Tensor> {
        Tensor::cat(&[self.conditioning(cond)?, self.text_embeds(text_tokens)?], 1)
    }

    /// `[1, N + 1, D]`: the text tokens' embeddings, then start-of-speech's.
    fn text_embeds(&self, text_tokens: &[u32]) -> Result<Tensor> {
        let dev = self.device();
        let text = Tensor::new(text_tokens, dev)?.unsqueeze(0)?;
        let text = self.check_ids(&text, self.config.text_tokens_dict_size, "text")?;
        let start = Tensor::new(&[self.config.start_speech_token], dev)?.unsqueeze(0)?;
        Tensor::cat(&[self.text_emb.forward(&text)?, self.speech_emb.forward(&start)?], 1)
    }

    /// Speech logits `[1, V]` of the last position of `hidden` `[1, T, D]`.
    fn last_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.speech_head.forward(&hidden.i((.., hidden.dim(1)? - 1, ..))?)
    }

    /// The voice's part of the prompt run once: a state to [`fork`](Gpt2State::fork)
    /// for each utterance in that voice (the prompt is causal, so what follows
    /// cannot change it).
    pub fn voice_prefix(&self, cond: &T3Cond) -> Result<Gpt2State> {
        let mut state = self.new_state();
        self.tfmr.forward(&self.conditioning(cond)?, &mut state)?;
        Ok(state)
    }

    /// The rest of the prompt (text, start-of-speech) after a voice prefix held in
    /// `state`; the speech logits `[1, V]` of the last position.
    pub fn prefill_text(&self, text_tokens: &[u32], state: &mut Gpt2State) -> Result<Tensor> {
        let hidden = self.tfmr.forward(&self.text_embeds(text_tokens)?, state)?;
        self.last_logits(&hidden)
    }

    /// Runs the prompt through an empty `state`; the speech logits `[1, V]` of the last position.
    pub fn prefill(&self, cond: &T3Cond, text_tokens: &[u32], state: &mut Gpt2State) -> Result<Tensor> {
        state.reset();
        let hidden = self.tfmr.forward(&self.prompt_embeds(cond, text_tokens)?, state)?;
        self.last_logits(&hidden)
    }

    /// Feeds one speech token after `state`; its speech logits `[1, V]`.
    pub fn step(&self, token: u32, state: &mut Gpt2State) -> Result<Tensor> {
        self.step_many(&[token], &mut [state])
    }

    /// Feeds `tokens[b]` after `states[b]` for every `b` in one batched
    /// decoding step ([`Gpt2::step_many`]); the speech logits `[B, V]`.
    pub fn step_many(&self, tokens: &[u32], states: &mut [&mut Gpt2State]) -> Result<Tensor> {
        let t = Tensor::new(tokens, self.device())?.unsqueeze(1)?; // [B, 1]
        let t = self.check_ids(&t, self.config.speech_tokens_dict_size, "speech")?;
        let hidden = self.tfmr.step_many(&self.speech_emb.forward(&t)?, states)?;
        self.speech_head.forward(&hidden.squeeze(1)?)
    }

    /// Runs the decoding step every generation in `generations` is waiting
    /// for (a token drawn by [`Generation::draw`]) as one batch; the others
    /// are left as they are. On an error no generation has moved on.
    pub fn advance(&self, generations: &mut [&mut Generation]) -> Result<()> {
        let mut waiting: Vec<&mut Generation> = generations.iter_mut().filter(|g| g.pending.is_some()).map(|g| &mut **g).collect();
        let tokens: Vec<u32> = waiting.iter().filter_map(|g| g.pending).collect();
        if tokens.is_empty() {
            return Ok(());
        }
        let logits = {
            let mut states: Vec<&mut Gpt2State> = waiting.iter_mut().map(|g| &mut g.state).collect();
            self.step_many(&tokens, &mut states)?
        };
        for (i, generation) in waiting.into_iter().enumerate() {
            generation.logits = Some(logits.narrow(0, i, 1)?);
            generation.pending = None;
        }
        Ok(())
    }

    /// Starts a generation: validates, runs the prefill, and returns the state
    /// from which [`Generation::next_token`] draws tokens one by one.
    pub fn start(&self, cond: &T3Cond, text_tokens: &[u32], params: &GenerateParams) -> Result<Generation> {
        params.sampling.validate().map_err(candle_core::Error::Msg)?;
        let mut state = self.new_state();
        let logits = self.prefill(cond, text_tokens, &mut state)?;
        Ok(self.generation(state, logits, params))
    }

    /// [`start`](Self::start) from a [`voice_prefix`](Self::voice_prefix): only the
    /// text is prefilled.
    pub fn start_after(&self, prefix: &Gpt2State, text_tokens: &[u32], params: &GenerateParams) -> Result<Generation> {
        params.sampling.validate().map_err(candle_core::Error::Msg)?;
        let mut state = prefix.fork()?;
        let logits = self.prefill_text(text_tokens, &mut state)?;
        Ok(self.generation(state, logits, params))
    }

    fn generation(&self, state: Gpt2State, logits: Tensor, params: &GenerateParams) -> Generation {
        // Every draw but the last runs one more position; a model with a short
        // position table ends the utterance where the table ends.
        let room = self.config.gpt2.n_positions.saturating_sub(state.seq_len()) + 1;
        Generation {
            state,
            logits: Some(logits),
            pending: None,
            generated: Vec::new(),
            sampler: Sampler::new(params.sampling.clone(), params.seed),
            max_tokens: (params.max_gen_len + 1).min(room),
            row: Vec::new(),
        }
    }

    /// Generates the whole sequence (see [`Generation::next_token`]).
    pub fn generate(&self, cond: &T3Cond, text_tokens: &[u32], params: &GenerateParams) -> Result<Vec<u32>> {
        let mut generation = self.start(cond, text_tokens, params)?;
        let mut out = Vec::new();
        while let Some(t) = generation.next_token(self)? {
            out.push(t);
        }
        Ok(out)
    }

    fn check_ids(&self, ids: &Tensor, vocab: usize, what: &str) -> Result<Tensor> {
        let ids = ids.to_dtype(DType::U32)?;
        let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>().ok();
        if let Some(max) = max.filter(|&m| m as usize >= vocab) {
            candle_core::bail!("{what} token id {max} is outside the model's {vocab}-token table");
        }
        Ok(ids)
    }
}

/// A generation in progress: the KV cache, the tokens so far and the sampler.
pub struct Generation {
    state: Gpt2State,
    /// Logits of the next draw; `None` once finished or while a drawn token
    /// waits for its decoding step.
    logits: Option<Tensor>,
    /// A drawn token the sequence goes on from, not yet run through the model.
    pending: Option<u32>,
    generated: Vec<u32>,
    sampler: Sampler,
    max_tokens: usize,
    row: Vec<f32>,
}

impl Generation {
    /// Draws the next token, as the reference's loop does: the first draw sees
    /// the start token as history, later draws every token generated so far;
    /// the stop token ends the sequence (and is not returned) except on the
    /// first draw, where the reference does not check for it. `Ok(None)` once
    /// finished. Returned ids may include the start/stop ids in odd cases;
    /// [`for_s3gen`] drops them, as the reference does before S3Gen.
    pub fn next_token(&mut self, t3: &T3) -> Result<Option<u32>> {
        let token = self.draw(t3)?;
        t3.advance(&mut [self])?;
        Ok(token)
    }

    /// [`next_token`](Self::next_token)'s draw without its decoding step: a
    /// token the sequence goes on from waits for [`T3::advance`], which runs
    /// the steps of many generations as one batch. Drawing again before that
    /// is an error.
    pub fn draw(&mut self, t3: &T3) -> Result<Option<u32>> {
        if self.pending.is_some() {
            candle_core::bail!("the last token drawn has not been run through the model (T3::advance)");
        }
        let Some(logits) = self.logits.take() else {
            return Ok(None);
        };
        self.row = logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let start = [t3.config.start_speech_token];
        let history: &[u32] = if self.generated.is_empty() { &start } else { &self.generated };
        let Some(token) = self.sampler.sample(&mut self.row, history) else {
            return Ok(None);
        };
        let first = self.generated.is_empty();
        self.generated.push(token);
        if token == t3.config.stop_speech_token && !first {
            return Ok(None);
        }
        if self.generated.len() < self.max_tokens {
            self.pending = Some(token);
        }
        Ok(Some(token))
    }

    /// Tokens drawn so far (including a final stop token).
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    pub fn is_finished(&self) -> bool {
        self.logits.is_none() && self.pending.is_none()
    }
}

/// S3 silence token the reference appends after the generated speech.
pub const S3GEN_SILENCE: u32 = 4299;

/// The reference's hand-over to S3Gen (`tts_turbo.py::generate`): drop ids that
/// are not S3 tokens (start/stop), then append three silence tokens.
pub fn for_s3gen(tokens: &[u32], config: &T3Config) -> Vec<u32> {
    let mut out: Vec<u32> = tokens.iter().copied().filter(|&t| t < config.s3_vocab()).collect();
    out.extend([S3GEN_SILENCE; 3]);
    out
}
