//! [`CheckpointConfig`]: where a pipeline keeps its checkpoints and how often it
//! takes them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::DEFAULT_MAX_STATE_BYTES;

/// What a checkpointed pipeline does when a supervised restart rebuilds a stateful
/// stage from its factory (which starts it empty). See
/// [`CheckpointConfig::on_state_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStateLoss {
    /// The pipeline stops (failed, naming the stage; no final checkpoint is
    /// written), so that the next run from the same directory restores the last
    /// checkpoint and replays from the sources' positions in it: exactly once.
    /// Under [`PipelineManager::supervise`](crate::manager::PipelineManager::supervise)
    /// that next run is the manager's restart.
    #[default]
    RollBack,
    /// The fresh stage goes on empty (its state since the last checkpoint lost,
    /// counted in the stage's `state_lost`), as in a pipeline without
    /// checkpoints; the pipeline keeps running.
    StartEmpty,
}

/// How a pipeline checkpoints: the directory, the interval, what to keep, what may
/// start empty on a restore. Given to
/// [`Runnable::checkpoints`](crate::Runnable::checkpoints) or
/// [`Graph::checkpoints`](crate::Graph::checkpoints).
///
/// Checkpoints are off unless a pipeline is given one. With a config and no
/// interval, checkpoints are taken only when asked for
/// ([`Running::checkpoint`](crate::Running::checkpoint)) and when the pipeline
/// ends (completed or drained).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::checkpoint::CheckpointConfig;
///
/// let config = CheckpointConfig::new("/var/lib/myjob/checkpoints")
///     .interval(Duration::from_secs(1))
///     .retain(3)
///     .max_consecutive_failures(5);
/// assert_eq!(config.interval_value(), Some(Duration::from_secs(1)));
/// ```
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    pub(crate) dir: PathBuf,
    pub(crate) interval: Option<Duration>,
    pub(crate) retain: usize,
    pub(crate) max_state_bytes: usize,
    pub(crate) max_consecutive_failures: u32,
    pub(crate) fresh: Vec<String>,
    pub(crate) discard: Vec<String>,
    pub(crate) restore: bool,
    pub(crate) fsync: bool,
    pub(crate) on_state_loss: OnStateLoss,
}

impl CheckpointConfig {
    /// Checkpoints in `dir` (created if missing), taken on demand and at the end;
    /// the last 3 kept; state parts up to 256 MiB; the pipeline fails after 3
    /// checkpoints in a row failed.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointConfig {
            dir: dir.into(),
            interval: None,
            retain: 3,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
            max_consecutive_failures: 3,
            fresh: Vec::new(),
            discard: Vec::new(),
            restore: true,
            fsync: true,
            on_state_loss: OnStateLoss::RollBack,
        }
    }

    /// Takes a checkpoint every `interval` (one at a time: an interval that comes
    /// while one is in progress is skipped).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Keeps the newest `k` complete checkpoints (at least 1).
    #[must_use]
    pub fn retain(mut self, k: usize) -> Self {
        self.retain = k.max(1);
        self
    }

    /// Refuses (on write and on restore) a state part larger than `bytes`.
    #[must_use]
    pub fn max_state_bytes(mut self, bytes: usize) -> Self {
        self.max_state_bytes = bytes;
        self
    }

    /// Fails the pipeline when `n` checkpoints in a row have failed (0: never).
    #[must_use]
    pub fn max_consecutive_failures(mut self, n: u32) -> Self {
        self.max_consecutive_failures = n;
        self
    }

    /// Lets stateful stage `stage` start empty when the checkpoint restored has no
    /// state for it (a stage added since). Without it, that is a
    /// [`BuildError::CheckpointMismatch`](crate::BuildError::CheckpointMismatch).
    #[must_use]
    pub fn start_fresh(mut self, stage: impl Into<String>) -> Self {
        self.fresh.push(stage.into());
        self
    }

    /// Ignores the state the checkpoint holds for `stage`: for a stage the pipeline
    /// no longer has (removed or renamed), or one whose state no longer decodes
    /// (another state version, another type), which then starts empty. Without it,
    /// each is a
    /// [`BuildError::CheckpointMismatch`](crate::BuildError::CheckpointMismatch).
    #[must_use]
    pub fn discard_state(mut self, stage: impl Into<String>) -> Self {
        self.discard.push(stage.into());
        self
    }

    /// Starts from nothing even if the directory holds a checkpoint (the next
    /// checkpoints are written after the ones there).
    #[must_use]
    pub fn no_restore(mut self) -> Self {
        self.restore = false;
        self
    }

    /// Skips fsync when writing checkpoints: faster, and not durable across a
    /// machine crash (a process crash is still safe). For tests and benchmarks.
    #[must_use]
    pub fn without_fsync(mut self) -> Self {
        self.fsync = false;
        self
    }

    /// What a supervised restart of a stateful stage does (default
    /// [`OnStateLoss::RollBack`]): retries, skips and dead letters keep the
    /// operator and its state, but a restart rebuilds it from its factory, empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::checkpoint::{CheckpointConfig, OnStateLoss};
    ///
    /// // Availability over exactness: a restarted stage goes on empty.
    /// let config = CheckpointConfig::new("/var/lib/myjob").on_state_loss(OnStateLoss::StartEmpty);
    /// assert_eq!(config.state_loss(), OnStateLoss::StartEmpty);
    /// ```
    #[must_use]
    pub fn on_state_loss(mut self, on: OnStateLoss) -> Self {
        self.on_state_loss = on;
        self
    }

    /// What a supervised restart of a stateful stage does.
    pub fn state_loss(&self) -> OnStateLoss {
        self.on_state_loss
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The interval, if checkpoints are periodic.
    pub fn interval_value(&self) -> Option<Duration> {
        self.interval
    }
}
