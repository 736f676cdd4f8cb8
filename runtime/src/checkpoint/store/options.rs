//! [`StoreOptions`]: retention, the record size limit and syncing.

use crate::checkpoint::DEFAULT_MAX_STATE_BYTES;

/// How a [`CheckpointStore`](super::CheckpointStore) keeps its checkpoints.
///
/// # Examples
///
/// ```
/// use weir_runtime::checkpoint::StoreOptions;
///
/// let options = StoreOptions { retain: 5, ..StoreOptions::default() };
/// assert_eq!(options.retain, 5);
/// assert!(options.fsync);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How many complete checkpoints to keep (default 3). After each write the
    /// older ones are removed. Keep more than one, so that a checkpoint damaged on
    /// disk after it was written still leaves one to restore; each costs the
    /// pipeline's state size on disk. 0 is taken as 1.
    pub retain: usize,
    /// The largest encoded state of one stage, in bytes (default
    /// [`DEFAULT_MAX_STATE_BYTES`], 256 MiB; at most `u32::MAX` is used, the largest
    /// record the format can frame). A larger state is refused when written
    /// ([`StoreError::TooLarge`](super::StoreError::TooLarge)); a stored record that
    /// claims more is skipped when read, before anything is allocated for it. Choose
    /// it above the largest state a stage can reach, and below the memory a restore
    /// may take.
    pub max_state_bytes: usize,
    /// Whether writes are synced to the disk (default `true`): the state file and
    /// the manifest before the manifest is renamed into place, and the directory
    /// after. Without it a checkpoint survives the process being killed, not the
    /// machine losing power; only tests and throw-away runs should turn it off.
    pub fsync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retain: 3,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
            fsync: true,
        }
    }
}

impl StoreOptions {
    /// The record limit actually applied: `max_state_bytes`, at most `u32::MAX`.
    pub(super) fn record_limit(&self) -> usize {
        self.max_state_bytes
            .min(usize::try_from(u32::MAX).unwrap_or(usize::MAX))
    }

    /// `retain`, at least 1.
    pub(super) fn retained(&self) -> usize {
        self.retain.max(1)
    }
}
