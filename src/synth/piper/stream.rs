//! Streaming synthesis with a Piper voice (filled in below).
pub struct PiperEngine;
pub struct StreamConfig;
