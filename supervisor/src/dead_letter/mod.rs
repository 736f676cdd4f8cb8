//! Dead letters: the elements weir gave up on, kept with the reason why.
//!
//! A **dead letter** ([`DeadLetter`]) is an element that a stage's operator could not
//! process, together with the stage and pipeline names, the class and message of the
//! last failure, the number of attempts, the time and the element's position in the
//! stage's input. The element itself is kept unchanged so it can be inspected and
//! replayed.
//!
//! # When weir writes one
//!
//! The supervision policy decides, per failure class: an element is dead-lettered
//! when its retries are used up (`max_attempts`), when its failure class goes to the
//! dead-letter queue at once (a permanent error, typically), or when an open circuit
//! breaker diverts elements instead of backpressuring. Dead-lettering is one of the
//! ends an element can have — `emitted = delivered + filtered + dead_lettered +
//! in_flight` — so a dead letter is never silently dropped.
//!
//! # In memory or on disk
//!
//! - [`MemoryDlq`] is a bounded queue shared by cloning its handle: cheap, for tests,
//!   for inspection while running, and for pipelines whose dead letters need not
//!   outlive the process. When it is full, [`push`](MemoryDlq::push) hands the letter
//!   back ([`DlqFull`]); the policy then backpressures or fails the pipeline.
//! - The [`file`](mod@file) DLQ ([`FileDlqWriter`], [`FileDlqReader`]) appends each letter as a
//!   length-prefixed, CRC-32-checked bincode record to a file that survives a crash
//!   and can be replayed ([`FileDlqReader::elements`]). Its format is specified in
//!   the [`file`](mod@file) module.
//!
//! # Guarantees of the file DLQ
//!
//! - A record is either read back whole or reported as part of the file's tail
//!   ([`Tail::Torn`] or [`Tail::Corrupt`]); every complete record before the tail is
//!   returned, and no input makes the reader panic or allocate without bound.
//! - Reading stops at the first corrupt record; records after it are not recovered.
//! - Reopening a file for append truncates a torn tail first, so a new record never
//!   follows garbage.
//! - What survives a crash of the machine depends on the [`SyncPolicy`]; with the
//!   default ([`SyncPolicy::EveryRecord`]) every record whose append returned does. A
//!   crash of the process alone never loses an appended record.
//!
//! # Examples
//!
//! ```
//! use weir_supervisor::dead_letter::{DeadLetter, FileDlqReader, FileDlqWriter, MemoryDlq};
//! use weir_supervisor::{ErrorClass, Failure};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let failure = Failure::error(ErrorClass::Permanent, "missing field `id`");
//! let letter = DeadLetter::new(r#"{"name":"x"}"#.to_owned(), "parse", "ingest", &failure, 1, 4);
//!
//! // In memory, bounded:
//! let memory = MemoryDlq::new(1_000);
//! memory.push(letter.clone())?;
//!
//! // On disk, durable:
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("ingest.dlq");
//! let mut writer = FileDlqWriter::create(&path)?;
//! writer.append(&letter)?;
//! drop(writer);
//!
//! let outcome = FileDlqReader::<String>::open(&path)?.read_all()?;
//! assert_eq!(outcome.letters, memory.snapshot());
//! assert!(outcome.tail.is_clean());
//! # Ok(())
//! # }
//! ```

mod charge;
mod error;
pub mod file;
mod letter;
mod memory;
pub mod order;
mod sink;

pub use charge::LetterCharge;
pub use error::{DlqError, DlqFull, InvalidCapacity, ReadError};
pub use file::{
    CorruptReason, Elements, FileDlqOptions, FileDlqReader, FileDlqWriter, ReadOutcome, SyncPolicy,
    Tail,
};
pub use letter::DeadLetter;
pub use memory::MemoryDlq;
pub use order::{DlqCut, DlqOrder, DlqPosition, RunId, StageScope};
pub use sink::{DeadLetterSink, SharedFileDlq};
