//! [`RestartIntensity`] and its tracker [`IntensityWindow`]: how many restarts are
//! allowed before a failure escalates.

use std::time::{Duration, Instant};

use super::ConfigError;
use super::instants::RecentInstants;

/// At most `max_restarts` restarts of a stage within any window of length `within`;
/// the next restart request escalates and fails the pipeline.
///
/// This is Erlang/OTP's restart intensity and period. It stops a stage that crashes
/// on every element from restarting forever.
///
/// # Choosing the values
///
/// `max_restarts / within` is the highest sustained crash rate you accept as "bad
/// luck". Size `within` to cover a few restart backoff delays, so that a crash loop
/// slowed down by backoff still trips it, and `max_restarts` to the number of
/// independent faults you expect in that time. `max_restarts = 0` forbids restarts:
/// every restart request escalates. The default is 10 restarts within 60 s.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_supervisor::policy::RestartIntensity;
///
/// let intensity = RestartIntensity::new(3, Duration::from_secs(5));
/// assert_eq!(intensity.max_restarts, 3);
/// assert!(intensity.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RestartIntensity {
    /// Restarts allowed within one window.
    pub max_restarts: u32,
    /// The length of the sliding window (`within_ms` in TOML).
    pub within: Duration,
}

impl RestartIntensity {
    /// At most `max_restarts` restarts within any window of length `within`.
    pub const fn new(max_restarts: u32, within: Duration) -> Self {
        RestartIntensity {
            max_restarts,
            within,
        }
    }

    /// Checks that the window has a length.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with key `within_ms` when `within` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_supervisor::policy::RestartIntensity;
    ///
    /// let err = RestartIntensity::new(3, Duration::ZERO).validate().unwrap_err();
    /// assert_eq!(err.to_string(), "within_ms: must be greater than 0");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.within.is_zero() {
            return Err(ConfigError::invalid("within_ms", "must be greater than 0"));
        }
        Ok(())
    }
}

impl Default for RestartIntensity {
    fn default() -> Self {
        RestartIntensity::new(10, Duration::from_secs(60))
    }
}

/// Tracks the restarts of one stage and decides whether another one is allowed under
/// its [`RestartIntensity`].
///
/// Every method takes the current time as an argument; the tracker never reads the
/// clock, so it works with virtual time and is deterministic in tests. Pass instants
/// in non-decreasing order. Memory is bounded: at most `max_restarts` instants are
/// kept.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use weir_supervisor::policy::{IntensityWindow, RestartIntensity};
///
/// let t0 = Instant::now();
/// let secs = |s| t0 + Duration::from_secs(s);
/// let mut window = IntensityWindow::new(RestartIntensity::new(2, Duration::from_secs(10)));
/// assert!(window.allow(secs(0)));
/// assert!(window.allow(secs(1)));
/// assert!(!window.allow(secs(2)), "a third restart within 10 s escalates");
/// assert!(window.allow(secs(10)), "the restart at 0 s has left the window");
/// ```
#[derive(Debug, Clone)]
pub struct IntensityWindow {
    intensity: RestartIntensity,
    restarts: RecentInstants,
}

impl IntensityWindow {
    /// A tracker with no restarts recorded.
    pub fn new(intensity: RestartIntensity) -> Self {
        IntensityWindow {
            intensity,
            restarts: RecentInstants::new(intensity.max_restarts),
        }
    }

    /// Asks for a restart at `now`.
    ///
    /// Returns true, and records the restart, when fewer than `max_restarts` restarts
    /// happened in the window `(now - within, now]`. Returns false, recording nothing,
    /// when the intensity is used up: the failure must escalate.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use weir_supervisor::policy::{IntensityWindow, RestartIntensity};
    ///
    /// let mut window = IntensityWindow::new(RestartIntensity::new(0, Duration::from_secs(1)));
    /// assert!(!window.allow(Instant::now()), "no restarts allowed at all");
    /// ```
    pub fn allow(&mut self, now: Instant) -> bool {
        self.restarts.expire(now, self.intensity.within);
        if self.restarts.is_full() {
            return false;
        }
        self.restarts.push(now);
        true
    }

    /// The number of restarts recorded in the window ending at `now`.
    ///
    /// Right after a successful [`allow`](Self::allow) this is at least 1; use
    /// `restarts(now) - 1` as the attempt number for the restart backoff so that the
    /// first restart in a quiet window is immediate (see
    /// [`Backoff::delay`](super::Backoff::delay)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use weir_supervisor::policy::{IntensityWindow, RestartIntensity};
    ///
    /// let t0 = Instant::now();
    /// let mut window = IntensityWindow::new(RestartIntensity::new(5, Duration::from_secs(10)));
    /// window.allow(t0);
    /// window.allow(t0 + Duration::from_secs(4));
    /// assert_eq!(window.restarts(t0 + Duration::from_secs(5)), 2);
    /// assert_eq!(window.restarts(t0 + Duration::from_secs(12)), 1);
    /// ```
    pub fn restarts(&self, now: Instant) -> u32 {
        let count = self.restarts.count_within(now, self.intensity.within);
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// The intensity this tracker enforces.
    pub fn intensity(&self) -> RestartIntensity {
        self.intensity
    }

    /// Forgets every recorded restart.
    pub fn reset(&mut self) {
        self.restarts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn exactly_max_restarts_fit_in_one_window() {
        let t0 = Instant::now();
        let mut window = IntensityWindow::new(RestartIntensity::new(3, Duration::from_secs(1)));
        let allowed = (0..10).filter(|i| window.allow(ms(t0, i * 10))).count();
        assert_eq!(allowed, 3);
        assert_eq!(window.restarts(ms(t0, 100)), 3);
    }

    #[test]
    fn window_slides() {
        let t0 = Instant::now();
        let mut window = IntensityWindow::new(RestartIntensity::new(2, Duration::from_secs(1)));
        assert!(window.allow(ms(t0, 0)));
        assert!(window.allow(ms(t0, 500)));
        assert!(!window.allow(ms(t0, 999)));
        assert!(
            window.allow(ms(t0, 1000)),
            "the restart at 0 ms left at 1000 ms"
        );
        assert!(!window.allow(ms(t0, 1499)));
        assert!(window.allow(ms(t0, 1500)));
    }

    #[test]
    fn a_refused_restart_is_not_recorded() {
        let t0 = Instant::now();
        let mut window = IntensityWindow::new(RestartIntensity::new(1, Duration::from_secs(1)));
        assert!(window.allow(ms(t0, 0)));
        for i in 1..100 {
            assert!(!window.allow(ms(t0, i)));
        }
        assert!(window.allow(ms(t0, 1000)));
    }

    #[test]
    fn reset_forgets() {
        let t0 = Instant::now();
        let mut window = IntensityWindow::new(RestartIntensity::new(1, Duration::from_secs(60)));
        assert!(window.allow(t0));
        window.reset();
        assert_eq!(window.restarts(t0), 0);
        assert!(window.allow(t0));
        assert_eq!(
            window.intensity(),
            RestartIntensity::new(1, Duration::from_secs(60))
        );
    }

    #[test]
    fn defaults_and_validation() {
        let intensity = RestartIntensity::default();
        assert_eq!(
            intensity,
            RestartIntensity::new(10, Duration::from_secs(60))
        );
        assert!(intensity.validate().is_ok());
        assert!(
            RestartIntensity::new(0, Duration::from_millis(1))
                .validate()
                .is_ok()
        );
    }

    proptest! {
        /// Whatever the request times, the allowed restarts never exceed max_restarts
        /// in any window, memory stays bounded, and a request is refused only when the
        /// window is really full.
        #[test]
        fn never_more_than_max_restarts_in_any_window(
            max_restarts in 0u32..6,
            within_ms in 1u64..500,
            steps in proptest::collection::vec(0u64..200, 0..200),
        ) {
            let t0 = Instant::now();
            let within = Duration::from_millis(within_ms);
            let mut window = IntensityWindow::new(RestartIntensity::new(max_restarts, within));
            let mut allowed: Vec<Instant> = Vec::new();
            let mut now = t0;
            for step in steps {
                now += Duration::from_millis(step);
                let in_window = allowed
                    .iter()
                    .filter(|&&t| now.duration_since(t) < within)
                    .count();
                let ok = window.allow(now);
                prop_assert_eq!(ok, in_window < max_restarts as usize);
                if ok {
                    allowed.push(now);
                }
                prop_assert!(window.restarts.len() <= max_restarts as usize);
                prop_assert_eq!(
                    window.restarts(now) as usize,
                    in_window + usize::from(ok)
                );
            }
        }
    }
}
