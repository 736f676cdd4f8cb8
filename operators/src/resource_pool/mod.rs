//! A bounded async resource pool: connections, clients, sessions — anything costly to
//! create that several elements in flight should share.
//!
//! [`ResourcePool`] hands out at most [`PoolConfig::max_size`] resources made by a
//! [`Manager`]. [`acquire`](ResourcePool::acquire) reuses an idle resource that passes
//! its health check, creates one while the pool is below its bound, and otherwise
//! waits in line (first come, first served) up to
//! [`acquire_timeout`](PoolConfig::acquire_timeout). The [`Pooled`] guard derefs to
//! the resource and gives it back when dropped.
//!
//! The guarantees, each tested in this module:
//!
//! - **Bound**: never more than `max_size` resources alive — idle, checked out, being
//!   created or health-checked, or being dropped. A slot is freed only after the
//!   resource in it has been dropped.
//! - **Fairness**: callers that have to wait are served in the order they arrived.
//! - **Cancellation safety**: dropping an `acquire` future at any `.await` (while
//!   waiting, while creating, while checking) leaks neither a slot nor a place in
//!   line; a resource it had taken out is dropped.
//! - **Health checks**: an idle resource is checked with [`Manager::check`] before it
//!   is handed out; one that fails is dropped and the next one tried, at most
//!   [`max_health_check_attempts`](PoolConfig::max_health_check_attempts) times, then a
//!   fresh one is created.
//! - **Eviction**: resources idle for [`idle_timeout`](PoolConfig::idle_timeout) are
//!   dropped when a checkout finds them or when [`ResourcePool::evict_idle`] runs. The
//!   pool spawns no task: it needs no runtime when it is built and leaves nothing
//!   behind when it is dropped.
//! - **Drain**: [`close`](ResourcePool::close) refuses new checkouts and drops the idle
//!   resources; [`drain`](ResourcePool::drain) also waits until every checked-out
//!   resource came back, and drops it.
//!
//! The guide in `docs/resource-pools.md` shows a pool shared by the futures of an
//! async operator.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir_operators::resource_pool::{Manager, PoolConfig, ResourcePool};
//!
//! /// A pretend connection to a service.
//! #[derive(Debug)]
//! struct Conn {
//!     id: u32,
//! }
//!
//! #[derive(Debug, Default)]
//! struct Connector {
//!     next_id: std::sync::atomic::AtomicU32,
//! }
//!
//! impl Manager for Connector {
//!     type Resource = Conn;
//!     type Error = std::io::Error;
//!
//!     async fn create(&self) -> Result<Conn, std::io::Error> {
//!         let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         Ok(Conn { id })
//!     }
//! }
//!
//! let config = PoolConfig::builder()
//!     .max_size(4)
//!     .acquire_timeout(Duration::from_secs(5))
//!     .build()?;
//! let pool = ResourcePool::new(Connector::default(), config)?;
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let conn = pool.acquire().await?;
//!     assert_eq!(conn.id, 0);
//!     drop(conn); // back to the pool
//!
//!     let again = pool.acquire().await?;
//!     assert_eq!(again.id, 0, "the idle connection is reused");
//!     assert_eq!(pool.status().created, 1);
//!     drop(again);
//!
//!     pool.drain().await;
//!     assert_eq!(pool.status().size, 0);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod manager;
mod pool;
mod pooled;
mod shared;
mod status;
#[cfg(test)]
mod tests;

pub use config::{PoolConfig, PoolConfigBuilder};
pub use error::{ConfigError, PoolError};
pub use manager::{FnManager, Manager};
pub use pool::ResourcePool;
pub use pooled::Pooled;
pub use status::PoolStatus;
