//! The durable file dead-letter queue: its format, writer and reader.
//!
//! A dead-letter file is append-only. [`FileDlqWriter`] appends one record per dead
//! letter; [`FileDlqReader`] reads them back in order, and its
//! [`elements`](FileDlqReader::elements) replay the bare elements into a pipeline.
//! [`FileDlqOptions`] sets the [`SyncPolicy`] and the maximum record size.
//!
//! # Format (version 1)
//!
//! All integers are little-endian. A file is a header followed by zero or more
//! records, back to back, up to the end of the file; there is no footer and no
//! index.
//!
//! ```text
//! offset 0                               8            10
//!        +-------------------------------+------------+
//!        | magic  "WEIRDLQ1"  (8 bytes)  | version u16|   file header, 10 bytes
//!        +-------------------------------+------------+
//!
//! offset 10 (first record), then each record right after the previous one
//!        +------------+------------+---------------------------------------+
//!        | len    u32 | crc32  u32 | payload: `len` bytes                  |
//!        +------------+------------+---------------------------------------+
//!        |<-------- 8 bytes ------>|<--------------- len ----------------->|
//! ```
//!
//! - **magic**: the ASCII bytes `WEIRDLQ1` (`57 45 49 52 44 4c 51 31`).
//! - **version**: `u16`, `01 00` for this version. A reader refuses any other
//!   ([`DlqError::UnsupportedVersion`](super::DlqError::UnsupportedVersion)).
//! - **len**: `u32`, the payload length in bytes, from 1 to the maximum record size
//!   ([16 MiB](FileDlqOptions::DEFAULT_MAX_RECORD_SIZE) unless configured).
//! - **crc32**: `u32`, the CRC-32 (IEEE 802.3, reflected polynomial `0xEDB88320`, as
//!   in zlib and `crc32fast`) of the payload bytes only.
//! - **payload**: the [`DeadLetter<T>`](super::DeadLetter) encoded with serde and
//!   bincode 2 in its `config::standard()` configuration: little-endian, variable
//!   length integers (a value below 251 is one byte; 251, 252, 253 prefix a `u16`,
//!   `u32`, `u64`), strings as a varint length and UTF-8 bytes, enum variants as a
//!   varint index. The fields follow in declaration order: `element` (in `T`'s serde
//!   form), `stage`, `pipeline`, `class` (the [`ErrorClass`](crate::ErrorClass)
//!   variant index), `error`, `attempts`, `at` (milliseconds since the UNIX epoch) and
//!   `element_index`.
//!
//! The payload has no type tag: the reader must use the `T` the writer used. The
//! order of `DeadLetter`'s fields and of `ErrorClass`'s variants is part of the
//! format; changing either needs a new version.
//!
//! # Writing
//!
//! A writer builds the whole record in memory, checks its size (a letter larger than
//! the maximum is refused with [`DlqError::RecordTooLarge`](super::DlqError::RecordTooLarge), nothing
//! written), then writes it with one `write_all` at the end of the valid data. Only
//! one writer appends to a file at a time (an exclusive advisory lock). Reopening for
//! append scans the records and cuts a torn tail off before the first append, so
//! records always follow each other without gaps or garbage between them.
//!
//! # Reading rules
//!
//! A reader walks the records from offset 10 and stops at the first one that is not
//! complete and sound, reporting how the file ends as a [`Tail`]:
//!
//! | At the current offset the file holds…                           | Outcome               |
//! |------------------------------------------------------------------|-----------------------|
//! | nothing                                                          | [`Tail::Clean`]       |
//! | 1–7 bytes, or a record header whose payload is cut short          | [`Tail::Torn`]        |
//! | `len` = 0                                                        | [`CorruptReason::Empty`] |
//! | `len` > the maximum record size (checked before any allocation)  | [`CorruptReason::TooLarge`] |
//! | a payload whose CRC-32 differs from `crc32`                      | [`CorruptReason::Checksum`] |
//! | a payload that does not decode as `DeadLetter<T>` within the decode limit | [`CorruptReason::Decode`] |
//! | a payload with bytes left over after the letter                  | [`CorruptReason::TrailingBytes`] |
//!
//! A file that ends inside its 10-byte header opens and reports `Tail::Torn` at
//! offset 0 (an empty file: `Tail::Clean`, no letters); a header with other bytes is
//! refused
//! ([`DlqError::BadHeader`](super::DlqError::BadHeader)).
//!
//! The reader never resynchronises past a corrupt record: records after it are not
//! returned, because a length field that cannot be trusted gives no safe place to
//! start again. A damaged length field that points past the end of the file looks
//! like a torn record.
//!
//! bincode decodes each payload with a size limit of 16 bytes per payload byte
//! (rounded up to 64 KiB, 1 MiB, 16 MiB, 256 MiB or 64 GiB), so a length prefix inside
//! a payload cannot make the reader allocate more than that. No input makes the
//! reader panic.
//!
//! # Guarantees
//!
//! - Every record is either returned whole or part of the reported tail; the reader
//!   never returns a partial or damaged letter.
//! - A crash of the writing process loses no record whose
//!   [`append`](FileDlqWriter::append) returned.
//! - A crash of the machine loses at most the records appended since the last sync,
//!   as the [`SyncPolicy`] sets it (none with the default
//!   [`EveryRecord`](SyncPolicy::EveryRecord)); they show up as a torn or corrupt
//!   tail, which reopening for append truncates (a corrupt one only if
//!   [allowed](FileDlqOptions::truncate_corrupt_tail)).

mod elements;
#[cfg(test)]
mod fault_tests;
mod frame;
mod options;
mod outcome;
mod reader;
mod sync_policy;
mod tail;
#[cfg(test)]
mod tests;
mod writer;

pub use elements::Elements;
pub use options::FileDlqOptions;
pub use outcome::ReadOutcome;
pub use reader::FileDlqReader;
pub use sync_policy::SyncPolicy;
pub use tail::{CorruptReason, Tail};
pub use writer::FileDlqWriter;
