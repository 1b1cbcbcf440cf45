//! S3Gen, meanflow variant: S3 speech tokens (25 Hz) to 24 kHz audio, as
//! Chatterbox-Turbo and Chatterbox-Nano run it (`s3gen_meanflow.safetensors`,
//! the same file in both repositories).
//!
//! Reference: `S3Token2Wav` in chatterbox `src/chatterbox/models/s3gen/s3gen.py`
//! (<https://github.com/resemble-ai/chatterbox>, PyPI `chatterbox-tts` 0.1.7),
//! adapted from CosyVoice 2 (<https://arxiv.org/abs/2412.10117>):
//!
//! ```text
//! tokens ─ embed ─ UpsampleConformerEncoder (×2) ─ Linear → mu ─┐
//! prompt mel → cond, x-vector → spks, noise x₀ ──────────────── meanflow Euler (2 steps) → mel ─ HiFT → audio
//! ```
//! [`flow`] holds the token-to-mel half ([`encoder`], [`decoder`]),
//! [`crate::synth::chatterbox::hift`] the vocoder, [`conds`] the built-in voice
//! and [`stream`] the chunked driver ([`batch`]: several streams stepped as one batch). Checkpoint names appear only in
//! `vb.pp(..)`: `flow.*` and `mel2wav.*` as in the reference state dict.

pub mod batch;
pub mod conds;
pub mod decoder;
pub mod encoder;
pub mod flow;
pub mod nn;
pub mod stream;

use std::path::PathBuf;

use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::VarBuilder;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use self::decoder::DecoderConfig;
use self::encoder::EncoderConfig;
use self::flow::{S3Flow, VoiceConds};
use crate::synth::chatterbox::hift::source::{Noise, SineState};
use crate::synth::chatterbox::hift::{Hift, HiftConfig};

/// S3Gen's speech-token vocabulary (3⁸ FSQ codes).
pub const SPEECH_VOCAB_SIZE: usize = 6561;
/// The silence token Turbo appends three times after T3's output (`S3GEN_SIL`).
pub const SILENCE_TOKEN: u32 = 4299;
/// Output sample rate.
pub const SAMPLE_RATE: u32 = 24_000;

/// Errors a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3GenError {
    #[error("{}: not a usable conds.pt: {reason}", path.display())]
    Conds { path: PathBuf, reason: String },
    #[error("{}: cannot load S3Gen weights ({source}); expected s3gen_meanflow.safetensors from ResembleAI/chatterbox-turbo", path.display())]
    Weights { path: PathBuf, source: candle_core::Error },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Hyper-parameters of S3Gen + HiFT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct S3GenConfig {
    pub vocab_size: usize,
    pub n_mels: usize,
    /// x-vector size (CAMPPlus).
    pub spk_embed_dim: usize,
    /// Meanflow Euler steps (Turbo's code uses 2; 1 is faster and a little worse).
    pub n_timesteps: usize,
    pub encoder: EncoderConfig,
    pub decoder: DecoderConfig,
    pub hift: HiftConfig,
}

impl Default for S3GenConfig {
    fn default() -> Self {
        Self::turbo()
    }
}

impl S3GenConfig {
    /// Chatterbox-Turbo (`ResembleAI/chatterbox-turbo`, `s3gen_meanflow.safetensors`).
    pub fn turbo() -> Self {
        Self {
            vocab_size: SPEECH_VOCAB_SIZE,
            n_mels: 80,
            spk_embed_dim: 192,
            n_timesteps: 2,
            encoder: EncoderConfig::default(),
            decoder: DecoderConfig::default(),
            hift: HiftConfig::chatterbox(),
        }
    }

    /// Chatterbox-Nano: the same S3Gen file as Turbo.
    pub fn nano() -> Self {
        Self::turbo()
    }

    /// Mel frames per speech token.
    pub fn mel_frames_per_token(&self) -> usize {
        self.encoder.upsample_stride
    }

    /// Output samples per speech token (960 at 24 kHz).
    pub fn samples_per_token(&self) -> usize {
        self.mel_frames_per_token() * self.hift.samples_per_frame()
    }
}

/// T3's output as Turbo hands it to S3Gen (`ChatterboxTurboTTS.generate`):
/// tokens outside the speech vocabulary (start/stop) dropped, three
/// [`SILENCE_TOKEN`]s appended.
pub fn prepare_tokens(t3_tokens: &[u32]) -> Vec<u32> {
    let mut tokens: Vec<u32> = t3_tokens.iter().copied().filter(|&t| (t as usize) < SPEECH_VOCAB_SIZE).collect();
    tokens.extend([SILENCE_TOKEN; 3]);
    tokens
}

/// `trim_fade`: the first 20 ms silenced, the next 20 ms a raised-cosine
/// fade-in (`S3Token2Wav.__init__`), against spill-over from the prompt.
pub fn trim_fade(sample_rate: u32) -> Vec<f32> {
    let n = (sample_rate / 50) as usize;
    let mut fade = vec![0f32; 2 * n];
    // (cos(torch.linspace(π, 0, n)) + 1) / 2, linspace in f32 as torch steps it.
    let (start, end) = (std::f32::consts::PI, 0f32);
    let step = (end - start) / (n - 1) as f32;
    for i in 0..n {
        let x = if i < n / 2 { start + i as f32 * step } else { end - (n - 1 - i) as f32 * step };
        fade[n + i] = (x.cos() + 1.0) / 2.0;
    }
    fade
}

/// Standard normal noise `[1, channels, frames]`.
pub fn gaussian(channels: usize, frames: usize, rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..channels * frames).map(|_| rng.sample(StandardNormal)).collect();
    Tensor::from_vec(v, (1, channels, frames), device)
}

/// Tokens to audio.
#[derive(Debug, Clone)]
pub struct S3Gen {
    cfg: S3GenConfig,
    pub flow: S3Flow,
    pub hift: Hift,
    fade: Tensor,
}

impl S3Gen {
    /// Loads from a `VarBuilder` over the checkpoint's root (`flow.*`, `mel2wav.*`).
    pub fn load(cfg: &S3GenConfig, vb: VarBuilder) -> Result<Self> {
        let fade = trim_fade(cfg.hift.sample_rate);
        let fade = Tensor::from_vec(fade.clone(), (1, fade.len()), vb.device())?;
        Ok(Self { cfg: cfg.clone(), flow: S3Flow::load(cfg, vb.pp("flow"))?, hift: Hift::load(&cfg.hift, vb.pp("mel2wav"))?, fade })
    }

    /// Memory-maps `s3gen_meanflow.safetensors` (f32 on `device`).
    pub fn from_safetensors(cfg: &S3GenConfig, path: &std::path::Path, device: &Device) -> std::result::Result<Self, S3GenError> {
        let err = |source| S3GenError::Weights { path: path.to_owned(), source };
        // SAFETY: the file is not modified while mapped (model files are read-only in use).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }.map_err(err)?;
        Self::load(cfg, vb).map_err(err)
    }

    pub fn config(&self) -> &S3GenConfig {
        &self.cfg
    }

    /// Whole-utterance synthesis (`S3Token2Wav.inference`, `finalize=True`):
    /// tokens (with Turbo's trailing silence tokens already appended) to
    /// `[1, 2·N·480]` audio with the trim fade applied. `x0` covers prompt and
    /// new frames ([`S3Flow::total_frames`]); the excitation comes from `sine`.
    pub fn synthesize(&self, voice: &VoiceConds, tokens: &[u32], x0: &Tensor, sine: &mut SineState, noise: Noise) -> Result<Tensor> {
        let mel = self.flow.mel(voice, tokens, x0, self.cfg.n_timesteps, true)?;
        let audio = self.hift.forward(&mel, sine, noise)?.audio;
        self.apply_fade(&audio)
    }

    /// [`Self::synthesize`] with its noise drawn from `seed` (the same noise a
    /// [`stream::S3GenStream`] with that seed uses): samples at 24 kHz.
    pub fn generate(&self, voice: &VoiceConds, tokens: &[u32], seed: u64) -> Result<Vec<f32>> {
        let device = voice.prompt_feat.device();
        let mut tape = stream::NoiseTape::new(self.cfg.n_mels, voice.prompt_feat.dim(1)?, seed);
        let x0 = tape.x0(0, tokens.len() * self.cfg.mel_frames_per_token(), device)?;
        let mut sine = self.hift.sine_state(seed.wrapping_add(1));
        self.synthesize(voice, tokens, &x0, &mut sine, Noise::Drawn)?.flatten_all()?.to_vec1()
    }

    /// Multiplies the start of an utterance by [`trim_fade`].
    pub fn apply_fade(&self, audio: &Tensor) -> Result<Tensor> {
        let len = audio.dim(D::Minus1)?;
        let n = self.fade.dim(1)?.min(len);
        let head = audio.narrow(D::Minus1, 0, n)?.broadcast_mul(&self.fade.narrow(1, 0, n)?)?;
        Tensor::cat(&[head, audio.narrow(D::Minus1, n, len - n)?], D::Minus1)
    }
}
