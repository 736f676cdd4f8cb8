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
