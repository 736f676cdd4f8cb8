//! [`Pooled`]: a checked-out resource that goes back to its pool when dropped.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

/// Where a [`Pooled`] goes back to: the pool's engine, with its manager type erased so
/// that the guard is generic over the resource alone.
pub(super) trait Home<R>: Send + Sync {
    /// Takes back a resource that is no longer in use: pools it or drops it.
    fn check_in(&self, resource: R);
    /// Accounts for a checked-out resource that left the pool for good (discarded or
    /// detached); it has already been dropped or handed to the caller.
    fn leave(&self);
}

/// A resource checked out of a [`ResourcePool`](super::ResourcePool): derefs to the
/// resource and gives it back to the pool when dropped (where
/// [`Manager::recycle`](super::Manager::recycle) may still refuse it).
///
/// Drop it as soon as the work is done: while it lives it holds one of the pool's
/// `max_size` slots. If the resource turned out broken, [`discard`](Pooled::discard)
/// it so that nobody else gets it.
///
/// # Examples
///
/// ```
/// use weir_operators::resource_pool::{PoolConfig, Pooled, ResourcePool};
///
/// let pool = ResourcePool::from_fn(PoolConfig::default(), || async {
///     Ok::<_, std::io::Error>(Vec::<u8>::new())
/// })?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// rt.block_on(async {
///     let mut buf = pool.acquire().await?;
///     buf.push(1); // DerefMut to the Vec
///     Pooled::discard(buf); // dropped, not pooled
///     assert_eq!(pool.status().size, 0);
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pooled<R> {
    /// `Some` until the guard is consumed or dropped.
    resource: Option<R>,
    home: Arc<dyn Home<R>>,
    /// The checkout slot; as a field it is released after `Drop::drop` gave the
    /// resource back, so the waiter it wakes finds the resource idle.
    _slot: OwnedSemaphorePermit,
}

impl<R> Pooled<R> {
    pub(super) fn new(resource: R, home: Arc<dyn Home<R>>, slot: OwnedSemaphorePermit) -> Self {
        Pooled {
            resource: Some(resource),
            home,
            _slot: slot,
        }
    }

    /// Drops the resource instead of giving it back: for a resource found broken
    /// while in use. Its slot is free again once it is dropped. An associated
    /// function (`Pooled::discard(conn)`), so it never shadows a method of the
    /// resource.
    pub fn discard(mut this: Self) {
        let resource = this.resource.take();
        // Accounted for even if the resource's own drop panics.
        let _leave = LeaveOnDrop(&*this.home);
        drop(resource);
    }

    /// Takes the resource out of the pool for good and frees its slot: the pool
    /// forgets it and may create another in its place.
    pub fn detach(mut this: Self) -> R {
        let resource = this
            .resource
            .take()
            .expect("a Pooled holds its resource until dropped");
        this.home.leave();
        resource
    }
}

/// Calls [`Home::leave`] when dropped.
struct LeaveOnDrop<'a, R>(&'a dyn Home<R>);

impl<R> Drop for LeaveOnDrop<'_, R> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl<R> Deref for Pooled<R> {
    type Target = R;

    fn deref(&self) -> &R {
        self.resource
            .as_ref()
            .expect("a Pooled holds its resource until dropped")
    }
}

impl<R> DerefMut for Pooled<R> {
    fn deref_mut(&mut self) -> &mut R {
        self.resource
            .as_mut()
            .expect("a Pooled holds its resource until dropped")
    }
}

impl<R> Drop for Pooled<R> {
    fn drop(&mut self) {
        if let Some(resource) = self.resource.take() {
            self.home.check_in(resource);
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for Pooled<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&self.resource).finish()
    }
}
