//! What the scheduler knows about time: how fast the engine is, how busy the
//! workers are, and from that each stream's next deadline and how long a new
//! utterance holds its first audio back.
//!
//! A new utterance does not start until its second chunk is under way
//! (`Playout::gate`, then `Playout::cover` with that chunk's predicted
//! compute), so it needs no prediction of queueing: it waits exactly as long
//! as the scheduler makes its second chunk wait. Beyond that it holds back
//! only for lateness actually heard (a stream's playout starved while its
//! chunk was computed), decaying with a half-life of [`LATE_HALF_LIFE`], so
//! one slow moment is forgotten within seconds instead of raising every
//! later utterance's wait.
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
    /// Compute of a second chunk: the first of full length, which also runs
    /// the text side's rest (Piper: the flow over the rest of the sentence),
    /// so it costs more than the real-time factor says.
    second_compute: Ewma,
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
            second_compute: Ewma::new(0.1),
            busy: 0.0,
            busy_at: None,
            late: 0.0,
            late_at: None,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Chunk `index` (0: the first) of an utterance, `audio` long, took
    /// `compute` and finished at `now`.
    pub fn chunk_done(&mut self, now: Instant, index: u32, audio: Duration, compute: Duration) {
        self.add_busy(now, compute);
        if index == 0 {
            self.first_compute.add(compute.as_secs_f64());
            return;
        }
        if index == 1 {
            self.second_compute.add(compute.as_secs_f64());
        }
        if !audio.is_zero() {
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

    /// Compute of chunk `index` of a stream (no waiting).
    pub fn compute_of(&self, index: u32) -> Duration {
        self.compute(index)
    }

    fn compute(&self, index: u32) -> Duration {
        let later = self.rtf() * self.chunk.value.unwrap_or(PRIOR_CHUNK.as_secs_f64());
        Duration::from_secs_f64(match index {
            0 => self.first_compute().as_secs_f64(),
            1 => self.second_compute.value.unwrap_or(later).max(later),
            _ => later,
        })
    }

    /// Compute one stream adds to a batch (the larger of a first chunk and
    /// a later one; batches are costed as if they saved nothing).
    pub fn batch_item(&self) -> Duration {
        let later = Duration::from_secs_f64(self.rtf() * self.chunk.value.unwrap_or(PRIOR_CHUNK.as_secs_f64()));
        later.max(self.first_compute()).max(Duration::from_secs_f64(self.second_compute.value.unwrap_or(0.0)))
    }

    /// When a running stream whose playout holds `lead` of audio must have
    /// its chunk `index` started.
    /// Beyond the chunk's own time it keeps two workers' chunks (one running,
    /// one a new turn's first chunk, due on arrival, that may take the worker
    /// first) and the margin, so a playing stream stays ahead of new turns.
    /// A second chunk (`index` 1) is due no later than the utterance's first
    /// was (`first_due`): the utterance starts only once that chunk is under
    /// way, so both chunks are the work between its text and its first
    /// sound, and a turn that arrived earlier finishes both before a later
    /// turn's first chunk runs.
    pub fn deadline(&self, now: Instant, lead: Duration, index: u32, first_due: Instant) -> Instant {
        let need = self.compute(index) + self.batch_item() * 2 + MARGIN;
        let due = now + lead.saturating_sub(need);
        if index == 1 {
            due.min(first_due)
        } else {
            due
        }
    }

    /// How long a new utterance holds back beyond its second chunk's
    /// predicted time: the lateness heard lately (decayed), at most
    /// [`MAX_PREFILL`].
    pub fn hold(&self, now: Instant) -> Duration {
        Duration::from_secs_f64(self.late_now(now)).min(MAX_PREFILL)
    }

    /// When a new utterance's first chunk is due: at once when its call is
    /// silent, else when the audio queued ahead of it (`ahead`) runs low.
    pub fn first_deadline(&self, now: Instant, ahead: Duration) -> Instant {
        if ahead.is_zero() {
            return now;
        }
        let need = self.compute(0) + self.batch_item() + MARGIN;
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
        p.chunk_done(t0, 0, ms(190), ms(60));
        p.chunk_done(t0, 1, ms(750), ms(112));
        p
    }

    #[test]
    fn an_idle_machine_holds_nothing_back() {
        let t0 = Instant::now();
        let p = measured(t0);
        assert_eq!(p.hold(t0 + Duration::from_secs(60)), Duration::ZERO);
    }

    #[test]
    fn load_alone_holds_nothing_back() {
        // Busy workers delay a new utterance's second chunk, which the gate
        // waits for; the hold itself stays zero while nothing is heard late.
        let t0 = Instant::now();
        let mut p = measured(t0);
        for i in 0..100 {
            p.chunk_done(t0 + ms(50 * i), 2, ms(750), ms(112));
        }
        let busy = t0 + ms(5000);
        assert!(p.utilization(busy) > 0.5, "{}", p.utilization(busy));
        assert_eq!(p.hold(busy), Duration::ZERO);
    }

    #[test]
    fn one_late_chunk_raises_the_hold_only_briefly() {
        let t0 = Instant::now();
        let mut p = measured(t0);
        p.late(t0, ms(300));
        let just_after = p.hold(t0 + ms(100));
        assert!(just_after >= ms(280), "right after a 300 ms gap the hold covers it: {just_after:?}");
        let a_half_life_on = p.hold(t0 + LATE_HALF_LIFE);
        assert!(a_half_life_on <= ms(151) && a_half_life_on >= ms(149), "{a_half_life_on:?}");
        assert!(p.hold(t0 + Duration::from_secs(20)) < ms(1), "forgotten 20 s later");
        p.late(t0, Duration::from_secs(5));
        assert_eq!(p.hold(t0), MAX_PREFILL, "never more than the cap");
    }

    #[test]
    fn the_second_chunk_is_predicted_from_second_chunks() {
        // A second chunk that costs more than the real-time factor says
        // (150 ms where it says 112) is predicted as such.
        let t0 = Instant::now();
        let mut p = measured(t0);
        for _ in 0..30 {
            p.chunk_done(t0, 1, ms(750), ms(150));
            p.chunk_done(t0, 2, ms(750), ms(112));
        }
        let second = p.compute_of(1);
        assert!(second > ms(140) && second < ms(160), "{second:?}");
        assert!(p.compute_of(2) < ms(130));
    }

    #[test]
    fn a_running_streams_deadline_is_when_its_audio_runs_low() {
        let t0 = Instant::now();
        let p = measured(t0);
        let d = p.deadline(t0, ms(600), 2, t0);
        let need = p.compute(2) + p.batch_item() * 2 + MARGIN;
        assert_eq!(d, t0 + ms(600) - need);
        assert_eq!(p.deadline(t0, ms(10), 2, t0), t0, "starved: due now");
    }

    #[test]
    fn a_second_chunk_keeps_its_utterances_first_deadline() {
        // A turn that arrived at t0 got its first chunk at +60 ms with 185 ms
        // of audio; its second chunk is due when the turn was, so it goes
        // before a turn that arrived at +30 ms (due then).
        let t0 = Instant::now();
        let p = measured(t0);
        let second = p.deadline(t0 + ms(60), ms(185), 1, t0);
        assert_eq!(second, t0);
        let mut q = super::super::scheduler::Queue::new();
        q.push(2, "v", t0 + ms(30), false);
        q.push(1, "v", second, false);
        assert_eq!(q.take(t0 + ms(60), |_| 1, Duration::ZERO), [1], "the earlier turn's second chunk first");
        // Later chunks are due by their own audio only.
        assert!(p.deadline(t0 + ms(60), ms(900), 2, t0) > t0 + ms(60));
    }
}
