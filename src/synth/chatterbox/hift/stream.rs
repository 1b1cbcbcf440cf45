//! HiFT over a mel that arrives a few frames at a time.
//!
//! Each step vocodes a window of mel frames: `left_context` frames already
//! vocoded, the new frames, and `lookahead` frames held back as right context
//! (vocoded again next time). The excitation is generated once per frame, in
//! order, from one [`SineState`] (phase sums, initial phases, noise), as soon as
//! a frame's F0 is final (its ±5-frame predictor context has arrived); frames
//! in the right context get a provisional excitation from a copy of the state.
//!
//! HiFT is not causal: its receptive field is about ±14 mel frames from the
//! mel and ±19 through F0 and the source. With `left_context` and `lookahead`
//! at least [`RECEPTIVE_FIELD`] frames the chunked audio equals the whole-mel
//! audio (to float rounding). With a shorter `lookahead` the last frames of a
//! step are computed without all their right context; the first `crossfade`
//! samples each step emits are then crossfaded (raised cosine) with the
//! previous step's version of them, so the seam is continuous.

use candle_core::{Result, Tensor, D};

use super::f0::F0Predictor;
use super::source::{Noise, SineState};
use super::Hift;

/// Mel frames of context on each side beyond which the output no longer changes.
pub const RECEPTIVE_FIELD: usize = 20;

/// Window sizes of a [`HiftStream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiftStreamConfig {
    /// Already-vocoded frames fed again as left context.
    pub left_context: usize,
    /// Newest frames held back as right context until more arrive.
    pub lookahead: usize,
    /// Samples crossfaded at each seam (0: butt-joined).
    pub crossfade: usize,
}

impl Default for HiftStreamConfig {
    /// 80 ms of lookahead, full left context, a 10 ms crossfade.
    fn default() -> Self {
        Self { left_context: RECEPTIVE_FIELD, lookahead: 4, crossfade: 240 }
    }
}

impl HiftStreamConfig {
    /// Windows wide enough that chunked output equals whole output.
    pub fn exact() -> Self {
        Self { left_context: RECEPTIVE_FIELD, lookahead: RECEPTIVE_FIELD, crossfade: 0 }
    }
}

/// What [`HiftStream::prepare`] leaves to do.
#[derive(Debug)]
pub enum HiftStep {
    /// No frame to vocode: these samples (the held tail at the end, else none) are the step's output.
    Done(Vec<f32>),
    /// Decode this window, then [`HiftStream::complete`].
    Vocode(VocodeStep),
}

/// A window to vocode: mel `[1, n_mels, frames]` and excitation `[1, 1, frames·480]`.
#[derive(Debug)]
pub struct VocodeStep {
    pub mel: Tensor,
    pub source: Tensor,
    /// First frame of the window, frames final after it, and whether it ends the stream.
    start: usize,
    ready: usize,
    last: bool,
}

/// One utterance's vocoder state.
#[derive(Debug)]
/// Owns a clone of the vocoder (its tensors are shared, not copied), so a
/// stream can outlive the borrow it was made from.
pub struct HiftStream {
    hift: Hift,
    cfg: HiftStreamConfig,
    /// Mel frames kept, `[1, n_mels, kept]`, starting at frame `mel_start`.
    mel: Option<Tensor>,
    mel_start: usize,
    received: usize,
    /// Frames whose audio has been emitted (apart from the held crossfade tail).
    emitted: usize,
    /// Committed excitation samples, starting at frame `source_start`.
    source: Vec<f32>,
    source_start: usize,
    /// Frames with committed excitation.
    source_done: usize,
    sine: SineState,
    /// Samples emitted so far.
    written: usize,
    /// The previous step's audio for the next `crossfade` samples.
    tail: Vec<f32>,
}

impl HiftStream {
    /// `cfg.crossfade` is capped at one frame (480 samples) and
    /// `cfg.left_context` raised to at least the F0 predictor's context.
    pub fn new(hift: &Hift, mut cfg: HiftStreamConfig, sine: SineState) -> Self {
        let spf = hift.config().samples_per_frame();
        cfg.crossfade = cfg.crossfade.min(spf);
        cfg.left_context = cfg.left_context.max(F0Predictor::CONTEXT);
        Self {
            hift: hift.clone(),
            cfg,
            mel: None,
            mel_start: 0,
            received: 0,
            emitted: 0,
            source: Vec::new(),
            source_start: 0,
            source_done: 0,
            sine,
            written: 0,
            tail: Vec::new(),
        }
    }

    /// Mel frames received so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// Audio samples returned so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Adds mel frames `[1, n_mels, n]`; returns the audio that became final.
    pub fn push(&mut self, mel: &Tensor) -> Result<Vec<f32>> {
        self.append(mel)?;
        self.step(false)
    }

    /// Adds mel frames without vocoding (when [`Self::finish`] follows).
    pub fn append(&mut self, mel: &Tensor) -> Result<()> {
        let n = mel.dim(D::Minus1)?;
        if n > 0 {
            self.mel = Some(match self.mel.take() {
                Some(m) => Tensor::cat(&[&m, mel], D::Minus1)?,
                None => mel.clone(),
            });
            self.received += n;
        }
        Ok(())
    }

    /// No more mel: vocodes what is left.
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        self.step(true)
    }

    fn step(&mut self, last: bool) -> Result<Vec<f32>> {
        match self.prepare(last)? {
            HiftStep::Done(audio) => Ok(audio),
            HiftStep::Vocode(step) => {
                let audio: Vec<f32> = self.hift.decode(&step.mel, &step.source)?.flatten_all()?.to_vec1()?;
                self.complete(step, &audio)
            }
        }
    }

    /// The first half of a step (of [`Self::push`] after [`Self::append`], or
    /// of [`Self::finish`] with `last`): the window and its excitation, for
    /// [`Hift::decode`] (alone, or stacked with other streams' equal-length
    /// windows); [`Self::complete`] takes the decoded audio.
    pub fn prepare(&mut self, last: bool) -> Result<HiftStep> {
        let ready = if last { self.received } else { self.received.saturating_sub(self.cfg.lookahead) };
        if ready <= self.emitted {
            // Nothing new; at the end, the held samples go out as they are.
            let rest = if last { std::mem::take(&mut self.tail) } else { Vec::new() };
            self.written += rest.len();
            return Ok(HiftStep::Done(rest));
        }
        let spf = self.hift.config().samples_per_frame();
        let start = self.emitted.saturating_sub(self.cfg.left_context);
        let end = self.received;
        let mel = self.mel.as_ref().expect("frames were pushed");
        let window = mel.narrow(D::Minus1, start - self.mel_start, end - start)?;

        // F0 over the window; frames with their whole predictor context get a
        // committed excitation, the rest a provisional one.
        let f0: Vec<f32> = self.hift.f0(&window)?.flatten_all()?.to_vec1()?;
        let f0_final = if last { end } else { end.saturating_sub(F0Predictor::CONTEXT) };
        if f0_final > self.source_done {
            let new = &f0[self.source_done - start..f0_final - start];
            let s = self.hift.source(&Tensor::new(new, window.device())?, &mut self.sine, Noise::Drawn)?;
            self.source.extend(s.flatten_all()?.to_vec1::<f32>()?);
            self.source_done = f0_final;
        }
        let mut source = self.source[(start - self.source_start) * spf..].to_vec();
        if end > self.source_done {
            let mut scratch = self.sine.clone();
            let rest = &f0[self.source_done - start..];
            let s = self.hift.source(&Tensor::new(rest, window.device())?, &mut scratch, Noise::Drawn)?;
            source.extend(s.flatten_all()?.to_vec1::<f32>()?);
        }
        let source = Tensor::from_vec(source, (1, 1, (end - start) * spf), window.device())?;
        Ok(HiftStep::Vocode(VocodeStep { mel: window, source, start, ready, last }))
    }

    /// The second half of a step: `audio` is [`Hift::decode`] of `step`'s
    /// window (`frames · 480` samples); returns the samples that became final.
    pub fn complete(&mut self, step: VocodeStep, audio: &[f32]) -> Result<Vec<f32>> {
        let spf = self.hift.config().samples_per_frame();
        let VocodeStep { start, ready, last, .. } = step;
        if audio.len() != step.mel.dim(D::Minus1)? * spf {
            candle_core::bail!("HiFT step: {} samples for a {}-frame window", audio.len(), step.mel.dim(D::Minus1)?);
        }
        // Samples [written, ready·spf − hold): the first `tail.len()` of them
        // crossfaded with the previous step's version; the last `hold` kept
        // back (as this step's version) for the next seam.
        let hold = if last { 0 } else { self.cfg.crossfade };
        let to = (ready * spf - hold).max(self.written);
        let offset = start * spf;
        let mut out = audio[self.written - offset..to - offset].to_vec();
        let fade = self.tail.len().min(out.len());
        for (i, (o, t)) in out.iter_mut().zip(&self.tail).enumerate() {
            let w = 0.5 - 0.5 * (std::f32::consts::PI * (i as f32 + 0.5) / fade as f32).cos();
            *o = w * *o + (1.0 - w) * t;
        }
        self.tail = audio[to - offset..ready * spf - offset].to_vec();
        self.written = to;
        self.emitted = ready;
        self.trim();
        Ok(out)
    }

    /// Drops mel and excitation no longer needed as left context.
    fn trim(&mut self) {
        let keep_from = self.emitted.saturating_sub(self.cfg.left_context);
        if let Some(m) = &self.mel {
            let drop = keep_from - self.mel_start;
            if drop > 0 {
                let len = m.dim(D::Minus1).unwrap_or(0);
                if let Ok(rest) = m.narrow(D::Minus1, drop, len - drop) {
                    self.mel = Some(rest);
                    self.mel_start = keep_from;
                }
            }
        }
        let spf = self.hift.config().samples_per_frame();
        let drop = keep_from.min(self.source_done) - self.source_start;
        if drop > 0 {
            self.source.drain(..drop * spf);
            self.source_start += drop;
        }
    }
}
