//! A direct 1-D convolution for CPUs with AVX-512, used by [`super::cpu_conv`]
//! for stride-1 convolutions (HiFi-GAN's residual blocks, the flow's WaveNet,
//! the encoder) and, phase by phase, for the transposed ones (the upsamplers).
//!
//! The im2col path copies every input row once per kernel tap into a matrix
//! that `gemm` then packs again; here the micro-kernel reads the (padded,
//! activated) input rows where they lie: for stride 1, tap `j` of output
//! steps `t..t+16` is the 16 floats at `x[i, t + j·d]`, one unaligned load.
//! A micro-tile is [`NR`] output channels by 64 output steps (24 of the 32
//! vector registers as accumulators), the weights are packed once at load
//! ([`Packed`]) so the kernel broadcasts them in order, and input channels
//! go in chunks whose strip of input stays in the L1 cache while every
//! block of output channels reads it.
//!
//! Each output is its bias plus the products over input channels and taps
//! in one fixed order, wherever its tile starts: a signal convolved in
//! windows gives the same bits as convolved whole.

use std::ops::Range;

/// Output channels per micro-tile.
pub const NR: usize = 6;
/// Floats per vector.
const LANES: usize = 16;
/// Vectors of output steps per micro-tile (64 steps).
const TV: usize = 4;
/// Output steps per micro-tile.
pub const TILE_T: usize = TV * LANES;

/// Whether this CPU runs the direct kernel (x86-64 with AVX-512F), unless
/// `VOXLINE_DIRECT_CONV=0` asks for the portable path (im2col + gemm), the one
/// CPUs without AVX-512 take: for diagnosis, and so tests on an AVX-512
/// machine exercise that path too.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX512.get_or_init(|| std::env::var_os("VOXLINE_DIRECT_CONV").is_none_or(|v| v != "0") && std::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A convolution's weights in the kernel's order: blocks of [`NR`] output
/// channels, each `[c_in][kernel][NR]` (zeros past `c_out`).
#[derive(Debug, Clone)]
pub struct Packed {
    data: Vec<f32>,
    pub c_out: usize,
    pub c_in: usize,
    pub kernel: usize,
}

impl Packed {
    /// Packs `weight`, `[c_out, c_in, kernel]` row-major.
    pub fn new(weight: &[f32], c_out: usize, c_in: usize, kernel: usize) -> Option<Self> {
        Self::from_fn(c_out, c_in, kernel, |o, i, j| weight.get((o * c_in + i) * kernel + j).copied())
    }

    /// Packs a transposed convolution's weight (`[c_in, c_out, kernel]`,
    /// stride `stride`) as the stride-1 convolution of its phases: output
    /// row `o·stride + r` is phase `r` of channel `o`, with `ceil(kernel /
    /// stride)` taps, tap `j` reading input step `q + j` of the input padded
    /// by `taps - 1` on each side for phase output `q` (see
    /// [`super::cpu_conv::conv_transpose1d`]).
    pub fn transposed(weight: &[f32], c_in: usize, c_out: usize, kernel: usize, stride: usize) -> Option<Self> {
        if stride == 0 {
            return None;
        }
        let taps = kernel.div_ceil(stride);
        Self::from_fn(c_out * stride, c_in, taps, |row, i, j| {
            let (o, r) = (row / stride, row % stride);
            // Tap j reads x[q + j - (taps - 1)] = x[q - m] with m = taps - 1 - j.
            let k = r + (taps - 1 - j) * stride;
            if k < kernel {
                weight.get((i * c_out + o) * kernel + k).copied()
            } else {
                Some(0.0)
            }
        })
    }

    fn from_fn(c_out: usize, c_in: usize, kernel: usize, w: impl Fn(usize, usize, usize) -> Option<f32>) -> Option<Self> {
        let blocks = c_out.div_ceil(NR);
        let mut data = vec![0f32; blocks * c_in * kernel * NR];
        for o in 0..c_out {
            let (b, r) = (o / NR, o % NR);
            for i in 0..c_in {
                for j in 0..kernel {
                    data[((b * c_in + i) * kernel + j) * NR + r] = w(o, i, j)?;
                }
            }
        }
        Some(Self { data, c_out, c_in, kernel })
    }

    /// Blocks of [`NR`] output channels.
    pub fn blocks(&self) -> usize {
        self.c_out.div_ceil(NR)
    }
}

/// One convolution's operands: `out[o, t] = bias[o] (+ out[o, t] when
/// `accumulate`) + Σ_i Σ_j w[o, i, j] · x[i, t + j·dilation]` for
/// `t < out_len`, where row `i` of `x` starts at `x + i·x_stride` and holds
/// at least `out_len + (kernel - 1)·dilation` floats, and row `o` of `out`
/// starts at `out + o·out_stride`.
#[derive(Clone, Copy)]
pub struct Operands<'a> {
    pub x: &'a [f32],
    pub x_stride: usize,
    pub weight: &'a Packed,
    pub dilation: usize,
    pub bias: Option<&'a [f32]>,
    pub accumulate: bool,
    pub out_len: usize,
    pub out_stride: usize,
}

impl Operands<'_> {
    /// Whether the slices hold what the kernel reads and writes, for an
    /// output of `out_floats`.
    pub fn fits(&self, out_floats: usize) -> bool {
        let w = self.weight;
        let span = (w.kernel - 1) * self.dilation + self.out_len;
        w.c_in > 0
            && w.kernel > 0
            && self.x_stride >= span
            && self.x.len() >= (w.c_in - 1) * self.x_stride + span
            && self.bias.is_none_or(|b| b.len() >= w.c_out)
            && self.out_stride >= self.out_len
            && out_floats >= (w.c_out - 1) * self.out_stride + self.out_len
    }
}

/// Tiles of output steps per run (see `avx512::run`).
const RUN_TILES: usize = 4;

/// Input channels per chunk: a chunk's strip of input (`chunk × (256 +
/// span)` floats) stays in the L2 cache, and a block's weights for it
/// (`chunk × kernel × 6`) in the L1, while a run of tiles reads them.
fn channel_chunk(kernel: usize) -> usize {
    (192 / kernel).max(1)
}

/// Runs the convolution for output blocks `blocks` (of [`NR`] channels) and
/// output steps `steps`.
///
/// # Safety
/// `op.fits(len)` for the `len` floats at `out`, [`available`] is true, and
/// no other thread writes the same outputs meanwhile.
pub unsafe fn run(op: &Operands, out: *mut f32, blocks: Range<usize>, steps: Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller.
    unsafe {
        avx512::run(op, out, blocks, steps)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (op, out, blocks, steps);
        unreachable!("direct_conv::run without AVX-512");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{channel_chunk, Operands, LANES, NR, RUN_TILES, TILE_T, TV};

    /// How a micro-tile's accumulators start.
    #[derive(Clone, Copy)]
    enum Init {
        /// The bias.
        Bias,
        /// The bias plus what `out` holds.
        BiasAndOut,
        /// What `out` holds (a later input chunk).
        Out,
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn run(op: &Operands, out: *mut f32, blocks: Range<usize>, steps: Range<usize>) {
        let w = op.weight;
        let chunk = channel_chunk(w.kernel);
        let block_floats = w.c_in * w.kernel * NR;
        // Runs of tiles: per input chunk, each block's weights serve every
        // tile of the run from the L1 cache.
        let mut s0 = steps.start;
        while s0 < steps.end {
            let s1 = (s0 + RUN_TILES * TILE_T).min(steps.end);
            let mut c0 = 0;
            while c0 < w.c_in {
                let cn = chunk.min(w.c_in - c0);
                let init = match (c0, op.accumulate) {
                    (0, false) => Init::Bias,
                    (0, true) => Init::BiasAndOut,
                    _ => Init::Out,
                };
                for b in blocks.clone() {
                    let rows = (w.c_out - b * NR).min(NR);
                    // SAFETY (pointer arithmetic): the block's weights lie
                    // within `data`; rows c0..c0+cn of x from step t0 on,
                    // read for at most nt + span - 1 floats, within x, and
                    // the tile's outputs within out (`fits`).
                    let wp = w.data.as_ptr().add(b * block_floats + c0 * w.kernel * NR);
                    let bias = op.bias.map(|bias| bias.as_ptr().add(b * NR));
                    let mut t0 = s0;
                    while t0 < s1 {
                        let nt = (s1 - t0).min(TILE_T);
                        let vecs = nt.div_ceil(LANES);
                        let rem = nt - (vecs - 1) * LANES;
                        let mask: __mmask16 = if rem == LANES { 0xffff } else { (1u16 << rem) - 1 };
                        let x = op.x.as_ptr().add(c0 * op.x_stride + t0);
                        let o = out.add(b * NR * op.out_stride + t0);
                        let k = Tile { x, x_stride: op.x_stride, channels: cn, kernel: w.kernel, dilation: op.dilation, w: wp, bias, init, out: o, out_stride: op.out_stride, mask };
                        dispatch(&k, vecs, rows);
                        t0 += nt;
                    }
                }
                c0 += cn;
            }
            s0 = s1;
        }
    }

    /// One micro-tile's operands.
    struct Tile {
        x: *const f32,
        x_stride: usize,
        channels: usize,
        kernel: usize,
        dilation: usize,
        w: *const f32,
        bias: Option<*const f32>,
        init: Init,
        out: *mut f32,
        out_stride: usize,
        /// Lanes of the last vector of steps in the tile.
        mask: __mmask16,
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch(k: &Tile, vecs: usize, rows: usize) {
        macro_rules! go {
            ($($v:literal),*) => {
                match (vecs, rows) {
                    $(
                        ($v, 1) => tile::<$v, 1>(k),
                        ($v, 2) => tile::<$v, 2>(k),
                        ($v, 3) => tile::<$v, 3>(k),
                        ($v, 4) => tile::<$v, 4>(k),
                        ($v, 5) => tile::<$v, 5>(k),
                        ($v, 6) => tile::<$v, 6>(k),
                    )*
                    _ => unreachable!("a micro-tile of {vecs} vectors by {rows} rows"),
                }
            };
        }
        const _: () = assert!(TV == 4 && NR == 6);
        go!(1, 2, 3, 4)
    }

    /// `R` output channels by `V` vectors of steps (the last one masked).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const V: usize, const R: usize>(k: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            let bias = match k.bias {
                Some(b) if !matches!(k.init, Init::Out) => _mm512_set1_ps(*b.add(r)),
                _ => _mm512_setzero_ps(),
            };
            for (v, a) in row.iter_mut().enumerate() {
                *a = match k.init {
                    Init::Bias => bias,
                    _ => {
                        let p = k.out.add(r * k.out_stride + v * LANES);
                        let y = if v + 1 == V { _mm512_maskz_loadu_ps(k.mask, p) } else { _mm512_loadu_ps(p) };
                        _mm512_add_ps(y, bias)
                    }
                };
            }
        }
        let mut wp = k.w;
        for i in 0..k.channels {
            let row = k.x.add(i * k.x_stride);
            for j in 0..k.kernel {
                let p = row.add(j * k.dilation);
                let mut xv = [_mm512_setzero_ps(); V];
                for (v, x) in xv.iter_mut().enumerate() {
                    *x = if v + 1 == V { _mm512_maskz_loadu_ps(k.mask, p.add(v * LANES)) } else { _mm512_loadu_ps(p.add(v * LANES)) };
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*wp.add(r));
                    for (a, x) in row.iter_mut().zip(&xv) {
                        *a = _mm512_fmadd_ps(*x, wv, *a);
                    }
                }
                wp = wp.add(NR);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate() {
                let p = k.out.add(r * k.out_stride + v * LANES);
                if v + 1 == V {
                    _mm512_mask_storeu_ps(p, k.mask, *a);
                } else {
                    _mm512_storeu_ps(p, *a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Parity with candle's own convolutions (im2col + matmul), which sum in
    //! another order: the bound is float rounding over `c_in·kernel`
    //! products of values in [-1, 1] (measured: under 2e-6 for these).
    use super::super::cpu_conv::{conv1d_parts, conv_transpose1d, ConvShape, Rows};
    use super::*;
    use candle_core::{Device, Tensor};

    const TOL: f32 = 1e-4;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) / 50.0).collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// `conv(leaky(x)) + bias (+ residual)` through the direct kernel
    /// against candle's `conv1d`, batch of 2, the input in two pieces.
    fn check(s: ConvShape, len: usize, slope: Option<f32>, residual: bool) {
        let batch = 2;
        let x = values(batch * s.c_in * len, 3);
        let w = values(s.c_out * s.c_in * s.kernel, 5);
        let b = values(s.c_out, 7);
        let out_len = s.out_len(len).unwrap();
        let r = values(batch * s.c_out * out_len, 11);
        let packed = Packed::new(&w, s.c_out, s.c_in, s.kernel).unwrap();
        // The input as two views into one buffer, split along time.
        let cut = len / 3;
        let whole = Rows::contiguous(&x, s.c_in, len);
        let parts = [Rows { len: cut, ..whole }, Rows { offset: cut, len: len - cut, ..whole }];
        let res = [Rows::contiguous(&r, s.c_out, out_len)];
        let (ours, n) = conv1d_parts(&parts, batch, &w, Some(&packed), Some(&b), &s, slope, if residual { &res } else { &[] }).unwrap();
        assert_eq!(n, out_len);

        let dev = Device::Cpu;
        let xt = Tensor::from_vec(x, (batch, s.c_in, len), &dev).unwrap();
        let xt = match slope {
            Some(k) => xt.maximum(&(&xt * k as f64).unwrap()).unwrap(),
            None => xt,
        };
        let xt = xt.pad_with_zeros(2, s.pad_left, s.pad_right).unwrap();
        let wt = Tensor::from_vec(w, (s.c_out, s.c_in, s.kernel), &dev).unwrap();
        let bt = Tensor::from_vec(b, (1, s.c_out, 1), &dev).unwrap();
        let mut y = xt.conv1d(&wt, 0, 1, s.dilation, 1).unwrap().broadcast_add(&bt).unwrap();
        if residual {
            y = (y + Tensor::from_vec(r, (batch, s.c_out, out_len), &dev).unwrap()).unwrap();
        }
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let d = max_diff(&ours, &y);
        assert!(d < TOL, "{s:?} len {len} slope {slope:?} residual {residual}: max diff {d}");
    }

    #[test]
    fn direct_conv1d_matches_candle() {
        if !available() {
            eprintln!("no AVX-512: the direct kernel does not run here");
            return;
        }
        let base = ConvShape { c_in: 5, c_out: 7, kernel: 3, stride: 1, dilation: 1, pad_left: 1, pad_right: 1 };
        // Output lengths around the 16-step vector and the 64-step tile;
        // output channels around the 6-row block; input channels past one
        // chunk (192 / kernel).
        for len in [1, 15, 16, 17, 63, 64, 65, 200] {
            check(base, len, None, false);
            check(base, len, Some(0.1), true);
        }
        for c_out in [1, 5, 6, 12, 13] {
            check(ConvShape { c_out, ..base }, 70, Some(0.1), false);
        }
        check(ConvShape { c_in: 200, c_out: 13, kernel: 3, ..base }, 90, Some(0.1), true);
        check(ConvShape { c_in: 64, c_out: 64, kernel: 7, dilation: 3, pad_left: 9, pad_right: 9, ..base }, 300, Some(0.1), true);
        check(ConvShape { c_in: 32, c_out: 1, kernel: 7, dilation: 1, pad_left: 3, pad_right: 3, ..base }, 333, Some(0.01), false);
        // Uneven (streaming) pads, kernel 1.
        check(ConvShape { kernel: 5, dilation: 2, pad_left: 0, pad_right: 8, ..base }, 40, None, false);
        check(ConvShape { kernel: 1, pad_left: 0, pad_right: 0, ..base }, 40, None, true);
    }

    /// The phase-wise transposed convolution against candle's
    /// `conv_transpose1d` (unpadded, no bias).
    fn check_transposed(c_in: usize, c_out: usize, kernel: usize, stride: usize, len: usize, slope: Option<f32>) {
        let batch = 2;
        let x = values(batch * c_in * len, 3);
        let w = values(c_in * c_out * kernel, 5);
        let packed = Packed::transposed(&w, c_in, c_out, kernel, stride).unwrap();
        let (ours, n) = conv_transpose1d(&[Rows::contiguous(&x, c_in, len)], batch, &packed, kernel, stride, slope).unwrap();
        let dev = Device::Cpu;
        let xt = Tensor::from_vec(x, (batch, c_in, len), &dev).unwrap();
        let xt = match slope {
            Some(k) => xt.maximum(&(&xt * k as f64).unwrap()).unwrap(),
            None => xt,
        };
        let wt = Tensor::from_vec(w, (c_in, c_out, kernel), &dev).unwrap();
        // Item by item (candle 0.11's batched CPU conv_transpose1d is wrong past item 0, see layers.rs).
        let y: Vec<f32> = (0..batch)
            .flat_map(|i| {
                let y = xt.narrow(0, i, 1).unwrap().conv_transpose1d(&wt, 0, 0, stride, 1, 1).unwrap();
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            })
            .collect();
        assert_eq!(n, (len - 1) * stride + kernel);
        let d = max_diff(&ours, &y);
        assert!(d < TOL, "transposed {c_in}->{c_out} k{kernel} s{stride} len {len}: max diff {d}");
    }

    #[test]
    fn direct_conv_transpose1d_matches_candle() {
        if !available() {
            eprintln!("no AVX-512: the direct kernel does not run here");
            return;
        }
        // Piper's upsamplers: kernel 2·stride; also a kernel that is not a
        // multiple of the stride, and one shorter than it.
        for len in [1, 2, 17, 70] {
            check_transposed(16, 8, 16, 8, len, Some(0.1));
            check_transposed(8, 4, 8, 4, len, None);
            check_transposed(6, 5, 7, 3, len, None);
            check_transposed(6, 5, 2, 3, len, Some(0.1));
        }
    }

    /// Outputs do not depend on where a tile starts: a signal convolved in
    /// two runs of steps equals the same signal convolved in one.
    #[test]
    fn direct_conv1d_is_the_same_bits_whatever_the_split() {
        if !available() {
            return;
        }
        let (c_in, c_out, kernel, len) = (40, 9, 5, 300);
        let x = values(c_in * len, 1);
        let w = values(c_out * c_in * kernel, 2);
        let packed = Packed::new(&w, c_out, c_in, kernel).unwrap();
        let out_len = len - kernel + 1;
        let op = Operands { x: &x, x_stride: len, weight: &packed, dilation: 1, bias: None, accumulate: false, out_len, out_stride: out_len };
        let (mut one, mut two) = (vec![0f32; c_out * out_len], vec![0f32; c_out * out_len]);
        assert!(op.fits(one.len()));
        // SAFETY: fits, AVX-512 available, one thread.
        unsafe {
            run(&op, one.as_mut_ptr(), 0..packed.blocks(), 0..out_len);
            run(&op, two.as_mut_ptr(), 0..packed.blocks(), 0..37);
            run(&op, two.as_mut_ptr(), 0..packed.blocks(), 37..out_len);
        }
        assert_eq!(one, two);
    }
}
