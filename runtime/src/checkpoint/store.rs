//! The embedded durable checkpoint store: one directory, plain files, no server.
//! The public handle, [`CheckpointStore`], documents the files and the rules; the
//! private submodules hold the format (`format`), the write path (`write`), the
//! verifying read path (`read`) and the file-system seam fault injection uses (`fs`).

mod data;
mod error;
mod format;
mod fs;
mod options;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub use data::{CheckpointData, Loaded, Manifest, ManifestEntry, Skipped, StageState};
pub use error::StoreError;
pub use options::StoreOptions;

use self::fs::{Fs, RealFs};
use self::read::Failure;

/// A directory of checkpoints, the embedded durable store: writes each complete
/// checkpoint durably and finds the newest complete one again after a crash.
///
/// One store per directory (an advisory lock on `chk.lock` enforces it), used by one
/// writer at a time (writes are serialized by a lock); it is `Send + Sync`.
///
/// Each checkpoint ([`CheckpointData`]: every stage's [`Snapshot`](super::Snapshot))
/// is two files:
///
/// - `chk-{id:020}.state`: the states, one checksummed record per stage;
/// - `chk-{id:020}.json`: the [`Manifest`], written **last**, through a temporary
///   file that is synced and renamed into place, then the directory is synced. A
///   checkpoint exists once its manifest does; a crash at any earlier point leaves a
///   state file without a manifest, which the next [`open`](CheckpointStore::open)
///   removes.
///
/// After each write the store keeps the newest [`StoreOptions::retain`] complete
/// checkpoints and removes the older ones (each manifest before its state file).
///
/// Plain files rather than an embedded database: a checkpoint is written once,
/// whole, and read back whole, so a log-structured or B-tree store would add a
/// dependency and a second durability protocol for no gain; the format below is
/// small enough to write down and check byte by byte.
///
/// # State file (format version 1)
///
/// All integers are little-endian.
///
/// ```text
/// offset 0                    8         10        12                  20
///        +--------------------+---------+---------+-------------------+
///        | magic "WEIRCKPT"   | version | 00 00   | checkpoint id u64 |   header
///        +--------------------+---------+---------+-------------------+
///
/// offset 20, then each record right after the previous one, one per stage
///        +------------+------------+----------------------------------+
///        | len    u32 | crc32  u32 | payload: `len` bytes             |
///        +------------+------------+----------------------------------+
/// ```
///
/// - **version**: `u16`, `01 00`; the two bytes after it are reserved, zero.
/// - **len**: the payload's length, at most [`StoreOptions::max_state_bytes`]; a
///   longer record is refused before anything is allocated for it.
/// - **crc32**: the CRC-32 (IEEE, as in zlib and `crc32fast`) of the payload.
/// - **payload**: a [`StageState`] encoded with serde and bincode 2
///   (`config::standard()`), decoded with [`decode`](super::decode)'s limit.
///
/// # Manifest
///
/// Pretty-printed JSON, for people and tools:
///
/// ```text
/// {
///   "format": 1,
///   "manifest_crc32": 1474372108,
///   "manifest": { "id": 7, "pipeline": "logproc", "created_unix_ms": ..., "state_file":
///     "chk-00000000000000000007.state", "stages": [ { "stage": "count", "kind": "scan",
///     "version": 1, "parts": 12, "offset": 20, "len": 4711, "crc32": ... } ],
///     "state_bytes": 4739 }
/// }
/// ```
///
/// `manifest_crc32` is the CRC-32 of the manifest's compact JSON serialization
/// (`serde_json::to_vec`), so a manifest damaged in place is detected; unknown
/// fields are refused. Each [`ManifestEntry`] gives its record's offset, payload
/// length and CRC-32; the records lie back to back from offset 20, and
/// `state_bytes` is the state file's exact length.
///
/// # Reading rules
///
/// [`load_latest`](CheckpointStore::load_latest) tries the checkpoints newest first
/// and returns the first that verifies completely: the manifest parses, its
/// checksum, id, state file name, offsets and lengths agree; the state file has
/// exactly `state_bytes` bytes and the right header; every record's header agrees
/// with its entry, its CRC-32 matches, it decodes within the limit and holds the
/// stage, kind, version and part count the entry names. Any other checkpoint (a
/// manifest missing, truncated, damaged; a state file missing, truncated,
/// damaged) is skipped with a `tracing` warning naming the file and the reason, and
/// listed in [`Loaded::skipped`]. A file that cannot be read for another reason
/// than being missing (permissions, an I/O error) is an error: the store cannot
/// tell which checkpoint is the newest.
///
/// # Examples
///
/// ```
/// use weir_runtime::checkpoint::{
///     CheckpointData, CheckpointStore, Snapshot, StageState, StoreOptions,
/// };
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = CheckpointStore::open(dir.path(), StoreOptions::default())?;
/// assert!(store.load_latest()?.checkpoint.is_none()); // a fresh start
///
/// let data = CheckpointData {
///     id: store.next_id(),
///     pipeline: "logproc".into(),
///     created_unix_ms: 1_700_000_000_000,
///     stages: vec![StageState {
///         stage: "count".into(),
///         kind: "scan".into(),
///         snapshot: Snapshot::of(1, &42_u64)?,
///     }],
/// };
/// let manifest = store.write(&data)?;
/// assert_eq!(manifest.state_file, "chk-00000000000000000001.state");
/// drop(store);
///
/// // After a restart:
/// let store = CheckpointStore::open(dir.path(), StoreOptions::default())?;
/// let loaded = store.load_latest()?;
/// let (manifest, restored) = loaded.checkpoint.expect("a complete checkpoint");
/// assert_eq!(manifest.id, 1);
/// assert_eq!(restored, data);
/// assert!(loaded.skipped.is_empty());
/// assert_eq!(store.next_id(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    options: StoreOptions,
    fs: Arc<dyn Fs>,
    /// Held for the store's life: the exclusive lock on the directory.
    _lock: File,
    /// The newest id used in the directory; held while writing.
    newest: Mutex<u64>,
    /// Torn checkpoints `open` removed, by id: reported by `load_latest`.
    removed: Vec<(u64, Skipped)>,
}

impl CheckpointStore {
    /// Opens the checkpoint directory `dir`, creating it if needed.
    ///
    /// Locks the directory, proves it is writable (creates, writes, syncs and
    /// removes a probe file), and removes what a crash left: state files without a
    /// manifest (a checkpoint whose write did not complete; each is logged and
    /// reported by [`load_latest`](Self::load_latest)) and temporary files. Files
    /// that are not the store's are left alone.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotWritable`] if the directory cannot be created or written;
    /// [`StoreError::Locked`] if another store has it open; [`StoreError::Io`] if it
    /// cannot be listed or an orphan cannot be removed.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        Self::open_with(dir.as_ref(), options, Arc::new(RealFs))
    }

    /// [`open`](Self::open) on the given file system.
    fn open_with(dir: &Path, options: StoreOptions, fs: Arc<dyn Fs>) -> Result<Self, StoreError> {
        let not_writable = |source| StoreError::NotWritable {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(not_writable)?;
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(format::LOCK_NAME))
            .map_err(not_writable)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(not_writable(e)),
        }
        probe(fs.as_ref(), dir, options.fsync).map_err(not_writable)?;

        let listing = format::list_dir(dir)?;
        let mut removed = Vec::new();
        for &id in listing.states.difference(&listing.manifests) {
            let file = dir.join(format::state_name(id));
            let reason = format!(
                "no manifest: the write of checkpoint {id} did not complete; removed when the store was opened"
            );
            tracing::warn!(file = %file.display(), %reason, "checkpoint store: skipping a torn checkpoint");
            remove_if_there(fs.as_ref(), &file)?;
            removed.push((id, Skipped { file, reason }));
        }
        for (file, _) in &listing.temps {
            tracing::info!(file = %file.display(), "checkpoint store: removing a temporary file a crash left");
            remove_if_there(fs.as_ref(), file)?;
        }
        let newest = listing
            .ids()
            .into_iter()
            .chain(listing.temps.iter().filter_map(|(_, id)| *id))
            .max()
            .unwrap_or(0);
        Ok(CheckpointStore {
            dir: dir.to_path_buf(),
            options,
            fs,
            _lock: lock,
            newest: Mutex::new(newest),
            removed,
        })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The id for the next checkpoint: one more than every id used in the directory
    /// (by complete, torn and failed checkpoints alike), 1 in an empty one.
    pub fn next_id(&self) -> u64 {
        self.newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_add(1)
    }

    /// Writes `data` as a complete checkpoint and returns its manifest; then removes
    /// all but the newest [`retain`](StoreOptions::retain) complete checkpoints.
    ///
    /// The state file is written and synced first, then the manifest through a
    /// temporary file (synced, renamed into place), then the directory is synced.
    /// When this returns `Ok`, the checkpoint survives a crash or a power loss (with
    /// [`StoreOptions::fsync`]). When it returns an error, its files are removed
    /// (best effort: what a crash leaves, the next `open` removes) and
    /// [`load_latest`](Self::load_latest) returns the previous checkpoint. Pruning
    /// failures are logged, not returned.
    ///
    /// `data.id` is used once, even if the write fails: the next attempt takes
    /// [`next_id`](Self::next_id).
    ///
    /// # Errors
    ///
    /// [`StoreError::StaleId`] if `data.id` is not newer than every id used;
    /// [`StoreError::TooLarge`] or [`StoreError::Encode`] for a state that cannot be
    /// stored; [`StoreError::Io`] naming the file and the operation that failed.
    pub fn write(&self, data: &CheckpointData) -> Result<Manifest, StoreError> {
        let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
        if data.id <= *newest {
            return Err(StoreError::StaleId {
                id: data.id,
                newest: *newest,
            });
        }
        *newest = data.id;
        write::write_checkpoint(self.fs.as_ref(), &self.dir, &self.options, data)
    }

    /// The newest complete checkpoint that verifies, and the newer ones skipped.
    ///
    /// Every checkpoint newer than the one returned is listed in
    /// [`Loaded::skipped`] with the file at fault and the reason (and was logged
    /// with `tracing::warn!`); `checkpoint` is `None` when there is no complete
    /// checkpoint. Reads, and verifies, the whole state of the checkpoint returned.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if the directory cannot be listed or a file cannot be read
    /// for another reason than being missing.
    pub fn load_latest(&self) -> Result<Loaded, StoreError> {
        let listing = format::list_dir(&self.dir)?;
        let limit = self.options.record_limit();
        let mut skipped = Vec::new();
        let mut found = None;
        for id in listing.ids().into_iter().rev() {
            if !listing.manifests.contains(&id) {
                let file = self.dir.join(format::state_name(id));
                let reason = format!(
                    "no manifest: the write of checkpoint {id} did not complete (or is in progress)"
                );
                tracing::warn!(file = %file.display(), %reason, "checkpoint store: skipping a torn checkpoint");
                skipped.push((id, Skipped { file, reason }));
                continue;
            }
            match read::read_checkpoint(&self.dir, id, limit) {
                Ok(checkpoint) => {
                    found = Some(checkpoint);
                    break;
                }
                Err(failure) => skipped.push((id, self.skip(failure)?)),
            }
        }
        let loaded_id = found.as_ref().map_or(0, |(m, _): &(Manifest, _)| m.id);
        skipped.extend(
            self.removed
                .iter()
                .filter(|(id, _)| *id > loaded_id)
                .cloned(),
        );
        skipped.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        Ok(Loaded {
            checkpoint: found,
            skipped: skipped.into_iter().map(|(_, s)| s).collect(),
        })
    }

    /// Checkpoint `id`, read and verified (an older one than the newest, for
    /// inspection and tests).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the file and the reason if it is torn,
    /// corrupt or missing; [`StoreError::Io`] for another read error.
    pub fn load(&self, id: u64) -> Result<(Manifest, CheckpointData), StoreError> {
        match read::read_checkpoint(&self.dir, id, self.options.record_limit()) {
            Ok(checkpoint) => Ok(checkpoint),
            Err(Failure::Skip(skipped)) => Err(StoreError::Corrupt {
                file: skipped.file,
                reason: skipped.reason,
            }),
            Err(Failure::Io(e)) => Err(e),
        }
    }

    /// The manifests of every complete checkpoint that verifies, oldest first.
    /// Reads and verifies every checkpoint's state; the others are logged with
    /// `tracing::warn!` and left out.
    ///
    /// # Errors
    ///
    /// As [`load_latest`](Self::load_latest).
    pub fn list(&self) -> Result<Vec<Manifest>, StoreError> {
        let listing = format::list_dir(&self.dir)?;
        let mut manifests = Vec::new();
        for &id in &listing.manifests {
            match read::read_checkpoint(&self.dir, id, self.options.record_limit()) {
                Ok((manifest, _)) => manifests.push(manifest),
                Err(failure) => {
                    self.skip(failure)?;
                }
            }
        }
        Ok(manifests)
    }

    /// Logs a skipped checkpoint, or hands an I/O error back.
    fn skip(&self, failure: Failure) -> Result<Skipped, StoreError> {
        match failure {
            Failure::Skip(skipped) => {
                tracing::warn!(file = %skipped.file.display(), reason = %skipped.reason, "checkpoint store: skipping a corrupt checkpoint");
                Ok(skipped)
            }
            Failure::Io(e) => Err(e),
        }
    }
}

/// Creates, writes, syncs and removes a probe file in `dir`.
fn probe(fs: &dyn Fs, dir: &Path, fsync: bool) -> io::Result<()> {
    let path = dir.join(format::PROBE_NAME);
    let mut file = fs.create(&path, false)?;
    file.write_all(b"weir checkpoint store probe\n")?;
    if fsync {
        file.sync_all()?;
    }
    drop(file);
    fs.remove(&path)?;
    if fsync {
        fs.sync_dir(dir)?;
    }
    Ok(())
}

fn remove_if_there(fs: &dyn Fs, path: &Path) -> Result<(), StoreError> {
    match fs.remove(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io {
            path: path.to_path_buf(),
            op: "remove",
            source: e,
        }),
        _ => Ok(()),
    }
}
