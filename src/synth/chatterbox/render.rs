//! S3Gen + HiFT as the engine's [`SpeechRenderer`]: speech tokens in as T3
//! draws them, 24 kHz audio out chunk by chunk ([`S3GenStream`]).

use std::path::Path;

use candle_core::Device;

use super::engine::{RenderStream, SpeechRenderer};
use super::s3gen::batch;
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

    /// The streams whose steps have equal shapes run S3Gen and HiFT's decode
    /// as one batch ([`batch::push_batch`]); a stream of another renderer
    /// type is pushed on its own.
    fn push_many(&self, streams: &mut [&mut dyn RenderStream], tokens: &[&[u32]]) -> Vec<Result<Vec<f32>, ChatterboxError>> {
        let mut answers: Vec<Option<Result<Vec<f32>, ChatterboxError>>> = (0..streams.len()).map(|_| None).collect();
        let (mut mine, mut mine_tokens, mut at) = (Vec::new(), Vec::new(), Vec::new());
        for (i, stream) in streams.iter_mut().enumerate() {
            let t = tokens.get(i).copied().unwrap_or_default();
            if !stream.as_any_mut().is::<Render>() {
                answers[i] = Some(stream.push(t));
            } else if let Some(Render(s)) = stream.as_any_mut().downcast_mut::<Render>() {
                mine.push(s);
                mine_tokens.push(t);
                at.push(i);
            }
        }
        for (i, r) in at.into_iter().zip(batch::push_batch(&self.s3gen, &mut mine, &mine_tokens)) {
            answers[i] = Some(r.map_err(ChatterboxError::Compute));
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Ok(Vec::new()))).collect()
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
