//! voxline: a media server for voice agents.
//!
//! Read in data-flow order:
//! text in -> [`text`] (clauses, phonemes) -> [`speech`] (which call's chunk
//! runs next) -> [`synth`] (streaming neural speech) -> [`audio`] (resample to
//! 8 kHz, mu-law) -> [`media`] (playout, pacer, RTP) -> [`server`] (SIP, WebRTC,
//! the control socket).

pub mod media;
pub mod metrics;
pub mod speech;
pub mod server;
pub mod text;
pub mod synth;
pub mod audio;
pub mod models;
pub mod hub;
#[doc(hidden)]
pub mod fuzzing;
