//! A bounded record of recent instants: the engine behind [`IntensityWindow`] and the
//! failure-rate window of [`CircuitBreaker`].
//!
//! [`IntensityWindow`]: super::IntensityWindow
//! [`CircuitBreaker`]: super::CircuitBreaker

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many slots are reserved up front; a larger bound grows on demand.
const PREALLOCATED: usize = 16;

/// Keeps at most `cap` instants, oldest first; pushing into a full record drops the
/// oldest one.
///
/// Callers pass instants in non-decreasing order. Out-of-order instants never make it
/// panic or grow past `cap`; they only make [`expire`](Self::expire) keep an entry
/// longer than it should.
#[derive(Debug, Clone)]
pub(crate) struct RecentInstants {
    cap: usize,
    items: VecDeque<Instant>,
}

impl RecentInstants {
    /// An empty record that keeps at most `cap` instants.
    pub(crate) fn new(cap: u32) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        RecentInstants {
            cap,
            items: VecDeque::with_capacity(cap.min(PREALLOCATED)),
        }
    }

    /// Records `at`, dropping the oldest instant when the record is full.
    pub(crate) fn push(&mut self, at: Instant) {
        if self.cap == 0 {
            return;
        }
        if self.items.len() >= self.cap {
            self.items.pop_front();
        }
        self.items.push_back(at);
    }

    /// Drops the instants that are not inside the window of length `within` that ends
    /// at `now`: an instant `t` stays while `now - t < within`.
    pub(crate) fn expire(&mut self, now: Instant, within: Duration) {
        while let Some(&oldest) = self.items.front() {
            if now.saturating_duration_since(oldest) >= within {
                self.items.pop_front();
            } else {
                break;
            }
        }
    }

    /// How many of the recorded instants lie inside the window of length `within`
    /// ending at `now`, without forgetting anything.
    ///
    /// A binary search over the (sorted) record: O(log n), so a large restart
    /// intensity (thousands of restarts per window) costs nothing per restart.
    pub(crate) fn count_within(&self, now: Instant, within: Duration) -> usize {
        let expired = self
            .items
            .partition_point(|&t| now.saturating_duration_since(t) >= within);
        self.items.len() - expired
    }

    /// The number of instants held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the record holds `cap` instants.
    pub(crate) fn is_full(&self) -> bool {
        self.items.len() >= self.cap
    }

    /// Forgets every instant.
    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }
}

/// `at + by`, or an instant as late as the platform can represent when that overflows.
pub(crate) fn saturating_add(at: Instant, by: Duration) -> Instant {
    if let Some(later) = at.checked_add(by) {
        return later;
    }
    // Climb with halving steps: each step size succeeds at most twice, so this ends
    // after about two rounds per bit of `by`.
    let mut result = at;
    let mut step = by;
    while !step.is_zero() {
        match result.checked_add(step) {
            Some(later) => result = later,
            None => step /= 2,
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_keeps_the_newest_cap_instants() {
        let t0 = Instant::now();
        let mut record = RecentInstants::new(3);
        for s in 0..5 {
            record.push(t0 + Duration::from_secs(s));
        }
        assert_eq!(record.len(), 3);
        assert!(record.is_full());
        assert_eq!(record.items.front(), Some(&(t0 + Duration::from_secs(2))));
    }

    #[test]
    fn zero_cap_holds_nothing() {
        let mut record = RecentInstants::new(0);
        record.push(Instant::now());
        assert_eq!(record.len(), 0);
        assert!(record.is_full());
    }

    #[test]
    fn expire_uses_a_half_open_window() {
        let t0 = Instant::now();
        let mut record = RecentInstants::new(4);
        record.push(t0);
        record.push(t0 + Duration::from_secs(1));
        let now = t0 + Duration::from_secs(10);
        assert_eq!(record.count_within(now, Duration::from_secs(10)), 1);
        record.expire(now, Duration::from_secs(10));
        assert_eq!(record.len(), 1, "an instant exactly `within` old has left");
        record.clear();
        assert_eq!(record.len(), 0);
    }

    #[test]
    fn count_within_matches_a_linear_count() {
        let t0 = Instant::now();
        let mut record = RecentInstants::new(100);
        for ms in [0_u64, 0, 5, 9, 10, 10, 11, 40, 99] {
            record.push(t0 + Duration::from_millis(ms));
        }
        for now_ms in [0_u64, 9, 10, 11, 30, 50, 99, 100, 109, 110, 200] {
            let now = t0 + Duration::from_millis(now_ms);
            let within = Duration::from_millis(10);
            let linear = record
                .items
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) < within)
                .count();
            assert_eq!(
                record.count_within(now, within),
                linear,
                "now = {now_ms} ms"
            );
        }
    }

    #[test]
    fn saturating_add_is_exact_when_it_fits_and_never_panics() {
        let t0 = Instant::now();
        assert_eq!(
            saturating_add(t0, Duration::from_millis(1500)),
            t0 + Duration::from_millis(1500)
        );
        assert_eq!(saturating_add(t0, Duration::ZERO), t0);
        let far = saturating_add(t0, Duration::MAX);
        assert!(far > t0 + Duration::from_secs(1_000_000));
    }
}
