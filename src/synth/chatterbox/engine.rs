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
use super::{first_line, ChatterboxError};
use crate::synth::{
    CancelToken, Engine, EngineInfo, PcmChunk, SynthError, SynthRequest, SynthStream, MAX_REQUEST_CHARS,
};

/// Streams whose decoding steps run as one batch, at most: past this the
/// step stops being bound by reading the weights and the batch's members
/// wait on each other's renders.
const MAX_BATCH: usize = 8;

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

    /// Pushes `tokens[i]` into `streams[i]` for every `i` (all started by this
    /// renderer), in one batched computation where the renderer can; each
    /// answer is what that stream's own `push` would have returned (within
    /// the tolerance the renderer's batch test states), and one stream's
    /// error does not touch the others. The default pushes one at a time.
    fn push_many(&self, streams: &mut [&mut dyn RenderStream], tokens: &[&[u32]]) -> Vec<Result<Vec<f32>, ChatterboxError>> {
        streams.iter_mut().zip(tokens).map(|(s, t)| s.push(t)).collect()
    }
}

/// One utterance's rendering, fed in token order.
pub trait RenderStream: Send {
    /// More S3 tokens (ids below 6561). Returns the audio that is final now,
    /// following what earlier calls returned; empty when it needs more tokens.
    fn push(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ChatterboxError>;
    /// No more tokens: the rest of the audio.
    fn finish(&mut self) -> Result<Vec<f32>, ChatterboxError>;
    /// The stream as `Any`, so a renderer's [`SpeechRenderer::push_many`] can
    /// find its own stream type behind the trait object.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
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
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
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

    /// T3's decoding steps batch on any device: a step reads all of GPT-2's
    /// weights for one position, so `B` streams in one step read them once
    /// (BENCHMARKS.md, "Chatterbox T3: decoding steps batched across streams").
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// The streams of this engine advance together ([`advance`]); any other
    /// stream takes its own `next_chunk`.
    fn next_chunks(&self, streams: &mut [&mut dyn SynthStream]) -> Vec<Result<Option<PcmChunk>, SynthError>> {
        let mut answers: Vec<Option<Result<Option<PcmChunk>, SynthError>>> = streams.iter().map(|_| None).collect();
        let (mut batch, mut at) = (Vec::new(), Vec::new());
        for (i, stream) in streams.iter_mut().enumerate() {
            if let Some(c) = stream.as_any_mut().downcast_mut::<ChatterboxStream>().filter(|c| Arc::ptr_eq(&c.shared, &self.shared)) {
                batch.push(c);
                at.push(i);
            }
        }
        for (i, answer) in at.into_iter().zip(advance(&mut batch)) {
            answers[i] = Some(answer);
        }
        for (stream, answer) in streams.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                *answer = Some(stream.next_chunk());
            }
        }
        answers.into_iter().map(|a| a.expect("every stream is answered")).collect()
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
            tokens: Vec::new(),
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
    /// S3 tokens drawn and not yet given to the renderer.
    tokens: Vec<u32>,
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

    /// Before a round of draws: `Some` answer when the stream has none to
    /// draw (finished, cancelled, or its prefill failed).
    fn begin(&mut self) -> Option<Result<Option<PcmChunk>, SynthError>> {
        if self.done {
            return Some(Ok(None));
        }
        if self.cancel.is_cancelled() {
            self.done = true;
            return Some(Err(SynthError::Cancelled));
        }
        if self.generation.is_none() {
            let t3 = &self.shared.t3;
            match t3.start_after(&self.shared.voice, &self.text_ids, &self.params) {
                Ok(g) => self.generation = Some(g),
                Err(e) => return Some(self.fail(ChatterboxError::from(e).into())),
            }
        }
        None
    }

    /// Draws one token; the decoding step it needs is left for the batch.
    fn draw(&mut self) -> Option<Result<Option<PcmChunk>, SynthError>> {
        if self.cancel.is_cancelled() {
            self.done = true;
            return Some(Err(SynthError::Cancelled));
        }
        let t3 = &self.shared.t3;
        let generation = self.generation.as_mut().expect("begun");
        match generation.draw(t3) {
            // Start/stop ids drawn mid-sequence are dropped, as the reference does.
            Ok(Some(t)) if t < t3.config().s3_vocab() => self.tokens.push(t),
            Ok(_) => {}
            Err(e) => return Some(self.fail(ChatterboxError::from(e).into())),
        }
        None
    }

    /// After the batch's decoding step, a sequence that has ended goes to the
    /// renderer with the reference's three silence tokens, and the rest of
    /// its audio is the stream's last chunk.
    fn finish(&mut self, t0: Instant) -> Result<Option<PcmChunk>, SynthError> {
        self.tokens.extend([S3GEN_SILENCE; 3]);
        let tokens = std::mem::take(&mut self.tokens);
        let samples = self.render.push(&tokens).and_then(|mut s| {
            s.extend(self.render.finish()?);
            Ok(s)
        });
        self.done = true;
        Ok(Some(self.chunk(samples?, t0.elapsed(), true)))
    }

    fn is_finished(&self) -> bool {
        self.generation.as_ref().is_some_and(Generation::is_finished)
    }

    fn fail(&mut self, e: SynthError) -> Result<Option<PcmChunk>, SynthError> {
        self.done = true;
        Err(e)
    }
}

/// Advances every stream to its next chunk. Draws run per stream; T3's
/// decoding steps run as one batch over the streams still drawing
/// ([`T3::advance`]); every `chunk_tokens` the streams' tokens go to the
/// renderer, as one batch too ([`SpeechRenderer::push_many`]). One stream alone is the same loop with batches of one.
/// A stream's answer is what it would get alone, up to the float rounding
/// of a batched matrix product (tests/chatterbox_engine.rs states the bound).
fn advance(streams: &mut [&mut ChatterboxStream]) -> Vec<Result<Option<PcmChunk>, SynthError>> {
    let t0 = Instant::now();
    let Some(shared) = streams.first().map(|s| s.shared.clone()) else { return Vec::new() };
    let t3 = &shared.t3;
    let mut answers: Vec<Option<Result<Option<PcmChunk>, SynthError>>> =
        streams.iter_mut().map(|s| s.begin()).collect();
    loop {
        for (stream, answer) in streams.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                *answer = stream.draw();
            }
        }
        let mut drawing: Vec<(&mut ChatterboxStream, &mut Option<_>)> =
            streams.iter_mut().map(|s| &mut **s).zip(answers.iter_mut()).filter(|(_, a)| a.is_none()).collect();
        if drawing.is_empty() {
            break;
        }
        let stepped = {
            let mut generations: Vec<&mut Generation> =
                drawing.iter_mut().filter_map(|(s, _)| s.generation.as_mut()).collect();
            t3.advance(&mut generations)
        };
        // Then a finished sequence renders the rest of its audio, and every
        // stream with a chunk's worth of tokens pushes them (one batch).
        let mut ready = Vec::new();
        for (stream, answer) in drawing {
            match &stepped {
                // Each stream gets the batch's error (the error itself is not `Clone`).
                Err(e) => *answer = Some(stream.fail(ChatterboxError::Compute(candle_core::Error::Msg(first_line(e))).into())),
                Ok(()) if stream.is_finished() => *answer = Some(stream.finish(t0)),
                Ok(()) if stream.tokens.len() >= shared.config.chunk_tokens => ready.push((stream, answer)),
                Ok(()) => {}
            }
        }
        if ready.is_empty() {
            continue;
        }
        let tokens: Vec<Vec<u32>> = ready.iter_mut().map(|(s, _)| std::mem::take(&mut s.tokens)).collect();
        let tokens: Vec<&[u32]> = tokens.iter().map(Vec::as_slice).collect();
        let pushed = {
            let mut renders: Vec<&mut dyn RenderStream> = ready.iter_mut().map(|(s, _)| &mut *s.render as &mut dyn RenderStream).collect();
            shared.renderer.push_many(&mut renders, &tokens)
        };
        for ((stream, answer), samples) in ready.into_iter().zip(pushed) {
            *answer = match samples {
                Ok(samples) if samples.is_empty() => None,
                Ok(samples) => Some(Ok(Some(stream.chunk(samples, t0.elapsed(), false)))),
                Err(e) => Some(stream.fail(e.into())),
            };
        }
    }
    answers.into_iter().map(|a| a.expect("every stream is answered")).collect()
}

impl SynthStream for ChatterboxStream {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn next_chunk(&mut self) -> Result<Option<PcmChunk>, SynthError> {
        advance(&mut [self]).pop().expect("one answer")
    }
}
