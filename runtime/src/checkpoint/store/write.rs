//! Writing a checkpoint: state file, manifest, directory sync, then pruning.

use std::path::{Path, PathBuf};

use super::format::{self, HEADER_LEN, MAX_MANIFEST_BYTES, RECORD_HEADER_LEN};
use super::fs::Fs;
use super::read;
use super::{CheckpointData, Manifest, ManifestEntry, StoreError, StoreOptions};

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, op, source }
}

/// The files an attempt has made so far, to be removed if it fails.
#[derive(Debug, Default)]
struct Made {
    state: Option<PathBuf>,
    temp: Option<PathBuf>,
    manifest: Option<PathBuf>,
}

/// Writes checkpoint `data` into `dir` and prunes older ones. On failure, removes
/// what it made (best effort: after a crash, the next `open` does).
pub(super) fn write_checkpoint(
    fs: &dyn Fs,
    dir: &Path,
    options: &StoreOptions,
    data: &CheckpointData,
) -> Result<Manifest, StoreError> {
    let mut made = Made::default();
    match write_files(fs, dir, options, data, &mut made) {
        Ok(manifest) => {
            prune(fs, dir, options);
            Ok(manifest)
        }
        Err(e) => {
            // The manifest first: without it, the state file is only an orphan.
            for path in [made.manifest, made.temp, made.state].into_iter().flatten() {
                if let Err(err) = fs.remove(&path) {
                    tracing::debug!(file = %path.display(), error = %err, "checkpoint store: could not remove the file of a failed write");
                }
            }
            Err(e)
        }
    }
}

fn write_files(
    fs: &dyn Fs,
    dir: &Path,
    options: &StoreOptions,
    data: &CheckpointData,
    made: &mut Made,
) -> Result<Manifest, StoreError> {
    let limit = options.record_limit();
    // A cheap lower bound first, so that a state far too large creates no file.
    if let Some(big) = data.stages.iter().find(|s| s.snapshot.byte_len() > limit) {
        return Err(StoreError::TooLarge {
            stage: big.stage.clone(),
            size: big.snapshot.byte_len(),
            limit,
        });
    }

    let state_file = format::state_name(data.id);
    let state_path = dir.join(&state_file);
    let mut file = fs
        .create(&state_path, true)
        .map_err(io(&state_path, "create"))?;
    made.state = Some(state_path.clone());
    file.write_all(&format::header_bytes(data.id))
        .map_err(io(&state_path, "write"))?;
    let mut offset = HEADER_LEN;
    let mut stages = Vec::with_capacity(data.stages.len());
    let mut record = Vec::new();
    for stage in &data.stages {
        let (len, crc32) = format::encode_record(stage, limit, &mut record)?;
        file.write_all(&record).map_err(io(&state_path, "write"))?;
        stages.push(ManifestEntry {
            stage: stage.stage.clone(),
            kind: stage.kind.clone(),
            version: stage.snapshot.version,
            parts: stage.snapshot.parts.len(),
            offset,
            len: u64::from(len),
            crc32,
        });
        offset += RECORD_HEADER_LEN + u64::from(len);
    }
    if options.fsync {
        file.sync_all().map_err(io(&state_path, "fsync"))?;
    }
    drop(file);

    let manifest = Manifest {
        id: data.id,
        pipeline: data.pipeline.clone(),
        created_unix_ms: data.created_unix_ms,
        state_file,
        stages,
        state_bytes: offset,
    };
    let temp_path = dir.join(format::manifest_tmp_name(data.id));
    let bytes =
        format::manifest_bytes(&manifest).map_err(|e| io(&temp_path, "encode")(e.into()))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        // What is written must be readable: the reader refuses larger manifests.
        return Err(StoreError::ManifestTooLarge {
            size: bytes.len(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let mut file = fs
        .create(&temp_path, false)
        .map_err(io(&temp_path, "create"))?;
    made.temp = Some(temp_path.clone());
    file.write_all(&bytes).map_err(io(&temp_path, "write"))?;
    if options.fsync {
        file.sync_all().map_err(io(&temp_path, "fsync"))?;
    }
    drop(file);
    let manifest_path = dir.join(format::manifest_name(data.id));
    fs.rename(&temp_path, &manifest_path)
        .map_err(io(&manifest_path, "rename"))?;
    made.temp = None;
    made.manifest = Some(manifest_path);
    if options.fsync {
        fs.sync_dir(dir).map_err(io(dir, "fsync directory"))?;
    }
    Ok(manifest)
}

/// Keeps the newest `retain` complete checkpoints and removes every file of older
/// ones, each manifest before its state file. Torn or corrupt checkpoints newer than
/// the oldest one kept stay until they are older. Failures are logged, not returned:
/// the checkpoint just written is durable whatever happens here.
fn prune(fs: &dyn Fs, dir: &Path, options: &StoreOptions) {
    let listing = match format::list_dir(dir) {
        Ok(listing) => listing,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint store: not pruning");
            return;
        }
    };
    let limit = options.record_limit();
    let kept: Vec<u64> = listing
        .manifests
        .iter()
        .rev()
        .copied()
        .filter(|&id| read::looks_complete(dir, id, limit))
        .take(options.retained())
        .collect();
    let Some(&oldest_kept) = kept.last() else {
        return;
    };
    if kept.len() < options.retained() {
        return;
    }
    let mut doomed: Vec<PathBuf> = Vec::new();
    for id in listing.ids().range(..oldest_kept) {
        if listing.manifests.contains(id) {
            doomed.push(dir.join(format::manifest_name(*id)));
        }
        if listing.states.contains(id) {
            doomed.push(dir.join(format::state_name(*id)));
        }
    }
    for (path, id) in &listing.temps {
        if id.is_some_and(|id| id < oldest_kept) {
            doomed.push(path.clone());
        }
    }
    for path in doomed {
        if let Err(e) = fs.remove(&path) {
            tracing::warn!(file = %path.display(), error = %e, "checkpoint store: could not remove an old checkpoint file");
        }
    }
}
