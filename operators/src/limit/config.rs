//! [`Rate`], [`Throttle`] and their settings; [`ThrottleStats`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use governor::Quota;

/// A sustained rate: `count` elements per `per`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::limit::Rate;
///
/// assert_eq!(Rate::per_second(100).interval(), Duration::from_millis(10));
/// assert_eq!(Rate::new(3, Duration::from_secs(6)).interval(), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per: Duration,
}

impl Rate {
    /// `count` elements per `per`. A zero count or period is reported when the
    /// pipeline is built.
    pub const fn new(count: u32, per: Duration) -> Self {
        Rate { count, per }
    }

    /// `count` elements per second.
    pub const fn per_second(count: u32) -> Self {
        Rate::new(count, Duration::from_secs(1))
    }

    /// `count` elements per minute.
    pub const fn per_minute(count: u32) -> Self {
        Rate::new(count, Duration::from_secs(60))
    }

    /// Elements per [`period`](Self::period).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period the count is per.
    pub fn period(&self) -> Duration {
        self.per
    }

    /// The time between two elements at this rate (zero for an invalid rate).
    pub fn interval(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.per / self.count
        }
    }

    /// Elements per second, as a float (for reports).
    pub fn per_second_f64(&self) -> f64 {
        if self.per.is_zero() {
            f64::INFINITY
        } else {
            f64::from(self.count) / self.per.as_secs_f64()
        }
    }
}

/// What a throttle does with an element that arrives faster than the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThrottleMode {
    /// Delay it until the rate allows it (traffic shaping). Nothing is turned
    /// away; the stage takes no input while it waits, so upstream backpressures.
    #[default]
    Shape,
    /// Turn it away (policing): it fails with
    /// [`ErrorClass::ResourceExhausted`](weir_runtime::ErrorClass::ResourceExhausted)
    /// and the reason, handed to the stage's supervision (dead letters with
    /// [`rejections_to`](super::rejections_to)). Admitted elements are never
    /// delayed.
    Enforce,
}

/// What `throttle_by_key` does with an element of a key it does not track yet
/// when it already tracks `max_keys` keys and none of them is idle.
///
/// A key is *idle* once its quota has fully replenished (no admission for
/// `burst × interval`): forgetting it then loses nothing, because a fresh quota
/// is exactly what it would have. Idle keys are always forgotten first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeysFull {
    /// Give the new key no quota until the least recently admitted key becomes
    /// idle: in [`ThrottleMode::Shape`] the element waits (that long at most), in
    /// [`ThrottleMode::Enforce`] it is turned away with the reason "quota table
    /// full". No key ever exceeds its rate.
    #[default]
    Refuse,
    /// Forget the least recently admitted key at once. The forgotten key starts
    /// again with a full burst if it comes back, so it may exceed its rate by up to
    /// one burst per eviction; evictions are counted in
    /// [`ThrottleStats::evicted`].
    EvictLeastRecent,
}

/// A rate limit for [`LimitExt::throttle`](super::LimitExt::throttle) and
/// [`LimitExt::throttle_by_key`](super::LimitExt::throttle_by_key): a GCRA
/// (token-bucket equivalent) quota from the `governor` crate, read on tokio's
/// clock.
///
/// # Choosing the burst
///
/// The burst is how many elements may pass at once after a quiet period; the
/// first `burst` elements pass without delay, then one per
/// [`interval`](Rate::interval). Over any window of length `w`, at most
/// `burst + w / interval` elements pass. tokio's timers have millisecond
/// resolution, so in real time a shaping throttle faster than 1000 elements per
/// second needs a burst of at least `rate × 1 ms` to reach its rate.
///
/// # Examples
///
/// ```
/// use weir_operators::limit::{KeysFull, Rate, Throttle};
///
/// let shaping = Throttle::shape(Rate::per_second(100)).burst(10);
/// let per_user = Throttle::enforce(Rate::per_minute(60))
///     .burst(5)
///     .max_keys(10_000)
///     .when_keys_full(KeysFull::Refuse);
/// let stats = per_user.stats(); // read it while the pipeline runs
/// assert_eq!(stats.admitted(), 0);
/// # drop(shaping);
/// ```
#[derive(Debug, Clone)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Throttle {
    pub(crate) rate: Rate,
    pub(crate) burst: u32,
    pub(crate) mode: ThrottleMode,
    pub(crate) max_keys: usize,
    pub(crate) when_full: KeysFull,
    pub(crate) stats: ThrottleStats,
}

impl Throttle {
    /// Delays elements to `rate` (see [`ThrottleMode::Shape`]); burst 1.
    pub fn shape(rate: Rate) -> Self {
        Throttle::new(rate, ThrottleMode::Shape)
    }

    /// Turns away elements beyond `rate` (see [`ThrottleMode::Enforce`]); burst 1.
    pub fn enforce(rate: Rate) -> Self {
        Throttle::new(rate, ThrottleMode::Enforce)
    }

    /// A throttle with `mode`; burst 1, at most 10 000 keys, [`KeysFull::Refuse`].
    pub fn new(rate: Rate, mode: ThrottleMode) -> Self {
        Throttle {
            rate,
            burst: 1,
            mode,
            max_keys: 10_000,
            when_full: KeysFull::Refuse,
            stats: ThrottleStats::default(),
        }
    }

    /// How many elements may pass at once (at least 1; see the type's docs).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// For `throttle_by_key`: the most keys tracked at once (at least 1). Each
    /// tracked key costs one small quota state (a few dozen bytes plus the key).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// For `throttle_by_key`: what happens when `max_keys` are tracked and a new
    /// key arrives (see [`KeysFull`]).
    pub fn when_keys_full(mut self, when_full: KeysFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// A handle on the throttle's counters, shared with the stage: keep it to read
    /// them while the pipeline runs or after.
    pub fn stats(&self) -> ThrottleStats {
        self.stats.clone()
    }

    /// The governor quota, or what is wrong with the arguments.
    pub(crate) fn quota(&self) -> Result<Quota, String> {
        let burst = NonZeroU32::new(self.burst)
            .ok_or_else(|| "throttle burst must be at least 1".to_owned())?;
        if self.rate.count == 0 || self.rate.per.is_zero() {
            return Err(format!(
                "throttle rate must be positive, got {} per {:?}",
                self.rate.count, self.rate.per
            ));
        }
        if self.max_keys == 0 {
            return Err("throttle max_keys must be at least 1".to_owned());
        }
        let quota = Quota::with_period(self.rate.interval())
            .ok_or_else(|| format!("throttle rate {:?} is too fast", self.rate))?;
        Ok(quota.allow_burst(burst))
    }
}

/// Counters of a throttle stage, readable while it runs (see [`Throttle::stats`]).
#[derive(Debug, Clone, Default)]
pub struct ThrottleStats(Arc<StatsInner>);

#[derive(Debug, Default)]
pub(crate) struct StatsInner {
    pub(crate) admitted: AtomicU64,
    pub(crate) delayed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) keys: AtomicU64,
    pub(crate) idle_evicted: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) waited_nanos: AtomicU64,
}

impl ThrottleStats {
    pub(crate) fn inner(&self) -> &StatsInner {
        &self.0
    }

    /// Elements let through.
    pub fn admitted(&self) -> u64 {
        self.0.admitted.load(Relaxed)
    }

    /// Times a shaping throttle made an element wait.
    pub fn delayed(&self) -> u64 {
        self.0.delayed.load(Relaxed)
    }

    /// Total time a shaping throttle spent waiting for the rate (tokio's clock).
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.0.waited_nanos.load(Relaxed))
    }

    /// Elements an enforcing throttle turned away (each handed to the stage's
    /// supervision; a retried element counts once per refusal).
    pub fn rejected(&self) -> u64 {
        self.0.rejected.load(Relaxed)
    }

    /// Keys tracked now (`throttle_by_key`; 1 for `throttle` once it started).
    pub fn keys(&self) -> u64 {
        self.0.keys.load(Relaxed)
    }

    /// Idle keys forgotten to make room (lossless).
    pub fn idle_evicted(&self) -> u64 {
        self.0.idle_evicted.load(Relaxed)
    }

    /// Keys forgotten before they were idle ([`KeysFull::EvictLeastRecent`]).
    pub fn evicted(&self) -> u64 {
        self.0.evicted.load(Relaxed)
    }
}
