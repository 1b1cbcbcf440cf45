//! A map of timed entities (transactions, calls, registrations) that keeps their deadlines in
//! order, so the endpoint finds its next deadline, and the entities due at a wake-up, without
//! asking every entity: at 3,000 mostly silent calls that scan on each wake-up was three
//! quarters of the SIP task's CPU (issue 19).
//!
//! Why the map owns the index: an entity's deadline changes whenever the entity does, and the
//! endpoint changes them in many places. Here mutable access exists only through
//! [`Timed::get_mut`] (which notes the key as dirty), [`Timed::insert`] and
//! [`Timed::remove`], so no change can bypass the index; and the index is read only through
//! [`DeadlineIndex::earliest`] and [`Timed::due`], which first re-read the dirty entities'
//! deadlines.
//! No caller has to remember to update anything.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::call::Call;
use crate::registration::Registration;
use crate::transaction::client_invite::ClientInviteTransaction;
use crate::transaction::client_non_invite::ClientNonInviteTransaction;
use crate::transaction::server_invite::ServerInviteTransaction;
use crate::transaction::server_non_invite::ServerNonInviteTransaction;

/// Something with timers: when it next has work for `handle_timeout`. A pure function of the
/// entity's state, so re-reading it after a change is enough to keep the index right.
pub(super) trait Deadline {
    fn deadline(&self) -> Option<Instant>;
}

/// A map whose entries' deadlines are indexed in order.
#[derive(Debug)]
pub(super) struct Timed<K, V> {
    entries: BTreeMap<K, Entry<V>>,
    /// `(deadline, key)` for every entry whose indexed deadline is `Some`.
    index: BTreeSet<(Instant, K)>,
    /// Keys handed out by `get_mut` since the last `sync` (repeats allowed).
    dirty: Vec<K>,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// The deadline under which the entry is in the index.
    indexed: Option<Instant>,
}

impl<K: Ord + Clone, V: Deadline> Default for Timed<K, V> {
    fn default() -> Self {
        Timed {
            entries: BTreeMap::new(),
            index: BTreeSet::new(),
            dirty: Vec::new(),
        }
    }
}

impl<K: Ord + Clone, V: Deadline> Timed<K, V> {
    pub(super) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.get(key).map(|e| &e.value)
    }

    /// The entry, to change: its deadline is re-read before the index is next read.
    pub(super) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized + ToOwned<Owned = K>,
    {
        let entry = self.entries.get_mut(key)?;
        self.dirty.push(key.to_owned());
        Some(&mut entry.value)
    }

    pub(super) fn insert(&mut self, key: K, value: V) {
        let at = value.deadline();
        if let Some(at) = at {
            self.index.insert((at, key.clone()));
        }
        let old = self.entries.insert(key.clone(), Entry { value, indexed: at });
        if let Some(old_at) = old.and_then(|e| e.indexed).filter(|&old_at| Some(old_at) != at) {
            self.index.remove(&(old_at, key));
        }
    }

    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized + ToOwned<Owned = K>,
    {
        let entry = self.entries.remove(key)?;
        if let Some(at) = entry.indexed {
            self.index.remove(&(at, key.to_owned()));
        }
        Some(entry.value)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, e)| (k, &e.value))
    }

    /// Re-reads the deadlines of the entries changed since the last call.
    fn sync(&mut self) {
        for key in self.dirty.drain(..) {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let at = entry.value.deadline();
            if at == entry.indexed {
                continue;
            }
            if let Some(old_at) = entry.indexed {
                self.index.remove(&(old_at, key.clone()));
            }
            if let Some(at) = at {
                self.index.insert((at, key));
            }
            entry.indexed = at;
        }
    }

    /// The keys of the entries due at `now`, in key order (the order the endpoint has always
    /// handled them in).
    pub(super) fn due(&mut self, now: Instant) -> Vec<K> {
        self.sync();
        let mut keys: Vec<K> = self
            .index
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, key)| key.clone())
            .collect();
        keys.sort();
        keys
    }
}

/// What the endpoint asks of each of its maps, whatever their key and entity types.
pub(super) trait DeadlineIndex {
    /// The earliest deadline of any entry.
    fn earliest(&mut self) -> Option<Instant>;

    /// The earliest deadline found by asking every entry: what the index must agree with.
    #[cfg(any(test, feature = "check-deadlines"))]
    fn scan(&self) -> Option<Instant>;

    /// Panics unless the index is exactly the entries' current deadlines.
    #[cfg(any(test, feature = "check-deadlines"))]
    fn check(&mut self);
}

impl<K: Ord + Clone + std::fmt::Debug, V: Deadline> DeadlineIndex for Timed<K, V> {
    fn earliest(&mut self) -> Option<Instant> {
        self.sync();
        self.index.first().map(|(at, _)| *at)
    }

    #[cfg(any(test, feature = "check-deadlines"))]
    fn scan(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| e.value.deadline())
            .fold(None, crate::transaction::soonest)
    }

    #[cfg(any(test, feature = "check-deadlines"))]
    fn check(&mut self) {
        self.sync();
        let expected: BTreeSet<(Instant, K)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| Some((e.value.deadline()?, k.clone())))
            .collect();
        assert_eq!(self.index, expected, "deadline index differs from the entries' deadlines");
        for (key, entry) in &self.entries {
            assert_eq!(entry.indexed, entry.value.deadline(), "stale indexed deadline of {key:?}");
        }
    }
}

/// Every timed entity's deadline is its own `next_deadline`.
macro_rules! deadline_is_next_deadline {
    ($($entity:ty),+ $(,)?) => {
        $(impl Deadline for $entity {
            fn deadline(&self) -> Option<Instant> {
                self.next_deadline()
            }
        })+
    };
}

deadline_is_next_deadline!(
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Box<Call>,
    Registration,
);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A timed entity whose deadline is whatever the test sets.
    #[derive(Debug)]
    struct Alarm(Option<Instant>);

    impl Deadline for Alarm {
        fn deadline(&self) -> Option<Instant> {
            self.0
        }
    }

    fn at(start: Instant, ms: u64) -> Option<Instant> {
        Some(start + Duration::from_millis(ms))
    }

    #[test]
    fn a_timer_moved_later_is_not_woken_early() {
        let start = Instant::now();
        let mut map = Timed::default();
        map.insert(1u32, Alarm(at(start, 100)));
        map.insert(2, Alarm(at(start, 300)));
        map.get_mut(&1).unwrap().0 = at(start, 500);
        assert_eq!(map.earliest(), at(start, 300));
        assert!(map.due(start + Duration::from_millis(200)).is_empty());
        assert_eq!(map.due(start + Duration::from_millis(500)), vec![1, 2]);
        map.check();
    }

    #[test]
    fn a_timer_moved_earlier_is_woken() {
        let start = Instant::now();
        let mut map = Timed::default();
        map.insert(1u32, Alarm(None));
        map.insert(2, Alarm(at(start, 300)));
        map.get_mut(&1).unwrap().0 = at(start, 50);
        assert_eq!(map.earliest(), at(start, 50));
        assert_eq!(map.due(start + Duration::from_millis(60)), vec![1]);
        map.check();
    }

    #[test]
    fn a_removed_entry_leaves_the_index() {
        let start = Instant::now();
        let mut map = Timed::default();
        map.insert(1u32, Alarm(at(start, 100)));
        map.insert(2, Alarm(at(start, 300)));
        map.get_mut(&1).unwrap().0 = at(start, 10);
        assert!(map.remove(&1).is_some());
        assert_eq!(map.earliest(), at(start, 300));
        assert_eq!(map.due(start + Duration::from_secs(1)), vec![2]);
        map.check();
        // Replacing an entry drops its old deadline as well.
        map.insert(2, Alarm(at(start, 700)));
        assert_eq!(map.earliest(), at(start, 700));
        map.check();
    }

    /// A deterministic pseudo-random walk (seeded) of inserts, changes, removals and
    /// wake-ups: after each step the index agrees with asking every entry.
    #[test]
    fn the_index_agrees_with_a_full_scan() {
        use rand::{Rng, SeedableRng};

        let start = Instant::now();
        let mut map: Timed<u32, Alarm> = Timed::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(19);
        let mut next = move |n: u64| rng.gen_range(0..n);
        let mut now = start;
        for _ in 0..5_000 {
            let key = next(64) as u32;
            let deadline = (next(4) > 0).then(|| now + Duration::from_millis(next(2_000)));
            match next(5) {
                0 => map.insert(key, Alarm(deadline)),
                1 => {
                    map.remove(&key);
                }
                2 | 3 => {
                    if let Some(alarm) = map.get_mut(&key) {
                        alarm.0 = deadline;
                    }
                }
                _ => {
                    now += Duration::from_millis(next(300));
                    for key in map.due(now) {
                        assert!(map.get(&key).and_then(|a| a.0).is_some_and(|d| d <= now));
                        map.get_mut(&key).unwrap().0 = None;
                    }
                }
            }
            assert_eq!(map.earliest(), map.scan());
            map.check();
        }
    }
}
