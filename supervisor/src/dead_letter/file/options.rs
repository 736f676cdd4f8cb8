//! [`FileDlqOptions`]: how a dead-letter file is opened, written and read.

use std::path::Path;

use super::{FileDlqReader, FileDlqWriter, SyncPolicy};
use crate::dead_letter::DlqError;

/// Settings for opening a dead-letter file, for writing or for reading.
///
/// [`FileDlqWriter::create`], [`FileDlqWriter::open_append`] and
/// [`FileDlqReader::open`] use the defaults; build options to change them.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{DeadLetter, FileDlqOptions, SyncPolicy};
/// use weir_supervisor::{ErrorClass, Failure};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("orders.dlq");
/// let options = FileDlqOptions::new()
///     .sync(SyncPolicy::EveryN(32))
///     .max_record_size(1 << 20);
///
/// let mut writer = options.open_append::<String>(&path)?;
/// let failure = Failure::error(ErrorClass::Permanent, "unknown customer");
/// writer.append(&DeadLetter::new("order 17".to_owned(), "enrich", "orders", &failure, 1, 17))?;
/// writer.flush()?;
///
/// let letters = options.open_reader::<String>(&path)?.read_all()?;
/// assert_eq!(letters.letters.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct FileDlqOptions {
    sync: SyncPolicy,
    max_record_size: u32,
    truncate_corrupt_tail: bool,
}

impl FileDlqOptions {
    /// The default maximum record size: 16 MiB.
    pub const DEFAULT_MAX_RECORD_SIZE: u32 = 16 * 1024 * 1024;

    /// The defaults: [`SyncPolicy::EveryRecord`], a maximum record size of
    /// [16 MiB](Self::DEFAULT_MAX_RECORD_SIZE), and no truncation of a corrupt tail.
    pub fn new() -> Self {
        FileDlqOptions {
            sync: SyncPolicy::EveryRecord,
            max_record_size: Self::DEFAULT_MAX_RECORD_SIZE,
            truncate_corrupt_tail: false,
        }
    }

    /// When the writer syncs its data to stable storage; see [`SyncPolicy`] for how to
    /// choose. Readers ignore it.
    pub fn sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }

    /// The largest payload (encoded dead letter) in bytes a writer writes and a
    /// reader accepts.
    ///
    /// A writer refuses a larger letter with [`DlqError::RecordTooLarge`], writing
    /// nothing. A reader checks each record's length against it before allocating
    /// anything and reports a longer record as corrupt, so it bounds the memory one
    /// record of a damaged or hostile file can claim. Choose it above your largest
    /// element plus about 100 bytes of metadata and the stage and pipeline names, and
    /// use the same value (or a larger one) for reading as for writing.
    pub fn max_record_size(mut self, bytes: u32) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// Whether [`open_append`](Self::open_append) may truncate the file at a corrupt
    /// record (default: `false`, it fails with the [`DlqError::Read`] that names the
    /// record).
    ///
    /// Truncating loses every record from the corrupt one to the end, the complete
    /// ones after it included (the format cannot find them again). Turn it on when
    /// availability of the DLQ matters more than what the damaged part held — after
    /// copying the file aside, ideally.
    pub fn truncate_corrupt_tail(mut self, truncate: bool) -> Self {
        self.truncate_corrupt_tail = truncate;
        self
    }

    /// The sync policy in these options.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync
    }

    /// The maximum record size in these options, in bytes.
    pub fn max_record_bytes(&self) -> u32 {
        self.max_record_size
    }

    /// Whether these options let [`open_append`](Self::open_append) truncate a
    /// corrupt tail.
    pub fn truncates_corrupt_tail(&self) -> bool {
        self.truncate_corrupt_tail
    }

    /// Creates a new dead-letter file at `path` and opens it for writing; see
    /// [`FileDlqWriter::create`].
    ///
    /// # Errors
    ///
    /// As [`FileDlqWriter::create`].
    pub fn create<T>(&self, path: impl AsRef<Path>) -> Result<FileDlqWriter<T>, DlqError> {
        FileDlqWriter::create_with(path.as_ref(), *self)
    }

    /// Opens the dead-letter file at `path` for appending, creating it if it does not
    /// exist; see [`FileDlqWriter::open_append`].
    ///
    /// # Errors
    ///
    /// As [`FileDlqWriter::open_append`].
    pub fn open_append<T>(&self, path: impl AsRef<Path>) -> Result<FileDlqWriter<T>, DlqError> {
        FileDlqWriter::open_append_with(path.as_ref(), *self)
    }

    /// Opens the dead-letter file at `path` for reading; see [`FileDlqReader::open`].
    ///
    /// # Errors
    ///
    /// As [`FileDlqReader::open`].
    pub fn open_reader<T>(&self, path: impl AsRef<Path>) -> Result<FileDlqReader<T>, DlqError> {
        FileDlqReader::open_with(path.as_ref(), *self)
    }
}

impl Default for FileDlqOptions {
    fn default() -> Self {
        Self::new()
    }
}
