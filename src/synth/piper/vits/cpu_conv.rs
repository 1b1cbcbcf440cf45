//! A faster 1-D convolution for the CPU, used by [`super::layers::Conv`].
//!
//! candle's CPU `conv1d` builds an im2col matrix (reading the input with a
//! channel stride, cache-unfriendly for long signals), multiplies, and then
//! transposes the result. HiFi-GAN's convolutions run over tens of thousands
//! of samples, so that overhead dominates. Here a convolution of kernel `K` is
//! `K` matrix products accumulated in place, each reading a shifted view of
//! the (once) padded input directly through `gemm`'s strides:
//!
//! ```text
//! y[:, t] = b + Σ_j W[:, :, j] · x_pad[:, t·s + j·d]
//! ```
//!
//! An optional leaky ReLU is fused into the padding copy, since HiFi-GAN
//! applies one before almost every convolution.

use gemm::Parallelism;

/// Shape and hyper-parameters of one convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_left: usize,
    pub pad_right: usize,
}

impl ConvShape {
    pub fn out_len(&self, len: usize) -> Option<usize> {
        let padded = len + self.pad_left + self.pad_right;
        let span = self.dilation * (self.kernel - 1) + 1;
        (padded >= span).then(|| (padded - span) / self.stride + 1)
    }
}

fn parallelism(work: usize) -> Parallelism {
    let threads = candle_core::utils::get_num_threads();
    // Small products are faster on one thread than split.
    if threads > 1 && work > 1 << 20 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// `x: [c_in, len]` (row-major) -> `[c_out, out_len]`. `weight` is
/// `[c_out, c_in, kernel]` row-major; `bias` has `c_out` values.
pub fn conv1d(
    x: &[f32],
    len: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    leaky_slope: Option<f32>,
) -> Option<(Vec<f32>, usize)> {
    if x.len() != s.c_in * len || weight.len() != s.c_out * s.c_in * s.kernel {
        return None;
    }
    let out_len = s.out_len(len)?;
    let padded_len = len + s.pad_left + s.pad_right;

    // Padded (and activated) copy of the input.
    let mut xp = vec![0f32; s.c_in * padded_len];
    for (src, dst) in x.chunks_exact(len).zip(xp.chunks_exact_mut(padded_len)) {
        let dst = &mut dst[s.pad_left..s.pad_left + len];
        match leaky_slope {
            Some(slope) => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = if v >= 0.0 { v } else { v * slope };
                }
            }
            None => dst.copy_from_slice(src),
        }
    }

    let mut out = vec![0f32; s.c_out * out_len];
    let par = parallelism(s.c_out * s.c_in * out_len * s.kernel);
    for j in 0..s.kernel {
        // SAFETY: every pointer stays inside its buffer for the m×k, k×n and
        // m×n index ranges described by the strides:
        // lhs (o, i) -> weight[o*c_in*K + i*K + j]; rhs (i, t) -> xp[i*padded_len + j*d + t*s]
        // with j*d + (out_len-1)*s < padded_len by the definition of out_len;
        // dst (o, t) -> out[o*out_len + t].
        unsafe {
            gemm::gemm(
                s.c_out,
                out_len,
                s.c_in,
                out.as_mut_ptr(),
                1,
                out_len as isize,
                j > 0,
                weight.as_ptr().add(j),
                (s.kernel) as isize,
                (s.c_in * s.kernel) as isize,
                xp.as_ptr().add(j * s.dilation),
                s.stride as isize,
                padded_len as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
    }
    if let Some(bias) = bias {
        for (row, &b) in out.chunks_exact_mut(out_len).zip(bias) {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
    Some((out, out_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn check(shape: ConvShape, len: usize, slope: Option<f32>) {
        let x: Vec<f32> = (0..shape.c_in * len).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let w: Vec<f32> = (0..shape.c_out * shape.c_in * shape.kernel).map(|i| ((i * 13 % 29) as f32 - 14.0) / 30.0).collect();
        let b: Vec<f32> = (0..shape.c_out).map(|i| i as f32 * 0.1).collect();
        let (ours, out_len) = conv1d(&x, len, &w, Some(&b), &shape, slope).unwrap();

        let xt = Tensor::from_vec(x, (1, shape.c_in, len), &Device::Cpu).unwrap();
        let xt = match slope {
            Some(s) => xt.maximum(&(&xt * s as f64).unwrap()).unwrap(),
            None => xt,
        };
        let xt = xt.pad_with_zeros(2, shape.pad_left, shape.pad_right).unwrap();
        let wt = Tensor::from_vec(w, (shape.c_out, shape.c_in, shape.kernel), &Device::Cpu).unwrap();
        let bt = Tensor::from_vec(b, (1, shape.c_out, 1), &Device::Cpu).unwrap();
        let reference = xt.conv1d(&wt, 0, shape.stride, shape.dilation, 1).unwrap().broadcast_add(&bt).unwrap();
        assert_eq!(reference.dims()[2], out_len);
        let reference: Vec<f32> = reference.flatten_all().unwrap().to_vec1().unwrap();
        let diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-4, "{shape:?}: max diff {diff}");
    }

    #[test]
    fn matches_candle_conv1d() {
        let base = ConvShape { c_in: 5, c_out: 7, kernel: 3, stride: 1, dilation: 1, pad_left: 1, pad_right: 1 };
        check(base, 20, None);
        check(base, 20, Some(0.1));
        check(ConvShape { kernel: 7, dilation: 3, pad_left: 9, pad_right: 9, ..base }, 33, Some(0.1));
        check(ConvShape { kernel: 1, pad_left: 0, pad_right: 0, ..base }, 10, None);
        check(ConvShape { kernel: 3, stride: 2, pad_left: 2, pad_right: 0, ..base }, 17, None);
        check(ConvShape { kernel: 5, dilation: 1, pad_left: 0, pad_right: 0, ..base }, 5, None);
    }

    #[test]
    fn too_short_input_is_none_not_a_panic() {
        let s = ConvShape { c_in: 1, c_out: 1, kernel: 5, stride: 1, dilation: 1, pad_left: 0, pad_right: 0 };
        assert!(conv1d(&[1.0, 2.0], 2, &[0.0; 5], None, &s, None).is_none());
    }
}
