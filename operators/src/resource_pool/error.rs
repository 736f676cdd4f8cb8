//! The errors of [`ResourcePool`](super::ResourcePool) checkouts and of
//! [`PoolConfig`](super::PoolConfig) validation.

use std::error::Error as StdError;
use std::time::Duration;

use weir_runtime::{ErrorClass, Failure};

/// Why a checkout returned no resource. `E` is the
/// [`Manager::Error`](super::Manager::Error).
///
/// Converts into a [`Failure`] (with [`class`](PoolError::class)), so `?` works
/// inside the future of `try_map_async`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// [`acquire_timeout`](super::PoolConfig::acquire_timeout) elapsed before a
    /// resource was ready; the duration is the timeout.
    #[error("no pooled resource within the acquire timeout of {0:?}")]
    Timeout(Duration),
    /// The pool was closed (or is draining): it hands out no more resources.
    #[error("the resource pool is closed")]
    Closed,
    /// [`try_acquire`](super::ResourcePool::try_acquire) found every slot taken.
    #[error("every resource of the pool is in use")]
    Exhausted,
    /// [`Manager::create`](super::Manager::create) failed; its error is the source.
    #[error("creating a pooled resource failed")]
    Create(#[source] E),
}

impl<E> PoolError<E> {
    /// The class a supervised stage sees when this error fails an element:
    /// `Timeout` → [`ErrorClass::Timeout`], `Exhausted` →
    /// [`ErrorClass::ResourceExhausted`], `Create` → [`ErrorClass::Transient`],
    /// `Closed` → [`ErrorClass::Permanent`] (retrying cannot help).
    pub fn class(&self) -> ErrorClass {
        match self {
            PoolError::Timeout(_) => ErrorClass::Timeout,
            PoolError::Closed => ErrorClass::Permanent,
            PoolError::Exhausted => ErrorClass::ResourceExhausted,
            PoolError::Create(_) => ErrorClass::Transient,
        }
    }
}

impl<E> From<PoolError<E>> for Failure
where
    E: StdError + Send + Sync + 'static,
{
    fn from(error: PoolError<E>) -> Self {
        Failure::with_source(error.class(), error)
    }
}

/// A [`PoolConfig`](super::PoolConfig) field with a value the pool cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 is 0.
    #[error("invalid pool config: `{field}` must be at least 1")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// A count is above what the pool supports.
    #[error("invalid pool config: `{field}` is {value}, above the limit of {limit}")]
    TooLarge {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: usize,
        /// The largest value accepted.
        limit: usize,
    },
    /// A timeout is zero; `None` is the way to say "no timeout".
    #[error("invalid pool config: `{field}` must be longer than zero (use `None` for no limit)")]
    ZeroDuration {
        /// The field's name.
        field: &'static str,
    },
}

impl ConfigError {
    /// The name of the field at fault, e.g. `"max_size"`.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::Zero { field }
            | ConfigError::TooLarge { field, .. }
            | ConfigError::ZeroDuration { field } => field,
        }
    }
}
