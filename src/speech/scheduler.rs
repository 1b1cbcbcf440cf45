//! Which synthesis work runs next: earliest deadline first over every live
//! utterance of every call.
//!
//! Each live utterance is a stream with one deadline: the moment its next
//! chunk must be ready. A new utterance's first chunk is due when it arrives
//! (or, queued behind audio its call is still playing, when that audio runs
//! low); a running stream's next chunk is due when its call's playout would
//! run dry, less the chunk's predicted compute and a margin. Workers take the
//! earliest deadline, run one chunk, and put the stream back with its new
//! deadline, so a long utterance yields between chunks and a new turn's first
//! chunk overtakes it; but a stream whose audio is playing goes first once it
//! is due, so under overload new turns wait rather than playing ones gap.
//! Deadlines are fixed while a stream waits and a new
//! stream's deadline is never earlier than its arrival, so every waiting
//! stream becomes the earliest in turn: no starvation (a new turn can wait
//! longer only while playing streams are already late, that is in overload,
//! which admission control keeps a server out of). Streams of the same
//! voice due within [`BATCH_SLACK`] of the earliest are taken together, so an
//! engine that batches computes them in one pass.
//!
//! Sans-IO: time is passed in; the worker threads live in `workers.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::StreamId;

/// Streams due this much after the earliest join its batch.
pub const BATCH_SLACK: Duration = Duration::from_millis(30);

/// How synthesis work is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Earliest deadline first, chunk by chunk, batched where the engine can.
    #[default]
    Deadline,
    /// First come, first served by whole utterance (a worker finishes one
    /// utterance before it takes the next); kept for comparison.
    Fcfs,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Deadline => "deadline",
            Policy::Fcfs => "fcfs",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "deadline" | "edf" => Ok(Policy::Deadline),
            "fcfs" => Ok(Policy::Fcfs),
            other => Err(format!("unknown synthesis scheduler `{other}`: deadline or fcfs")),
        }
    }
}

/// The waiting streams, by deadline; `G` names what may be batched together
/// (the voice).
#[derive(Debug)]
pub struct Queue<G> {
    /// (deadline, arrival order) -> stream: the first entry is the most urgent,
    /// ties go to whoever waited longest.
    waiting: BTreeMap<(Instant, u64), (StreamId, G)>,
    /// The keys of streams whose audio is playing (a gap would be heard).
    playing: BTreeSet<(Instant, u64)>,
    index: HashMap<StreamId, (Instant, u64)>,
    seq: u64,
}

impl<G> Default for Queue<G> {
    fn default() -> Self {
        Self { waiting: BTreeMap::new(), playing: BTreeSet::new(), index: HashMap::new(), seq: 0 }
    }
}

impl<G: PartialEq + Clone> Queue<G> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or moves) `id` with its next chunk due at `deadline`;
    /// `playing`: its audio is being heard, so once due it goes before any
    /// stream that is not (a new turn waits rather than a playing one gaps).
    pub fn push(&mut self, id: StreamId, group: G, deadline: Instant, playing: bool) {
        self.remove(id);
        self.seq += 1;
        let key = (deadline, self.seq);
        self.waiting.insert(key, (id, group));
        if playing {
            self.playing.insert(key);
        }
        self.index.insert(id, key);
    }

    /// Drops `id` if it is waiting; true if it was.
    pub fn remove(&mut self, id: StreamId) -> bool {
        match self.index.remove(&id) {
            Some(key) => {
                self.playing.remove(&key);
                self.waiting.remove(&key).is_some()
            }
            None => false,
        }
    }

    /// The most urgent stream and, when its group batches (`max_batch` > 1),
    /// others of the same group due within [`BATCH_SLACK`] of it, most urgent
    /// first, as many as fit without making the most urgent one later than
    /// its deadline (or than running alone) by more than [`BATCH_SLACK`]:
    /// each stream adds `per_item` of compute to the batch. Empty when
    /// nothing waits.
    pub fn take(&mut self, now: Instant, max_batch: impl Fn(&G) -> usize, per_item: Duration) -> Vec<StreamId> {
        let first_key = match self.playing.first() {
            Some(k) if k.0 <= now => *k,
            _ => match self.waiting.keys().next() {
                Some(k) => *k,
                None => return Vec::new(),
            },
        };
        let group = self.waiting[&first_key].1.clone();
        let horizon = first_key.0.max(now) + BATCH_SLACK;
        // What the most urgent stream can afford to wait for its batch.
        let budget = (first_key.0.max(now + per_item) + BATCH_SLACK).saturating_duration_since(now);
        let affordable = if per_item.is_zero() { usize::MAX } else { (budget.as_nanos() / per_item.as_nanos()) as usize };
        let limit = max_batch(&group).min(affordable).max(1);
        let keys: Vec<(Instant, u64)> = self
            .waiting
            .range(first_key..)
            .take_while(|(k, _)| k.0 <= horizon)
            .filter(|(_, (_, g))| *g == group)
            .take(limit)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                self.playing.remove(&k);
                self.waiting.remove(&k)
            })
            .map(|(id, _)| {
                self.index.remove(&id);
                id
            })
            .collect()
    }

    /// Streams waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Streams whose deadline is at or before `at` (late or due).
    pub fn due_by(&self, at: Instant) -> usize {
        self.waiting.keys().take_while(|k| k.0 <= at).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_earliest_deadline_goes_first_and_ties_keep_arrival_order() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.push(1, "v", t0 + ms(300), false);
        q.push(2, "v", t0 + ms(100), false);
        q.push(3, "v", t0 + ms(100), false);
        q.push(4, "v", t0 + ms(200), false);
        let order: Vec<_> = std::iter::from_fn(|| q.take(t0, |_| 1, Duration::ZERO).first().copied()).collect();
        assert_eq!(order, [2, 3, 4, 1]);
    }

    #[test]
    fn a_new_turns_first_chunk_overtakes_a_long_utterance() {
        // Stream 1 is mid-utterance with 600 ms of audio buffered (its next
        // chunk is due in ~450 ms); stream 2's first chunk arrives now.
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.push(1, "v", t0 + ms(450), false);
        q.push(2, "v", t0, false);
        assert_eq!(q.take(t0, |_| 1, Duration::ZERO), [2]);
        assert_eq!(q.take(t0, |_| 1, Duration::ZERO), [1]);
    }

    #[test]
    fn a_playing_stream_that_is_due_goes_before_new_turns() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.push(1, "v", t0, false); // a new turn's first chunk, arrived at t0
        q.push(2, "v", t0 + ms(40), true); // a playing stream, due at +40
        assert_eq!(q.take(t0 + ms(30), |_| 1, Duration::ZERO), [1], "not due yet: earliest deadline first");
        q.push(1, "v", t0, false);
        assert_eq!(q.take(t0 + ms(50), |_| 1, Duration::ZERO), [2], "due and playing: before the new turn");
        assert_eq!(q.take(t0 + ms(50), |_| 1, Duration::ZERO), [1]);
    }

    #[test]
    fn a_cancelled_stream_leaves_at_once() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.push(1, "v", t0, false);
        q.push(2, "v", t0 + ms(10), false);
        assert!(q.remove(1));
        assert!(!q.remove(1));
        assert_eq!(q.len(), 1);
        assert_eq!(q.take(t0, |_| 1, Duration::ZERO), [2]);
        assert!(q.take(t0, |_| 1, Duration::ZERO).is_empty());
    }

    #[test]
    fn no_stream_starves_behind_a_stream_of_new_arrivals() {
        // A long utterance (deadline 500 ms out) against a new first chunk
        // every 20 ms for 2 s: each new one is due on arrival, so once the
        // clock passes 500 ms the long one is the earliest and runs.
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.push(0, "v", t0 + ms(500), false);
        let mut served_at = None;
        for i in 1..100u64 {
            let now = t0 + ms(20 * i);
            q.push(i, "v", now, false);
            let took = q.take(now, |_| 1, Duration::ZERO);
            if took == [0] {
                served_at = Some(now);
                break;
            }
        }
        let served = served_at.expect("the long utterance ran");
        assert!(served <= t0 + ms(540), "served {:?} after its deadline", served.saturating_duration_since(t0 + ms(500)));
    }

    #[test]
    fn streams_of_one_voice_due_together_form_a_batch() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.push(1, "a", t0, false);
        q.push(2, "b", t0 + ms(5), false);
        q.push(3, "a", t0 + ms(10), false);
        q.push(4, "a", t0 + ms(20), false);
        q.push(5, "a", t0 + ms(200), false); // not due yet: stays for later
        q.push(6, "a", t0 + ms(25), false);
        assert_eq!(q.take(t0, |_| 3, Duration::ZERO), [1, 3, 4], "same voice, due within the slack, at most 3");
        assert_eq!(q.take(t0, |_| 3, Duration::ZERO), [2]);
        assert_eq!(q.take(t0, |_| 3, Duration::ZERO), [6]);
        assert_eq!(q.take(t0, |_| 1, Duration::ZERO), [5]);
    }

    #[test]
    fn a_batch_never_makes_the_most_urgent_stream_wait_past_its_slack() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        // Four first chunks due now, 50 ms of compute each: batching a second
        // would make the first wait 100 ms instead of 50, so one at a time.
        for id in 1..=4 {
            q.push(id, "a", t0, false);
        }
        assert_eq!(q.take(t0, |_| 8, ms(50)), [1]);
        // Later chunks with 300 ms to spare: as many as fit (330 / 100 = 3).
        let mut q = Queue::new();
        for id in 1..=5 {
            q.push(id, "a", t0 + ms(300) + ms(id), false);
        }
        assert_eq!(q.take(t0, |_| 8, ms(100)), [1, 2, 3]);
    }

    #[test]
    fn an_engine_that_does_not_batch_gets_one_stream_at_a_time() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.push(1, "a", t0, false);
        q.push(2, "a", t0, false);
        assert_eq!(q.take(t0, |_| 1, Duration::ZERO), [1]);
        assert_eq!(q.due_by(t0), 1);
    }

    #[test]
    fn policies_parse_by_name() {
        assert_eq!(Policy::from_name("deadline"), Ok(Policy::Deadline));
        assert_eq!(Policy::from_name("FCFS"), Ok(Policy::Fcfs));
        assert!(Policy::from_name("lifo").is_err());
    }
}
