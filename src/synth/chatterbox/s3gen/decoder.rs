//! S3Gen's flow estimator: a 1-D U-Net of causal ResNet blocks and
//! transformer blocks that predicts the (mean) velocity of the mel.
//!
//! Reference: `ConditionalDecoder` in chatterbox
//! `src/chatterbox/models/s3gen/decoder.py` (from CosyVoice / Matcha-TTS,
//! <https://arxiv.org/abs/2309.03199>), its blocks in `matcha/decoder.py` and
//! `matcha/transformer.py` (diffusers' `BasicTransformerBlock`). In meanflow
//! mode (Geng et al., <https://arxiv.org/abs/2505.13447>) both the start time
//! `t` and the end time `r` are embedded and mixed by a bias-free linear layer
//! (IntMeanFlow, <https://arxiv.org/abs/2510.07979> §3.3).
//!
//! With a single channel width (the only configuration Chatterbox uses) the
//! "U" has one level: down (ResNet + blocks + causal conv), `num_mid_blocks`
//! × (ResNet + blocks), up (skip concat, ResNet + blocks + causal conv), final
//! causal block and a 1×1 projection. Attention is full (bidirectional); the
//! padding masks of the reference are all ones when every row of a batch has
//! the same length (batch size 1, or [`super::flow::S3Flow::mel_batch`]'s
//! equal windows) and are omitted.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{layer_norm, linear, linear_no_bias, LayerNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::nn::{mish, Conv1d, ConvSpec};

/// Sizes of the estimator (`S3Token2Mel.__init__`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DecoderConfig {
    /// `x`, `mu`, speaker and prompt condition stacked: 4 × 80.
    pub in_channels: usize,
    pub out_channels: usize,
    pub channels: usize,
    pub attention_head_dim: usize,
    /// Transformer blocks per ResNet block.
    pub n_blocks: usize,
    pub num_mid_blocks: usize,
    pub num_heads: usize,
    /// Embed `r` as well as `t` (the meanflow checkpoints).
    pub meanflow: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            in_channels: 320,
            out_channels: 80,
            channels: 256,
            attention_head_dim: 64,
            n_blocks: 4,
            num_mid_blocks: 12,
            num_heads: 8,
            meanflow: true,
        }
    }
}

/// `SinusoidalPosEmb(dim)` at scale 1000: `[sin(1000·t·ωᵢ), cos(1000·t·ωᵢ)]`.
fn time_features(t: f32, dim: usize, device: &candle_core::Device) -> Result<Tensor> {
    let half = dim / 2;
    let step = (10000f64.ln() / (half - 1) as f64) as f32;
    let scaled = 1000f32 * t;
    let args: Vec<f32> = (0..half).map(|i| scaled * (i as f32 * -step).exp()).collect();
    let mut v: Vec<f32> = args.iter().map(|a| a.sin()).collect();
    v.extend(args.iter().map(|a| a.cos()));
    Tensor::from_vec(v, (1, dim), device)
}

/// `CausalBlock1D`: causal conv (k=3), LayerNorm over channels, Mish.
#[derive(Debug, Clone)]
struct CausalBlock {
    conv: Conv1d,
    norm: LayerNorm,
}

impl CausalBlock {
    fn load(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { conv: Conv1d::load(c_in, c_out, ConvSpec::causal(3), vb.pp("block.0"))?, norm: layer_norm(c_out, 1e-5, vb.pp("block.2"))? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // candle's fused LayerNorm needs a contiguous input.
        let h = self.conv.forward(x)?.transpose(1, 2)?.contiguous()?;
        mish(&self.norm.forward(&h)?.transpose(1, 2)?)
    }
}

/// `CausalResnetBlock1D`: two causal blocks, the time embedding added between
/// them, and a 1×1 residual projection.
#[derive(Debug, Clone)]
struct ResnetBlock {
    block1: CausalBlock,
    block2: CausalBlock,
    time: Linear,
    res_conv: Conv1d,
}

impl ResnetBlock {
    fn load(c_in: usize, c_out: usize, time_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            block1: CausalBlock::load(c_in, c_out, vb.pp("block1"))?,
            block2: CausalBlock::load(c_out, c_out, vb.pp("block2"))?,
            time: linear(time_dim, c_out, vb.pp("mlp.1"))?,
            res_conv: Conv1d::load(c_in, c_out, ConvSpec::new(1), vb.pp("res_conv"))?,
        })
    }

    /// `x` `[B, C, T]`, `temb` `[B, time_dim]`.
    fn forward(&self, x: &Tensor, temb: &Tensor) -> Result<Tensor> {
        let h = self.block1.forward(x)?;
        let h = h.broadcast_add(&self.time.forward(&mish(temb)?)?.unsqueeze(2)?)?;
        self.block2.forward(&h)? + self.res_conv.forward(x)?
    }
}

/// diffusers' `BasicTransformerBlock` as configured here: pre-norm
/// self-attention (no q/k/v bias) and a GELU (erf) feed-forward.
#[derive(Debug, Clone)]
struct TransformerBlock {
    norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm3: LayerNorm,
    ff1: Linear,
    ff2: Linear,
    heads: usize,
    head_dim: usize,
}

impl TransformerBlock {
    fn load(dim: usize, heads: usize, head_dim: usize, vb: VarBuilder) -> Result<Self> {
        let inner = heads * head_dim;
        let attn = vb.pp("attn1");
        Ok(Self {
            norm1: layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            q: linear_no_bias(dim, inner, attn.pp("to_q"))?,
            k: linear_no_bias(dim, inner, attn.pp("to_k"))?,
            v: linear_no_bias(dim, inner, attn.pp("to_v"))?,
            out: linear(inner, dim, attn.pp("to_out.0"))?,
            norm3: layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff1: linear(dim, 4 * dim, vb.pp("ff.net.0.proj"))?,
            ff2: linear(4 * dim, dim, vb.pp("ff.net.2"))?,
            heads,
            head_dim,
        })
    }

    /// `[B, T, C]` -> `[B, T, C]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let h = self.norm1.forward(x)?;
        let split = |y: Tensor| -> Result<Tensor> { y.reshape((b, t, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous() };
        let q = split(self.q.forward(&h)?)?;
        let k = split(self.k.forward(&h)?)?;
        let v = split(self.v.forward(&h)?)?;
        let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * (self.head_dim as f64).powf(-0.5))?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let attn = attn.transpose(1, 2)?.reshape((b, t, self.heads * self.head_dim))?;
        let x = (x + self.out.forward(&attn)?)?;
        let h = self.ff1.forward(&self.norm3.forward(&x)?)?.gelu_erf()?;
        x + self.ff2.forward(&h)?
    }
}

/// A ResNet block followed by transformer blocks (and, down and up, a causal conv).
#[derive(Debug, Clone)]
struct Stage {
    resnet: ResnetBlock,
    blocks: Vec<TransformerBlock>,
    conv: Option<Conv1d>,
}

impl Stage {
    fn load(cfg: &DecoderConfig, c_in: usize, with_conv: bool, vb: VarBuilder) -> Result<Self> {
        let c = cfg.channels;
        let time_dim = 4 * c;
        let blocks = (0..cfg.n_blocks)
            .map(|i| TransformerBlock::load(c, cfg.num_heads, cfg.attention_head_dim, vb.pp(format!("1.{i}"))))
            .collect::<Result<_>>()?;
        let conv = if with_conv { Some(Conv1d::load(c, c, ConvSpec::causal(3), vb.pp("2"))?) } else { None };
        Ok(Self { resnet: ResnetBlock::load(c_in, c, time_dim, vb.pp("0"))?, blocks, conv })
    }

    /// Returns the output of the transformer blocks and, if there is a
    /// convolution, its output.
    fn forward(&self, x: &Tensor, temb: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let mut h = self.resnet.forward(x, temb)?.transpose(1, 2)?.contiguous()?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        let h = h.transpose(1, 2)?.contiguous()?;
        let conv = self.conv.as_ref().map(|c| c.forward(&h)).transpose()?;
        Ok((h, conv))
    }
}

/// The estimator `v(x, mu, t, r | spks, cond)`.
#[derive(Debug, Clone)]
pub struct ConditionalDecoder {
    cfg: DecoderConfig,
    time_1: Linear,
    time_2: Linear,
    time_mixer: Option<Linear>,
    down: Stage,
    mid: Vec<Stage>,
    up: Stage,
    final_block: CausalBlock,
    final_proj: Conv1d,
}

impl ConditionalDecoder {
    /// Loads `flow.decoder.estimator.*`.
    pub fn load(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.channels;
        let time_dim = 4 * c;
        let tm = vb.pp("time_mlp");
        let time_mixer = if cfg.meanflow { Some(linear_no_bias(2 * time_dim, time_dim, vb.pp("time_embed_mixer"))?) } else { None };
        let mid = (0..cfg.num_mid_blocks)
            .map(|i| Stage::load(cfg, c, false, vb.pp(format!("mid_blocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            time_1: linear(cfg.in_channels, time_dim, tm.pp("linear_1"))?,
            time_2: linear(time_dim, time_dim, tm.pp("linear_2"))?,
            time_mixer,
            down: Stage::load(cfg, cfg.in_channels, true, vb.pp("down_blocks.0"))?,
            mid,
            up: Stage::load(cfg, 2 * c, true, vb.pp("up_blocks.0"))?,
            final_block: CausalBlock::load(c, c, vb.pp("final_block"))?,
            final_proj: Conv1d::load(c, cfg.out_channels, ConvSpec::new(1), vb.pp("final_proj"))?,
        })
    }

    fn embed_time(&self, t: f32, device: &candle_core::Device) -> Result<Tensor> {
        let f = time_features(t, self.cfg.in_channels, device)?;
        self.time_2.forward(&self.time_1.forward(&f)?.silu()?)
    }

    /// `x`, `mu`, `cond` `[B, 80, T]`, `spks` `[1, 80]` (one voice for the
    /// batch) or `[B, 80]`; `r` is used in meanflow mode.
    pub fn forward(&self, x: &Tensor, mu: &Tensor, t: f32, r: f32, spks: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let dev = x.device();
        let mut temb = self.embed_time(t, dev)?;
        if let Some(mixer) = &self.time_mixer {
            temb = mixer.forward(&Tensor::cat(&[temb, self.embed_time(r, dev)?], 1)?)?;
        }
        let (b, _, len) = x.dims3()?;
        let spks = spks.unsqueeze(2)?.broadcast_as((b, spks.dim(1)?, len))?;
        let h = Tensor::cat(&[x, mu, &spks, cond], 1)?;

        let (skip, down) = self.down.forward(&h, &temb)?;
        let mut h = down.expect("the down stage has a convolution");
        for stage in &self.mid {
            h = stage.forward(&h, &temb)?.0;
        }
        let h = Tensor::cat(&[h.narrow(D::Minus1, 0, skip.dim(D::Minus1)?)?, skip], 1)?;
        let h = self.up.forward(&h, &temb)?.1.expect("the up stage has a convolution");
        self.final_proj.forward(&self.final_block.forward(&h)?)
    }
}
