//! The normalising flow (`flow`): residual coupling layers with WaveNet-style
//! gated convolutions, run in reverse to turn a prior sample `z_p` into the
//! latent `z` the decoder consumes. Its convolutions are non-causal like the
//! decoder's, so it streams the same way ([`Flow::push`]).

use candle_core::{Device, Module, Result, Tensor, D};

use super::duration::flip;
use super::fused;
use super::layers::{cat_time, load_indexed, Conv};
use super::streaming::{compact, conv_ready, map, slice, steps, stream_conv, sum_aligned, Residual, Slots, StreamState};
use super::super::onnx::OnnxWeights;
use super::super::PiperError;

/// Gated, dilated, non-causal WaveNet (`WN`).
struct WaveNet {
    in_layers: Vec<Conv>,
    res_skip_layers: Vec<Conv>,
    cond_layer: Option<Conv>,
    hidden: usize,
}

impl WaveNet {
    fn load(w: &OnnxWeights, name: &str, dev: &Device) -> std::result::Result<Self, PiperError> {
        let in_layers = load_indexed(w, &format!("{name}.in_layers"), ".weight", |n| Conv::load(w, n, dev))?;
        let res_skip_layers =
            load_indexed(w, &format!("{name}.res_skip_layers"), ".weight", |n| Conv::load(w, n, dev))?;
        if in_layers.is_empty() || in_layers.len() != res_skip_layers.len() {
            return Err(PiperError::MissingWeight(format!("{name}.in_layers / res_skip_layers")));
        }
        let cond_name = format!("{name}.cond_layer");
        let cond_layer = if w.contains(&format!("{cond_name}.weight")) {
            Some(Conv::load(w, &cond_name, dev)?)
        } else {
            None
        };
        let hidden = in_layers[0].out_channels() / 2;
        Ok(Self { in_layers, res_skip_layers, cond_layer, hidden })
    }

    /// Streams the WaveNet (see [`Flow::push`]): each layer's input waits
    /// for its residual add while the layer's convolution holds its right
    /// context back, and the skip outputs wait for the slowest layer's.
    fn push(&self, s: &mut Slots, x: Option<Tensor>, g: Option<&Tensor>, last: bool) -> Result<Option<Tensor>> {
        let h = self.hidden;
        let g = match (&self.cond_layer, g) {
            (Some(c), Some(g)) => Some(c.forward(g)?),
            _ => None,
        };
        let mut x = x;
        let mut skips = Vec::with_capacity(self.in_layers.len());
        let last_layer = self.in_layers.len() - 1;
        for (i, (inl, rs)) in self.in_layers.iter().zip(&self.res_skip_layers).enumerate() {
            let q = s.index();
            let mut queue: Vec<Tensor> = s.at(q).take().into_iter().chain(x.clone()).collect();
            let mut x_in = stream_conv(inl, s.slot(), x, last, None, Residual::None, None)?;
            if let Some(g) = &g {
                x_in = map(x_in, |x| x.broadcast_add(&g.narrow(1, i * 2 * h, 2 * h)?))?;
            }
            let acts = map(x_in, |x| fused::gate(&x, h))?;
            let rs = stream_conv(rs, s.slot(), acts, last, None, Residual::None, None)?;
            x = None;
            let skip = match rs {
                Some(rs) if i < last_layer => {
                    let n = rs.dim(D::Minus1)?;
                    x = Some((cat_time(&slice(&queue, 0, n)?)? + rs.narrow(1, 0, h)?)?);
                    queue = slice(&queue, n, steps(&queue)? - n)?;
                    Some(rs.narrow(1, h, h)?)
                }
                rs => rs,
            };
            *s.at(q) = if i < last_layer { compact(&queue)? } else { None };
            skips.push(skip);
        }
        sum_aligned(s, skips, last)
    }

    /// Output frames once `n` input frames have arrived (more to come).
    fn ready(&self, n: usize) -> usize {
        self.in_layers.iter().zip(&self.res_skip_layers).fold(n, |n, (a, b)| conv_ready(b, conv_ready(a, n)))
    }
}

/// A mean-only `ResidualCouplingLayer`.
struct Coupling {
    pre: Conv,
    enc: WaveNet,
    post: Conv,
}

impl Coupling {
    /// Streams the coupling: `x1 - post(enc(pre(x0)))`, the input waiting
    /// (in a queue) for the statistics of its frames.
    fn push(&self, s: &mut Slots, x: Option<Tensor>, g: Option<&Tensor>, last: bool) -> Result<Option<Tensor>> {
        let q = s.index();
        let queue: Vec<Tensor> = s.at(q).take().into_iter().chain(x.clone()).collect();
        let x0 = map(x, |x| {
            let half = x.dim(1)? / 2;
            x.narrow(1, 0, half)
        })?;
        let h = stream_conv(&self.pre, s.slot(), x0, last, None, Residual::None, None)?;
        let h = self.enc.push(s, h, g, last)?;
        let stats = stream_conv(&self.post, s.slot(), h, last, None, Residual::None, None)?;
        let (out, consumed) = match stats {
            Some(stats) => {
                let n = stats.dim(D::Minus1)?;
                (Some(Self::reverse_step(&cat_time(&slice(&queue, 0, n)?)?, &stats)?), n)
            }
            None => (None, 0),
        };
        *s.at(q) = compact(&slice(&queue, consumed, steps(&queue)? - consumed)?)?;
        Ok(out)
    }

    /// The coupling in reverse on frames `x` given their statistics.
    fn reverse_step(x: &Tensor, stats: &Tensor) -> Result<Tensor> {
        let half = x.dim(1)? / 2;
        let x0 = x.narrow(1, 0, half)?;
        let x1 = x.narrow(1, half, half)?;
        let x1 = if stats.dim(1)? == half {
            (x1 - stats)?
        } else {
            // Not mean-only: stats = [m, logs].
            let m = stats.narrow(1, 0, half)?;
            let logs = stats.narrow(1, half, half)?;
            ((x1 - m)? * logs.neg()?.exp()?)?
        };
        Tensor::cat(&[&x0, &x1], 1)
    }

    /// Output frames once `n` input frames have arrived (more to come).
    fn ready(&self, n: usize) -> usize {
        conv_ready(&self.post, self.enc.ready(conv_ready(&self.pre, n)))
    }
}

/// `flow`: the residual coupling block.
pub struct Flow {
    /// Coupling layers in forward order (`flows.0`, `flows.2`, ...).
    layers: Vec<Coupling>,
}

impl Flow {
    pub fn load(w: &OnnxWeights, dev: &Device) -> std::result::Result<Self, PiperError> {
        let mut layers = Vec::new();
        let mut i = 0;
        while w.contains(&format!("flow.flows.{i}.pre.weight")) {
            let name = format!("flow.flows.{i}");
            layers.push(Coupling {
                pre: Conv::load(w, &format!("{name}.pre"), dev)?,
                enc: WaveNet::load(w, &format!("{name}.enc"), dev)?,
                post: Conv::load(w, &format!("{name}.post"), dev)?,
            });
            i += 2; // every coupling is followed by a Flip
        }
        if layers.is_empty() {
            return Err(PiperError::MissingWeight("flow.flows.0.pre.weight".into()));
        }
        Ok(Self { layers })
    }

    /// `z_p -> z` (reverse direction), `z_p: [B, C, F]`. The same
    /// computation as [`Flow::push`] given the whole sentence at once.
    pub fn reverse(&self, z_p: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut state = StreamState::default();
        self.push(&mut Slots::new(&mut state), Some(z_p.clone()), g, true)?
            .ok_or_else(|| candle_core::Error::Msg("flow: a latent of no frames".into()))
    }

    /// Streams a sentence's prior sample through the flow in reverse:
    /// `x: [B, C, n]` are the next `n` frames, `last` says the sentence
    /// ends with them. Gives the frames of `z` that became final, in order
    /// (over a sentence, [`Flow::reverse`] of the whole: each frame's
    /// output needs [`Flow::ready_frames`]' worth of frames past it).
    pub(crate) fn push(&self, s: &mut Slots, x: Option<Tensor>, g: Option<&Tensor>, last: bool) -> Result<Option<Tensor>> {
        let mut x = x;
        for layer in self.layers.iter().rev() {
            x = map(x, |x| flip(&x))?;
            x = layer.push(s, x, g, last)?;
        }
        Ok(x)
    }

    /// Frames of `z` that are final once the first `frames` frames of
    /// `z_p` have been pushed (and more are to come).
    pub fn ready_frames(&self, frames: usize) -> usize {
        self.layers.iter().fold(frames, |n, l| l.ready(n))
    }
}
