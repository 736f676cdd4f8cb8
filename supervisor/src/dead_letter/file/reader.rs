//! [`FileDlqReader`]: reads dead letters back from a file.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::frame::{self, Frame, HEADER_LEN, Header, RECORD_HEADER_LEN};
use super::{Elements, FileDlqOptions, ReadOutcome, Tail};
use crate::dead_letter::{DeadLetter, DlqError, ReadError};

/// Reads the dead letters of a file in the [dead-letter file format](super), in the
/// order they were appended.
///
/// The reader is an iterator of `Result<DeadLetter<T>, ReadError>`. It yields every
/// complete record, then stops at the first thing that is not one:
///
/// - at a clean end of file the iteration simply ends;
/// - at a torn or corrupt tail it yields one last `Err(ReadError::Torn { .. })` or
///   `Err(ReadError::Corrupt { .. })`, so `collect::<Result<Vec<_>, _>>()` cannot
///   mistake a damaged file for a complete one; after that it ends.
///
/// Either way [`tail`](Self::tail) then tells how the file ended.
/// [`read_all`](Self::read_all) collects the letters and the tail in one call, and
/// [`elements`](Self::elements) yields the bare elements, to replay them.
///
/// No input makes the reader panic or allocate more than the
/// [maximum record size](FileDlqOptions::max_record_size) plus a decode budget
/// proportional to the record (16 bytes per byte of payload, rounded up).
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{DeadLetter, FileDlqReader, FileDlqWriter, ReadError, Tail};
/// use weir_supervisor::{ErrorClass, Failure};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("events.dlq");
/// let mut writer = FileDlqWriter::create(&path)?;
/// let failure = Failure::error(ErrorClass::Timeout, "sink did not answer");
/// for i in 0..3_u64 {
///     writer.append(&DeadLetter::new(format!("event {i}"), "sink", "events", &failure, 5, i))?;
/// }
/// drop(writer);
///
/// // Simulate a crash in the middle of a fourth record.
/// let mut bytes = std::fs::read(&path)?;
/// bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2]);
/// std::fs::write(&path, &bytes)?;
///
/// let mut reader = FileDlqReader::<String>::open(&path)?;
/// let mut elements = Vec::new();
/// for letter in reader.by_ref() {
///     match letter {
///         Ok(letter) => elements.push(letter.element),
///         Err(ReadError::Torn { bytes, .. }) => assert_eq!(bytes, 6),
///         Err(other) => return Err(other.into()),
///     }
/// }
/// assert_eq!(elements, ["event 0", "event 1", "event 2"]);
/// assert!(matches!(reader.tail(), Some(Tail::Torn { bytes: 6, .. })));
/// # Ok(())
/// # }
/// ```
pub struct FileDlqReader<T> {
    input: BufReader<File>,
    path: PathBuf,
    max_record_size: u32,
    /// The offset of the next record: the end of the last one returned.
    offset: u64,
    records: u64,
    /// Scratch buffer holding one payload.
    payload: Vec<u8>,
    state: State,
    _element: PhantomData<fn() -> T>,
}

/// Where the reader is.
#[derive(Debug)]
enum State {
    /// More records may follow.
    Reading,
    /// The header was torn: report it on the first call, then end.
    Pending(Tail),
    /// The end was reached (and, if torn or corrupt, reported).
    Done(Tail),
    /// An I/O error was reported; how the file ends is unknown.
    Failed,
}

impl<T> FileDlqReader<T> {
    /// Opens the dead-letter file at `path` with the default
    /// [options](FileDlqOptions::new) and checks its header.
    ///
    /// A file that ends inside its header (a crash while it was being created) opens
    /// fine and reports [`Tail::Torn`] at offset 0 right away; an empty file reads as
    /// [`Tail::Clean`] with no letters.
    ///
    /// # Errors
    ///
    /// [`DlqError::BadHeader`] if the file is not a weir dead-letter file,
    /// [`DlqError::UnsupportedVersion`] if it is one of another format version,
    /// [`DlqError::Io`] if it cannot be opened or read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DlqError> {
        Self::open_with(path.as_ref(), FileDlqOptions::new())
    }

    pub(super) fn open_with(path: &Path, options: FileDlqOptions) -> Result<Self, DlqError> {
        let mut input = BufReader::with_capacity(1 << 16, File::open(path)?);
        let state = match frame::read_header(&mut input)? {
            Header::Valid => State::Reading,
            // An empty file holds no letter and lost none.
            Header::Torn(0) => State::Done(Tail::Clean),
            Header::Torn(bytes) => State::Pending(Tail::Torn { offset: 0, bytes }),
        };
        let offset = match state {
            State::Reading => HEADER_LEN,
            _ => 0,
        };
        Ok(FileDlqReader {
            input,
            path: path.to_owned(),
            max_record_size: options.max_record_bytes(),
            offset,
            records: 0,
            payload: Vec::new(),
            state,
            _element: PhantomData,
        })
    }

    /// The path being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset just after the last record returned: where the next one starts, or,
    /// once the iteration ended, the length of the readable data.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The number of letters returned so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// How the file ended, once the iteration has reached the end; `None` before that
    /// and after an I/O error.
    pub fn tail(&self) -> Option<&Tail> {
        match &self.state {
            State::Done(tail) => Some(tail),
            State::Reading | State::Pending(_) | State::Failed => None,
        }
    }

    /// Reads the remaining letters and how the file ends.
    ///
    /// A torn or corrupt tail is not an error here: it is in
    /// [`ReadOutcome::tail`], next to every letter before it.
    ///
    /// # Errors
    ///
    /// [`DlqError::Io`] if reading fails.
    pub fn read_all(mut self) -> Result<ReadOutcome<T>, DlqError>
    where
        T: DeserializeOwned,
    {
        let mut letters = Vec::new();
        for letter in self.by_ref() {
            match letter {
                Ok(letter) => letters.push(letter),
                Err(ReadError::Io(e)) => return Err(DlqError::Io(e)),
                // The tail is kept in the state, read below.
                Err(ReadError::Torn { .. } | ReadError::Corrupt { .. }) => {}
            }
        }
        let tail = self.tail().cloned().unwrap_or(Tail::Clean);
        Ok(ReadOutcome {
            letters,
            tail,
            valid_len: self.offset,
        })
    }

    /// The remaining elements without their metadata, to feed them into a pipeline
    /// again; see [`Elements`].
    pub fn elements(self) -> Elements<T> {
        Elements::new(self)
    }

    /// Ends the iteration at `tail`, yielding it as an error unless it is clean.
    fn finish(&mut self, tail: Tail) -> Option<Result<DeadLetter<T>, ReadError>> {
        let reported = match &tail {
            Tail::Clean => None,
            Tail::Torn { offset, bytes } => Some(Err(ReadError::Torn {
                offset: *offset,
                bytes: *bytes,
            })),
            Tail::Corrupt { offset, reason } => Some(Err(ReadError::Corrupt {
                offset: *offset,
                reason: reason.clone(),
            })),
        };
        self.payload = Vec::new();
        self.state = State::Done(tail);
        reported
    }
}

impl<T: DeserializeOwned> Iterator for FileDlqReader<T> {
    type Item = Result<DeadLetter<T>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match std::mem::replace(&mut self.state, State::Reading) {
            State::Reading => {}
            State::Pending(tail) => return self.finish(tail),
            done @ (State::Done(_) | State::Failed) => {
                self.state = done;
                return None;
            }
        }
        let frame = frame::next_frame(
            &mut self.input,
            self.offset,
            self.max_record_size,
            &mut self.payload,
        );
        match frame {
            Err(e) => {
                self.state = State::Failed;
                Some(Err(ReadError::Io(e)))
            }
            Ok(Frame::End(tail)) => self.finish(tail),
            Ok(Frame::Record) => match frame::decode_payload(&self.payload) {
                Ok(letter) => {
                    self.offset += RECORD_HEADER_LEN + self.payload.len() as u64;
                    self.records += 1;
                    Some(Ok(letter))
                }
                Err(reason) => self.finish(Tail::Corrupt {
                    offset: self.offset,
                    reason,
                }),
            },
        }
    }
}

impl<T: DeserializeOwned> FusedIterator for FileDlqReader<T> {}

// Not derived: the element need not be `Debug`.
impl<T> fmt::Debug for FileDlqReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDlqReader")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("records_read", &self.records)
            .field("max_record_size", &self.max_record_size)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
