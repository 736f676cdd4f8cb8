//! [`PoolConfig`]: the bound, the timeouts and the health-check budget of a pool.

use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::ConfigError;

/// How a [`ResourcePool`](super::ResourcePool) sizes itself and how long it waits.
///
/// Build one with [`PoolConfig::builder`] (or start from [`Default`] and set fields);
/// [`ResourcePool::new`](super::ResourcePool::new) rejects a config that fails
/// [`validate`](PoolConfig::validate).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::resource_pool::PoolConfig;
///
/// let config = PoolConfig::builder()
///     .max_size(8)
///     .acquire_timeout(Duration::from_secs(2))
///     .idle_timeout(None) // keep idle resources forever
///     .build()?;
/// assert_eq!(config.max_size, 8);
///
/// let err = PoolConfig::builder().max_size(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_size");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// The most resources alive at once: idle, checked out, being created or
    /// checked. Default 16.
    ///
    /// Choosing it: the number of concurrent calls the service behind the resources
    /// should see (its connection limit divided by the number of processes sharing
    /// it). With an async operator in front, a `concurrency` above `max_size` only
    /// makes the extra futures wait for a resource.
    pub max_size: usize,
    /// How long one [`acquire`](super::ResourcePool::acquire) may take in all —
    /// waiting for a slot, health checks and creating — before it fails with
    /// [`PoolError::Timeout`](super::PoolError::Timeout); `None` waits forever.
    /// Default 30 s. Needs a tokio runtime with its time driver enabled.
    ///
    /// Choosing it: longer than a create takes, shorter than the deadline of the
    /// work the resource is for, so that an overloaded or unreachable service turns
    /// into an error the stage's supervision can act on rather than a stall.
    pub acquire_timeout: Option<Duration>,
    /// How long a resource may stay idle before the pool drops it; `None` keeps idle
    /// resources forever. Default 10 min.
    ///
    /// Choosing it: below the service's own idle cutoff (a server closing quiet
    /// connections after 15 min wants less than that), so the pool drops a
    /// resource before the far end does.
    pub idle_timeout: Option<Duration>,
    /// How many idle resources one checkout health-checks before it gives up on the
    /// idle ones and creates a fresh resource. At least 1; default 3.
    ///
    /// Choosing it: each check costs a round trip when it is a ping; a small number
    /// bounds the latency a checkout spends on stale resources after the service
    /// restarted, while the checkouts that follow keep clearing the rest.
    pub max_health_check_attempts: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 16,
            acquire_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(600)),
            max_health_check_attempts: 3,
        }
    }
}

impl PoolConfig {
    /// The largest `max_size` a pool accepts: the most permits a tokio
    /// [`Semaphore`] holds.
    pub const MAX_SIZE_LIMIT: usize = Semaphore::MAX_PERMITS;

    /// A builder starting from the defaults.
    pub fn builder() -> PoolConfigBuilder {
        PoolConfigBuilder {
            config: PoolConfig::default(),
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad field: `max_size` of 0 or above
    /// [`MAX_SIZE_LIMIT`](Self::MAX_SIZE_LIMIT), a zero `acquire_timeout` or
    /// `idle_timeout` (use `None` for "no limit"), or `max_health_check_attempts`
    /// of 0.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_size == 0 {
            return Err(ConfigError::Zero { field: "max_size" });
        }
        if self.max_size > Self::MAX_SIZE_LIMIT {
            return Err(ConfigError::TooLarge {
                field: "max_size",
                value: self.max_size,
                limit: Self::MAX_SIZE_LIMIT,
            });
        }
        if self.acquire_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroDuration {
                field: "acquire_timeout",
            });
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroDuration {
                field: "idle_timeout",
            });
        }
        if self.max_health_check_attempts == 0 {
            return Err(ConfigError::Zero {
                field: "max_health_check_attempts",
            });
        }
        Ok(())
    }
}

/// Builds a [`PoolConfig`]; [`build`](Self::build) validates it.
#[derive(Debug, Clone)]
#[must_use = "a PoolConfigBuilder does nothing until build is called"]
pub struct PoolConfigBuilder {
    config: PoolConfig,
}

impl PoolConfigBuilder {
    /// Sets [`PoolConfig::max_size`].
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.config.max_size = max_size;
        self
    }

    /// Sets [`PoolConfig::acquire_timeout`]: a `Duration`, or `None` to wait forever.
    pub fn acquire_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.acquire_timeout = timeout.into();
        self
    }

    /// Sets [`PoolConfig::idle_timeout`]: a `Duration`, or `None` to keep idle
    /// resources forever.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.idle_timeout = timeout.into();
        self
    }

    /// Sets [`PoolConfig::max_health_check_attempts`].
    pub fn max_health_check_attempts(mut self, attempts: u32) -> Self {
        self.config.max_health_check_attempts = attempts;
        self
    }

    /// The config, validated.
    ///
    /// # Errors
    ///
    /// The first field that fails [`PoolConfig::validate`].
    pub fn build(self) -> Result<PoolConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
