//! Chatterbox-Turbo and Chatterbox-Nano (Resemble AI), run with candle.
//!
//! Reference: <https://github.com/resemble-ai/chatterbox> (`tts_turbo.py`,
//! `models/t3/`), PyPI `chatterbox-tts`. Text goes through
//!
//! * [`tokenizer`]: the reference's punctuation clean-up and GPT-2 BPE;
//! * [`t3`]: the GPT-2 ([`gpt2`]) language model that turns text into 25 Hz S3
//!   speech tokens, conditioned on a voice, drawing with [`sampling`];
//! * [`s3gen`] (meanflow decoder) and the [`hift`] vocoder, which turn speech
//!   tokens into 24 kHz audio, behind [`engine::SpeechRenderer`];
//! * [`engine`]: the streaming [`crate::synth::Engine`] over all of it.
//!
//! Parity with the reference PyTorch modules on random weights is checked by
//! `tests/chatterbox_parity_t3.rs` (fixtures from
//! `tests/reference/chatterbox_t3_reference.py`).

pub mod engine;
pub mod gpt2;
pub mod hift;
pub mod model;
pub mod render;
pub mod s3gen;
pub mod sampling;
pub mod t3;
pub mod tokenizer;

use std::path::PathBuf;

pub use self::render::S3GenRenderer;
pub use self::engine::{ChatterboxEngine, EngineConfig, RenderStream, SpeechRenderer, Variant, WholeUtterance};
pub use self::gpt2::{Gpt2, Gpt2Config, Gpt2State};
pub use self::sampling::{Sampler, SamplingParams};
pub use self::t3::{GenerateParams, Generation, T3Cond, T3Config, T3};
pub use self::tokenizer::{punc_norm, TextTokenizer};

/// What can go wrong loading or running a Chatterbox model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatterboxError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is missing: it holds {what}. --model-dir takes a copy of the repository ResembleAI/chatterbox-turbo or ResembleAI/chatterbox-nano; without --model-dir voxline downloads it from the hub (`voxline fetch-model`)")]
    MissingFile { path: PathBuf, what: &'static str },
    #[error("{path} is not a usable GPT-2 tokenizer file: {reason}")]
    BadTokenizer { path: PathBuf, reason: String },
    #[error("cannot tokenize the text: {0}")]
    Tokenize(String),
    #[error("{path} does not fit the {model} model: {reason}")]
    BadCheckpoint { path: PathBuf, model: String, reason: String },
    #[error("{path} is not a usable Chatterbox voice: {reason}")]
    BadVoice { path: PathBuf, reason: String },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    #[error("model computation failed: {}", first_line(.0))]
    Compute(#[from] candle_core::Error),
}

/// candle errors may carry a captured backtrace after the message; users get the message.
pub(crate) fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
