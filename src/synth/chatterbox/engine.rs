//! [`ChatterboxEngine`]: the [`Engine`] for Chatterbox-Turbo and -Nano.
//!
//! The voice's part of T3's prompt (speaker embedding and 375 prompt tokens)
//! runs once at load; each request prefills only its text after a copy of it.
//!
//! Text -> [`punc_norm`] -> GPT-2 BPE -> T3 draws speech tokens one by one ->
//! every `chunk_tokens` tokens the new ones go to a [`RenderStream`] (S3Gen +
//! HiFT), whose audio leaves as a [`PcmChunk`]. After the stop token the
//! reference's three silence tokens follow and the renderer is finished.
//!
//! The renderer is a trait so that the token-to-audio half (its own module and
//! its own parity tests) can stream however it needs to: hold back mel frames,
//! carry the vocoder's source state, crossfade. [`WholeUtterance`] adapts a
//! plain `tokens -> wav` function, which is how the reference runs (one pass
//! over all tokens).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device};

use super::gpt2::Gpt2State;
use super::t3::{GenerateParams, Generation, T3Cond, T3Config, S3GEN_SILENCE, T3};
use super::tokenizer::{punc_norm, TextTokenizer};
use super::ChatterboxError;
use crate::synth::{
    CancelToken, Engine, EngineInfo, PcmChunk, SynthError, SynthRequest, SynthStream, MAX_REQUEST_CHARS,
};

/// Which Chatterbox model: the same architecture at two sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// GPT-2 medium T3 (350M parameters with S3Gen).
    Turbo,
    /// GPT-2 small T3.
    Nano,
}

impl Variant {
    /// Engine name as configured (`chatterbox-turbo`, `chatterbox-nano`).
    pub fn engine_name(self) -> &'static str {
        match self {
            Self::Turbo => "chatterbox-turbo",
            Self::Nano => "chatterbox-nano",
        }
    }

    /// The Hugging Face repository holding the checkpoint.
    pub fn repo_id(self) -> &'static str {
        match self {
            Self::Turbo => "ResembleAI/chatterbox-turbo",
            Self::Nano => "ResembleAI/chatterbox-nano",
        }
    }

    /// The T3 weights file in the checkpoint directory.
    pub fn t3_file(self) -> &'static str {
        match self {
            Self::Turbo => "t3_turbo_v1.safetensors",
            Self::Nano => "t3_nano_v1.safetensors",
        }
    }

    pub fn t3_config(self) -> T3Config {
        match self {
            Self::Turbo => T3Config::turbo(),
            Self::Nano => T3Config::nano(),
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = ChatterboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "chatterbox-turbo" | "turbo" => Ok(Self::Turbo),
            "chatterbox-nano" | "nano" => Ok(Self::Nano),
            other => Err(ChatterboxError::InvalidOption(format!(
                "unknown Chatterbox model `{other}` (chatterbox-turbo, chatterbox-nano)"
            ))),
        }
    }
}

/// Speech tokens to audio for one utterance at a time.
pub trait SpeechRenderer: Send + Sync {
    /// Rate of the audio it produces (24 kHz for S3Gen + HiFT).
    fn sample_rate(&self) -> u32;
    /// A renderer for one utterance; `seed` fixes its noise.
    fn start(&self, seed: u64) -> Result<Box<dyn RenderStream>, ChatterboxError>;
}

/// One utterance's rendering, fed in token order.
pub trait RenderStream: Send {
    /// More S3 tokens (ids below 6561). Returns the audio that is final now,
    /// following what earlier calls returned; empty when it needs more tokens.
    fn push(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ChatterboxError>;
    /// No more tokens: the rest of the audio.
    fn finish(&mut self) -> Result<Vec<f32>, ChatterboxError>;
}

/// Function rendering a whole token sequence at once.
type RenderFn = dyn Fn(&[u32], u64) -> Result<Vec<f32>, ChatterboxError> + Send + Sync;

/// A [`SpeechRenderer`] over a function that renders a whole token sequence
/// (the reference's `s3gen.inference`): all audio comes at `finish`.
pub struct WholeUtterance {
    sample_rate: u32,
    render: Arc<RenderFn>,
}

impl WholeUtterance {
    pub fn new(
        sample_rate: u32,
        render: impl Fn(&[u32], u64) -> Result<Vec<f32>, ChatterboxError> + Send + Sync + 'static,
    ) -> Self {
        Self { sample_rate, render: Arc::new(render) }
    }
}

struct WholeUtteranceStream {
    render: Arc<RenderFn>,
    seed: u64,
    tokens: Vec<u32>,
}

impl SpeechRenderer for WholeUtterance {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
    fn start(&self, seed: u64) -> Result<Box<dyn RenderStream>, ChatterboxError> {
        Ok(Box::new(WholeUtteranceStream { render: self.render.clone(), seed, tokens: Vec::new() }))
    }
}

impl RenderStream for WholeUtteranceStream {
    fn push(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ChatterboxError> {
        self.tokens.extend_from_slice(tokens);
        Ok(Vec::new())
    }
    fn finish(&mut self) -> Result<Vec<f32>, ChatterboxError> {
        (self.render)(&std::mem::take(&mut self.tokens), self.seed)
    }
}

/// Engine settings with the reference's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub generate: GenerateParams,
    /// Speech tokens drawn before the renderer is fed (25 tokens = 1 s of speech).
    pub chunk_tokens: usize,
    /// T3's weights and activations (f32 is what the parity tests prove; on a
    /// GPU, bf16 halves the memory traffic of each step).
    pub dtype: DType,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { generate: GenerateParams::default(), chunk_tokens: 10, dtype: DType::F32 }
    }
}

struct Shared {
    name: &'static str,
    tokenizer: TextTokenizer,
    t3: T3,
    /// The built-in voice's prompt, run through T3 once at load.
    voice: Gpt2State,
    renderer: Arc<dyn SpeechRenderer>,
    config: EngineConfig,
}

/// Chatterbox-Turbo or -Nano with the checkpoint's built-in voice.
#[derive(Clone)]
pub struct ChatterboxEngine {
    shared: Arc<Shared>,
}

impl ChatterboxEngine {
    /// Loads a downloaded checkpoint directory (the files of
    /// `ResembleAI/chatterbox-turbo` or `-nano`): the tokenizer files, the T3
    /// weights and the built-in voice `conds.pt`; `renderer` is the S3Gen half.
    pub fn load(
        dir: &Path,
        variant: Variant,
        renderer: Arc<dyn SpeechRenderer>,
        device: &Device,
        config: EngineConfig,
    ) -> Result<Self, ChatterboxError> {
        Self::load_with(dir, variant.engine_name(), variant.t3_file(), &variant.t3_config(), renderer, device, config)
    }

    /// [`load`](Self::load) with an explicit T3 file and configuration.
    pub fn load_with(
        dir: &Path,
        name: &'static str,
        t3_file: &str,
        t3_config: &T3Config,
        renderer: Arc<dyn SpeechRenderer>,
        device: &Device,
        config: EngineConfig,
    ) -> Result<Self, ChatterboxError> {
        if !dir.is_dir() {
            return Err(ChatterboxError::MissingFile { path: dir.to_path_buf(), what: "the model directory" });
        }
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let t3 = T3::load_checkpoint(&dir.join(t3_file), t3_config, config.dtype, device)?;
        let voice = T3Cond::from_pth(&dir.join("conds.pt"), device)?;
        Self::from_parts(name, tokenizer, t3, voice, renderer, config)
    }

    /// Assembles an engine from loaded parts, checking that they fit together.
    pub fn from_parts(
        name: &'static str,
        tokenizer: TextTokenizer,
        t3: T3,
        voice: T3Cond,
        renderer: Arc<dyn SpeechRenderer>,
        config: EngineConfig,
    ) -> Result<Self, ChatterboxError> {
        let text_vocab = t3.config().text_tokens_dict_size;
        if tokenizer.vocab_size() > text_vocab {
            return Err(ChatterboxError::InvalidOption(format!(
                "the tokenizer has {} tokens but T3's text table only {text_vocab}: tokenizer and weights are from different models",
                tokenizer.vocab_size()
            )));
        }
        config.generate.sampling.validate().map_err(ChatterboxError::InvalidOption)?;
        if config.chunk_tokens == 0 {
            return Err(ChatterboxError::InvalidOption("chunk_tokens must be at least 1".into()));
        }
        let voice = t3.voice_prefix(&voice)?;
        Ok(Self { shared: Arc::new(Shared { name, tokenizer, t3, voice, renderer, config }) })
    }
}

impl Engine for ChatterboxEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            engine: self.shared.name,
            voice: "built-in".into(),
            sample_rate: self.shared.renderer.sample_rate(),
            speakers: Vec::new(),
        }
    }

    fn start(&self, request: SynthRequest, cancel: CancelToken) -> Result<Box<dyn SynthStream>, SynthError> {
        let chars = request.text.chars().count();
        if chars > MAX_REQUEST_CHARS {
            return Err(SynthError::TextTooLong { chars, max: MAX_REQUEST_CHARS });
        }
        if request.text.trim().is_empty() {
            return Err(SynthError::EmptyText);
        }
        let o = &request.options;
        let invalid = |m: &str| SynthError::Chatterbox(ChatterboxError::InvalidOption(m.to_string()));
        if o.speaker.as_deref().is_some_and(|s| !s.trim().is_empty()) {
            return Err(invalid("Chatterbox speaks with its built-in voice: it takes no speaker"));
        }
        if o.noise_scale.is_some() || o.length_scale.is_some() || o.noise_w.is_some() {
            return Err(invalid("noise_scale, length_scale and noise_w are Piper options; Chatterbox has none"));
        }
        let text_ids = self.shared.tokenizer.encode(&punc_norm(&request.text))?;
        if text_ids.is_empty() {
            return Err(SynthError::EmptyText);
        }
        let seed = o.seed.unwrap_or_else(rand::random);
        let mut params = self.shared.config.generate.clone();
        params.seed = seed;
        let render = self.shared.renderer.start(seed)?;
        Ok(Box::new(ChatterboxStream {
            shared: self.shared.clone(),
            cancel,
            text_ids,
            params,
            generation: None,
            render,
            emitted: 0,
            done: false,
        }))
    }
}

struct ChatterboxStream {
    shared: Arc<Shared>,
    cancel: CancelToken,
    text_ids: Vec<u32>,
    params: GenerateParams,
    /// Started on the first pull (the prefill is the expensive part).
    generation: Option<Generation>,
    render: Box<dyn RenderStream>,
    emitted: u64,
    done: bool,
}

impl ChatterboxStream {
    fn chunk(&mut self, samples: Vec<f32>, compute: Duration, last: bool) -> PcmChunk {
        let start_sample = self.emitted;
        self.emitted += samples.len() as u64;
        PcmChunk {
            samples,
            sample_rate: self.shared.renderer.sample_rate(),
            start_sample,
            sentence: 0,
            alignments: Vec::new(),
            ready_at: Instant::now(),
            compute,
            last,
        }
    }
}

impl SynthStream for ChatterboxStream {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn next_chunk(&mut self) -> Result<Option<PcmChunk>, SynthError> {
        if self.done {
            return Ok(None);
        }
        let t0 = Instant::now();
        let shared = self.shared.clone();
        let t3 = &shared.t3;
        let s3_vocab = t3.config().s3_vocab();
        loop {
            if self.cancel.is_cancelled() {
                self.done = true;
                return Err(SynthError::Cancelled);
            }
            let generation = match &mut self.generation {
                Some(g) => g,
                None => self.generation.insert(
                    t3.start_after(&shared.voice, &self.text_ids, &self.params).map_err(ChatterboxError::from)?,
                ),
            };
            let mut tokens = Vec::with_capacity(shared.config.chunk_tokens);
            while tokens.len() < shared.config.chunk_tokens && !self.cancel.is_cancelled() {
                match generation.next_token(t3).map_err(ChatterboxError::from)? {
                    Some(t) if t < s3_vocab => tokens.push(t),
                    Some(_) => {} // start/stop ids drawn mid-sequence: dropped, as the reference does
                    None => break,
                }
            }
            if generation.is_finished() && !self.cancel.is_cancelled() {
                tokens.extend([S3GEN_SILENCE; 3]);
                let mut samples = self.render.push(&tokens)?;
                samples.extend(self.render.finish()?);
                self.done = true;
                return Ok(Some(self.chunk(samples, t0.elapsed(), true)));
            }
            let samples = self.render.push(&tokens)?;
            if !samples.is_empty() {
                return Ok(Some(self.chunk(samples, t0.elapsed(), false)));
            }
        }
    }
}
