//! [`DlqPosition`] and [`DlqCut`]: what a checkpoint records of a file
//! dead-letter queue.

use serde::{Deserialize, Serialize};

/// A point in a dead-letter file: where its valid data ended, and what
/// identifies the records before it, so that a file cut back to it later can be
/// checked to be the same file ([`FileDlqWriter::cut_back`](crate::dead_letter::FileDlqWriter::cut_back)).
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{DeadLetter, FileDlqWriter};
/// use weir_supervisor::{ErrorClass, Failure};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let mut writer = FileDlqWriter::<u32>::create(dir.path().join("dead.dlq"))?;
/// let failure = Failure::error(ErrorClass::Permanent, "bad");
/// writer.append(&DeadLetter::new(7, "parse", "job", &failure, 1, 7))?;
/// let position = writer.position();
/// assert_eq!((position.records, position.end), (1, writer.end_offset()));
///
/// writer.append(&DeadLetter::new(8, "parse", "job", &failure, 1, 8))?;
/// writer.cut_back(&position)?; // the letter of 8 is gone
/// assert_eq!(writer.record_count(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqPosition {
    /// The length of the valid data, in bytes, the file header included.
    pub end: u64,
    /// The records before `end`.
    pub records: u64,
    /// The CRC-32 of the last record before `end`; `None` when there is none.
    pub last_crc: Option<u32>,
}

/// Where checkpoint *n* cuts a file dead-letter queue written in checkpoint order
/// (see the [module](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DlqCut {
    /// The letters of every element before barrier *n* are before this position,
    /// and none of an element after it: a restore cuts the file back to it.
    At(DlqPosition),
    /// The letters were not held in order while barrier *n* was in flight (more
    /// than the hold limit were waiting): a restore from this checkpoint leaves
    /// the file as it is, and the letters of replayed elements may be in it twice.
    Unordered,
}
