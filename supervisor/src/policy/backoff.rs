//! [`BackoffConfig`] and [`Backoff`]: how long to wait before trying again.

use std::time::Duration;

use super::ConfigError;

/// The parameters of an exponential backoff schedule with jitter.
///
/// The *nominal* delay before retry number `attempt` (1 for the first retry) is
/// `initial * multiplier^(attempt - 1)`, capped at `max`; attempt 0 (the first try)
/// has no delay. The delay actually used is drawn uniformly from
/// `[nominal * (1 - jitter), nominal]`: `jitter = 0` is the bare schedule,
/// `jitter = 1` is "full jitter" (anywhere between zero and the nominal delay).
/// Jitter only shortens delays, so the cap holds for the jittered delay too.
///
/// In TOML the durations are integers in milliseconds:
/// `initial_ms`, `max_ms`, `multiplier`, `jitter`.
///
/// # Choosing the values
///
/// `initial` is about how long the typical transient fault lasts; `max` bounds how long
/// an element (or a stage, for restart backoff) can sit waiting, so keep it below the
/// stall timeout. `multiplier = 2` doubles the wait each time; a little `jitter`
/// (0.1–0.3) spreads retries of many stages or processes that failed together.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_supervisor::policy::BackoffConfig;
///
/// let config = BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(1))
///     .multiplier(3.0)
///     .jitter(0.0);
/// assert_eq!(config.nominal(0), Duration::ZERO);
/// assert_eq!(config.nominal(1), Duration::from_millis(100));
/// assert_eq!(config.nominal(2), Duration::from_millis(300));
/// assert_eq!(config.nominal(3), Duration::from_millis(900));
/// assert_eq!(config.nominal(4), Duration::from_secs(1), "capped at max");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct BackoffConfig {
    /// The nominal delay before the first retry (`initial_ms`).
    pub initial: Duration,
    /// The largest delay (`max_ms`); must not be below `initial`.
    pub max: Duration,
    /// The growth factor per attempt; finite and at least 1.0.
    pub multiplier: f64,
    /// The fraction of each delay that is randomised, in `0.0..=1.0`.
    pub jitter: f64,
}

impl BackoffConfig {
    /// A schedule from `initial` to `max`, doubling each attempt, with 10 % jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        BackoffConfig {
            initial,
            max,
            multiplier: 2.0,
            jitter: 0.1,
        }
    }

    /// A schedule of zero delays: try again at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_supervisor::policy::BackoffConfig;
    ///
    /// assert_eq!(BackoffConfig::none().nominal(7), Duration::ZERO);
    /// ```
    pub const fn none() -> Self {
        BackoffConfig {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 0.0,
        }
    }

    /// Sets the growth factor per attempt.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the randomised fraction of each delay.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The nominal (un-jittered) delay before retry number `attempt`; zero for attempt
    /// 0, `initial` for attempt 1, never more than `max`, non-decreasing in `attempt`.
    /// Huge attempts saturate at `max`; this never panics.
    ///
    /// Values that [`validate`](Self::validate) rejects are brought into range first:
    /// a multiplier below 1.0 (or NaN) counts as 1.0, and `initial` above `max`
    /// counts as `max`.
    pub fn nominal(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let max = nanos(self.max);
        let initial = nanos(self.initial).min(max);
        let multiplier = sane_multiplier(self.multiplier);
        if attempt == 1 || initial == 0 || multiplier == 1.0 {
            return Duration::from_nanos(initial);
        }
        let factor = multiplier.powf(f64::from(attempt - 1));
        let grown = initial as f64 * factor;
        let nominal = if grown.is_nan() || grown >= max as f64 {
            max
        } else {
            // `as` truncates; rounding can only have lost less than one ulp, so
            // clamping to `initial` keeps the schedule non-decreasing.
            (grown as u64).clamp(initial, max)
        };
        Duration::from_nanos(nominal)
    }

    /// Checks the schedule.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with key `multiplier` when it is below 1.0 or not
    /// finite, `jitter` when it is outside `0.0..=1.0`, and `initial_ms` when `initial`
    /// exceeds `max`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_supervisor::policy::BackoffConfig;
    ///
    /// let config = BackoffConfig::default().multiplier(0.5);
    /// assert_eq!(config.validate().unwrap_err().to_string(), "multiplier: must be >= 1.0");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(ConfigError::invalid("multiplier", "must be >= 1.0"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::invalid(
                "jitter",
                "must be between 0.0 and 1.0 (the fraction of each delay that is random)",
            ));
        }
        if self.initial > self.max {
            return Err(ConfigError::invalid(
                "initial_ms",
                format!(
                    "must not exceed max_ms ({} ms > {} ms)",
                    self.initial.as_millis(),
                    self.max.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

impl Default for BackoffConfig {
    /// 50 ms doubling up to 5 s, 10 % jitter.
    fn default() -> Self {
        BackoffConfig::new(Duration::from_millis(50), Duration::from_secs(5))
    }
}

/// A backoff schedule with its own deterministic jitter source.
///
/// The jitter comes from a splitmix64 generator seeded by the caller, so the same
/// config and seed always give the same delays. Give each stage its own seed (for
/// example the pipeline seed mixed with the stage index) so that stages that failed
/// together do not retry in lockstep.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_supervisor::policy::{Backoff, BackoffConfig};
///
/// let config = BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(10));
/// let mut backoff = Backoff::new(config, 42);
/// let first = backoff.delay(1);
/// assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(90));
///
/// let mut again = Backoff::new(config, 42);
/// assert_eq!(again.delay(1), first, "same seed, same delays");
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    rng: SplitMix64,
}

impl Backoff {
    /// A schedule following `config`, with jitter drawn from a generator seeded with
    /// `seed`.
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Backoff {
            config,
            rng: SplitMix64(seed),
        }
    }

    /// A schedule of zero delays.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_supervisor::policy::Backoff;
    ///
    /// assert_eq!(Backoff::none().delay(u32::MAX), Duration::ZERO);
    /// ```
    pub fn none() -> Self {
        Backoff::new(BackoffConfig::none(), 0)
    }

    /// The delay to wait before retry number `attempt`: the
    /// [nominal](BackoffConfig::nominal) delay shortened by a random fraction of at
    /// most `jitter`. Zero for attempt 0.
    ///
    /// For element retries pass the number of failed tries so far (1 after the first
    /// failure). For restarts pass the number of earlier restarts in the intensity
    /// window, so the first restart after a quiet period is immediate.
    ///
    /// Never panics: huge attempts saturate at `max`, and a jitter outside
    /// `0.0..=1.0` is clamped into it (NaN counts as 0).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let nominal = self.config.nominal(attempt);
        let jitter = sane_jitter(self.config.jitter);
        if nominal.is_zero() || jitter == 0.0 {
            return nominal;
        }
        let nominal = nanos(nominal);
        let cut = (nominal as f64 * jitter * self.rng.next_unit()) as u64;
        Duration::from_nanos(nominal - cut.min(nominal))
    }

    /// The nominal (un-jittered) delay for `attempt`; see [`BackoffConfig::nominal`].
    pub fn nominal(&self, attempt: u32) -> Duration {
        self.config.nominal(attempt)
    }

    /// The schedule's parameters.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }
}

/// `d` in nanoseconds, saturating at `u64::MAX` (about 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn sane_multiplier(multiplier: f64) -> f64 {
    if multiplier >= 1.0 { multiplier } else { 1.0 }
}

fn sane_jitter(jitter: f64) -> f64 {
    if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    }
}

/// The splitmix64 generator: tiny, fast, and good enough to spread retries.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `[0, 1)` with 53 random bits.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn default_schedule() {
        let config = BackoffConfig::default();
        assert!(config.validate().is_ok());
        let nominal: Vec<u128> = (0..10).map(|a| config.nominal(a).as_millis()).collect();
        assert_eq!(nominal, [0, 50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn huge_attempts_saturate() {
        let config = BackoffConfig::new(Duration::from_millis(1), Duration::MAX);
        assert_eq!(config.nominal(u32::MAX), Duration::from_nanos(u64::MAX));
        let mut backoff = Backoff::new(config.jitter(1.0), 7);
        assert!(backoff.delay(u32::MAX) <= Duration::from_nanos(u64::MAX));
        let tiny_growth = BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(2))
            .multiplier(1.000_000_1);
        assert_eq!(tiny_growth.nominal(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn multiplier_one_is_a_constant_delay() {
        let config = BackoffConfig::new(Duration::from_millis(70), Duration::from_secs(1))
            .multiplier(1.0)
            .jitter(0.0);
        let mut backoff = Backoff::new(config, 1);
        for attempt in 1..50 {
            assert_eq!(backoff.delay(attempt), Duration::from_millis(70));
        }
    }

    #[test]
    fn out_of_range_values_are_rejected_and_tolerated() {
        let base = BackoffConfig::default();
        for bad in [0.99, f64::NAN, f64::INFINITY, -1.0] {
            let err = base.multiplier(bad).validate().unwrap_err();
            assert_eq!(err.key(), Some("multiplier"));
            let _ = Backoff::new(base.multiplier(bad), 3).delay(9);
        }
        for bad in [-0.1, 1.01, f64::NAN] {
            let err = base.jitter(bad).validate().unwrap_err();
            assert_eq!(err.key(), Some("jitter"));
            let delay = Backoff::new(base.jitter(bad), 3).delay(1);
            assert!(delay <= base.initial);
        }
        let inverted = BackoffConfig::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(
            inverted.validate().unwrap_err().to_string(),
            "initial_ms: must not exceed max_ms (2000 ms > 1000 ms)"
        );
        assert_eq!(inverted.nominal(1), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_stays_between_zero_and_nominal() {
        let config =
            BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(1)).jitter(1.0);
        let mut backoff = Backoff::new(config, 99);
        let delays: Vec<Duration> = (0..1000).map(|_| backoff.delay(1)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(100)));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(10)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(90)));
    }

    fn config_strategy() -> impl Strategy<Value = BackoffConfig> {
        (
            0u64..10_000_000_000,
            0u64..100_000_000_000,
            1.0f64..10.0,
            0.0f64..=1.0,
        )
            .prop_map(|(initial, extra, multiplier, jitter)| {
                BackoffConfig::new(
                    Duration::from_nanos(initial),
                    Duration::from_nanos(initial + extra),
                )
                .multiplier(multiplier)
                .jitter(jitter)
            })
    }

    proptest! {
        /// Nominal delays start at `initial`, never decrease and never pass `max`.
        #[test]
        fn nominal_is_monotone_and_capped(config in config_strategy()) {
            prop_assert_eq!(config.nominal(1), config.initial);
            let mut previous = Duration::ZERO;
            for attempt in (0..80).chain([1_000, 100_000, u32::MAX - 1, u32::MAX]) {
                let nominal = config.nominal(attempt);
                prop_assert!(nominal >= previous, "attempt {}: {:?} < {:?}", attempt, nominal, previous);
                prop_assert!(nominal <= config.max);
                previous = nominal;
            }
        }

        /// Each delay lies in `[nominal * (1 - jitter), nominal]`.
        #[test]
        fn delays_stay_within_the_jitter_band(
            config in config_strategy(),
            seed in any::<u64>(),
            attempts in proptest::collection::vec(0u32..100, 1..50),
        ) {
            let mut backoff = Backoff::new(config, seed);
            for attempt in attempts {
                let nominal = backoff.nominal(attempt);
                let delay = backoff.delay(attempt);
                prop_assert!(delay <= nominal);
                let floor = nominal.as_nanos() as f64 * (1.0 - config.jitter);
                // One nanosecond of slack for float rounding.
                prop_assert!(delay.as_nanos() as f64 + 1.0 >= floor,
                    "attempt {}: {:?} below {} ns", attempt, delay, floor);
            }
        }

        /// The same config and seed give the same sequence of delays.
        #[test]
        fn same_seed_same_sequence(
            config in config_strategy(),
            seed in any::<u64>(),
            attempts in proptest::collection::vec(any::<u32>(), 1..50),
        ) {
            let mut a = Backoff::new(config, seed);
            let mut b = Backoff::new(config, seed);
            for attempt in attempts {
                prop_assert_eq!(a.delay(attempt), b.delay(attempt));
            }
        }
    }
}
