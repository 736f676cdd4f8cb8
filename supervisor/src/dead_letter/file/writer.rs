//! [`FileDlqWriter`]: appends dead letters to a file, durably.

use std::fmt;
use std::fs::TryLockError;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::frame::{self, Frame, HEADER_LEN, Header, RECORD_HEADER_LEN};
use super::{FileDlqOptions, SyncPolicy, Tail};
use crate::dead_letter::{DeadLetter, DlqError, DlqPosition, ReadError};
use crate::fs::{Fs, FsFile, Open, RealFs, at_path, parent_dir};

/// Appends dead letters to a file in the [dead-letter file format](super).
///
/// One writer per file: the writer holds an exclusive advisory lock on it
/// (`File::try_lock`), and a second writer fails with [`DlqError::Locked`]. Readers
/// do not lock and may read while a writer appends; a record being written shows up
/// as a torn tail.
///
/// Each [`append`](Self::append) writes its whole record with one `write_all` at the
/// end of the valid data; the [`SyncPolicy`] decides when it is synced. If the write
/// fails, the writer cuts the file back to where the record started, so nothing is
/// ever appended after a partial record.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{DeadLetter, FileDlqReader, FileDlqWriter, Tail};
/// use weir_supervisor::{ErrorClass, Failure};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("payments.dlq");
///
/// let failure = Failure::error(ErrorClass::Permanent, "amount is negative");
/// let mut writer = FileDlqWriter::create(&path)?;
/// let first = writer.append(&DeadLetter::new(-3_i64, "validate", "payments", &failure, 1, 8))?;
/// assert_eq!(first, 10); // right after the 10-byte file header
/// drop(writer);
///
/// // Later, or after a crash: reopen and go on appending.
/// let mut writer = FileDlqWriter::<i64>::open_append(&path)?;
/// assert_eq!(writer.dropped_bytes(), 0);
/// writer.append(&DeadLetter::new(-9_i64, "validate", "payments", &failure, 1, 30))?;
/// assert_eq!(writer.record_count(), 2);
///
/// let outcome = FileDlqReader::<i64>::open(&path)?.read_all()?;
/// let elements: Vec<i64> = outcome.letters.into_iter().map(|l| l.element).collect();
/// assert_eq!(elements, [-3, -9]);
/// assert_eq!(outcome.tail, Tail::Clean);
/// # Ok(())
/// # }
/// ```
pub struct FileDlqWriter<T> {
    /// Through the [file-system seam](crate::fs), so that tests can fail or crash
    /// at any write, sync or cut.
    file: Box<dyn FsFile>,
    path: PathBuf,
    options: FileDlqOptions,
    /// Where the next record goes: the end of the valid data.
    end: u64,
    records: u64,
    /// The CRC-32 of the last record before `end` (`None`: no record).
    last_crc: Option<u32>,
    /// Records appended since the last sync (counted under `EveryN` only).
    unsynced: u32,
    /// Scratch buffer holding one encoded record.
    record: Vec<u8>,
    recovered: Tail,
    dropped: u64,
    poisoned: bool,
    _element: PhantomData<fn(&T)>,
}

impl<T> FileDlqWriter<T> {
    /// Creates a new dead-letter file at `path` with the default
    /// [options](FileDlqOptions::new) and writes its header.
    ///
    /// The file must not exist: a dead-letter file is never overwritten. To continue
    /// an existing one, use [`open_append`](Self::open_append).
    ///
    /// # Errors
    ///
    /// [`DlqError::Io`] if the file exists (`ErrorKind::AlreadyExists`) or cannot be
    /// created or written, [`DlqError::Locked`] if another writer locked it first.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, DlqError> {
        Self::create_with(path.as_ref(), FileDlqOptions::new())
    }

    /// Opens the dead-letter file at `path` for appending with the default
    /// [options](FileDlqOptions::new), creating it if it does not exist.
    ///
    /// The existing records are scanned (framing and checksums; payloads are not
    /// decoded) to find the end of the valid data:
    ///
    /// - a **torn tail** (a crash in the middle of a record, or of the header) is
    ///   truncated away, and [`dropped_bytes`](Self::dropped_bytes) and
    ///   [`recovered_tail`](Self::recovered_tail) report it;
    /// - a **corrupt record** is an error, unless the options allow
    ///   [truncating it](FileDlqOptions::truncate_corrupt_tail).
    ///
    /// Either way the writer never appends after bytes that are not a complete record.
    ///
    /// # Errors
    ///
    /// [`DlqError::BadHeader`] / [`DlqError::UnsupportedVersion`] for a file that is
    /// not a dead-letter file this build writes (the file is left untouched);
    /// [`DlqError::Read`] with [`ReadError::Corrupt`] for a corrupt record;
    /// [`DlqError::Locked`] if another writer holds the file; [`DlqError::Io`] for
    /// I/O errors.
    pub fn open_append(path: impl AsRef<Path>) -> Result<Self, DlqError> {
        Self::open_append_with(path.as_ref(), FileDlqOptions::new())
    }

    pub(super) fn create_with(path: &Path, options: FileDlqOptions) -> Result<Self, DlqError> {
        Self::create_on(&RealFs, path, options)
    }

    pub(super) fn open_append_with(path: &Path, options: FileDlqOptions) -> Result<Self, DlqError> {
        Self::open_append_on(&RealFs, path, options)
    }

    /// [`create_with`](Self::create_with) through the file system `fs`.
    pub(crate) fn create_on(
        fs: &dyn Fs,
        path: &Path,
        options: FileDlqOptions,
    ) -> Result<Self, DlqError> {
        let file = fs.open(path, Open::CreateNew).at(path)?;
        lock(file.as_ref(), path)?;
        let mut writer = Self::with_file(file, path, options, Tail::Clean, 0);
        writer.write_header()?;
        if options.sync_policy() != SyncPolicy::Never {
            let dir = parent_dir(path);
            fs.sync_dir(dir).at(dir)?;
        }
        Ok(writer)
    }

    /// [`open_append_with`](Self::open_append_with) through the file system `fs`.
    pub(crate) fn open_append_on(
        fs: &dyn Fs,
        path: &Path,
        options: FileDlqOptions,
    ) -> Result<Self, DlqError> {
        let mut file = fs.open(path, Open::Keep).at(path)?;
        lock(file.as_ref(), path)?;
        let scan = scan(file.as_mut(), options.max_record_bytes())?;
        let recovered = match (&scan.tail, options.truncates_corrupt_tail()) {
            (Tail::Corrupt { offset, reason }, false) => {
                return Err(ReadError::Corrupt {
                    offset: *offset,
                    reason: reason.clone(),
                }
                .into());
            }
            (tail, _) => tail.clone(),
        };
        let file_len = file.len().at(path)?;
        let dropped = file_len.saturating_sub(scan.end);
        let mut writer = Self::with_file(file, path, options, recovered, dropped);
        writer.records = scan.records;
        writer.last_crc = scan.last_crc;
        if scan.header_torn {
            // A crash while the file was created: start it again.
            writer.file.set_len(0).at(path)?;
            writer.write_header()?;
            if options.sync_policy() != SyncPolicy::Never {
                let dir = parent_dir(path);
                fs.sync_dir(dir).at(dir)?;
            }
        } else {
            if dropped > 0 {
                writer.file.set_len(scan.end).at(path)?;
                if options.sync_policy() != SyncPolicy::Never {
                    writer.file.sync_all().at(path)?;
                }
            }
            writer.end = scan.end;
            writer.file.seek(SeekFrom::Start(scan.end)).at(path)?;
        }
        Ok(writer)
    }

    fn with_file(
        file: Box<dyn FsFile>,
        path: &Path,
        options: FileDlqOptions,
        recovered: Tail,
        dropped: u64,
    ) -> Self {
        FileDlqWriter {
            file,
            path: path.to_owned(),
            options,
            end: 0,
            records: 0,
            last_crc: None,
            unsynced: 0,
            record: Vec::new(),
            recovered,
            dropped,
            poisoned: false,
            _element: PhantomData,
        }
    }

    /// Writes the header at offset 0 of an empty file.
    fn write_header(&mut self) -> Result<(), DlqError> {
        let path = &self.path;
        self.file.seek(SeekFrom::Start(0)).at(path)?;
        self.file.write_all(&frame::header_bytes()).at(path)?;
        if self.options.sync_policy() != SyncPolicy::Never {
            self.file.sync_all().at(path)?;
        }
        self.end = HEADER_LEN;
        Ok(())
    }

    /// Appends `letter` as one record and returns the offset where the record starts.
    ///
    /// When this returns `Ok`, the whole record has been handed to the operating
    /// system (it survives a crash of the process) and, if the [`SyncPolicy`] says so,
    /// synced to stable storage (it survives a crash of the machine).
    ///
    /// # Errors
    ///
    /// - [`DlqError::RecordTooLarge`] (naming the size) or [`DlqError::Encode`]:
    ///   nothing was written, the writer stays usable.
    /// - [`DlqError::Io`]: the write failed; what it wrote was cut off again, and the
    ///   writer stays usable — or, if that failed too, it is poisoned.
    /// - [`DlqError::Sync`]: the record was written but the sync failed; whether it
    ///   survives a machine crash is unknown, and the writer is poisoned.
    /// - [`DlqError::Poisoned`]: an earlier failure; reopen with
    ///   [`open_append`](Self::open_append).
    pub fn append(&mut self, letter: &DeadLetter<T>) -> Result<u64, DlqError>
    where
        T: Serialize,
    {
        if self.poisoned {
            return Err(DlqError::Poisoned);
        }
        let mut record = std::mem::take(&mut self.record);
        let appended = frame::encode_record(letter, self.options.max_record_bytes(), &mut record)
            .and_then(|()| self.append_record(&record));
        frame::shrink(&mut record);
        self.record = record;
        appended
    }

    /// `letter` encoded as one complete record (length, checksum, payload), to be
    /// appended later with [`append_record`](Self::append_record).
    ///
    /// # Errors
    ///
    /// [`DlqError::RecordTooLarge`] or [`DlqError::Encode`], as
    /// [`append`](Self::append).
    pub(crate) fn encode(&self, letter: &DeadLetter<T>) -> Result<Vec<u8>, DlqError>
    where
        T: Serialize,
    {
        let mut record = Vec::new();
        frame::encode_record(letter, self.options.max_record_bytes(), &mut record)?;
        Ok(record)
    }

    /// Appends `record`, one complete record from [`encode`](Self::encode), and
    /// syncs as the [`SyncPolicy`] says; the offset where it starts.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append), but for the encoding.
    pub(crate) fn append_record(&mut self, record: &[u8]) -> Result<u64, DlqError> {
        if self.poisoned {
            return Err(DlqError::Poisoned);
        }
        let offset = self.end;
        if let Err(e) = self.file.write_all(record) {
            self.roll_back(offset);
            return Err(DlqError::Io(at_path(&self.path, e)));
        }
        self.end += record.len() as u64;
        self.records += 1;
        self.last_crc = record
            .get(4..8)
            .map(|crc| u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]));
        match self.options.sync_policy() {
            SyncPolicy::Never => {}
            SyncPolicy::EveryRecord => self.sync()?,
            SyncPolicy::EveryN(n) => {
                self.unsynced += 1;
                if self.unsynced >= n {
                    self.sync()?;
                }
            }
        }
        Ok(offset)
    }

    /// Syncs every record appended so far to stable storage, whatever the
    /// [`SyncPolicy`].
    ///
    /// # Errors
    ///
    /// [`DlqError::Sync`] if `sync_data` fails (the writer is then poisoned: the
    /// kernel may have dropped the unsynced data), [`DlqError::Poisoned`] after an
    /// earlier failure.
    pub fn flush(&mut self) -> Result<(), DlqError> {
        if self.poisoned {
            return Err(DlqError::Poisoned);
        }
        self.sync()
    }

    /// The path the writer appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset where the next record will start: the length of the valid data.
    pub fn end_offset(&self) -> u64 {
        self.end
    }

    /// Cuts the file back to `offset`, an [`end_offset`](Self::end_offset) this
    /// file had earlier, dropping every record appended after it: what a stage
    /// restored from a checkpoint does, with the end offset the checkpoint
    /// recorded, so that the dead letters of the elements it replays are not held
    /// twice. The records before `offset` are checked (framing and checksums) to
    /// count them and to make sure `offset` is where a record starts. The cut is
    /// synced unless the [`SyncPolicy`] is `Never`. Cutting at the current end
    /// changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_supervisor::dead_letter::{DeadLetter, FileDlqReader, FileDlqWriter};
    /// use weir_supervisor::{ErrorClass, Failure};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("lines.dlq");
    /// let failure = Failure::error(ErrorClass::Permanent, "malformed");
    /// let mut writer = FileDlqWriter::create(&path)?;
    /// writer.append(&DeadLetter::new("a", "parse", "logproc", &failure, 1, 3))?;
    /// let checkpointed = writer.end_offset();
    /// writer.append(&DeadLetter::new("b", "parse", "logproc", &failure, 1, 9))?;
    ///
    /// // Restored from the checkpoint: "b" will be replayed and dead-lettered again.
    /// writer.truncate_to(checkpointed)?;
    /// assert_eq!(writer.record_count(), 1);
    /// writer.append(&DeadLetter::new("b", "parse", "logproc", &failure, 1, 9))?;
    /// let letters = FileDlqReader::<String>::open(&path)?.read_all()?.letters;
    /// let elements: Vec<_> = letters.iter().map(|l| l.element.as_str()).collect();
    /// assert_eq!(elements, ["a", "b"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`DlqError::Io`] with `ErrorKind::InvalidInput` if `offset` is past the end
    /// of the valid data or not where a record starts (the file is left
    /// untouched); [`DlqError::Read`] if a record before it is corrupt;
    /// [`DlqError::Poisoned`] after an earlier failure; [`DlqError::Io`] or
    /// [`DlqError::Sync`] if the cut fails (the writer is then poisoned).
    pub fn truncate_to(&mut self, offset: u64) -> Result<(), DlqError> {
        if self.poisoned {
            return Err(DlqError::Poisoned);
        }
        if offset == self.end {
            return Ok(());
        }
        let invalid = |why: String| {
            DlqError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot truncate {} to {offset}: {why}", self.path.display()),
            ))
        };
        if offset > self.end || offset < HEADER_LEN {
            return Err(invalid(format!(
                "the records lie between {HEADER_LEN} and {}",
                self.end
            )));
        }
        // The scan moves the file's cursor, where the next record is written: put
        // it back if the file is not cut.
        let max = self.options.max_record_bytes();
        let counted = match records_before(self.file.as_mut(), offset, max) {
            Ok(Some(prefix)) => Ok(prefix),
            Ok(None) => Err(invalid("a record does not start there".into())),
            Err(e) => Err(e),
        };
        let (records, last_crc) = match counted {
            Ok(prefix) => prefix,
            Err(e) => {
                if self.file.seek(SeekFrom::Start(self.end)).is_err() {
                    self.poisoned = true;
                }
                return Err(e);
            }
        };
        let cut = self
            .file
            .set_len(offset)
            .and_then(|()| self.file.seek(SeekFrom::Start(offset)).map(|_| ()));
        if let Err(e) = cut {
            self.poisoned = true;
            return Err(DlqError::Io(at_path(&self.path, e)));
        }
        self.end = offset;
        self.records = records;
        self.last_crc = last_crc;
        self.unsynced = 0;
        if self.options.sync_policy() != SyncPolicy::Never {
            self.sync()?;
        }
        Ok(())
    }

    /// The number of records in the file: those found when it was opened plus those
    /// appended since.
    pub fn record_count(&self) -> u64 {
        self.records
    }

    /// Where the valid data ends, with what identifies the records before it: what a
    /// checkpoint records, to [`cut_back`](Self::cut_back) the file to on a
    /// restore.
    pub fn position(&self) -> DlqPosition {
        DlqPosition {
            end: self.end,
            records: self.records,
            last_crc: self.last_crc,
        }
    }

    /// Cuts the file back to `position`, a [`position`](Self::position) it had
    /// earlier, after checking that the file still holds what it held then: at
    /// least `position.end` bytes of records, `position.records` of them before
    /// that offset, the last one with the checksum recorded. Then as
    /// [`truncate_to`](Self::truncate_to).
    ///
    /// # Errors
    ///
    /// [`DlqError::Mismatch`] naming the file and what differs when it is shorter
    /// than the position or holds other records before it (it was truncated,
    /// replaced or rotated since): the file is left untouched. Otherwise as
    /// [`truncate_to`](Self::truncate_to).
    pub fn cut_back(&mut self, position: &DlqPosition) -> Result<(), DlqError> {
        if self.poisoned {
            return Err(DlqError::Poisoned);
        }
        let mismatch = |reason: String| DlqError::Mismatch {
            path: self.path.clone(),
            reason,
        };
        if position.end > self.end {
            return Err(mismatch(format!(
                "it holds {} bytes of records ({} records), the position recorded is at {} \
                 bytes ({} records): it was truncated or replaced since",
                self.end, self.records, position.end, position.records
            )));
        }
        if position.end < HEADER_LEN {
            return Err(mismatch(format!(
                "the position recorded ({}) is inside the file header",
                position.end
            )));
        }
        let found = if position.end == self.end {
            Some((self.records, self.last_crc))
        } else {
            let max = self.options.max_record_bytes();
            let found = records_before(self.file.as_mut(), position.end, max);
            // The scan moved the cursor, where the next record is written.
            if self.file.seek(SeekFrom::Start(self.end)).is_err() {
                self.poisoned = true;
                return Err(DlqError::Poisoned);
            }
            found?
        };
        match found {
            None => Err(mismatch(format!(
                "no record starts at {}, where the position recorded ends: it was replaced \
                 or rewritten since",
                position.end
            ))),
            Some((records, last_crc))
                if records != position.records || last_crc != position.last_crc =>
            {
                Err(mismatch(format!(
                    "its first {} bytes hold {records} records (the last with checksum \
                     {last_crc:08x?}), the position recorded has {} (checksum {:08x?}): it was \
                     replaced, rotated or rewritten since",
                    position.end, position.records, position.last_crc
                )))
            }
            Some(_) => self.truncate_to(position.end),
        }
    }

    /// What [`open_append`](Self::open_append) found after the last complete record:
    /// [`Tail::Clean`], or the torn (or, if allowed, corrupt) tail it truncated.
    /// Always `Clean` for a writer from [`create`](Self::create).
    pub fn recovered_tail(&self) -> &Tail {
        &self.recovered
    }

    /// How many bytes [`open_append`](Self::open_append) truncated from the end of the
    /// file (0 when the tail was clean).
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped
    }

    /// The options the writer was opened with.
    pub fn options(&self) -> FileDlqOptions {
        self.options
    }

    fn sync(&mut self) -> Result<(), DlqError> {
        if let Err(source) = self.file.sync_data() {
            // After a failed fsync the kernel may have marked unwritten pages clean;
            // nothing more can be promised about this file handle.
            self.poisoned = true;
            return Err(DlqError::Sync(at_path(&self.path, source)));
        }
        self.unsynced = 0;
        Ok(())
    }

    /// Cuts the file back to `offset` after a failed write.
    fn roll_back(&mut self, offset: u64) {
        let restored =
            self.file.set_len(offset).is_ok() && self.file.seek(SeekFrom::Start(offset)).is_ok();
        if !restored {
            self.poisoned = true;
        }
    }
}

impl<T> Drop for FileDlqWriter<T> {
    /// Under [`SyncPolicy::EveryN`], syncs the records appended since the last sync,
    /// best effort: call [`flush`](FileDlqWriter::flush) to learn about errors.
    fn drop(&mut self) {
        if self.unsynced > 0 && !self.poisoned {
            let _ = self.file.sync_data();
        }
    }
}

// Not derived: the element need not be `Debug`.
impl<T> fmt::Debug for FileDlqWriter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDlqWriter")
            .field("path", &self.path)
            .field("end_offset", &self.end)
            .field("records", &self.records)
            .field("options", &self.options)
            .field("recovered", &self.recovered)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// What scanning an existing file found.
struct Scan {
    /// The end of the valid data (the header included).
    end: u64,
    records: u64,
    /// The checksum of the last record.
    last_crc: Option<u32>,
    tail: Tail,
    /// The header itself is incomplete (or the file empty).
    header_torn: bool,
}

/// Walks the records of `file` from the start, checking framing and checksums.
fn scan(file: &mut dyn FsFile, max: u32) -> Result<Scan, DlqError> {
    let mut input = BufReader::with_capacity(1 << 16, file);
    input.seek(SeekFrom::Start(0))?;
    match frame::read_header(&mut input)? {
        Header::Torn(bytes) => {
            let tail = if bytes == 0 {
                Tail::Clean
            } else {
                Tail::Torn { offset: 0, bytes }
            };
            return Ok(Scan {
                end: 0,
                records: 0,
                last_crc: None,
                tail,
                header_torn: true,
            });
        }
        Header::Valid => {}
    }
    let mut end = HEADER_LEN;
    let mut records = 0;
    let mut last_crc = None;
    let mut payload = Vec::new();
    loop {
        match frame::next_frame(&mut input, end, max, &mut payload)? {
            Frame::Record => {
                end += RECORD_HEADER_LEN + payload.len() as u64;
                records += 1;
                last_crc = Some(crc32fast::hash(&payload));
            }
            Frame::End(tail) => {
                return Ok(Scan {
                    end,
                    records,
                    last_crc,
                    tail,
                    header_torn: false,
                });
            }
        }
    }
}

/// The number of records before `offset` in `file`, whose records are valid up to
/// at least `offset`, and the checksum of the last of them; `None` if no record
/// starts at `offset`.
fn records_before(
    file: &mut dyn FsFile,
    offset: u64,
    max: u32,
) -> Result<Option<(u64, Option<u32>)>, DlqError> {
    let mut input = BufReader::with_capacity(1 << 16, file);
    input.seek(SeekFrom::Start(HEADER_LEN))?;
    let mut end = HEADER_LEN;
    let mut records = 0;
    let mut last_crc = None;
    let mut payload = Vec::new();
    while end < offset {
        match frame::next_frame(&mut input, end, max, &mut payload)? {
            Frame::Record => {
                end += RECORD_HEADER_LEN + payload.len() as u64;
                records += 1;
                last_crc = Some(crc32fast::hash(&payload));
            }
            Frame::End(Tail::Corrupt { offset, reason }) => {
                return Err(ReadError::Corrupt { offset, reason }.into());
            }
            Frame::End(_) => return Ok(None),
        }
    }
    Ok((end == offset).then_some((records, last_crc)))
}

/// Takes the exclusive advisory lock on `file`, without waiting.
fn lock(file: &dyn FsFile, path: &Path) -> Result<(), DlqError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(DlqError::Locked),
        // File systems without locks (some network ones): go on unlocked.
        Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        Err(TryLockError::Error(e)) => Err(DlqError::Io(at_path(path, e))),
    }
}

/// Names the file in an I/O error.
trait At<T> {
    /// The error, if any, with `path` in its message.
    fn at(self, path: &Path) -> io::Result<T>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> io::Result<T> {
        self.map_err(|e| at_path(path, e))
    }
}
