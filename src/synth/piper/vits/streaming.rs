//! Convolutions over a signal that arrives a window at a time, each output
//! computed once: the pieces the flow and the HiFi-GAN decoder stream with.
//!
//! A stride-1 convolution with symmetric padding is non-causal: output `t`
//! reads inputs up to `t + pad_right`. Streamed, it keeps the tail of its
//! input that its next outputs still read (left context), emits only the
//! outputs whose right context has arrived, and at the sentence's end pads
//! with zeros exactly as the whole-sentence convolution does. A transposed
//! convolution (upsampler) convolves each input once and keeps the partial
//! sums of the outputs later inputs still add to (overlap-add). Each layer
//! then lags its input by its own right padding; where branches of
//! different lags meet (a residual, a sum), the leading ones wait.
//!
//! The caches of one sentence live in a [`StreamState`], one slot per layer
//! in the order the layers run ([`Slots`]); a slot holds a tensor of its own
//! (never a view into a window's activations), so a state is small.

use candle_core::{Result, Tensor, D};

use super::layers::{cat_time, Conv};

/// A sentence's streaming caches (see the module doc): for each layer, in
/// a fixed order, the input tail a convolution keeps, the partial sums a
/// transposed convolution has yet to complete, or the inputs a residual add
/// waits with. Empty at a sentence's start and after its last push. States
/// of equal shapes stack into one batch (item by item the same).
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    slots: Vec<Option<Tensor>>,
}

impl StreamState {
    /// Whether `self` and `other` can be pushed as one batch (every cache
    /// of the same shape).
    pub fn batches_with(&self, other: &StreamState) -> bool {
        let n = self.slots.len().max(other.slots.len());
        (0..n).all(|i| self.shape(i) == other.shape(i))
    }

    fn shape(&self, i: usize) -> Option<&[usize]> {
        self.slots.get(i).and_then(|s| s.as_ref()).map(Tensor::dims)
    }

    /// One state for a batch of states that batch together (in order).
    pub fn stack(states: &[&StreamState]) -> Result<StreamState> {
        let n = states.iter().map(|s| s.slots.len()).max().unwrap_or(0);
        let slots = (0..n)
            .map(|i| {
                let parts: Option<Vec<&Tensor>> = states.iter().map(|s| s.slots.get(i).and_then(|t| t.as_ref())).collect();
                parts.map(|p| Tensor::cat(&p, 0)).transpose()
            })
            .collect::<Result<_>>()?;
        Ok(StreamState { slots })
    }

    /// The states of a stacked batch of `n`, in order.
    pub fn split(&self, n: usize) -> Result<Vec<StreamState>> {
        (0..n)
            .map(|b| {
                let slots =
                    self.slots.iter().map(|s| s.as_ref().map(|t| t.narrow(0, b, 1)?.force_contiguous()).transpose()).collect::<Result<_>>()?;
                Ok(StreamState { slots })
            })
            .collect()
    }
}

/// Hands out a state's slots in the order the layers run.
pub(crate) struct Slots<'a> {
    state: &'a mut StreamState,
    next: usize,
}

impl<'a> Slots<'a> {
    pub fn new(state: &'a mut StreamState) -> Self {
        Self { state, next: 0 }
    }

    /// Reserves the next slot: its index.
    pub fn index(&mut self) -> usize {
        if self.next == self.state.slots.len() {
            self.state.slots.push(None);
        }
        self.next += 1;
        self.next - 1
    }

    pub fn at(&mut self, i: usize) -> &mut Option<Tensor> {
        &mut self.state.slots[i]
    }

    /// The next slot.
    pub fn slot(&mut self) -> &mut Option<Tensor> {
        let i = self.index();
        self.at(i)
    }

    /// Empties every slot (the sentence has ended).
    pub fn clear(self) {
        self.state.slots.clear();
    }
}

/// What a streamed convolution adds to its output.
pub(crate) enum Residual<'a> {
    None,
    /// Its own (unactivated) input at the output's positions.
    Input,
    /// The first outputs' worth of a queue of earlier inputs (a signal in
    /// pieces), which loses them: the input of a residual branch whose
    /// first convolution has held some back.
    Queue(&'a mut Vec<Tensor>),
}

/// Total outputs of a stride-1 convolution once `n` inputs have arrived
/// (more to come).
pub fn conv_ready(c: &Conv, n: usize) -> usize {
    (n + c.attrs().pads[0]).saturating_sub(c.span() - 1)
}

/// Steps of a signal given in pieces.
pub fn steps(parts: &[Tensor]) -> Result<usize> {
    parts.iter().map(|p| p.dim(D::Minus1)).sum()
}

/// Steps `[from, from + len)` of the signal `parts` make, as views.
pub fn slice(parts: &[Tensor], from: usize, len: usize) -> Result<Vec<Tensor>> {
    let (mut out, mut at, end) = (Vec::new(), 0, from + len);
    for p in parts {
        let n = p.dim(D::Minus1)?;
        let (a, b) = (from.max(at), end.min(at + n));
        if a < b {
            out.push(p.narrow(D::Minus1, a - at, b - a)?);
        }
        at += n;
    }
    Ok(out)
}

/// The signal `parts` make as one tensor of its own (not a view into a
/// larger one, which would keep it alive), `None` if empty.
pub fn compact(parts: &[Tensor]) -> Result<Option<Tensor>> {
    Ok(match parts {
        [] => None,
        [one] => Some(one.force_contiguous()?),
        _ => Some(Tensor::cat(parts, D::Minus1)?),
    })
}

/// Outputs a streamed convolution can give now, with `x` (steps) new.
pub fn stream_conv_ready(c: &Conv, cache: &Option<Tensor>, x: usize, last: bool) -> Result<usize> {
    let [pl, pr] = c.attrs().pads;
    let (left, cached) = match cache {
        Some(t) => (0, t.dim(D::Minus1)?),
        None => (pl, 0),
    };
    let right = if last { pr } else { 0 };
    Ok(if cached + x == 0 { 0 } else { (left + cached + x + right).saturating_sub(c.span() - 1) })
}

/// One streamed stride-1 convolution, `conv(leaky_relu(x)) + residual`,
/// giving at most `limit` outputs (the rest wait in the cache). `cache`
/// holds the padded input from the first tap of the next output on
/// (`None` before the sentence's first input: the left padding is still
/// to come).
pub(crate) fn stream_conv(
    c: &Conv,
    cache: &mut Option<Tensor>,
    x: Option<Tensor>,
    last: bool,
    slope: Option<f64>,
    residual: Residual,
    limit: Option<usize>,
) -> Result<Option<Tensor>> {
    let [pl, pr] = c.attrs().pads;
    let keep = c.span() - 1;
    let can = stream_conv_ready(c, cache, x.as_ref().map_or(Ok(0), |x| x.dim(D::Minus1))?, last)?;
    let n_out = limit.map_or(can, |l| l.min(can));
    if last && n_out < can {
        return Err(candle_core::Error::Msg("stream: a convolution held outputs back at the sentence's end".into()));
    }
    let left = if cache.is_some() { 0 } else { pl };
    let parts: Vec<Tensor> = cache.take().into_iter().chain(x).collect();
    let len = steps(&parts)?;
    if n_out == 0 {
        if last && len > 0 {
            return Err(candle_core::Error::Msg("stream: a convolution's input ended before its first output".into()));
        }
        *cache = compact(&parts)?.map(|t| t.pad_with_zeros(D::Minus1, left, 0)).transpose()?;
        return Ok(None);
    }
    let right = if last { pr } else { 0 };
    // Output j reads padded steps [j, j + keep]; in `parts`, step j - left on.
    let input = slice(&parts, 0, n_out + keep - left - right)?;
    let y = match residual {
        Residual::None => c.forward_parts(&input, [left, right], slope, &[])?,
        // Output j sits at padded input j + pl.
        Residual::Input => c.forward_parts(&input, [left, right], slope, &slice(&parts, pl - left, n_out)?)?,
        Residual::Queue(queue) => {
            let y = c.forward_parts(&input, [left, right], slope, &slice(queue, 0, n_out)?)?;
            let rest = steps(queue)? - n_out;
            *queue = slice(queue, n_out, rest)?;
            y
        }
    };
    if !last {
        // The padded input from the next output's first tap on.
        *cache = if n_out >= left {
            compact(&slice(&parts, n_out - left, len + left - n_out)?)?
        } else {
            compact(&parts)?.map(|t| t.pad_with_zeros(D::Minus1, left - n_out, 0)).transpose()?
        };
    }
    Ok(Some(y))
}

/// One streamed transposed convolution (an upsampler). Inputs are
/// convolved unpadded once each; `tail` holds the partial sums of the
/// outputs the next inputs still add to (overlap-add), `None` before the
/// first input (whose first `pads[0]` outputs are cropped). `slope`: a
/// leaky ReLU on the input first.
pub(crate) fn stream_conv_transpose(up: &Conv, tail: &mut Option<Tensor>, x: Option<Tensor>, last: bool, slope: Option<f64>) -> Result<Option<Tensor>> {
    let [p0, p1] = up.attrs().pads;
    let overlap = up.span().saturating_sub(up.attrs().stride);
    let started = tail.is_some() || overlap == 0 && p0 == 0;
    let raw = x.map(|x| up.conv_transpose_unpadded_leaky(&x, slope)).transpose()?;
    let raw = match (tail.take(), raw) {
        (Some(t), Some(r)) => {
            let len = r.dim(D::Minus1)?;
            let head = (r.narrow(D::Minus1, 0, overlap)? + t)?;
            cat_time(&[head, r.narrow(D::Minus1, overlap, len - overlap)?])?
        }
        (t, r) => match t.or(r) {
            Some(raw) => raw,
            None => return Ok(None),
        },
    };
    let len = raw.dim(D::Minus1)?;
    let crop = if started { 0 } else { p0 };
    let end = if last { len.saturating_sub(p1) } else { len - overlap };
    if end <= crop {
        return Err(candle_core::Error::Msg("stream: an upsampler's input is shorter than its padding".into()));
    }
    if !last && overlap > 0 {
        *tail = compact(&[raw.narrow(D::Minus1, len - overlap, overlap)?])?;
    }
    Ok(Some(up.add_bias(&raw.narrow(D::Minus1, crop, end - crop)?)?))
}

/// The sum of signals that reach the same steps at different times (in
/// order, as `a + b + c`): each signal's steps wait in its own slot until
/// every signal has reached them.
pub(crate) fn sum_aligned(s: &mut Slots, signals: Vec<Option<Tensor>>, last: bool) -> Result<Option<Tensor>> {
    let mut full = Vec::with_capacity(signals.len());
    for x in signals {
        let i = s.index();
        let parts: Vec<Tensor> = s.at(i).take().into_iter().chain(x).collect();
        full.push((i, steps(&parts)?, parts));
    }
    let n = full.iter().map(|f| f.1).min().unwrap_or(0);
    if last && full.iter().any(|f| f.1 != n) {
        return Err(candle_core::Error::Msg("stream: parallel signals ended at different lengths".into()));
    }
    let mut sum: Option<Tensor> = None;
    for (i, len, parts) in full {
        if n > 0 {
            let y = cat_time(&slice(&parts, 0, n)?)?;
            sum = Some(match sum {
                Some(s) => (s + y)?,
                None => y,
            });
        }
        *s.at(i) = compact(&slice(&parts, n, len - n)?)?;
    }
    Ok(sum)
}

/// `f` on a chunk, if there is one.
pub fn map(x: Option<Tensor>, f: impl FnOnce(Tensor) -> Result<Tensor>) -> Result<Option<Tensor>> {
    x.map(f).transpose()
}
