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
//!
//! On CPUs with AVX-512 a stride-1 convolution whose weight was packed at
//! load ([`Packed`]) skips the im2col matrix and `gemm` altogether: the
//! kernel of [`direct_conv`] reads the padded input rows in place. The
//! upsamplers' transposed convolutions go through it too, phase by phase
//! ([`conv_transpose1d`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use gemm::Parallelism;

use super::direct_conv::{self, Packed};

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

/// A `[batch, channels, len]` signal read where it lies: element `(b, c, t)`
/// is `data[offset + b·batch_stride + c·channel_stride + t]` (a candle
/// tensor narrowed along time, for one).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub batch_stride: usize,
    pub channel_stride: usize,
    pub len: usize,
}

impl<'a> Rows<'a> {
    /// `data` as a row-major `[batch, channels, len]` array.
    pub fn contiguous(data: &'a [f32], channels: usize, len: usize) -> Self {
        Self { data, offset: 0, batch_stride: channels * len, channel_stride: len, len }
    }

    fn row(&self, b: usize, c: usize) -> Option<&'a [f32]> {
        let start = self.offset + b * self.batch_stride + c * self.channel_stride;
        self.data.get(start..start + self.len)
    }
}

/// Copies row `(b, c)` of a signal given in consecutive pieces along time
/// into `dst` (as long as the pieces together), through `f`.
fn copy_row(parts: &[Rows], b: usize, c: usize, dst: &mut [f32], f: impl Fn(f32) -> f32) -> Option<()> {
    let mut at = 0;
    for p in parts {
        let src = p.row(b, c)?;
        for (d, &v) in dst.get_mut(at..at + p.len)?.iter_mut().zip(src) {
            *d = f(v);
        }
        at += p.len;
    }
    (at == dst.len()).then_some(())
}

/// Floats in one tile's im2col matrix (64 KiB; measured best among 4-256 KiB).
const TILE_FLOATS: usize = 16 * 1024;

/// Multiply-adds below which a convolution runs on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 22;

static THREADS: AtomicUsize = AtomicUsize::new(1);
static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();

/// Threads one convolution may use (default 1: a server runs one stream per
/// core; a single stream on an idle machine gains from more). 0 means every
/// core. Takes effect if called before the first convolution.
pub fn set_threads(n: usize) {
    let n = if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n };
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The convolution thread pool, when more than one thread is configured.
fn pool() -> Option<&'static rayon::ThreadPool> {
    POOL.get_or_init(|| {
        let n = THREADS.load(Ordering::Relaxed);
        (n > 1).then(|| rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("voxline-conv-{i}")).build().ok()).flatten()
    })
    .as_ref()
}

/// A pointer handed to the threads that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used for writes to disjoint column ranges (see `conv1d`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The im2col rows of output columns `[t0, t0 + nt)`: row `i·K + j` holds
/// input channel `i` shifted for tap `j`.
fn fill_columns(xp: &[f32], padded_len: usize, s: &ConvShape, t0: usize, nt: usize, col: &mut [f32]) {
    for i in 0..s.c_in {
        let src_row = &xp[i * padded_len..(i + 1) * padded_len];
        for j in 0..s.kernel {
            let row = i * s.kernel + j;
            let dst = &mut col[row * nt..(row + 1) * nt];
            let first = t0 * s.stride + j * s.dilation;
            if s.stride == 1 {
                dst.copy_from_slice(&src_row[first..first + nt]);
            } else {
                for (t, d) in dst.iter_mut().enumerate() {
                    *d = src_row[first + t * s.stride];
                }
            }
        }
    }
}

/// `x: [batch, c_in, len]` (row-major; `batch` is `x.len() / (c_in·len)`)
/// -> `[batch, c_out, out_len]`. `weight` is `[c_out, c_in, kernel]`
/// row-major; `bias` has `c_out` values; `residual`, when given, is
/// `[batch, c_out, out_len]` and added to the output.
pub fn conv1d(
    x: &[f32],
    len: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    leaky_slope: Option<f32>,
    residual: Option<&[f32]>,
) -> Option<(Vec<f32>, usize)> {
    let item_in = s.c_in * len;
    if item_in == 0 || x.is_empty() || !x.len().is_multiple_of(item_in) {
        return None;
    }
    let batch = x.len() / item_in;
    let out_len = s.out_len(len)?;
    let residual = residual.map(|r| [Rows::contiguous(r, s.c_out, out_len)]);
    if residual.is_some_and(|r| r[0].data.len() != batch * s.c_out * out_len) {
        return None;
    }
    conv1d_parts(&[Rows::contiguous(x, s.c_in, len)], batch, weight, None, bias, s, leaky_slope, residual.as_ref().map_or(&[], |r| r))
}

/// [`conv1d`] of a signal given in consecutive pieces along time (`input`,
/// each `[batch, c_in, len_i]`, read in place), plus a residual given the
/// same way (at least `out_len` long; its first `out_len` steps are added;
/// none if empty).
///
/// Items of a batch are convolved one after the other, each exactly as it
/// would be alone (same tiles, same products, so the same bits). Folding the
/// batch into the products' columns (one im2col matrix over every item's
/// output steps) was measured against this at en_US-joe-medium's decoder
/// shapes: 10-17% faster only where an item is shorter than one tile (the
/// first layer of a 26-frame window, under 1% of a decode), up to 45% slower
/// on the long signals of the later stages (a `[c_out, batch·len]` scratch
/// and its copy-out, and a working set that no longer fits the cache).
///
/// `packed`, the same weight packed for [`direct_conv`], runs a stride-1
/// convolution through that kernel where the CPU has AVX-512.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_parts(
    input: &[Rows],
    batch: usize,
    weight: &[f32],
    packed: Option<&Packed>,
    bias: Option<&[f32]>,
    s: &ConvShape,
    leaky_slope: Option<f32>,
    residual: &[Rows],
) -> Option<(Vec<f32>, usize)> {
    let len: usize = input.iter().map(|p| p.len).sum();
    if len == 0 || batch == 0 || weight.len() != s.c_out * s.c_in * s.kernel {
        return None;
    }
    let out_len = s.out_len(len)?;
    let item_out = s.c_out * out_len;
    let mut out = vec![0f32; batch * item_out];
    if !residual.is_empty() {
        // out = residual + conv: the residual's first `out_len` steps.
        let (mut parts, mut left) = (Vec::new(), out_len);
        for p in residual {
            let take = p.len.min(left);
            if take > 0 {
                parts.push(Rows { len: take, ..*p });
            }
            left -= take;
        }
        if left > 0 {
            return None;
        }
        for (r, row) in out.chunks_exact_mut(out_len).enumerate() {
            copy_row(&parts, r / s.c_out, r % s.c_out, row, |v| v)?;
        }
    }
    let direct = packed.filter(|p| s.stride == 1 && direct_conv::available() && p.c_out == s.c_out && p.c_in == s.c_in && p.kernel == s.kernel);
    if let Some(packed) = direct {
        for (b, out) in out.chunks_exact_mut(item_out).enumerate() {
            let (xp, padded_len) = padded_input(input, b, len, s, leaky_slope)?;
            let op = direct_conv::Operands {
                x: &xp,
                x_stride: padded_len,
                weight: packed,
                dilation: s.dilation,
                bias,
                accumulate: !residual.is_empty(),
                out_len,
                out_stride: out_len,
            };
            run_direct(&op, out)?;
        }
        return Some((out, out_len));
    }
    for (b, out) in out.chunks_exact_mut(item_out).enumerate() {
        conv1d_item(input, b, len, out_len, weight, s, leaky_slope, !residual.is_empty(), out)?;
    }
    if let Some(bias) = bias {
        // Rows of every item in order: row `r` is output channel `r % c_out`.
        for (row, &b) in out.chunks_exact_mut(out_len).zip(bias.iter().cycle()) {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
    Some((out, out_len))
}

/// Item `b` of `input` (`len` steps in all) with `s`' zero padding around
/// it, through the leaky ReLU if `leaky_slope`: `[c_in, padded_len]`.
fn padded_input(input: &[Rows], b: usize, len: usize, s: &ConvShape, leaky_slope: Option<f32>) -> Option<(Vec<f32>, usize)> {
    let padded_len = len + s.pad_left + s.pad_right;
    let mut xp = vec![0f32; s.c_in * padded_len];
    for (c, dst) in xp.chunks_exact_mut(padded_len).enumerate() {
        let dst = &mut dst[s.pad_left..s.pad_left + len];
        match leaky_slope {
            Some(slope) => copy_row(input, b, c, dst, |v| if v >= 0.0 { v } else { v * slope })?,
            None => copy_row(input, b, c, dst, |v| v)?,
        }
    }
    Some((xp, padded_len))
}

/// [`direct_conv::run`] over all of `out`, split across the convolution
/// threads when there is enough work: by output steps for long signals, by
/// blocks of output channels for short ones.
fn run_direct(op: &direct_conv::Operands, out: &mut [f32]) -> Option<()> {
    if !op.fits(out.len()) {
        return None;
    }
    let w = op.weight;
    let blocks = w.blocks();
    let work = w.c_out * w.c_in * w.kernel * op.out_len;
    let pool = if work > PARALLEL_MIN_WORK { pool() } else { None };
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let dst = SendPtr(out.as_mut_ptr());
    // SAFETY: `fits` checked the operands against `out`; AVX-512 was
    // checked by the caller; the threads below write disjoint outputs.
    let run = |b: std::ops::Range<usize>, t: std::ops::Range<usize>| unsafe { direct_conv::run(op, dst.get(), b, t) };
    match pool {
        Some(pool) if threads > 1 => {
            let tiles = op.out_len.div_ceil(direct_conv::TILE_T);
            if tiles >= 4 * threads || blocks < 2 * threads {
                // Contiguous runs of whole tiles.
                let per = tiles.div_ceil(threads) * direct_conv::TILE_T;
                let part = |th: usize| (th * per).min(op.out_len)..((th + 1) * per).min(op.out_len);
                pool.scope(|scope| {
                    for th in 1..threads {
                        let run = &run;
                        scope.spawn(move |_| run(0..blocks, part(th)));
                    }
                    run(0..blocks, part(0));
                });
            } else {
                let per = blocks.div_ceil(threads);
                let part = |th: usize| (th * per).min(blocks)..((th + 1) * per).min(blocks);
                pool.scope(|scope| {
                    for th in 1..threads {
                        let run = &run;
                        scope.spawn(move |_| run(part(th), 0..op.out_len));
                    }
                    run(part(0), 0..op.out_len);
                });
            }
        }
        _ => run(0..blocks, 0..op.out_len),
    }
    Some(())
}

/// One item of [`conv1d_parts`]: `out: [c_out, out_len]` += (or, without
/// `accumulate`, =) the convolution of item `b` of `input` (`len` steps in
/// all), bias aside.
#[allow(clippy::too_many_arguments)]
fn conv1d_item(
    input: &[Rows],
    b: usize,
    len: usize,
    out_len: usize,
    weight: &[f32],
    s: &ConvShape,
    leaky_slope: Option<f32>,
    accumulate: bool,
    out: &mut [f32],
) -> Option<()> {
    let (xp, padded_len) = padded_input(input, b, len, s, leaky_slope)?;

    let (read_dst, alpha) = if accumulate { (true, 1.0f32) } else { (false, 0.0f32) };
    // One product per tile of output columns: lhs is the weight seen as
    // [c_out, c_in·K], rhs the tile's im2col matrix [c_in·K, tile], filled
    // with row copies (sequential reads). Tiles keep that matrix in cache,
    // and tiles are independent, so threads take contiguous runs of them.
    let k = s.c_in * s.kernel;
    let tile = (TILE_FLOATS / k).clamp(512, out_len.max(512));
    let tiles = out_len.div_ceil(tile);
    let pool = if s.c_out * k * out_len > PARALLEL_MIN_WORK { pool() } else { None };
    let threads = pool.map_or(1, |p| p.current_num_threads());
    let dst = SendPtr(out.as_mut_ptr());
    // out[rows, t0..t0+nt] = weight[rows, :] · col
    let product = |col: &[f32], rows: std::ops::Range<usize>, t0: usize, nt: usize| {
        // SAFETY: lhs (o, r) -> weight[o*k + r] with o in `rows` (< c_out), r < k;
        // rhs (r, t) -> col[r*nt + t], t < nt; dst (o, t) -> out[o*out_len + t0 + t]
        // with t0 + t < out_len. Concurrent calls cover disjoint rows or columns.
        unsafe {
            gemm::gemm(
                rows.len(),
                nt,
                k,
                dst.get().add(rows.start * out_len + t0),
                1,
                out_len as isize,
                read_dst,
                weight.as_ptr().add(rows.start * k),
                1,
                k as isize,
                col.as_ptr(),
                1,
                nt as isize,
                alpha,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    };
    let run = |first_tile: usize, last_tile: usize| {
        let mut col = vec![0f32; k * tile.min(out_len)];
        for ti in first_tile..last_tile {
            let t0 = ti * tile;
            let nt = tile.min(out_len - t0);
            fill_columns(&xp, padded_len, s, t0, nt, &mut col[..k * nt]);
            product(&col[..k * nt], 0..s.c_out, t0, nt);
        }
    };
    match pool {
        // Enough tiles: threads take contiguous runs of them.
        Some(pool) if threads > 1 && tiles >= threads => {
            let per = tiles.div_ceil(threads);
            pool.scope(|scope| {
                for th in 1..threads {
                    let run = &run;
                    scope.spawn(move |_| run((th * per).min(tiles), ((th + 1) * per).min(tiles)));
                }
                run(0, per.min(tiles));
            });
        }
        // Short signal (the flow, the encoder): threads split the output channels.
        Some(pool) if pool.current_num_threads() > 1 && s.c_out >= 64 => {
            let n = pool.current_num_threads();
            let mut col = vec![0f32; k * tile.min(out_len)];
            for ti in 0..tiles {
                let t0 = ti * tile;
                let nt = tile.min(out_len - t0);
                fill_columns(&xp, padded_len, s, t0, nt, &mut col[..k * nt]);
                let col = &col[..k * nt];
                let per = s.c_out.div_ceil(n).next_multiple_of(8);
                pool.scope(|scope| {
                    for th in 1..n {
                        let (a, b) = ((th * per).min(s.c_out), ((th + 1) * per).min(s.c_out));
                        if a < b {
                            let product = &product;
                            scope.spawn(move |_| product(col, a..b, t0, nt));
                        }
                    }
                    product(col, 0..per.min(s.c_out), t0, nt);
                });
            }
        }
        _ => run(0, tiles),
    }
    Some(())
}

/// A transposed convolution, unpadded and without its bias, through the
/// direct kernel: `input` (a signal in pieces along time, `[batch, c_in,
/// len]`, through the leaky ReLU if `leaky_slope`) to `[batch, c_out,
/// (len - 1)·stride + kernel]`, each output the sum of its inputs'
/// products. `packed` is the weight from [`Packed::transposed`]: phase `r`
/// of the output (steps `q·stride + r`) is a stride-1 convolution of the
/// input padded by `taps - 1` on each side, and the phases are interleaved.
/// `None` where the CPU lacks AVX-512 or the shapes do not fit.
pub fn conv_transpose1d(input: &[Rows], batch: usize, packed: &Packed, kernel: usize, stride: usize, leaky_slope: Option<f32>) -> Option<(Vec<f32>, usize)> {
    let len: usize = input.iter().map(|p| p.len).sum();
    if !direct_conv::available() || len == 0 || batch == 0 || stride == 0 || !packed.c_out.is_multiple_of(stride) || packed.kernel != kernel.div_ceil(stride) {
        return None;
    }
    let (c_out, taps) = (packed.c_out / stride, packed.kernel);
    let s = ConvShape { c_in: packed.c_in, c_out: packed.c_out, kernel: taps, stride: 1, dilation: 1, pad_left: taps - 1, pad_right: taps - 1 };
    let phase_len = len + taps - 1;
    let out_len = (len - 1) * stride + kernel;
    let mut z = vec![0f32; packed.c_out * phase_len];
    let mut out = vec![0f32; batch * c_out * out_len];
    for (b, y) in out.chunks_exact_mut(c_out * out_len).enumerate() {
        let (xp, padded_len) = padded_input(input, b, len, &s, leaky_slope)?;
        let op = direct_conv::Operands {
            x: &xp,
            x_stride: padded_len,
            weight: packed,
            dilation: 1,
            bias: None,
            accumulate: false,
            out_len: phase_len,
            out_stride: phase_len,
        };
        run_direct(&op, &mut z)?;
        // y[o, q·stride + r] = z[o·stride + r, q]
        for (o, y) in y.chunks_exact_mut(out_len).enumerate() {
            let phases = &z[o * stride * phase_len..(o + 1) * stride * phase_len];
            for (q, step) in y.chunks_mut(stride).enumerate() {
                for (r, v) in step.iter_mut().enumerate() {
                    *v = phases[r * phase_len + q];
                }
            }
        }
    }
    Some((out, out_len))
}

/// Depthwise convolution (`groups == channels`, one filter per channel):
/// `x: [batch, c, len]`, `weight: [c, 1, kernel]`. A direct loop: candle's
/// grouped convolution runs one small convolution per channel.
pub fn depthwise_conv1d(x: &[f32], len: usize, weight: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Option<(Vec<f32>, usize)> {
    let item = s.c_in * len;
    if s.c_in != s.c_out || item == 0 || x.is_empty() || !x.len().is_multiple_of(item) || weight.len() != s.c_in * s.kernel || s.stride != 1 {
        return None;
    }
    let out_len = s.out_len(len)?;
    let mut out = vec![0f32; x.len() / item * s.c_out * out_len];
    // Rows of every item in order: row `r` is channel `r % c`.
    for (r, (src, dst)) in x.chunks_exact(len).zip(out.chunks_exact_mut(out_len)).enumerate() {
        let c = r % s.c_in;
        let w = &weight[c * s.kernel..(c + 1) * s.kernel];
        let b = bias.map_or(0.0, |b| b[c]);
        for (t, o) in dst.iter_mut().enumerate() {
            let mut acc = b;
            for (j, &wj) in w.iter().enumerate() {
                // Input index of tap j, in padded coordinates.
                let p = t + j * s.dilation;
                if p >= s.pad_left && p - s.pad_left < len {
                    acc += wj * src[p - s.pad_left];
                }
            }
            *o = acc;
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
        let (ours, out_len) = conv1d(&x, len, &w, Some(&b), &shape, slope, None).unwrap();

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
    fn residual_is_accumulated() {
        let s = ConvShape { c_in: 3, c_out: 4, kernel: 3, stride: 1, dilation: 2, pad_left: 2, pad_right: 2 };
        let x: Vec<f32> = (0..3 * 700).map(|i| ((i * 7 % 23) as f32 - 11.0) / 11.0).collect();
        let w: Vec<f32> = (0..4 * 3 * 3).map(|i| ((i * 5 % 13) as f32 - 6.0) / 6.0).collect();
        let r: Vec<f32> = (0..4 * 700).map(|i| (i % 17) as f32).collect();
        let (plain, _) = conv1d(&x, 700, &w, None, &s, Some(0.1), None).unwrap();
        let (with, _) = conv1d(&x, 700, &w, None, &s, Some(0.1), Some(&r)).unwrap();
        for ((p, q), r) in plain.iter().zip(&with).zip(&r) {
            assert!((p + r - q).abs() < 1e-4);
        }
    }

    #[test]
    fn depthwise_matches_candle_grouped_conv1d() {
        let (c, len, k, d) = (6, 25, 3, 3);
        let s = ConvShape { c_in: c, c_out: c, kernel: k, stride: 1, dilation: d, pad_left: 3, pad_right: 3 };
        let x: Vec<f32> = (0..c * len).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let w: Vec<f32> = (0..c * k).map(|i| ((i * 13 % 29) as f32 - 14.0) / 30.0).collect();
        let b: Vec<f32> = (0..c).map(|i| i as f32 * 0.1).collect();
        let (ours, out_len) = depthwise_conv1d(&x, len, &w, Some(&b), &s).unwrap();
        let xt = Tensor::from_vec(x, (1, c, len), &Device::Cpu).unwrap();
        let wt = Tensor::from_vec(w, (c, 1, k), &Device::Cpu).unwrap();
        let bt = Tensor::from_vec(b, (1, c, 1), &Device::Cpu).unwrap();
        let r = xt.conv1d(&wt, 3, 1, d, c).unwrap().broadcast_add(&bt).unwrap();
        assert_eq!(r.dims()[2], out_len);
        let r: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
        let diff = ours.iter().zip(&r).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-5, "max diff {diff}");
    }

    fn signal(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) / 50.0).collect()
    }

    /// A batch through one call equals each item through its own call.
    fn check_batch(s: ConvShape, len: usize, batch: usize, slope: Option<f32>, with_residual: bool, depthwise: bool) {
        let x = signal(batch * s.c_in * len, 3);
        let w_len = if depthwise { s.c_out * s.kernel } else { s.c_out * s.c_in * s.kernel };
        let w: Vec<f32> = (0..w_len).map(|i| ((i * 13 % 29) as f32 - 14.0) / 30.0).collect();
        let b: Vec<f32> = (0..s.c_out).map(|i| i as f32 * 0.1 - 0.2).collect();
        let out_len = s.out_len(len).unwrap();
        let r = signal(batch * s.c_out * out_len, 11);
        let run = |x: &[f32], r: &[f32]| {
            if depthwise {
                depthwise_conv1d(x, len, &w, Some(&b), &s).unwrap()
            } else {
                conv1d(x, len, &w, Some(&b), &s, slope, with_residual.then_some(r)).unwrap()
            }
        };
        let (batched, n) = run(&x, &r);
        assert_eq!((n, batched.len()), (out_len, batch * s.c_out * out_len));
        let mut diff = 0f32;
        for (i, item) in x.chunks_exact(s.c_in * len).enumerate() {
            let ri = &r[i * s.c_out * out_len..(i + 1) * s.c_out * out_len];
            let (alone, _) = run(item, ri);
            let got = &batched[i * s.c_out * out_len..(i + 1) * s.c_out * out_len];
            diff = alone.iter().zip(got).map(|(a, b)| (a - b).abs()).fold(diff, f32::max);
        }
        // Each item goes through the same products as alone: the same bits.
        assert_eq!(diff, 0.0, "{s:?} len {len} batch {batch}");
    }

    #[test]
    fn a_batch_matches_its_items_one_at_a_time() {
        let base = ConvShape { c_in: 6, c_out: 9, kernel: 3, stride: 1, dilation: 1, pad_left: 1, pad_right: 1 };
        for batch in [1, 2, 3, 5] {
            // Short items (a tile spans several) and long ones (several tiles per item).
            for len in [7, 300, 1500] {
                check_batch(base, len, batch, None, false, false);
                check_batch(base, len, batch, Some(0.1), true, false);
                check_batch(ConvShape { kernel: 7, dilation: 3, pad_left: 9, pad_right: 9, ..base }, len, batch, Some(0.1), true, false);
                check_batch(ConvShape { kernel: 3, stride: 2, pad_left: 2, pad_right: 0, ..base }, len, batch, None, false, false);
                check_batch(ConvShape { c_out: 6, dilation: 2, pad_left: 2, pad_right: 2, ..base }, len, batch, None, false, true);
            }
        }
        // Decoder-like widths (k = c_in·K above one tile's rows).
        let wide = ConvShape { c_in: 128, c_out: 128, kernel: 5, stride: 1, dilation: 2, pad_left: 4, pad_right: 4 };
        check_batch(wide, 84, 4, Some(0.1), true, false);
    }

    #[test]
    fn too_short_input_is_none_not_a_panic() {
        let s = ConvShape { c_in: 1, c_out: 1, kernel: 5, stride: 1, dilation: 1, pad_left: 0, pad_right: 0 };
        assert!(conv1d(&[1.0, 2.0], 2, &[0.0; 5], None, &s, None, None).is_none());
    }
}
