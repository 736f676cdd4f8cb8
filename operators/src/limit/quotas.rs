//! [`Quotas`]: one governor quota per key, at most `max_keys` of them, least
//! recently admitted first out.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::Ordering::Relaxed;

use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use super::clock::{TokioClock, TokioInstant};
use super::config::{KeysFull, StatsInner};

type Limiter = RateLimiter<
    NotKeyed,
    InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<TokioInstant>,
>;

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
    limiter: Limiter,
    /// Position in the recency order: last admission (or creation) and a unique
    /// tie-breaker.
    last: (Instant, u64),
}

/// Per-key quotas with a bounded key count.
pub(crate) struct Quotas<K> {
    quota: Quota,
    max_keys: usize,
    when_full: KeysFull,
    slots: HashMap<K, Slot>,
    /// Keys by last admission, oldest first.
    order: BTreeMap<(Instant, u64), K>,
    seq: u64,
}

impl<K: Hash + Eq + Clone> Quotas<K> {
    pub(crate) fn new(quota: Quota, max_keys: usize, when_full: KeysFull) -> Self {
        Quotas {
            quota,
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

    /// How long a key must go without admission to be indistinguishable from a
    /// fresh one.
    fn idle_after(&self) -> std::time::Duration {
        self.quota.burst_size_replenished_in()
    }

    /// Asks `key`'s quota for one element at `now`, charging it if admitted.
    pub(crate) fn check(&mut self, key: &K, now: Instant, stats: &StatsInner) -> Decision {
        if !self.slots.contains_key(key) {
            if let Some(until) = self.make_room(now, stats) {
                return Decision::Full(until);
            }
            let last = self.next_position(now);
            let slot = Slot {
                limiter: RateLimiter::direct_with_clock(self.quota, TokioClock),
                last,
            };
            self.order.insert(last, key.clone());
            self.slots.insert(key.clone(), slot);
        }
        let position = self.next_position(now);
        // Cannot fail: the key was found or inserted just above.
        let slot = self.slots.get_mut(key).expect("inserted above");
        match slot.limiter.check() {
            Ok(()) => {
                self.order.remove(&slot.last);
                slot.last = position;
                self.order.insert(position, key.clone());
                Decision::Admit
            }
            Err(not_until) => Decision::NotUntil(not_until.earliest_possible().0),
        }
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
        let idle_at = oldest.0 + self.idle_after();
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
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;

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
}
