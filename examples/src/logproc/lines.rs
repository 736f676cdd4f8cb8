//! Batches of lines: read from a file in constant memory (every line bounded by
//! `max_line_bytes`), or made by the [`Generator`].

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Generator;

/// A batch ends at the first line boundary after this many bytes (about 1 400
/// lines of 180 bytes).
pub const BATCH_BYTES: usize = 256 * 1024;
/// At most this many bytes of a rejected line are kept (in its dead letter).
pub const SAMPLE_BYTES: usize = 256;

/// Why the reader rejected a line before parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Longer than the bound; the length is the line's full length in bytes.
    TooLong {
        /// The line's length in bytes (without its newline).
        len: u64,
        /// The bound it exceeded.
        max: usize,
    },
    /// Not valid UTF-8.
    NotUtf8,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::TooLong { len, max } => {
                write!(f, "line too long: {len} bytes (--max-line-bytes {max})")
            }
            Reject::NotUtf8 => write!(f, "not valid UTF-8"),
        }
    }
}

/// A line the reader rejected before parsing: its number, why, and a sample of
/// its start (at most [`SAMPLE_BYTES`], lossy UTF-8). Its place in the batch's
/// text is an empty line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The line's number, from 1.
    pub line: u64,
    /// Why.
    pub reject: Reject,
    /// The start of the line.
    pub sample: String,
}

/// The raw text of a batch and the lines the reader already rejected.
#[derive(Debug, Default)]
pub struct BatchData {
    /// Whole lines, each ending with `\n` (the last line of the input may lack
    /// it). Not checked yet: the parser checks UTF-8 line by line.
    pub text: Vec<u8>,
    /// Lines the reader rejected, in line order; each is an empty line in `text`.
    pub rejected: Vec<Rejected>,
}

/// Consecutive lines of the input. Cloning is cheap (the text is shared), which
/// matters because a supervised stage keeps a copy of each element it works on.
#[derive(Debug, Clone)]
pub struct LineBatch {
    /// The 1-based number of the batch's first line.
    pub first_line: u64,
    /// The lines.
    pub data: Arc<BatchData>,
}

/// One line of a batch, as [`LineBatch::lines`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line of text (without its `\n` or `\r\n`).
    Text(&'a str),
    /// A line the reader rejected, or that is not UTF-8, with a sample of it.
    Rejected(Reject, Cow<'a, str>),
}

impl LineBatch {
    /// A batch of `text` (whole lines) whose first line is `first_line`.
    pub fn new(first_line: u64, text: Vec<u8>, rejected: Vec<Rejected>) -> Self {
        LineBatch {
            first_line,
            data: Arc::new(BatchData { text, rejected }),
        }
    }

    /// The number of lines in the batch.
    pub fn len(&self) -> usize {
        let text = &self.data.text;
        count_newlines(text) + usize::from(text.last().is_some_and(|&b| b != b'\n'))
    }

    /// Whether the batch has no lines.
    pub fn is_empty(&self) -> bool {
        self.data.text.is_empty()
    }

    /// The lines with their numbers. A line longer than `max_line_bytes` is
    /// rejected as [`Reject::TooLong`].
    pub fn lines(&self, max_line_bytes: usize) -> impl Iterator<Item = (u64, Line<'_>)> + '_ {
        let text = &self.data.text[..];
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        let mut rejected = self.data.rejected.iter().peekable();
        let lines = (!text.is_empty()).then(|| split_lines(body));
        lines
            .into_iter()
            .flatten()
            .enumerate()
            .map(move |(i, raw)| {
                let number = self.first_line + i as u64;
                if let Some(r) = rejected.next_if(|r| r.line == number) {
                    return (number, Line::Rejected(r.reject, Cow::Borrowed(&r.sample)));
                }
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                if raw.len() > max_line_bytes {
                    let reject = Reject::TooLong {
                        len: raw.len() as u64,
                        max: max_line_bytes,
                    };
                    return (number, Line::Rejected(reject, Cow::Owned(sample(raw))));
                }
                match std::str::from_utf8(raw) {
                    Ok(line) => (number, Line::Text(line)),
                    Err(_) => (
                        number,
                        Line::Rejected(Reject::NotUtf8, Cow::Owned(sample(raw))),
                    ),
                }
            })
    }
}

/// The number of `\n` in `text` (a loop the compiler vectorises).
/// Newlines in `text` (SIMD search: the reader counts every batch's lines).
fn count_newlines(text: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', text).count()
}

/// The pieces of `body` between newlines (like `body.split(|&b| b == b'\n')`,
/// with a SIMD search instead of a byte loop).
fn split_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut ends = memchr::memchr_iter(b'\n', body);
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match ends.next() {
            Some(end) => {
                start = Some(end + 1);
                Some(&body[from..end])
            }
            None => {
                start = None;
                Some(&body[from..])
            }
        }
    })
}

/// A lossy UTF-8 sample of at most [`SAMPLE_BYTES`] of the start of `raw`.
fn sample(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(SAMPLE_BYTES)]);
    let mut end = text.len().min(SAMPLE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Progress shared with the caller: lines and bytes read so far.
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// Lines read.
    pub lines: AtomicU64,
    /// Bytes read (newlines included).
    pub bytes: AtomicU64,
    /// The I/O error that ended the input early, if any.
    pub error: Mutex<Option<String>>,
    /// Where the run resumed, when its source was restored from a checkpoint.
    pub resumed: Mutex<Option<Resumed>>,
}

/// Where a restored source resumed reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    /// The checkpoint restored.
    pub checkpoint: u64,
    /// Bytes before the position: the file offset, or the bytes the generator
    /// had made.
    pub offset: u64,
    /// The number of the first line read after the restore.
    pub next_line: u64,
}

/// Why an input file cannot be used at all.
#[derive(Debug)]
pub enum InputError {
    /// It could not be opened (missing, no permission, …).
    Open(String, io::Error),
    /// It is a directory, or not a regular file.
    NotAFile(String),
    /// Its start holds a NUL byte: a binary file, not a text log.
    Binary(String, usize),
    /// It is not the file a checkpoint's position is in (why, in words).
    NotTheSame(String, String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Open(path, e) => write!(f, "cannot open input {path}: {e}"),
            InputError::NotAFile(path) => {
                write!(f, "input {path} is a directory or not a regular file")
            }
            InputError::Binary(path, at) => write!(
                f,
                "input {path} looks like a binary file (NUL byte at offset {at}); \
                 logproc reads text log lines (Common/Combined Log Format)"
            ),
            InputError::NotTheSame(path, why) => write!(
                f,
                "input {path} is not the file the checkpoint was taken from: {why}"
            ),
        }
    }
}

impl std::error::Error for InputError {}

/// Reads a file as [`LineBatch`]es of about [`BATCH_BYTES`], holding at most one
/// batch and one incomplete line of at most `max_line_bytes` in memory.
///
/// The reader only finds the batch boundaries (the last newline) and counts lines:
/// splitting lines and checking UTF-8 happen in the parsers, in parallel. A line
/// longer than `max_line_bytes` is rejected as [`Reject::TooLong`] either here,
/// when it does not fit in a batch (it is then skipped to its newline without
/// being stored: only a sample is kept), or by the parser. A final line without a
/// newline counts; `\r\n` endings are accepted.
pub struct LineReader {
    input: Box<dyn Read + Send>,
    max_line_bytes: usize,
    /// The number of the first line of the next batch.
    next_line: u64,
    /// The input's offset after the last byte read (the carry included).
    consumed: u64,
    /// The file's identity, for a reader of a file.
    identity: Option<FileIdentity>,
    /// The start of an incomplete line, carried to the next batch.
    carry: Vec<u8>,
    eof: bool,
    progress: Arc<ReadProgress>,
}

impl std::fmt::Debug for LineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineReader")
            .field("max_line_bytes", &self.max_line_bytes)
            .field("next_line", &self.next_line)
            .finish_non_exhaustive()
    }
}

/// Bytes asked of the input per read.
const READ_BYTES: usize = 64 * 1024;

/// Bytes at the start of a file that its [`FileIdentity`] fingerprints.
pub const FINGERPRINT_BYTES: usize = 1024;

/// Where a [`LineReader`] is: the offset of the first byte of its next batch (a
/// line's start) and that line's number. Reading again from here gives exactly
/// the batches the reader has not given yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReadPosition {
    /// Byte offset of the next line's first byte.
    pub offset: u64,
    /// The next line's number, from 1.
    pub next_line: u64,
}

impl ReadPosition {
    /// The start of a file.
    pub const START: ReadPosition = ReadPosition {
        offset: 0,
        next_line: 1,
    };
}

/// Which file a [`ReadPosition`] is in, as far as a restore checks it: the file
/// must be at least as long as the position, and its first bytes (up to
/// [`FINGERPRINT_BYTES`]) must hash the same. The path and the inode are not
/// compared: a log moved or copied elsewhere is the same log, and one that grew
/// is read on to its new end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    /// How many bytes the fingerprint covers (fewer than
    /// [`FINGERPRINT_BYTES`] for a shorter file).
    pub fingerprint_len: u32,
    /// A stable 64-bit hash (FNV-1a) of those bytes.
    pub fingerprint: u64,
}

impl FileIdentity {
    /// The identity of a file whose first bytes are `head` (at least
    /// [`FINGERPRINT_BYTES`] of them, or the whole file).
    pub fn of_head(head: &[u8]) -> Self {
        let covered = &head[..head.len().min(FINGERPRINT_BYTES)];
        FileIdentity {
            fingerprint_len: covered.len() as u32,
            fingerprint: fnv1a(covered),
        }
    }

    /// Why the file with `head` and length `len` cannot be the one this identity
    /// and `position` were taken from; `None` if it can.
    pub fn mismatch(&self, head: &[u8], len: u64, position: ReadPosition) -> Option<String> {
        if len < position.offset {
            return Some(format!(
                "it is {len} bytes long, shorter than the checkpointed offset {}",
                position.offset
            ));
        }
        let covered = self.fingerprint_len as usize;
        if head.len() < covered || fnv1a(&head[..covered]) != self.fingerprint {
            return Some(format!(
                "its first {covered} bytes differ from those at the checkpoint"
            ));
        }
        None
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = weir::checkpoint::StableHasher::default();
    h.write(bytes);
    h.finish()
}

/// A file opened for reading: its length, its first 8 KiB, and the file.
struct OpenedFile {
    file: File,
    len: u64,
    head: Vec<u8>,
}

fn open_checked(path: &Path) -> Result<OpenedFile, InputError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| InputError::Open(name.clone(), e))?;
    if !meta.is_file() {
        return Err(InputError::NotAFile(name));
    }
    let mut file = File::open(path).map_err(|e| InputError::Open(name.clone(), e))?;
    let mut head = vec![0; 8 * 1024];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(InputError::Open(name, e)),
        }
    }
    head.truncate(filled);
    if let Some(at) = head.iter().position(|&b| b == 0) {
        return Err(InputError::Binary(name, at));
    }
    let len = file
        .metadata()
        .map_err(|e| InputError::Open(name.clone(), e))?
        .len();
    Ok(OpenedFile { file, len, head })
}

impl LineReader {
    /// Opens `path`, refusing what cannot be a text log: a missing or unreadable
    /// file, a directory, a binary file (a NUL byte in its first 8 KiB).
    ///
    /// # Errors
    ///
    /// An [`InputError`] naming the path and the problem.
    pub fn open(
        path: &Path,
        max_line_bytes: usize,
        progress: Arc<ReadProgress>,
    ) -> Result<Self, InputError> {
        let opened = open_checked(path)?;
        let identity = FileIdentity::of_head(&opened.head);
        let input = io::Cursor::new(opened.head).chain(opened.file);
        let mut reader = Self::new(Box::new(input), max_line_bytes, progress);
        reader.identity = Some(identity);
        Ok(reader)
    }

    /// Opens `path` (as [`open`](Self::open) does) to read on from `position`,
    /// a [`checkpoint_position`](Self::checkpoint_position) a reader of the same file had, whose
    /// [`identity`](Self::identity) was `identity`. `progress` is set to the
    /// lines and bytes before the position.
    ///
    /// # Errors
    ///
    /// An [`InputError`]; [`InputError::NotTheSame`] if the file is shorter than
    /// the position or its first bytes differ from `identity`'s.
    pub fn open_at(
        path: &Path,
        max_line_bytes: usize,
        progress: Arc<ReadProgress>,
        position: ReadPosition,
        identity: FileIdentity,
    ) -> Result<Self, InputError> {
        let mut opened = open_checked(path)?;
        if let Some(why) = identity.mismatch(&opened.head, opened.len, position) {
            return Err(InputError::NotTheSame(path.display().to_string(), why));
        }
        let name = path.display().to_string();
        opened
            .file
            .seek(SeekFrom::Start(position.offset))
            .map_err(|e| InputError::Open(name, e))?;
        let mut reader = Self::new(Box::new(opened.file), max_line_bytes, progress);
        reader.identity = Some(identity);
        reader.next_line = position.next_line;
        reader.consumed = position.offset;
        reader
            .progress
            .lines
            .store(position.next_line.saturating_sub(1), Ordering::Relaxed);
        reader
            .progress
            .bytes
            .store(position.offset, Ordering::Relaxed);
        Ok(reader)
    }

    /// Reads lines from any reader.
    pub fn new(
        input: Box<dyn Read + Send>,
        max_line_bytes: usize,
        progress: Arc<ReadProgress>,
    ) -> Self {
        LineReader {
            input,
            max_line_bytes: max_line_bytes.max(1),
            next_line: 1,
            consumed: 0,
            identity: None,
            carry: Vec::new(),
            eof: false,
            progress,
        }
    }

    /// Where the next batch starts: after the last batch given, before the
    /// incomplete line the reader holds.
    pub fn checkpoint_position(&self) -> ReadPosition {
        ReadPosition {
            offset: self.consumed - self.carry.len() as u64,
            next_line: self.next_line,
        }
    }

    /// The identity of the file read ([`open`](Self::open) or
    /// [`open_at`](Self::open_at)); `None` for a reader made with
    /// [`new`](Self::new).
    pub fn identity(&self) -> Option<FileIdentity> {
        self.identity
    }

    /// The bound on a line's length.
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Appends up to [`READ_BYTES`] to `text`; 0 at the end of the input.
    fn read_more(&mut self, text: &mut Vec<u8>) -> io::Result<usize> {
        let len = text.len();
        text.resize(len + READ_BYTES, 0);
        let n = loop {
            match self.input.read(&mut text[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    text.truncate(len);
                    return Err(e);
                }
            }
        };
        text.truncate(len + n);
        self.consumed += n as u64;
        self.progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    fn next_batch(&mut self) -> io::Result<Option<LineBatch>> {
        let mut text = std::mem::take(&mut self.carry);
        text.reserve(BATCH_BYTES + READ_BYTES);
        let mut rejected = Vec::new();
        // Where the incomplete last line starts.
        let mut tail = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        while !self.eof && (text.len() < BATCH_BYTES || tail == 0) {
            let before = text.len();
            if self.read_more(&mut text)? == 0 {
                break;
            }
            if let Some(i) = text[before..].iter().rposition(|&b| b == b'\n') {
                tail = before + i + 1;
            }
            while text.len() - tail > self.max_line_bytes {
                rejected.push(self.skip_long_line(&mut text, tail)?);
                tail = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            }
        }
        let cut = if self.eof { text.len() } else { tail };
        self.carry = text.split_off(cut);
        if text.is_empty() {
            return Ok(None);
        }
        let batch = LineBatch::new(self.next_line, text, rejected);
        let lines = batch.len() as u64;
        self.next_line += lines;
        self.progress.lines.fetch_add(lines, Ordering::Relaxed);
        Ok(Some(batch))
    }

    /// The line from `start` to the end of `text` is too long: keeps a sample,
    /// reads and drops the rest of it up to its newline, and leaves an empty line
    /// in its place.
    fn skip_long_line(&mut self, text: &mut Vec<u8>, start: usize) -> io::Result<Rejected> {
        let line = self.next_line + count_newlines(&text[..start]) as u64;
        let sample = sample(&text[start..]);
        let mut len = (text.len() - start) as u64;
        text.truncate(start);
        loop {
            if self.read_more(text)? == 0 {
                break;
            }
            match text[start..].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    len += i as u64;
                    text.drain(start..start + i);
                    break;
                }
                None => {
                    len += (text.len() - start) as u64;
                    text.truncate(start);
                }
            }
        }
        if text.len() == start {
            text.push(b'\n');
        }
        Ok(Rejected {
            line,
            reject: Reject::TooLong {
                len,
                max: self.max_line_bytes,
            },
            sample,
        })
    }
}

impl LineReader {
    /// The next batch; `None` at the end of the input.
    ///
    /// # Errors
    ///
    /// The input's read error; the reader is then at an unknown position and
    /// must not be read on (or checkpointed).
    pub fn try_next(&mut self) -> io::Result<Option<LineBatch>> {
        if self.eof && self.carry.is_empty() {
            return Ok(None);
        }
        self.next_batch()
    }
}

impl Iterator for LineReader {
    type Item = LineBatch;

    fn next(&mut self) -> Option<LineBatch> {
        if self.eof && self.carry.is_empty() {
            return None;
        }
        match self.next_batch() {
            Ok(batch) => batch,
            Err(e) => {
                self.eof = true;
                self.carry.clear();
                if let Ok(mut slot) = self.progress.error.lock() {
                    *slot = Some(format!("reading near line {}: {e}", self.next_line));
                }
                None
            }
        }
    }
}

/// The [`Generator`]'s lines as [`LineBatch`]es.
#[derive(Debug)]
pub struct GeneratedBatches {
    generator: Generator,
    next_line: u64,
    progress: Arc<ReadProgress>,
}

impl GeneratedBatches {
    /// Batches of the generator's lines, counted in `progress`.
    pub fn new(generator: Generator, progress: Arc<ReadProgress>) -> Self {
        GeneratedBatches {
            generator,
            next_line: 1,
            progress,
        }
    }

    /// Batches from `position`, a [`checkpoint_position`](Self::checkpoint_position) of batches from
    /// the same seed and line count; `progress` is set to the lines and bytes
    /// before it.
    pub fn resume(position: GeneratedPosition, progress: Arc<ReadProgress>) -> Self {
        progress
            .lines
            .store(position.next_line.saturating_sub(1), Ordering::Relaxed);
        progress.bytes.store(position.bytes, Ordering::Relaxed);
        GeneratedBatches {
            generator: position.generator,
            next_line: position.next_line,
            progress,
        }
    }

    /// Where the next batch starts: the generator's state, the next line's
    /// number and the bytes generated before it.
    pub fn checkpoint_position(&self) -> GeneratedPosition {
        GeneratedPosition {
            generator: self.generator.clone(),
            next_line: self.next_line,
            bytes: self.progress.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Where [`GeneratedBatches`] are: resuming from it gives exactly the batches not
/// given yet (the generator is deterministic, its whole state is here).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeneratedPosition {
    /// The generator, before the next line.
    pub generator: Generator,
    /// The next line's number, from 1.
    pub next_line: u64,
    /// Bytes generated before it (newlines included).
    pub bytes: u64,
}

impl Iterator for GeneratedBatches {
    type Item = LineBatch;

    fn next(&mut self) -> Option<LineBatch> {
        let mut text = String::with_capacity(BATCH_BYTES + 1024);
        let mut lines = 0;
        while text.len() < BATCH_BYTES && self.generator.next_line(&mut text).is_some() {
            text.push('\n');
            lines += 1;
        }
        if lines == 0 {
            return None;
        }
        let first_line = self.next_line;
        self.next_line += lines;
        self.progress.lines.fetch_add(lines, Ordering::Relaxed);
        self.progress
            .bytes
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        Some(LineBatch::new(first_line, text.into_bytes(), Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input` read with bound `max`: (number, text or reject).
    fn read_all(input: Vec<u8>, max: usize) -> Vec<(u64, Result<String, Reject>)> {
        let progress = Arc::new(ReadProgress::default());
        let reader = LineReader::new(Box::new(io::Cursor::new(input)), max, progress.clone());
        let mut out = Vec::new();
        for batch in reader {
            for (n, line) in batch.lines(max) {
                out.push((
                    n,
                    match line {
                        Line::Text(t) => Ok(t.to_owned()),
                        Line::Rejected(r, _) => Err(r),
                    },
                ));
            }
        }
        assert_eq!(progress.lines.load(Ordering::Relaxed), out.len() as u64);
        out
    }

    #[test]
    fn long_lines_are_rejected_in_place_and_numbering_holds() {
        let huge = "x".repeat(BATCH_BYTES * 3 + 17); // spans several reads and batches
        let mid = "y".repeat(300); // fits in a batch: the parser's bound rejects it
        let mut input = format!("a\r\n{huge}\nb\n{mid}\n\nc").into_bytes();
        input.extend_from_slice(b"\xff\nlast"); // line 6 is not UTF-8
        let got = read_all(input, 200);
        let too_long = |len| Err(Reject::TooLong { len, max: 200 });
        assert_eq!(
            got,
            [
                (1, Ok("a".to_owned())),
                (2, too_long(huge.len() as u64)),
                (3, Ok("b".to_owned())),
                (4, too_long(300)),
                (5, Ok(String::new())),
                (6, Err(Reject::NotUtf8)),
                (7, Ok("last".to_owned())),
            ]
        );
    }

    #[test]
    fn many_batches_keep_every_line_once_in_order() {
        let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        let got = read_all(text.into_bytes(), 64);
        assert_eq!(got.len(), 200_000);
        for (i, (n, line)) in got.iter().enumerate() {
            assert_eq!(*n, i as u64 + 1);
            assert_eq!(line.as_deref(), Ok(format!("line {i}").as_str()));
        }
    }

    #[test]
    fn a_long_last_line_without_newline_is_rejected() {
        let got = read_all(
            format!("ok\n{}", "z".repeat(BATCH_BYTES * 2)).into_bytes(),
            100,
        );
        assert_eq!(
            got[1].1,
            Err(Reject::TooLong {
                len: (BATCH_BYTES * 2) as u64,
                max: 100
            })
        );
        assert_eq!(got.len(), 2);
    }

    /// The SIMD line split and count agree with the plain byte loop on every
    /// arrangement of newlines in short inputs (and a long one).
    #[test]
    fn split_and_count_match_the_byte_loop() {
        let mut inputs: Vec<Vec<u8>> = (0..1024_u32)
            .map(|bits| {
                (0..10)
                    .map(|i| {
                        if bits >> i & 1 == 1 {
                            b'\n'
                        } else {
                            b'a' + i as u8
                        }
                    })
                    .collect()
            })
            .collect();
        inputs.push(Vec::new());
        inputs.push(
            (0..100_000_u32)
                .map(|i| if i % 97 == 0 { b'\n' } else { b'x' })
                .collect(),
        );
        for input in &inputs {
            let want: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
            let got: Vec<&[u8]> = split_lines(input).collect();
            assert_eq!(got, want, "{input:?}");
            assert_eq!(
                count_newlines(input),
                input.iter().filter(|&&b| b == b'\n').count()
            );
        }
    }
}
