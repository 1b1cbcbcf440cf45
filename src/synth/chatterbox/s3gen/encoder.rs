//! S3Gen's token encoder: a Conformer (without convolution modules) that
//! upsamples 25 Hz token embeddings to the 50 Hz mel rate.
//!
//! Reference: `UpsampleConformerEncoder` in chatterbox
//! `src/chatterbox/models/s3gen/transformer/upsample_encoder.py` (from
//! CosyVoice 2), with `RelPositionMultiHeadedAttention` (`attention.py`,
//! Transformer-XL's relative attention, Dai et al. 2019,
//! <https://arxiv.org/abs/1901.02860>, §3.3 and appendix B) and ESPnet's
//! relative positional table (`embedding.py::EspnetRelPositionalEncoding`).
//!
//! ```text
//! Linear+LayerNorm, ×√d ─ PreLookahead ─ N × layer ─ ×2 nearest + conv ─ Linear+LayerNorm, ×√d ─ M × layer ─ LayerNorm
//! layer: x += RelMHA(LN(x), pos); x += FF_swish(LN(x))
//! ```
//! Attention is bidirectional over the whole sequence (no chunk masks at
//! inference), so a longer input changes every output frame.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{layer_norm, linear, linear_no_bias, LayerNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::nn::{leaky_relu, repeat_nearest, Conv1d, ConvSpec};

/// Sizes of the encoder (`S3Token2Mel.__init__`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncoderConfig {
    pub input_size: usize,
    pub output_size: usize,
    pub attention_heads: usize,
    pub linear_units: usize,
    /// Layers before the upsampling.
    pub num_blocks: usize,
    /// Layers after it (hard-coded 4 in the reference).
    pub num_up_blocks: usize,
    /// Future tokens the pre-lookahead convolution sees.
    pub pre_lookahead_len: usize,
    /// Mel frames per token.
    pub upsample_stride: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            input_size: 512,
            output_size: 512,
            attention_heads: 8,
            linear_units: 2048,
            num_blocks: 6,
            num_up_blocks: 4,
            pre_lookahead_len: 3,
            upsample_stride: 2,
        }
    }
}

/// ESPnet's relative positional table for `len` frames: `[1, 2·len − 1, d]`,
/// row `k` encoding relative position `len − 1 − k` (sin at even channels,
/// cos at odd), computed in f32 as the reference does.
pub fn rel_positions(len: usize, d: usize, device: &candle_core::Device) -> Result<Tensor> {
    let scale = -(10000f64.ln() / d as f64) as f32;
    let div: Vec<f32> = (0..d / 2).map(|i| ((2 * i) as f32 * scale).exp()).collect();
    let rows = 2 * len - 1;
    let mut pe = vec![0f32; rows * d];
    for k in 0..rows {
        let rel = len as i64 - 1 - k as i64;
        for (i, &dv) in div.iter().enumerate() {
            let a = (rel.unsigned_abs() as f32 * dv) * if rel < 0 { -1.0 } else { 1.0 };
            pe[k * d + 2 * i] = a.sin();
            pe[k * d + 2 * i + 1] = a.cos();
        }
    }
    Tensor::from_vec(pe, (1, rows, d), device)
}

/// `LinearNoSubsampling` + `EspnetRelPositionalEncoding`: `Linear`, `LayerNorm`,
/// scaled by `√d`; also returns the positional table.
#[derive(Debug, Clone)]
struct InputLayer {
    linear: Linear,
    norm: LayerNorm,
    d: usize,
}

impl InputLayer {
    fn load(input: usize, d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { linear: linear(input, d, vb.pp("out.0"))?, norm: layer_norm(d, 1e-5, vb.pp("out.1"))?, d })
    }

    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = (self.norm.forward(&self.linear.forward(x)?)? * (self.d as f64).sqrt())?;
        let pos = rel_positions(x.dim(1)?, self.d, x.device())?;
        Ok((x, pos))
    }
}

/// Multi-head attention with Transformer-XL relative positions.
#[derive(Debug, Clone)]
struct RelAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    pos: Linear,
    /// `[1, H, 1, d_k]`.
    bias_u: Tensor,
    bias_v: Tensor,
    heads: usize,
    d_k: usize,
}

impl RelAttention {
    fn load(d: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let d_k = d / heads;
        Ok(Self {
            q: linear(d, d, vb.pp("linear_q"))?,
            k: linear(d, d, vb.pp("linear_k"))?,
            v: linear(d, d, vb.pp("linear_v"))?,
            out: linear(d, d, vb.pp("linear_out"))?,
            pos: linear_no_bias(d, d, vb.pp("linear_pos"))?,
            bias_u: vb.get((heads, d_k), "pos_bias_u")?.reshape((1, heads, 1, d_k))?,
            bias_v: vb.get((heads, d_k), "pos_bias_v")?.reshape((1, heads, 1, d_k))?,
            heads,
            d_k,
        })
    }

    /// `[B, T, d]` -> `[B, H, T, d_k]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.heads, self.d_k))?.transpose(1, 2)?.contiguous()
    }

    fn forward(&self, x: &Tensor, pos: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let q = self.split(&self.q.forward(x)?)?;
        let k = self.split(&self.k.forward(x)?)?;
        let v = self.split(&self.v.forward(x)?)?;
        let p = self.split(&self.pos.forward(pos)?)?; // [1, H, 2T−1, d_k]
        let kt = k.transpose(2, 3)?.contiguous()?;
        let ac = q.broadcast_add(&self.bias_u)?.matmul(&kt)?;
        let p = p.broadcast_as((b, self.heads, 2 * t - 1, self.d_k))?.transpose(2, 3)?.contiguous()?;
        let bd = rel_shift(&q.broadcast_add(&self.bias_v)?.matmul(&p)?)?;
        let scores = ((ac + bd)? / (self.d_k as f64).sqrt())?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out.forward(&y)
    }
}

/// Transformer-XL's shift: `[B, H, T, 2T−1]` scores against relative
/// positions `T−1 … −(T−1)` to `[B, H, T, T]` against key positions:
/// `out[i][j] = x[i][T − 1 − i + j]`, by the pad-and-reshape trick.
pub fn rel_shift(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, p) = x.dims4()?;
    let padded = x.pad_with_zeros(D::Minus1, 1, 0)?; // [B, H, T, P+1]
    let shifted = padded.reshape((b, h, p + 1, t))?.narrow(2, 1, p)?.contiguous()?;
    shifted.reshape((b, h, t, p))?.narrow(3, 0, p / 2 + 1)
}

/// One Conformer layer (pre-norm, no macaron, no convolution module).
#[derive(Debug, Clone)]
struct Layer {
    norm_mha: LayerNorm,
    attn: RelAttention,
    norm_ff: LayerNorm,
    w1: Linear,
    w2: Linear,
}

impl Layer {
    fn load(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.output_size;
        let ff = vb.pp("feed_forward");
        Ok(Self {
            norm_mha: layer_norm(d, 1e-12, vb.pp("norm_mha"))?,
            attn: RelAttention::load(d, cfg.attention_heads, vb.pp("self_attn"))?,
            norm_ff: layer_norm(d, 1e-12, vb.pp("norm_ff"))?,
            w1: linear(d, cfg.linear_units, ff.pp("w_1"))?,
            w2: linear(cfg.linear_units, d, ff.pp("w_2"))?,
        })
    }

    fn forward(&self, x: &Tensor, pos: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm_mha.forward(x)?, pos)?)?;
        let h = self.w1.forward(&self.norm_ff.forward(&x)?)?.silu()?;
        x + self.w2.forward(&h)?
    }
}

/// `PreLookaheadLayer`: each token sees the next `n` through a right-padded
/// convolution, then a causal one, added back to the input.
#[derive(Debug, Clone)]
struct PreLookahead {
    conv1: Conv1d,
    conv2: Conv1d,
}

impl PreLookahead {
    fn load(d: usize, lookahead: usize, vb: VarBuilder) -> Result<Self> {
        let right = ConvSpec { pad_right: lookahead, ..ConvSpec::new(lookahead + 1) };
        Ok(Self { conv1: Conv1d::load(d, d, right, vb.pp("conv1"))?, conv2: Conv1d::load(d, d, ConvSpec::causal(3), vb.pp("conv2"))? })
    }

    /// `[B, T, d]` -> `[B, T, d]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.transpose(1, 2)?;
        let h = leaky_relu(&self.conv1.forward(&h)?, 0.01)?;
        let h = self.conv2.forward(&h)?.transpose(1, 2)?;
        h + x
    }
}

/// The encoder.
#[derive(Debug, Clone)]
pub struct UpsampleConformerEncoder {
    embed: InputLayer,
    pre_lookahead: PreLookahead,
    layers: Vec<Layer>,
    up_conv: Conv1d,
    up_embed: InputLayer,
    up_layers: Vec<Layer>,
    after_norm: LayerNorm,
    stride: usize,
}

impl UpsampleConformerEncoder {
    /// Loads `flow.encoder.*` (pass `vb.pp("encoder")` under `flow`).
    pub fn load(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.output_size;
        let layers = (0..cfg.num_blocks).map(|i| Layer::load(cfg, vb.pp(format!("encoders.{i}")))).collect::<Result<_>>()?;
        let up_layers =
            (0..cfg.num_up_blocks).map(|i| Layer::load(cfg, vb.pp(format!("up_encoders.{i}")))).collect::<Result<_>>()?;
        let s = cfg.upsample_stride;
        Ok(Self {
            embed: InputLayer::load(cfg.input_size, d, vb.pp("embed"))?,
            pre_lookahead: PreLookahead::load(d, cfg.pre_lookahead_len, vb.pp("pre_lookahead_layer"))?,
            layers,
            up_conv: Conv1d::load(d, d, ConvSpec { pad_left: 2 * s, ..ConvSpec::new(2 * s + 1) }, vb.pp("up_layer.conv"))?,
            up_embed: InputLayer::load(cfg.input_size, d, vb.pp("up_embed"))?,
            up_layers,
            after_norm: layer_norm(d, 1e-5, vb.pp("after_norm"))?,
            stride: s,
        })
    }

    /// Token embeddings `[B, T, input_size]` -> `[B, stride·T, output_size]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (mut x, pos) = self.embed.forward(x)?;
        x = self.pre_lookahead.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x, &pos)?;
        }
        let up = self.up_conv.forward(&repeat_nearest(&x.transpose(1, 2)?.contiguous()?, self.stride)?)?;
        // Contiguous first: candle 0.11's CPU matmul folds a batch of a
        // transposed input into one matrix wrongly (rows taken at stride 1).
        let (mut x, pos) = self.up_embed.forward(&up.transpose(1, 2)?.contiguous()?)?;
        for layer in &self.up_layers {
            x = layer.forward(&x, &pos)?;
        }
        self.after_norm.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rel_shift_aligns_relative_positions_with_keys() {
        // x[i][k] = 100·i + k; out[i][j] must be x[i][T−1−i+j].
        let (t, p) = (4usize, 7usize);
        let v: Vec<f32> = (0..t).flat_map(|i| (0..p).map(move |k| (100 * i + k) as f32)).collect();
        let x = Tensor::from_vec(v, (1, 1, t, p), &Device::Cpu).unwrap();
        let y = rel_shift(&x).unwrap().squeeze(0).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in y.iter().enumerate() {
            for (j, &val) in row.iter().enumerate() {
                assert_eq!(val, (100 * i + (t - 1 - i + j)) as f32, "i={i} j={j}");
            }
        }
    }
}
