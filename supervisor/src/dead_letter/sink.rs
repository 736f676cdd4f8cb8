//! [`DeadLetterSink`]: where a supervised stage puts its dead letters.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use super::order::{
    Appender, DlqCut, DlqOrder, DlqPosition, Order, OrderedFile, RunId, current_stage,
};
use super::{DeadLetter, DlqError, FileDlqWriter, MemoryDlq, SyncPolicy};

/// Somewhere dead letters can be stored: the bounded [`MemoryDlq`], or a durable
/// file through [`SharedFileDlq`].
///
/// A sink that cannot take a letter hands it back with the reason, so the caller
/// decides what happens (weir's stages escalate: the pipeline fails rather than
/// drop an element).
pub trait DeadLetterSink<T>: Send + Sync + 'static {
    /// Stores `letter`.
    ///
    /// # Errors
    ///
    /// The letter, handed back, and why it could not be stored (full, I/O error).
    fn offer(&self, letter: DeadLetter<T>) -> Result<(), (DeadLetter<T>, String)>;

    /// The dead-letter file behind this sink, when it is a [`SharedFileDlq`] (or
    /// hands its letters to one): a checkpointed pipeline whose stages dead-letter
    /// into it writes it in checkpoint order through this handle, and cuts it back
    /// on a restore, so that it holds each dead letter once (see
    /// [`order`](super::order)). Default: `None`, the sink is not a file (a
    /// [`MemoryDlq`] lives and dies with the process).
    ///
    /// A sink that wraps a `SharedFileDlq` (to convert its letters, say) returns
    /// the inner one's.
    fn ordered_file(&self) -> Option<DlqOrder> {
        None
    }

    /// Under a memory budget, the share the sink's letters are charged to, if
    /// it holds them in memory (a [`MemoryDlq`] does; a file does not). Called
    /// when a pipeline whose stage dead-letters into the sink starts. A sink
    /// that wraps another passes it on when the element types agree. Default:
    /// nothing is charged.
    fn charge_memory(&self, charge: std::sync::Arc<dyn super::LetterCharge<T>>) {
        let _ = charge;
    }
}

impl<T: Send + 'static> DeadLetterSink<T> for MemoryDlq<T> {
    fn offer(&self, letter: DeadLetter<T>) -> Result<(), (DeadLetter<T>, String)> {
        self.push(letter).map_err(|full| {
            let reason = format!("dead-letter queue full ({} letters)", full.capacity());
            (full.into_letter(), reason)
        })
    }

    fn charge_memory(&self, charge: std::sync::Arc<dyn super::LetterCharge<T>>) {
        self.set_charge(charge);
    }
}

/// A [`FileDlqWriter`] shared by the stages that dead-letter into one file.
///
/// Each letter is appended (and synced, per the writer's
/// [`SyncPolicy`](super::SyncPolicy)) on the failing stage's thread: a failure is
/// rare, and a letter is only acknowledged once it is written. Read the file back
/// with [`FileDlqReader`](super::FileDlqReader), or replay it into a pipeline.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{FileDlqWriter, SharedFileDlq};
///
/// let dir = tempfile::tempdir()?;
/// let writer = FileDlqWriter::<String>::create(dir.path().join("dead.dlq"))?;
/// let sink = SharedFileDlq::new(writer);
/// let same_file = sink.clone();
/// # drop(same_file);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SharedFileDlq<T> {
    shared: Arc<Mutex<Shared<T>>>,
}

/// The writer, and the order of its letters with the checkpoints of the pipeline
/// run attached to it.
#[derive(Debug)]
pub(crate) struct Shared<T> {
    writer: FileDlqWriter<T>,
    order: Option<Order>,
    hold_limit: usize,
}

impl<T> Clone for SharedFileDlq<T> {
    fn clone(&self) -> Self {
        SharedFileDlq {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> SharedFileDlq<T> {
    /// The default [`hold_limit`](Self::hold_limit): 16 MiB of encoded letters.
    pub const DEFAULT_HOLD_LIMIT: usize = 16 * 1024 * 1024;

    /// Shares `writer` between stages.
    pub fn new(writer: FileDlqWriter<T>) -> Self {
        SharedFileDlq {
            shared: Arc::new(Mutex::new(Shared {
                writer,
                order: None,
                hold_limit: Self::DEFAULT_HOLD_LIMIT,
            })),
        }
    }

    /// How many bytes of encoded letters the file may hold back in memory while
    /// a checkpointed pipeline writes it in checkpoint order (see
    /// [`order`](super::order)): the letters of a stage that has passed a
    /// checkpoint's barrier wait until every stage has. Past the limit they are
    /// appended at once, and a restore from the checkpoints whose barriers were
    /// in flight then leaves the file as it is (their letters may be in it
    /// twice). Choose it above the letters your stages write while one barrier
    /// crosses the pipeline (the dead-letter rate times the checkpoints'
    /// alignment time, `CheckpointStats::last_alignment_us`), with room to spare;
    /// it costs nothing while unused. Default
    /// [`DEFAULT_HOLD_LIMIT`](Self::DEFAULT_HOLD_LIMIT).
    pub fn hold_limit(self, bytes: usize) -> Self {
        self.lock().hold_limit = bytes;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Shared<T>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_lock(&self) -> Result<MutexGuard<'_, Shared<T>>, DlqError> {
        self.shared.lock().map_err(|_| DlqError::Poisoned)
    }

    /// Flushes what was written so far.
    ///
    /// # Errors
    ///
    /// The writer's flush error.
    pub fn flush(&self) -> Result<(), DlqError> {
        self.try_lock()?.writer.flush()
    }

    /// Records written so far (letters held back for checkpoint order are not
    /// in the file yet).
    pub fn record_count(&self) -> u64 {
        self.shared.lock().map_or(0, |s| s.writer.record_count())
    }

    /// The offset where the next letter will start: the length of the valid data
    /// ([`FileDlqWriter::end_offset`]). A checkpointing stage records it (after a
    /// [`flush`](Self::flush)) to [`truncate_to`](Self::truncate_to) it on a restore.
    ///
    /// # Errors
    ///
    /// [`DlqError::Poisoned`] if a stage panicked while
    /// writing.
    pub fn end_offset(&self) -> Result<u64, DlqError> {
        Ok(self.try_lock()?.writer.end_offset())
    }

    /// Cuts the file back to `offset`, an [`end_offset`](Self::end_offset) it had
    /// earlier, dropping every letter written after it
    /// ([`FileDlqWriter::truncate_to`]): what a stage restored from a checkpoint
    /// does, so that the letters of the elements it replays are not held twice.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::dead_letter::{
    ///     DeadLetter, DeadLetterSink, FileDlqReader, FileDlqWriter, SharedFileDlq,
    /// };
    /// use weir_supervisor::{ErrorClass, Failure};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("dead.dlq");
    /// let sink = SharedFileDlq::new(FileDlqWriter::<String>::create(&path)?);
    /// let failure = Failure::error(ErrorClass::Permanent, "malformed");
    /// let letter = |s: &str, i| DeadLetter::new(s.to_owned(), "parse", "job", &failure, 1, i);
    /// sink.offer(letter("a", 0)).map_err(|(_, e)| e)?;
    /// sink.flush()?;
    /// let checkpointed = sink.end_offset()?;
    /// sink.offer(letter("b", 1)).map_err(|(_, e)| e)?;
    ///
    /// sink.truncate_to(checkpointed)?; // restored: "b" is replayed
    /// sink.offer(letter("b", 1)).map_err(|(_, e)| e)?;
    /// let letters = FileDlqReader::<String>::open(&path)?.read_all()?.letters;
    /// assert_eq!(letters.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`FileDlqWriter::truncate_to`] (an offset past the end or not where a
    /// letter starts is refused, the file untouched), and
    /// [`DlqError::Poisoned`](super::DlqError::Poisoned) if a stage panicked while
    /// writing.
    pub fn truncate_to(&self, offset: u64) -> Result<(), DlqError> {
        self.try_lock()?.writer.truncate_to(offset)
    }

    /// The path of the file.
    pub fn path(&self) -> PathBuf {
        self.lock().writer.path().to_owned()
    }
}

impl<T: Serialize + Send + 'static> DeadLetterSink<T> for SharedFileDlq<T> {
    fn offer(&self, letter: DeadLetter<T>) -> Result<(), (DeadLetter<T>, String)> {
        let Ok(mut shared) = self.shared.lock() else {
            return Err((letter, "dead-letter file writer poisoned".to_owned()));
        };
        let Shared { writer, order, .. } = &mut *shared;
        let written = match order {
            None => writer.append(&letter).map(drop),
            Some(order) => match current_stage(order.run).filter(|&s| order.has_stage(s)) {
                None => Err(DlqError::Foreign {
                    path: writer.path().to_owned(),
                    pipeline: order.pipeline.clone(),
                }),
                Some(stage) => writer
                    .encode(&letter)
                    .and_then(|record| order.offer(stage, record, writer)),
            },
        };
        match written {
            Ok(()) => Ok(()),
            Err(e @ DlqError::Foreign { .. }) => Err((letter, e.to_string())),
            Err(e) => Err((
                letter,
                format!("dead-letter file {}: {e}", writer.path().display()),
            )),
        }
    }

    fn ordered_file(&self) -> Option<DlqOrder> {
        Some(DlqOrder::new(Arc::clone(&self.shared) as Arc<_>))
    }
}

/// The engine of the checkpoint order appends through the writer.
impl<T> Appender for FileDlqWriter<T> {
    fn append_record(&mut self, record: &[u8]) -> Result<u64, DlqError> {
        FileDlqWriter::append_record(self, record)
    }

    fn position(&self) -> DlqPosition {
        FileDlqWriter::position(self)
    }
}

impl<T: Send + 'static> OrderedFile for Mutex<Shared<T>> {
    fn attach(&self, run: RunId, pipeline: &str, stages: usize) -> Result<(), DlqError> {
        let mut shared = self.lock().map_err(|_| DlqError::Poisoned)?;
        if let Some(order) = &shared.order
            && order.run != run
        {
            return Err(DlqError::InUse {
                path: shared.writer.path().to_owned(),
                pipeline: order.pipeline.clone(),
            });
        }
        let limit = shared.hold_limit;
        shared.order = Some(Order::new(run, pipeline, stages, limit));
        Ok(())
    }

    fn detach(&self, run: RunId) {
        let mut shared = self.lock().unwrap_or_else(PoisonError::into_inner);
        let Shared { writer, order, .. } = &mut *shared;
        if let Some(o) = order
            && o.run == run
        {
            o.finish(writer);
            *order = None;
        }
    }

    fn passed(&self, run: RunId, stage: usize, checkpoint: u64) {
        let mut shared = self.lock().unwrap_or_else(PoisonError::into_inner);
        let Shared { writer, order, .. } = &mut *shared;
        if let Some(o) = order
            && o.run == run
        {
            o.passed(stage, checkpoint, writer);
        }
    }

    fn stopped(&self, run: RunId, stage: usize) {
        let mut shared = self.lock().unwrap_or_else(PoisonError::into_inner);
        let Shared { writer, order, .. } = &mut *shared;
        if let Some(o) = order
            && o.run == run
        {
            o.stopped(stage, writer);
        }
    }

    fn cut(&self, run: RunId, checkpoint: u64) -> Option<DlqCut> {
        let shared = self.lock().unwrap_or_else(PoisonError::into_inner);
        shared
            .order
            .as_ref()
            .filter(|o| o.run == run)
            .and_then(|o| o.cut(checkpoint))
    }

    fn release(&self, run: RunId, checkpoint: u64) {
        let mut shared = self.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = shared.order.as_mut().filter(|o| o.run == run) {
            o.release(checkpoint);
        }
    }

    fn sync(&self) -> Result<(), DlqError> {
        let mut shared = self.lock().map_err(|_| DlqError::Poisoned)?;
        if let Some(why) = shared.order.as_ref().and_then(Order::broken) {
            return Err(DlqError::Io(std::io::Error::other(why.to_owned())));
        }
        if shared.writer.options().sync_policy() == SyncPolicy::Never {
            return Ok(());
        }
        shared.writer.flush()
    }

    fn position(&self) -> Result<DlqPosition, DlqError> {
        Ok(self
            .lock()
            .map_err(|_| DlqError::Poisoned)?
            .writer
            .position())
    }

    fn cut_back(&self, to: &DlqPosition) -> Result<(), DlqError> {
        self.lock()
            .map_err(|_| DlqError::Poisoned)?
            .writer
            .cut_back(to)
    }

    fn path(&self) -> PathBuf {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .writer
            .path()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::FileDlqReader;
    use crate::{ErrorClass, Failure};

    fn letter(text: &str, index: u64) -> DeadLetter<String> {
        let failure = Failure::error(ErrorClass::Permanent, "bad");
        DeadLetter::new(text.to_owned(), "parse", "test", &failure, 1, index)
    }

    fn elements(path: &std::path::Path) -> Vec<String> {
        let read = FileDlqReader::<String>::open(path)
            .unwrap()
            .read_all()
            .unwrap();
        assert!(read.tail.is_clean());
        read.letters.into_iter().map(|l| l.element).collect()
    }

    #[test]
    fn truncate_to_a_recorded_end_offset_drops_what_came_after_in_every_clone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.dlq");
        let sink = SharedFileDlq::new(FileDlqWriter::<String>::create(&path).unwrap());
        let other = sink.clone();
        assert_eq!(sink.path(), path);
        let empty = sink.end_offset().unwrap();
        sink.offer(letter("a", 0)).unwrap();
        let after_a = sink.end_offset().unwrap();
        assert!(after_a > empty);
        other.offer(letter("b", 1)).unwrap();
        other.offer(letter("c", 2)).unwrap();
        assert_eq!(other.end_offset().unwrap(), sink.end_offset().unwrap());
        assert_eq!(sink.record_count(), 3);

        sink.truncate_to(after_a).unwrap();
        assert_eq!(other.end_offset().unwrap(), after_a);
        assert_eq!(other.record_count(), 1);
        other.offer(letter("d", 3)).unwrap();
        sink.flush().unwrap();
        assert_eq!(elements(&path), ["a", "d"]);

        // Not where a letter starts, or past the end: refused, nothing changes.
        assert!(sink.truncate_to(after_a + 1).is_err());
        assert!(sink.truncate_to(sink.end_offset().unwrap() + 100).is_err());
        assert_eq!(elements(&path), ["a", "d"]);

        // Back to no letters at all, and writing goes on.
        sink.truncate_to(empty).unwrap();
        assert_eq!(sink.record_count(), 0);
        sink.offer(letter("e", 4)).unwrap();
        assert_eq!(elements(&path), ["e"]);
    }

    #[test]
    fn a_reopened_file_is_cut_back_to_an_offset_of_the_previous_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.dlq");
        let sink = SharedFileDlq::new(FileDlqWriter::<String>::create(&path).unwrap());
        sink.offer(letter("a", 0)).unwrap();
        sink.flush().unwrap();
        let checkpointed = sink.end_offset().unwrap();
        sink.offer(letter("b", 1)).unwrap();
        drop(sink); // the process dies; the letter after the checkpoint is in the file

        let sink = SharedFileDlq::new(FileDlqWriter::<String>::open_append(&path).unwrap());
        assert_eq!(sink.record_count(), 2);
        sink.truncate_to(checkpointed).unwrap();
        sink.offer(letter("b", 1)).unwrap();
        assert_eq!(elements(&path), ["a", "b"]);
    }

    #[test]
    fn an_attached_file_takes_letters_from_its_runs_stages_in_checkpoint_order() {
        use crate::dead_letter::{DlqCut, RunId, StageScope};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.dlq");
        let sink = SharedFileDlq::new(FileDlqWriter::<String>::create(&path).unwrap());
        let order = sink.ordered_file().unwrap();
        assert!(order.same_file(&sink.clone().ordered_file().unwrap()));
        let (run, other) = (RunId::new(), RunId::new());
        order.attach(run, "job", 2).unwrap();
        let err = order.attach(other, "second", 2).unwrap_err();
        assert!(
            matches!(&err, DlqError::InUse { pipeline, .. } if pipeline == "job"),
            "{err}"
        );

        // From outside the run's stages: refused, naming the file and the pipeline.
        let (back, why) = sink.offer(letter("x", 0)).unwrap_err();
        assert_eq!(back.element, "x");
        assert!(why.contains("dead.dlq") && why.contains("`job`"), "{why}");
        {
            let _elsewhere = StageScope::enter(other, 0);
            assert!(sink.offer(letter("x", 0)).is_err());
        }

        order.passed(run, 0, 1);
        {
            let _s = StageScope::enter(run, 0);
            sink.offer(letter("after", 1)).unwrap();
        }
        {
            let _s = StageScope::enter(run, 1);
            sink.offer(letter("before", 2)).unwrap();
        }
        assert_eq!(sink.record_count(), 1, "the letter after the barrier waits");
        order.sync().unwrap();
        assert_eq!(order.cut(run, 1), None);
        order.passed(run, 1, 1);
        let Some(DlqCut::At(cut)) = order.cut(run, 1) else {
            panic!("no cut")
        };
        assert_eq!(cut.records, 1);
        assert_eq!(elements(&path), ["before", "after"]);

        // A letter held when the run ends is written when it detaches.
        order.passed(run, 0, 2);
        {
            let _s = StageScope::enter(run, 0);
            sink.offer(letter("late", 3)).unwrap();
        }
        assert_eq!(sink.record_count(), 2);
        order.detach(other); // not attached: nothing
        assert_eq!(sink.record_count(), 2);
        order.detach(run);
        assert_eq!(elements(&path), ["before", "after", "late"]);
        // Detached: anyone writes again, and another run may attach.
        sink.offer(letter("free", 4)).unwrap();
        order.attach(other, "second", 1).unwrap();

        order.cut_back(&cut).unwrap();
        assert_eq!(elements(&path), ["before"]);
    }
}
