//! How long an utterance waits before its first packet: the synthesizer's
//! measured chunk-arrival jitter.
//!
//! If playback of an utterance starts `W` after its first chunk arrives, chunk
//! `i` (arriving at `a_i`, carrying audio that starts `s_i` into the utterance)
//! is on time when `a_i <= a_0 + W + s_i`. So an utterance needed
//! `W = max_i (a_i - a_0 - s_i)`, clamped at zero: the lateness of its worst
//! chunk relative to real-time playback. The estimator keeps the last few
//! utterances' needs and answers with one and a half times their maximum plus
//! one packet,
//! so the wait follows the load: zero-ish on an idle machine (a streaming
//! engine's first chunk already covers the second's compute), growing when many
//! calls share the cores, shrinking again when they leave.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::FRAME;

/// Utterances remembered.
const WINDOW: usize = 24;
/// Never wait longer than this, whatever was measured: a caller hears a gap
/// before an utterance as slowness, so the wait is bounded.
const MAX_WAIT: Duration = Duration::from_millis(400);
/// The prior before anything was measured: one packet.
const INITIAL_WAIT: Duration = FRAME;

/// Shared by every call on one synthesizer.
#[derive(Debug)]
pub struct JitterEstimator {
    inner: Mutex<VecDeque<Duration>>,
}

impl Default for JitterEstimator {
    fn default() -> Self {
        Self { inner: Mutex::new(VecDeque::with_capacity(WINDOW)) }
    }
}

impl JitterEstimator {
    pub fn new() -> Self {
        Self::default()
    }

    /// The wait to apply to the next utterance.
    pub fn target(&self) -> Duration {
        let seen = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match seen.iter().max() {
            None => INITIAL_WAIT,
            // Half again the worst lateness seen, plus a packet: one sample of
            // a noisy machine is a poor predictor of the next utterance.
            Some(&worst) => (worst * 3 / 2 + FRAME).min(MAX_WAIT),
        }
    }

    /// Records what one utterance needed (see [`ArrivalTracker`]).
    pub fn observe(&self, needed: Duration) {
        let mut seen = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() == WINDOW {
            seen.pop_front();
        }
        seen.push_back(needed);
    }
}

/// Measures one utterance's chunk arrivals against real time.
#[derive(Debug, Default)]
pub struct ArrivalTracker {
    first: Option<Instant>,
    audio: Duration,
    needed: Duration,
}

impl ArrivalTracker {
    /// A chunk of `audio` arrived at `at`.
    pub fn chunk(&mut self, at: Instant, audio: Duration) {
        let first = *self.first.get_or_insert(at);
        let late = at.saturating_duration_since(first).saturating_sub(self.audio);
        self.needed = self.needed.max(late);
        self.audio += audio;
    }

    /// The wait this utterance needed so far; `None` before any chunk.
    pub fn needed(&self) -> Option<Duration> {
        self.first.map(|_| self.needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_stream_faster_than_real_time_needs_no_wait() {
        let t0 = Instant::now();
        let mut tr = ArrivalTracker::default();
        tr.chunk(t0, ms(180));
        tr.chunk(t0 + ms(100), ms(700));
        tr.chunk(t0 + ms(500), ms(700));
        assert_eq!(tr.needed(), Some(Duration::ZERO));
    }

    #[test]
    fn a_late_chunk_sets_the_need() {
        let t0 = Instant::now();
        let mut tr = ArrivalTracker::default();
        tr.chunk(t0, ms(100));
        tr.chunk(t0 + ms(160), ms(100)); // 60 ms after its audio is due
        tr.chunk(t0 + ms(230), ms(100)); // 30 ms
        assert_eq!(tr.needed(), Some(ms(60)));
    }

    #[test]
    fn the_target_follows_load_up_and_back_down() {
        let est = JitterEstimator::new();
        assert_eq!(est.target(), INITIAL_WAIT);
        est.observe(Duration::ZERO);
        assert_eq!(est.target(), FRAME);
        est.observe(ms(90));
        assert_eq!(est.target(), ms(155));
        for _ in 0..WINDOW {
            est.observe(ms(6));
        }
        assert_eq!(est.target(), ms(29));
        est.observe(Duration::from_secs(5));
        assert_eq!(est.target(), MAX_WAIT);
    }
}
