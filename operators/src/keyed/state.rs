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
use weir_runtime::checkpoint::{
    Deferred, KEY_GROUPS, RestoreContext, Snapshot, StateError, StatePart, encode, key_group_of,
};

use super::groups::{Groups, KeyGroup, Map};
use crate::checkpoint::{Mixed, age, before, decode_mixed};

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

/// One key's value, with its place in the recency order and its last touch.
#[derive(Clone)]
pub(crate) struct Slot<S> {
    pub(crate) value: S,
    pub(crate) seq: u64,
    pub(crate) touched: Instant,
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

impl Tallies {
    fn of(counters: &StateCounters) -> Self {
        let c = &counters.0;
        Tallies {
            peak_keys: c.peak_keys.load(Relaxed),
            expired: c.expired.load(Relaxed),
            evicted: c.evicted.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
        }
    }
}

/// Encodes a keyed snapshot: one part per key group of `maps` (ascending, as
/// [`Snapshot::keyed`] makes them) with the group's entries, their idle time
/// counted to `now`, followed by those of `extra` in that group; then the
/// tallies. The sync and the deferred snapshot both encode with it.
fn encode_snapshot<'a, K, S>(
    version: u32,
    now: Instant,
    maps: impl Iterator<Item = (u16, &'a Map<K, Slot<S>>)>,
    extra: &[Vec<(&K, Entry<&S>)>],
    tallies: &Tallies,
) -> Result<Snapshot, StateError>
where
    K: Serialize + 'a,
    S: Serialize + 'a,
{
    let mut maps = maps.peekable();
    let mut parts = Vec::new();
    for g in 0..KEY_GROUPS {
        let map = maps.next_if(|(mg, _)| *mg == g).map(|(_, map)| map);
        let extra = extra.get(usize::from(g)).map_or(&[][..], Vec::as_slice);
        if map.is_none_or(HashMap::is_empty) && extra.is_empty() {
            continue;
        }
        let mut entries: Vec<(&K, Entry<&S>)> =
            Vec::with_capacity(map.map_or(0, HashMap::len) + extra.len());
        entries.extend(map.into_iter().flatten().map(|(k, slot)| {
            let entry = Entry {
                value: &slot.value,
                seq: slot.seq,
                idle: age(now, slot.touched),
            };
            (k, entry)
        }));
        entries.extend(extra.iter().map(|(k, e)| {
            let entry = Entry {
                value: e.value,
                seq: e.seq,
                idle: e.idle,
            };
            (*k, entry)
        }));
        parts.push(StatePart {
            key_group: Some(g),
            bytes: encode(&entries)?,
        });
    }
    parts.push(StatePart {
        key_group: None,
        bytes: encode(tallies)?,
    });
    Ok(Snapshot { version, parts })
}

/// Why a key could not be inserted.
#[derive(Debug)]
pub(crate) struct Full;

/// Per-key values of type `S`, with an idle TTL and a key bound. Keys are ordered
/// by last touch through a queue of `(seq, key)` touches; stale touches (a key
/// touched again since) are skipped when met and compacted away when the queue
/// grows past twice the keys, so the queue is bounded by the keys held.
///
/// The entries are held by key group ([`Groups`]), each copied on write after a
/// [deferred snapshot](Self::snapshot_deferred) shared it with the checkpoint's
/// writer. Callers compute a key's [`KeyGroup`] once per element and pass it to
/// the `_in` methods.
pub(crate) struct KeyedState<K, S> {
    groups: Groups<K, Slot<S>>,
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
            groups: Groups::new(),
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
        self.groups.len()
    }

    /// The keys held, in no order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.groups.iter().map(|(k, _)| k.clone())
    }

    /// Removes the oldest key whose TTL has run out by `now`, counted as expired.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(K, S)> {
        let ttl = self.bounds.ttl?;
        let (g, touched) = self.oldest()?;
        if touched + ttl > now {
            return None;
        }
        let (_, key) = self.order.pop_front()?;
        let slot = self.groups.remove(g, &key)?;
        self.bounds.counters.0.expired.fetch_add(1, Relaxed);
        Some((key, slot.value))
    }

    /// Drops stale touches at the front of the order queue; the key group and
    /// the last touch of the live key left at the front.
    fn oldest(&mut self) -> Option<(KeyGroup, Instant)> {
        while let Some((seq, key)) = self.order.front() {
            let g = KeyGroup::of(key);
            match self.groups.get(g, key) {
                Some(slot) if slot.seq == *seq => return Some((g, slot.touched)),
                _ => {
                    self.order.pop_front();
                }
            }
        }
        None
    }

    /// Whether `key` (of group `g`) is held; copies nothing.
    pub(crate) fn contains_in(&self, g: KeyGroup, key: &K) -> bool {
        self.groups.get(g, key).is_some()
    }

    /// The value of `key`, touched at `now` if `touch`.
    #[cfg(test)]
    pub(crate) fn get_mut(&mut self, key: &K, now: Instant, touch: bool) -> Option<&mut S> {
        self.get_mut_in(KeyGroup::of(key), key, now, touch)
    }

    /// The value of `key`, of key group `g`, touched at `now` if `touch`.
    pub(crate) fn get_mut_in(
        &mut self,
        g: KeyGroup,
        key: &K,
        now: Instant,
        touch: bool,
    ) -> Option<&mut S> {
        if !touch {
            return self.groups.get_mut(g, key).map(|s| &mut s.value);
        }
        self.seq += 1;
        let seq = self.seq;
        let tracked = self.tracked();
        if !tracked || !self.compacts_after_a_touch() {
            // One lookup: the order queue is pushed to, not compacted.
            let slot = self.groups.get_mut(g, key)?;
            slot.seq = seq;
            slot.touched = now;
            if tracked {
                self.order.push_back((seq, key.clone()));
            }
            return Some(&mut slot.value);
        }
        let slot = self.groups.get_mut(g, key)?;
        slot.seq = seq;
        slot.touched = now;
        self.order.push_back((seq, key.clone()));
        self.compact();
        self.groups.get_mut(g, key).map(|s| &mut s.value)
    }

    /// Whether one more touch in the order queue makes [`compact`](Self::compact)
    /// rebuild it.
    fn compacts_after_a_touch(&self) -> bool {
        self.order.len() + 1 > 2 * self.groups.len() + 64
    }

    /// Whether inserting a new key needs an eviction (or fails) first.
    pub(crate) fn is_full(&self) -> bool {
        self.bounds
            .max_keys
            .is_some_and(|(max, _)| self.groups.len() >= max)
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
        let Some((g, _)) = self.oldest() else {
            return Ok(None);
        };
        let Some((_, key)) = self.order.pop_front() else {
            return Ok(None);
        };
        let slot = self.groups.remove(g, &key).ok_or(Full)?;
        self.bounds.counters.0.evicted.fetch_add(1, Relaxed);
        Ok(Some((key, slot.value)))
    }

    /// Inserts a new key (call [`make_room`](Self::make_room) first).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, key: K, value: S, now: Instant) -> &mut S {
        self.insert_in(KeyGroup::of(&key), key, value, now)
    }

    /// Inserts a new key of key group `g` (call [`make_room`](Self::make_room)
    /// first).
    pub(crate) fn insert_in(&mut self, g: KeyGroup, key: K, value: S, now: Instant) -> &mut S {
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
        &mut self.groups.insert(g, key, slot).value
    }

    /// Rebuilds the order queue from the live keys when stale touches make up
    /// more than half of it: amortised O(log n) per touch, queue ≤ 2n + 64.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.groups.len() + 64 {
            return;
        }
        let mut live: Vec<(u64, K)> = self
            .groups
            .iter()
            .map(|(k, slot)| (slot.seq, k.clone()))
            .collect();
        live.sort_unstable_by_key(|(seq, _)| *seq);
        self.order = live.into();
    }

    /// Removes every key, least recently touched first.
    pub(crate) fn drain_all(&mut self) -> Vec<(K, S)> {
        let mut all: Vec<(u64, K, S)> = self
            .groups
            .drain()
            .into_iter()
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
        let mut by_group: Vec<Vec<(&K, Entry<&S>)>> = Vec::new();
        for ((k, v), i) in extra.iter().zip(1..) {
            let entry = Entry {
                value: v,
                seq: self.seq + i,
                idle: Duration::ZERO,
            };
            let g = usize::from(key_group_of(k));
            if by_group.len() <= g {
                by_group.resize_with(g + 1, Vec::new);
            }
            by_group[g].push((k, entry));
        }
        let tallies = Tallies::of(&self.bounds.counters);
        encode_snapshot(version, now, self.groups.maps(), &by_group, &tallies)
    }

    /// As [`snapshot`](Self::snapshot) (without extra entries), but encoded
    /// later, on the checkpoint's writer thread (see
    /// [`Checkpointable::snapshot_deferred`](weir_runtime::checkpoint::Checkpointable::snapshot_deferred)).
    /// The stage pauses only to [freeze](Groups::freeze) its key groups (no entry
    /// is copied); the writer encodes the frozen groups, idle times counted to
    /// `now`, and the stage copies a group only if it writes to it before the
    /// writer is done with it.
    pub(crate) fn snapshot_deferred(&mut self, version: u32, now: Instant) -> Deferred
    where
        K: Serialize + Send + Sync + 'static,
        S: Clone + Serialize + Send + Sync + 'static,
    {
        let frozen = self.groups.freeze();
        let tallies = Tallies::of(&self.bounds.counters);
        Deferred::later(move || {
            let maps = frozen.iter().map(|(g, frozen)| (*g, frozen.map()));
            encode_snapshot(version, now, maps, &[], &tallies)
        })
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
        self.groups.clear();
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
            self.groups.insert(KeyGroup::of(&key), key, slot);
        }
        let c = &self.bounds.counters.0;
        for t in tallies {
            c.peak_keys.fetch_max(t.peak_keys, Relaxed);
            c.expired.fetch_max(t.expired, Relaxed);
            c.evicted.fetch_max(t.evicted, Relaxed);
            c.rejected.fetch_max(t.rejected, Relaxed);
        }
        c.keys.store(self.groups.len() as u64, Relaxed);
        Ok(())
    }

    /// Publishes the key gauges, and arms a timer for the next expiry so that the
    /// stage is stepped when it comes even if no input arrives.
    pub(crate) fn after_step(&mut self, cx: &mut Context<'_>) {
        let keys = self.groups.len() as u64;
        let counts = &self.bounds.counters.0;
        counts.keys.store(keys, Relaxed);
        counts.peak_keys.fetch_max(keys, Relaxed);
        let Some(ttl) = self.bounds.ttl else { return };
        let Some(deadline) = self.oldest().map(|(_, touched)| touched + ttl) else {
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

    /// Entries of a snapshot, least recently touched first: key, value, idle.
    type Entries = Vec<(u64, u64, Duration)>;

    /// A snapshot's entries.
    fn entries(snapshot: &Snapshot) -> Entries {
        let (_, mut entries): Mixed<Tallies, u64, Entry<u64>> =
            decode_mixed(snapshot, 1, &RestoreContext::default()).unwrap();
        entries.sort_unstable_by_key(|(_, e)| e.seq);
        entries
            .into_iter()
            .map(|(k, e)| (k, e.value, e.idle))
            .collect()
    }

    /// A state of `n` keys over many key groups, some touched again, with a TTL
    /// and a bound that evicted some.
    fn busy(n: u64, t0: Instant) -> KeyedState<u64, u64> {
        let mut s = KeyedState::new(bounds(Some(60), Some((n as usize, OnFull::EvictLru))));
        for k in 0..n + n / 10 {
            s.make_room().unwrap();
            s.insert(k, k * 2, t0 + Duration::from_millis(k));
        }
        for k in (n / 2..n).step_by(3) {
            if let Some(v) = s.get_mut(&k, t0 + Duration::from_secs(2), true) {
                *v += 1;
            }
        }
        s
    }

    #[test]
    fn a_deferred_snapshot_holds_the_state_at_the_barrier_not_later_writes() {
        let t0 = Instant::now();
        let mut s = busy(10_000, t0);
        let at = t0 + Duration::from_secs(5);
        let want = entries(&s.snapshot(1, at, &[]).unwrap());
        let deferred = s.snapshot_deferred(1, at);

        // Before the writer runs: writes to every group, new keys, evictions and
        // expiries.
        let later = at + Duration::from_secs(50);
        for k in 0..12_000 {
            if let Some(v) = s.get_mut(&k, later, true) {
                *v += 1_000_000;
            }
        }
        for k in 20_000..21_000 {
            s.make_room().unwrap();
            s.insert(k, 0, later);
        }
        let mut expired = 0;
        while s.pop_expired(later + Duration::from_secs(60)).is_some() {
            expired += 1;
        }
        assert_eq!(expired, 10_000);
        assert_eq!(s.len(), 0);

        let got = entries(&deferred.resolve().unwrap());
        assert_eq!(got.len(), 10_000);
        assert_eq!(got, want);
    }

    #[test]
    fn deferred_and_sync_snapshots_encode_the_same_bytes() {
        let t0 = Instant::now();
        let mut s = busy(3_000, t0);
        let at = t0 + Duration::from_secs(3);
        let first = s.snapshot_deferred(1, at);
        assert_eq!(first.resolve().unwrap(), s.snapshot(1, at, &[]).unwrap());

        // A second snapshot while the first is still with the writer, after
        // writes to some groups (now copies) and none to others (still shared).
        let pending = s.snapshot_deferred(1, at);
        let before = s.snapshot(1, at, &[]).unwrap();
        for k in (0..3_000).step_by(97) {
            if let Some(v) = s.get_mut(&k, at, true) {
                *v = 0;
            }
        }
        s.make_room().unwrap();
        s.insert(99_999, 9, at);
        let second = s.snapshot_deferred(1, at + Duration::from_secs(1));
        let sync = s.snapshot(1, at + Duration::from_secs(1), &[]).unwrap();
        assert_eq!(second.resolve().unwrap(), sync);
        assert_eq!(pending.resolve().unwrap(), before);
        assert_ne!(sync, before);
    }

    /// An operation of the model test.
    #[derive(Debug, Clone)]
    enum Op {
        /// A keyed scan's step: the key's value plus `add`, touched; a new key
        /// makes room first.
        Touch(u64, u64),
        /// A write without a touch (as `get_mut(.., false)`).
        Poke(u64, u64),
        /// The clock moves on, in ms.
        Advance(u64),
        /// Every expired key removed.
        Expire,
        /// A snapshot: deferred (resolved later) or not.
        Snapshot(bool),
        /// The `i`-th pending deferred snapshot resolved.
        Resolve(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0_u64..40, 1_u64..100).prop_map(|(k, a)| Op::Touch(k, a)),
            1 => (0_u64..40, 1_u64..100).prop_map(|(k, a)| Op::Poke(k, a)),
            2 => (0_u64..4_000).prop_map(Op::Advance),
            1 => Just(Op::Expire),
            2 => any::<bool>().prop_map(Op::Snapshot),
            1 => any::<usize>().prop_map(Op::Resolve),
        ]
    }

    /// The model: a plain map of key to (value, last touch), and the keys least
    /// recently touched first.
    #[derive(Clone, Default)]
    struct Model {
        map: HashMap<u64, (u64, Instant)>,
        order: Vec<u64>,
    }

    impl Model {
        fn entries(&self, now: Instant) -> Entries {
            self.order
                .iter()
                .map(|k| {
                    let (v, t) = self.map[k];
                    (*k, v, now.saturating_duration_since(t))
                })
                .collect()
        }

        fn remove_oldest(&mut self) -> Option<(u64, u64)> {
            if self.order.is_empty() {
                return None;
            }
            let k = self.order.remove(0);
            self.map.remove(&k).map(|(v, _)| (k, v))
        }
    }

    use proptest::prelude::*;

    /// `snapshot` holds `want` (least recently touched first), and restores to it.
    fn check(
        max: usize,
        now: Instant,
        snapshot: &Snapshot,
        want: &[(u64, u64, Duration)],
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(&entries(snapshot), want);
        let mut r: KeyedState<u64, u64> =
            KeyedState::new(bounds(Some(10), Some((max, OnFull::EvictLru))));
        r.restore(snapshot, 1, &RestoreContext::default(), now)
            .unwrap();
        let values: Vec<(u64, u64)> = want.iter().map(|(k, v, _)| (*k, *v)).collect();
        prop_assert_eq!(r.drain_all(), values);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_state_and_its_snapshots_follow_a_plain_map(
            max in 1_usize..24,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let ttl = Duration::from_secs(10);
            let mut s: KeyedState<u64, u64> =
                KeyedState::new(bounds(Some(10), Some((max, OnFull::EvictLru))));
            let mut m = Model::default();
            let mut now = Instant::now();
            let mut pending: Vec<(Deferred, Entries)> = Vec::new();
            for op in ops {
                match op {
                    Op::Touch(k, add) => {
                        if let Some(v) = s.get_mut(&k, now, true) {
                            *v += add;
                            let e = m.map.get_mut(&k).unwrap();
                            *e = (e.0 + add, now);
                            m.order.retain(|o| *o != k);
                            m.order.push(k);
                            prop_assert_eq!(*v, e.0);
                        } else {
                            prop_assert!(!m.map.contains_key(&k));
                            let evicted = s.make_room().unwrap();
                            let want = if m.map.len() >= max { m.remove_oldest() } else { None };
                            prop_assert_eq!(evicted, want);
                            s.insert(k, add, now);
                            m.map.insert(k, (add, now));
                            m.order.push(k);
                        }
                    }
                    Op::Poke(k, add) => {
                        let got = s.get_mut(&k, now, false).map(|v| {
                            *v += add;
                            *v
                        });
                        let want = m.map.get_mut(&k).map(|e| {
                            e.0 += add;
                            e.0
                        });
                        prop_assert_eq!(got, want);
                    }
                    Op::Advance(ms) => now += Duration::from_millis(ms),
                    Op::Expire => {
                        let mut got = Vec::new();
                        while let Some(kv) = s.pop_expired(now) {
                            got.push(kv);
                        }
                        let mut want = Vec::new();
                        while m.order.first().is_some_and(|k| m.map[k].1 + ttl <= now) {
                            want.extend(m.remove_oldest());
                        }
                        prop_assert_eq!(got, want);
                    }
                    Op::Snapshot(true) => {
                        pending.push((s.snapshot_deferred(1, now), m.entries(now)));
                    }
                    Op::Snapshot(false) => check(max, now, &s.snapshot(1, now, &[]).unwrap(), &m.entries(now))?,
                    Op::Resolve(i) if !pending.is_empty() => {
                        let (deferred, want) = pending.remove(i % pending.len());
                        check(max, now, &deferred.resolve().unwrap(), &want)?;
                    }
                    Op::Resolve(_) => {}
                }
                prop_assert_eq!(s.len(), m.map.len());
            }
            for (deferred, want) in pending {
                check(max, now, &deferred.resolve().unwrap(), &want)?;
            }
            let values: Vec<(u64, u64)> = m.entries(now).iter().map(|(k, v, _)| (*k, *v)).collect();
            prop_assert_eq!(s.drain_all(), values);
        }
    }

    /// The per-element cost of a keyed scan's state step (look up, touch, add;
    /// insert a new key), 10⁴ u64 keys, without and with a TTL.
    #[test]
    #[ignore = "a timing: cargo test --release -p weir-operators hot_path_cost -- --ignored --nocapture"]
    fn hot_path_cost() {
        for ttl in [None, Some(3_600)] {
            let mut s: KeyedState<u64, u64> = KeyedState::new(bounds(ttl, None));
            let now = Instant::now();
            let n = 20_000_000_u64;
            let mut best = Duration::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                for x in 0..std::hint::black_box(n) {
                    let key = x % 10_000;
                    let g = KeyGroup::of(&key);
                    match s.get_mut_in(g, &key, now, true) {
                        Some(v) => *v = v.wrapping_add(x),
                        None => {
                            s.insert_in(g, key, x, now);
                        }
                    }
                }
                best = best.min(t.elapsed());
            }
            #[allow(clippy::cast_precision_loss)]
            let ns = best.as_nanos() as f64 / n as f64;
            println!("ttl {ttl:?}: {ns:.2} ns per element (best of 5)");
        }
    }
}
