//! The HiFi-GAN generator (`dec`, Kong et al. 2020): latent frames to
//! waveform. Every layer is a convolution, so the decoder streams
//! ([`Generator::push`], with the pieces of [`super::streaming`]): a
//! sentence's latent goes in a window at a time, and the samples come out
//! as their right context arrives, each activation computed once.

use candle_core::{Device, Module, Result, Tensor, D};

use super::fused;
use super::layers::{load_indexed, Conv};
use super::streaming::{compact, conv_ready, map, stream_conv, stream_conv_ready, stream_conv_transpose, Residual, Slots, StreamState};
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

/// A block streamed up to its last convolution (whose outputs the parallel
/// blocks' sum takes only as far as every block has them).
struct Head<'a> {
    conv: &'a Conv,
    /// The last convolution's new input, and its cache's slot.
    x: Option<Tensor>,
    cache: usize,
    /// `ResBlock1`: the pair's input (the last convolution's residual),
    /// waiting, and its slot.
    queue: Option<(Vec<Tensor>, usize)>,
}

impl ResBlock {
    /// Streams the block up to its last convolution (see [`Generator::push`]).
    fn push_head<'a>(&'a self, s: &mut Slots, x: Option<Tensor>, last: bool) -> Result<Head<'a>> {
        let mut x = x;
        match self {
            ResBlock::One(pairs) => {
                let ((c1, c2), rest) = pairs.split_last().expect("a ResBlock1 has pairs (checked at load)");
                for (c1, c2) in rest {
                    x = Head::pair(s, c1, c2, x, last)?.finish(s, None, last)?;
                }
                Head::pair(s, c1, c2, x, last)
            }
            ResBlock::Two(convs) => {
                let (last_conv, rest) = convs.split_last().expect("a ResBlock2 has convolutions (checked at load)");
                for c in rest {
                    x = stream_conv(c, s.slot(), x, last, Some(LRELU_SLOPE), Residual::Input, None)?;
                }
                Ok(Head { conv: last_conv, x, cache: s.index(), queue: None })
            }
        }
    }

    fn convs(&self) -> Vec<&Conv> {
        match self {
            ResBlock::One(pairs) => pairs.iter().flat_map(|(a, b)| [a, b]).collect(),
            ResBlock::Two(convs) => convs.iter().collect(),
        }
    }
}

impl<'a> Head<'a> {
    /// A `ResBlock1` pair up to `c2`: `c2(lrelu(c1(lrelu(x)))) + x`. The
    /// residual is x, not c1's output, so x waits while c1 holds its right
    /// context back.
    fn pair(s: &mut Slots, c1: &Conv, c2: &'a Conv, x: Option<Tensor>, last: bool) -> Result<Self> {
        let q = s.index();
        let queue: Vec<Tensor> = s.at(q).take().into_iter().chain(x.clone()).collect();
        let xt = stream_conv(c1, s.slot(), x, last, Some(LRELU_SLOPE), Residual::None, None)?;
        Ok(Head { conv: c2, x: xt, cache: s.index(), queue: Some((queue, q)) })
    }

    /// Outputs the last convolution can give now.
    fn ready(&self, s: &mut Slots, last: bool) -> Result<usize> {
        let x = self.x.as_ref().map_or(Ok(0), |x| x.dim(D::Minus1))?;
        stream_conv_ready(self.conv, s.at(self.cache), x, last)
    }

    /// Runs the last convolution, for at most `limit` outputs.
    fn finish(&mut self, s: &mut Slots, limit: Option<usize>, last: bool) -> Result<Option<Tensor>> {
        let mut cache = s.at(self.cache).take();
        let x = self.x.take();
        let y = match &mut self.queue {
            Some((queue, q)) => {
                let y = stream_conv(self.conv, &mut cache, x, last, Some(LRELU_SLOPE), Residual::Queue(queue), limit)?;
                *s.at(*q) = compact(queue)?;
                y
            }
            None => stream_conv(self.conv, &mut cache, x, last, Some(LRELU_SLOPE), Residual::Input, limit)?,
        };
        *s.at(self.cache) = cache;
        Ok(y)
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
                if c1.is_empty() || c1.len() != c2.len() {
                    return Err(PiperError::MissingWeight(format!("{n}.convs1 / convs2")));
                }
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

    /// Decodes latent frames `z: [B, C, F]` to samples `[B, 1, F * hop]`;
    /// `g` is the speaker conditioning, `[B, G, 1]` (or `[1, G, 1]` for all).
    /// Every layer works per batch item (the convolutions pad each item on
    /// its own), so an item decodes as it would alone. The same computation
    /// as [`Generator::push`] given the whole sentence at once.
    pub fn forward(&self, z: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        let mut state = StreamState::default();
        self.push(&mut Slots::new(&mut state), Some(z.clone()), g, true)?
            .ok_or_else(|| candle_core::Error::Msg("dec: a latent of no frames".into()))
    }

    /// Streams a sentence's latent through the decoder: `z: [B, C, n]` are
    /// the next `n` frames, `last` says the sentence ends with them. Gives
    /// the samples that became final, `[B, 1, m]`, in order; over a
    /// sentence they add up to [`Generator::forward`] of the whole latent
    /// (the same products; only sums split at a window's edge add in
    /// another order). [`Generator::ready_samples`] says how many.
    pub(crate) fn push(&self, s: &mut Slots, z: Option<Tensor>, g: Option<&Tensor>, last: bool) -> Result<Option<Tensor>> {
        let mut x = stream_conv(&self.conv_pre, s.slot(), z, last, None, Residual::None, None)?;
        if let (Some(c), Some(g)) = (&self.cond, g) {
            x = map(x, |x| x.broadcast_add(&c.forward(g)?))?;
        }
        for (up, blocks) in self.ups.iter().zip(&self.resblocks) {
            let x_up = stream_conv_transpose(up, s.slot(), x, last, Some(LRELU_SLOPE))?;
            // The blocks' mean, as far as every block has its outputs.
            let mut heads = blocks.iter().map(|b| b.push_head(s, x_up.clone(), last)).collect::<Result<Vec<_>>>()?;
            let ready = heads.iter().map(|h| h.ready(s, last)).collect::<Result<Vec<_>>>()?;
            let n = ready.iter().copied().min().unwrap_or(0);
            let mut outs = Vec::with_capacity(heads.len());
            for h in &mut heads {
                outs.extend(h.finish(s, Some(n), last)?);
            }
            if !outs.is_empty() && outs.len() != blocks.len() {
                return Err(candle_core::Error::Msg("dec: parallel residual blocks gave outputs of different lengths".into()));
            }
            x = fused::mean(&outs)?;
        }
        let y = stream_conv(&self.conv_post, s.slot(), x, last, Some(FINAL_LRELU_SLOPE), Residual::None, None)?;
        map(y, |y| fused::tanh_all(&y))
    }

    /// Output samples that are final once the first `frames` latent frames
    /// of a sentence have been pushed (and more are to come).
    pub fn ready_samples(&self, frames: usize) -> usize {
        let mut n = conv_ready(&self.conv_pre, frames);
        for (up, blocks) in self.ups.iter().zip(&self.resblocks) {
            let [p0, _] = up.attrs().pads;
            n = if n == 0 { 0 } else { (n * up.attrs().stride).saturating_sub(p0) };
            n = blocks.iter().map(|b| b.convs().iter().fold(n, |n, c| conv_ready(c, n))).min().unwrap_or(n);
        }
        conv_ready(&self.conv_post, n)
    }
}
