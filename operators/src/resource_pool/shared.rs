//! The engine behind [`ResourcePool`](super::ResourcePool): slots, the idle list and
//! the counters.
//!
//! Two mechanisms, one per job:
//!
//! - `slots`, a FIFO-fair tokio [`Semaphore`] of `max_size` permits, decides *who*
//!   goes next: every checkout holds a permit from before it takes a resource until
//!   its [`Pooled`] is dropped. Idle resources hold none.
//! - `state.size`, under the mutex, enforces the bound: it counts every resource
//!   alive (idle, checked out, being created, checked or dropped), goes up only while
//!   below `max_size`, and comes down only *after* a resource was dropped (through
//!   [`Release`]). A permit holder that finds no idle resource and no room waits on
//!   `released`: the other permit holders account for at most `max_size - 1`
//!   places, so the missing room is idle resources an eviction is still dropping,
//!   and their release wakes it.
//!
//! No user code (manager methods, resource drops) runs under the mutex; the only
//! `.await`s of a checkout are the permit, the health check and the create, and at
//! each of them the checkout's permit and its [`Lease`] free themselves on drop.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use super::config::PoolConfig;
use super::error::PoolError;
use super::manager::Manager;
use super::pooled::{Home, Pooled};
use super::status::PoolStatus;

/// Whether a checkout may queue for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Wait in line until a slot frees up.
    Queue,
    /// Fail with [`PoolError::Exhausted`] when no slot is free.
    No,
}

type Checkout<M> = Result<Pooled<<M as Manager>::Resource>, PoolError<<M as Manager>::Error>>;

pub(super) struct Shared<M: Manager> {
    pub(super) manager: M,
    pub(super) config: PoolConfig,
    slots: Arc<Semaphore>,
    state: Mutex<State<M::Resource>>,
    /// Notified whenever `size` goes down.
    released: Notify,
    /// Checkouts queued on `slots`.
    waiting: AtomicUsize,
    stats: Stats,
}

struct State<R> {
    /// Oldest at the front; checkouts take from the back (LIFO), so the front is
    /// also the first to expire.
    idle: VecDeque<Idle<R>>,
    size: usize,
    in_use: usize,
    closed: bool,
}

struct Idle<R> {
    resource: R,
    since: Instant,
}

#[derive(Default)]
struct Stats {
    created: AtomicU64,
    create_failures: AtomicU64,
    health_check_failures: AtomicU64,
    evicted: AtomicU64,
    discarded: AtomicU64,
    timeouts: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl<M: Manager> Shared<M> {
    pub(super) fn new(manager: M, config: PoolConfig) -> Self {
        Shared {
            manager,
            slots: Arc::new(Semaphore::new(config.max_size)),
            config,
            state: Mutex::new(State {
                idle: VecDeque::new(),
                size: 0,
                in_use: 0,
                closed: false,
            }),
            released: Notify::new(),
            waiting: AtomicUsize::new(0),
            stats: Stats::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<M::Resource>> {
        // No user code runs under the lock, so a poisoned lock still holds
        // consistent counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One checkout, without the overall timeout.
    pub(super) async fn checkout(self: &Arc<Self>, wait: Wait) -> Checkout<M> {
        let permit = self.slot(wait).await?;
        let mut failed_checks = 0;
        loop {
            let check_idle = failed_checks < self.config.max_health_check_attempts;
            let mut lease = self.lease(check_idle).await?;
            match lease.resource.as_ref() {
                Some(resource) => match self.manager.check(resource).await {
                    Ok(()) => return self.hand_out(lease, permit),
                    Err(_) => {
                        failed_checks += 1;
                        bump(&self.stats.health_check_failures, 1);
                        tracing::debug!(failed_checks, "pooled resource failed its health check");
                        drop(lease);
                    }
                },
                None => match self.manager.create().await {
                    Ok(resource) => {
                        bump(&self.stats.created, 1);
                        lease.resource = Some(resource);
                        return self.hand_out(lease, permit);
                    }
                    Err(error) => {
                        bump(&self.stats.create_failures, 1);
                        tracing::debug!("creating a pooled resource failed");
                        return Err(PoolError::Create(error));
                    }
                },
            }
        }
    }

    /// A checkout slot: at once if one is free, else in line (FIFO) unless `wait`
    /// says not to.
    async fn slot(&self, wait: Wait) -> Result<OwnedSemaphorePermit, PoolError<M::Error>> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(PoolError::Closed),
            Err(TryAcquireError::NoPermits) if wait == Wait::No => {
                return Err(PoolError::Exhausted);
            }
            Err(TryAcquireError::NoPermits) => {}
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_closed| PoolError::Closed)
    }

    /// An idle resource to check (while `check_idle`) or a reserved place to create
    /// one in, waiting for room if an eviction is still dropping resources.
    async fn lease(&self, check_idle: bool) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        loop {
            let mut released = pin!(self.released.notified());
            released.as_mut().enable();
            if let Some(lease) = self.try_lease(check_idle)? {
                return Ok(lease);
            }
            released.await;
        }
    }

    fn try_lease(&self, check_idle: bool) -> Result<Option<Lease<'_, M>>, PoolError<M::Error>> {
        let mut state = self.lock();
        if state.closed {
            return Err(PoolError::Closed);
        }
        let mut dropped = take_expired(&mut state.idle, self.config.idle_timeout);
        let mut make_way = false;
        let lease = if check_idle && let Some(idle) = state.idle.pop_back() {
            Some(Lease::new(self, Some(idle.resource)))
        } else if state.size < self.config.max_size {
            state.size += 1;
            Some(Lease::new(self, None))
        } else if let Some(oldest) = state.idle.pop_front() {
            // Out of health checks and out of room: the oldest idle resource makes
            // way, its place going to the new one (it is dropped below, before the
            // create starts).
            dropped.push(oldest.resource);
            make_way = true;
            Some(Lease::new(self, None))
        } else {
            None
        };
        drop(state);
        bump(&self.stats.evicted, dropped.len() as u64);
        let _release = Release {
            shared: self,
            count: dropped.len() - usize::from(make_way),
        };
        drop(dropped);
        Ok(lease)
    }

    /// Turns a lease into a checked-out resource, unless the pool closed meanwhile.
    fn hand_out(
        self: &Arc<Self>,
        mut lease: Lease<'_, M>,
        permit: OwnedSemaphorePermit,
    ) -> Checkout<M> {
        {
            let mut state = self.lock();
            if state.closed {
                drop(state);
                drop(lease);
                return Err(PoolError::Closed);
            }
            state.in_use += 1;
        }
        // Cannot fail: a lease is handed out with its resource and gives it up only here.
        let resource = lease
            .resource
            .take()
            .expect("a lease handed out holds a resource");
        lease.shared = None;
        let home: Arc<dyn Home<M::Resource>> = Arc::clone(self) as _;
        Ok(Pooled::new(resource, home, permit))
    }

    /// Drops the idle resources idle for `idle_timeout`; returns how many.
    pub(super) fn evict_idle(&self) -> usize {
        let expired = take_expired(&mut self.lock().idle, self.config.idle_timeout);
        let count = expired.len();
        bump(&self.stats.evicted, count as u64);
        let _release = Release {
            shared: self,
            count,
        };
        drop(expired);
        count
    }

    /// Refuses new checkouts, wakes the queued ones with `Closed`, drops the idle
    /// resources.
    pub(super) fn close(&self) {
        let idle = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        self.slots.close();
        let _release = Release {
            shared: self,
            count: idle.len(),
        };
        drop(idle);
    }

    /// Closes, then waits until no resource is alive.
    pub(super) async fn drain(&self) {
        self.close();
        loop {
            let mut released = pin!(self.released.notified());
            released.as_mut().enable();
            if self.lock().size == 0 {
                return;
            }
            released.await;
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(super) fn count_timeout(&self) {
        bump(&self.stats.timeouts, 1);
    }

    pub(super) fn status(&self) -> PoolStatus {
        let (size, idle, in_use, closed) = {
            let state = self.lock();
            (state.size, state.idle.len(), state.in_use, state.closed)
        };
        let stats = &self.stats;
        PoolStatus {
            size,
            idle,
            in_use,
            waiting: self.waiting.load(Ordering::Relaxed),
            max_size: self.config.max_size,
            closed,
            created: stats.created.load(Ordering::Relaxed),
            create_failures: stats.create_failures.load(Ordering::Relaxed),
            health_check_failures: stats.health_check_failures.load(Ordering::Relaxed),
            evicted: stats.evicted.load(Ordering::Relaxed),
            discarded: stats.discarded.load(Ordering::Relaxed),
            timeouts: stats.timeouts.load(Ordering::Relaxed),
        }
    }

    /// Frees `count` places in `size`, once their resources are gone.
    fn release(&self, count: usize) {
        if count == 0 {
            return;
        }
        self.lock().size -= count;
        self.released.notify_waiters();
    }
}

impl<M: Manager> Home<M::Resource> for Shared<M> {
    fn check_in(&self, mut resource: M::Resource) {
        let recycled = catch_unwind(AssertUnwindSafe(|| self.manager.recycle(&mut resource)));
        let keep = matches!(recycled, Ok(true));
        {
            let mut state = self.lock();
            state.in_use -= 1;
            if keep && !state.closed {
                let since = Instant::now();
                state.idle.push_back(Idle { resource, since });
                return;
            }
        }
        if !keep {
            bump(&self.stats.discarded, 1);
        }
        let release = Release {
            shared: self,
            count: 1,
        };
        drop(resource);
        drop(release);
        if let Err(panic) = recycled {
            resume_unwind(panic);
        }
    }

    fn leave(&self) {
        self.lock().in_use -= 1;
        bump(&self.stats.discarded, 1);
        self.release(1);
    }
}

/// Removes the idle resources idle for at least `timeout` (a prefix of the list).
fn take_expired<R>(idle: &mut VecDeque<Idle<R>>, timeout: Option<Duration>) -> Vec<R> {
    let Some(timeout) = timeout else {
        return Vec::new();
    };
    let now = Instant::now();
    let mut expired = Vec::new();
    while let Some(oldest) = idle.front()
        && now.saturating_duration_since(oldest.since) >= timeout
    {
        expired.extend(idle.pop_front().map(|idle| idle.resource));
    }
    expired
}

/// One place in `size` held by a checkout: an idle resource being checked, or room
/// for one being created. Dropping it (a failed check, a failed create, a cancelled
/// checkout) drops the resource, then frees the place.
struct Lease<'a, M: Manager> {
    /// `None` once handed out.
    shared: Option<&'a Shared<M>>,
    resource: Option<M::Resource>,
}

impl<'a, M: Manager> Lease<'a, M> {
    fn new(shared: &'a Shared<M>, resource: Option<M::Resource>) -> Self {
        Lease {
            shared: Some(shared),
            resource,
        }
    }
}

impl<M: Manager> Drop for Lease<'_, M> {
    fn drop(&mut self) {
        let _release = self.shared.map(|shared| Release { shared, count: 1 });
        drop(self.resource.take());
    }
}

/// Frees `count` places in `size` when dropped: declared before the resources it
/// stands for are dropped, it runs after them, even if one of their drops panics.
struct Release<'a, M: Manager> {
    shared: &'a Shared<M>,
    count: usize,
}

impl<M: Manager> Drop for Release<'_, M> {
    fn drop(&mut self) {
        self.shared.release(self.count);
    }
}

/// Counts a checkout queued on the slots while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
