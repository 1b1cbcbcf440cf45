//! A short-time Fourier transform and its inverse for HiFT's tiny frames
//! (n_fft 16, hop 4, periodic Hann window), as fixed-kernel convolutions.
//!
//! candle has no FFT. At 16 points a DFT is a `[18, 16]` matrix, so the
//! forward transform is a strided `conv1d` of the reflect-padded signal with
//! the windowed cosine and (negated) sine rows, and the inverse is a strided
//! `conv_transpose1d` (overlap-add of windowed inverse DFT frames) divided by
//! the summed squared window, both matching `torch.stft`/`torch.istft` with
//! `center=True`, `onesided=True`, `normalized=False`.

use candle_core::{Device, Result, Tensor, D};

use crate::synth::chatterbox::s3gen::nn::conv_transpose1d;

/// The two transforms for one `(n_fft, hop)`.
#[derive(Debug, Clone)]
pub struct Stft {
    n_fft: usize,
    hop: usize,
    window: Vec<f32>,
    /// `[n_fft + 2, 1, n_fft]`: rows `0..=n/2` are `w·cos`, the rest `−w·sin`.
    analysis: Tensor,
    /// `[n_fft + 2, 1, n_fft]`: one-sided inverse DFT rows times the window.
    synthesis: Tensor,
}

impl Stft {
    pub fn new(n_fft: usize, hop: usize, device: &Device) -> Result<Self> {
        let bins = n_fft / 2 + 1;
        // scipy.signal.get_window("hann", n, fftbins=True): periodic.
        let window: Vec<f32> = (0..n_fft)
            .map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos()) as f32)
            .collect();
        let mut analysis = vec![0f32; 2 * bins * n_fft];
        let mut synthesis = vec![0f32; 2 * bins * n_fft];
        for k in 0..bins {
            // Bins other than DC and Nyquist appear twice in the full spectrum.
            let weight = if k == 0 || 2 * k == n_fft { 1.0 } else { 2.0 };
            for n in 0..n_fft {
                let angle = 2.0 * std::f64::consts::PI * ((k * n) % n_fft) as f64 / n_fft as f64;
                let (sin, cos) = angle.sin_cos();
                let w = window[n] as f64;
                analysis[k * n_fft + n] = (w * cos) as f32;
                analysis[(bins + k) * n_fft + n] = (-w * sin) as f32;
                synthesis[k * n_fft + n] = (weight * w * cos / n_fft as f64) as f32;
                synthesis[(bins + k) * n_fft + n] = (-weight * w * sin / n_fft as f64) as f32;
            }
        }
        let shape = (2 * bins, 1, n_fft);
        Ok(Self {
            n_fft,
            hop,
            window,
            analysis: Tensor::from_vec(analysis, shape, device)?,
            synthesis: Tensor::from_vec(synthesis, shape, device)?,
        })
    }

    pub fn device(&self) -> &Device {
        self.analysis.device()
    }

    /// Frequency bins of the one-sided spectrum.
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// `[B, L]` -> `[B, 2·bins, L/hop + 1]`, real parts then imaginary parts.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pad = self.n_fft / 2;
        let x = reflect_pad(&x.unsqueeze(1)?, pad, pad)?;
        x.conv1d(&self.analysis, 0, self.hop, 1, 1)
    }

    /// `magnitude`, `phase` `[B, bins, F]` -> `[B, (F−1)·hop]`.
    pub fn inverse(&self, magnitude: &Tensor, phase: &Tensor) -> Result<Tensor> {
        let real = (magnitude * phase.cos()?)?;
        let imag = (magnitude * phase.sin()?)?;
        let spec = Tensor::cat(&[real, imag], 1)?;
        let frames = spec.dim(D::Minus1)?;
        let y = conv_transpose1d(&spec, &self.synthesis, self.hop)?.squeeze(1)?;
        let pad = self.n_fft / 2;
        let len = (frames - 1) * self.hop;
        let envelope = Tensor::from_vec(self.inverse_envelope(frames, pad, len), len, y.device())?;
        y.narrow(D::Minus1, pad, len)?.broadcast_mul(&envelope)
    }

    /// `1 / Σ w²` of the overlapping frames at each kept output sample.
    fn inverse_envelope(&self, frames: usize, start: usize, len: usize) -> Vec<f32> {
        let mut env = vec![0f32; (frames - 1) * self.hop + self.n_fft];
        for f in 0..frames {
            for (n, w) in self.window.iter().enumerate() {
                env[f * self.hop + n] += w * w;
            }
        }
        env[start..start + len].iter().map(|&e| if e > 1e-11 { 1.0 / e } else { 0.0 }).collect()
    }
}

/// Reflection padding of the last axis (the edge sample is not repeated).
pub fn reflect_pad(x: &Tensor, left: usize, right: usize) -> Result<Tensor> {
    let len = x.dim(D::Minus1)?;
    if left >= len || right >= len {
        candle_core::bail!("reflect_pad: padding ({left}, {right}) needs more than {len} samples");
    }
    let mut idx: Vec<u32> = (1..=left).rev().map(|i| i as u32).collect();
    idx.extend((0..len).map(|i| i as u32));
    idx.extend((0..right).map(|i| (len - 2 - i) as u32));
    let idx = Tensor::from_vec(idx, left + len + right, x.device())?;
    x.index_select(&idx, x.rank() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal survives STFT then iSTFT (with its own phase) unchanged.
    #[test]
    fn inverse_undoes_forward() {
        let dev = Device::Cpu;
        let stft = Stft::new(16, 4, &dev).unwrap();
        let x: Vec<f32> = (0..400).map(|i| ((i as f32) * 0.37).sin() * 0.5 + ((i * i) % 7) as f32 * 0.01).collect();
        let xt = Tensor::from_vec(x.clone(), (1, 400), &dev).unwrap();
        let spec = stft.forward(&xt).unwrap();
        assert_eq!(spec.dims(), &[1, 18, 101]);
        let v: Vec<f32> = spec.flatten_all().unwrap().to_vec1().unwrap();
        let (re, im) = v.split_at(9 * 101);
        let mag: Vec<f32> = re.iter().zip(im).map(|(r, i)| r.hypot(*i)).collect();
        let phase: Vec<f32> = re.iter().zip(im).map(|(r, i)| i.atan2(*r)).collect();
        let mag = Tensor::from_vec(mag, (1, 9, 101), &dev).unwrap();
        let phase = Tensor::from_vec(phase, (1, 9, 101), &dev).unwrap();
        let y: Vec<f32> = stft.inverse(&mag, &phase).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(y.len(), 400);
        let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-5, "round trip error {err}");
    }

    #[test]
    fn reflect_pad_mirrors_without_repeating_the_edge() {
        let x = Tensor::new(&[[0f32, 1., 2., 3.]], &Device::Cpu).unwrap();
        let y: Vec<f32> = reflect_pad(&x, 2, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(y, vec![2., 1., 0., 1., 2., 3., 2.]);
    }
}
