//! Duration prediction (`dp`): how many spectrogram frames each phoneme lasts.
//!
//! Piper voices use VITS' stochastic duration predictor, run in reverse: noise
//! `z ~ N(0, 1) * noise_w` goes back through the (pruned) flow stack
//! `[Flip, ConvFlow, Flip, ConvFlow, Flip, ConvFlow, Flip, ElementwiseAffine]`
//! conditioned on the encoder states, and the first channel is `log w`.
//! Voices trained without it have the deterministic `DurationPredictor`.

use candle_core::{Device, Module, Result, Tensor, D};

use super::layers::{load_indexed, ChannelNorm, Conv};
use super::spline::{inverse_rq_spline, SplineParams};
use super::super::onnx::OnnxWeights;
use super::super::PiperError;

const SPLINE_BINS: usize = 10;
const SPLINE_TAIL_BOUND: f32 = 5.0;

/// Dilated depth-separable convolutions (`DDSConv`).
struct DdsConv {
    layers: Vec<(Conv, ChannelNorm, Conv, ChannelNorm)>,
}

impl DdsConv {
    fn load(w: &OnnxWeights, name: &str, dev: &Device) -> std::result::Result<Self, PiperError> {
        let layers = load_indexed(w, &format!("{name}.convs_sep"), ".weight", |sep| {
            let i = sep.rsplit('.').next().unwrap_or("0");
            Ok((
                Conv::load(w, sep, dev)?,
                ChannelNorm::load(w, &format!("{name}.norms_1.{i}"), dev)?,
                Conv::load(w, &format!("{name}.convs_1x1.{i}"), dev)?,
                ChannelNorm::load(w, &format!("{name}.norms_2.{i}"), dev)?,
            ))
        })?;
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut x = match g {
            Some(g) => x.broadcast_add(g)?,
            None => x.clone(),
        };
        for (sep, n1, pw, n2) in &self.layers {
            let y = n1.forward(&sep.forward(&x)?)?.gelu_erf()?;
            let y = n2.forward(&pw.forward(&y)?)?.gelu_erf()?;
            x = (x + y)?;
        }
        Ok(x)
    }
}

/// One `ConvFlow`: a spline coupling on the second half of the channels.
struct ConvFlow {
    pre: Conv,
    convs: DdsConv,
    proj: Conv,
    filter_channels: usize,
}

impl ConvFlow {
    fn load(w: &OnnxWeights, name: &str, dev: &Device) -> std::result::Result<Self, PiperError> {
        let pre = Conv::load(w, &format!("{name}.pre"), dev)?;
        Ok(Self {
            filter_channels: pre.out_channels(),
            pre,
            convs: DdsConv::load(w, &format!("{name}.convs"), dev)?,
            proj: Conv::load(w, &format!("{name}.proj"), dev)?,
        })
    }

    /// Reverse pass on `z: [1, 2, T]` conditioned on `cond: [1, F, T]`.
    fn reverse(&self, z: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let x0 = z.narrow(1, 0, 1)?;
        let x1 = z.narrow(1, 1, 1)?;
        let h = self.pre.forward(&x0)?;
        let h = self.convs.forward(&h, Some(cond))?;
        let h = self.proj.forward(&h)?; // [1, 3*bins-1, T]
        let t = h.dim(D::Minus1)?;
        let params = h.squeeze(0)?.t()?.contiguous()?.to_vec2::<f32>()?; // [T][29]
        let x1v = x1.flatten_all()?.to_vec1::<f32>()?;
        let scale = (self.filter_channels as f32).sqrt();
        let mut out = Vec::with_capacity(t);
        for (y, p) in x1v.iter().zip(&params) {
            let widths: Vec<f32> = p[..SPLINE_BINS].iter().map(|v| v / scale).collect();
            let heights: Vec<f32> = p[SPLINE_BINS..2 * SPLINE_BINS].iter().map(|v| v / scale).collect();
            let sp = SplineParams { widths: &widths, heights: &heights, derivatives: &p[2 * SPLINE_BINS..] };
            out.push(inverse_rq_spline(*y, &sp, SPLINE_TAIL_BOUND));
        }
        let x1 = Tensor::from_vec(out, (1, 1, t), z.device())?;
        Tensor::cat(&[&x0, &x1], 1)
    }
}

enum Predictor {
    Stochastic {
        pre: Conv,
        convs: DdsConv,
        proj: Conv,
        /// Reverse order: applied to the noise first to last.
        flows: Vec<ConvFlow>,
        affine_m: Tensor,
        affine_exp_neg_logs: Tensor,
    },
    Deterministic {
        conv_1: Conv,
        norm_1: ChannelNorm,
        conv_2: Conv,
        norm_2: ChannelNorm,
        proj: Conv,
    },
}

/// The voice's duration predictor.
pub struct DurationPredictor {
    predictor: Predictor,
    cond: Option<Conv>,
}

impl DurationPredictor {
    pub fn load(w: &OnnxWeights, dev: &Device) -> std::result::Result<Self, PiperError> {
        let cond = if w.contains("dp.cond.weight") { Some(Conv::load(w, "dp.cond", dev)?) } else { None };
        let predictor = if w.contains("dp.conv_1.weight") {
            Predictor::Deterministic {
                conv_1: Conv::load(w, "dp.conv_1", dev)?,
                norm_1: ChannelNorm::load(w, "dp.norm_1", dev)?,
                conv_2: Conv::load(w, "dp.conv_2", dev)?,
                norm_2: ChannelNorm::load(w, "dp.norm_2", dev)?,
                proj: Conv::load(w, "dp.proj", dev)?,
            }
        } else {
            // The exported reverse pass keeps ConvFlows 7, 5, 3 (1 is pruned).
            let mut flows = (3..64)
                .step_by(2)
                .filter(|i| w.contains(&format!("dp.flows.{i}.pre.weight")))
                .map(|i| ConvFlow::load(w, &format!("dp.flows.{i}"), dev))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            flows.reverse();
            if flows.is_empty() {
                return Err(PiperError::MissingWeight("dp.flows.3.pre.weight".into()));
            }
            Predictor::Stochastic {
                pre: Conv::load(w, "dp.pre", dev)?,
                convs: DdsConv::load(w, "dp.convs", dev)?,
                proj: Conv::load(w, "dp.proj", dev)?,
                flows,
                affine_m: w.get("dp.flows.0.m", dev)?.reshape((1, 2, 1))?,
                affine_exp_neg_logs: w.get("dp.flows.0.exp_neg_logs", dev)?.reshape((1, 2, 1))?,
            }
        };
        Ok(Self { predictor, cond })
    }

    /// `log w` `[1, 1, T]` for encoder states `x: [1, H, T]`.
    ///
    /// `noise` is `[1, 2, T]` standard normal noise (already scaled by
    /// `noise_w`); it is ignored by deterministic predictors.
    pub fn forward(&self, x: &Tensor, g: Option<&Tensor>, noise: &Tensor) -> Result<Tensor> {
        let condition = |x: Tensor| -> Result<Tensor> {
            match (&self.cond, g) {
                (Some(c), Some(g)) => x.broadcast_add(&c.forward(g)?),
                _ => Ok(x),
            }
        };
        match &self.predictor {
            Predictor::Deterministic { conv_1, norm_1, conv_2, norm_2, proj } => {
                let x = condition(x.clone())?;
                let x = norm_1.forward(&conv_1.forward(&x)?.relu()?)?;
                let x = norm_2.forward(&conv_2.forward(&x)?.relu()?)?;
                proj.forward(&x)
            }
            Predictor::Stochastic { pre, convs, proj, flows, affine_m, affine_exp_neg_logs } => {
                let h = condition(pre.forward(x)?)?;
                let h = proj.forward(&convs.forward(&h, None)?)?;
                let mut z = noise.clone();
                for flow in flows {
                    z = flip(&z)?;
                    z = flow.reverse(&z, &h)?;
                }
                z = flip(&z)?;
                z = z.broadcast_sub(affine_m)?.broadcast_mul(affine_exp_neg_logs)?;
                z.narrow(1, 0, 1)
            }
        }
    }
}

/// `torch.flip(x, [1])`: reverses the channel order.
pub fn flip(x: &Tensor) -> Result<Tensor> {
    let c = x.dim(1)?;
    let idx: Vec<u32> = (0..c as u32).rev().collect();
    let idx = Tensor::from_vec(idx, c, x.device())?;
    x.contiguous()?.index_select(&idx, 1)
}
