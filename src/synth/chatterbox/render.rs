//! S3Gen + HiFT as the engine's [`SpeechRenderer`]: speech tokens in as T3
//! draws them, 24 kHz audio out chunk by chunk ([`S3GenStream`]).

use std::path::Path;

use candle_core::Device;

use super::engine::{RenderStream, SpeechRenderer};
use super::s3gen::conds::BuiltinVoice;
use super::s3gen::flow::VoiceConds;
use super::s3gen::stream::{S3GenStream, S3GenStreamConfig};
use super::s3gen::{S3Gen, S3GenConfig, S3GenError};
use super::{first_line, ChatterboxError};

/// The token-to-audio model file of both Turbo and Nano (byte-identical in the two repositories).
pub const S3GEN_FILE: &str = "s3gen_meanflow.safetensors";
/// The built-in voice.
pub const CONDS_FILE: &str = "conds.pt";

/// S3Gen + HiFT with the built-in voice.
pub struct S3GenRenderer {
    s3gen: S3Gen,
    voice: VoiceConds,
    stream: S3GenStreamConfig,
}

fn convert(e: S3GenError) -> ChatterboxError {
    match e {
        S3GenError::Conds { path, reason } => ChatterboxError::BadVoice { path, reason },
        S3GenError::Weights { path, source } => {
            ChatterboxError::BadCheckpoint { path, model: "S3Gen (meanflow)".into(), reason: first_line(&source) }
        }
        S3GenError::Candle(e) => ChatterboxError::Compute(e),
    }
}

impl S3GenRenderer {
    /// Reads `s3gen_meanflow.safetensors` and `conds.pt` from a model directory.
    pub fn load(dir: &Path, device: &Device, stream: S3GenStreamConfig) -> Result<Self, ChatterboxError> {
        Self::load_with(dir, &S3GenConfig::turbo(), device, stream)
    }

    /// [`load`](Self::load) at other shapes.
    pub fn load_with(
        dir: &Path,
        config: &S3GenConfig,
        device: &Device,
        stream: S3GenStreamConfig,
    ) -> Result<Self, ChatterboxError> {
        let weights = dir.join(S3GEN_FILE);
        if !weights.is_file() {
            return Err(ChatterboxError::MissingFile { path: weights, what: "the S3Gen (meanflow) and HiFT weights" });
        }
        let conds = dir.join(CONDS_FILE);
        if !conds.is_file() {
            return Err(ChatterboxError::MissingFile { path: conds, what: "the built-in voice" });
        }
        let s3gen = S3Gen::from_safetensors(config, &weights, device).map_err(convert)?;
        let voice = BuiltinVoice::load(&conds, device).map_err(convert)?.gen;
        Ok(Self { s3gen, voice, stream })
    }

    pub fn from_parts(s3gen: S3Gen, voice: VoiceConds, stream: S3GenStreamConfig) -> Self {
        Self { s3gen, voice, stream }
    }
}

impl SpeechRenderer for S3GenRenderer {
    fn sample_rate(&self) -> u32 {
        self.s3gen.config().hift.sample_rate
    }

    fn start(&self, seed: u64) -> Result<Box<dyn RenderStream>, ChatterboxError> {
        let cfg = S3GenStreamConfig { seed, ..self.stream };
        Ok(Box::new(Render(S3GenStream::new(&self.s3gen, self.voice.clone(), cfg)?)))
    }
}

struct Render(S3GenStream);

impl RenderStream for Render {
    fn push(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ChatterboxError> {
        Ok(self.0.push(tokens)?)
    }

    fn finish(&mut self) -> Result<Vec<f32>, ChatterboxError> {
        Ok(self.0.finish()?)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
