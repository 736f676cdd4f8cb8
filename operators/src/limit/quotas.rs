//! [`Quotas`]: one GCRA quota per key, at most `max_keys` of them, least
//! recently admitted first out.
//!
//! The rate limit is governor's algorithm (GCRA, the generic cell rate
//! algorithm) written out over tokio instants, so that each key's state — its
//! *theoretical arrival time* — can be read and stored in a checkpoint: governor
//! keeps it private. The decisions are governor's to the nanosecond: with an
//! emission interval `t` (the quota's replenish interval) and a tolerance
//! `tau = t × (burst − 1)`, an element at `now` is admitted when `now ≥ tat − tau`,
//! and `tat` becomes `max(tat, now) + t`; otherwise it may pass at `tat − tau`.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use governor::Quota;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::config::{KeysFull, StatsInner};
use crate::checkpoint::{age, tokio_before};

/// The answer for one element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Let it through (its quota is charged).
    Admit,
    /// Its key's quota allows it at this instant, not before.
    NotUntil(Instant),
    /// Its key is new, the table is full and no key is idle before this instant.
    Full(Instant),
}

struct Slot {
    /// The theoretical arrival time: the key's place in its quota.
    tat: Instant,
    /// Position in the recency order: last admission (or creation) and a unique
    /// tie-breaker.
    last: (Instant, u64),
}

/// One key's quota in a checkpoint, its instants relative to the snapshot: how
/// far its theoretical arrival time is ahead (zero when it is in the past, which
/// the algorithm treats as now), how long ago it was last admitted, and its
/// place in the recency order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedQuota {
    ahead: Duration,
    idle: Duration,
    seq: u64,
}

/// Per-key quotas with a bounded key count.
pub(crate) struct Quotas<K> {
    /// Emission interval.
    t: Duration,
    /// Burst tolerance.
    tau: Duration,
    /// How long a key must go without admission to be indistinguishable from a
    /// fresh one.
    idle_after: Duration,
    max_keys: usize,
    when_full: KeysFull,
    slots: HashMap<K, Slot>,
    /// Keys by last admission, oldest first.
    order: BTreeMap<(Instant, u64), K>,
    seq: u64,
}

impl<K: Hash + Eq + Clone> Quotas<K> {
    pub(crate) fn new(quota: Quota, max_keys: usize, when_full: KeysFull) -> Self {
        let t = quota.replenish_interval().max(Duration::from_nanos(1));
        Quotas {
            t,
            tau: t * (quota.burst_size().get() - 1),
            idle_after: quota.burst_size_replenished_in(),
            max_keys,
            when_full,
            slots: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Keys tracked now.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Asks `key`'s quota for one element at `now`, charging it if admitted.
    pub(crate) fn check(&mut self, key: &K, now: Instant, stats: &StatsInner) -> Decision {
        if !self.slots.contains_key(key) {
            if let Some(until) = self.make_room(now, stats) {
                return Decision::Full(until);
            }
            let last = self.next_position(now);
            self.order.insert(last, key.clone());
            self.slots.insert(key.clone(), Slot { tat: now, last });
        }
        let position = self.next_position(now);
        let (t, tau) = (self.t, self.tau);
        // Cannot fail: the key was found or inserted just above.
        let slot = self.slots.get_mut(key).expect("inserted above");
        if let Some(earliest) = slot.tat.checked_sub(tau)
            && now < earliest
        {
            return Decision::NotUntil(earliest);
        }
        slot.tat = slot.tat.max(now) + t;
        self.order.remove(&slot.last);
        slot.last = position;
        self.order.insert(position, key.clone());
        Decision::Admit
    }

    /// A unique position in the recency order at `now`.
    fn next_position(&mut self, now: Instant) -> (Instant, u64) {
        self.seq += 1;
        (now, self.seq)
    }

    /// Frees a place for a new key if the table is full. Returns the instant the
    /// oldest key becomes idle when the policy refuses to evict it before then.
    fn make_room(&mut self, now: Instant, stats: &StatsInner) -> Option<Instant> {
        if self.slots.len() < self.max_keys {
            return None;
        }
        let (&oldest, _) = self.order.iter().next()?;
        let idle_at = oldest.0 + self.idle_after;
        if now < idle_at {
            match self.when_full {
                KeysFull::Refuse => return Some(idle_at),
                KeysFull::EvictLeastRecent => stats.evicted.fetch_add(1, Relaxed),
            };
        } else {
            stats.idle_evicted.fetch_add(1, Relaxed);
        }
        if let Some(key) = self.order.remove(&oldest) {
            self.slots.remove(&key);
        }
        None
    }

    /// The keys tracked, in no order.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.slots.keys()
    }

    /// Every key's quota, relative to `now`.
    pub(crate) fn save(&self, now: Instant) -> Vec<(&K, SavedQuota)> {
        self.slots
            .iter()
            .map(|(k, slot)| {
                let saved = SavedQuota {
                    ahead: age(slot.tat.into_std(), now.into_std()),
                    idle: age(now.into_std(), slot.last.0.into_std()),
                    seq: slot.last.1,
                };
                (k, saved)
            })
            .collect()
    }

    /// Puts back quotas saved by [`save`](Self::save), relative to `now`.
    pub(crate) fn load(&mut self, saved: Vec<(K, SavedQuota)>, now: Instant) {
        self.slots.clear();
        self.order.clear();
        for (key, q) in saved {
            self.seq = self.seq.max(q.seq);
            let last = (tokio_before(now, q.idle), q.seq);
            self.order.insert(last, key.clone());
            let slot = Slot {
                tat: now + q.ahead,
                last,
            };
            self.slots.insert(key, slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::RateLimiter;

    use super::*;
    use crate::limit::clock::TokioClock;

    fn quota(interval_ms: u64, burst: u32) -> Quota {
        Quota::with_period(Duration::from_millis(interval_ms))
            .unwrap()
            .allow_burst(NonZeroU32::new(burst).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_independent_and_bounded() {
        let stats = StatsInner::default();
        let mut q = Quotas::new(quota(10, 2), 2, KeysFull::Refuse);
        let now = Instant::now();
        assert_eq!(q.check(&"a", now, &stats), Decision::Admit);
        assert_eq!(q.check(&"a", now, &stats), Decision::Admit);
        assert!(
            matches!(q.check(&"a", now, &stats), Decision::NotUntil(t) if t == now + Duration::from_millis(10))
        );
        // b has its own quota.
        assert_eq!(q.check(&"b", now, &stats), Decision::Admit);
        // c: table full, a was admitted last at `now` and is idle after 20 ms.
        assert_eq!(
            q.check(&"c", now, &stats),
            Decision::Full(now + Duration::from_millis(20))
        );
        tokio::time::advance(Duration::from_millis(20)).await;
        let later = Instant::now();
        assert_eq!(q.check(&"c", later, &stats), Decision::Admit);
        assert_eq!(q.len(), 2);
        assert_eq!(stats.idle_evicted.load(Relaxed), 1);
        assert_eq!(stats.evicted.load(Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn evict_least_recent_forgets_the_oldest_admission() {
        let stats = StatsInner::default();
        let mut q = Quotas::new(quota(10, 1), 2, KeysFull::EvictLeastRecent);
        let now = Instant::now();
        assert_eq!(q.check(&1, now, &stats), Decision::Admit);
        assert_eq!(q.check(&2, now, &stats), Decision::Admit);
        assert_eq!(q.check(&3, now, &stats), Decision::Admit);
        assert_eq!(stats.evicted.load(Relaxed), 1);
        // 1 was forgotten: it starts again with a full burst.
        assert_eq!(q.check(&1, now, &stats), Decision::Admit);
        // 2 was the oldest then.
        assert_eq!(
            q.check(&3, now, &stats),
            Decision::NotUntil(now + Duration::from_millis(10))
        );
        assert_eq!(q.len(), 2);
    }

    /// The quotas decide exactly as governor's limiter over random arrivals,
    /// bursts and rates.
    #[tokio::test(start_paused = true)]
    async fn decisions_are_governors() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for (interval, burst) in [(10, 1), (10, 3), (7, 5), (1, 2)] {
            let stats = StatsInner::default();
            let governor = RateLimiter::direct_with_clock(quota(interval, burst), TokioClock);
            let mut q = Quotas::new(quota(interval, burst), 4, KeysFull::Refuse);
            for _ in 0..300 {
                tokio::time::advance(Duration::from_micros(next(8_000))).await;
                let now = Instant::now();
                let want = match governor.check() {
                    Ok(()) => Decision::Admit,
                    Err(not) => Decision::NotUntil(not.earliest_possible().0),
                };
                assert_eq!(
                    q.check(&0, now, &stats),
                    want,
                    "{interval} ms, burst {burst}"
                );
            }
        }
    }

    /// Saved and loaded later, every key's quota and the recency order are where
    /// they were, relative to the moment of the restore.
    #[tokio::test(start_paused = true)]
    async fn saved_quotas_decide_as_before() {
        let stats = StatsInner::default();
        let mut q = Quotas::new(quota(10, 2), 3, KeysFull::Refuse);
        let script = [1, 1, 1, 2, 3, 2, 1, 3, 3, 3, 2, 4, 1, 4];
        for k in &script[..7] {
            let _ = q.check(k, Instant::now(), &stats);
            tokio::time::advance(Duration::from_millis(3)).await;
        }
        let saved: Vec<(u32, SavedQuota)> = q
            .save(Instant::now())
            .into_iter()
            .map(|(k, s)| (*k, s))
            .collect();
        let mut r = Quotas::new(quota(10, 2), 3, KeysFull::Refuse);
        tokio::time::advance(Duration::from_secs(3600)).await;
        let offset = Duration::from_secs(3600);
        r.load(saved, Instant::now());
        for k in &script[7..] {
            let now = Instant::now();
            let shift = |d: Decision| match d {
                Decision::NotUntil(t) => Decision::NotUntil(t + offset),
                Decision::Full(t) => Decision::Full(t + offset),
                Decision::Admit => Decision::Admit,
            };
            let want = shift(q.check(k, now - offset, &stats));
            assert_eq!(r.check(k, now, &stats), want, "key {k}");
            tokio::time::advance(Duration::from_millis(3)).await;
        }
    }
}
