//! [`FileSource`]: the settings of a file source, and the [`Line`] and [`Chunk`]
//! elements it emits.

use std::convert::Infallible;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};
use weir_supervisor::dead_letter::{DeadLetter, DeadLetterSink};

use super::reader::BoundedLineReader;

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Hands the dead letters of the check stage to the user's sink as [`Line`]s.
struct LineDlq<S>(S);

impl<S: DeadLetterSink<Line>> DeadLetterSink<Checked> for LineDlq<S> {
    fn offer(&self, letter: DeadLetter<Checked>) -> Result<(), (DeadLetter<Checked>, String)> {
        let rejected = letter.element.rejected.clone();
        let (line, meta) = split(letter);
        self.0.offer(meta.with(line)).map_err(|(back, why)| {
            let (line, meta) = split(back);
            (meta.with(Checked { line, rejected }), why)
        })
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
    done: bool,
}

impl std::fmt::Debug for FileReadStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReadStage")
            .field("path", &self.path)
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
            done: false,
        }
    }

    fn fail(&self, what: &str, e: &std::io::Error) -> Step {
        let class = ErrorClass::Permanent;
        Step::Failed(Failure::error(
            class,
            format!("file {}: {what}: {e}", self.path.display()),
        ))
    }

    fn open(&mut self) -> Result<(), Step> {
        let mut file = File::open(&self.path).map_err(|e| self.fail("cannot open", &e))?;
        if self.from_offset > 0 {
            file.seek(SeekFrom::Start(self.from_offset))
                .map_err(|e| self.fail("cannot seek", &e))?;
        }
        let max = match self.mode {
            Mode::Lines { max_line_bytes } => max_line_bytes,
            Mode::Chunks { .. } => 1,
        };
        self.reader = Some(BoundedLineReader::new(
            file,
            self.from_offset,
            self.read_buffer,
            max,
        ));
        self.stats.offset.store(self.from_offset, Ordering::Relaxed);
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
        if self.reader.is_none()
            && let Err(step) = self.open()
        {
            return step;
        }
        let Some(reader) = self.reader.as_mut() else {
            return Step::Finished;
        };
        let mut result = Step::Continue;
        while io.has_room() {
            match make(reader, &self.path) {
                Ok(Some((element, next_offset, rejected))) => {
                    io.push(element);
                    self.stats.emitted.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .rejected
                        .fetch_add(u64::from(rejected), Ordering::Relaxed);
                    self.stats.offset.store(next_offset, Ordering::Relaxed);
                }
                Ok(None) => {
                    self.done = true;
                    result = Step::Finished;
                    break;
                }
                Err(e) => {
                    let at = reader.offset();
                    result = self.fail(&format!("read error at byte offset {at}"), &e);
                    break;
                }
            }
        }
        if let Some(reader) = &self.reader {
            self.stats
                .bytes_read
                .store(reader.read_bytes(), Ordering::Relaxed);
            self.stats
                .peak_buffered
                .store(reader.peak_bytes() as u64, Ordering::Relaxed);
        }
        result
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

    fn step(&mut self, io: &mut Io<'_, Infallible, Checked>, _cx: &mut Context<'_>) -> Step {
        let Mode::Lines { max_line_bytes } = self.0.mode else {
            return Step::Finished;
        };
        self.0.pump(io, |reader, path| {
            let Some(raw) = reader.next_line()? else {
                return Ok(None);
            };
            let (text, rejected) = match raw.bytes {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => (text, None),
                    Err(e) => {
                        let bytes = e.into_bytes();
                        let end = bytes.len().min(super::reader::SAMPLE_BYTES);
                        (
                            String::from_utf8_lossy(&bytes[..end]).into_owned(),
                            Some(format!(
                                "file {}: line at byte offset {} is not valid UTF-8",
                                path.display(),
                                raw.offset
                            )),
                        )
                    }
                },
                Err(o) => (
                    String::from_utf8_lossy(&o.sample).into_owned(),
                    Some(format!(
                        "file {}: line at byte offset {} is {} bytes, over max_line_bytes {}",
                        path.display(),
                        raw.offset,
                        o.len,
                        max_line_bytes
                    )),
                ),
            };
            let rejected_now = rejected.is_some();
            let line = Line {
                offset: raw.offset,
                next_offset: raw.next_offset,
                text,
            };
            Ok(Some((
                Checked { line, rejected },
                raw.next_offset,
                rejected_now,
            )))
        })
    }
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

    fn step(&mut self, io: &mut Io<'_, Infallible, Chunk>, _cx: &mut Context<'_>) -> Step {
        let Mode::Chunks { chunk_bytes } = self.0.mode else {
            return Step::Finished;
        };
        self.0.pump(io, |reader, _| {
            Ok(reader.next_chunk(chunk_bytes)?.map(|(offset, bytes)| {
                let next_offset = offset + bytes.len() as u64;
                let chunk = Chunk {
                    offset,
                    next_offset,
                    bytes,
                };
                (chunk, next_offset, false)
            }))
        })
    }
}
