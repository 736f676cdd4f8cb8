//! What the store writes and gives back: [`CheckpointData`], [`StageState`],
//! [`Manifest`], [`ManifestEntry`], [`Loaded`] and [`Skipped`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Snapshot;

/// One complete checkpoint: every stage's state at barrier `id`.
///
/// Source positions are not special: a source's position is its stage's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointData {
    /// The checkpoint id: larger than every id used before in the directory.
    pub id: u64,
    /// The pipeline's name, recorded in the manifest for people and tools.
    pub pipeline: String,
    /// When the checkpoint was taken, in milliseconds since the UNIX epoch.
    pub created_unix_ms: u64,
    /// The states, one per stateful stage, in the order they are written.
    pub stages: Vec<StageState>,
}

/// One stage's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageState {
    /// The stage's stable name, by which it is matched on restore.
    pub stage: String,
    /// The operator's kind (`Operator::kind`), to name a mismatch on restore.
    pub kind: String,
    /// The state.
    pub snapshot: Snapshot,
}

/// The description of a complete checkpoint, stored as JSON next to its state file
/// (`chk-{id:020}.json`) and written last: a checkpoint exists once its manifest
/// does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The checkpoint id.
    pub id: u64,
    /// The pipeline's name.
    pub pipeline: String,
    /// When the checkpoint was taken, in milliseconds since the UNIX epoch.
    pub created_unix_ms: u64,
    /// The state file's name in the checkpoint directory (`chk-{id:020}.state`).
    pub state_file: String,
    /// One entry per stage, in the order of the records in the state file.
    pub stages: Vec<ManifestEntry>,
    /// The state file's length in bytes.
    pub state_bytes: u64,
}

/// Where one stage's state lies in the state file, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// The stage's name.
    pub stage: String,
    /// The operator's kind.
    pub kind: String,
    /// The state's version ([`Snapshot::version`]).
    pub version: u32,
    /// The number of state parts ([`Snapshot::parts`]).
    pub parts: usize,
    /// Offset of the stage's record (its 8-byte header) in the state file.
    pub offset: u64,
    /// Length of the record's payload in bytes (the header not included).
    pub len: u64,
    /// CRC-32 of the payload.
    pub crc32: u32,
}

/// What [`CheckpointStore::load_latest`](super::CheckpointStore::load_latest) found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loaded {
    /// The newest complete checkpoint that verifies, with its manifest; `None` if the
    /// directory holds none: the pipeline starts fresh.
    pub checkpoint: Option<(Manifest, CheckpointData)>,
    /// The checkpoints newer than the one returned that could not be used, newest
    /// first: torn ones (no manifest; removed when the store was opened) and
    /// corrupt ones (left on disk for inspection until retention removes them).
    pub skipped: Vec<Skipped>,
}

/// A checkpoint that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file at fault: the manifest or the state file.
    pub file: PathBuf,
    /// Why, in words (truncated, checksum mismatch, missing manifest, ...).
    pub reason: String,
}
