//! Element-wise chains fused into one pass over the data on the CPU: the
//! WaveNet gate `tanh(a) · sigmoid(b)` (the flow), the mean of HiFi-GAN's
//! parallel residual blocks, and the final `tanh`. candle runs each op of a
//! chain as its own pass with its own allocation, and its `tanh` and `exp`
//! are the scalar libm calls; here `exp` is a polynomial that the compiler
//! vectorizes (for AVX-512 or AVX2 where the CPU has them).
//!
//! Accuracy: [`exp`] is within 3 ulp of `f32::exp` over the range used;
//! `tanh` and `sigmoid` built on it within 2e-7 absolute of libm's (tests
//! below). Each output depends only on its own inputs, so a signal in
//! windows gives the same bits as whole.

use candle_core::{DType, Device, Result, Tensor};

/// `e^x`, clamped to the normal f32 range: `2^n · p(r)` with `x = n·ln 2 +
/// r`, `|r| ≤ ln 2 / 2`, `p` a degree-6 polynomial.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // 1.5·2^23: adding it rounds to an integer, held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    p * f32::from_bits(((ni + 127) << 23) as u32)
}

/// `tanh(x)` as `1 - 2 / (e^{2x} + 1)` (odd, so through `|x|`).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x.abs());
    (1.0 - 2.0 / (e + 1.0)).copysign(x)
}

/// `1 / (1 + e^{-x})`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Compiles `$body` (a loop over slices) three times: for AVX-512, for
/// AVX2 + FMA, and for the baseline, and runs the best this CPU has.
macro_rules! multiversion {
    (fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn v4($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $body
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body
        }
    };
}

multiversion! {
    fn gate_slices(a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = tanh(a) * sigmoid(b);
        }
    }
}

multiversion! {
    fn tanh_slice(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = tanh(*v);
        }
    }
}

multiversion! {
    fn add_into(acc: &mut [f32], x: &[f32]) {
        for (a, &x) in acc.iter_mut().zip(x) {
            *a += x;
        }
    }
}

multiversion! {
    fn scale(acc: &mut [f32], k: f32) {
        for a in acc.iter_mut() {
            *a *= k;
        }
    }
}

/// `f` of `t`'s values (row-major, read in place) when it is an f32 tensor
/// on the CPU.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<Option<R>> {
    if t.dtype() != DType::F32 || !t.device().is_cpu() {
        return Ok(None);
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else { return Ok(None) };
    let Some((start, end)) = layout.contiguous_offsets() else { return Ok(None) };
    Ok(Some(f(&cpu.as_slice::<f32>()?[start..end])))
}

/// WaveNet's gate on `x: [B, 2h, T]`: `tanh(x[:, :h]) · sigmoid(x[:, h:])`,
/// `[B, h, T]`.
pub fn gate(x: &Tensor, h: usize) -> Result<Tensor> {
    let (b, c, t) = x.dims3()?;
    let plain = || x.narrow(1, 0, h)?.tanh()? * candle_nn::ops::sigmoid(&x.narrow(1, h, h)?)?;
    if c != 2 * h {
        return plain();
    }
    let out = with_values(x, |v| {
        let mut out = vec![0f32; b * h * t];
        for (item, o) in v.chunks_exact(c * t).zip(out.chunks_exact_mut(h * t)) {
            let (a, g) = item.split_at(h * t);
            gate_slices(a, g, o);
        }
        out
    })?;
    match out {
        Some(out) => Tensor::from_vec(out, (b, h, t), &Device::Cpu),
        None => plain(),
    }
}

/// `tanh(x)`.
pub fn tanh_all(x: &Tensor) -> Result<Tensor> {
    match with_values(x, |v| v.to_vec())? {
        Some(mut v) => {
            tanh_slice(&mut v);
            Tensor::from_vec(v, x.shape(), &Device::Cpu)
        }
        None => x.tanh(),
    }
}

/// The mean of tensors of one shape (`(a + b + c) / 3`, summed in order).
pub fn mean(xs: &[Tensor]) -> Result<Option<Tensor>> {
    let Some(first) = xs.first() else { return Ok(None) };
    let n = xs.len() as f64;
    let plain = || {
        let mut sum = first.clone();
        for x in &xs[1..] {
            sum = (sum + x)?;
        }
        sum / n
    };
    let Some(mut acc) = with_values(first, |v| v.to_vec())? else { return plain().map(Some) };
    for x in &xs[1..] {
        if x.dims() != first.dims() {
            return Err(candle_core::Error::Msg(format!("mean of tensors of shapes {:?} and {:?}", first.dims(), x.dims())));
        }
        if with_values(x, |v| add_into(&mut acc, v))?.is_none() {
            return plain().map(Some);
        }
    }
    scale(&mut acc, (1.0 / n) as f32);
    Tensor::from_vec(acc, first.shape(), &Device::Cpu).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-40_000..=40_000).map(|i| i as f32 / 1000.0)
    }

    #[test]
    fn exp_is_within_three_ulp_of_libm() {
        for x in grid().chain([-86.9, 88.0, 0.0, 1e-8, -1e-8]) {
            let (ours, libm) = (exp(x), x.exp());
            let ulp = (ours.to_bits() as i64 - libm.to_bits() as i64).abs();
            assert!(ulp <= 3, "exp({x}) = {ours}, libm {libm} ({ulp} ulp)");
        }
    }

    #[test]
    fn tanh_and_sigmoid_match_libm() {
        let (mut dt, mut ds) = (0f32, 0f32);
        for x in grid() {
            dt = dt.max((tanh(x) - x.tanh()).abs());
            ds = ds.max((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs());
        }
        assert!(dt <= 2e-7 && ds <= 2e-7, "max |diff| tanh {dt}, sigmoid {ds}");
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
        assert_eq!(tanh(0.0), 0.0);
    }

    fn tensor(b: usize, c: usize, t: usize, seed: usize) -> Tensor {
        let v: Vec<f32> = (0..b * c * t).map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) / 12.0).collect();
        Tensor::from_vec(v, (b, c, t), &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn fused_ops_match_candle() {
        let x = tensor(2, 10, 37, 1);
        let h = 5;
        let plain = (x.narrow(1, 0, h).unwrap().tanh().unwrap() * candle_nn::ops::sigmoid(&x.narrow(1, h, h).unwrap()).unwrap()).unwrap();
        let d = max_diff(&gate(&x, h).unwrap(), &plain);
        assert!(d <= 2e-7, "gate: {d}");
        let d = max_diff(&tanh_all(&x).unwrap(), &x.tanh().unwrap());
        assert!(d <= 2e-7, "tanh: {d}");
        let xs = [tensor(2, 4, 33, 1), tensor(2, 4, 33, 2), tensor(2, 4, 33, 3)];
        let plain = (((&xs[0] + &xs[1]).unwrap() + &xs[2]).unwrap() / 3.0).unwrap();
        let d = max_diff(&mean(&xs).unwrap().unwrap(), &plain);
        assert!(d <= 1e-6, "mean: {d}");
    }
}
