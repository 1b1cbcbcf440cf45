//! The normalising flow (`flow`): residual coupling layers with WaveNet-style
//! gated convolutions, run in reverse to turn a prior sample `z_p` into the
//! latent `z` the decoder consumes.

use candle_core::{Device, Module, Result, Tensor};

use super::duration::flip;
use super::layers::{load_indexed, Conv};
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

    fn forward(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let h = self.hidden;
        let g = match (&self.cond_layer, g) {
            (Some(c), Some(g)) => Some(c.forward(g)?),
            _ => None,
        };
        let mut x = x.clone();
        let mut output: Option<Tensor> = None;
        let last = self.in_layers.len() - 1;
        for (i, (inl, rs)) in self.in_layers.iter().zip(&self.res_skip_layers).enumerate() {
            let mut x_in = inl.forward(&x)?;
            if let Some(g) = &g {
                x_in = x_in.broadcast_add(&g.narrow(1, i * 2 * h, 2 * h)?)?;
            }
            let acts = (x_in.narrow(1, 0, h)?.tanh()? * candle_nn::ops::sigmoid(&x_in.narrow(1, h, h)?)?)?;
            let rs = rs.forward(&acts)?;
            let skip = if i < last {
                x = (x + rs.narrow(1, 0, h)?)?;
                rs.narrow(1, h, h)?
            } else {
                rs
            };
            output = Some(match output {
                Some(o) => (o + skip)?,
                None => skip,
            });
        }
        output.ok_or_else(|| candle_core::Error::Msg("empty WaveNet".into()))
    }
}

/// A mean-only `ResidualCouplingLayer`.
struct Coupling {
    pre: Conv,
    enc: WaveNet,
    post: Conv,
}

impl Coupling {
    fn reverse(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let half = x.dim(1)? / 2;
        let x0 = x.narrow(1, 0, half)?;
        let x1 = x.narrow(1, half, half)?;
        let h = self.enc.forward(&self.pre.forward(&x0)?, g)?;
        let stats = self.post.forward(&h)?;
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

    /// `z_p -> z` (reverse direction), `z_p: [1, C, F]`.
    pub fn reverse(&self, z_p: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut x = z_p.clone();
        for layer in self.layers.iter().rev() {
            x = flip(&x)?;
            x = layer.reverse(&x, g)?;
        }
        Ok(x)
    }
}
