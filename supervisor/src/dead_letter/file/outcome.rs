//! [`ReadOutcome`]: everything a dead-letter file holds, and how it ends.

use super::Tail;
use crate::dead_letter::DeadLetter;

/// The result of [`FileDlqReader::read_all`](super::FileDlqReader::read_all): every
/// complete letter, and how the file ends after them.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{FileDlqReader, FileDlqWriter, Tail};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("empty.dlq");
/// drop(FileDlqWriter::<String>::create(&path)?);
///
/// let outcome = FileDlqReader::<String>::open(&path)?.read_all()?;
/// assert!(outcome.letters.is_empty());
/// assert_eq!(outcome.tail, Tail::Clean);
/// assert_eq!(outcome.valid_len, 10); // just the header
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome<T> {
    /// The letters of every complete record, in append order.
    pub letters: Vec<DeadLetter<T>>,
    /// How the file ends after the last of them.
    pub tail: Tail,
    /// The length of the readable part of the file: the offset just after the last
    /// complete record (0 when the header itself is torn).
    pub valid_len: u64,
}
