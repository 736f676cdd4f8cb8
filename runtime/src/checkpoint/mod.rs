//! Durable state: checkpoint barriers, operator snapshots and recovery.
//!
//! A checkpointed pipeline's coordinator injects barrier *n* at every source. The
//! barrier travels in order with the elements; a stage that has seen barrier *n* on
//! every input (its elements before the barrier all taken, none after) snapshots its
//! state and passes the barrier on; a source records its position. When every stage
//! has, checkpoint *n* is complete: its states are written to the checkpoint
//! directory, and the stages are told ([`Checkpointable::committed`]), so that sinks
//! commit what they wrote before the barrier. A pipeline started with a directory
//! that holds a complete checkpoint restores every stage's state from it and every
//! source resumes from its position. See `docs/checkpoints.md`.

mod config;
mod coordinator;
pub(crate) mod dead_letters;
mod state;
mod store;

pub use config::{CheckpointConfig, OnStateLoss};
pub(crate) use coordinator::{AckTiming, Coordinator, StageAck};
pub use coordinator::{CheckpointError, CheckpointInfo, CheckpointStats};
pub use store::{
    CheckpointData, CheckpointStore, Loaded, Manifest, ManifestEntry, Skipped, StageState,
    StoreError, StoreOptions,
};

pub use state::{
    Checkpointable, DEFAULT_MAX_STATE_BYTES, Deferred, KEY_GROUPS, RestoreContext, Snapshot,
    StableBuildHasher, StableHasher, StateError, StatePart, decode, encode, key_group,
    key_group_of, replica_of_group,
};

/// Runs `take` (an operator's `checkpoint().map(|s| s.snapshot(id))`), catching a
/// panic: the stage's snapshot for the coordinator.
pub(crate) fn guarded_snapshot<T>(
    take: impl FnOnce() -> Option<Result<T, StateError>>,
) -> Result<Option<T>, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(take)) {
        Ok(None) => Ok(None),
        Ok(Some(Ok(snapshot))) => Ok(Some(snapshot)),
        Ok(Some(Err(e))) => Err(e.to_string()),
        Err(payload) => Err(format!(
            "snapshot panicked: {}",
            weir_supervisor::Failure::from_panic(payload)
        )),
    }
}
