//! The file dead-letter queues a checkpointed pipeline's supervision writes to:
//! written in checkpoint order while it runs, cut back to the checkpoint on a
//! restore, so that each holds every dead letter once.
//!
//! ```text
//!  build: every SharedFileDlq a stage's supervision writes to ──attach(run)──► written in
//!         checkpoint order (a letter of a stage ahead of a barrier waits for the others)
//!  each barrier pass / stop ──► the file's order;  all stages passed n ──► n's cut
//!  checkpoint n complete ──► its record "dead-letters:<path>" = n's cut; the file is synced
//!         before the checkpoint is written
//!  restore from n ──► the file is cut back to n's cut before any stage starts
//!  no checkpoint yet ──► cut back to where the first run found it (dead-letters-start.json)
//! ```
//!
//! See `weir_supervisor::dead_letter::order` for why the cut is consistent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use weir_supervisor::dead_letter::{DlqCut, DlqOrder, DlqPosition, RunId, StageScope};

use super::store::CheckpointData;
use super::{CheckpointConfig, Deferred, RestoreContext, Snapshot};
use crate::error::BuildError;

/// The kind of a dead-letter file's record in a checkpoint.
pub(crate) const KIND: &str = "file-dlq";
/// The version of that record's encoding.
const VERSION: u32 = 1;
/// Where a run that found no checkpoint records each file's position at its
/// start, in the checkpoint directory.
const START_NAME: &str = "dead-letters-start.json";

/// What a checkpoint records of one dead-letter file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The file, canonical.
    path: String,
    cut: DlqCut,
}

/// What the first run without a checkpoint found.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Start {
    version: u32,
    /// Per file (canonical path): its position when that run started.
    files: BTreeMap<String, DlqPosition>,
}

/// One file.
#[derive(Debug)]
struct File {
    order: DlqOrder,
    /// Its canonical path: how a checkpoint names it.
    key: String,
}

impl File {
    fn record_name(&self) -> String {
        record_name(&self.key)
    }
}

/// The name of a file's record in a checkpoint.
fn record_name(key: &str) -> String {
    format!("dead-letters:{key}")
}

/// The dead-letter files of one run of a checkpointed pipeline.
#[derive(Debug)]
pub(crate) struct DeadLetterFiles {
    run: RunId,
    /// Emptied when the run ends: the files are let go of (a handle on the ended
    /// pipeline keeps none open).
    files: Mutex<Vec<File>>,
    /// Whether `files` is not empty: read by every stage's every run.
    active: AtomicBool,
}

impl DeadLetterFiles {
    /// No file.
    pub(crate) fn none() -> Self {
        DeadLetterFiles {
            run: RunId::new(),
            files: Mutex::new(Vec::new()),
            active: AtomicBool::new(false),
        }
    }

    /// The files among `found` (per stage: its name and the file its supervision
    /// writes to), each once, attached to a new run of pipeline `pipeline` of
    /// `stages` stages.
    ///
    /// # Errors
    ///
    /// A file another checkpointed pipeline still writes to, naming the stage.
    pub(crate) fn attach(
        found: Vec<(String, DlqOrder)>,
        pipeline: &str,
        stages: usize,
    ) -> Result<Self, BuildError> {
        let this = DeadLetterFiles::none();
        let mut files = Vec::new();
        for (stage, order) in found {
            if files.iter().any(|f: &File| f.order.same_file(&order)) {
                continue;
            }
            order
                .attach(this.run, pipeline, stages)
                .map_err(|e| BuildError::InvalidArgument {
                    stage,
                    message: format!("its supervision's dead letters: {e}"),
                })?;
            let path = order.path();
            let key = std::fs::canonicalize(&path)
                .unwrap_or(path)
                .display()
                .to_string();
            files.push(File { order, key });
        }
        this.active.store(!files.is_empty(), Relaxed);
        *this.files() = files;
        Ok(this)
    }

    /// Marks this thread as running stage `stage`, so that its letters are
    /// placed by its barriers.
    pub(crate) fn enter(&self, stage: usize) -> Option<StageScope> {
        self.active
            .load(Relaxed)
            .then(|| StageScope::enter(self.run, stage))
    }

    /// Stage `stage` passed barrier `checkpoint`.
    pub(crate) fn passed(&self, stage: usize, checkpoint: u64) {
        for f in self.files().iter() {
            f.order.passed(self.run, stage, checkpoint);
        }
    }

    /// Stage `stage` stopped.
    pub(crate) fn stopped(&self, stage: usize) {
        for f in self.files().iter() {
            f.order.stopped(self.run, stage);
        }
    }

    /// The records of checkpoint `checkpoint`, complete (every stage passed its
    /// barrier): each file's cut, as `(name, kind, state)`. A file with no cut
    /// (it cannot happen once every stage acknowledged) is left out, with a
    /// warning: a restore from the checkpoint leaves it as it is.
    pub(crate) fn records(&self, checkpoint: u64) -> Vec<(String, &'static str, Deferred)> {
        let mut records = Vec::new();
        for f in self.files().iter() {
            let cut = f.order.cut(self.run, checkpoint);
            f.order.release(self.run, checkpoint);
            let Some(cut) = cut else {
                tracing::warn!(file = %f.key, checkpoint, "dead-letter file: no cut for the checkpoint; a restore from it leaves the file as it is");
                continue;
            };
            if cut == DlqCut::Unordered {
                tracing::warn!(
                    file = %f.key,
                    checkpoint,
                    "dead-letter file: more letters waited for the barrier than its hold limit; \
                     a restore from this checkpoint leaves the file as it is (at least once)"
                );
            }
            let record = Record {
                path: f.key.clone(),
                cut,
            };
            match Snapshot::of(VERSION, &record) {
                Ok(state) => records.push((f.record_name(), KIND, Deferred::ready(state))),
                Err(e) => {
                    tracing::warn!(file = %f.key, error = %e, "dead-letter file: its cut does not encode")
                }
            }
        }
        records
    }

    /// The files, for the writer thread to sync before a checkpoint is written.
    pub(crate) fn orders(&self) -> Vec<(String, DlqOrder)> {
        self.files()
            .iter()
            .map(|f| (f.key.clone(), f.order.clone()))
            .collect()
    }

    fn files(&self) -> MutexGuard<'_, Vec<File>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The run has ended: every letter still held goes to its file, and the files
    /// are let go of.
    pub(crate) fn detach(&self) {
        self.active.store(false, Relaxed);
        let files = std::mem::take(&mut *self.files());
        for f in files {
            f.order.detach(self.run);
        }
    }

    /// Restored from checkpoint `data`: cuts every file back to the cut it
    /// records, before any stage starts.
    ///
    /// # Errors
    ///
    /// [`BuildError::CheckpointMismatch`] naming the file when it does not hold
    /// what the checkpoint recorded (shorter, or other records: truncated,
    /// replaced or rotated since); `CheckpointConfig::discard_state` with the
    /// record's name leaves it as it is instead.
    pub(crate) fn restore(
        &self,
        data: &CheckpointData,
        config: &CheckpointConfig,
        ctx: &RestoreContext,
    ) -> Result<(), BuildError> {
        let mut cuts: BTreeMap<String, DlqCut> = BTreeMap::new();
        for s in data.stages.iter().filter(|s| s.kind == KIND) {
            let record: Record =
                s.snapshot
                    .decode(VERSION, ctx)
                    .map_err(|e| BuildError::CheckpointMismatch {
                        checkpoint: data.id,
                        stage: s.stage.clone(),
                        reason: e.to_string(),
                    })?;
            cuts.insert(record.path, record.cut);
        }
        for f in self.files().iter() {
            let name = f.record_name();
            match cuts.remove(&f.key) {
                None => tracing::info!(
                    file = %f.key,
                    checkpoint = data.id,
                    "dead-letter file not in the checkpoint: kept as it is"
                ),
                Some(_) if config.discard.contains(&name) => tracing::warn!(
                    file = %f.key,
                    checkpoint = data.id,
                    "dead-letter file: its cut is discarded (discard_state): kept as it is"
                ),
                Some(DlqCut::Unordered) => tracing::warn!(
                    file = %f.key,
                    checkpoint = data.id,
                    "dead-letter file: the checkpoint has no cut for it (its hold limit was \
                     reached): kept as it is, replayed letters may be in it twice"
                ),
                Some(DlqCut::At(position)) => {
                    f.order
                        .cut_back(&position)
                        .map_err(|e| BuildError::CheckpointMismatch {
                            checkpoint: data.id,
                            stage: name.clone(),
                            reason: format!(
                                "{e}; to keep the file as it is (the letters of replayed \
                                 elements may then be in it twice), \
                                 CheckpointConfig::discard_state({name:?})"
                            ),
                        })?;
                    tracing::info!(file = %f.key, checkpoint = data.id, records = position.records, "dead-letter file cut back to the checkpoint");
                }
            }
        }
        for path in cuts.keys() {
            tracing::warn!(
                file = %path,
                checkpoint = data.id,
                "the checkpoint has a cut for a dead-letter file the pipeline no longer \
                 writes to: left as it is"
            );
        }
        Ok(())
    }

    /// A start without a checkpoint: a file the start record (of the first run
    /// without one, which left no checkpoint) knows is cut back to where that run
    /// found it; the others are recorded as they are now. `restore` false
    /// (`no_restore`): every file is recorded as it is now.
    ///
    /// # Errors
    ///
    /// [`BuildError::CheckpointDir`] when the record cannot be read or written,
    /// or a file does not hold what it recorded (naming the file).
    pub(crate) fn fresh_start(&self, dir: &Path, restore: bool) -> Result<(), BuildError> {
        if self.files().is_empty() {
            return Ok(());
        }
        let path = dir.join(START_NAME);
        let dir_err = |reason: String| BuildError::CheckpointDir {
            dir: dir.display().to_string(),
            reason,
        };
        let mut start = match std::fs::read(&path) {
            Ok(bytes) if restore => serde_json::from_slice::<Start>(&bytes)
                .map_err(|e| dir_err(format!("{}: {e}", path.display())))?,
            Ok(_) => Start::default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Start::default(),
            Err(e) => return Err(dir_err(format!("{}: {e}", path.display()))),
        };
        let mut changed = false;
        for f in self.files().iter() {
            match start.files.get(&f.key) {
                Some(position) => {
                    f.order.cut_back(position).map_err(|e| {
                        dir_err(format!(
                            "{e} (where the first run from this directory found it, in {}; \
                             delete that entry to keep the file as it is)",
                            path.display()
                        ))
                    })?;
                    tracing::info!(file = %f.key, records = position.records, "no checkpoint: dead-letter file cut back to where the first run found it");
                }
                None => {
                    let position = f
                        .order
                        .position()
                        .map_err(|e| dir_err(format!("dead-letter file {}: {e}", f.key)))?;
                    start.files.insert(f.key.clone(), position);
                    changed = true;
                }
            }
        }
        if changed {
            start.version = 1;
            write_start(&path, &start).map_err(|e| dir_err(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }
}

impl Drop for DeadLetterFiles {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Writes the start record through a temporary file, synced and renamed.
fn write_start(path: &Path, start: &Start) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec_pretty(start).map_err(std::io::Error::other)?;
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("json.part");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl crate::pipeline::shared::PipelineShared {
    /// Marks this thread as running stage `stage` while the scope lives, when
    /// the pipeline writes a file dead-letter queue in checkpoint order (the
    /// stage and junction actors enter it around their work).
    pub(crate) fn dead_letter_scope(&self, stage: usize) -> Option<StageScope> {
        self.checkpoints.as_ref()?.stage_scope(stage)
    }
}
