//! [`DeadLetterSink`]: where a supervised stage puts its dead letters.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{DeadLetter, FileDlqWriter, MemoryDlq};

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
}

impl<T: Send + 'static> DeadLetterSink<T> for MemoryDlq<T> {
    fn offer(&self, letter: DeadLetter<T>) -> Result<(), (DeadLetter<T>, String)> {
        self.push(letter).map_err(|full| {
            let reason = format!("dead-letter queue full ({} letters)", full.capacity());
            (full.into_letter(), reason)
        })
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
    writer: Arc<Mutex<FileDlqWriter<T>>>,
}

impl<T> Clone for SharedFileDlq<T> {
    fn clone(&self) -> Self {
        SharedFileDlq {
            writer: Arc::clone(&self.writer),
        }
    }
}

impl<T> SharedFileDlq<T> {
    /// Shares `writer` between stages.
    pub fn new(writer: FileDlqWriter<T>) -> Self {
        SharedFileDlq {
            writer: Arc::new(Mutex::new(writer)),
        }
    }

    /// Flushes what was written so far.
    ///
    /// # Errors
    ///
    /// The writer's flush error.
    pub fn flush(&self) -> Result<(), super::DlqError> {
        self.writer
            .lock()
            .map_err(|_| super::DlqError::Poisoned)?
            .flush()
    }

    /// Records written so far.
    pub fn record_count(&self) -> u64 {
        self.writer.lock().map_or(0, |w| w.record_count())
    }

    /// The offset where the next letter will start: the length of the valid data
    /// ([`FileDlqWriter::end_offset`]). A checkpointing stage records it (after a
    /// [`flush`](Self::flush)) to [`truncate_to`](Self::truncate_to) it on a restore.
    ///
    /// # Errors
    ///
    /// [`DlqError::Poisoned`](super::DlqError::Poisoned) if a stage panicked while
    /// writing.
    pub fn end_offset(&self) -> Result<u64, super::DlqError> {
        Ok(self
            .writer
            .lock()
            .map_err(|_| super::DlqError::Poisoned)?
            .end_offset())
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
    pub fn truncate_to(&self, offset: u64) -> Result<(), super::DlqError> {
        self.writer
            .lock()
            .map_err(|_| super::DlqError::Poisoned)?
            .truncate_to(offset)
    }

    /// The path of the file.
    pub fn path(&self) -> std::path::PathBuf {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .path()
            .to_owned()
    }
}

impl<T: Serialize + Send + 'static> DeadLetterSink<T> for SharedFileDlq<T> {
    fn offer(&self, letter: DeadLetter<T>) -> Result<(), (DeadLetter<T>, String)> {
        let mut writer = match self.writer.lock() {
            Ok(writer) => writer,
            Err(_) => return Err((letter, "dead-letter file writer poisoned".to_owned())),
        };
        match writer.append(&letter) {
            Ok(_) => Ok(()),
            Err(e) => Err((
                letter,
                format!("dead-letter file {}: {e}", writer.path().display()),
            )),
        }
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
}
