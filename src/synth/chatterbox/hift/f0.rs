//! HiFT's F0 predictor (reference `ConvRNNF0Predictor` in chatterbox
//! `models/s3gen/f0_predictor.py`): five weight-normalised `Conv1d(k=3)` + ELU
//! over the mel, a `Linear(C → 1)` per frame, and `|·|`, giving Hz.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::synth::chatterbox::s3gen::nn::{Conv1d, ConvSpec};

/// Convolutions in the predictor's stack.
const LAYERS: usize = 5;

#[derive(Debug, Clone)]
pub struct F0Predictor {
    convs: Vec<Conv1d>,
    classifier: Linear,
}

impl F0Predictor {
    pub fn load(in_channels: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        let convs = (0..LAYERS)
            .map(|i| {
                let c_in = if i == 0 { in_channels } else { channels };
                // condnet is a Sequential of (conv, ELU) pairs: convs at even indices.
                Conv1d::load_weight_norm(c_in, channels, ConvSpec::padded(3, 1), vb.pp(format!("condnet.{}", 2 * i)))
            })
            .collect::<Result<_>>()?;
        let classifier = candle_nn::linear(channels, 1, vb.pp("classifier"))?;
        Ok(Self { convs, classifier })
    }

    /// Receptive field radius in mel frames.
    pub const CONTEXT: usize = LAYERS;
}

impl Module for F0Predictor {
    /// `[B, n_mels, T]` -> F0 in Hz `[B, T]`.
    fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let mut x = mel.clone();
        for conv in &self.convs {
            x = conv.forward(&x)?.elu(1.0)?;
        }
        self.classifier.forward(&x.transpose(1, 2)?)?.squeeze(2)?.abs()
    }
}
