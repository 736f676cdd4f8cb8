//! [`ConfigHandle`]: the caller's side of a stage's reconfiguration.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};

use actix::Message;
use tokio::sync::oneshot;

/// A stage applied a config.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// The stage that applied it.
    pub stage: String,
    /// The stage's config generation now: 1 after its first applied config, one
    /// more after each. Rejected configs do not count.
    pub generation: u64,
}

/// Why a config was not applied. In every case the config in force is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconfigError {
    /// The handle is not bound to a stage: its pipeline was not run (or failed to
    /// build).
    NotRunning,
    /// The stage has stopped; nothing more is applied to it.
    Stopped {
        /// The stage.
        stage: String,
    },
    /// The operator (or the config source) rejected the config.
    Rejected {
        /// The stage, or the config file for a [watcher](crate::reconfig) error.
        stage: String,
        /// What is wrong with the config.
        reason: String,
    },
}

impl fmt::Display for ReconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconfigError::NotRunning => {
                f.write_str("the config handle is not bound to a running stage")
            }
            ReconfigError::Stopped { stage } => {
                write!(f, "stage `{stage}` has stopped; config not applied")
            }
            ReconfigError::Rejected { stage, reason } => {
                write!(
                    f,
                    "config rejected by `{stage}` (old config kept): {reason}"
                )
            }
        }
    }
}

impl std::error::Error for ReconfigError {}

/// Where a stage sends its answer.
pub(crate) type Reply = oneshot::Sender<Result<Applied, ReconfigError>>;

/// A config on its way to a stage actor: a control message, sent with `do_send`.
pub(crate) struct Reconfig<C> {
    pub(crate) config: C,
    pub(crate) reply: Reply,
}

impl<C: Send + 'static> Message for Reconfig<C> {
    type Result = ();
}

/// Sends a config and its reply channel to the bound stage.
pub(crate) type Bind<C> = Box<dyn Fn(C, Reply) + Send + Sync>;

struct Target<C> {
    stage: String,
    send: Bind<C>,
    /// The target's own check (a pipeline checks a policy file against its
    /// stages), run after the handle's.
    check: Option<Check<C>>,
}

/// Validates a config before it is applied.
pub(crate) type Check<C> = Arc<dyn Fn(&C) -> Result<(), String> + Send + Sync>;

struct Inner<C> {
    /// Checks a config before the operator applies it (see
    /// [`ConfigHandle::with_check`]).
    check: Option<Check<C>>,
    /// Set when a builder attached the handle to a stage (one stage per handle).
    attached: AtomicBool,
    target: Mutex<Option<Target<C>>>,
    /// The last config the stage acknowledged, with its generation.
    latest: Mutex<Option<(u64, C)>>,
}

/// A typed handle to reconfigure one running stage.
///
/// Create it before building the pipeline, attach it to a stage
/// ([`Flow::via_reconfigurable`](crate::Flow::via_reconfigurable), or the
/// `*_with_config` operators of the catalogue), run the pipeline, then call
/// [`reconfigure`](Self::reconfigure). Clones share the same stage.
///
/// # Examples
///
/// ```
/// use weir_runtime::reconfig::{ConfigHandle, ReconfigError};
///
/// let handle = ConfigHandle::<u32>::new();
/// // Not attached to a running stage yet.
/// let err = futures::executor::block_on(handle.reconfigure(3)).unwrap_err();
/// assert_eq!(err, ReconfigError::NotRunning);
/// assert_eq!(handle.generation(), 0);
/// ```
pub struct ConfigHandle<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for ConfigHandle<C> {
    fn clone(&self) -> Self {
        ConfigHandle {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> fmt::Debug for ConfigHandle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self
            .inner
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ConfigHandle")
            .field("stage", &target.as_ref().map(|t| t.stage.as_str()))
            .field("generation", &self.generation())
            .finish()
    }
}

impl<C: Clone + Send + 'static> Default for ConfigHandle<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clone + Send + 'static> ConfigHandle<C> {
    /// A handle attached to no stage yet.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A handle whose configs `check` validates. Operators that take their config
    /// through the handle (`map_with_config`, `filter_with_config`) run the check in
    /// the stage before applying a config (and on the initial config when the
    /// pipeline is built), and reject the config with the check's message.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::reconfig::ConfigHandle;
    ///
    /// let threshold = ConfigHandle::<u64>::with_check(|t| {
    ///     if *t <= 100 { Ok(()) } else { Err(format!("threshold {t} above 100")) }
    /// });
    /// assert!(threshold.check(&50).is_ok());
    /// assert_eq!(threshold.check(&150).unwrap_err(), "threshold 150 above 100");
    /// ```
    pub fn with_check(check: impl Fn(&C) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self::build(Some(Arc::new(check)))
    }

    /// Runs the handle's check on `config` (Ok without one), then the check of
    /// what it is bound to, if that has one (a pipeline bound with
    /// `Runnable::policies_handle` checks a policy file against its stages).
    ///
    /// # Errors
    ///
    /// The check's message.
    pub fn check(&self, config: &C) -> Result<(), String> {
        let bound = self
            .inner
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|t| t.check.clone());
        if let Some(check) = &self.inner.check {
            check(config)?;
        }
        bound.map_or(Ok(()), |check| check(config))
    }

    /// The handle's check, for an operator to run in its stage.
    pub fn checker(&self) -> impl Fn(&C) -> Result<(), String> + Send + Sync + 'static {
        let check = self.inner.check.clone();
        move |config: &C| check.as_ref().map_or(Ok(()), |check| check(config))
    }

    fn build(check: Option<Check<C>>) -> Self {
        ConfigHandle {
            inner: Arc::new(Inner {
                check,
                attached: AtomicBool::new(false),
                target: Mutex::new(None),
                latest: Mutex::new(None),
            }),
        }
    }

    /// Sends `config` to the stage and waits until the stage applied it (between
    /// two steps of its operator) or rejected it.
    ///
    /// # Errors
    ///
    /// [`ReconfigError::Rejected`] with the operator's reason (the old config stays
    /// in force), [`ReconfigError::Stopped`] if the stage has stopped,
    /// [`ReconfigError::NotRunning`] if the handle is not bound to a running stage.
    pub async fn reconfigure(&self, config: C) -> Result<Applied, ReconfigError> {
        let (reply, answer) = oneshot::channel();
        let stage = {
            let target = self
                .inner
                .target
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(target) = target.as_ref() else {
                return Err(ReconfigError::NotRunning);
            };
            (target.send)(config.clone(), reply);
            target.stage.clone()
        };
        // A stopped stage drops the message, and with it the reply channel.
        let applied = answer.await.map_err(|_| ReconfigError::Stopped {
            stage: stage.clone(),
        })??;
        let mut latest = self
            .inner
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Concurrent callers may be acknowledged out of call order: keep the newest.
        if latest.as_ref().is_none_or(|(g, _)| *g < applied.generation) {
            *latest = Some((applied.generation, config));
        }
        Ok(applied)
    }

    /// [`reconfigure`](Self::reconfigure) for synchronous callers: blocks the
    /// calling thread until the stage answers. Do not call it from a stage's own
    /// arbiter thread (it would wait for itself).
    ///
    /// # Errors
    ///
    /// As [`reconfigure`](Self::reconfigure).
    pub fn reconfigure_blocking(&self, config: C) -> Result<Applied, ReconfigError> {
        futures::executor::block_on(self.reconfigure(config))
    }

    /// The last config the stage acknowledged through this handle, if any.
    pub fn current(&self) -> Option<C> {
        self.inner
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, c)| c.clone())
    }

    /// Whether the handle is bound to a stage of a running pipeline.
    pub fn is_bound(&self) -> bool {
        self.inner
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The stage the handle is bound to, once its pipeline runs.
    pub fn stage(&self) -> Option<String> {
        self.inner
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|t| t.stage.clone())
    }

    /// Claims the handle for one stage at build time; false if another stage has it.
    pub(crate) fn attach(&self) -> bool {
        !self.inner.attached.swap(true, SeqCst)
    }

    /// Binds the handle to its started stage.
    pub(crate) fn bind(&self, stage: String, send: Bind<C>) {
        self.set_target(Target {
            stage,
            send,
            check: None,
        });
    }

    /// Binds the handle to a target with a check of its own.
    pub(crate) fn bind_checked(&self, stage: String, send: Bind<C>, check: Check<C>) {
        self.set_target(Target {
            stage,
            send,
            check: Some(check),
        });
    }

    fn set_target(&self, target: Target<C>) {
        *self
            .inner
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(target);
    }
}

impl<C> ConfigHandle<C> {
    /// The generation of the last config acknowledged through this handle (0 for
    /// none).
    pub fn generation(&self) -> u64 {
        self.inner
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |(g, _)| *g)
    }
}
