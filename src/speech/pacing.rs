//! What the scheduler knows about time: how fast the engine is, how busy the
//! workers are, and from that each stream's next deadline and each new
//! utterance's prefill (how long its first audio is held back so the rest
//! arrives in time).
//!
//! The prefill is per utterance, from what is predicted for it: the next
//! chunk's compute at the current load, against the audio the first chunk
//! already buffered. Lateness actually seen (a chunk that arrived after its
//! stream's audio ran out) adds to it, decaying with a half-life of
//! [`LATE_HALF_LIFE`], so one slow moment is forgotten within seconds
//! instead of raising every later utterance's wait.
//!
//! Sans-IO: every method takes `now`.

use std::time::{Duration, Instant};

/// Kept between a chunk's predicted completion and its stream running dry.
pub const MARGIN: Duration = Duration::from_millis(40);
/// Half-life of observed lateness in the prefill.
pub const LATE_HALF_LIFE: Duration = Duration::from_secs(2);
/// Window of the workers' busy-time average.
const LOAD_WINDOW: Duration = Duration::from_secs(5);
/// A prefill never exceeds this: a caller hears a longer wait as slowness.
pub const MAX_PREFILL: Duration = Duration::from_millis(400);
/// Before any measurement: compute per second of audio, and a later chunk's audio.
const PRIOR_RTF: f64 = 0.25;
const PRIOR_CHUNK: Duration = Duration::from_millis(750);
/// Queueing slows a chunk by 1 / (1 - utilization); the utilization is capped
/// here so the prediction stays finite (beyond it, admission control acts).
const MAX_UTILIZATION: f64 = 0.8;

/// An exponentially weighted mean.
#[derive(Debug, Clone, Copy)]
struct Ewma {
    value: Option<f64>,
    weight: f64,
}

impl Ewma {
    const fn new(weight: f64) -> Self {
        Self { value: None, weight }
    }

    fn add(&mut self, x: f64) {
        self.value = Some(match self.value {
            None => x,
            Some(v) => v + self.weight * (x - v),
        });
    }
}

/// The timing model shared by one server's synthesis workers.
#[derive(Debug)]
pub struct Pacing {
    workers: usize,
    /// Compute seconds per audio second, of chunks after the first.
    rtf: Ewma,
    /// Audio per chunk after the first.
    chunk: Ewma,
    /// Compute of a first chunk (text to first audio inside the engine).
    first_compute: Ewma,
    /// Decayed busy seconds (all workers) and when it was last decayed.
    busy: f64,
    busy_at: Option<Instant>,
    /// Decayed worst lateness seen, seconds, and when.
    late: f64,
    late_at: Option<Instant>,
}

impl Pacing {
    pub fn new(workers: usize) -> Self {
        Self {
            workers: workers.max(1),
            rtf: Ewma::new(0.1),
            chunk: Ewma::new(0.1),
            first_compute: Ewma::new(0.1),
            busy: 0.0,
            busy_at: None,
            late: 0.0,
            late_at: None,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A chunk of `audio` took `compute` and finished at `now` (`first`: the
    /// utterance's first chunk, which also ran the text side).
    pub fn chunk_done(&mut self, now: Instant, audio: Duration, compute: Duration, first: bool) {
        self.add_busy(now, compute);
        if first {
            self.first_compute.add(compute.as_secs_f64());
        } else if !audio.is_zero() {
            self.rtf.add(compute.as_secs_f64() / audio.as_secs_f64());
            self.chunk.add(audio.as_secs_f64());
        }
    }

    /// A stream's chunk arrived `late` after its audio ran out.
    pub fn late(&mut self, now: Instant, late: Duration) {
        let decayed = self.late_now(now);
        self.late = decayed.max(late.as_secs_f64());
        self.late_at = Some(now);
    }

    /// Fraction of the workers' time spent computing, over the last few seconds.
    pub fn utilization(&self, now: Instant) -> f64 {
        let busy = self.busy_now(now);
        (busy / LOAD_WINDOW.as_secs_f64() / self.workers as f64).clamp(0.0, 1.0)
    }

    /// Compute seconds per audio second (measured, else a prior).
    pub fn rtf(&self) -> f64 {
        self.rtf.value.unwrap_or(PRIOR_RTF)
    }

    /// Compute of a first chunk, as measured (a prior before that).
    pub fn first_compute(&self) -> Duration {
        Duration::from_secs_f64(self.first_compute.value.unwrap_or(PRIOR_RTF * PRIOR_CHUNK.as_secs_f64() / 2.0))
    }

    /// Predicted wall time for a stream's next chunk at `now`'s load.
    pub fn next_chunk_time(&self, now: Instant) -> Duration {
        let compute = self.rtf() * self.chunk.value.unwrap_or(PRIOR_CHUNK.as_secs_f64());
        let u = self.utilization(now).min(MAX_UTILIZATION);
        Duration::from_secs_f64(compute / (1.0 - u))
    }

    /// Compute one stream adds to a batch (the larger of a first chunk and
    /// a later one; batches are costed as if they saved nothing).
    pub fn batch_item(&self) -> Duration {
        let later = Duration::from_secs_f64(self.rtf() * self.chunk.value.unwrap_or(PRIOR_CHUNK.as_secs_f64()));
        later.max(self.first_compute())
    }

    /// When a running stream whose playout holds `lead` of audio must have
    /// its next chunk started.
    pub fn deadline(&self, now: Instant, lead: Duration) -> Instant {
        let need = self.next_chunk_time(now) + MARGIN;
        now + lead.saturating_sub(need)
    }

    /// How long a new utterance whose first chunk buffered `lead` of audio
    /// holds back before playing, so its next chunk arrives in time.
    pub fn prefill(&self, now: Instant, lead: Duration) -> Duration {
        self.required_lead(now).saturating_sub(lead).min(MAX_PREFILL)
    }

    /// The audio a new utterance should have buffered before it plays: the
    /// next chunk's predicted time, half the margin, and recent lateness.
    pub fn required_lead(&self, now: Instant) -> Duration {
        let late = Duration::from_secs_f64(self.late_now(now));
        self.next_chunk_time(now) + MARGIN / 2 + late
    }

    /// When a new utterance's first chunk is due: at once when its call is
    /// silent, else when the audio queued ahead of it (`ahead`) runs low.
    pub fn first_deadline(&self, now: Instant, ahead: Duration) -> Instant {
        if ahead.is_zero() {
            return now;
        }
        let u = self.utilization(now).min(MAX_UTILIZATION);
        let need = self.first_compute().div_f64(1.0 - u) + MARGIN;
        now + ahead.saturating_sub(need)
    }

    fn add_busy(&mut self, now: Instant, compute: Duration) {
        self.busy = self.busy_now(now) + compute.as_secs_f64();
        self.busy_at = Some(now);
    }

    fn busy_now(&self, now: Instant) -> f64 {
        let Some(at) = self.busy_at else { return 0.0 };
        let dt = now.saturating_duration_since(at).as_secs_f64();
        self.busy * (-dt / LOAD_WINDOW.as_secs_f64()).exp()
    }

    fn late_now(&self, now: Instant) -> f64 {
        let Some(at) = self.late_at else { return 0.0 };
        let dt = now.saturating_duration_since(at).as_secs_f64();
        self.late * 0.5f64.powf(dt / LATE_HALF_LIFE.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An engine at RTF 0.15 with 750 ms chunks, measured once.
    fn measured(t0: Instant) -> Pacing {
        let mut p = Pacing::new(2);
        p.chunk_done(t0, ms(190), ms(60), true);
        p.chunk_done(t0, ms(750), ms(112), false);
        p
    }

    #[test]
    fn an_idle_machine_needs_no_prefill() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let p = measured(t0);
        // Next chunk ~112 ms (+ margin) against 190 ms already buffered.
        assert_eq!(p.prefill(t0 + Duration::from_secs(60), ms(190)), Duration::ZERO);
    }

    #[test]
    fn load_raises_the_prefill_and_it_falls_when_load_leaves() {
        let t0 = Instant::now();
        let mut p = measured(t0);
        // Both workers busy for 5 s.
        for i in 0..100 {
            p.chunk_done(t0 + ms(50 * i), ms(750), ms(112), false);
        }
        let busy = t0 + ms(5000);
        assert!(p.utilization(busy) > 0.5, "{}", p.utilization(busy));
        let loaded = p.prefill(busy, ms(190));
        assert!(loaded > ms(50), "{loaded:?}");
        let idle = busy + Duration::from_secs(30);
        assert!(p.utilization(idle) < 0.01);
        assert_eq!(p.prefill(idle, ms(190)), Duration::ZERO);
    }

    #[test]
    fn one_late_chunk_raises_the_prefill_only_briefly() {
        let t0 = Instant::now();
        let mut p = measured(t0);
        p.late(t0, ms(300));
        let just_after = p.prefill(t0 + ms(100), ms(190));
        assert!(just_after >= ms(200), "right after a 300 ms miss the prefill covers it: {just_after:?}");
        let later = p.prefill(t0 + Duration::from_secs(10), ms(190));
        assert_eq!(later, Duration::ZERO, "forgotten 10 s later");
        assert!(p.prefill(t0, ms(0)) <= MAX_PREFILL);
    }

    #[test]
    fn a_running_streams_deadline_is_when_its_audio_runs_low() {
        let t0 = Instant::now();
        let p = measured(t0);
        let d = p.deadline(t0, ms(600));
        let need = p.next_chunk_time(t0) + MARGIN;
        assert_eq!(d, t0 + ms(600) - need);
        assert_eq!(p.deadline(t0, ms(10)), t0, "starved: due now");
    }
}
