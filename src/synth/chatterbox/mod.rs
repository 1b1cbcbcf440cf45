//! Chatterbox (Resemble AI): <https://github.com/resemble-ai/chatterbox>.

pub mod hift;
pub mod s3gen;
