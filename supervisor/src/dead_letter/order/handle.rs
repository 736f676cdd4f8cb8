//! [`DlqOrder`]: the handle through which a checkpointed pipeline writes a shared
//! file dead-letter queue in checkpoint order.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::{DlqCut, DlqPosition, RunId};
use crate::dead_letter::DlqError;

/// What a [`DlqOrder`] does to the file behind it (a
/// [`SharedFileDlq`](crate::dead_letter::SharedFileDlq) of any element type).
pub(crate) trait OrderedFile: Send + Sync {
    fn attach(&self, run: RunId, pipeline: &str, stages: usize) -> Result<(), DlqError>;
    fn detach(&self, run: RunId);
    fn passed(&self, run: RunId, stage: usize, checkpoint: u64);
    fn stopped(&self, run: RunId, stage: usize);
    fn cut(&self, run: RunId, checkpoint: u64) -> Option<DlqCut>;
    fn release(&self, run: RunId, checkpoint: u64);
    fn sync(&self) -> Result<(), DlqError>;
    fn position(&self) -> Result<DlqPosition, DlqError>;
    fn cut_back(&self, to: &DlqPosition) -> Result<(), DlqError>;
    fn path(&self) -> PathBuf;
}

/// A [`SharedFileDlq`](crate::dead_letter::SharedFileDlq) seen by the checkpoints
/// of the pipeline that writes to it, whatever its element type: what
/// [`DeadLetterSink::ordered_file`](crate::dead_letter::DeadLetterSink::ordered_file)
/// returns.
///
/// weir's runtime calls these methods; a pipeline's code does not need to. A run
/// [`attach`](Self::attach)es when it starts, reports every stage's barrier
/// passes and stops, takes each checkpoint's [`cut`](Self::cut) when it
/// completes, [`sync`](Self::sync)s the file before the checkpoint is written,
/// and [`detach`](Self::detach)es when it ends; a restore
/// [`cut_back`](Self::cut_back)s the file first. See the [module](super) for
/// the order this keeps.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{
///     DeadLetter, DeadLetterSink, DlqCut, FileDlqReader, FileDlqWriter, RunId, SharedFileDlq,
///     StageScope,
/// };
/// use weir_supervisor::{ErrorClass, Failure};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("dead.dlq");
/// let dlq = SharedFileDlq::new(FileDlqWriter::<u64>::create(&path)?);
/// let order = dlq.ordered_file().expect("a file DLQ");
/// let failure = Failure::error(ErrorClass::Permanent, "bad");
/// let letter = |x| DeadLetter::new(x, "parse", "job", &failure, 1, x);
///
/// // A run of a pipeline of two stages, both writing to the file.
/// let run = RunId::new();
/// order.attach(run, "job", 2)?;
/// order.passed(run, 0, 1); // stage 0 passed barrier 1, stage 1 has not
/// {
///     let _stage0 = StageScope::enter(run, 0);
///     dlq.offer(letter(10)).map_err(|(_, e)| e)?; // after barrier 1: held
/// }
/// {
///     let _stage1 = StageScope::enter(run, 1);
///     dlq.offer(letter(3)).map_err(|(_, e)| e)?; // before it: appended
/// }
/// order.passed(run, 1, 1); // checkpoint 1 is cut after letter 3, then 10 goes in
/// let Some(DlqCut::At(cut)) = order.cut(run, 1) else { unreachable!() };
/// assert_eq!(cut.records, 1);
/// order.detach(run);
///
/// // Restored from checkpoint 1: the letter of element 10 goes, 10 is replayed.
/// order.cut_back(&cut)?;
/// let letters = FileDlqReader::<u64>::open(&path)?.read_all()?.letters;
/// assert_eq!(letters.iter().map(|l| l.element).collect::<Vec<_>>(), [3]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DlqOrder {
    file: Arc<dyn OrderedFile>,
}

impl DlqOrder {
    pub(crate) fn new(file: Arc<dyn OrderedFile>) -> Self {
        DlqOrder { file }
    }

    /// Run `run` of pipeline `pipeline`, of `stages` stages (numbered from 0),
    /// writes to the file from now on, in checkpoint order; every stage is before
    /// its first barrier.
    ///
    /// # Errors
    ///
    /// [`DlqError::InUse`] naming the other pipeline when another run is attached.
    pub fn attach(&self, run: RunId, pipeline: &str, stages: usize) -> Result<(), DlqError> {
        self.file.attach(run, pipeline, stages)
    }

    /// Run `run` has ended: the letters it still held are appended, and the file
    /// is written as it comes again. Nothing if `run` is not attached.
    pub fn detach(&self, run: RunId) {
        self.file.detach(run);
    }

    /// Stage `stage` of `run` passed barrier `checkpoint`: the letters it writes
    /// from now on belong to elements after it. Ignored for a run not attached.
    pub fn passed(&self, run: RunId, stage: usize, checkpoint: u64) {
        self.file.passed(run, stage, checkpoint);
    }

    /// Stage `stage` of `run` stopped: it writes nothing more. Ignored for a run
    /// not attached.
    pub fn stopped(&self, run: RunId, stage: usize) {
        self.file.stopped(run, stage);
    }

    /// The cut of checkpoint `checkpoint` of `run`, once every stage passed its
    /// barrier or stopped; `None` before (or for a run not attached).
    pub fn cut(&self, run: RunId, checkpoint: u64) -> Option<DlqCut> {
        self.file.cut(run, checkpoint)
    }

    /// Forgets the cuts of `run`'s checkpoints before `checkpoint`.
    pub fn release(&self, run: RunId, checkpoint: u64) {
        self.file.release(run, checkpoint);
    }

    /// Syncs the file to stable storage (unless its
    /// [`SyncPolicy`](crate::dead_letter::SyncPolicy) is `Never`): before a
    /// checkpoint whose cut is in it is written, so that the cut is on disk
    /// first.
    ///
    /// # Errors
    ///
    /// The sync failed, the writer is poisoned, or a held letter could not be
    /// appended: the checkpoint must not complete.
    pub fn sync(&self) -> Result<(), DlqError> {
        self.file.sync()
    }

    /// The file's position now.
    ///
    /// # Errors
    ///
    /// [`DlqError::Poisoned`] if a writer panicked while holding the file.
    pub fn position(&self) -> Result<DlqPosition, DlqError> {
        self.file.position()
    }

    /// Cuts the file back to `to`, checking first that it still holds what it
    /// held then ([`FileDlqWriter::cut_back`](crate::dead_letter::FileDlqWriter::cut_back)).
    ///
    /// # Errors
    ///
    /// As [`FileDlqWriter::cut_back`](crate::dead_letter::FileDlqWriter::cut_back):
    /// [`DlqError::Mismatch`] for a file shorter than `to` or holding other
    /// records.
    pub fn cut_back(&self, to: &DlqPosition) -> Result<(), DlqError> {
        self.file.cut_back(to)
    }

    /// The path of the file, as it was opened.
    pub fn path(&self) -> PathBuf {
        self.file.path()
    }

    /// Whether `self` and `other` are the same file (clones of one
    /// [`SharedFileDlq`](crate::dead_letter::SharedFileDlq)).
    pub fn same_file(&self, other: &DlqOrder) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.file), Arc::as_ptr(&other.file))
    }
}

impl fmt::Debug for DlqOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlqOrder")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}
