//! HiFT, S3Gen's vocoder: mel (50 Hz) to 24 kHz audio.
//!
//! HiFTNet (Li et al., <https://arxiv.org/abs/2309.09493>): a neural-source-filter
//! harmonic source driven by a predicted F0 ([`source`], [`f0`]), fused into a
//! HiFi-GAN-style upsampler with Snake residual blocks ([`resblock`]), whose
//! output is a magnitude/phase spectrogram turned into samples by a 16-point
//! inverse STFT ([`stft`]). Reference: `HiFTGenerator` in chatterbox
//! `src/chatterbox/models/s3gen/hifigan.py` (from CosyVoice), built by
//! `S3Token2Wav` with upsample rates `[8, 5, 3]`: 480 samples per mel frame.

pub mod f0;
pub mod resblock;
pub mod source;
pub mod stream;
pub mod stft;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use self::f0::F0Predictor;
use self::resblock::ResBlock;
use self::source::{Noise, SineState, SourceModule};
use self::stft::{reflect_pad, Stft};
use crate::synth::chatterbox::s3gen::nn::{leaky_relu, Conv1d, ConvSpec, ConvTranspose1d};

/// HiFT's hyper-parameters (`HiFTGenerator.__init__` as `S3Token2Wav` calls it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HiftConfig {
    pub in_channels: usize,
    pub base_channels: usize,
    /// Channels of the F0 predictor's convolutions.
    pub f0_channels: usize,
    /// Harmonics above the fundamental.
    pub nb_harmonics: usize,
    pub sample_rate: u32,
    pub nsf_alpha: f32,
    pub nsf_sigma: f32,
    pub nsf_voiced_threshold: f32,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub n_fft: usize,
    pub hop_len: usize,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    pub source_resblock_kernel_sizes: Vec<usize>,
    pub source_resblock_dilation_sizes: Vec<Vec<usize>>,
    pub lrelu_slope: f64,
    pub audio_limit: f32,
}

impl Default for HiftConfig {
    fn default() -> Self {
        Self::chatterbox()
    }
}

impl HiftConfig {
    /// The vocoder of every Chatterbox model (Turbo, Nano, original): 24 kHz.
    pub fn chatterbox() -> Self {
        Self {
            in_channels: 80,
            base_channels: 512,
            f0_channels: 512,
            nb_harmonics: 8,
            sample_rate: 24_000,
            nsf_alpha: 0.1,
            nsf_sigma: 0.003,
            nsf_voiced_threshold: 10.0,
            upsample_rates: vec![8, 5, 3],
            upsample_kernel_sizes: vec![16, 11, 7],
            n_fft: 16,
            hop_len: 4,
            resblock_kernel_sizes: vec![3, 7, 11],
            resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            source_resblock_kernel_sizes: vec![7, 7, 11],
            source_resblock_dilation_sizes: vec![vec![1, 3, 5]; 3],
            lrelu_slope: 0.1,
            audio_limit: 0.99,
        }
    }

    /// Output samples per mel frame (480 at 24 kHz).
    pub fn samples_per_frame(&self) -> usize {
        self.upsample_rates.iter().product::<usize>() * self.hop_len
    }
}

/// What one vocoder call produced.
#[derive(Debug, Clone)]
pub struct HiftOutput {
    /// `[1, frames·480]`, within ±`audio_limit`.
    pub audio: Tensor,
    /// The excitation `[1, 1, frames·480]`.
    pub source: Tensor,
    /// F0 in Hz `[1, frames]`.
    pub f0: Tensor,
}

/// The vocoder.
#[derive(Debug, Clone)]
pub struct Hift {
    cfg: HiftConfig,
    f0_predictor: F0Predictor,
    source: SourceModule,
    stft: Stft,
    conv_pre: Conv1d,
    ups: Vec<ConvTranspose1d>,
    source_downs: Vec<Conv1d>,
    source_resblocks: Vec<ResBlock>,
    /// `ups.len() × resblock_kernel_sizes.len()` blocks, stage-major.
    resblocks: Vec<ResBlock>,
    conv_post: Conv1d,
}

impl Hift {
    /// Loads `mel2wav.*` (pass `vb.pp("mel2wav")`).
    pub fn load(cfg: &HiftConfig, vb: VarBuilder) -> Result<Self> {
        let stages = cfg.upsample_rates.len();
        if cfg.upsample_kernel_sizes.len() != stages
            || cfg.source_resblock_kernel_sizes.len() != stages
            || cfg.source_resblock_dilation_sizes.len() != stages
            || cfg.resblock_dilation_sizes.len() != cfg.resblock_kernel_sizes.len()
        {
            candle_core::bail!("HiftConfig: per-stage lists of different lengths");
        }
        let base = cfg.base_channels;
        let spec_channels = cfg.n_fft + 2;
        let f0_predictor = F0Predictor::load(cfg.in_channels, cfg.f0_channels, vb.pp("f0_predictor"))?;
        let source = SourceModule::load(cfg, vb.pp("m_source"))?;
        let stft = Stft::new(cfg.n_fft, cfg.hop_len, vb.device())?;
        let conv_pre = Conv1d::load_weight_norm(cfg.in_channels, base, ConvSpec::padded(7, 3), vb.pp("conv_pre"))?;
        let mut ups = Vec::with_capacity(stages);
        let mut source_downs = Vec::with_capacity(stages);
        let mut source_resblocks = Vec::with_capacity(stages);
        let mut resblocks = Vec::new();
        for i in 0..stages {
            let (u, k) = (cfg.upsample_rates[i], cfg.upsample_kernel_sizes[i]);
            let (c_in, c_out) = (base >> i, base >> (i + 1));
            ups.push(ConvTranspose1d::load_weight_norm(c_in, c_out, k, u, (k - u) / 2, vb.pp(format!("ups.{i}")))?);
            // The source spectrogram (hop rate) is brought down to this stage's rate.
            let down: usize = cfg.upsample_rates[i + 1..].iter().product();
            let spec = if down == 1 {
                ConvSpec::new(1)
            } else {
                ConvSpec::padded(2 * down, down / 2).stride(down)
            };
            source_downs.push(Conv1d::load(spec_channels, c_out, spec, vb.pp(format!("source_downs.{i}")))?);
            source_resblocks.push(ResBlock::load(
                c_out,
                cfg.source_resblock_kernel_sizes[i],
                &cfg.source_resblock_dilation_sizes[i],
                vb.pp(format!("source_resblocks.{i}")),
            )?);
            for (j, (&k, d)) in cfg.resblock_kernel_sizes.iter().zip(&cfg.resblock_dilation_sizes).enumerate() {
                let idx = i * cfg.resblock_kernel_sizes.len() + j;
                resblocks.push(ResBlock::load(c_out, k, d, vb.pp(format!("resblocks.{idx}")))?);
            }
        }
        let conv_post = Conv1d::load_weight_norm(base >> stages, spec_channels, ConvSpec::padded(7, 3), vb.pp("conv_post"))?;
        Ok(Self {
            cfg: cfg.clone(),
            f0_predictor,
            source,
            stft,
            conv_pre,
            ups,
            source_downs,
            source_resblocks,
            resblocks,
            conv_post,
        })
    }

    pub fn config(&self) -> &HiftConfig {
        &self.cfg
    }

    /// A fresh excitation state for one stream.
    pub fn sine_state(&self, seed: u64) -> SineState {
        self.source.state(seed)
    }

    /// F0 in Hz, `[1, n_mels, T]` -> `[1, T]`.
    pub fn f0(&self, mel: &Tensor) -> Result<Tensor> {
        self.f0_predictor.forward(mel)
    }

    /// The harmonic-plus-noise excitation for `f0` `[1, T]`: `[1, 1, T·480]`.
    pub fn source(&self, f0: &Tensor, state: &mut SineState, noise: Noise) -> Result<Tensor> {
        if f0.rank() == 2 && f0.dim(0)? != 1 {
            candle_core::bail!("HiFT runs one utterance at a time (F0 batch of {})", f0.dim(0)?);
        }
        let f0: Vec<f32> = f0.flatten_all()?.to_vec1()?;
        self.source.forward(&f0, state, noise, self.stft.device())
    }

    /// Mel `[B, n_mels, T]` and excitation `[B, 1, T·480]` to audio `[B, T·480]`
    /// (each row as it would be alone, to float rounding).
    pub fn decode(&self, mel: &Tensor, source: &Tensor) -> Result<Tensor> {
        let s_stft = self.stft.forward(&source.squeeze(1)?)?;
        let mut x = self.conv_pre.forward(mel)?;
        let kernels = self.cfg.resblock_kernel_sizes.len();
        for (i, up) in self.ups.iter().enumerate() {
            x = up.forward(&leaky_relu(&x, self.cfg.lrelu_slope)?)?;
            if i + 1 == self.ups.len() {
                x = reflect_pad(&x, 1, 0)?;
            }
            let si = self.source_resblocks[i].forward(&self.source_downs[i].forward(&s_stft)?)?;
            x = (x + si)?;
            let mut sum = self.resblocks[i * kernels].forward(&x)?;
            for block in &self.resblocks[i * kernels + 1..(i + 1) * kernels] {
                sum = (sum + block.forward(&x)?)?;
            }
            x = (sum / kernels as f64)?;
        }
        // The last activation uses PyTorch's default slope.
        x = self.conv_post.forward_leaky(&x, 0.01)?;
        let bins = self.stft.bins();
        let magnitude = x.narrow(1, 0, bins)?.exp()?.clamp(f32::MIN, 1e2f32)?;
        let phase = x.narrow(1, bins, bins)?.sin()?;
        let limit = self.cfg.audio_limit;
        self.stft.inverse(&magnitude, &phase)?.clamp(-limit, limit)
    }

    /// The whole vocoder on one mel `[1, n_mels, T]`.
    pub fn forward(&self, mel: &Tensor, state: &mut SineState, noise: Noise) -> Result<HiftOutput> {
        let f0 = self.f0(mel)?;
        let source = self.source(&f0, state, noise)?;
        let audio = self.decode(mel, &source)?;
        Ok(HiftOutput { audio, source, f0 })
    }
}
