//! The HiFi-GAN generator (`dec`, Kong et al. 2020): latent frames to
//! waveform. Every layer is a convolution, so a window of frames decodes to
//! the matching window of samples given enough context on both sides; the
//! streaming decoder relies on that.

use candle_core::{Device, Module, Result, Tensor};

use super::layers::{leaky_relu, load_indexed, Conv};
use super::super::onnx::OnnxWeights;
use super::super::PiperError;

const LRELU_SLOPE: f64 = 0.1;
/// `F.leaky_relu`'s default slope, used once before `conv_post`.
const FINAL_LRELU_SLOPE: f64 = 0.01;

enum ResBlock {
    /// `ResBlock1`: pairs of (dilated conv, plain conv).
    One(Vec<(Conv, Conv)>),
    /// `ResBlock2`: single dilated convs.
    Two(Vec<Conv>),
}

impl ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        match self {
            ResBlock::One(pairs) => {
                for (c1, c2) in pairs {
                    let xt = c1.forward_leaky(&x, LRELU_SLOPE)?;
                    // c2(lrelu(xt)) + x: the residual is x, not xt.
                    x = (c2.forward_leaky(&xt, LRELU_SLOPE)? + x)?;
                }
            }
            ResBlock::Two(convs) => {
                for c in convs {
                    x = c.forward_leaky_residual(&x, LRELU_SLOPE)?;
                }
            }
        }
        Ok(x)
    }

    fn convs(&self) -> Vec<&Conv> {
        match self {
            ResBlock::One(pairs) => pairs.iter().flat_map(|(a, b)| [a, b]).collect(),
            ResBlock::Two(convs) => convs.iter().collect(),
        }
    }
}

/// `dec`: the HiFi-GAN generator.
pub struct Generator {
    conv_pre: Conv,
    cond: Option<Conv>,
    ups: Vec<Conv>,
    /// `resblocks[i]` are the parallel blocks after upsampler `i`.
    resblocks: Vec<Vec<ResBlock>>,
    conv_post: Conv,
}

impl Generator {
    pub fn load(w: &OnnxWeights, dev: &Device) -> std::result::Result<Self, PiperError> {
        let ups = load_indexed(w, "dec.ups", ".weight", |n| Conv::load(w, n, dev))?;
        let mut blocks = Vec::new();
        loop {
            let n = format!("dec.resblocks.{}", blocks.len());
            let block = if w.contains(&format!("{n}.convs1.0.weight")) {
                let c1 = load_indexed(w, &format!("{n}.convs1"), ".weight", |m| Conv::load(w, m, dev))?;
                let c2 = load_indexed(w, &format!("{n}.convs2"), ".weight", |m| Conv::load(w, m, dev))?;
                ResBlock::One(c1.into_iter().zip(c2).collect())
            } else if w.contains(&format!("{n}.convs.0.weight")) {
                ResBlock::Two(load_indexed(w, &format!("{n}.convs"), ".weight", |m| Conv::load(w, m, dev))?)
            } else {
                break;
            };
            blocks.push(block);
        }
        if ups.is_empty() || blocks.is_empty() || blocks.len() % ups.len() != 0 {
            return Err(PiperError::MissingWeight(format!(
                "dec: {} upsamplers and {} residual blocks do not fit together",
                ups.len(),
                blocks.len()
            )));
        }
        let per_up = blocks.len() / ups.len();
        let mut resblocks: Vec<Vec<ResBlock>> = Vec::new();
        for (i, b) in blocks.into_iter().enumerate() {
            if i % per_up == 0 {
                resblocks.push(Vec::new());
            }
            if let Some(last) = resblocks.last_mut() {
                last.push(b);
            }
        }
        let cond = if w.contains("dec.cond.weight") { Some(Conv::load(w, "dec.cond", dev)?) } else { None };
        Ok(Self { conv_pre: Conv::load(w, "dec.conv_pre", dev)?, cond, ups, resblocks, conv_post: Conv::load(w, "dec.conv_post", dev)? })
    }

    /// Output samples per latent frame (the product of the upsampling strides).
    pub fn hop_length(&self) -> usize {
        self.ups.iter().map(|u| u.attrs().stride).product()
    }

    /// How many latent frames on each side influence a frame's samples
    /// (rounded up): the context a windowed decode needs to be exact.
    pub fn receptive_field_frames(&self) -> usize {
        // Radius in samples at each stage's own rate, converted to frames.
        let mut radius_frames = (self.conv_pre.kernel_size() / 2) as f64;
        let mut rate = 1.0;
        for (up, blocks) in self.ups.iter().zip(&self.resblocks) {
            rate *= up.attrs().stride as f64;
            radius_frames += (up.kernel_size() as f64 / up.attrs().stride as f64).ceil();
            let widest = blocks
                .iter()
                .map(|b| b.convs().iter().map(|c| (c.kernel_size() / 2 * c.attrs().dilation) as f64).sum::<f64>())
                .fold(0.0, f64::max);
            radius_frames += widest / rate;
        }
        radius_frames += (self.conv_post.kernel_size() / 2) as f64 / rate;
        radius_frames.ceil() as usize
    }

    /// Decodes latent frames `z: [B, C, F]` to samples `[B, 1, F * hop]`;
    /// `g` is the speaker conditioning, `[B, G, 1]` (or `[1, G, 1]` for all).
    /// Every layer works per batch item (the convolutions pad each item on
    /// its own), so an item decodes as it would alone.
    pub fn forward(&self, z: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut x = self.conv_pre.forward(z)?;
        if let (Some(c), Some(g)) = (&self.cond, g) {
            x = x.broadcast_add(&c.forward(g)?)?;
        }
        for (up, blocks) in self.ups.iter().zip(&self.resblocks) {
            x = up.forward(&leaky_relu(&x, LRELU_SLOPE)?)?;
            let mut sum: Option<Tensor> = None;
            for b in blocks {
                let y = b.forward(&x)?;
                sum = Some(match sum {
                    Some(s) => (s + y)?,
                    None => y,
                });
            }
            x = match sum {
                Some(s) => (s / blocks.len() as f64)?,
                None => x,
            };
        }
        let x = self.conv_post.forward_leaky(&x, FINAL_LRELU_SLOPE)?;
        x.tanh()
    }
}
