//! HiFT's residual blocks: HiFi-GAN's `ResBlock1` with Snake activations
//! (BigVGAN-style; reference `ResBlock` in chatterbox `models/s3gen/hifigan.py`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::synth::chatterbox::s3gen::nn::{Conv1d, ConvSpec, Snake};

/// For each dilation `d`: `x += conv2(snake2(conv1_d(snake1(x))))`.
#[derive(Debug, Clone)]
pub struct ResBlock {
    layers: Vec<(Snake, Conv1d, Snake, Conv1d)>,
}

impl ResBlock {
    pub fn load(channels: usize, kernel: usize, dilations: &[usize], vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::with_capacity(dilations.len());
        for (i, &d) in dilations.iter().enumerate() {
            layers.push((
                Snake::load(channels, vb.pp(format!("activations1.{i}")))?,
                Conv1d::load_weight_norm(channels, channels, ConvSpec::same(kernel, d), vb.pp(format!("convs1.{i}")))?,
                Snake::load(channels, vb.pp(format!("activations2.{i}")))?,
                Conv1d::load_weight_norm(channels, channels, ConvSpec::same(kernel, 1), vb.pp(format!("convs2.{i}")))?,
            ));
        }
        Ok(Self { layers })
    }
}

impl Module for ResBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (a1, c1, a2, c2) in &self.layers {
            let y = c2.forward(&a2.forward(&c1.forward(&a1.forward(&x)?)?)?)?;
            x = (y + x)?;
        }
        Ok(x)
    }
}
