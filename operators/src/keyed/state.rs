//! [`KeyedState`]: per-key values with a TTL and a key bound, the engine behind the
//! keyed operators; [`StateCounters`] and [`OnFull`], their public face.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::Context;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use weir_runtime::checkpoint::{Deferred, RestoreContext, Snapshot, StateError};

use crate::checkpoint::{Mixed, age, before, decode_mixed, mixed};

/// What a keyed stage does when a new key arrives and it already holds its
/// [maximum number of keys](crate::keyed::Keyed::max_keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Evict the least recently used key (counted in [`StateCounters::evicted`]);
    /// `fold` and `aggregate` emit its result first, `scan` and `reduce` forget it,
    /// `dedupe` forgets that it saw it.
    EvictLru,
    /// Fail the element that brought the new key, with
    /// [`ErrorClass::ResourceExhausted`](weir_runtime::ErrorClass::ResourceExhausted):
    /// the stage's supervision decides (restart with fresh state, dead-letter, …).
    Fail,
}

#[derive(Debug, Default)]
struct Counts {
    keys: AtomicU64,
    peak_keys: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
    rejected: AtomicU64,
}

/// Live counts of a keyed stage's state: keys held, keys expired by the TTL, keys
/// evicted by the key bound. Cheap to clone (one shared set of atomics); pass a
/// clone with [`Keyed::counters`](crate::keyed::Keyed::counters) and read it
/// while the pipeline runs or after it ended.
///
/// # Examples
///
/// ```
/// use weir_operators::keyed::StateCounters;
/// let counters = StateCounters::new();
/// assert_eq!((counters.keys(), counters.expired(), counters.evicted()), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct StateCounters(Arc<Counts>);

impl StateCounters {
    /// A fresh set of counters, all zero.
    pub fn new() -> Self {
        StateCounters::default()
    }

    /// Keys held now (after the last step of the stage).
    pub fn keys(&self) -> u64 {
        self.0.keys.load(Relaxed)
    }

    /// The most keys held at once.
    pub fn peak_keys(&self) -> u64 {
        self.0.peak_keys.load(Relaxed)
    }

    /// Keys removed because they stayed idle for the TTL.
    pub fn expired(&self) -> u64 {
        self.0.expired.load(Relaxed)
    }

    /// Keys evicted to make room for a new one ([`OnFull::EvictLru`]).
    pub fn evicted(&self) -> u64 {
        self.0.evicted.load(Relaxed)
    }

    /// New keys refused because the state was full ([`OnFull::Fail`]).
    pub fn rejected(&self) -> u64 {
        self.0.rejected.load(Relaxed)
    }
}

/// The TTL, key bound and counters of a keyed stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bounds {
    pub(crate) ttl: Option<Duration>,
    pub(crate) max_keys: Option<(usize, OnFull)>,
    pub(crate) counters: StateCounters,
}

impl Bounds {
    pub(crate) fn validate(&self, what: &str) -> Result<(), String> {
        if self.ttl == Some(Duration::ZERO) {
            return Err(format!("{what}: ttl(0) would expire every key at once"));
        }
        if let Some((0, _)) = self.max_keys {
            return Err(format!("{what}: max_keys(0) leaves no room for any key"));
        }
        Ok(())
    }
}

/// The tokio clock (virtual under a paused runtime), as a std `Instant`.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

struct Slot<S> {
    value: S,
    seq: u64,
    touched: Instant,
}

/// One key's entry in a snapshot: its value, its place in the recency order, and
/// how long it had been idle when the snapshot was taken (re-anchored at the
/// restore, see [`crate::checkpoint`]).
#[derive(Serialize, Deserialize)]
pub(crate) struct Entry<S> {
    pub(crate) value: S,
    pub(crate) seq: u64,
    pub(crate) idle: Duration,
}

/// The part of a keyed snapshot that is not split by key: the counters that must
/// not start again from zero (keys expired, evicted, rejected; the peak).
#[derive(Serialize, Deserialize)]
struct Tallies {
    peak_keys: u64,
    expired: u64,
    evicted: u64,
    rejected: u64,
}

/// Why a key could not be inserted.
#[derive(Debug)]
pub(crate) struct Full;

/// Per-key values of type `S`, with an idle TTL and a key bound. Keys are ordered
/// by last touch through a queue of `(seq, key)` touches; stale touches (a key
/// touched again since) are skipped when met and compacted away when the queue
/// grows past twice the keys, so the queue is bounded by the keys held.
pub(crate) struct KeyedState<K, S> {
    map: HashMap<K, Slot<S>>,
    order: VecDeque<(u64, K)>,
    seq: u64,
    bounds: Bounds,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<K, S> KeyedState<K, S> {
    pub(crate) fn bounds(&self) -> &Bounds {
        &self.bounds
    }
}

impl<K: Hash + Eq + Clone, S> KeyedState<K, S> {
    pub(crate) fn new(bounds: Bounds) -> Self {
        KeyedState {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            bounds,
            timer: None,
        }
    }

    fn tracked(&self) -> bool {
        self.bounds.ttl.is_some() || self.bounds.max_keys.is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The keys held, in no order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.map.keys().cloned()
    }

    /// Removes the oldest key whose TTL has run out by `now`, counted as expired.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(K, S)> {
        let ttl = self.bounds.ttl?;
        self.skip_stale();
        let (_, key) = self.order.front()?;
        let slot = &self.map[key];
        if slot.touched + ttl > now {
            return None;
        }
        let (_, key) = self.order.pop_front()?;
        let slot = self.map.remove(&key)?;
        self.bounds.counters.0.expired.fetch_add(1, Relaxed);
        Some((key, slot.value))
    }

    /// Drops stale touches at the front of the order queue.
    fn skip_stale(&mut self) {
        while let Some((seq, key)) = self.order.front() {
            match self.map.get(key) {
                Some(slot) if slot.seq == *seq => break,
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// The value of `key`, touched at `now` if `touch`.
    pub(crate) fn get_mut(&mut self, key: &K, now: Instant, touch: bool) -> Option<&mut S> {
        if !touch {
            return self.map.get_mut(key).map(|s| &mut s.value);
        }
        self.seq += 1;
        let seq = self.seq;
        let slot = self.map.get_mut(key)?;
        slot.seq = seq;
        slot.touched = now;
        if self.tracked() {
            self.order.push_back((seq, key.clone()));
            self.compact();
        }
        self.map.get_mut(key).map(|s| &mut s.value)
    }

    /// Whether inserting a new key needs an eviction (or fails) first.
    pub(crate) fn is_full(&self) -> bool {
        self.bounds
            .max_keys
            .is_some_and(|(max, _)| self.map.len() >= max)
    }

    /// Makes room for one new key under the bound's policy: the evicted key and
    /// value under [`OnFull::EvictLru`], `Err(Full)` under [`OnFull::Fail`]
    /// (counted as rejected), `Ok(None)` if there is room already.
    pub(crate) fn make_room(&mut self) -> Result<Option<(K, S)>, Full> {
        let Some((_, policy)) = self.bounds.max_keys.filter(|_| self.is_full()) else {
            return Ok(None);
        };
        if policy == OnFull::Fail {
            self.bounds.counters.0.rejected.fetch_add(1, Relaxed);
            return Err(Full);
        }
        self.skip_stale();
        let Some((_, key)) = self.order.pop_front() else {
            return Ok(None);
        };
        let slot = self.map.remove(&key).ok_or(Full)?;
        self.bounds.counters.0.evicted.fetch_add(1, Relaxed);
        Ok(Some((key, slot.value)))
    }

    /// Inserts a new key (call [`make_room`](Self::make_room) first).
    pub(crate) fn insert(&mut self, key: K, value: S, now: Instant) -> &mut S {
        self.seq += 1;
        let seq = self.seq;
        if self.tracked() {
            self.order.push_back((seq, key.clone()));
            self.compact();
        }
        let slot = Slot {
            value,
            seq,
            touched: now,
        };
        &mut self.map.entry(key).insert_entry(slot).into_mut().value
    }

    /// Rebuilds the order queue from the live keys when stale touches make up
    /// more than half of it: amortised O(log n) per touch, queue ≤ 2n + 64.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.map.len() + 64 {
            return;
        }
        let mut live: Vec<(u64, K)> = self
            .map
            .iter()
            .map(|(k, slot)| (slot.seq, k.clone()))
            .collect();
        live.sort_unstable_by_key(|(seq, _)| *seq);
        self.order = live.into();
    }

    /// Removes every key, least recently touched first.
    pub(crate) fn drain_all(&mut self) -> Vec<(K, S)> {
        let mut all: Vec<(u64, K, S)> = self
            .map
            .drain()
            .map(|(k, slot)| (slot.seq, k, slot.value))
            .collect();
        self.order.clear();
        all.sort_unstable_by_key(|(seq, _, _)| *seq);
        all.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    /// The state as a snapshot: one entry per key, split by key group, and the
    /// counters. `extra` are entries taken out of the state but not emitted yet
    /// (a `fold` that saw the end of its input), kept after the others in the
    /// recency order.
    pub(crate) fn snapshot(
        &self,
        version: u32,
        now: Instant,
        extra: &[(K, S)],
    ) -> Result<Snapshot, StateError>
    where
        K: Serialize,
        S: Serialize,
    {
        let mut entries: Vec<(&K, Entry<&S>)> = self
            .map
            .iter()
            .map(|(k, slot)| {
                let entry = Entry {
                    value: &slot.value,
                    seq: slot.seq,
                    idle: age(now, slot.touched),
                };
                (k, entry)
            })
            .collect();
        entries.extend(extra.iter().zip(1..).map(|((k, v), i)| {
            let entry = Entry {
                value: v,
                seq: self.seq + i,
                idle: Duration::ZERO,
            };
            (k, entry)
        }));
        let c = &self.bounds.counters.0;
        let tallies = Tallies {
            peak_keys: c.peak_keys.load(Relaxed),
            expired: c.expired.load(Relaxed),
            evicted: c.evicted.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
        };
        mixed(version, &tallies, entries.iter().map(|(k, e)| (*k, e)))
    }

    /// As [`snapshot`](Self::snapshot), but copies the entries now and encodes
    /// them later, on the checkpoint's writer thread (see
    /// [`Checkpointable::snapshot_deferred`](weir_runtime::checkpoint::Checkpointable::snapshot_deferred)):
    /// the stage pauses only for the copy.
    pub(crate) fn snapshot_deferred(&self, version: u32, now: Instant) -> Deferred
    where
        K: Clone + Hash + Serialize + Send + 'static,
        S: Clone + Serialize + Send + 'static,
    {
        let entries: Vec<(K, Entry<S>)> = self
            .map
            .iter()
            .map(|(k, slot)| {
                let entry = Entry {
                    value: slot.value.clone(),
                    seq: slot.seq,
                    idle: age(now, slot.touched),
                };
                (k.clone(), entry)
            })
            .collect();
        let c = &self.bounds.counters.0;
        let tallies = Tallies {
            peak_keys: c.peak_keys.load(Relaxed),
            expired: c.expired.load(Relaxed),
            evicted: c.evicted.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
        };
        Deferred::later(move || mixed(version, &tallies, entries.iter().map(|(k, e)| (k, e))))
    }

    /// Replaces the state with the entries of `snapshot` whose key group `ctx`
    /// owns, each idle for as long as it was at the snapshot (counted from `now`),
    /// in the same recency order. The counters are raised to those stored (the
    /// largest, when the snapshot was merged from several replicas that shared
    /// one set of counters).
    ///
    /// # Errors
    ///
    /// The snapshot does not decode, or has another version.
    pub(crate) fn restore(
        &mut self,
        snapshot: &Snapshot,
        version: u32,
        ctx: &RestoreContext,
        now: Instant,
    ) -> Result<(), StateError>
    where
        K: DeserializeOwned,
        S: DeserializeOwned,
    {
        let (tallies, mut entries): Mixed<Tallies, K, Entry<S>> =
            decode_mixed(snapshot, version, ctx)?;
        entries.sort_unstable_by_key(|(_, e)| e.seq);
        self.map.clear();
        self.order.clear();
        self.timer = None;
        self.seq = entries.last().map_or(0, |(_, e)| e.seq);
        let tracked = self.tracked();
        for (key, e) in entries {
            if tracked {
                self.order.push_back((e.seq, key.clone()));
            }
            let slot = Slot {
                value: e.value,
                seq: e.seq,
                touched: before(now, e.idle),
            };
            self.map.insert(key, slot);
        }
        let c = &self.bounds.counters.0;
        for t in tallies {
            c.peak_keys.fetch_max(t.peak_keys, Relaxed);
            c.expired.fetch_max(t.expired, Relaxed);
            c.evicted.fetch_max(t.evicted, Relaxed);
            c.rejected.fetch_max(t.rejected, Relaxed);
        }
        c.keys.store(self.map.len() as u64, Relaxed);
        Ok(())
    }

    /// Publishes the key gauges, and arms a timer for the next expiry so that the
    /// stage is stepped when it comes even if no input arrives.
    pub(crate) fn after_step(&mut self, cx: &mut Context<'_>) {
        let keys = self.map.len() as u64;
        let counts = &self.bounds.counters.0;
        counts.keys.store(keys, Relaxed);
        counts.peak_keys.fetch_max(keys, Relaxed);
        let Some(ttl) = self.bounds.ttl else { return };
        self.skip_stale();
        let Some(deadline) = self
            .order
            .front()
            .and_then(|(_, k)| self.map.get(k))
            .map(|slot| slot.touched + ttl)
        else {
            self.timer = None;
            return;
        };
        let at = tokio::time::Instant::from_std(deadline);
        let timer = match &mut self.timer {
            Some(t) if t.deadline() == at => t,
            slot => slot.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        if timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(ttl: Option<u64>, max: Option<(usize, OnFull)>) -> Bounds {
        Bounds {
            ttl: ttl.map(Duration::from_secs),
            max_keys: max,
            counters: StateCounters::new(),
        }
    }

    #[test]
    fn evicts_the_least_recently_used_key() {
        let mut s = KeyedState::new(bounds(None, Some((2, OnFull::EvictLru))));
        let t = Instant::now();
        s.insert(1, "a", t);
        s.insert(2, "b", t);
        assert!(s.get_mut(&1, t, true).is_some()); // 2 is now the oldest
        assert_eq!(s.make_room().unwrap(), Some((2, "b")));
        s.insert(3, "c", t);
        assert_eq!(s.bounds.counters.evicted(), 1);
        assert_eq!(s.drain_all(), vec![(1, "a"), (3, "c")]);
    }

    #[test]
    fn a_restore_keeps_idle_times_relative_to_the_snapshot_and_the_counters() {
        let mut s = KeyedState::new(bounds(Some(10), Some((3, OnFull::EvictLru))));
        let t0 = Instant::now();
        s.insert(1_u64, 10_u64, t0);
        s.insert(2, 20, t0 + Duration::from_secs(4));
        s.insert(3, 30, t0 + Duration::from_secs(6));
        assert_eq!(s.make_room().unwrap(), Some((1, 10)));
        s.insert(4, 40, t0 + Duration::from_secs(7));
        let at = t0 + Duration::from_secs(8);
        let snapshot = s.snapshot(5, at, &[]).unwrap();

        // Restored much later: the ages count from the restore.
        let mut r: KeyedState<u64, u64> =
            KeyedState::new(bounds(Some(10), Some((3, OnFull::EvictLru))));
        let later = at + Duration::from_secs(1000);
        r.restore(&snapshot, 5, &RestoreContext::default(), later)
            .unwrap();
        assert_eq!(r.bounds.counters.evicted(), 1);
        assert_eq!(r.bounds.counters.peak_keys(), s.bounds.counters.peak_keys());
        // Key 2 was idle for 4 s of 10: it expires 6 s after the restore, not before.
        assert!(
            r.pop_expired(later + Duration::from_millis(5_999))
                .is_none()
        );
        assert_eq!(r.pop_expired(later + Duration::from_secs(6)), Some((2, 20)));
        // The least recently used key is the next one evicted.
        assert_eq!(r.make_room().unwrap(), None);
        r.insert(5, 50, later + Duration::from_secs(6));
        assert_eq!(r.make_room().unwrap(), Some((3, 30)));
        assert_eq!(r.bounds.counters.expired(), 1);

        let mut v = KeyedState::<u64, u64>::new(bounds(None, None));
        assert!(matches!(
            v.restore(&snapshot, 6, &RestoreContext::default(), later),
            Err(StateError::Version {
                found: 5,
                expected: 6
            })
        ));
    }

    #[test]
    fn replicas_split_the_keys_exactly() {
        use weir_runtime::checkpoint::{key_group_of, replica_of_group};
        let mut s = KeyedState::new(bounds(Some(60), None));
        let t = Instant::now();
        for k in 0..500_u64 {
            s.insert(k, k * 3, t);
        }
        let snapshot = s.snapshot(1, t, &[]).unwrap();
        for n in [2, 8] {
            let mut all = Vec::new();
            for i in 0..n {
                let ctx = RestoreContext {
                    replica: Some((i, n)),
                    ..RestoreContext::default()
                };
                let mut r: KeyedState<u64, u64> = KeyedState::new(bounds(Some(60), None));
                r.restore(&snapshot, 1, &ctx, t).unwrap();
                let part = r.drain_all();
                assert!(
                    part.iter()
                        .all(|(k, _)| replica_of_group(key_group_of(k), n) == i)
                );
                all.extend(part);
            }
            all.sort_unstable();
            assert_eq!(
                all,
                (0..500).map(|k| (k, k * 3)).collect::<Vec<_>>(),
                "n = {n}"
            );
        }
    }

    #[test]
    fn fail_policy_refuses_and_counts() {
        let mut s = KeyedState::new(bounds(None, Some((1, OnFull::Fail))));
        s.insert(1, (), Instant::now());
        assert!(s.make_room().is_err());
        assert_eq!(s.bounds.counters.rejected(), 1);
    }

    #[test]
    fn expires_exactly_at_the_ttl_and_compacts_touches() {
        let mut s = KeyedState::new(bounds(Some(10), None));
        let t0 = Instant::now();
        s.insert(7, 0, t0);
        for i in 0..1_000 {
            s.get_mut(&7, t0, true);
            s.insert(i + 100, 0, t0);
        }
        assert!(s.order.len() <= 2 * s.len() + 64);
        assert!(s.pop_expired(t0 + Duration::from_millis(9_999)).is_none());
        let t = t0 + Duration::from_secs(10);
        let mut n = 0;
        while s.pop_expired(t).is_some() {
            n += 1;
        }
        assert_eq!(n, 1_001);
        assert_eq!(s.bounds.counters.expired(), 1_001);
    }
}
