//! Admission control: a call that would push first audio past the target for
//! everyone is refused before it is answered.
//!
//! Two signals, either of which refuses a call:
//! - the load: the workers' utilization with one more call's share added
//!   (the measured utilization per live call) must stay under the level at
//!   which a first chunk, slowed by queueing as 1 / (1 - u), still fits the
//!   target: `u_max = 1 - first_compute / target`, at most 0.9;
//! - what callers got: the p99 of first-audio latency over the last
//!   [`RECENT`] (at least [`MIN_SAMPLES`] utterances) above the target.
//!
//! Sans-IO: every method takes `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// First-audio figures older than this are forgotten.
pub const RECENT: Duration = Duration::from_secs(30);
/// The p99 is trusted from this many utterances on.
pub const MIN_SAMPLES: usize = 20;
const MAX_SAMPLES: usize = 1024;
/// A refused caller is asked to retry after this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
const MAX_UTILIZATION: f64 = 0.9;

/// Why a call was refused; `reason` is said to the caller's agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: String,
    pub retry_after: Duration,
}

/// The load as the scheduler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub utilization: f64,
    pub live_calls: usize,
    /// Compute of a first chunk on an idle worker.
    pub first_compute: Duration,
    /// Compute per audio second; with the worker count, the prior share of a
    /// call before any were measured (a call talks about half the time).
    pub rtf: f64,
    pub workers: usize,
}

/// What `GET /v1/capacity` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub scheduler: &'static str,
    pub workers: usize,
    pub admission: bool,
    pub calls: usize,
    /// Fraction of the workers' time spent synthesizing (last few seconds).
    pub load: f64,
    /// The load above which calls are refused.
    pub max_load: f64,
    /// Each live call's share of the load (measured, or a prior).
    pub load_per_call: f64,
    /// Calls that can still be admitted at the current load.
    pub headroom_calls: usize,
    /// Utterances waiting for a worker, and how many of them are due now.
    pub queue: usize,
    pub queue_due: usize,
    /// The engine's compute per second of audio.
    pub rtf: f64,
    pub first_audio_target_ms: f64,
    pub first_audio_p50_ms: Option<f64>,
    pub first_audio_p99_ms: Option<f64>,
    pub first_audio_samples: usize,
}

#[derive(Debug)]
pub struct Admission {
    pub target: Duration,
    pub enabled: bool,
    first_audio: VecDeque<(Instant, Duration)>,
}

impl Admission {
    pub fn new(target: Duration, enabled: bool) -> Self {
        Self { target, enabled, first_audio: VecDeque::new() }
    }

    /// A new turn's first audio went out `latency` after its text arrived.
    pub fn first_audio(&mut self, now: Instant, latency: Duration) {
        if self.first_audio.len() == MAX_SAMPLES {
            self.first_audio.pop_front();
        }
        self.first_audio.push_back((now, latency));
    }

    /// The recent first-audio percentile `p` (0..=1), once there are enough samples.
    pub fn percentile(&self, now: Instant, p: f64) -> Option<Duration> {
        let mut recent: Vec<Duration> =
            self.first_audio.iter().filter(|(at, _)| now.saturating_duration_since(*at) <= RECENT).map(|(_, d)| *d).collect();
        if recent.len() < MIN_SAMPLES {
            return None;
        }
        recent.sort();
        let i = ((recent.len() as f64 - 1.0) * p).round() as usize;
        recent.get(i).copied()
    }

    /// First-audio figures within [`RECENT`].
    pub fn samples(&self, now: Instant) -> usize {
        self.first_audio.iter().filter(|(at, _)| now.saturating_duration_since(*at) <= RECENT).count()
    }

    /// The highest utilization at which first audio still meets the target.
    pub fn max_utilization(&self, load: &Load) -> f64 {
        (1.0 - load.first_compute.as_secs_f64() / self.target.as_secs_f64().max(1e-3)).clamp(0.0, MAX_UTILIZATION)
    }

    /// One call's share of the utilization.
    pub fn per_call(&self, load: &Load) -> f64 {
        let prior = load.rtf * 0.5 / load.workers.max(1) as f64;
        if load.live_calls == 0 || load.utilization < 0.02 {
            return prior;
        }
        (load.utilization / load.live_calls as f64).max(prior * 0.25)
    }

    /// Calls that can still come in.
    pub fn headroom(&self, load: &Load) -> usize {
        let room = self.max_utilization(load) - load.utilization;
        if room <= 0.0 {
            return 0;
        }
        (room / self.per_call(load)).floor() as usize
    }

    /// Whether one more call may come in now.
    pub fn admit(&self, now: Instant, load: &Load) -> Result<(), Refusal> {
        if !self.enabled {
            return Ok(());
        }
        let target_ms = self.target.as_millis();
        if let Some(p99) = self.percentile(now, 0.99).filter(|p99| *p99 > self.target) {
            return Err(Refusal {
                reason: format!("speech is running late: first audio p99 {} ms over the {target_ms} ms target", p99.as_millis()),
                retry_after: RETRY_AFTER,
            });
        }
        let max = self.max_utilization(load);
        let with_one_more = load.utilization + self.per_call(load);
        if with_one_more > max {
            return Err(Refusal {
                reason: format!(
                    "synthesis at capacity: load {:.0} % with {} calls; one more would put first audio past {target_ms} ms",
                    load.utilization * 100.0,
                    load.live_calls
                ),
                retry_after: RETRY_AFTER,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn load(utilization: f64, live_calls: usize) -> Load {
        Load { utilization, live_calls, first_compute: ms(60), rtf: 0.15, workers: 2 }
    }

    #[test]
    fn an_idle_server_admits() {
        let a = Admission::new(ms(300), true);
        assert_eq!(a.admit(Instant::now(), &load(0.0, 0)), Ok(()));
        assert!(a.headroom(&load(0.0, 0)) > 10);
    }

    #[test]
    fn a_loaded_server_refuses_with_retry_after_and_admits_again_when_load_falls() {
        let a = Admission::new(ms(300), true);
        let now = Instant::now();
        // 0.8 max (1 - 60/300); 0.75 over 20 calls: one more makes 0.7875, still fits.
        assert!(a.admit(now, &load(0.75, 20)).is_ok());
        let refused = a.admit(now, &load(0.78, 20)).unwrap_err();
        assert_eq!(refused.retry_after, RETRY_AFTER);
        assert!(refused.reason.contains("capacity"), "{}", refused.reason);
        assert_eq!(a.headroom(&load(0.78, 20)), 0);
        assert!(a.admit(now, &load(0.40, 10)).is_ok(), "load fell: admitted again");
    }

    #[test]
    fn late_first_audio_refuses_until_it_is_forgotten() {
        let mut a = Admission::new(ms(300), true);
        let t0 = Instant::now();
        for i in 0..MIN_SAMPLES as u64 {
            a.first_audio(t0 + ms(i), ms(500));
        }
        let err = a.admit(t0 + ms(100), &load(0.1, 2)).unwrap_err();
        assert!(err.reason.contains("p99 500 ms"), "{}", err.reason);
        assert!(a.admit(t0 + RECENT + Duration::from_secs(1), &load(0.1, 2)).is_ok());
    }

    #[test]
    fn admission_off_admits_everything() {
        let a = Admission::new(ms(300), false);
        assert!(a.admit(Instant::now(), &load(1.0, 500)).is_ok());
    }

    #[test]
    fn a_tight_target_lowers_the_ceiling() {
        let a = Admission::new(ms(100), true);
        assert!((a.max_utilization(&load(0.0, 0)) - 0.4).abs() < 1e-9);
        let b = Admission::new(ms(30), true);
        assert_eq!(b.max_utilization(&load(0.0, 0)), 0.0);
        assert!(b.admit(Instant::now(), &load(0.0, 0)).is_err(), "a target below the engine's own first chunk admits nothing");
    }
}
