//! governor's clock over tokio's, so quotas follow the timers that enforce them
//! (and paused time in tests).

use std::ops::Add;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;

/// A point in time of tokio's clock, as governor needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TokioInstant(pub(crate) tokio::time::Instant);

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

/// governor's [`Clock`] over `tokio::time::Instant::now()`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}
