//! [`Elements`]: the bare elements of a dead-letter file, for replay.

use std::fmt;
use std::iter::FusedIterator;

use serde::de::DeserializeOwned;

use super::{FileDlqReader, Tail};
use crate::dead_letter::ReadError;

/// The elements of a dead-letter file without their metadata, in append order: what
/// a source needs to feed dead letters into a pipeline again.
///
/// Made by [`FileDlqReader::elements`]. Like the reader, it ends with one
/// `Err(ReadError::Torn { .. })` or `Err(ReadError::Corrupt { .. })` when the file
/// does not end cleanly, so a replay cannot miss that part of the file was lost;
/// [`tail`](Self::tail) tells how it ended.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{DeadLetter, FileDlqReader, FileDlqWriter, Tail};
/// use weir_supervisor::{ErrorClass, Failure};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("retry-later.dlq");
/// let mut writer = FileDlqWriter::create(&path)?;
/// let failure = Failure::error(ErrorClass::Transient, "service unavailable");
/// for n in [3_u32, 1, 4] {
///     writer.append(&DeadLetter::new(n, "call", "batch", &failure, 8, u64::from(n)))?;
/// }
/// drop(writer);
///
/// let mut replay = FileDlqReader::<u32>::open(&path)?.elements();
/// let elements = replay.by_ref().collect::<Result<Vec<u32>, _>>()?;
/// assert_eq!(elements, [3, 1, 4]);
/// assert_eq!(replay.tail(), Some(&Tail::Clean));
/// # Ok(())
/// # }
/// ```
pub struct Elements<T> {
    reader: FileDlqReader<T>,
}

impl<T> Elements<T> {
    pub(super) fn new(reader: FileDlqReader<T>) -> Self {
        Elements { reader }
    }

    /// How the file ended, once the iteration has reached the end; see
    /// [`FileDlqReader::tail`].
    pub fn tail(&self) -> Option<&Tail> {
        self.reader.tail()
    }

    /// The reader underneath, to look at its offset or record count.
    pub fn reader(&self) -> &FileDlqReader<T> {
        &self.reader
    }
}

impl<T: DeserializeOwned> Iterator for Elements<T> {
    type Item = Result<T, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader
            .next()
            .map(|letter| letter.map(|letter| letter.element))
    }
}

impl<T: DeserializeOwned> FusedIterator for Elements<T> {}

// Not derived: the element need not be `Debug`.
impl<T> fmt::Debug for Elements<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elements")
            .field("reader", &self.reader)
            .finish()
    }
}
