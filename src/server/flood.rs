//! The SIP door under a flood: a per-source rate for new INVITEs, and a cap
//! on calls that have not completed the handshake, so that INVITEs nobody
//! acknowledges (spoofed sources, scanners) cannot hold every port and call
//! slot while a real caller, who ACKs within a round trip, gets a 503.
//!
//! * [`InviteRate`]: a token bucket per source IP (`rate` per second, `burst`
//!   at once); an INVITE beyond it is answered 503 with Retry-After. One
//!   scanner at 1,000 INVITEs a second costs a 503 each, not a call each.
//! * [`Unconfirmed`]: calls ringing or answered but not acknowledged, oldest
//!   first. When a new INVITE would exceed the cap the oldest is evicted
//!   (a ringing one gets 503, an answered one is abandoned without BYE), so a
//!   flood spread over many addresses recycles its own slots and never the
//!   slots of calls that completed the handshake.
//!
//! Sans-IO: time is passed in.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How the door is guarded (`voxline serve --invite-rate`, `--invite-burst`,
/// `--max-unconfirmed`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodLimits {
    /// New INVITEs per second per source IP (0: no limit).
    pub invite_rate: f64,
    /// INVITEs a source may send at once before the rate applies.
    pub invite_burst: f64,
    /// Calls ringing or answered but not acknowledged, at most.
    pub max_unconfirmed: usize,
}

impl Default for FloodLimits {
    fn default() -> Self {
        Self { invite_rate: 20.0, invite_burst: 50.0, max_unconfirmed: 64 }
    }
}

/// Sources not heard from for this long are forgotten (their bucket is full again anyway).
const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per source address.
#[derive(Debug)]
pub struct InviteRate {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    pruned: Option<Instant>,
}

impl InviteRate {
    pub fn new(limits: &FloodLimits) -> Self {
        Self { rate: limits.invite_rate, burst: limits.invite_burst.max(1.0), buckets: HashMap::new(), pruned: None }
    }

    /// Whether a new INVITE from `source` may be taken at `now` (and takes a token if so).
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.prune(now);
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(source).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When `source` may try again (for Retry-After), at least one second.
    pub fn retry_after(&self, source: IpAddr) -> Duration {
        let missing = self.buckets.get(&source).map_or(0.0, |b| (1.0 - b.tokens).max(0.0));
        Duration::from_secs_f64((missing / self.rate.max(1e-9)).ceil().max(1.0))
    }

    /// Sources tracked (bounded by the addresses heard from in the last minute).
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    fn prune(&mut self, now: Instant) {
        if self.pruned.is_some_and(|at| now.saturating_duration_since(at) < IDLE) {
            return;
        }
        self.pruned = Some(now);
        self.buckets.retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
    }
}

/// Calls that have not completed the handshake, oldest first.
#[derive(Debug)]
pub struct Unconfirmed<H> {
    cap: usize,
    order: VecDeque<H>,
}

impl<H: Copy + Eq + Hash> Unconfirmed<H> {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), order: VecDeque::new() }
    }

    /// Makes room for one more: the calls to evict (oldest first) so that,
    /// once the new one is added, at most `cap` are unconfirmed.
    pub fn make_room(&mut self) -> Vec<H> {
        let mut evicted = Vec::new();
        while self.order.len() >= self.cap {
            match self.order.pop_front() {
                Some(h) => evicted.push(h),
                None => break,
            }
        }
        evicted
    }

    /// A new call is waiting for its handshake.
    pub fn add(&mut self, call: H) {
        self.order.push_back(call);
    }

    /// `call` completed the handshake (or ended): it no longer counts.
    pub fn remove(&mut self, call: H) {
        self.order.retain(|&h| h != call);
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_source_gets_its_burst_then_the_rate() {
        let limits = FloodLimits { invite_rate: 10.0, invite_burst: 5.0, max_unconfirmed: 8 };
        let mut rate = InviteRate::new(&limits);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        let taken = (0..20).filter(|_| rate.allow(a, t0)).count();
        assert_eq!(taken, 5, "the burst, then nothing at the same instant");
        assert!(rate.retry_after(a) >= Duration::from_secs(1));
        assert!(rate.allow(b, t0), "another source has its own bucket");
        // 10 per second: one more every 100 ms.
        assert!(!rate.allow(a, t0 + ms(50)));
        assert!(rate.allow(a, t0 + ms(160)));
        // A second of 1,000 INVITEs from one source: the burst and the rate, no more.
        let mut rate = InviteRate::new(&limits);
        let taken = (0..1000).filter(|i| rate.allow(a, t0 + ms(*i))).count();
        assert!((14..=16).contains(&taken), "{taken}");
    }

    #[test]
    fn forgotten_sources_do_not_pile_up() {
        let mut rate = InviteRate::new(&FloodLimits::default());
        let t0 = Instant::now();
        for i in 0..1000u32 {
            rate.allow(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(rate.sources(), 1000);
        rate.allow("192.0.2.1".parse().unwrap(), t0 + IDLE + ms(1));
        assert_eq!(rate.sources(), 1);
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        let mut rate = InviteRate::new(&FloodLimits { invite_rate: 0.0, ..FloodLimits::default() });
        let t0 = Instant::now();
        assert!((0..1000).all(|_| rate.allow("192.0.2.1".parse().unwrap(), t0)));
    }

    #[test]
    fn a_flood_evicts_its_own_oldest_and_never_a_confirmed_call() {
        let mut pending = Unconfirmed::new(3);
        // A real call comes in and completes its handshake.
        assert!(pending.make_room().is_empty());
        pending.add(0u32);
        pending.remove(0);
        // 250 INVITEs that never complete it.
        let mut evicted = Vec::new();
        for call in 1..=250u32 {
            evicted.extend(pending.make_room());
            pending.add(call);
            assert!(pending.len() <= 3);
        }
        assert_eq!(evicted, (1..=247).collect::<Vec<_>>(), "oldest first, only flood calls");
        // The next real caller gets a slot at once.
        assert_eq!(pending.make_room(), [248]);
        pending.add(999);
        pending.remove(999);
        assert_eq!(pending.len(), 2);
    }
}
