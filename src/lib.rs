//! voxline: a media server for voice agents.
//!
//! Read in data-flow order:
//! text in -> [`text`] (clauses, phonemes) -> [`synth`] (streaming neural speech)
//! -> [`audio`] (resample to 8 kHz, mu-law) -> packetizer and transports (later issues).

pub mod media;
pub mod server;
pub mod text;
pub mod synth;
pub mod audio;
pub mod models;
pub mod hub;
