//! [`PoolStatus`]: a snapshot of a pool's occupancy and counters.

/// A snapshot of a [`ResourcePool`](super::ResourcePool), from
/// [`status`](super::ResourcePool::status).
///
/// The gauges (`size`, `idle`, `in_use`) are read together under the pool's lock, so
/// `idle + in_use <= size <= max_size` always holds in one snapshot; the difference
/// `size - idle - in_use` is resources being created, health-checked or dropped.
/// The counters only grow, from the pool's creation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// Resources alive: idle, checked out, being created, checked or dropped.
    pub size: usize,
    /// Resources waiting in the pool for a checkout.
    pub idle: usize,
    /// Resources checked out as a [`Pooled`](super::Pooled).
    pub in_use: usize,
    /// Checkouts waiting for a slot because `in_use` reached `max_size`.
    pub waiting: usize,
    /// The configured bound, [`PoolConfig::max_size`](super::PoolConfig::max_size).
    pub max_size: usize,
    /// Whether [`close`](super::ResourcePool::close) or
    /// [`drain`](super::ResourcePool::drain) was called.
    pub closed: bool,
    /// Resources created successfully.
    pub created: u64,
    /// Calls to [`Manager::create`](super::Manager::create) that failed.
    pub create_failures: u64,
    /// Idle resources that failed [`Manager::check`](super::Manager::check) and were
    /// dropped.
    pub health_check_failures: u64,
    /// Idle resources the pool dropped: idle for `idle_timeout`, or dropped to make
    /// room for a fresh resource after a checkout used up its health checks.
    pub evicted: u64,
    /// Resources that left the pool on the way back: [`Pooled::discard`],
    /// [`Pooled::detach`] or [`Manager::recycle`] returning `false`.
    ///
    /// [`Pooled::discard`]: super::Pooled::discard
    /// [`Pooled::detach`]: super::Pooled::detach
    /// [`Manager::recycle`]: super::Manager::recycle
    pub discarded: u64,
    /// Checkouts that failed with [`PoolError::Timeout`](super::PoolError::Timeout).
    pub timeouts: u64,
}
