//! VITS inference (Kim et al. 2021, "Conditional Variational Autoencoder with
//! Adversarial Learning for End-to-End Text-to-Speech"), as trained and
//! exported by Piper (reference: piper1-gpl `src/piper/train/vits/models.py`,
//! `SynthesizerTrn.infer`).
//!
//! ```text
//! ids -> TextEncoder -> (x, m_p, logs_p)
//!     -> DurationPredictor(x, noise_w) -> log w -> ceil(exp(log w) * length_scale)
//!     -> expand m_p, logs_p to frames -> z_p = m_p + N(0,1) * exp(logs_p) * noise_scale
//!     -> Flow⁻¹ -> z -> Generator (HiFi-GAN) -> samples
//! ```
//!
//! [`Vits::prepare`] runs everything up to `z` for a whole sentence (cheap: it
//! works at the phoneme and frame rate); [`Vits::decode`] turns `z` into
//! audio, which is where the time goes. Streaming runs the encoder and the
//! durations on the whole sentence ([`Vits::prepare_prior`]), then the flow
//! and the decoder a window at a time ([`Vits::synth_push`]).

pub(crate) mod cpu_conv;
pub use self::cpu_conv::set_threads;
pub mod decoder;
pub(crate) mod direct_conv;
pub mod duration;
pub mod encoder;
pub mod flow;
pub(crate) mod fused;
pub mod layers;
pub mod spline;
pub mod streaming;

use candle_core::{DType, Device, Result, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;

use self::decoder::Generator;
use self::duration::DurationPredictor;
use self::encoder::TextEncoder;
use self::flow::Flow;
use self::streaming::{Slots, StreamState};
use super::onnx::OnnxWeights;
use super::PiperError;

/// The three knobs Piper exposes (`scales` input of the ONNX model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// Variance of the prior sample (expressiveness). Piper default 0.667.
    pub noise_scale: f32,
    /// Phoneme duration multiplier (> 1 is slower). Default 1.0.
    pub length_scale: f32,
    /// Variance of the duration noise (rhythm variation). Default 0.8.
    pub noise_w: f32,
}

impl Default for Scales {
    fn default() -> Self {
        Self { noise_scale: 0.667, length_scale: 1.0, noise_w: 0.8 }
    }
}

/// A sentence made ready for decoding.
pub struct Prepared {
    /// Latent frames `[1, C, F]` for the decoder.
    pub z: Tensor,
    /// Frames per input id (`w_ceil`), one per phoneme id.
    pub durations: Vec<u32>,
    /// Speaker conditioning `[1, G, 1]` for multi-speaker voices.
    pub g: Option<Tensor>,
}

/// A loaded VITS model.
pub struct Vits {
    pub encoder: TextEncoder,
    pub duration: DurationPredictor,
    pub flow: Flow,
    pub decoder: Generator,
    /// Speaker embedding table `[S, G]` of multi-speaker voices.
    speakers: Option<Tensor>,
    device: Device,
}

impl Vits {
    pub fn load(w: &OnnxWeights, device: &Device) -> std::result::Result<Self, PiperError> {
        let speakers = if w.contains("emb_g.weight") { Some(w.get("emb_g.weight", device)?) } else { None };
        Ok(Self {
            encoder: TextEncoder::load(w, device)?,
            duration: DurationPredictor::load(w, device)?,
            flow: Flow::load(w, device)?,
            decoder: Generator::load(w, device)?,
            speakers,
            device: device.clone(),
        })
    }

    /// Number of speakers (1 for single-speaker voices).
    pub fn num_speakers(&self) -> usize {
        self.speakers.as_ref().map(|s| s.dims()[0]).unwrap_or(1)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encoder, durations and flow for one sentence of phoneme ids.
    pub fn prepare<R: Rng>(
        &self,
        ids: &[i64],
        speaker: Option<u32>,
        scales: Scales,
        rng: &mut R,
    ) -> std::result::Result<Prepared, PiperError> {
        let prior = self.prepare_prior(ids, speaker, scales, rng)?;
        let z = self.flow.reverse(&prior.z, prior.g.as_ref())?;
        Ok(Prepared { z, ..prior })
    }

    /// Encoder and durations for one sentence: the prior sample `z_p` (in
    /// `Prepared::z`), before the flow. Streaming runs the flow per window.
    pub fn prepare_prior<R: Rng>(
        &self,
        ids: &[i64],
        speaker: Option<u32>,
        scales: Scales,
        rng: &mut R,
    ) -> std::result::Result<Prepared, PiperError> {
        if ids.is_empty() {
            return Err(PiperError::EmptyInput);
        }
        let vocab = self.encoder.vocab_size() as i64;
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i >= vocab) {
            return Err(PiperError::BadPhonemeId { id: *bad, vocab: vocab as usize });
        }
        let g = self.speaker_embedding(speaker)?;
        let ids_u32: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        let t = ids.len();
        let ids_t = Tensor::from_vec(ids_u32, (1, t), &self.device)?;
        let enc = self.encoder.forward(&ids_t)?;

        let noise_w: Vec<f32> = (0..2 * t).map(|_| rng.sample::<f32, _>(StandardNormal) * scales.noise_w).collect();
        let noise_w = Tensor::from_vec(noise_w, (1, 2, t), &self.device)?;
        let logw = self.duration.forward(&enc.x, g.as_ref(), &noise_w)?;
        let w: Vec<f32> = (logw.exp()? * scales.length_scale as f64)?.flatten_all()?.to_vec1()?;
        let durations: Vec<u32> = w
            .iter()
            .map(|&d| if d.is_finite() { d.ceil().clamp(0.0, 10_000.0) as u32 } else { 0 })
            .collect();
        let frames: usize = durations.iter().map(|&d| d as usize).sum::<usize>().max(1);

        // Length regulation: frame f takes the stats of the id it falls in.
        let mut index = Vec::with_capacity(frames);
        for (i, &d) in durations.iter().enumerate() {
            index.extend(std::iter::repeat_n(i as u32, d as usize));
        }
        if index.is_empty() {
            index.push(0); // y_lengths is clamped to at least one frame
        }
        let index = Tensor::from_vec(index, frames, &self.device)?;
        let m_p = enc.m_p.index_select(&index, 2)?;
        let z_p = if scales.noise_scale != 0.0 {
            let logs_p = enc.logs_p.index_select(&index, 2)?;
            let n: Vec<f32> = (0..m_p.elem_count()).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
            let n = Tensor::from_vec(n, m_p.shape(), &self.device)?;
            (m_p + (n * logs_p.exp()?)?.affine(scales.noise_scale as f64, 0.0)?)?
        } else {
            m_p
        };
        Ok(Prepared { z: z_p, durations, g })
    }

    /// Decodes latent frames `[1, C, F]` to samples (f32, `F * hop`).
    pub fn decode(&self, z: &Tensor, g: Option<&Tensor>) -> Result<Vec<f32>> {
        self.decoder.forward(z, g)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
    }

    /// Streams the next latent frames of `B` sentences (`z: [B, C, n]`,
    /// `g`: `[B, G, 1]` for multi-speaker voices) through the decoder, its
    /// caches in `state` (one sentence's, or several stacked): the samples
    /// of each sentence that became final (see `Generator::push`). `last`
    /// ends the sentences and empties `state`.
    pub fn decode_push(&self, state: &mut StreamState, z: &Tensor, g: Option<&Tensor>, last: bool) -> Result<Vec<Vec<f32>>> {
        let mut s = Slots::new(state);
        let y = self.decoder.push(&mut s, Some(z.clone()), g, last)?;
        Self::samples(s, y, z.dim(0)?, last)
    }

    /// [`Vits::decode_push`] of the flow's output: `z_p` is the next frames
    /// of the prior sample, run through the flow and then the decoder, both
    /// streaming, each computing every activation once. Over a sentence the
    /// samples are [`Vits::decode`] of [`Flow::reverse`] of the whole `z_p`
    /// up to float summation order; [`Vits::ready_samples`] says how many
    /// have come out.
    pub fn synth_push(&self, state: &mut StreamState, z_p: &Tensor, g: Option<&Tensor>, last: bool) -> Result<Vec<Vec<f32>>> {
        let mut s = Slots::new(state);
        let z = self.flow.push(&mut s, Some(z_p.clone()), g, last)?;
        let y = self.decoder.push(&mut s, z, g, last)?;
        Self::samples(s, y, z_p.dim(0)?, last)
    }

    fn samples(s: Slots, y: Option<Tensor>, batch: usize, last: bool) -> Result<Vec<Vec<f32>>> {
        if last {
            s.clear();
        }
        match y {
            Some(y) => y.to_dtype(DType::F32)?.flatten_from(1)?.to_vec2(),
            None => Ok(vec![Vec::new(); batch]),
        }
    }

    /// Samples out of [`Vits::synth_push`] once the first `frames` frames
    /// of a sentence's `z_p` have gone in (and more are to come).
    pub fn ready_samples(&self, frames: usize) -> usize {
        self.decoder.ready_samples(self.flow.ready_frames(frames))
    }

    fn speaker_embedding(&self, speaker: Option<u32>) -> std::result::Result<Option<Tensor>, PiperError> {
        match (&self.speakers, speaker) {
            (None, None) | (None, Some(0)) => Ok(None),
            (None, Some(id)) => Err(PiperError::UnknownSpeaker { id, count: 1 }),
            (Some(table), id) => {
                let id = id.unwrap_or(0);
                let count = table.dims()[0];
                if id as usize >= count {
                    return Err(PiperError::UnknownSpeaker { id, count });
                }
                let idx = Tensor::new(&[id], &self.device)?;
                Ok(Some(table.index_select(&idx, 0)?.unsqueeze(2)?)) // [1, G, 1]
            }
        }
    }
}
