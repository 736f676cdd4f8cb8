//! Errors of the dead-letter queues.

use std::fmt;
use std::io;

use super::{CorruptReason, DeadLetter, Tail};

/// An error of the file dead-letter queue: opening, validating or appending.
///
/// Reading records returns a [`ReadError`]; it converts into `DlqError` (as
/// [`DlqError::Read`]) so both work with `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlqError {
    /// An I/O operation on the dead-letter file failed. Nothing is known about the
    /// record being written, except that a failed append removes what it wrote (see
    /// [`DlqError::Poisoned`] for when it cannot).
    #[error("I/O error on the dead-letter file: {0}")]
    Io(#[from] io::Error),

    /// The letter could not be encoded with bincode (its `Serialize` impl failed).
    /// Nothing was written.
    #[error("could not encode the dead letter")]
    Encode(#[from] bincode::error::EncodeError),

    /// The encoded letter is larger than the writer's maximum record size. Nothing was
    /// written; raise the maximum (readers must use at least the same one) or shrink
    /// the element.
    #[error(
        "encoded dead letter is {size} bytes, more than the maximum record size of {max} bytes"
    )]
    RecordTooLarge {
        /// The size of the encoded letter, in bytes.
        size: usize,
        /// The maximum record size in force, in bytes.
        max: u32,
    },

    /// The file does not start with the `WEIRDLQ1` magic: it is not a weir
    /// dead-letter file.
    #[error("not a weir dead-letter file: it starts with {found:02x?}, not the WEIRDLQ1 header")]
    BadHeader {
        /// The first bytes of the file (at most the header's length).
        found: Vec<u8>,
    },

    /// The file is a weir dead-letter file of a format version this build cannot read.
    #[error(
        "dead-letter file format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version in the file header.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },

    /// Reading the records already in the file failed; when opening for append, this
    /// is a corrupt record that the writer will not append after (see
    /// [`FileDlqOptions::truncate_corrupt_tail`](super::FileDlqOptions::truncate_corrupt_tail)).
    #[error(transparent)]
    Read(#[from] ReadError),

    /// Another writer holds the file's lock: only one writer may append to a
    /// dead-letter file at a time.
    #[error("another writer holds the dead-letter file")]
    Locked,

    /// Making the written records durable (`sync_data`) failed. The records appended
    /// since the last successful sync — the one just appended included — may or may
    /// not survive a machine crash, and the kernel may have dropped their unsynced
    /// pages, so the writer is poisoned: reopen the file with
    /// [`FileDlqWriter::open_append`](super::FileDlqWriter::open_append).
    ///
    /// The writer's I/O errors, this one's source and [`DlqError::Io`]'s, name
    /// the file in their message.
    #[error("could not sync the dead-letter file to stable storage: {0}")]
    Sync(#[source] io::Error),

    /// An earlier failure left the writer in an unknown state (a failed write whose
    /// partial record could not be removed, or a failed sync); it refuses to append.
    /// Reopen the file with
    /// [`FileDlqWriter::open_append`](super::FileDlqWriter::open_append), which
    /// removes a torn tail.
    #[error("the dead-letter writer is poisoned by an earlier failure; reopen the file")]
    Poisoned,

    /// The file does not hold what a recorded [`DlqPosition`](super::DlqPosition)
    /// says it held (it is shorter, or the records before the position differ): it
    /// was truncated, replaced or rotated since. Nothing was changed.
    #[error("dead-letter file {}: {reason}", path.display())]
    Mismatch {
        /// The file.
        path: std::path::PathBuf,
        /// What differs.
        reason: String,
    },

    /// The file belongs to a checkpointed pipeline, which orders its letters with
    /// its checkpoints, and the letter was offered from outside that pipeline's
    /// stages: it could not be placed before or after a checkpoint, and a restore
    /// could cut it off. Nothing was written.
    #[error(
        "dead-letter file {}: it is written in checkpoint order by pipeline `{pipeline}`, and \
         this letter comes from outside its stages (a restore could cut it off); write it \
         from a stage of that pipeline, or to another file",
        path.display()
    )]
    Foreign {
        /// The file.
        path: std::path::PathBuf,
        /// The pipeline it belongs to.
        pipeline: String,
    },

    /// Another checkpointed pipeline, still running, orders its letters with its
    /// checkpoints: one file takes the letters of one checkpointed pipeline at a
    /// time.
    #[error(
        "dead-letter file {}: checkpointed pipeline `{pipeline}` writes to it (one \
         checkpointed pipeline per file at a time)",
        path.display()
    )]
    InUse {
        /// The file.
        path: std::path::PathBuf,
        /// The pipeline that has it.
        pipeline: String,
    },
}

/// An error while reading the records of a dead-letter file.
///
/// [`ReadError::Torn`] and [`ReadError::Corrupt`] describe the end of the readable
/// part of the file, the same as the matching [`Tail`]; every complete record before
/// it has been returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Reading the file failed.
    #[error("I/O error while reading the dead-letter file: {0}")]
    Io(#[from] io::Error),

    /// The file ends inside a record: the writer stopped (or is still) in the middle
    /// of writing it. See [`Tail::Torn`].
    #[error("torn record at offset {offset}: the file ends {bytes} bytes into it")]
    Torn {
        /// The offset of the incomplete record.
        offset: u64,
        /// How many bytes of it the file holds.
        bytes: u64,
    },

    /// The record at `offset` is damaged. Reading stops there: records after it are
    /// not looked for. See [`Tail::Corrupt`].
    #[error("corrupt record at offset {offset}: {reason}")]
    Corrupt {
        /// The offset of the damaged record.
        offset: u64,
        /// What is wrong with it.
        reason: CorruptReason,
    },
}

impl ReadError {
    /// The tail this error describes, or `None` for an I/O error.
    pub fn tail(&self) -> Option<Tail> {
        match self {
            ReadError::Io(_) => None,
            ReadError::Torn { offset, bytes } => Some(Tail::Torn {
                offset: *offset,
                bytes: *bytes,
            }),
            ReadError::Corrupt { offset, reason } => Some(Tail::Corrupt {
                offset: *offset,
                reason: reason.clone(),
            }),
        }
    }
}

/// The error of [`MemoryDlq::try_new`](super::MemoryDlq::try_new) when the capacity
/// is 0: a queue that can hold nothing would hand every letter back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a dead-letter queue needs a capacity of at least 1, not 0")]
pub struct InvalidCapacity;

/// The error of [`MemoryDlq::push`](super::MemoryDlq::push) when the queue is full: it
/// gives the letter back.
///
/// A full dead-letter queue is a decision for the caller's policy — hold the element
/// and backpressure, or fail the pipeline — never a silent drop, so the letter comes
/// back instead of vanishing.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{DeadLetter, MemoryDlq};
/// use weir_supervisor::{ErrorClass, Failure};
///
/// let dlq = MemoryDlq::new(1);
/// let failure = Failure::error(ErrorClass::Permanent, "bad");
/// dlq.push(DeadLetter::new(1, "s", "p", &failure, 1, 0)).unwrap();
///
/// let full = dlq.push(DeadLetter::new(2, "s", "p", &failure, 1, 1)).unwrap_err();
/// assert_eq!(full.capacity(), 1);
/// assert_eq!(full.into_letter().element, 2);
/// ```
pub struct DlqFull<T> {
    letter: DeadLetter<T>,
    capacity: usize,
}

impl<T> DlqFull<T> {
    pub(crate) fn new(letter: DeadLetter<T>, capacity: usize) -> Self {
        DlqFull { letter, capacity }
    }

    /// The letter that did not fit.
    pub fn letter(&self) -> &DeadLetter<T> {
        &self.letter
    }

    /// Gives the letter that did not fit back.
    pub fn into_letter(self) -> DeadLetter<T> {
        self.letter
    }

    /// The capacity of the queue that was full.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

// Not derived: the element need not be `Debug` for the error to be reported.
impl<T> fmt::Debug for DlqFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DlqFull")
            .field("stage", &self.letter.stage)
            .field("element_index", &self.letter.element_index)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for DlqFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dead-letter queue is full ({} letters); the letter from stage `{}` was handed back",
            self.capacity, self.letter.stage
        )
    }
}

impl<T> std::error::Error for DlqFull<T> {}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn sources_are_kept() {
        let err = DlqError::from(io::Error::other("disk gone"));
        assert!(err.source().is_some());
        let err = DlqError::Sync(io::Error::other("EIO"));
        assert!(err.source().is_some());
        // The cause is in the message: a CLI printing the error alone says why.
        let exists = DlqError::from(io::Error::from(io::ErrorKind::AlreadyExists));
        assert_eq!(
            exists.to_string(),
            "I/O error on the dead-letter file: entity already exists"
        );
        let read = DlqError::from(ReadError::Io(io::Error::other("x")));
        // Transparent: the I/O error is the source of the inner error.
        assert!(read.source().is_some());
    }

    #[test]
    fn messages_name_sizes_and_offsets() {
        let err = DlqError::RecordTooLarge { size: 20, max: 10 };
        assert!(err.to_string().contains("20 bytes"));
        let err = DlqError::BadHeader {
            found: b"GIF8".to_vec(),
        };
        assert!(err.to_string().contains("47"), "{err}");
        let err = ReadError::Torn {
            offset: 42,
            bytes: 3,
        };
        assert_eq!(
            err.tail(),
            Some(Tail::Torn {
                offset: 42,
                bytes: 3
            })
        );
        assert!(err.to_string().contains("offset 42"));
    }
}
