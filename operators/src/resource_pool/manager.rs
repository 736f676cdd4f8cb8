//! [`Manager`]: how a pool creates, checks and recycles its resources; [`FnManager`]
//! builds one from a closure.

use std::fmt;
use std::future::Future;

/// Creates and looks after the resources of a [`ResourcePool`](super::ResourcePool).
///
/// Implement the methods with `async fn`; the futures must be `Send`, so that a
/// checkout can run on any worker thread.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use weir_operators::resource_pool::Manager;
///
/// #[derive(Debug)]
/// struct Session {
///     broken: AtomicBool,
/// }
///
/// #[derive(Debug)]
/// struct Sessions;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("session is broken")]
/// struct Broken;
///
/// impl Manager for Sessions {
///     type Resource = Session;
///     type Error = Broken;
///
///     async fn create(&self) -> Result<Session, Broken> {
///         Ok(Session { broken: AtomicBool::new(false) })
///     }
///
///     async fn check(&self, session: &Session) -> Result<(), Broken> {
///         if session.broken.load(Ordering::Relaxed) { Err(Broken) } else { Ok(()) }
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// What the pool hands out.
    type Resource: Send + 'static;
    /// What [`create`](Self::create) and [`check`](Self::check) fail with.
    type Error: Send + 'static;

    /// Makes a new resource. Runs outside the pool's lock; the pool has already
    /// reserved a slot for it, which a failure (or dropping the future) frees.
    ///
    /// # Errors
    ///
    /// The resource could not be made; the checkout fails with
    /// [`PoolError::Create`](super::PoolError::Create).
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Health-checks an idle resource before it is handed out again; freshly created
    /// resources are not checked. The default accepts every resource.
    ///
    /// # Errors
    ///
    /// The resource is unusable: the pool drops it and the checkout goes on with
    /// another one (the error is logged at debug level and counted in
    /// [`PoolStatus::health_check_failures`](super::PoolStatus::health_check_failures)).
    fn check(
        &self,
        resource: &Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = resource;
        std::future::ready(Ok(()))
    }

    /// Prepares a resource coming back to the pool (reset a session, clear a
    /// buffer); returning `false` drops it instead of keeping it idle. Runs
    /// synchronously inside the drop of [`Pooled`](super::Pooled), so keep it
    /// cheap and non-blocking. The default keeps every resource.
    fn recycle(&self, resource: &mut Self::Resource) -> bool {
        let _ = resource;
        true
    }
}

/// A [`Manager`] made of a `create` closure: see
/// [`ResourcePool::from_fn`](super::ResourcePool::from_fn). Its resources are never
/// health-checked.
pub struct FnManager<F> {
    create: F,
}

impl<F> FnManager<F> {
    /// A manager whose `create` calls `create`.
    pub fn new(create: F) -> Self {
        FnManager { create }
    }
}

impl<F> fmt::Debug for FnManager<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnManager").finish_non_exhaustive()
    }
}

impl<F, Fut, R, E> Manager for FnManager<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send,
    R: Send + 'static,
    E: Send + 'static,
{
    type Resource = R;
    type Error = E;

    fn create(&self) -> impl Future<Output = Result<R, E>> + Send {
        (self.create)()
    }
}
