//! [`TokioClock`]: governor's clock, driven by tokio's.
//!
//! governor's default clock reads the system's monotonic clock, which a paused
//! tokio runtime does not move. weir's stages wait on tokio timers, so the rate
//! limiter must read the same clock as the timers: otherwise a stage would wake
//! when tokio says the wait is over and be told by governor to wait again. Under
//! `tokio::time::pause()` (or a runtime built with `start_paused`) this clock is
//! virtual, which is what makes rate tests exact and instant. Public so that other
//! crates' rate limiters (the TCP source's per-connection quotas in `weir-net`)
//! read the same clock.

use std::ops::Add;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;

/// A point in time of tokio's clock, as governor needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokioInstant(
    /// The instant on tokio's clock.
    pub tokio::time::Instant,
);

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, other: Nanos) -> TokioInstant {
        TokioInstant(self.0 + std::time::Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_duration_since(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        let duration = std::time::Duration::from(duration);
        TokioInstant(self.0.checked_sub(duration).unwrap_or(self.0))
    }
}

/// governor's [`Clock`] over `tokio::time::Instant::now()`: the clock of the
/// arbiter the stage runs on, virtual under paused time.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use governor::{Quota, RateLimiter};

    use super::*;

    /// The limiter follows tokio's paused clock: it refuses until tokio time has
    /// advanced by one period, and not a moment earlier.
    #[tokio::test(start_paused = true)]
    async fn governor_follows_paused_tokio_time() {
        let quota = Quota::with_period(Duration::from_millis(10))
            .unwrap()
            .allow_burst(NonZeroU32::new(2).unwrap());
        let limiter = RateLimiter::direct_with_clock(quota, TokioClock);
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_ok());
        let refused = limiter.check().unwrap_err();
        assert_eq!(
            refused.wait_time_from(TokioClock.now()),
            Duration::from_millis(10)
        );
        tokio::time::advance(Duration::from_millis(9)).await;
        assert!(limiter.check().is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err());
    }

    #[test]
    fn reference_arithmetic_saturates() {
        let now = TokioInstant(tokio::time::Instant::now());
        let later = now + Nanos::from(Duration::from_millis(5));
        assert_eq!(
            later.duration_since(now),
            Nanos::from(Duration::from_millis(5))
        );
        assert_eq!(now.duration_since(later), Nanos::from(Duration::ZERO));
        assert_eq!(
            later.saturating_sub(Nanos::from(Duration::from_millis(5))),
            now
        );
    }
}
