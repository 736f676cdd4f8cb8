//! [`FileSink`]: buffered writes to a file, an fsync policy, rotation by size.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

use super::rotate::{Naming, Segments};

/// The write buffer's size, by default.
pub const DEFAULT_WRITE_BUFFER: usize = 64 * 1024;

/// When a [`FileSink`] makes its writes durable (`fsync`, as
/// [`File::sync_data`]). Every policy flushes the write buffer to the file when
/// the stream completes and before a rotation; they differ in when the data is
/// forced to the disk.
///
/// Every policy but [`Fsync::Never`] syncs at completion and before a rotation if
/// anything was written since the last sync: `EveryElements(10)` makes 10 fsyncs
/// over 95 elements (9, then one at completion) and 10 over 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Never: the operating system writes the data back when it chooses.
    Never,
    /// After every `n` elements (flushing the buffer first), before a rotation and
    /// at completion.
    EveryElements(u64),
    /// At most this long after the first write not yet synced (a timer of the
    /// stage's arbiter, virtual under paused time), before a rotation and at
    /// completion.
    Every(Duration),
    /// Once when the stream completes (and before a rotation).
    OnCompletion,
}

/// Counters of a file sink, shared with the caller ([`FileSink::stats`]).
#[derive(Debug, Default)]
pub struct FileSinkStats {
    elements: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    rotations: AtomicU64,
    files: Mutex<Vec<PathBuf>>,
}

impl FileSinkStats {
    /// Elements written (into the buffer: delivered).
    pub fn elements(&self) -> u64 {
        self.elements.load(Ordering::Relaxed)
    }

    /// Bytes written, delimiters included.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// `fsync` calls made.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Rotations made: files closed and renamed because the next element would
    /// have taken the file over the size bound.
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Relaxed)
    }

    /// The rotated files, oldest first; the active file (the sink's path) comes
    /// after them.
    pub fn rotated_files(&self) -> Vec<PathBuf> {
        self.files.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// A file to write a stream into: each element's bytes followed by a delimiter
/// (a newline by default), through a write buffer, with an [`Fsync`] policy and
/// optional rotation by size. Run it with
/// [`FileFlowExt::to_file`](super::FileFlowExt::to_file).
///
/// An element is delivered once it is in the write buffer; it is on the disk
/// according to the fsync policy. A failed write, flush, sync, rename or open
/// fails the stage (and so reaches its supervision); the file keeps what was
/// flushed before.
///
/// Rotation: before an element would take the active file over `max_bytes`, the
/// file is flushed (and synced unless the policy is [`Fsync::Never`]), closed and
/// renamed as [`Naming`] says, and a new file is opened at the sink's path. An
/// element larger than `max_bytes` on its own gets a file of its own, which
/// therefore exceeds the bound.
///
/// # Examples
///
/// ```
/// use weir_operators::file::{FileFlowExt, FileSink, Fsync};
/// use weir_operators::Pipeline;
/// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let path = std::env::temp_dir().join(format!("weir-doc-sink-{}.txt", std::process::id()));
/// let sink = FileSink::new(&path).fsync(Fsync::EveryElements(2));
/// let stats = sink.stats();
/// Pipeline::from_iter(["a", "b", "c"]).to_file(sink).run(&rt)?.wait()?;
/// assert_eq!(std::fs::read_to_string(&path)?, "a\nb\nc\n");
/// assert_eq!(stats.fsyncs(), 2); // after "b", and at completion
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct FileSink {
    pub(crate) path: PathBuf,
    pub(crate) buffer: usize,
    pub(crate) fsync: Fsync,
    pub(crate) rotate: Option<(u64, Naming)>,
    pub(crate) delimiter: Option<u8>,
    pub(crate) append: bool,
    pub(crate) stats: Arc<FileSinkStats>,
}

impl FileSink {
    /// A sink writing to `path` (created, or truncated if it exists), with a
    /// newline after each element, a [`DEFAULT_WRITE_BUFFER`], [`Fsync::OnCompletion`]
    /// and no rotation.
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileSink {
            path: path.as_ref().to_path_buf(),
            buffer: DEFAULT_WRITE_BUFFER,
            fsync: Fsync::OnCompletion,
            rotate: None,
            delimiter: Some(b'\n'),
            append: false,
            stats: Arc::default(),
        }
    }

    /// The write buffer's size in bytes. 0 is rejected when the pipeline is built.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// When to fsync. `EveryElements(0)` and `Every(Duration::ZERO)` are rejected
    /// when the pipeline is built.
    pub fn fsync(mut self, policy: Fsync) -> Self {
        self.fsync = policy;
        self
    }

    /// Rotates the file before it would exceed `max_bytes`, naming the closed
    /// files as `naming` says. 0 is rejected when the pipeline is built.
    pub fn rotate(mut self, max_bytes: u64, naming: Naming) -> Self {
        self.rotate = Some((max_bytes, naming));
        self
    }

    /// The byte written after each element (`None`: nothing, the elements are
    /// written back to back).
    pub fn delimiter(mut self, delimiter: Option<u8>) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Appends to the file if it exists instead of truncating it (its size counts
    /// towards the rotation bound).
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    /// The sink's counters, updated while it runs.
    pub fn stats(&self) -> Arc<FileSinkStats> {
        Arc::clone(&self.stats)
    }
}

/// The operator writing the file.
pub(crate) struct FileWriteStage<T> {
    sink: FileSink,
    writer: Option<BufWriter<File>>,
    segments: Option<Segments>,
    /// Bytes in the active file, buffered ones included.
    size: u64,
    /// Elements written since the last sync.
    unsynced: u64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    _type: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for FileWriteStage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriteStage")
            .field("path", &self.sink.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<T> FileWriteStage<T> {
    pub(crate) fn new(sink: FileSink) -> Self {
        FileWriteStage {
            sink,
            writer: None,
            segments: None,
            size: 0,
            unsynced: 0,
            timer: None,
            _type: PhantomData,
        }
    }

    fn failure(&self, what: &str, e: &std::io::Error) -> Failure {
        Failure::error(
            ErrorClass::Transient,
            format!("file {}: {what}: {e}", self.sink.path.display()),
        )
    }

    fn open(&mut self, append: bool) -> Result<(), Failure> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .append(append)
            .truncate(!append)
            .open(&self.sink.path)
            .map_err(|e| self.failure("cannot open for writing", &e))?;
        self.size = if append {
            file.metadata()
                .map_err(|e| self.failure("cannot stat", &e))?
                .len()
        } else {
            0
        };
        self.writer = Some(BufWriter::with_capacity(self.sink.buffer, file));
        Ok(())
    }

    /// Flushes the buffer and, if `sync` and something was written since the
    /// last sync, forces the file to the disk.
    fn flush(&mut self, sync: bool) -> Result<(), Failure> {
        let sync = sync && self.unsynced > 0;
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let result = writer.flush().and_then(|()| {
            if sync {
                writer.get_ref().sync_data()
            } else {
                Ok(())
            }
        });
        result.map_err(|e| self.failure(if sync { "fsync" } else { "flush" }, &e))?;
        if sync {
            self.sink.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.unsynced = 0;
            self.timer = None;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), Failure> {
        self.flush(self.sink.fsync != Fsync::Never)?;
        self.writer = None;
        // Cannot fail: `rotate` is called only when rotation is configured, and `run`
        // scans the segments whenever it opens the file under rotation.
        let segments = self
            .segments
            .as_mut()
            .expect("segments exist when rotating");
        let to = segments.next_name();
        std::fs::rename(&self.sink.path, &to)
            .map_err(|e| self.failure(&format!("cannot rename to {}", to.display()), &e))?;
        if let Ok(mut files) = self.sink.stats.files.lock() {
            files.push(to);
        }
        self.sink.stats.rotations.fetch_add(1, Ordering::Relaxed);
        self.open(false)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let len = (bytes.len() + usize::from(self.sink.delimiter.is_some())) as u64;
        if let Some((max, _)) = self.sink.rotate
            && self.size > 0
            && self.size + len > max
        {
            self.rotate()?;
        }
        let delimiter = self.sink.delimiter;
        // Cannot fail: `run` opens the file before the first write of every step, and
        // `rotate` above either reopened it or returned an error.
        let writer = self.writer.as_mut().expect("the file is open");
        let result = writer.write_all(bytes).and_then(|()| match delimiter {
            Some(d) => writer.write_all(&[d]),
            None => Ok(()),
        });
        result.map_err(|e| self.failure("write error", &e))?;
        self.size += len;
        self.unsynced += 1;
        self.sink.stats.elements.fetch_add(1, Ordering::Relaxed);
        self.sink.stats.bytes.fetch_add(len, Ordering::Relaxed);
        if let Fsync::EveryElements(n) = self.sink.fsync
            && self.unsynced >= n
        {
            self.flush(true)?;
        }
        Ok(())
    }

    /// Syncs when the interval since the first unsynced write has passed, or arms
    /// the timer that wakes the stage then.
    fn interval(&mut self, every: Duration, cx: &mut Context<'_>) -> Result<(), Failure> {
        if self.unsynced == 0 {
            self.timer = None;
            return Ok(());
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        if timer.as_mut().poll(cx) == Poll::Ready(()) {
            self.flush(true)?;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        if self.sink.buffer == 0 {
            return Err("write buffer must be at least 1 byte".into());
        }
        match self.sink.fsync {
            Fsync::EveryElements(0) => return Err("fsync every 0 elements".into()),
            Fsync::Every(d) if d.is_zero() => return Err("fsync interval is zero".into()),
            _ => {}
        }
        if self.sink.rotate.is_some_and(|(max, _)| max == 0) {
            return Err("rotation max_bytes must be at least 1".into());
        }
        let path = &self.sink.path;
        if path.is_dir() {
            return Err(format!("file {}: is a directory", path.display()));
        }
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            return Err(format!(
                "file {}: its directory does not exist",
                path.display()
            ));
        }
        Ok(())
    }

    fn run(
        &mut self,
        io: &mut Io<'_, T, std::convert::Infallible>,
        cx: &mut Context<'_>,
    ) -> Result<Step, Failure>
    where
        T: AsRef<[u8]>,
    {
        if self.writer.is_none() {
            if let Some((_, naming)) = self.sink.rotate {
                self.segments = Some(
                    Segments::scan(&self.sink.path, naming)
                        .map_err(|e| self.failure("cannot list rotated files", &e))?,
                );
            }
            self.open(self.sink.append)?;
        }
        while let Some(x) = io.pop() {
            self.write(x.as_ref())?;
            io.complete(1);
        }
        if io.input_exhausted() {
            self.flush(self.sink.fsync != Fsync::Never)?;
            return Ok(Step::Finished);
        }
        if let Fsync::Every(every) = self.sink.fsync {
            self.interval(every, cx)?;
        }
        Ok(Step::Continue)
    }
}

impl<T> Operator for FileWriteStage<T>
where
    T: AsRef<[u8]> + Send + 'static,
{
    type In = T;
    type Out = std::convert::Infallible;

    fn kind(&self) -> &'static str {
        "to_file"
    }

    fn validate(&self) -> Result<(), String> {
        self.check()
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, T, std::convert::Infallible>, cx: &mut Context<'_>) -> Step {
        match self.run(io, cx) {
            Ok(step) => step,
            Err(failure) => Step::Failed(failure),
        }
    }

    fn on_stop(&mut self) {
        // Whatever was delivered reaches the file even when the stage is stopped
        // (cancelled, failed elsewhere); a flush error here has nowhere to go.
        if let Some(writer) = self.writer.as_mut() {
            let _ = writer.flush();
        }
    }
}
