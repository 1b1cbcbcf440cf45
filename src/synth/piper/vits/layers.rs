//! Building blocks shared by the VITS modules: convolutions whose shape comes
//! from the graph, and VITS' channel-wise layer norm.

use std::sync::Arc;

use candle_core::{DType, Device, Module, Result, Tensor, D};

use super::cpu_conv::{self, ConvShape};
use super::direct_conv::{self, Packed};

use super::super::onnx::{ConvAttrs, OnnxWeights};
use super::super::PiperError;

/// A 1-D convolution (or transposed convolution) as exported: weight, optional
/// bias, and the pads/stride/dilation/groups read from its ONNX node.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    /// Bias shaped `[1, C, 1]` for broadcasting.
    bias: Option<Tensor>,
    attrs: ConvAttrs,
    /// Weight and bias as plain slices for the CPU fast path.
    cpu: Option<Arc<CpuWeights>>,
    /// The weight packed for the direct kernel (CPUs with AVX-512; plain
    /// and transposed convolutions without groups).
    packed: Option<Arc<Packed>>,
}

/// A convolution's weight `[c_out, c_in/groups, k]` and bias, row-major.
type CpuWeights = (Vec<f32>, Option<Vec<f32>>);

impl Conv {
    /// Loads the convolution module `name` (e.g. `dec.ups.0`).
    pub fn load(w: &OnnxWeights, name: &str, dev: &Device) -> std::result::Result<Self, PiperError> {
        let attrs = w.conv(name)?;
        let weight = w.get(&format!("{name}.weight"), dev)?;
        let bias_name = format!("{name}.bias");
        let bias = if w.contains(&bias_name) { Some(w.get(&bias_name, dev)?) } else { None };
        Ok(Self::new(weight, bias, attrs)?)
    }

    /// A convolution of `weight` (`[c_out, c_in/groups, k]`, or
    /// `[c_in, c_out/groups, k]` transposed) and `bias` (`[c_out]`).
    pub fn new(weight: Tensor, bias: Option<Tensor>, attrs: ConvAttrs) -> Result<Self> {
        let bias = bias.map(|b| b.reshape((1, (), 1))).transpose()?;
        let dev = weight.device().clone();
        let depthwise = attrs.groups > 1 && attrs.groups == weight.dims()[0] && weight.dims()[1] == 1;
        let cpu = if dev.is_cpu() && !attrs.transpose && (attrs.groups == 1 || depthwise) {
            let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
            let b: Option<Vec<f32>> = match &bias {
                Some(b) => Some(b.flatten_all()?.to_vec1()?),
                None => None,
            };
            Some(Arc::new((w, b)))
        } else {
            None
        };
        let packed = if dev.is_cpu() && attrs.groups == 1 && (!attrs.transpose || attrs.dilation == 1) && direct_conv::available() && weight.dtype() == DType::F32 {
            let (a, b, k) = weight.dims3()?;
            let w: Vec<f32> = weight.flatten_all()?.to_vec1()?;
            let p = if attrs.transpose { Packed::transposed(&w, a, b, k, attrs.stride) } else { Packed::new(&w, a, b, k) };
            p.map(Arc::new)
        } else {
            None
        };
        Ok(Self { weight, bias, attrs, cpu, packed })
    }

    /// `conv(leaky_relu(x, slope))`, fused on the CPU.
    pub fn forward_leaky(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        self.forward_padded(x, self.attrs.pads, Some(slope), None)
    }

    /// `conv(leaky_relu(x, slope)) + x`, the residual step of HiFi-GAN's
    /// blocks, fused on the CPU (the product accumulates into a copy of `x`).
    pub fn forward_leaky_residual(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        self.forward_padded(x, self.attrs.pads, Some(slope), Some(x))
    }

    /// `conv(leaky_relu(x, slope)) + residual` (each part optional) with
    /// `pads` zeros around `x` instead of the node's own. `residual` is
    /// `[B, c_out, out_len]` or longer (its first `out_len` steps count), in
    /// any layout with unit stride along time (a view into a longer signal
    /// is read in place on the CPU). A transposed convolution's `pads` crop
    /// its output.
    pub fn forward_padded(&self, x: &Tensor, pads: [usize; 2], slope: Option<f64>, residual: Option<&Tensor>) -> Result<Tensor> {
        self.forward_parts(std::slice::from_ref(x), pads, slope, residual.map(std::slice::from_ref).unwrap_or(&[]))
    }

    /// [`Conv::forward_padded`] of the signal `parts` make one after the
    /// other along time, plus the first `out_len` steps of the one
    /// `residual` makes (none if empty): what streaming runs on a layer's
    /// cached input tail and its new input, read where they lie on the CPU
    /// (no concatenation).
    pub fn forward_parts(&self, parts: &[Tensor], pads: [usize; 2], slope: Option<f64>, residual: &[Tensor]) -> Result<Tensor> {
        if let Some(y) = self.forward_cpu(parts, pads, slope.map(|s| s as f32), residual)? {
            return Ok(y);
        }
        let x = cat_time(parts)?;
        let x = match slope {
            Some(s) => leaky_relu(&x, s)?,
            None => x,
        };
        let y = if self.attrs.transpose {
            // candle's CPU backend has a fast (col2im) path only for padding 0:
            // convolve unpadded, then crop what the padding would have removed.
            let y = self.conv_transpose_unpadded(&x)?;
            let len = y.dim(D::Minus1)?;
            self.add_bias(&y.narrow(D::Minus1, pads[0], len - pads[0] - pads[1])?)?
        } else {
            self.conv_plain(&x, pads)?
        };
        if residual.is_empty() {
            return Ok(y);
        }
        let len = y.dim(D::Minus1)?;
        y + cat_time(residual)?.narrow(D::Minus1, 0, len)?
    }

    /// The CPU fast path, when it applies (f32, plain or depthwise
    /// convolution, any batch).
    fn forward_cpu(&self, parts: &[Tensor], pads: [usize; 2], slope: Option<f32>, residual: &[Tensor]) -> Result<Option<Tensor>> {
        let Some(cpu) = &self.cpu else { return Ok(None) };
        let Some(first) = parts.first() else { return Ok(None) };
        let (b, c_in, _) = first.dims3()?;
        if parts.iter().chain(residual).any(|p| p.dtype() != DType::F32 || !p.device().is_cpu()) {
            return Ok(None);
        }
        let (w, bias) = (&cpu.0, cpu.1.as_deref());
        let c_out = self.weight.dims()[0];
        let depthwise = self.attrs.groups > 1;
        if depthwise && (c_in != c_out || parts.len() > 1 || slope.is_some() || !residual.is_empty()) {
            return Ok(None);
        }
        let shape = ConvShape {
            c_in,
            c_out,
            kernel: self.kernel_size(),
            stride: self.attrs.stride,
            dilation: self.attrs.dilation,
            pad_left: pads[0],
            pad_right: pads[1],
        };
        if depthwise {
            let x = parts[0].contiguous()?;
            let (storage, layout) = x.storage_and_layout();
            let candle_core::Storage::Cpu(cpu_storage) = &*storage else { return Ok(None) };
            let Some((start, end)) = layout.contiguous_offsets() else { return Ok(None) };
            let len = layout.dims()[2];
            return match cpu_conv::depthwise_conv1d(&cpu_storage.as_slice::<f32>()?[start..end], len, w, bias, &shape) {
                Some((out, out_len)) => Ok(Some(Tensor::from_vec(out, (b, c_out, out_len), &Device::Cpu)?)),
                None => Err(candle_core::Error::Msg(format!("depthwise conv1d: input of {c_in}x{len} does not fit"))),
            };
        }
        // Each tensor's storage, held while its rows are read.
        let parts: Vec<Tensor> = parts.iter().map(unit_stride).collect::<Result<_>>()?;
        let residual: Vec<Tensor> = residual.iter().map(unit_stride).collect::<Result<_>>()?;
        let guards: Vec<_> = parts.iter().chain(&residual).map(|t| t.storage_and_layout()).collect();
        let mut rows = Vec::with_capacity(guards.len());
        for (storage, layout) in &guards {
            let candle_core::Storage::Cpu(cpu_storage) = &**storage else { return Ok(None) };
            let [_, channels, len] = layout.dims() else { return Ok(None) };
            let stride = layout.stride();
            if *channels != if rows.len() < parts.len() { c_in } else { c_out } || layout.dims()[0] != b {
                return Err(candle_core::Error::Msg(format!("conv1d: parts of shapes that do not line up ({:?})", layout.dims())));
            }
            rows.push(cpu_conv::Rows {
                data: cpu_storage.as_slice::<f32>()?,
                offset: layout.start_offset(),
                batch_stride: stride[0],
                channel_stride: stride[1],
                len: *len,
            });
        }
        let (input, residual) = rows.split_at(parts.len());
        match cpu_conv::conv1d_parts(input, b, w, self.packed.as_deref(), bias, &shape, slope, residual) {
            Some((out, out_len)) => Ok(Some(Tensor::from_vec(out, (b, c_out, out_len), &Device::Cpu)?)),
            None => Err(candle_core::Error::Msg(format!(
                "conv1d: input of {c_in}x{} does not fit a {c_out}x{}x{} kernel",
                input.iter().map(|p| p.len).sum::<usize>(),
                self.weight.dims()[1],
                self.kernel_size()
            ))),
        }
    }

    /// candle's convolution with `pads`, plus the bias.
    fn conv_plain(&self, x: &Tensor, pads: [usize; 2]) -> Result<Tensor> {
        let [p0, p1] = pads;
        let y = if p0 == p1 {
            x.conv1d(&self.weight, p0, self.attrs.stride, self.attrs.dilation, self.attrs.groups)?
        } else {
            let x = x.pad_with_zeros(D::Minus1, p0, p1)?;
            x.conv1d(&self.weight, 0, self.attrs.stride, self.attrs.dilation, self.attrs.groups)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// The transposed convolution without padding or bias: `[B, c_in, n]`
    /// to `[B, c_out, (n - 1) * stride + dilation * (k - 1) + 1]`, each
    /// output the sum of its inputs' products (overlap-add). Item by item
    /// past a batch of one (see `forward`).
    pub fn conv_transpose_unpadded(&self, x: &Tensor) -> Result<Tensor> {
        self.conv_transpose_unpadded_leaky(x, None)
    }

    /// [`Conv::conv_transpose_unpadded`] of `leaky_relu(x, slope)` (fused
    /// into the direct kernel's input copy on the CPU).
    pub fn conv_transpose_unpadded_leaky(&self, x: &Tensor, slope: Option<f64>) -> Result<Tensor> {
        if let Some(y) = self.conv_transpose_cpu(x, slope)? {
            return Ok(y);
        }
        let x = match slope {
            Some(s) => &leaky_relu(x, s)?,
            None => x,
        };
        let one = |x: &Tensor| x.conv_transpose1d(&self.weight, 0, 0, self.attrs.stride, self.attrs.dilation, self.attrs.groups);
        match x.dim(0)? {
            1 => one(x),
            // candle 0.11's CPU matmul folds a batch that shares its rhs
            // (here the kernel) into the rows of one product, reading
            // the lhs (here the input, transposed) as if it were
            // row-major: every item after the first comes out wrong. So
            // the items go one at a time, each exactly as alone.
            b => {
                let items = (0..b).map(|i| one(&x.narrow(0, i, 1)?)).collect::<Result<Vec<_>>>()?;
                Tensor::cat(&items, 0)
            }
        }
    }

    /// The transposed convolution through the direct kernel, when it applies.
    fn conv_transpose_cpu(&self, x: &Tensor, slope: Option<f64>) -> Result<Option<Tensor>> {
        let Some(packed) = &self.packed else { return Ok(None) };
        if !self.attrs.transpose || x.dtype() != DType::F32 || !x.device().is_cpu() {
            return Ok(None);
        }
        let x = unit_stride(x)?;
        let (b, c_in, len) = x.dims3()?;
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu_storage) = &*storage else { return Ok(None) };
        let stride = layout.stride();
        let rows = cpu_conv::Rows {
            data: cpu_storage.as_slice::<f32>()?,
            offset: layout.start_offset(),
            batch_stride: stride[0],
            channel_stride: stride[1],
            len,
        };
        if c_in != packed.c_in {
            return Err(candle_core::Error::Msg(format!("conv_transpose1d: {c_in} input channels for a kernel of {}", packed.c_in)));
        }
        let c_out = self.out_channels();
        match cpu_conv::conv_transpose1d(&[rows], b, packed, self.kernel_size(), self.attrs.stride, slope.map(|s| s as f32)) {
            Some((out, out_len)) => Ok(Some(Tensor::from_vec(out, (b, c_out, out_len), &Device::Cpu)?)),
            None => Ok(None),
        }
    }

    /// Adds the bias (`[1, C, 1]`), if any.
    pub fn add_bias(&self, y: &Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y.clone()),
        }
    }

    /// Input steps one output spans: `dilation * (k - 1) + 1`.
    pub fn span(&self) -> usize {
        self.attrs.dilation * (self.kernel_size() - 1) + 1
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        if self.attrs.transpose {
            self.weight.dims()[1] * self.attrs.groups
        } else {
            self.weight.dims()[0]
        }
    }

    /// Kernel width.
    pub fn kernel_size(&self) -> usize {
        self.weight.dims().last().copied().unwrap_or(1)
    }

    pub fn attrs(&self) -> &ConvAttrs {
        &self.attrs
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_padded(x, self.attrs.pads, None, None)
    }
}

/// `t` with unit stride along time (a copy only if it had another).
fn unit_stride(t: &Tensor) -> Result<Tensor> {
    match t.stride().last() {
        Some(1) => Ok(t.clone()),
        _ => t.contiguous(),
    }
}

/// Tensors `[B, C, len_i]` one after the other along time.
pub fn cat_time(parts: &[Tensor]) -> Result<Tensor> {
    match parts {
        [one] => Ok(one.clone()),
        _ => Tensor::cat(parts, D::Minus1),
    }
}

/// VITS' `LayerNorm`: normalises over channels of a `[B, C, T]` tensor.
#[derive(Debug, Clone)]
pub struct ChannelNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f64,
}

impl ChannelNorm {
    pub fn load(w: &OnnxWeights, name: &str, dev: &Device) -> std::result::Result<Self, PiperError> {
        Ok(Self {
            gamma: w.get(&format!("{name}.gamma"), dev)?.reshape((1, (), 1))?,
            beta: w.get(&format!("{name}.beta"), dev)?.reshape((1, (), 1))?,
            eps: 1e-5,
        })
    }
}

impl Module for ChannelNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        xn.broadcast_mul(&self.gamma)?.broadcast_add(&self.beta)
    }
}

/// `leaky_relu(x, slope)`.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    // max(x, slope * x) for 0 < slope < 1.
    x.maximum(&(x * slope)?)
}

/// Loads modules `prefix.0`, `prefix.1`, ... until one is missing.
pub fn load_indexed<T>(
    w: &OnnxWeights,
    prefix: &str,
    probe: &str,
    mut load: impl FnMut(&str) -> std::result::Result<T, PiperError>,
) -> std::result::Result<Vec<T>, PiperError> {
    let mut out = Vec::new();
    loop {
        let name = format!("{prefix}.{}", out.len());
        if !w.contains(&format!("{name}{probe}")) {
            return Ok(out);
        }
        out.push(load(&name)?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) / 50.0).collect()
    }

    fn conv(c_in: usize, c_out: usize, k: usize, attrs: ConvAttrs) -> Conv {
        let dev = Device::Cpu;
        let groups = attrs.groups;
        let shape = if attrs.transpose { (c_in, c_out / groups, k) } else { (c_out, c_in / groups, k) };
        let w = Tensor::from_vec(values(shape.0 * shape.1 * shape.2, 1), shape, &dev).unwrap();
        let b = Tensor::from_vec(values(c_out, 7), c_out, &dev).unwrap();
        Conv::new(w, Some(b), attrs).unwrap()
    }

    /// Every forward of `c` on a batch of 3 equals each item's own forward.
    fn check(c: &Conv, c_in: usize, len: usize) {
        let x = Tensor::from_vec(values(3 * c_in * len, 3), (3, c_in, len), &Device::Cpu).unwrap();
        type Forward<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;
        let forwards: [(&str, Forward); 3] = [
            ("forward", &|x| c.forward(x)),
            ("forward_leaky", &|x| c.forward_leaky(x, 0.1)),
            ("forward_leaky_residual", &|x| c.forward_leaky_residual(x, 0.1)),
        ];
        for (name, f) in forwards {
            if name == "forward_leaky_residual" && c.out_channels() != c_in {
                continue;
            }
            let batched = f(&x).unwrap();
            for i in 0..3 {
                let alone: Vec<f32> = f(&x.narrow(0, i, 1).unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let item: Vec<f32> = batched.narrow(0, i, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(alone, item, "{name}, {:?}, item {i}", c.attrs);
            }
        }
    }

    #[test]
    fn a_batch_through_a_conv_matches_its_items_alone() {
        let attrs = ConvAttrs { pads: [2, 2], stride: 1, dilation: 2, groups: 1, transpose: false };
        check(&conv(8, 8, 3, attrs.clone()), 8, 40);
        check(&conv(8, 5, 3, ConvAttrs { pads: [1, 0], stride: 2, dilation: 1, ..attrs.clone() }), 8, 41);
        // Depthwise (the flow's and the duration predictor's).
        check(&conv(6, 6, 3, ConvAttrs { groups: 6, ..attrs.clone() }), 6, 30);
        // Transposed (HiFi-GAN's upsamplers): candle's conv_transpose1d.
        check(&conv(8, 4, 16, ConvAttrs { pads: [4, 4], stride: 8, dilation: 1, groups: 1, transpose: true }), 8, 20);
        // Kernel 1 over one step (the speaker conditioning, `g`: [B, gin, 1]).
        check(&conv(16, 8, 1, ConvAttrs { pads: [0, 0], dilation: 1, ..attrs }), 16, 1);
    }
}
