//! Streaming speech synthesis behind one interface.
//!
//! A request (a clause or a few sentences of text, plus voice options) goes in;
//! a [`SynthStream`] hands back [`PcmChunk`]s at the engine's sample rate as
//! soon as each is ready, so a packetizer can start on the first one. Each chunk
//! carries its position in the utterance, how long it took, and — where the
//! model knows them — phoneme and word timings.
//!
//! Streams are pulled (`next_chunk`) on a blocking thread; dropping a stream or
//! firing its [`CancelToken`] stops the work between two chunks. A GPU engine
//! that batches many calls implements the same traits: `start` registers the
//! request with its scheduler and the stream receives that request's chunks.

pub mod chatterbox;
pub mod heap;
pub mod huge_pages;
pub mod piper;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use self::piper::{PiperEngine, PiperError, PiperVoice};
use crate::text::TextError;

/// Longest text one request may carry. Agents speak clause by clause; a
/// request this long is almost certainly a mistake (about 15 minutes of speech).
pub const MAX_REQUEST_CHARS: usize = 20_000;

/// What to say, and how.
#[derive(Debug, Clone, Default)]
pub struct SynthRequest {
    pub text: String,
    pub options: SynthOptions,
}

impl SynthRequest {
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), options: SynthOptions::default() }
    }
}

/// Per-request voice options; `None` means the voice's own default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthOptions {
    /// Speaker of a multi-speaker voice: a numeric id or a name from the voice.
    pub speaker: Option<String>,
    pub noise_scale: Option<f32>,
    pub length_scale: Option<f32>,
    pub noise_w: Option<f32>,
    /// Seed for the model's noise, for reproducible output.
    pub seed: Option<u64>,
    /// Latency against quality; the engine's configuration when `None`.
    pub preset: Option<Preset>,
}

/// How a request trades first-audio latency against quality.
///
/// The engine applies it to its decoding (Piper: the streaming windows); the
/// control socket also applies it to how text is cut into clauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Smallest first window: audio starts soonest; more decode overhead.
    Realtime,
    /// The default streaming windows.
    #[default]
    Balanced,
    /// Each sentence decoded whole, bit-identical to offline synthesis; the
    /// first audio waits for the whole sentence.
    Fidelity,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Realtime, Preset::Balanced, Preset::Fidelity];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Realtime => "realtime",
            Preset::Balanced => "balanced",
            Preset::Fidelity => "fidelity",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    /// [`parse`](Self::parse), with the message a user gets for a bad name.
    pub fn from_name(name: &str) -> Result<Self, String> {
        Self::parse(name).ok_or_else(|| format!("unknown preset `{name}`: realtime, balanced or fidelity"))
    }
}

/// A span of the utterance that a chunk's audio covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    pub kind: AlignmentKind,
    /// The phoneme (IPA) or the word as written.
    pub text: String,
    /// Sample offsets in the utterance, at the engine's rate, end exclusive.
    pub start_sample: u64,
    pub end_sample: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignmentKind {
    Phoneme,
    Word,
}

/// A piece of synthesized audio.
#[derive(Debug, Clone)]
pub struct PcmChunk {
    /// Mono samples in [-1, 1].
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Offset of `samples[0]` in the utterance.
    pub start_sample: u64,
    /// Index of the sentence this chunk belongs to.
    pub sentence: usize,
    /// Phonemes and words that start inside this chunk.
    pub alignments: Vec<Alignment>,
    /// When the engine finished this chunk.
    pub ready_at: Instant,
    /// Compute time spent on this chunk alone.
    pub compute: Duration,
    /// No chunk follows.
    pub last: bool,
}

impl PcmChunk {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / self.sample_rate as f64)
    }
}

/// Stops a stream between chunks; cheap to clone and to check.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Errors a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    #[error("nothing to say: the text is empty or has no speakable characters")]
    EmptyText,
    #[error("text is {chars} characters; one request takes at most {max} (send it in smaller pieces)")]
    TextTooLong { chars: usize, max: usize },
    #[error("synthesis was cancelled")]
    Cancelled,
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    Piper(#[from] PiperError),
    #[error(transparent)]
    Chatterbox(#[from] chatterbox::ChatterboxError),
}

/// Facts about an engine and its voice.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub engine: &'static str,
    pub voice: String,
    pub sample_rate: u32,
    pub speakers: Vec<String>,
}

/// A streaming synthesizer.
pub trait Engine: Send + Sync {
    fn info(&self) -> EngineInfo;

    /// Starts synthesizing `request`. Validation errors (bad options, empty
    /// text, unknown speaker) come back here, before any audio.
    fn start(&self, request: SynthRequest, cancel: CancelToken) -> Result<Box<dyn SynthStream>, SynthError>;

    /// How many streams [`next_chunks`](Self::next_chunks) gains from taking
    /// at once; 1 for an engine that does not batch.
    fn max_batch(&self) -> usize {
        1
    }

    /// Advances each of `streams` (all started by this engine) by one chunk,
    /// in one batched computation where the engine can, answering in order.
    /// Each answer is what that stream's own `next_chunk` would have given
    /// (within the tolerance the engine's batch test states); one stream's
    /// error does not touch the others. The default runs them one at a time.
    fn next_chunks(&self, streams: &mut [&mut dyn SynthStream]) -> Vec<Result<Option<PcmChunk>, SynthError>> {
        streams.iter_mut().map(|s| s.next_chunk()).collect()
    }
}

/// The chunks of one request, in order.
pub trait SynthStream: Send {
    /// The next chunk, or `Ok(None)` once the utterance is complete.
    fn next_chunk(&mut self) -> Result<Option<PcmChunk>, SynthError>;

    /// The stream as `Any`, so an engine's [`Engine::next_chunks`] can find
    /// its own stream type behind the trait object.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

/// Convenience: the whole utterance as one buffer.
pub fn synthesize_all(engine: &dyn Engine, request: SynthRequest) -> Result<Vec<f32>, SynthError> {
    let mut stream = engine.start(request, CancelToken::new())?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next_chunk()? {
        out.extend_from_slice(&chunk.samples);
    }
    Ok(out)
}
