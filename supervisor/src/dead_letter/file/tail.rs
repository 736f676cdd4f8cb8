//! [`Tail`] and [`CorruptReason`]: how the readable part of a dead-letter file ends.

use std::fmt;

/// How the readable part of a dead-letter file ends.
///
/// Every complete record before the tail has been returned; the tail says whether
/// anything follows and what. See the [module docs](super#reading-rules) for when each
/// case is reported.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::Tail;
///
/// let tail = Tail::Torn { offset: 120, bytes: 7 };
/// assert!(!tail.is_clean());
/// assert_eq!(tail.offset(), Some(120));
/// assert_eq!(tail.to_string(), "torn record at offset 120 (7 bytes)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The file ends exactly after the last complete record.
    Clean,
    /// The file ends inside a record: a writer crashed (or is still writing) in the
    /// middle of it. Appending after a crash truncates it away.
    Torn {
        /// The offset of the incomplete record (for a torn file header, 0).
        offset: u64,
        /// How many bytes of it the file holds.
        bytes: u64,
    },
    /// The record at `offset` is damaged. Nothing after it is read: the format has no
    /// resynchronisation marks, and guessing where the next record starts could
    /// return garbage as a letter.
    Corrupt {
        /// The offset of the damaged record.
        offset: u64,
        /// What is wrong with it.
        reason: CorruptReason,
    },
}

impl Tail {
    /// Whether the file ends exactly after its last complete record.
    pub fn is_clean(&self) -> bool {
        matches!(self, Tail::Clean)
    }

    /// The offset where the readable part of the file ends, for a torn or corrupt
    /// tail; `None` for a clean one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Tail::Clean => None,
            Tail::Torn { offset, .. } | Tail::Corrupt { offset, .. } => Some(*offset),
        }
    }
}

impl fmt::Display for Tail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tail::Clean => f.write_str("clean end of file"),
            Tail::Torn { offset, bytes } => {
                write!(f, "torn record at offset {offset} ({bytes} bytes)")
            }
            Tail::Corrupt { offset, reason } => {
                write!(f, "corrupt record at offset {offset}: {reason}")
            }
        }
    }
}

/// What is wrong with a corrupt record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptReason {
    /// The length field is 0; a writer never writes an empty record (zeros are what
    /// some file systems leave at the end of a file after a crash).
    Empty,
    /// The length field is larger than the maximum record size. Checked before
    /// anything is allocated; a reader whose maximum is smaller than the writer's
    /// also sees this.
    TooLarge {
        /// The length in the record header.
        len: u32,
        /// The reader's maximum record size.
        max: u32,
    },
    /// The CRC-32 of the payload does not match the one stored in the record header.
    Checksum {
        /// The checksum in the record header.
        stored: u32,
        /// The checksum of the payload as read.
        computed: u32,
    },
    /// The checksum matched but the payload is not a `DeadLetter<T>` for the `T` being
    /// read: the file holds another element type, or was written by an incompatible
    /// build, or a length inside the payload exceeds the decode limit.
    Decode {
        /// bincode's error message.
        message: String,
    },
    /// The payload decoded but did not use all of its bytes: a different element
    /// type, most likely.
    TrailingBytes {
        /// How many bytes the letter used.
        decoded: usize,
        /// The payload's length.
        len: usize,
    },
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptReason::Empty => f.write_str("record length is 0"),
            CorruptReason::TooLarge { len, max } => write!(
                f,
                "record length {len} exceeds the maximum record size of {max} bytes"
            ),
            CorruptReason::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            CorruptReason::Decode { message } => write!(f, "payload does not decode: {message}"),
            CorruptReason::TrailingBytes { decoded, len } => {
                write!(f, "payload decodes from {decoded} of its {len} bytes")
            }
        }
    }
}
