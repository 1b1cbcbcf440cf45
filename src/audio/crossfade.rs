//! Click-free joins and ramps.
//!
//! * [`crossfade_into`] blends the overlapping end of one synthesis chunk
//!   (`tail`) into the start of the next (`head`).
//! * [`Fade`] ramps a stream in or out over N samples, across as many
//!   buffers as it takes (e.g. a 10 ms fade-out on barge-in spread over
//!   20 ms packets).
//!
//! Which [`FadeCurve`]: when the two sides are the *same* audio rendered
//! twice (overlapping windows of a vocoder, a chunk re-synthesised with more
//! context), they are correlated and [`FadeCurve::Linear`] keeps the level
//! constant. When they are *different* audio (two unrelated clips),
//! [`FadeCurve::EqualPower`] keeps the loudness constant; used on correlated
//! audio it bumps the level by up to 3 dB mid-fade.
//!
//! Gains are sampled at the middle of each sample's interval,
//! `t = (i + 0.5) / n`, so the curves are symmetric and the two gains at each
//! sample sum to exactly 1 (linear) or their squares do (equal power).

use std::f32::consts::FRAC_PI_2;

/// The shape of a fade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FadeCurve {
    /// Gain rises as `t`: fade-in + fade-out = 1 (constant amplitude for
    /// correlated signals).
    #[default]
    Linear,
    /// Gain rises as `sin(t·π/2)` (a quarter sine): fade-in² + fade-out² = 1
    /// (constant power for uncorrelated signals). Also the smoother choice
    /// for a single fade.
    EqualPower,
}

impl FadeCurve {
    /// The fade-in gain at position `t` in `[0, 1]`; the fade-out gain at `t`
    /// is `gain(1 - t)`.
    #[inline]
    pub fn gain(self, t: f32) -> f32 {
        let t = t.clamp(0.0, 1.0);
        match self {
            FadeCurve::Linear => t,
            FadeCurve::EqualPower => (t * FRAC_PI_2).sin(),
        }
    }
}

/// Crossfades `tail` (the end of the previous chunk, fading out) into the
/// start of `head` (the next chunk, fading in), in place. Returns the number
/// of samples blended, `min(tail.len(), head.len())`; the rest of `head` is
/// untouched.
///
/// The caller drops `tail` from the previous chunk's output and emits
/// `head`, so the joined stream is shorter than the two chunks by the overlap.
pub fn crossfade_into(tail: &[f32], head: &mut [f32], curve: FadeCurve) -> usize {
    let n = tail.len().min(head.len());
    let inv = 1.0 / n as f32;
    for (i, (h, &t)) in head.iter_mut().zip(tail).enumerate() {
        let pos = (i as f32 + 0.5) * inv;
        *h = *h * curve.gain(pos) + t * curve.gain(1.0 - pos);
    }
    n
}

/// Whether a [`Fade`] raises or lowers the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FadeDirection {
    /// From silence to full level; full level once finished.
    In,
    /// From full level to silence; silence once finished.
    Out,
}

/// A fade-in or fade-out over `len` samples that can be applied to a stream
/// buffer by buffer.
///
/// ```
/// # use voxline::audio::{Fade, FadeCurve};
/// let mut fade = Fade::fade_out(80, FadeCurve::EqualPower); // 10 ms at 8 kHz
/// let mut packet = [0.5f32; 160];
/// fade.apply(&mut packet);
/// assert!(fade.is_finished());
/// assert_eq!(packet[80..], [0.0; 80]); // silence after the fade
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Fade {
    direction: FadeDirection,
    curve: FadeCurve,
    len: usize,
    pos: usize,
}

impl Fade {
    /// A fade in `direction` over `len` samples. A zero length fade is
    /// finished from the start.
    pub fn new(direction: FadeDirection, len: usize, curve: FadeCurve) -> Self {
        Fade {
            direction,
            curve,
            len,
            pos: 0,
        }
    }

    /// A fade-in over `len` samples.
    pub fn fade_in(len: usize, curve: FadeCurve) -> Self {
        Fade::new(FadeDirection::In, len, curve)
    }

    /// A fade-out over `len` samples.
    pub fn fade_out(len: usize, curve: FadeCurve) -> Self {
        Fade::new(FadeDirection::Out, len, curve)
    }

    /// The direction of this fade.
    pub fn direction(&self) -> FadeDirection {
        self.direction
    }

    /// Whether all `len` samples of the ramp have been applied.
    pub fn is_finished(&self) -> bool {
        self.pos >= self.len
    }

    /// Samples of the ramp not yet applied.
    pub fn remaining(&self) -> usize {
        self.len - self.pos
    }

    /// Starts the ramp again from its first sample.
    pub fn restart(&mut self) {
        self.pos = 0;
    }

    /// Applies the next `buf.len()` samples of the fade to `buf`, in place.
    /// Past the end of the ramp a fade-in leaves samples unchanged and a
    /// fade-out sets them to 0.
    pub fn apply(&mut self, buf: &mut [f32]) {
        let ramp = self.remaining().min(buf.len());
        let inv = 1.0 / self.len.max(1) as f32;
        let (ramped, after) = buf.split_at_mut(ramp);
        for (i, s) in ramped.iter_mut().enumerate() {
            let t = ((self.pos + i) as f32 + 0.5) * inv;
            let t = match self.direction {
                FadeDirection::In => t,
                FadeDirection::Out => 1.0 - t,
            };
            *s *= self.curve.gain(t);
        }
        self.pos += ramp;
        if self.direction == FadeDirection::Out {
            after.fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_crossfade_of_identical_signals_is_transparent() {
        let signal: Vec<f32> = (0..100).map(|i| (i as f32 * 0.1).sin()).collect();
        let tail = signal[..40].to_vec();
        let mut head = signal.clone();
        assert_eq!(crossfade_into(&tail, &mut head, FadeCurve::Linear), 40);
        for (a, b) in head.iter().zip(&signal) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn equal_power_keeps_power_of_uncorrelated_constant() {
        for n in [1usize, 2, 16, 241] {
            for i in 0..n {
                let t = (i as f32 + 0.5) / n as f32;
                let (a, b) = (FadeCurve::EqualPower.gain(t), FadeCurve::EqualPower.gain(1.0 - t));
                assert!((a * a + b * b - 1.0).abs() < 1e-6);
                let (a, b) = (FadeCurve::Linear.gain(t), FadeCurve::Linear.gain(1.0 - t));
                assert!((a + b - 1.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn crossfade_goes_from_tail_to_head() {
        let tail = [1.0f32; 10];
        let mut head = [0.0f32; 20];
        crossfade_into(&tail, &mut head, FadeCurve::EqualPower);
        // Monotonic hand-over: starts near tail, ends near head, rest untouched.
        assert!(head[0] > 0.99);
        assert!(head[9] < 0.1);
        assert!(head.windows(2).take(9).all(|w| w[1] <= w[0]));
        assert!(head[10..].iter().all(|&s| s == 0.0));
    }

    #[test]
    fn crossfade_handles_mismatched_and_empty_lengths() {
        let mut head = [0.0f32; 3];
        assert_eq!(crossfade_into(&[1.0; 8], &mut head, FadeCurve::Linear), 3);
        assert_eq!(crossfade_into(&[], &mut head, FadeCurve::Linear), 0);
        let mut empty: [f32; 0] = [];
        assert_eq!(crossfade_into(&[1.0], &mut empty, FadeCurve::Linear), 0);
    }

    #[test]
    fn fade_spans_buffers_like_one_call() {
        for curve in [FadeCurve::Linear, FadeCurve::EqualPower] {
            for direction in [FadeDirection::In, FadeDirection::Out] {
                let mut whole = vec![0.8f32; 500];
                Fade::new(direction, 333, curve).apply(&mut whole);
                let mut pieces = vec![0.8f32; 500];
                let mut fade = Fade::new(direction, 333, curve);
                for chunk in pieces.chunks_mut(7) {
                    fade.apply(chunk);
                }
                assert!(fade.is_finished());
                assert_eq!(whole, pieces);
            }
        }
    }

    #[test]
    fn fade_in_and_out_shapes() {
        let mut buf = [1.0f32; 8];
        let mut fade = Fade::fade_in(4, FadeCurve::Linear);
        fade.apply(&mut buf);
        assert_eq!(buf, [0.125, 0.375, 0.625, 0.875, 1.0, 1.0, 1.0, 1.0]);

        let mut buf = [1.0f32; 8];
        let mut fade = Fade::fade_out(4, FadeCurve::Linear);
        fade.apply(&mut buf[..2]);
        assert_eq!(fade.remaining(), 2);
        fade.apply(&mut buf[2..]);
        assert_eq!(buf, [0.875, 0.625, 0.375, 0.125, 0.0, 0.0, 0.0, 0.0]);

        // Zero length: finished at once.
        let mut buf = [1.0f32; 2];
        Fade::fade_out(0, FadeCurve::Linear).apply(&mut buf);
        assert_eq!(buf, [0.0, 0.0]);
        let mut buf = [1.0f32; 2];
        Fade::fade_in(0, FadeCurve::Linear).apply(&mut buf);
        assert_eq!(buf, [1.0, 1.0]);

        let mut fade = Fade::fade_in(4, FadeCurve::EqualPower);
        fade.apply(&mut [0.0; 4]);
        fade.restart();
        assert_eq!(fade.remaining(), 4);
    }
}
