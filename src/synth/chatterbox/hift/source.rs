//! The neural-source-filter excitation (Wang et al., "Neural source-filter
//! waveform models", <https://arxiv.org/abs/1810.11946>; reference
//! `SineGen` + `SourceModuleHnNSF` in chatterbox `models/s3gen/hifigan.py`).
//!
//! F0 (one value per mel frame) is held for `upsample` samples; harmonic `k`
//! (`k = 1..=H+1`) is `0.1·sin(2π·frac(Σ k·f0/sr) + φ_k)` where voiced
//! (`f0 > 10 Hz`), plus Gaussian noise (σ 0.003 voiced, 0.1/3 unvoiced); a
//! `Linear(H+1 → 1)` and `tanh` merge the harmonics into one source signal.
//!
//! The running phase sums, the initial phases and the noise generator live in
//! a [`SineState`], so a stream vocoded chunk by chunk gets exactly the source
//! the whole utterance would get. The phase sums accumulate in f64 and are read
//! back as f32 before the `frac`, as `torch.cumsum` does on the CPU.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::HiftConfig;

/// Per-stream state of the sine generator.
#[derive(Debug, Clone)]
pub struct SineState {
    /// Σ k·f0/sr so far, per harmonic.
    cycles: Vec<f64>,
    /// Initial phase per harmonic (the fundamental's is 0).
    phases: Vec<f32>,
    rng: StdRng,
    /// Samples generated so far.
    position: u64,
}

impl SineState {
    /// Initial phases uniform in [−π, π) (fundamental 0) from `seed`; the
    /// same generator then supplies the noise.
    pub fn new(harmonics: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let phases = (0..harmonics)
            .map(|k| {
                let p = rng.gen_range(-std::f32::consts::PI..std::f32::consts::PI);
                if k == 0 {
                    0.0
                } else {
                    p
                }
            })
            .collect();
        Self { cycles: vec![0.0; harmonics], phases, rng, position: 0 }
    }

    /// Given initial phases (index 0 is ignored: the fundamental starts at 0).
    pub fn with_phases(phases: &[f32], seed: u64) -> Self {
        let mut s = Self::new(phases.len(), seed);
        s.phases = phases.to_vec();
        s.phases[0] = 0.0;
        s
    }

    /// Samples generated so far.
    pub fn position(&self) -> u64 {
        self.position
    }
}

/// Where the excitation's Gaussian noise comes from.
#[derive(Debug, Clone, Copy)]
pub enum Noise<'a> {
    /// Drawn from the [`SineState`]'s generator, sample by sample.
    Drawn,
    /// Given standard normals, `[harmonics, len]` row-major (parity tests).
    Given(&'a [f32]),
}

/// `SourceModuleHnNSF`: F0 frames in, one excitation signal out.
#[derive(Debug, Clone)]
pub struct SourceModule {
    /// `Linear(H+1 → 1)` weight and bias.
    weight: Vec<f32>,
    bias: f32,
    harmonics: usize,
    sample_rate: f32,
    upsample: usize,
    sine_amp: f32,
    noise_std: f32,
    voiced_threshold: f32,
}

impl SourceModule {
    pub fn load(cfg: &HiftConfig, vb: VarBuilder) -> Result<Self> {
        let harmonics = cfg.nb_harmonics + 1;
        let lin = vb.pp("l_linear");
        let weight = lin.get((1, harmonics), "weight")?.flatten_all()?.to_vec1::<f32>()?;
        let bias = lin.get(1, "bias")?.to_vec1::<f32>()?[0];
        Ok(Self {
            weight,
            bias,
            harmonics,
            sample_rate: cfg.sample_rate as f32,
            upsample: cfg.samples_per_frame(),
            sine_amp: cfg.nsf_alpha,
            noise_std: cfg.nsf_sigma,
            voiced_threshold: cfg.nsf_voiced_threshold,
        })
    }

    pub fn harmonics(&self) -> usize {
        self.harmonics
    }

    /// A fresh state for one stream.
    pub fn state(&self, seed: u64) -> SineState {
        SineState::new(self.harmonics, seed)
    }

    /// The source for `f0` (Hz, one value per mel frame): `[1, 1, frames·upsample]`.
    pub fn forward(&self, f0: &[f32], state: &mut SineState, noise: Noise, device: &Device) -> Result<Tensor> {
        let h = self.harmonics;
        let len = f0.len() * self.upsample;
        if state.cycles.len() != h {
            candle_core::bail!("sine state has {} harmonics, the model {h}", state.cycles.len());
        }
        if let Noise::Given(n) = noise {
            if n.len() != h * len {
                candle_core::bail!("given noise has {} values, expected {h}×{len}", n.len());
            }
        }
        let two_pi = 2.0 * std::f32::consts::PI;
        let unvoiced_amp = self.sine_amp / 3.0;
        let mut out = Vec::with_capacity(len);
        let mut drawn = vec![0f32; h];
        for n in 0..len {
            let f = f0[n / self.upsample];
            let voiced = f > self.voiced_threshold;
            if let Noise::Drawn = noise {
                for d in drawn.iter_mut() {
                    *d = state.rng.sample(StandardNormal);
                }
            }
            let mut acc = self.bias;
            for k in 0..h {
                state.cycles[k] += (f * (k + 1) as f32 / self.sample_rate) as f64;
                let c = state.cycles[k] as f32;
                let theta = two_pi * (c - c.floor());
                let z = match noise {
                    Noise::Drawn => drawn[k],
                    Noise::Given(g) => g[k * len + n],
                };
                let v = if voiced {
                    self.sine_amp * (theta + state.phases[k]).sin() + self.noise_std * z
                } else {
                    unvoiced_amp * z
                };
                acc += self.weight[k] * v;
            }
            out.push(acc.tanh());
        }
        state.position += len as u64;
        Tensor::from_vec(out, (1, 1, len), device)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use candle_core::DType;

    fn module() -> SourceModule {
        let w = Tensor::new(&[[0.5f32, -0.3, 0.2, 0.1, -0.1, 0.05, 0.3, -0.2, 0.1]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[0.01f32], &Device::Cpu).unwrap();
        let ts = HashMap::from([("l_linear.weight".to_string(), w), ("l_linear.bias".to_string(), b)]);
        SourceModule::load(&HiftConfig::chatterbox(), VarBuilder::from_tensors(ts, DType::F32, &Device::Cpu)).unwrap()
    }

    fn samples(t: Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The excitation of an F0 track generated in pieces is the excitation of the whole.
    #[test]
    fn chunks_continue_phase_and_noise() {
        let m = module();
        let f0: Vec<f32> = (0..9).map(|i| if i == 4 { 0.0 } else { 100.0 + 15.0 * i as f32 }).collect();
        let mut whole_state = m.state(3);
        let whole = samples(m.forward(&f0, &mut whole_state, Noise::Drawn, &Device::Cpu).unwrap());
        let mut state = m.state(3);
        let mut pieces = Vec::new();
        for part in [&f0[..2], &f0[2..3], &f0[3..]] {
            pieces.extend(samples(m.forward(part, &mut state, Noise::Drawn, &Device::Cpu).unwrap()));
        }
        assert_eq!(whole, pieces);
        assert_eq!(state.position(), 9 * 480);
    }

    /// Unvoiced frames carry noise only; the same seed gives the same noise.
    #[test]
    fn unvoiced_frames_are_noise_and_seeded() {
        let m = module();
        let f0 = [0.0f32; 2];
        let a = samples(m.forward(&f0, &mut m.state(1), Noise::Drawn, &Device::Cpu).unwrap());
        let b = samples(m.forward(&f0, &mut m.state(1), Noise::Drawn, &Device::Cpu).unwrap());
        let c = samples(m.forward(&f0, &mut m.state(2), Noise::Drawn, &Device::Cpu).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let zeros = vec![0f32; 9 * 960];
        let silent = samples(m.forward(&f0, &mut m.state(1), Noise::Given(&zeros), &Device::Cpu).unwrap());
        assert!(silent.iter().all(|&s| s == 0.01f32.tanh()), "no sine where unvoiced");
    }
}
