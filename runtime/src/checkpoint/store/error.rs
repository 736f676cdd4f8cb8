//! [`StoreError`]: why the checkpoint store could not open or write.

use std::path::PathBuf;

/// Why a [`CheckpointStore`](super::CheckpointStore) could not be opened, or a
/// checkpoint could not be written or read.
///
/// A checkpoint that is torn or corrupt is not an error: [`load_latest`] skips it and
/// lists it in [`Loaded::skipped`](super::Loaded::skipped). Errors are what the
/// store cannot decide by itself: a directory it cannot write, a disk that fails, a
/// state it must not write.
///
/// [`load_latest`]: super::CheckpointStore::load_latest
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("checkpoint store: could not {op} {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// What was being done: `"create"`, `"write"`, `"fsync"`, `"rename"`,
        /// `"fsync directory"`, `"remove"`, `"open"`, `"read"`, `"list"`, `"encode"`
        /// (the manifest).
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The checkpoint directory cannot be created or written: found when the store
    /// is opened, by creating, writing, syncing and removing a probe file.
    #[error("checkpoint directory {} is not writable: {source}", dir.display())]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another [`CheckpointStore`](super::CheckpointStore), in this process or
    /// another, has the directory open. One store per directory: a second one would
    /// take the first one's checkpoint in progress for a torn one and remove it.
    #[error("checkpoint directory {} is in use by another checkpoint store", dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A stage's encoded state is larger than
    /// [`StoreOptions::max_state_bytes`](super::StoreOptions::max_state_bytes); the
    /// checkpoint is not written.
    #[error("state of stage {stage:?} is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge {
        /// The stage.
        stage: String,
        /// Its size in bytes: the encoded record's, or, when the state's bytes alone
        /// are over the limit, theirs (checked before anything is encoded). Past
        /// the limit the encoding is counted, not kept in memory.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The manifest would be larger than the 16 MiB a manifest is read with (about
    /// 100 000 stages, or stage names of that size); the checkpoint is not written.
    #[error(
        "the checkpoint manifest would be {size} bytes, larger than the limit of {limit} bytes"
    )]
    ManifestTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: u64,
    },
    /// A stage's state could not be encoded.
    #[error("state of stage {stage:?} does not encode: {message}")]
    Encode {
        /// The stage.
        stage: String,
        /// The encoder's message.
        message: String,
    },
    /// A checkpoint asked for by id is torn, corrupt or missing.
    #[error("checkpoint file {} cannot be used: {reason}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The checkpoint's id is not larger than every id already used in this
    /// directory (by a complete, a torn or a failed checkpoint). Ids are used once:
    /// take the next one from [`CheckpointStore::next_id`](super::CheckpointStore::next_id).
    #[error("checkpoint id {id} is not newer than {newest}, the newest id used in this directory")]
    StaleId {
        /// The id given.
        id: u64,
        /// The newest id used.
        newest: u64,
    },
}
