//! Delivery of one source's events to each of its subscribers, with a stated
//! drop policy instead of a shared ring that any slow reader can lap.
//!
//! Every subscriber has its own queue. Events that say they may be dropped
//! (caller-audio frames) are dropped for a subscriber that has
//! [`DROPPABLE_BACKLOG`] of them unread, and counted; the subscriber learns
//! the count. Every other event (lifecycle, speech, marks, DTMF) is always
//! delivered, in order. A subscriber that leaves that many undroppable
//! events unread ([`HARD_BACKLOG`]) is cut off rather than let the server's
//! memory grow: its subscription ends with [`Subscription::overflowed`] set.
//! A slow subscriber never delays the publisher or another subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Droppable events a subscriber may leave unread before more are dropped
/// (50 caller-audio frames: one second).
pub const DROPPABLE_BACKLOG: usize = 50;

/// Undroppable events a subscriber may leave unread before it is cut off.
pub const HARD_BACKLOG: usize = 10_000;

/// An event that says whether a slow subscriber may miss it.
pub trait Event: Clone + Send + 'static {
    fn droppable(&self) -> bool {
        false
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// Droppable events queued, not yet read.
    droppable: AtomicUsize,
    /// All events queued, not yet read.
    queued: AtomicUsize,
    dropped: AtomicU64,
    overflowed: AtomicBool,
}

struct Subscriber<E> {
    tx: mpsc::UnboundedSender<E>,
    counters: Arc<Counters>,
}

/// The publishing side.
pub struct Fanout<E> {
    subscribers: Mutex<Vec<Subscriber<E>>>,
    /// After [`Fanout::close`]: the closed subscriptions' counters, to tell when
    /// their readers are gone.
    closed: Mutex<Vec<Arc<Counters>>>,
}

impl<E> Default for Fanout<E> {
    fn default() -> Self {
        Self { subscribers: Mutex::new(Vec::new()), closed: Mutex::new(Vec::new()) }
    }
}

impl<E: Event> Fanout<E> {
    pub fn subscribe(&self) -> Subscription<E> {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        self.lock().push(Subscriber { tx, counters: counters.clone() });
        Subscription { rx, counters }
    }

    /// Hands `event` to every subscriber (never waits).
    pub fn publish(&self, event: E) {
        let droppable = event.droppable();
        self.lock().retain(|s| {
            let c = &s.counters;
            if droppable && c.droppable.load(Ordering::Relaxed) >= DROPPABLE_BACKLOG {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            if !droppable && c.queued.load(Ordering::Relaxed) >= HARD_BACKLOG {
                c.overflowed.store(true, Ordering::Relaxed);
                return false;
            }
            if droppable {
                c.droppable.fetch_add(1, Ordering::Relaxed);
            }
            c.queued.fetch_add(1, Ordering::Relaxed);
            s.tx.send(event.clone()).is_ok()
        });
    }

    /// Ends every subscription (shutdown): each reads what is queued, then `None`.
    pub fn close(&self) {
        let subscribers = std::mem::take(&mut *self.lock());
        self.closed.lock().unwrap_or_else(|e| e.into_inner()).extend(subscribers.into_iter().map(|s| s.counters));
    }

    /// Closed subscriptions whose readers have not let go of them yet.
    pub fn closing(&self) -> usize {
        self.closed.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|c| Arc::strong_count(c) > 1).count()
    }

    /// Subscribers still listening.
    pub fn len(&self) -> usize {
        self.lock().iter().filter(|s| !s.tx.is_closed()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber<E>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One subscriber's queue.
pub struct Subscription<E> {
    rx: mpsc::UnboundedReceiver<E>,
    counters: Arc<Counters>,
}

impl<E: Event> Subscription<E> {
    /// The next event; `None` once the source is gone or this subscriber was
    /// cut off ([`Self::overflowed`]).
    pub async fn recv(&mut self) -> Option<E> {
        let event = self.rx.recv().await?;
        self.read(&event);
        Some(event)
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<E> {
        let event = self.rx.try_recv().ok()?;
        self.read(&event);
        Some(event)
    }

    fn read(&self, event: &E) {
        if event.droppable() {
            self.counters.droppable.fetch_sub(1, Ordering::Relaxed);
        }
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// Droppable events dropped since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        self.counters.dropped.swap(0, Ordering::Relaxed)
    }

    /// Whether the subscription ended because too much was left unread.
    pub fn overflowed(&self) -> bool {
        self.counters.overflowed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Ev {
        Audio(u32),
        Done(u32),
    }

    impl Event for Ev {
        fn droppable(&self) -> bool {
            matches!(self, Ev::Audio(_))
        }
    }

    #[test]
    fn close_delivers_what_is_queued_then_ends_and_tells_when_readers_are_gone() {
        let fanout = Fanout::default();
        let mut a = fanout.subscribe();
        let b = fanout.subscribe();
        fanout.publish(Ev::Done(1));
        fanout.close();
        fanout.publish(Ev::Done(2));
        assert_eq!(fanout.closing(), 2);
        assert_eq!(a.try_recv(), Some(Ev::Done(1)));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(a.recv()), None, "ended after the queued event, nothing published after close");
        drop(a);
        assert_eq!(fanout.closing(), 1);
        drop(b);
        assert_eq!(fanout.closing(), 0);
        assert!(fanout.is_empty());
    }

    #[test]
    fn a_slow_subscriber_loses_audio_only_and_never_holds_up_another() {
        let fanout = Fanout::default();
        let mut slow = fanout.subscribe();
        let mut fast = fanout.subscribe();
        for i in 0..200 {
            fanout.publish(Ev::Audio(i));
            if i % 40 == 0 {
                fanout.publish(Ev::Done(i));
            }
            // The fast one keeps up.
            while fast.try_recv().is_some() {}
        }
        fanout.publish(Ev::Done(999));
        assert_eq!(fast.take_dropped(), 0);
        let got: Vec<Ev> = std::iter::from_fn(|| slow.try_recv()).collect();
        let done: Vec<&Ev> = got.iter().filter(|e| matches!(e, Ev::Done(_))).collect();
        assert_eq!(done, [&Ev::Done(0), &Ev::Done(40), &Ev::Done(80), &Ev::Done(120), &Ev::Done(160), &Ev::Done(999)]);
        let audio = got.iter().filter(|e| matches!(e, Ev::Audio(_))).count();
        assert_eq!(audio, DROPPABLE_BACKLOG);
        assert_eq!(slow.take_dropped(), 200 - DROPPABLE_BACKLOG as u64);
        assert_eq!(slow.take_dropped(), 0, "the count is reported once");
        // Having read its backlog, it gets audio again.
        fanout.publish(Ev::Audio(1000));
        assert_eq!(slow.try_recv(), Some(Ev::Audio(1000)));
    }

    #[test]
    fn a_subscriber_that_never_reads_is_cut_off_not_grown_without_bound() {
        let fanout = Fanout::default();
        let mut stuck = fanout.subscribe();
        let mut live = fanout.subscribe();
        for i in 0..(HARD_BACKLOG as u32 + 5) {
            fanout.publish(Ev::Done(i));
            assert_eq!(live.try_recv(), Some(Ev::Done(i)));
        }
        assert!(stuck.overflowed());
        assert_eq!(fanout.len(), 1);
        let read = std::iter::from_fn(|| stuck.try_recv()).count();
        assert_eq!(read, HARD_BACKLOG, "what was queued before the cut is still readable");
    }

    #[test]
    fn subscribers_that_left_are_forgotten() {
        let fanout = Fanout::default();
        let a = fanout.subscribe();
        let _b = fanout.subscribe();
        drop(a);
        fanout.publish(Ev::Done(1));
        assert_eq!(fanout.len(), 1);
    }
}
