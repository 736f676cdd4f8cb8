//! [`CircuitBreaker`]: stop feeding a stage that keeps failing, then probe it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::instants::{RecentInstants, saturating_add};

/// When a closed breaker opens.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_supervisor::policy::Trip;
///
/// // Five failures in a row.
/// let consecutive = Trip::Consecutive(5);
/// // Ten failures within a minute, once at least twenty calls were seen in that minute.
/// let rate = Trip::Rate { failures: 10, within: Duration::from_secs(60), min_calls: 20 };
/// assert_ne!(consecutive, rate);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trip {
    /// After this many failures in a row (a success resets the count). Simple and
    /// right for a stage whose calls either mostly work or all fail.
    Consecutive(u32),
    /// After `failures` failures within a sliding window of length `within`, provided
    /// at least `min_calls` calls (failures included) ended in that window. Right for a
    /// busy stage where a few scattered failures are normal; `min_calls` keeps a quiet
    /// stage from tripping on a handful of calls.
    ///
    /// Memory is bounded by `failures + min_calls` instants.
    Rate {
        /// Failures within the window that trip the breaker.
        failures: u32,
        /// The window length (`within_ms` in TOML).
        within: Duration,
        /// Calls that must have ended in the window before it can trip.
        min_calls: u32,
    },
}

/// What a stage does with its input while its breaker is open.
///
/// In TOML: `when_open = "backpressure"` or `"dead_letter"`.
///
/// # Examples
///
/// ```
/// use weir_supervisor::policy::OpenBehavior;
///
/// assert_eq!(OpenBehavior::default(), OpenBehavior::Backpressure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenBehavior {
    /// The stage asks upstream for nothing until the breaker is half-open; elements
    /// wait upstream, nothing is lost, and the pipeline slows down to the probe rate.
    /// The default.
    #[default]
    Backpressure,
    /// Elements arriving while the breaker is open (or while a half-open probe is in
    /// flight) are diverted to the dead-letter queue with a "breaker open" error, so
    /// the rest of the pipeline keeps flowing.
    DeadLetter,
}

/// The settings of a [`CircuitBreaker`].
///
/// # Choosing the values
///
/// `cooldown` is how long a failing dependency gets to recover before a probe; a few
/// seconds to a minute. `probes` successes in a row close the breaker again: 1 is the
/// usual choice, more when one lucky call proves little.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_supervisor::policy::{BreakerConfig, OpenBehavior, Trip};
///
/// let config = BreakerConfig::new(Trip::Consecutive(3), Duration::from_secs(5))
///     .probes(2)
///     .when_open(OpenBehavior::DeadLetter);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct BreakerConfig {
    /// When the closed breaker opens.
    pub trip: Trip,
    /// How long the breaker stays open before it lets a probe through
    /// (`cooldown_ms` in TOML).
    pub cooldown: Duration,
    /// Successful probes in a row that close a half-open breaker; at least 1.
    pub probes: u32,
    /// What the stage does with its input while the breaker is open.
    pub when_open: OpenBehavior,
}

impl BreakerConfig {
    /// A breaker that trips on `trip`, stays open for `cooldown`, closes after one
    /// successful probe and backpressures while open.
    pub const fn new(trip: Trip, cooldown: Duration) -> Self {
        BreakerConfig {
            trip,
            cooldown,
            probes: 1,
            when_open: OpenBehavior::Backpressure,
        }
    }

    /// Sets the number of successful probes that close the breaker.
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// Sets what the stage does with its input while the breaker is open.
    pub fn when_open(mut self, when_open: OpenBehavior) -> Self {
        self.when_open = when_open;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with key `trip.consecutive`, `trip.rate.failures` or
    /// `probes` when zero, `trip.rate.within_ms` or `cooldown_ms` when zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_supervisor::policy::{BreakerConfig, Trip};
    ///
    /// let err = BreakerConfig::new(Trip::Consecutive(0), Duration::from_secs(1))
    ///     .validate()
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "trip.consecutive: must be at least 1");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.trip {
            Trip::Consecutive(0) => {
                return Err(ConfigError::invalid(
                    "trip.consecutive",
                    "must be at least 1",
                ));
            }
            Trip::Rate { failures: 0, .. } => {
                return Err(ConfigError::invalid(
                    "trip.rate.failures",
                    "must be at least 1",
                ));
            }
            Trip::Rate { within, .. } if within.is_zero() => {
                return Err(ConfigError::invalid(
                    "trip.rate.within_ms",
                    "must be greater than 0",
                ));
            }
            _ => {}
        }
        if self.cooldown.is_zero() {
            return Err(ConfigError::invalid(
                "cooldown_ms",
                "must be greater than 0",
            ));
        }
        if self.probes == 0 {
            return Err(ConfigError::invalid("probes", "must be at least 1"));
        }
        Ok(())
    }
}

impl Default for BreakerConfig {
    /// Five consecutive failures, ten seconds of cooldown, one probe, backpressure.
    fn default() -> Self {
        BreakerConfig::new(Trip::Consecutive(5), Duration::from_secs(10))
    }
}

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls are rejected until `until`.
    Open {
        /// When the cooldown ends and a probe may go through.
        until: Instant,
    },
    /// One probe call at a time may go through; its outcome closes or re-opens the
    /// breaker.
    HalfOpen,
}

/// The answer of [`CircuitBreaker::permits`] for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permit {
    /// The breaker is closed: make the call and report its outcome.
    Allow,
    /// The breaker is half-open and this call is its probe: make it and report its
    /// outcome. Other calls are rejected until the probe's outcome is reported.
    Probe {
        /// True when this very `permits` call moved the breaker from open to
        /// half-open: publish [`Transition::HalfOpened`].
        half_opened: bool,
    },
    /// Do not make the call. Nothing will change before `retry_at` unless an outcome
    /// is reported, so set one timer for `retry_at` instead of polling; meanwhile
    /// backpressure or divert the element as [`OpenBehavior`] says.
    Reject {
        /// The earliest instant at which `permits` may answer differently.
        retry_at: Instant,
    },
}

/// A change of [`BreakerState`], for the runtime to publish as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Closed or half-open → open.
    Opened,
    /// Open → half-open: the cooldown is over.
    HalfOpened,
    /// Half-open → closed: enough probes succeeded.
    Closed,
}

/// A per-stage circuit breaker: closed → open after failures → half-open after a
/// cooldown → closed after successful probes (or open again after a failed one).
///
/// It is a plain state machine. It never reads the clock: every method takes the
/// current time, so it runs on virtual time and is deterministic in tests. Every
/// state change is reported exactly once, by the method call that made it
/// ([`poll`](Self::poll), [`permits`](Self::permits), [`on_success`](Self::on_success)
/// or [`on_failure`](Self::on_failure)).
///
/// Report the outcome of every call that got [`Permit::Allow`] or [`Permit::Probe`],
/// once. Outcomes reported while open are ignored (they belong to calls permitted
/// before the breaker opened).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use weir_supervisor::policy::{
///     BreakerConfig, BreakerState, CircuitBreaker, Permit, Transition, Trip,
/// };
///
/// let t0 = Instant::now();
/// let cooldown = Duration::from_secs(5);
/// let mut breaker = CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(2), cooldown));
///
/// assert_eq!(breaker.permits(t0), Permit::Allow);
/// assert_eq!(breaker.on_failure(t0), None);
/// assert_eq!(breaker.on_failure(t0), Some(Transition::Opened));
/// assert_eq!(breaker.permits(t0), Permit::Reject { retry_at: t0 + cooldown });
///
/// // One timer later: the cooldown is over, one probe goes through.
/// assert_eq!(breaker.poll(t0 + cooldown), Some(Transition::HalfOpened));
/// assert_eq!(breaker.permits(t0 + cooldown), Permit::Probe { half_opened: false });
/// assert_eq!(breaker.on_success(t0 + cooldown), Some(Transition::Closed));
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Failures in a row while closed (`Trip::Consecutive`).
    consecutive: u32,
    /// The most recent failures while closed (`Trip::Rate`), at most `failures`.
    failures: RecentInstants,
    /// The most recent calls while closed (`Trip::Rate`), at most `min_calls`.
    calls: RecentInstants,
    /// Successful probes since the breaker went half-open.
    successes: u32,
    /// When the probe now in flight was permitted.
    probe_since: Option<Instant>,
}

impl CircuitBreaker {
    /// A closed breaker.
    ///
    /// Values that [`BreakerConfig::validate`] rejects are tolerated: a zero count
    /// (trip threshold, probes) counts as 1.
    pub fn new(config: BreakerConfig) -> Self {
        let (failure_cap, call_cap) = match config.trip {
            Trip::Consecutive(_) => (0, 0),
            Trip::Rate {
                failures,
                min_calls,
                ..
            } => (failures.max(1), min_calls),
        };
        CircuitBreaker {
            config,
            state: BreakerState::Closed,
            consecutive: 0,
            failures: RecentInstants::new(failure_cap),
            calls: RecentInstants::new(call_cap),
            successes: 0,
            probe_since: None,
        }
    }

    /// The current state, as of the last call.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The breaker's settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Applies the passage of time: an open breaker whose cooldown is over at `now`
    /// becomes half-open. Call it when the timer set from
    /// [`Permit::Reject::retry_at`](Permit::Reject) fires.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use weir_supervisor::policy::{BreakerConfig, CircuitBreaker, Transition, Trip};
    ///
    /// let t0 = Instant::now();
    /// let mut breaker =
    ///     CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(1), Duration::from_secs(1)));
    /// breaker.on_failure(t0);
    /// assert_eq!(breaker.poll(t0 + Duration::from_millis(999)), None);
    /// assert_eq!(breaker.poll(t0 + Duration::from_secs(1)), Some(Transition::HalfOpened));
    /// assert_eq!(breaker.poll(t0 + Duration::from_secs(2)), None, "reported once");
    /// ```
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                self.successes = 0;
                self.probe_since = None;
                Some(Transition::HalfOpened)
            }
            _ => None,
        }
    }

    /// May a call start at `now`?
    ///
    /// Closed: [`Permit::Allow`]. Open: [`Permit::Reject`] until the cooldown is over.
    /// Half-open: [`Permit::Probe`] when no probe is in flight, else
    /// [`Permit::Reject`]. A probe whose outcome was not reported within one
    /// `cooldown` is presumed lost, and another probe is permitted.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use weir_supervisor::policy::{BreakerConfig, CircuitBreaker, Permit, Trip};
    ///
    /// let t0 = Instant::now();
    /// let cooldown = Duration::from_secs(1);
    /// let mut breaker = CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(1), cooldown));
    /// breaker.on_failure(t0);
    /// let later = t0 + cooldown;
    /// assert_eq!(breaker.permits(later), Permit::Probe { half_opened: true });
    /// assert_eq!(breaker.permits(later), Permit::Reject { retry_at: later + cooldown });
    /// ```
    pub fn permits(&mut self, now: Instant) -> Permit {
        let half_opened = self.poll(now).is_some();
        match self.state {
            BreakerState::Closed => Permit::Allow,
            BreakerState::Open { until } => Permit::Reject { retry_at: until },
            BreakerState::HalfOpen => {
                if let Some(since) = self.probe_since {
                    let expires = saturating_add(since, self.config.cooldown);
                    if now < expires {
                        return Permit::Reject { retry_at: expires };
                    }
                }
                self.probe_since = Some(now);
                Permit::Probe { half_opened }
            }
        }
    }

    /// Reports that a permitted call succeeded at `now`.
    ///
    /// Closed: resets the consecutive-failure count. Half-open: counts a successful
    /// probe and returns [`Transition::Closed`] once `probes` succeeded. Open: ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use weir_supervisor::policy::{BreakerConfig, CircuitBreaker, Transition, Trip};
    ///
    /// let t0 = Instant::now();
    /// let mut breaker =
    ///     CircuitBreaker::new(BreakerConfig::new(Trip::Consecutive(2), Duration::from_secs(1)));
    /// breaker.on_failure(t0);
    /// assert_eq!(breaker.on_success(t0), None);
    /// assert_eq!(breaker.on_failure(t0), None, "the success reset the count");
    /// ```
    pub fn on_success(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            BreakerState::Closed => {
                self.consecutive = 0;
                self.calls.push(now);
                None
            }
            BreakerState::Open { .. } => None,
            BreakerState::HalfOpen => {
                self.probe_since = None;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= self.config.probes.max(1) {
                    self.close();
                    Some(Transition::Closed)
                } else {
                    None
                }
            }
        }
    }

    /// Reports that a permitted call failed at `now`.
    ///
    /// Closed: counts the failure and returns [`Transition::Opened`] when it trips the
    /// breaker. Half-open: the probe failed, the breaker opens again for a full
    /// cooldown. Open: ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use weir_supervisor::policy::{BreakerConfig, CircuitBreaker, Transition, Trip};
    ///
    /// let t0 = Instant::now();
    /// let window = Duration::from_secs(10);
    /// let trip = Trip::Rate { failures: 2, within: window, min_calls: 3 };
    /// let mut breaker = CircuitBreaker::new(BreakerConfig::new(trip, Duration::from_secs(1)));
    /// assert_eq!(breaker.on_failure(t0), None);
    /// assert_eq!(breaker.on_failure(t0), None, "two failures, but only two calls");
    /// breaker.on_success(t0);
    /// assert_eq!(breaker.on_failure(t0), Some(Transition::Opened));
    /// ```
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            BreakerState::Closed => {
                let trips = match self.config.trip {
                    Trip::Consecutive(threshold) => {
                        self.consecutive = self.consecutive.saturating_add(1);
                        self.consecutive >= threshold.max(1)
                    }
                    Trip::Rate { within, .. } => {
                        self.failures.push(now);
                        self.calls.push(now);
                        self.failures.expire(now, within);
                        self.calls.expire(now, within);
                        self.failures.is_full() && self.calls.is_full()
                    }
                };
                trips.then(|| self.open(now))
            }
            BreakerState::Open { .. } => None,
            BreakerState::HalfOpen => Some(self.open(now)),
        }
    }

    /// Back to closed with every count cleared, without reporting a transition.
    pub fn reset(&mut self) {
        self.close();
    }

    fn open(&mut self, now: Instant) -> Transition {
        self.clear_counts();
        self.state = BreakerState::Open {
            until: saturating_add(now, self.config.cooldown),
        };
        Transition::Opened
    }

    fn close(&mut self) {
        self.clear_counts();
        self.state = BreakerState::Closed;
    }

    fn clear_counts(&mut self) {
        self.consecutive = 0;
        self.failures.clear();
        self.calls.clear();
        self.successes = 0;
        self.probe_since = None;
    }
}

#[cfg(test)]
mod tests;
