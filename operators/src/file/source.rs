//! [`FileSource`]: the settings of a file source, and the [`Line`] and [`Chunk`]
//! elements it emits.

use std::convert::Infallible;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Context;

use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};
use weir_supervisor::dead_letter::{DeadLetter, DeadLetterSink, LetterCharge};

use super::position::{Opened, POSITION_VERSION, Resume, SourcePosition};
use super::reader::{BoundedLineReader, RawLine};

/// Bytes asked of the file per read, by default.
pub const DEFAULT_READ_BUFFER: usize = 64 * 1024;
/// The longest line accepted, by default.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// A line of a file, with where it is: `next_offset` is the checkpoint to resume
/// from after it ([`FileSource::from_offset`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Line {
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// Byte offset just past the line's newline: resume here to read the next line.
    pub next_offset: u64,
    /// The line, without its `\n` or `\r\n`. For a rejected line (in a dead
    /// letter), the start of it (at most 256 bytes, lossy UTF-8).
    pub text: String,
}

/// A chunk of a file with its offsets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    /// Byte offset of the chunk's first byte.
    pub offset: u64,
    /// Byte offset just past the chunk: resume here to read the next one.
    pub next_offset: u64,
    /// The bytes (`chunk_bytes` of them, except perhaps the last chunk).
    pub bytes: Vec<u8>,
}

/// Counters of a file source, shared with the caller ([`FileSource::stats`]).
#[derive(Debug, Default)]
pub struct FileSourceStats {
    emitted: AtomicU64,
    rejected: AtomicU64,
    bytes_read: AtomicU64,
    offset: AtomicU64,
    line: AtomicU64,
    /// The offset a restore resumed at, plus one (0: not restored).
    resumed_at: AtomicU64,
    peak_buffered: AtomicU64,
}

impl FileSourceStats {
    /// Lines or chunks emitted (rejected lines included: they are emitted to the
    /// check that dead-letters them).
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }

    /// Lines rejected: longer than the bound, or not UTF-8.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Bytes read from the file.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The offset after the last element emitted: a checkpoint of the whole
    /// source (every element before it has been emitted).
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// Lines (or chunks) before [`offset`](Self::offset): counted from the start
    /// of the file when the source was restored from a checkpoint, from the
    /// [`from_offset`](FileSource::from_offset) otherwise.
    pub fn line(&self) -> u64 {
        self.line.load(Ordering::Relaxed)
    }

    /// The offset the source resumed at when it was restored from a checkpoint:
    /// the checkpointed offset, or 0 if the file had been truncated or rotated
    /// since (see [`FileSource`]'s "Checkpoints"). `None` when the source was not
    /// restored.
    pub fn resumed_at(&self) -> Option<u64> {
        self.resumed_at.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The most bytes the source held at once: its read buffer plus the longest
    /// line (or chunk) it assembled. Bounded by `read_buffer + max_line_bytes + 1`
    /// whatever the file's size.
    pub fn peak_buffered_bytes(&self) -> u64 {
        self.peak_buffered.load(Ordering::Relaxed)
    }
}

/// What a [`FileSource`] emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Lines { max_line_bytes: usize },
    Chunks { chunk_bytes: usize },
}

/// A file to read as lines ([`FileSource::lines`], then
/// [`Pipeline::file_lines`](crate::Pipeline::file_lines)) or as chunks
/// ([`FileSource::chunks`], then
/// [`Pipeline::file_chunks`](crate::Pipeline::file_chunks)).
///
/// The source reads only when downstream has credit, at most one element per
/// unit of credit, through one buffer of `read_buffer` bytes: its memory is that
/// buffer plus one line of at most `max_line_bytes` (or one chunk), whatever the
/// file's size. Reads are blocking calls on the stage's arbiter thread, one
/// buffer at a time.
///
/// # Checkpoints
///
/// The reading stage is checkpointed: its position is the byte offset after the
/// last line (or chunk) it emitted, the number of lines before it, and the
/// file's identity — its device and inode (on unix), its length, and the CRC-32
/// of its first bytes (at most 1 KiB) as they were when it opened the file. A
/// pipeline restored from a checkpoint reads on from exactly that offset, so
/// every line reaches the pipeline once across the crash. When it opens the file
/// again the source applies one rule:
///
/// - **the same file**: same device and inode, at least as long as the offset,
///   same first bytes — it resumes at the offset (a file that grew since is read
///   on to its new end);
/// - **rotated**: another device or inode is at the path (the old file was
///   renamed away and a new one created) — it reads the new file from its
///   beginning; what the old file held past the offset is not read;
/// - **truncated or replaced**: the same inode but shorter than the offset, or
///   other first bytes — a new file: it reads it from its beginning.
///
/// Starting over is logged as a `tracing` warning naming the file and the
/// reason, and [`FileSourceStats::resumed_at`] says 0. A copy of the file (a
/// backup restored, the file moved to another disk) is another inode: a new file.
/// The lines and chunks after the reading stage (the UTF-8 check, the map) keep
/// no state. A restore overrides [`from_offset`](Self::from_offset).
///
/// # Examples
///
/// ```
/// use weir_operators::file::FileSource;
/// use weir_operators::{FlowExt, Pipeline};
/// use weir_supervisor::dead_letter::MemoryDlq;
/// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let path = std::env::temp_dir().join(format!("weir-doc-src-{}.txt", std::process::id()));
/// std::fs::write(&path, "alpha\nbeta\ngamma\n")?;
/// let dead = MemoryDlq::new(10);
/// let source = FileSource::lines(&path).from_offset(6).dead_letters(dead.clone());
/// let done = Pipeline::file_lines(source).collect().run(&rt)?.wait()?;
/// let texts: Vec<_> = done.output.iter().map(|l| l.text.as_str()).collect();
/// assert_eq!(texts, ["beta", "gamma"]);
/// assert_eq!(done.output[0].next_offset, 11); // the checkpoint after "beta"
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct FileSource {
    pub(crate) path: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) from_offset: u64,
    pub(crate) read_buffer: usize,
    pub(crate) stats: Arc<FileSourceStats>,
    pub(crate) dead_letters: Option<weir_runtime::Supervision<Checked>>,
    pub(crate) name: Option<String>,
    pub(crate) follow: Option<std::time::Duration>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("from_offset", &self.from_offset)
            .field("read_buffer", &self.read_buffer)
            .finish_non_exhaustive()
    }
}

impl FileSource {
    fn new(path: impl AsRef<Path>, mode: Mode) -> Self {
        FileSource {
            path: path.as_ref().to_path_buf(),
            mode,
            from_offset: 0,
            read_buffer: DEFAULT_READ_BUFFER,
            stats: Arc::default(),
            dead_letters: None,
            name: None,
            follow: None,
        }
    }

    /// Names the source's stages: `name` reads; in lines mode `name_check` turns
    /// rejected lines away and `name_out` hands the lines on. Without a name they
    /// are `file_lines#i`, `validate#i+1`, `map#i+2` (or `file_chunks#i`). Stage
    /// names must be unique in a pipeline: name each source when there are several.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The lines of `path`, each at most [`DEFAULT_MAX_LINE_BYTES`] long.
    pub fn lines(path: impl AsRef<Path>) -> Self {
        Self::new(
            path,
            Mode::Lines {
                max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            },
        )
    }

    /// The bytes of `path` in chunks of `chunk_bytes` (the last may be shorter).
    /// `chunk_bytes` 0 is rejected when the pipeline is built.
    pub fn chunks(path: impl AsRef<Path>, chunk_bytes: usize) -> Self {
        Self::new(path, Mode::Chunks { chunk_bytes })
    }

    /// The longest line accepted, in bytes without the newline (lines mode). A
    /// longer line is not stored: it fails with its file and byte offset, and goes
    /// to the [`dead_letters`](Self::dead_letters) if there are some (otherwise it
    /// fails the pipeline). 0 is rejected when the pipeline is built.
    pub fn max_line_bytes(mut self, max: usize) -> Self {
        if let Mode::Lines { max_line_bytes } = &mut self.mode {
            *max_line_bytes = max;
        }
        self
    }

    /// Starts reading at byte `offset` of the file, exactly: pass the
    /// `next_offset` of the last element processed to resume after it. An offset
    /// past the end of the file reads nothing.
    pub fn from_offset(mut self, offset: u64) -> Self {
        self.from_offset = offset;
        self
    }

    /// The size of the read buffer, in bytes (default [`DEFAULT_READ_BUFFER`]). 0
    /// is rejected when the pipeline is built.
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes;
        self
    }

    /// Where rejected lines go (lines mode): each as a dead letter whose element is
    /// the [`Line`] (offsets and a sample of the text) and whose error names the
    /// file, the byte offset and the reason.
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<Line>) -> Self {
        self.dead_letters = Some(crate::limit::rejections_to(LineDlq(sink)));
        self
    }

    /// Follows the file as it grows, across rotation and truncation (`tail -F`;
    /// lines mode): at the end of the file the source looks again every `poll`
    /// (a tokio timer; it holds nothing and blocks nothing meanwhile), and the
    /// stream ends only when the pipeline is shut down. A last line without its
    /// newline waits for it.
    ///
    /// - **Rotated** (another file at the path: the old one renamed away, a new
    ///   one created): the old file is read to its end — its unfinished last line
    ///   emitted as it is — then the new one from its start.
    /// - **Gone** (nothing at the path yet, between the rename and the create):
    ///   it waits.
    /// - **Truncated** (the open file is shorter than what was read of it): it
    ///   reads it again from its start, with a warning; an unfinished line is
    ///   dropped.
    ///
    /// Checkpointed as without `follow`: the position is in the file being read.
    /// `poll` 0 is rejected when the pipeline is built, as is `follow` with
    /// chunks.
    pub fn follow(mut self, poll: std::time::Duration) -> Self {
        self.follow = Some(poll);
        self
    }

    /// The source's counters, updated while it runs.
    pub fn stats(&self) -> Arc<FileSourceStats> {
        Arc::clone(&self.stats)
    }
}

/// A line as the source stage emits it, before the check that turns rejected
/// lines away.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub(crate) line: Line,
    pub(crate) rejected: Option<String>,
}

impl weir_runtime::memory::ByteSize for Line {
    fn byte_size(&self) -> usize {
        size_of::<Line>() + self.text.capacity()
    }
}

impl weir_runtime::memory::ByteSize for Chunk {
    fn byte_size(&self) -> usize {
        size_of::<Chunk>() + self.bytes.capacity()
    }
}

impl weir_runtime::memory::ByteSize for Checked {
    fn byte_size(&self) -> usize {
        size_of::<Checked>()
            + self.line.text.capacity()
            + self.rejected.as_ref().map_or(0, String::capacity)
    }
}

/// Hands the dead letters of the check stage to the user's sink as [`Line`]s.
pub(crate) struct LineDlq<S>(pub(crate) S);

impl<S: DeadLetterSink<Line>> DeadLetterSink<Checked> for LineDlq<S> {
    fn offer(&self, letter: DeadLetter<Checked>) -> Result<(), (DeadLetter<Checked>, String)> {
        let rejected = letter.element.rejected.clone();
        let (line, meta) = split(letter);
        self.0.offer(meta.with(line)).map_err(|(back, why)| {
            let (line, meta) = split(back);
            (meta.with(Checked { line, rejected }), why)
        })
    }

    /// The user's file, so that a checkpointed pipeline writes the rejected lines
    /// in checkpoint order and cuts the file back on a restore (each once).
    fn ordered_file(&self) -> Option<weir_supervisor::dead_letter::DlqOrder> {
        self.0.ordered_file()
    }

    fn charge_memory(&self, charge: Arc<dyn LetterCharge<Checked>>) {
        self.0.charge_memory(Arc::new(LineCharge(charge)));
    }
}

/// The check stage's memory-budget share, for the user's queue of [`Line`]s.
struct LineCharge(Arc<dyn LetterCharge<Checked>>);

impl LetterCharge<Line> for LineCharge {
    fn size_of(&self, line: &Line) -> u64 {
        weir_runtime::memory::ByteSize::byte_size(line) as u64
    }
    fn charge(&self, bytes: u64) {
        self.0.charge(bytes);
    }
    fn release(&self, bytes: u64) {
        self.0.release(bytes);
    }
}

/// A dead letter without its element.
struct Meta {
    stage: String,
    pipeline: String,
    class: ErrorClass,
    error: String,
    attempts: u32,
    at: std::time::SystemTime,
    element_index: u64,
}

impl Meta {
    fn with<T>(self, element: T) -> DeadLetter<T> {
        DeadLetter {
            element,
            stage: self.stage,
            pipeline: self.pipeline,
            class: self.class,
            error: self.error,
            attempts: self.attempts,
            at: self.at,
            element_index: self.element_index,
        }
    }
}

fn split<T: Into<Line>>(letter: DeadLetter<T>) -> (Line, Meta) {
    let meta = Meta {
        stage: letter.stage,
        pipeline: letter.pipeline,
        class: letter.class,
        error: letter.error,
        attempts: letter.attempts,
        at: letter.at,
        element_index: letter.element_index,
    };
    (letter.element.into(), meta)
}

impl From<Checked> for Line {
    fn from(c: Checked) -> Line {
        c.line
    }
}

/// The operator reading the file.
pub(crate) struct FileReadStage {
    path: PathBuf,
    mode: Mode,
    from_offset: u64,
    read_buffer: usize,
    stats: Arc<FileSourceStats>,
    reader: Option<BoundedLineReader<File>>,
    /// The file as it was opened, for the identity a checkpoint records.
    opened: Option<Opened>,
    /// Byte offset after the last element emitted, and the elements before it.
    offset: u64,
    line: u64,
    /// The position a restore handed over, applied when the file is opened.
    restored: Option<SourcePosition>,
    done: bool,
    /// How often a following source looks for more, and its timer.
    follow: Option<std::time::Duration>,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for FileReadStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReadStage")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl FileReadStage {
    pub(crate) fn new(source: &FileSource) -> Self {
        FileReadStage {
            path: source.path.clone(),
            mode: source.mode,
            from_offset: source.from_offset,
            read_buffer: source.read_buffer,
            stats: Arc::clone(&source.stats),
            reader: None,
            opened: None,
            offset: source.from_offset,
            line: 0,
            restored: None,
            done: false,
            follow: source.follow,
            timer: None,
        }
    }

    fn fail(&self, what: &str, e: &std::io::Error) -> Failure {
        let class = ErrorClass::Permanent;
        Failure::error(class, format!("file {}: {what}: {e}", self.path.display()))
    }

    /// Opens the file and positions the reader: at the restored position if the
    /// file is still the one it is in (see [`Resume::decide`]), else at its start;
    /// at `from_offset` when not restored.
    fn open(&mut self) -> Result<(), Failure> {
        let mut file = File::open(&self.path).map_err(|e| self.fail("cannot open", &e))?;
        let opened = Opened::of(&mut file).map_err(|e| self.fail("cannot read", &e))?;
        let (offset, line) = match self.restored.take() {
            None => (self.from_offset, 0),
            Some(saved) => {
                let resume = Resume::decide(&saved, &opened);
                resume.warn(&self.path, &saved);
                let at = match resume {
                    Resume::At { offset, line } => (offset, line),
                    Resume::Rotated | Resume::Truncated(_) => (0, 0),
                };
                self.stats.resumed_at.store(at.0 + 1, Ordering::Relaxed);
                at
            }
        };
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| self.fail("cannot seek", &e))?;
        let max = match self.mode {
            Mode::Lines { max_line_bytes } => max_line_bytes,
            Mode::Chunks { .. } => 1,
        };
        let reader = BoundedLineReader::new(file, offset, self.read_buffer, max);
        self.reader = Some(match self.follow {
            Some(_) => reader.follow(),
            None => reader,
        });
        self.opened = Some(opened);
        self.offset = offset;
        self.line = line;
        self.stats.offset.store(offset, Ordering::Relaxed);
        self.stats.line.store(line, Ordering::Relaxed);
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        if self.read_buffer == 0 {
            return Err("read_buffer must be at least 1 byte".into());
        }
        match self.mode {
            Mode::Lines { max_line_bytes: 0 } => {
                return Err("max_line_bytes must be at least 1".into());
            }
            Mode::Chunks { chunk_bytes: 0 } => {
                return Err("chunk_bytes must be at least 1".into());
            }
            _ => {}
        }
        match (self.follow, self.mode) {
            (Some(poll), _) if poll.is_zero() => {
                return Err("follow(poll): poll must be longer than 0".into());
            }
            (Some(_), Mode::Chunks { .. }) => {
                return Err("follow is for lines: a chunk source reads a file to its end".into());
            }
            _ => {}
        }
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("file {}: {e}", self.path.display()))?;
        if !meta.is_file() {
            return Err(format!(
                "file {}: is a directory or not a regular file",
                self.path.display()
            ));
        }
        Ok(())
    }

    /// The next element made by `make` (opening the file first if need be),
    /// `None` at the end of the file. The position moves past it: the caller
    /// emits it in the same step.
    fn produce<T>(
        &mut self,
        make: &mut impl FnMut(
            &mut BoundedLineReader<File>,
            &Path,
        ) -> std::io::Result<Option<(T, u64, bool)>>,
    ) -> Result<Option<T>, Failure> {
        if self.done {
            return Ok(None);
        }
        if self.reader.is_none() {
            self.open()?;
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        let made = make(reader, &self.path);
        self.stats
            .bytes_read
            .store(reader.read_bytes(), Ordering::Relaxed);
        self.stats
            .peak_buffered
            .store(reader.peak_bytes() as u64, Ordering::Relaxed);
        match made {
            Ok(Some((element, next_offset, rejected))) => {
                self.offset = next_offset;
                self.line += 1;
                self.stats.emitted.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .rejected
                    .fetch_add(u64::from(rejected), Ordering::Relaxed);
                self.stats.offset.store(next_offset, Ordering::Relaxed);
                self.stats.line.store(self.line, Ordering::Relaxed);
                Ok(Some(element))
            }
            Ok(None) => {
                // A following source is caught up, not done.
                self.done = self.follow.is_none();
                Ok(None)
            }
            Err(e) => {
                let at = reader.offset();
                Err(self.fail(&format!("read error at byte offset {at}"), &e))
            }
        }
    }

    /// Reads and pushes up to `io.room()` elements of type `T`, made by `make`.
    fn pump<T>(
        &mut self,
        io: &mut Io<'_, Infallible, T>,
        mut make: impl FnMut(
            &mut BoundedLineReader<File>,
            &Path,
        ) -> std::io::Result<Option<(T, u64, bool)>>,
    ) -> Step {
        if io.input_ended() || self.done {
            return Step::Finished;
        }
        while io.has_room() {
            match self.produce(&mut make) {
                Ok(Some(element)) => io.push(element),
                Ok(None) => return Step::Finished,
                Err(failure) => return Step::Failed(failure),
            }
        }
        Step::Continue
    }
}

/// What a following source finds at the path once it has read all there was.
enum Found {
    /// The same file, no shorter: wait for more.
    Same,
    /// Nothing at the path: wait for it.
    Gone,
    /// Another file at the path.
    Rotated,
    /// The open file is shorter than what was read of it.
    Truncated(u64),
}

impl FileReadStage {
    /// The lines of a following source: as [`pump`](Self::pump), but at the end
    /// of the file it looks for a rotation or a truncation, and otherwise waits
    /// `poll`.
    fn pump_following(
        &mut self,
        io: &mut Io<'_, Infallible, Checked>,
        cx: &mut Context<'_>,
        max_line_bytes: usize,
    ) -> Step {
        if io.input_ended() {
            return Step::Finished;
        }
        while io.has_room() {
            match self.produce(&mut |r, p| next_line(r, p, max_line_bytes)) {
                Ok(Some(line)) => io.push(line),
                Err(failure) => return Step::Failed(failure),
                Ok(None) => match self.look() {
                    Ok(Found::Same | Found::Gone) => return self.wait(cx),
                    Ok(Found::Rotated) => {
                        let label = format!("file {}", self.path.display());
                        if let Some(raw) = self.reader.as_mut().and_then(|r| r.take_partial()) {
                            let line = checked(&label, raw, max_line_bytes);
                            self.emitted(&line);
                            io.push(line);
                        }
                        tracing::info!(file = %self.path.display(), "file rotated: reading the new one");
                        self.start_over();
                    }
                    Ok(Found::Truncated(len)) => {
                        tracing::warn!(
                            file = %self.path.display(),
                            len,
                            read = self.offset,
                            "file truncated: reading it again from its start"
                        );
                        self.start_over();
                    }
                    Err(failure) => return Step::Failed(failure),
                },
            }
        }
        Step::Continue
    }

    /// Counts a line emitted outside [`produce`](Self::produce).
    fn emitted(&mut self, line: &Checked) {
        self.offset = line.line.next_offset;
        self.line += 1;
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        self.stats
            .rejected
            .fetch_add(u64::from(line.rejected.is_some()), Ordering::Relaxed);
        self.stats.offset.store(self.offset, Ordering::Relaxed);
        self.stats.line.store(self.line, Ordering::Relaxed);
    }

    /// The next read opens the file at the path from its start.
    fn start_over(&mut self) {
        self.reader = None;
        self.opened = None;
        self.restored = None;
        self.from_offset = 0;
    }

    /// What is at the path now, against the file being read.
    fn look(&self) -> Result<Found, Failure> {
        let (Some(reader), Some(opened)) = (&self.reader, &self.opened) else {
            return Ok(Found::Same);
        };
        let at_path = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Gone),
            Err(e) => return Err(self.fail("cannot stat", &e)),
        };
        if let (Some(then), Some(now)) = (opened.dev_ino, super::position::dev_ino(&at_path))
            && then != now
        {
            return Ok(Found::Rotated);
        }
        let len = reader
            .get_ref()
            .metadata()
            .map_err(|e| self.fail("cannot stat", &e))?
            .len();
        if len < reader.offset() {
            return Ok(Found::Truncated(len));
        }
        Ok(Found::Same)
    }

    /// Waits `poll` before the next look (the timer wakes the stage).
    fn wait(&mut self, cx: &mut Context<'_>) -> Step {
        let poll = self.follow.unwrap_or_default();
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(poll)));
        if timer.as_mut().poll(cx).is_ready() {
            self.timer = None;
            cx.waker().wake_by_ref();
        }
        Step::Continue
    }
}

/// The position is what the source has emitted: the offset after its last
/// element, the number of elements, and the file they came from.
impl Checkpointable for FileReadStage {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        let position = match (&self.restored, &self.opened, &self.reader) {
            // Restored but not opened yet: the restored position stands.
            (Some(saved), _, _) => saved.clone(),
            (None, Some(opened), Some(reader)) => {
                // The length now, for the record; a failed stat keeps the one at open.
                let len = reader.get_ref().metadata().map_or(opened.len, |m| m.len());
                SourcePosition {
                    offset: self.offset,
                    line: self.line,
                    identity: Some(opened.identity(len)),
                }
            }
            _ => SourcePosition {
                offset: self.offset,
                line: self.line,
                identity: None,
            },
        };
        Snapshot::of(POSITION_VERSION, &position)
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let saved: SourcePosition = snapshot.decode(POSITION_VERSION, ctx)?;
        self.offset = saved.offset;
        self.line = saved.line;
        self.restored = Some(saved);
        self.reader = None;
        self.opened = None;
        self.done = false;
        Ok(())
    }
}

/// The lines mode of the read stage.
#[derive(Debug)]
pub(crate) struct LinesStage(pub(crate) FileReadStage);

impl Operator for LinesStage {
    type In = Infallible;
    type Out = Checked;

    fn kind(&self) -> &'static str {
        "file_lines"
    }

    fn validate(&self) -> Result<(), String> {
        self.0.check()
    }

    fn max_element_bytes(&self) -> Option<u64> {
        match self.0.mode {
            Mode::Lines { max_line_bytes } => Some(max_line_bytes as u64),
            Mode::Chunks { .. } => None,
        }
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(&mut self.0)
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, Checked>, cx: &mut Context<'_>) -> Step {
        let Mode::Lines { max_line_bytes } = self.0.mode else {
            return Step::Finished;
        };
        if self.0.follow.is_some() {
            return self.0.pump_following(io, cx, max_line_bytes);
        }
        self.0
            .pump(io, |reader, path| next_line(reader, path, max_line_bytes))
    }
}

/// The next line of `reader` as the lines stage emits it, with its next offset
/// and whether it is rejected.
fn next_line(
    reader: &mut BoundedLineReader<File>,
    path: &Path,
    max_line_bytes: usize,
) -> std::io::Result<Option<(Checked, u64, bool)>> {
    let Some(raw) = reader.next_line()? else {
        return Ok(None);
    };
    let next = raw.next_offset;
    let c = checked(&format!("file {}", path.display()), raw, max_line_bytes);
    let rejected = c.rejected.is_some();
    Ok(Some((c, next, rejected)))
}

/// A line as the check stage takes it: its text, or why it is rejected (over
/// `max_line_bytes`, or not UTF-8), the reason starting with `label`.
pub(crate) fn checked(label: &str, raw: RawLine, max_line_bytes: usize) -> Checked {
    let (text, rejected) = match raw.bytes {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => (text, None),
            Err(e) => {
                let bytes = e.into_bytes();
                let end = bytes.len().min(super::reader::SAMPLE_BYTES);
                (
                    String::from_utf8_lossy(&bytes[..end]).into_owned(),
                    Some(format!(
                        "{label}: line at byte offset {} is not valid UTF-8",
                        raw.offset
                    )),
                )
            }
        },
        Err(o) => (
            String::from_utf8_lossy(&o.sample).into_owned(),
            Some(format!(
                "{label}: line at byte offset {} is {} bytes, over max_line_bytes {}",
                raw.offset, o.len, max_line_bytes
            )),
        ),
    };
    let line = Line {
        offset: raw.offset,
        next_offset: raw.next_offset,
        text,
    };
    Checked { line, rejected }
}

/// The chunks mode of the read stage.
#[derive(Debug)]
pub(crate) struct ChunksStage(pub(crate) FileReadStage);

impl Operator for ChunksStage {
    type In = Infallible;
    type Out = Chunk;

    fn kind(&self) -> &'static str {
        "file_chunks"
    }

    fn validate(&self) -> Result<(), String> {
        self.0.check()
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(&mut self.0)
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, Chunk>, _cx: &mut Context<'_>) -> Step {
        let Mode::Chunks { chunk_bytes } = self.0.mode else {
            return Step::Finished;
        };
        self.0.pump(io, |reader, _| next_chunk(reader, chunk_bytes))
    }
}

/// The next chunk of `reader`, with its next offset.
fn next_chunk(
    reader: &mut BoundedLineReader<File>,
    chunk_bytes: usize,
) -> std::io::Result<Option<(Chunk, u64, bool)>> {
    Ok(reader.next_chunk(chunk_bytes)?.map(|(offset, bytes)| {
        let next_offset = offset + bytes.len() as u64;
        let chunk = Chunk {
            offset,
            next_offset,
            bytes,
        };
        (chunk, next_offset, false)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64;

    fn stage(path: &Path, buffer: usize) -> FileReadStage {
        FileReadStage::new(&FileSource::lines(path).read_buffer(buffer))
    }

    /// Reads up to `n` lines (all with `None`), as the stage would emit them.
    fn read(stage: &mut FileReadStage, n: Option<usize>) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while n.is_none_or(|n| out.len() < n) {
            let next = stage.produce(&mut |r, p| next_line(r, p, MAX)).unwrap();
            match next {
                Some(c) => out.push((stage.line, c.line.text)),
                None => break,
            }
        }
        out
    }

    fn restored(path: &Path, buffer: usize, snapshot: &Snapshot) -> FileReadStage {
        let mut s = stage(path, buffer);
        s.restore(snapshot, &RestoreContext::default()).unwrap();
        s
    }

    fn texts(lines: &[(u64, String)]) -> Vec<&str> {
        lines.iter().map(|(_, t)| t.as_str()).collect()
    }

    /// A line longer than the read buffer, an empty line, a `\r\n` and a last line
    /// without a newline: after a snapshot at every line, a fresh source restored
    /// from it reads exactly the rest, numbered on.
    #[test]
    fn a_restored_source_reads_exactly_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let content = "alpha\na-line-longer-than-the-buffer\n\nd\r\ne\nlast-without-newline";
        std::fs::write(&path, content).unwrap();
        let all: Vec<&str> = content.lines().collect();
        for buffer in [3, 7, 4096] {
            for k in 0..=all.len() {
                let mut first = stage(&path, buffer);
                let before = read(&mut first, Some(k));
                assert_eq!(texts(&before), all[..k]);
                let snapshot = first.snapshot(1).unwrap();
                let offset = first.offset;
                // The first source goes on reading past the barrier; that changes
                // nothing in the snapshot it gave.
                read(&mut first, None);
                let mut second = restored(&path, buffer, &snapshot);
                let after = read(&mut second, None);
                assert_eq!(texts(&after), all[k..], "buffer {buffer}, k {k}");
                let numbers: Vec<u64> = after.iter().map(|(n, _)| *n).collect();
                let expected: Vec<u64> = (k as u64 + 1..=all.len() as u64).collect();
                assert_eq!(numbers, expected);
                assert_eq!(second.stats.resumed_at(), Some(offset));
                assert_eq!(second.stats.line(), all.len() as u64);
            }
        }
    }

    #[test]
    fn chunks_resume_at_the_chunk_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut first = FileReadStage::new(&FileSource::chunks(&path, 4).read_buffer(3));
        let c = first
            .produce(&mut |r, _| next_chunk(r, 4))
            .unwrap()
            .unwrap();
        assert_eq!(c.bytes, b"0123");
        let snapshot = first.snapshot(1).unwrap();
        let mut second = FileReadStage::new(&FileSource::chunks(&path, 4));
        second
            .restore(&snapshot, &RestoreContext::default())
            .unwrap();
        let mut rest = Vec::new();
        while let Some(c) = second.produce(&mut |r, _| next_chunk(r, 4)).unwrap() {
            rest.push((c.offset, c.bytes));
        }
        assert_eq!(rest, [(4, b"4567".to_vec()), (8, b"89".to_vec())]);
        assert_eq!(second.line, 3);
    }

    #[test]
    fn a_file_that_grew_is_read_on_from_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "a\nb\n").unwrap();
        let mut first = stage(&path, 16);
        assert_eq!(texts(&read(&mut first, None)), ["a", "b"]);
        let snapshot = first.snapshot(1).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"c\n").unwrap();
        let mut second = restored(&path, 16, &snapshot);
        assert_eq!(read(&mut second, None), [(3, "c".to_string())]);
    }

    #[test]
    fn a_finished_source_restored_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "a\nb").unwrap();
        let mut first = stage(&path, 16);
        read(&mut first, None);
        let snapshot = first.snapshot(4).unwrap();
        assert!(read(&mut restored(&path, 16, &snapshot), None).is_empty());
    }

    /// Truncated in place (shorter than the offset), or rewritten with other first
    /// bytes: a new file, read from its beginning.
    #[test]
    fn a_truncated_or_rewritten_file_is_read_from_its_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        for rewrite in ["x\n", "other\nlonger\ncontent\n"] {
            std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
            let mut first = stage(&path, 16);
            read(&mut first, Some(2));
            let snapshot = first.snapshot(1).unwrap();
            // `fs::write` truncates the same inode.
            std::fs::write(&path, rewrite).unwrap();
            let mut second = restored(&path, 16, &snapshot);
            let all: Vec<&str> = rewrite.lines().collect();
            assert_eq!(texts(&read(&mut second, None)), all, "{rewrite:?}");
            assert_eq!(second.stats.resumed_at(), Some(0));
        }
    }

    /// Another file at the path, even with the same content: rotated, read from
    /// its beginning.
    #[cfg(unix)]
    #[test]
    fn a_rotated_file_is_read_from_its_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.log");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let mut first = stage(&path, 16);
        read(&mut first, Some(2));
        let snapshot = first.snapshot(1).unwrap();
        std::fs::rename(&path, dir.path().join("in.log.1")).unwrap();
        std::fs::write(&path, "one\ntwo\nthree\nfour\n").unwrap();
        let mut second = restored(&path, 16, &snapshot);
        assert_eq!(
            texts(&read(&mut second, None)),
            ["one", "two", "three", "four"]
        );
        assert_eq!(second.stats.resumed_at(), Some(0));
    }

    #[test]
    fn snapshots_before_the_file_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        // Not opened yet: the offset it was told to start at.
        let mut fresh = FileReadStage::new(&FileSource::lines(&path).from_offset(2));
        let snapshot = fresh.snapshot(1).unwrap();
        let mut second = restored(&path, 16, &snapshot);
        assert_eq!(texts(&read(&mut second, None)), ["b", "c"]);
        // Restored, not opened yet: the restored position, identity included.
        let mut first = stage(&path, 16);
        read(&mut first, Some(1));
        let taken = first.snapshot(1).unwrap();
        let mut again = restored(&path, 16, &taken);
        assert_eq!(again.snapshot(2).unwrap(), taken);
    }

    #[test]
    fn a_snapshot_of_another_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "a\n").unwrap();
        let bad = Snapshot::of(POSITION_VERSION + 1, &0_u64).unwrap();
        let r = stage(&path, 16).restore(&bad, &RestoreContext::default());
        assert!(matches!(r, Err(StateError::Version { .. })), "{r:?}");
    }
}
