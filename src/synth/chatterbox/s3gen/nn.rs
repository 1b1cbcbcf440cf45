//! Layers shared by S3Gen and HiFT: 1-D convolutions with explicit (possibly
//! asymmetric) padding, weight normalisation resolved at load time, and the
//! activations the reference uses that candle lacks (Mish, Snake).

use std::sync::Arc;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::synth::piper::vits::cpu_conv::{self, ConvShape};

/// `g · v / ‖v‖`, the norm taken over every dimension but the first (PyTorch's
/// `weight_norm(dim=0)`). Reads either naming of the parametrisation:
/// `parametrizations.weight.original0/1` (torch ≥ 2.1) or `weight_g`/`weight_v`.
/// A plain `weight` is taken as is.
pub fn weight_norm_weight(vb: &VarBuilder, shape: &[usize]) -> Result<Tensor> {
    let (g_name, v_name) = if vb.contains_tensor("parametrizations.weight.original0") {
        ("parametrizations.weight.original0", "parametrizations.weight.original1")
    } else if vb.contains_tensor("weight_g") {
        ("weight_g", "weight_v")
    } else {
        return vb.get(shape, "weight");
    };
    let mut g_shape = vec![1usize; shape.len()];
    g_shape[0] = shape[0];
    let g = vb.get(g_shape, g_name)?.to_dtype(DType::F32)?;
    let v = vb.get(shape, v_name)?.to_dtype(DType::F32)?;
    let flat = v.flatten_from(1)?;
    let norm = flat.sqr()?.sum_keepdim(1)?.sqrt()?;
    let mut norm_shape = vec![1usize; shape.len()];
    norm_shape[0] = shape[0];
    let norm = norm.reshape(norm_shape)?;
    v.broadcast_mul(&g.broadcast_div(&norm)?)?.to_dtype(vb.dtype())
}

/// Hyper-parameters of a 1-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_left: usize,
    pub pad_right: usize,
}

impl ConvSpec {
    /// Stride 1, no padding.
    pub fn new(kernel: usize) -> Self {
        Self { kernel, stride: 1, dilation: 1, pad_left: 0, pad_right: 0 }
    }
    /// Symmetric padding `p` on both sides.
    pub fn padded(kernel: usize, p: usize) -> Self {
        Self { pad_left: p, pad_right: p, ..Self::new(kernel) }
    }
    /// "Same" length for stride 1: `dilation·(kernel−1)/2` each side.
    pub fn same(kernel: usize, dilation: usize) -> Self {
        let p = dilation * (kernel - 1) / 2;
        Self { dilation, pad_left: p, pad_right: p, ..Self::new(kernel) }
    }
    /// Causal: all `kernel−1` padding on the left.
    pub fn causal(kernel: usize) -> Self {
        Self { pad_left: kernel - 1, ..Self::new(kernel) }
    }
    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }
}

/// `Conv1d` over `[B, C, T]`. On the CPU (f32) it runs the shifted-matmul
/// convolution of [`cpu_conv`] (the Piper engine's), which avoids candle's
/// im2col copy and its transpose; it convolves the items of a batch one after
/// the other, each exactly as alone, so a batched row equals its batch-1 run.
#[derive(Debug, Clone)]
pub struct Conv1d {
    weight: Tensor,
    bias: Option<Tensor>,
    spec: ConvSpec,
    /// Weight and bias as plain slices, on the CPU.
    cpu: Option<Arc<(Vec<f32>, Vec<f32>)>>,
}

impl Conv1d {
    /// A plain convolution (`weight`, `bias`).
    pub fn load(c_in: usize, c_out: usize, spec: ConvSpec, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((c_out, c_in, spec.kernel), "weight")?;
        let bias = vb.get(c_out, "bias")?;
        Self::new(weight, bias, spec)
    }

    /// A weight-normalised convolution, resolved to a plain weight.
    pub fn load_weight_norm(c_in: usize, c_out: usize, spec: ConvSpec, vb: VarBuilder) -> Result<Self> {
        let weight = weight_norm_weight(&vb, &[c_out, c_in, spec.kernel])?;
        let bias = vb.get(c_out, "bias")?;
        Self::new(weight, bias, spec)
    }

    fn new(weight: Tensor, bias: Tensor, spec: ConvSpec) -> Result<Self> {
        let cpu = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            Some(Arc::new((weight.flatten_all()?.to_vec1()?, bias.to_vec1()?)))
        } else {
            None
        };
        let bias = Some(bias.reshape((1, (), 1))?);
        Ok(Self { weight, bias, spec, cpu })
    }

    pub fn spec(&self) -> ConvSpec {
        self.spec
    }

    /// `conv(leaky_relu(x, slope))`, the activation fused on the CPU.
    pub fn forward_leaky(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        match self.forward_cpu(x, Some(slope as f32))? {
            Some(y) => Ok(y),
            None => self.forward(&leaky_relu(x, slope)?),
        }
    }

    fn forward_cpu(&self, x: &Tensor, slope: Option<f32>) -> Result<Option<Tensor>> {
        let Some(cpu) = &self.cpu else { return Ok(None) };
        let (b, c_in, len) = x.dims3()?;
        if x.dtype() != DType::F32 || !x.device().is_cpu() {
            return Ok(None);
        }
        let c_out = self.weight.dim(0)?;
        let s = self.spec;
        let shape = ConvShape {
            c_in,
            c_out,
            kernel: s.kernel,
            stride: s.stride,
            dilation: s.dilation,
            pad_left: s.pad_left,
            pad_right: s.pad_right,
        };
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(storage) = &*storage else { return Ok(None) };
        let Some((start, end)) = layout.contiguous_offsets() else { return Ok(None) };
        let data = &storage.as_slice::<f32>()?[start..end];
        match cpu_conv::conv1d(data, len, &cpu.0, Some(&cpu.1), &shape, slope, None) {
            Some((out, out_len)) => Ok(Some(Tensor::from_vec(out, (b, c_out, out_len), &Device::Cpu)?)),
            None => candle_core::bail!("conv1d: input {c_in}x{len} does not fit kernel {:?}", self.weight.dims()),
        }
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.forward_cpu(x, None)? {
            return Ok(y);
        }
        let s = self.spec;
        let y = if s.pad_left == s.pad_right {
            x.conv1d(&self.weight, s.pad_left, s.stride, s.dilation, 1)?
        } else {
            x.pad_with_zeros(D::Minus1, s.pad_left, s.pad_right)?.conv1d(&self.weight, 0, s.stride, s.dilation, 1)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `ConvTranspose1d` over `[B, C, T]` (weight `[c_in, c_out, k]`).
#[derive(Debug, Clone)]
pub struct ConvTranspose1d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl ConvTranspose1d {
    pub fn load_weight_norm(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = weight_norm_weight(&vb, &[c_in, c_out, kernel])?;
        let bias = vb.get(c_out, "bias")?.reshape((1, c_out, 1))?;
        Ok(Self { weight, bias, stride, padding })
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // candle's CPU backend is fast only without padding: run unpadded, crop.
        let y = conv_transpose1d(x, &self.weight, self.stride)?;
        let len = y.dim(D::Minus1)?;
        y.narrow(D::Minus1, self.padding, len - 2 * self.padding)?.broadcast_add(&self.bias)
    }
}

/// candle's unpadded `conv_transpose1d` of `[B, C, T]`, one item at a time:
/// for `B > 1` candle 0.11's CPU backend stacks the items into one matrix
/// product read with the wrong row stride (its input is transposed), so each
/// row is transformed alone (the same bits as a batch of one).
pub fn conv_transpose1d(x: &Tensor, weight: &Tensor, stride: usize) -> Result<Tensor> {
    let b = x.dim(0)?;
    if b == 1 {
        return x.conv_transpose1d(weight, 0, 0, stride, 1, 1);
    }
    let rows = (0..b).map(|i| x.narrow(0, i, 1)?.conv_transpose1d(weight, 0, 0, stride, 1, 1)).collect::<Result<Vec<_>>>()?;
    Tensor::cat(&rows, 0)
}

/// `leaky_relu(x, slope)` for `0 < slope < 1`.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.maximum(&(x * slope)?)
}

/// `x · tanh(softplus(x))`, computed as `x · n / (n + 2)` with `n = eˣ(eˣ + 2)`
/// (the exponent is capped at 20, where the ratio is 1 in f32).
pub fn mish(x: &Tensor) -> Result<Tensor> {
    let e = x.clamp(f32::MIN, 20f32)?.exp()?;
    let n = (&e * (&e + 2.0)?)?;
    x * (&n / (&n + 2.0)?)?
}

/// Snake activation (Ziyin et al. 2020, <https://arxiv.org/abs/2006.08195>):
/// `x + sin²(αx) / (α + 1e-9)`, one α per channel of `[B, C, T]`.
#[derive(Debug, Clone)]
pub struct Snake {
    alpha: Tensor,
    inv_alpha: Tensor,
}

impl Snake {
    pub fn load(channels: usize, vb: VarBuilder) -> Result<Self> {
        let alpha = vb.get(channels, "alpha")?.reshape((1, channels, 1))?;
        let inv_alpha = (&alpha + 1e-9)?.recip()?;
        Ok(Self { alpha, inv_alpha })
    }
}

impl Module for Snake {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.broadcast_mul(&self.alpha)?.sin()?.sqr()?;
        x + s.broadcast_mul(&self.inv_alpha)?
    }
}

/// Nearest-neighbour upsampling of the last axis by an integer factor.
pub fn repeat_nearest(x: &Tensor, factor: usize) -> Result<Tensor> {
    let (b, c, t) = x.dims3()?;
    x.unsqueeze(3)?.broadcast_as((b, c, t, factor))?.reshape((b, c, t * factor))
}
