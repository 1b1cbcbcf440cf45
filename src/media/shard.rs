//! One pacing shard without I/O: its clock and its roster of calls.
//!
//! The [`super::Pacer`] runs one thread per shard; each thread only sleeps
//! and sends. What it decides lives here, driven by `now` passed in, so it is
//! tested with fake time:
//!
//! - [`ShardClock`]: the absolute deadlines `epoch + k * 20 ms` (every shard
//!   of a pacer shares the epoch, so shards never drift apart), and on each
//!   wake-up whether to wait, tick, or skip ticks after a stall.
//! - [`Roster`]: the calls the shard owns. New calls wait in an inbox that the
//!   shard drains once at the start of a tick (one lock per tick, not one per
//!   call); a call closed at any time gets no tick after it is seen closed and
//!   is dropped at the next tick's start. A call joins a shard for life.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::FRAME;

/// Stalled longer than this: skip the missed ticks instead of bursting them.
pub const MAX_CATCH_UP: Duration = Duration::from_millis(100);

/// What a shard does when it wakes at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next tick is not due: sleep until its deadline.
    Wait(Instant),
    /// Send tick `tick`, due at `deadline` (now, or less than
    /// [`MAX_CATCH_UP`] ago: a late tick still goes out at once).
    Tick { tick: u64, deadline: Instant },
    /// Stalled (suspended, starved of CPU) past [`MAX_CATCH_UP`]: ticks
    /// `from..from + missed` are skipped, their RTP timestamps advanced, and
    /// the tick due now follows at once.
    Skip { from: u64, missed: u64 },
}

/// A shard's clock: absolute deadlines from a shared epoch.
#[derive(Debug, Clone)]
pub struct ShardClock {
    epoch: Instant,
    /// The next tick to send (tick 0 is the epoch itself, never sent).
    next: u64,
}

impl ShardClock {
    /// Tick 1 is due one frame after `epoch`. Shards given the same epoch
    /// tick at the same instants for as long as they run.
    pub fn new(epoch: Instant) -> Self {
        Self { epoch, next: 1 }
    }

    /// A clock joining a pacer whose epoch passed long ago: its first tick
    /// is the next one due after `now`, on the epoch's grid.
    pub fn joining(epoch: Instant, now: Instant) -> Self {
        let elapsed = now.saturating_duration_since(epoch);
        Self { epoch, next: (elapsed.as_nanos() / FRAME.as_nanos()) as u64 + 1 }
    }

    /// When tick `tick` is due.
    pub fn deadline(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_nanos(FRAME.as_nanos() as u64 * tick)
    }

    /// The tick the next [`Step::Tick`] will carry.
    pub fn next_tick(&self) -> u64 {
        self.next
    }

    /// What to do on waking at `now`.
    pub fn poll(&mut self, now: Instant) -> Step {
        let deadline = self.deadline(self.next);
        if now < deadline {
            return Step::Wait(deadline);
        }
        let behind = now - deadline;
        if behind > MAX_CATCH_UP {
            // Every tick whose deadline has passed except the one due now.
            let missed = (behind.as_nanos() / FRAME.as_nanos()) as u64;
            let from = self.next;
            self.next += missed;
            return Step::Skip { from, missed };
        }
        let tick = self.next;
        self.next += 1;
        Step::Tick { tick, deadline }
    }
}

/// What a shard asks of a call.
pub trait Paced {
    /// The call is over: no more ticks.
    fn is_closed(&self) -> bool;
    /// Tick `tick`, due at `deadline`: send this call's packet.
    fn tick(&self, tick: u64, deadline: Instant, out: &mut TickOut);
    /// `ticks` ticks were skipped after a stall.
    fn skip(&self, ticks: u64);
}

/// A tick's scratch space and tallies, owned by the shard and reused: the
/// packet is built in `buf` (nothing allocated per packet), and the
/// server-wide counters are added to once per tick instead of once per
/// packet (shards on different cores would otherwise bounce the counters'
/// cache lines between them thousands of times a tick).
#[derive(Debug)]
pub struct TickOut {
    pub buf: [u8; super::rtp_out::PACKET_LEN],
    pub sent: u64,
    pub late: u64,
    pub underruns: u64,
}

impl Default for TickOut {
    fn default() -> Self {
        Self { buf: [0; super::rtp_out::PACKET_LEN], sent: 0, late: 0, underruns: 0 }
    }
}

impl TickOut {
    /// Takes the tallies, leaving zeros.
    pub fn take_tallies(&mut self) -> (u64, u64, u64) {
        let t = (self.sent, self.late, self.underruns);
        (self.sent, self.late, self.underruns) = (0, 0, 0);
        t
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where calls wait to join a shard, and how many the shard carries (for
/// least-loaded assignment). Shared between the shard and whoever adds calls.
#[derive(Debug)]
pub struct Inbox<C> {
    joining: Mutex<Vec<C>>,
    /// Calls assigned to the shard and not yet dropped by it.
    load: AtomicUsize,
}

impl<C> Default for Inbox<C> {
    fn default() -> Self {
        Self { joining: Mutex::new(Vec::new()), load: AtomicUsize::new(0) }
    }
}

impl<C> Inbox<C> {
    /// Hands `call` to the shard; it is ticked from the shard's next tick on.
    pub fn push(&self, call: C) {
        self.load.fetch_add(1, Ordering::Relaxed);
        lock(&self.joining).push(call);
    }

    /// Calls assigned and not yet dropped (closed calls count until the
    /// shard's next tick drops them).
    pub fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }
}

/// The calls one shard ticks, in a fixed order (so each stream's packets keep
/// the same place in every tick, and its spacing stays even).
#[derive(Debug)]
pub struct Roster<C> {
    calls: Vec<C>,
}

impl<C> Default for Roster<C> {
    fn default() -> Self {
        Self { calls: Vec::new() }
    }
}

impl<C: Paced> Roster<C> {
    /// The start of a tick: closed calls leave, joining calls come in at the end.
    pub fn refresh(&mut self, inbox: &Inbox<C>) {
        let before = self.calls.len();
        self.calls.retain(|c| !c.is_closed());
        let mut dropped = before - self.calls.len();
        {
            let mut joining = lock(&inbox.joining);
            if !joining.is_empty() {
                self.calls.reserve(joining.len());
                for call in joining.drain(..) {
                    if call.is_closed() {
                        dropped += 1;
                    } else {
                        self.calls.push(call);
                    }
                }
            }
        }
        if dropped > 0 {
            inbox.load.fetch_sub(dropped, Ordering::Relaxed);
        }
    }

    /// One tick for every call on the roster (a call closed since the tick
    /// began, by another thread or by the tick of a call before it, is
    /// passed over).
    pub fn tick(&self, tick: u64, deadline: Instant, out: &mut TickOut) {
        for call in &self.calls {
            if !call.is_closed() {
                call.tick(tick, deadline, out);
            }
        }
    }

    /// Skipped ticks for every call on the roster.
    pub fn skip(&self, ticks: u64) {
        for call in &self.calls {
            if !call.is_closed() {
                call.skip(ticks);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

/// A shard's work on waking at `now`: refresh the roster, then tick or skip.
/// Returns when to wake next. One place for the order of things, so the
/// thread and the tests run the same code.
pub fn on_wake<C: Paced>(clock: &mut ShardClock, roster: &mut Roster<C>, inbox: &Inbox<C>, now: Instant, out: &mut TickOut) -> Woke {
    match clock.poll(now) {
        Step::Wait(at) => Woke::Slept(at),
        Step::Tick { tick, deadline } => {
            roster.refresh(inbox);
            roster.tick(tick, deadline, out);
            Woke::Ticked { tick, next: clock.deadline(clock.next_tick()) }
        }
        Step::Skip { from, missed } => {
            roster.refresh(inbox);
            roster.skip(missed);
            Woke::Skipped { from, missed }
        }
    }
}

/// What [`on_wake`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// Too early; nothing done; sleep until then.
    Slept(Instant),
    /// Tick `tick` sent; the next is due at `next`.
    Ticked { tick: u64, next: Instant },
    /// Ticks skipped after a stall; the tick due now follows at once.
    Skipped { from: u64, missed: u64 },
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
