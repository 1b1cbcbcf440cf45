//! The text encoder (`enc_p`): phoneme embedding, a stack of self-attention
//! layers with windowed relative positions (Shaw et al. 2018, as in VITS'
//! `attentions.py`), and the projection to the prior's mean and log-scale.
//!
//! Inputs are one utterance (batch 1, no padding), so no masks are needed.

use candle_core::{Device, Module, Result, Tensor, D};

use super::layers::{load_indexed, ChannelNorm, Conv};
use super::super::onnx::OnnxWeights;
use super::super::PiperError;

/// Output of the text encoder for one utterance.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// Hidden states `[1, H, T]` (input of the duration predictor).
    pub x: Tensor,
    /// Prior mean `[1, C, T]`.
    pub m_p: Tensor,
    /// Prior log-scale `[1, C, T]`.
    pub logs_p: Tensor,
}

struct RelativeAttention {
    conv_q: Conv,
    conv_k: Conv,
    conv_v: Conv,
    conv_o: Conv,
    /// `[1, 2W+1, d_k]`, shared by the heads.
    emb_rel_k: Tensor,
    emb_rel_v: Tensor,
    n_heads: usize,
    window: usize,
}

impl RelativeAttention {
    fn load(w: &OnnxWeights, name: &str, n_heads: usize, dev: &Device) -> std::result::Result<Self, PiperError> {
        let emb_rel_k = w.get(&format!("{name}.emb_rel_k"), dev)?;
        let window = (emb_rel_k.dim(1)? - 1) / 2;
        Ok(Self {
            conv_q: Conv::load(w, &format!("{name}.conv_q"), dev)?,
            conv_k: Conv::load(w, &format!("{name}.conv_k"), dev)?,
            conv_v: Conv::load(w, &format!("{name}.conv_v"), dev)?,
            conv_o: Conv::load(w, &format!("{name}.conv_o"), dev)?,
            emb_rel_v: w.get(&format!("{name}.emb_rel_v"), dev)?,
            emb_rel_k,
            n_heads,
            window,
        })
    }

    /// The `2L-1` relative embeddings used for a sequence of length `len`,
    /// zero-padded beyond the window.
    fn relative_embeddings(&self, emb: &Tensor, len: usize) -> Result<Tensor> {
        let w = self.window;
        let pad = len.saturating_sub(w + 1);
        let start = (w + 1).saturating_sub(len);
        let padded = if pad > 0 { emb.pad_with_zeros(1, pad, pad)? } else { emb.clone() };
        padded.narrow(1, start, 2 * len - 1)?.squeeze(0) // [2L-1, d]
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, channels, len) = x.dims3()?;
        let d_k = channels / self.n_heads;
        let heads = |t: Tensor| -> Result<Tensor> {
            // [1, C, L] -> [H, L, d_k]
            t.reshape((self.n_heads, d_k, len))?.transpose(1, 2)?.contiguous()
        };
        let q = (heads(self.conv_q.forward(x)?)? / (d_k as f64).sqrt())?;
        let k = heads(self.conv_k.forward(x)?)?;
        let v = heads(self.conv_v.forward(x)?)?;

        let scores = q.matmul(&k.t()?)?; // [H, L, L]
        let out = if x.device().is_cpu() {
            // Only offsets within the window have embeddings: work on the band.
            let w = self.window;
            let rel_k = self.emb_rel_k.squeeze(0)?; // [2W+1, d]
            let rel_logits = q.broadcast_matmul(&rel_k.t()?)?; // [H, L, 2W+1]
            let scores = add_band(&scores, &rel_logits, w)?;
            let p = candle_nn::ops::softmax_last_dim(&scores)?;
            let out = p.matmul(&v)?; // [H, L, d]
            let band = take_band(&p, w)?; // [H, L, 2W+1]
            (out + band.broadcast_matmul(&self.emb_rel_v.squeeze(0)?)?)?
        } else {
            let rel_k = self.relative_embeddings(&self.emb_rel_k, len)?; // [2L-1, d]
            let rel_logits = q.broadcast_matmul(&rel_k.t()?)?; // [H, L, 2L-1]
            let scores = (scores + relative_to_absolute(&rel_logits)?)?;
            let p = candle_nn::ops::softmax_last_dim(&scores)?;
            let out = p.matmul(&v)?; // [H, L, d]
            let rel_v = self.relative_embeddings(&self.emb_rel_v, len)?;
            let rel_w = absolute_to_relative(&p)?; // [H, L, 2L-1]
            (out + rel_w.broadcast_matmul(&rel_v)?)?
        };
        let out = out.transpose(1, 2)?.reshape((1, channels, len))?;
        self.conv_o.forward(&out)
    }
}

/// `scores[h, i, i + r - W] += rel[h, i, r]` for the `2W+1` offsets of the window.
fn add_band(scores: &Tensor, rel: &Tensor, w: usize) -> Result<Tensor> {
    let (h, l, _) = scores.dims3()?;
    let mut s: Vec<f32> = scores.flatten_all()?.to_vec1()?;
    let r: Vec<f32> = rel.flatten_all()?.to_vec1()?;
    let width = 2 * w + 1;
    for hi in 0..h {
        for i in 0..l {
            let row = &mut s[(hi * l + i) * l..(hi * l + i + 1) * l];
            let rrow = &r[(hi * l + i) * width..(hi * l + i + 1) * width];
            for (ri, &v) in rrow.iter().enumerate() {
                if let Some(j) = (i + ri).checked_sub(w).filter(|&j| j < l) {
                    row[j] += v;
                }
            }
        }
    }
    Tensor::from_vec(s, (h, l, l), scores.device())
}

/// `out[h, i, r] = p[h, i, i + r - W]` (zero outside the sequence).
fn take_band(p: &Tensor, w: usize) -> Result<Tensor> {
    let (h, l, _) = p.dims3()?;
    let pv: Vec<f32> = p.flatten_all()?.to_vec1()?;
    let width = 2 * w + 1;
    let mut out = vec![0f32; h * l * width];
    for hi in 0..h {
        for i in 0..l {
            let row = &pv[(hi * l + i) * l..(hi * l + i + 1) * l];
            let orow = &mut out[(hi * l + i) * width..(hi * l + i + 1) * width];
            for (ri, o) in orow.iter_mut().enumerate() {
                if let Some(j) = (i + ri).checked_sub(w).filter(|&j| j < l) {
                    *o = row[j];
                }
            }
        }
    }
    Tensor::from_vec(out, (h, l, width), p.device())
}

/// `[H, L, 2L-1]` relative logits -> `[H, L, L]` absolute (VITS' pad/reshape trick).
fn relative_to_absolute(x: &Tensor) -> Result<Tensor> {
    let (h, l, _) = x.dims3()?;
    let x = x.pad_with_zeros(D::Minus1, 0, 1)?; // [H, L, 2L]
    let flat = x.reshape((h, l * 2 * l))?.pad_with_zeros(1, 0, l - 1)?;
    flat.reshape((h, l + 1, 2 * l - 1))?.narrow(1, 0, l)?.narrow(2, l - 1, l)
}

/// `[H, L, L]` absolute weights -> `[H, L, 2L-1]` relative.
fn absolute_to_relative(x: &Tensor) -> Result<Tensor> {
    let (h, l, _) = x.dims3()?;
    let x = x.pad_with_zeros(D::Minus1, 0, l - 1)?; // [H, L, 2L-1]
    let flat = x.reshape((h, l * (2 * l - 1)))?.pad_with_zeros(1, l, 0)?;
    flat.reshape((h, l, 2 * l))?.narrow(2, 1, 2 * l - 1)
}

struct Ffn {
    conv_1: Conv,
    conv_2: Conv,
    /// `(left, right)` "same" padding for the kernel.
    pad: (usize, usize),
}

impl Ffn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (l, r) = self.pad;
        let h = self.conv_1.forward(&x.pad_with_zeros(D::Minus1, l, r)?)?.relu()?;
        self.conv_2.forward(&h.pad_with_zeros(D::Minus1, l, r)?)
    }
}

struct Layer {
    attn: RelativeAttention,
    norm_1: ChannelNorm,
    ffn: Ffn,
    norm_2: ChannelNorm,
}

/// `enc_p`: the prior text encoder.
pub struct TextEncoder {
    emb: Tensor,
    layers: Vec<Layer>,
    proj: Conv,
    hidden: usize,
}

impl TextEncoder {
    pub fn load(w: &OnnxWeights, dev: &Device) -> std::result::Result<Self, PiperError> {
        let emb = w.get("enc_p.emb.weight", dev)?;
        let hidden = emb.dim(1)?;
        let n_heads = infer_heads(w, hidden)?;
        let layers = load_indexed(w, "enc_p.encoder.attn_layers", ".emb_rel_k", |name| {
            let i = name.rsplit('.').next().unwrap_or("0");
            let conv_1 = Conv::load(w, &format!("enc_p.encoder.ffn_layers.{i}.conv_1"), dev)?;
            let k = conv_1_kernel(&conv_1)?;
            Ok(Layer {
                attn: RelativeAttention::load(w, name, n_heads, dev)?,
                norm_1: ChannelNorm::load(w, &format!("enc_p.encoder.norm_layers_1.{i}"), dev)?,
                ffn: Ffn {
                    conv_1,
                    conv_2: Conv::load(w, &format!("enc_p.encoder.ffn_layers.{i}.conv_2"), dev)?,
                    pad: ((k - 1) / 2, k / 2),
                },
                norm_2: ChannelNorm::load(w, &format!("enc_p.encoder.norm_layers_2.{i}"), dev)?,
            })
        })?;
        if layers.is_empty() {
            return Err(PiperError::MissingWeight("enc_p.encoder.attn_layers.0".into()));
        }
        Ok(Self { emb, layers, proj: Conv::load(w, "enc_p.proj", dev)?, hidden })
    }

    /// Number of phoneme symbols the voice knows.
    pub fn vocab_size(&self) -> usize {
        self.emb.dims()[0]
    }

    /// Encodes phoneme ids `[1, T]` (u32).
    pub fn forward(&self, ids: &Tensor) -> Result<EncoderOutput> {
        let x = self.emb.embedding(&ids.squeeze(0)?)?; // [T, H]
        let x = (x * (self.hidden as f64).sqrt())?;
        let mut x = x.t()?.unsqueeze(0)?.contiguous()?; // [1, H, T]
        for layer in &self.layers {
            let y = layer.attn.forward(&x)?;
            x = layer.norm_1.forward(&(x + y)?)?;
            let y = layer.ffn.forward(&x)?;
            x = layer.norm_2.forward(&(x + y)?)?;
        }
        let stats = self.proj.forward(&x)?;
        let c = stats.dim(1)? / 2;
        Ok(EncoderOutput {
            m_p: stats.narrow(1, 0, c)?,
            logs_p: stats.narrow(1, c, c)?,
            x,
        })
    }
}

/// The FFN pads explicitly (a `Pad` node), so its Conv node has no pads of
/// its own; the kernel size comes from the weight.
fn conv_1_kernel(c: &Conv) -> std::result::Result<usize, PiperError> {
    Ok(c.kernel_size())
}

/// Piper always exports 2 heads, but the head count is not a weight: find it
/// from the relative embedding width (`d_k = hidden / heads`).
fn infer_heads(w: &OnnxWeights, hidden: usize) -> std::result::Result<usize, PiperError> {
    let e = w.get("enc_p.encoder.attn_layers.0.emb_rel_k", &Device::Cpu)?;
    let d_k = e.dim(2)?;
    if d_k == 0 || !hidden.is_multiple_of(d_k) {
        return Err(PiperError::MissingWeight(format!(
            "enc_p.encoder.attn_layers.0.emb_rel_k has width {d_k}, which does not divide hidden size {hidden}"
        )));
    }
    Ok(hidden / d_k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The banded CPU path equals VITS' pad/reshape formulation.
    #[test]
    fn band_matches_pad_reshape_trick() -> Result<()> {
        let dev = Device::Cpu;
        for (l, w) in [(3usize, 4usize), (12, 4), (5, 1)] {
            let emb = Tensor::randn(0f32, 1.0, (1, 2 * w + 1, 4), &dev)?;
            let q = Tensor::randn(0f32, 1.0, (2, l, 4), &dev)?;
            let scores = Tensor::randn(0f32, 1.0, (2, l, l), &dev)?;
            // Reference: relative embeddings padded to 2L-1 as in attentions.py.
            let pad = l.saturating_sub(w + 1);
            let start = (w + 1).saturating_sub(l);
            let padded = if pad > 0 { emb.pad_with_zeros(1, pad, pad)? } else { emb.clone() };
            let rel = padded.narrow(1, start, 2 * l - 1)?.squeeze(0)?;
            let want = (&scores + relative_to_absolute(&q.broadcast_matmul(&rel.t()?)?)?)?;
            let got = add_band(&scores, &q.broadcast_matmul(&emb.squeeze(0)?.t()?)?, w)?;
            let d = (want - got)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "scores l={l} w={w}: {d}");
            let p = candle_nn::ops::softmax_last_dim(&scores)?;
            let want = absolute_to_relative(&p)?.broadcast_matmul(&rel)?;
            let got = take_band(&p, w)?.broadcast_matmul(&emb.squeeze(0)?)?;
            let d = (want - got)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "values l={l} w={w}: {d}");
        }
        Ok(())
    }

    /// The pad/reshape trick places relative offset r of row i at column i + r - (L-1).
    #[test]
    fn relative_and_absolute_positions_round_trip() -> Result<()> {
        let l = 4;
        let rel: Vec<f32> = (0..l * (2 * l - 1)).map(|v| v as f32).collect();
        let rel = Tensor::from_vec(rel, (1, l, 2 * l - 1), &Device::Cpu)?;
        let abs = relative_to_absolute(&rel)?;
        let a = abs.squeeze(0)?.to_vec2::<f32>()?;
        let r = rel.squeeze(0)?.to_vec2::<f32>()?;
        for i in 0..l {
            for j in 0..l {
                assert_eq!(a[i][j], r[i][j + l - 1 - i], "row {i} col {j}");
            }
        }
        let back = absolute_to_relative(&abs)?.squeeze(0)?.to_vec2::<f32>()?;
        for i in 0..l {
            for j in 0..l {
                assert_eq!(back[i][j + l - 1 - i], a[i][j]);
            }
        }
        Ok(())
    }
}
