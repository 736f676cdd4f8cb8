//! [`ResourcePool`]: the public handle.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::config::PoolConfig;
use super::error::{ConfigError, PoolError};
use super::manager::{FnManager, Manager};
use super::pooled::Pooled;
use super::shared::{Shared, Wait};
use super::status::PoolStatus;

/// A bounded pool of resources made by a [`Manager`]: see the
/// [module docs](super) for the guarantees.
///
/// Cloning is cheap (an [`Arc`]); every clone is the same pool, so clone it into
/// each future that needs a resource. The pool spawns nothing and needs no runtime to
/// be built; checkouts need a tokio runtime with its time driver when
/// [`acquire_timeout`](PoolConfig::acquire_timeout) is set.
///
/// Idle resources are reused **last in, first out**: the most recently returned
/// resource goes out first. Under a steady load that keeps a small set of resources
/// busy and warm (caches, TCP windows, server-side sessions), and lets the ones the
/// load no longer needs sit at the bottom until
/// [`idle_timeout`](PoolConfig::idle_timeout) drops them — the pool shrinks back
/// after a burst. (First in, first out would rotate through every idle resource and
/// keep all of them alive.)
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::resource_pool::{PoolConfig, PoolError, ResourcePool};
///
/// let config = PoolConfig::builder().max_size(1).acquire_timeout(Duration::from_millis(50)).build()?;
/// let pool = ResourcePool::from_fn(config, || async { Ok::<_, std::io::Error>(String::from("conn")) })?;
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// rt.block_on(async {
///     let held = pool.acquire().await?;
///     // The only resource is out: a second checkout waits, then times out.
///     let err = pool.acquire().await.unwrap_err();
///     assert!(matches!(err, PoolError::Timeout(_)));
///     assert!(matches!(pool.try_acquire().await, Err(PoolError::Exhausted)));
///     drop(held);
///     assert_eq!(*pool.try_acquire().await?, "conn");
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ResourcePool<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> ResourcePool<M> {
    /// A pool of resources made by `manager`. Creates nothing yet: resources are
    /// made on demand by checkouts.
    ///
    /// # Errors
    ///
    /// `config` fails [`PoolConfig::validate`].
    pub fn new(manager: M, config: PoolConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(ResourcePool {
            shared: Arc::new(Shared::new(manager, config)),
        })
    }

    /// Checks out a resource: the most recently returned idle one that passes its
    /// health check, else a new one if the pool is below `max_size`, else — once
    /// every slot is taken — the next one given back, waiting in line behind earlier
    /// callers.
    ///
    /// Cancellation safe: dropping the future at any point gives up its place in
    /// line and frees whatever it had reserved.
    ///
    /// # Errors
    ///
    /// - [`PoolError::Timeout`] when the whole checkout took longer than
    ///   [`acquire_timeout`](PoolConfig::acquire_timeout);
    /// - [`PoolError::Closed`] once the pool is closed or draining (also for callers
    ///   already waiting);
    /// - [`PoolError::Create`] when a new resource was needed and
    ///   [`Manager::create`] failed; its slot is free again.
    ///
    /// # Panics
    ///
    /// With an `acquire_timeout`, outside a tokio runtime with its time driver.
    pub async fn acquire(&self) -> Result<Pooled<M::Resource>, PoolError<M::Error>> {
        self.checkout(Wait::Queue).await
    }

    /// Checks out a resource without waiting for a slot: like
    /// [`acquire`](Self::acquire), but fails at once when every slot is taken (or
    /// others are already waiting for one). It may still wait for a health check or
    /// a create, within [`acquire_timeout`](PoolConfig::acquire_timeout).
    ///
    /// # Errors
    ///
    /// [`PoolError::Exhausted`] when no slot is free, otherwise as
    /// [`acquire`](Self::acquire).
    ///
    /// # Panics
    ///
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(&self) -> Result<Pooled<M::Resource>, PoolError<M::Error>> {
        self.checkout(Wait::No).await
    }

    async fn checkout(&self, wait: Wait) -> Result<Pooled<M::Resource>, PoolError<M::Error>> {
        let checkout = self.shared.checkout(wait);
        let Some(limit) = self.shared.config.acquire_timeout else {
            return checkout.await;
        };
        match tokio::time::timeout(limit, checkout).await {
            Ok(result) => result,
            Err(_elapsed) => {
                self.shared.count_timeout();
                Err(PoolError::Timeout(limit))
            }
        }
    }

    /// Drops every idle resource that has been idle for at least
    /// [`idle_timeout`](PoolConfig::idle_timeout) and returns how many. Checkouts do
    /// this too, as they go; call it from a timer (an `interval` task that holds a
    /// clone) to shrink a pool that sees no checkouts. Does nothing without an
    /// `idle_timeout`.
    pub fn evict_idle(&self) -> usize {
        self.shared.evict_idle()
    }

    /// Closes the pool: checkouts from now on, and those waiting, fail with
    /// [`PoolError::Closed`]; idle resources are dropped now, checked-out ones when
    /// they come back. Does not wait; see [`drain`](Self::drain). Calling it again
    /// does nothing.
    pub fn close(&self) {
        self.shared.close();
    }

    /// [Closes](Self::close) the pool, then waits until every resource is gone:
    /// the checked-out ones given back (and dropped), the ones being created or
    /// checked finished (and dropped). Cancelling the wait leaves the pool closed.
    pub async fn drain(&self) {
        self.shared.drain().await;
    }

    /// Whether [`close`](Self::close) or [`drain`](Self::drain) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// A snapshot of the pool's occupancy and counters.
    pub fn status(&self) -> PoolStatus {
        self.shared.status()
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// The pool's manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }
}

impl<F, Fut, R, E> ResourcePool<FnManager<F>>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send,
    R: Send + 'static,
    E: Send + 'static,
{
    /// A pool whose resources come from `create`, never health-checked and always
    /// recycled: for resources that need no [`Manager`] of their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::resource_pool::{PoolConfig, ResourcePool};
    ///
    /// let pool = ResourcePool::from_fn(PoolConfig::default(), || async {
    ///     Ok::<_, std::io::Error>(Vec::<u8>::with_capacity(4096))
    /// })?;
    /// assert_eq!(pool.status().size, 0); // nothing is created up front
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `config` fails [`PoolConfig::validate`].
    pub fn from_fn(config: PoolConfig, create: F) -> Result<Self, ConfigError> {
        ResourcePool::new(FnManager::new(create), config)
    }
}

impl<M: Manager> Clone for ResourcePool<M> {
    fn clone(&self) -> Self {
        ResourcePool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Manager> fmt::Debug for ResourcePool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourcePool")
            .field("config", &self.shared.config)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
