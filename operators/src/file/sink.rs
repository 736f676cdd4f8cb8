//! [`FileSink`]: buffered writes to a file, an fsync policy, rotation by size.

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};
use weir_supervisor::fs::{Fs, FsFile, Open, RealFs, parent_dir};

use super::commit::{PARTS_VERSION, Parts, PartsState, Recovery, Target};
use super::rotate::{Naming, Segments};

/// The write buffer's size, by default.
pub const DEFAULT_WRITE_BUFFER: usize = 64 * 1024;

/// When a [`FileSink`] makes its writes durable (`fsync`, as
/// [`File::sync_data`](std::fs::File::sync_data)). Every policy flushes the write buffer to the file when
/// the stream completes and before a rotation; they differ in when the data is
/// forced to the disk.
///
/// Every policy but [`Fsync::Never`] syncs at completion and before a rotation if
/// anything was written since the last sync: `EveryElements(10)` makes 10 fsyncs
/// over 95 elements (9, then one at completion) and 10 over 100.
/// Every policy but `Never` also syncs the directory after it creates (or
/// rotates) the file, so that a synced element's file survives a power cut.
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
    synced: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    rotations: AtomicU64,
    committed_parts: AtomicU64,
    files: Mutex<Vec<PathBuf>>,
}

impl FileSinkStats {
    /// Elements written (into the buffer: delivered).
    pub fn elements(&self) -> u64 {
        self.elements.load(Ordering::Relaxed)
    }

    /// Elements known to be on the disk: the first `synced_elements()` of
    /// [`elements`](Self::elements) were covered by a completed `fsync`, so a
    /// crash (of the process or the machine) keeps them. Under [`Fsync::Never`]
    /// it stays 0. A caller that acknowledges its
    /// input only up to this count loses nothing it acknowledged
    /// (`weir/tests/suite/file_sink_crash.rs` kills a writer 1,000 times).
    pub fn synced_elements(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
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

    /// Parts an [exactly-once](FileSink::exactly_once) sink has committed
    /// (renamed into place): rotated files once the checkpoint after them is
    /// durable, and every part left when the stream ends. 0 otherwise.
    pub fn committed_parts(&self) -> u64 {
        self.committed_parts.load(Ordering::Relaxed)
    }

    /// The rotated files, oldest first; the active file (the sink's path) comes
    /// after them. For an [exactly-once](FileSink::exactly_once) sink, the
    /// rotated files committed so far.
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
/// # Exactly once
///
/// By default the sink is not checkpointed: building a checkpointed pipeline
/// with it is refused (it truncates its file when it starts, so a restored
/// pipeline would lose what it had written), unless it
/// [appends](Self::append) — then it is **at least once**: the elements replayed
/// after a restore are written again.
///
/// With [`exactly_once`](Self::exactly_once) it commits in two phases with the
/// checkpoints:
///
/// - it writes each file as a *part* under a hidden pending name next to the
///   path, `.<name>.pending-<k>`; a rotation closes the part (flushed and
///   synced) with the rotated name it will get, and begins the next one;
/// - when a checkpoint's barrier reaches it, it flushes and syncs the part it is
///   writing, syncs the directory, and records that part's name and length and
///   the closed parts not yet committed;
/// - when that checkpoint is durable, it renames the parts closed before the
///   barrier to their rotated names (in order) and syncs the directory;
/// - when the stream completes, it commits every part left, the one being
///   written as the sink's path, through a small commit log
///   (`.<name>.commit`) so that a crash in the middle is finished by the next
///   start;
/// - restored from a checkpoint, it renames the parts that checkpoint covers if
///   a crash came before it had (idempotent), cuts the part it was writing back
///   to the recorded length (what was written after the barrier is discarded:
///   the sources replay it), and deletes the parts begun after the barrier.
///   Started without a checkpoint, it deletes the pending parts an earlier run
///   left.
///
/// So a reader never sees an element that is not committed, and after any
/// crash and restore the committed files hold exactly what an uninterrupted run
/// writes — provided the sources replay (the file sources and
/// [`Pipeline::replayable`](crate::Pipeline::replayable)) and the pipeline is
/// deterministic. With [`Naming::Numbered`] the rotated files are even the same
/// files; with [`Naming::Timestamped`] a part rotated again after a restore
/// gets the time of its new rotation.
///
/// The rotated files are what becomes visible at each checkpoint: without
/// rotation the file appears only when the stream completes; choose
/// `max_bytes` for how soon committed output should be readable. In this mode
/// the sink syncs at every checkpoint, rotation and at the end whatever the
/// [`Fsync`] policy, which adds syncs in between. A failed or aborted run
/// leaves only hidden pending parts. An element is delivered (counted) when it
/// is in the pending part.
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
    pub(crate) exactly_once: bool,
    pub(crate) stats: Arc<FileSinkStats>,
    /// Every open, write, sync, rename and removal goes through it: the real
    /// file system, or in tests one that fails or crashes at a chosen step.
    pub(crate) fs: Arc<dyn Fs>,
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
            exactly_once: false,
            stats: Arc::default(),
            fs: Arc::new(RealFs),
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

    /// Commits the output with the pipeline's checkpoints, so that a pipeline
    /// restored after a crash leaves in the file every element once (see
    /// "Exactly once" in [`FileSink`]). Nothing becomes visible before it is
    /// committed: the file (and each rotated file) is written under a hidden
    /// pending name and renamed into place by a checkpoint, or at the end of the
    /// stream. Cannot be combined with [`append`](Self::append) (rejected when
    /// the pipeline is built).
    ///
    /// # Examples
    ///
    /// Without checkpoints the whole output is committed when the stream
    /// completes:
    ///
    /// ```
    /// use weir_operators::file::{FileFlowExt, FileSink, Naming};
    /// use weir_operators::Pipeline;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let dir = std::env::temp_dir().join(format!("weir-doc-eo-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let sink = FileSink::new(dir.join("out")).rotate(4, Naming::Numbered).exactly_once();
    /// let done = Pipeline::from_iter(["a", "b", "c"]).to_file(sink).run(&rt)?.wait()?;
    /// assert_eq!(done.output.committed_parts(), 2);
    /// assert_eq!(std::fs::read_to_string(dir.join("out.1"))?, "a\nb\n");
    /// assert_eq!(std::fs::read_to_string(dir.join("out"))?, "c\n");
    /// // No pending part is left.
    /// assert_eq!(std::fs::read_dir(&dir)?.count(), 2);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn exactly_once(mut self) -> Self {
        self.exactly_once = true;
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
    /// The buffer in front of the file: an element is copied into it, and only a
    /// full buffer, a flush or a sync reaches the file (through the seam).
    writer: Option<BufWriter<Box<dyn FsFile>>>,
    segments: Option<Segments>,
    /// Bytes in the active file, buffered ones included.
    size: u64,
    /// Elements written since the last sync.
    unsynced: u64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The parts, in exactly-once mode.
    parts: Option<Parts>,
    /// The file (or the first part) is open, or the sink knows it has nothing to
    /// write.
    started: bool,
    /// The state a restore handed over, applied when the sink starts.
    restored: Option<PartsState>,
    /// Restored after its stream had already been committed whole: the state it
    /// was restored with; the replayed elements are taken without being written.
    completed: Option<PartsState>,
    /// A commit that failed after a checkpoint, reported at the next step.
    failed: Option<Failure>,
    _type: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for FileWriteStage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriteStage")
            .field("path", &self.sink.path)
            .field("size", &self.size)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl<T> FileWriteStage<T> {
    pub(crate) fn new(sink: FileSink) -> Self {
        let parts = sink
            .exactly_once
            .then(|| Parts::new(&sink.path, Arc::clone(&sink.fs)));
        FileWriteStage {
            sink,
            writer: None,
            segments: None,
            size: 0,
            unsynced: 0,
            timer: None,
            parts,
            started: false,
            restored: None,
            completed: None,
            failed: None,
            _type: PhantomData,
        }
    }

    fn failure(&self, what: &str, e: &std::io::Error) -> Failure {
        Failure::error(
            ErrorClass::Transient,
            format!("file {}: {what}: {e}", self.sink.path.display()),
        )
    }

    /// The file being written: the sink's path, or the active part's pending file.
    fn active_path(&self) -> PathBuf {
        match &self.parts {
            Some(parts) => parts.names.pending(parts.active),
            None => self.sink.path.clone(),
        }
    }

    /// Opens the file being written: appending to it (`append`), or empty.
    fn open(&mut self, append: bool) -> Result<(), Failure> {
        let path = self.active_path();
        let how = if append { Open::Append } else { Open::Truncate };
        let file = self
            .sink
            .fs
            .open(&path, how)
            .map_err(|e| self.failure("cannot open for writing", &e))?;
        self.size = if append {
            file.len().map_err(|e| self.failure("cannot stat", &e))?
        } else {
            0
        };
        // The file's directory entry (and a rotation's rename before it) must be
        // durable before a sync can call what is in the file durable. An
        // exactly-once sink syncs its directory at every checkpoint instead.
        if self.parts.is_none() && self.syncs() {
            self.sink
                .fs
                .sync_dir(parent_dir(&path))
                .map_err(|e| self.failure("cannot sync its directory", &e))?;
        }
        self.writer = Some(BufWriter::with_capacity(self.sink.buffer, file));
        Ok(())
    }

    /// Opens the active part as a checkpoint left it, cut back to `len` bytes:
    /// what was written after the barrier is discarded.
    fn reopen_part(&mut self, len: u64) -> Result<(), Failure> {
        let path = self.active_path();
        let fs = Arc::clone(&self.sink.fs);
        let cut = || -> std::io::Result<Box<dyn FsFile>> {
            let mut file = fs.open(&path, Open::Existing)?;
            let on_disk = file.len()?;
            if on_disk < len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} is {on_disk} bytes, shorter than the {len} the checkpoint synced",
                        path.display()
                    ),
                ));
            }
            file.set_len(len)?;
            file.seek(SeekFrom::End(0))?;
            Ok(file)
        };
        let file = cut().map_err(|e| {
            Failure::error(
                ErrorClass::Permanent,
                format!(
                    "file {}: cannot restore the pending part: {e}",
                    self.sink.path.display()
                ),
            )
        })?;
        self.size = len;
        self.writer = Some(BufWriter::with_capacity(self.sink.buffer, file));
        Ok(())
    }

    /// Prepares the first write: looks for earlier rotated files, and in
    /// exactly-once mode recovers the parts (from the restored state, or by
    /// clearing what an earlier run left), then opens the file.
    fn start(&mut self) -> Result<(), Failure> {
        let restored = self.restored.take();
        if let Some((_, naming)) = self.sink.rotate {
            let next = restored.as_ref().and_then(|s| s.next_segment);
            self.segments = Some(match next {
                Some(next) => Segments::resume(&self.sink.path, naming, next),
                None => Segments::scan(&self.sink.path, naming)
                    .map_err(|e| self.failure("cannot list rotated files", &e))?,
            });
        }
        self.started = true;
        let Some(parts) = self.parts.as_mut() else {
            return self.open(self.sink.append);
        };
        let Some(state) = restored else {
            parts
                .fresh_start()
                .map_err(|e| self.failure("cannot clear earlier pending parts", &e))?;
            return self.open(false);
        };
        let recovery = parts.recover(&state).map_err(|e| {
            Failure::error(
                ErrorClass::Permanent,
                format!(
                    "file {}: cannot recover the checkpointed parts: {e}",
                    self.sink.path.display()
                ),
            )
        })?;
        match recovery {
            Recovery::Fresh => self.open(false),
            Recovery::Resume { len } => self.reopen_part(len),
            Recovery::Completed => {
                tracing::info!(
                    file = %self.sink.path.display(),
                    "file sink restored after its stream was committed whole: \
                     the replayed elements are already in the file"
                );
                self.completed = Some(state);
                Ok(())
            }
        }
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
                writer.get_mut().sync_data()
            } else {
                Ok(())
            }
        });
        result.map_err(|e| self.failure(if sync { "fsync" } else { "flush" }, &e))?;
        if sync {
            self.sink.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            let written = self.sink.stats.elements.load(Ordering::Relaxed);
            self.sink.stats.synced.store(written, Ordering::Release);
            self.unsynced = 0;
            self.timer = None;
        }
        Ok(())
    }

    /// Whether the sink must sync before a rotation, a checkpoint and at the end.
    fn syncs(&self) -> bool {
        self.sink.fsync != Fsync::Never || self.parts.is_some()
    }

    fn rotate(&mut self) -> Result<(), Failure> {
        self.flush(self.syncs())?;
        self.writer = None;
        // Cannot fail: `rotate` is called only when rotation is configured, and
        // `start` makes the segments whenever rotation is.
        let segments = self
            .segments
            .as_mut()
            .expect("segments exist when rotating");
        self.sink.stats.rotations.fetch_add(1, Ordering::Relaxed);
        if let Some(parts) = self.parts.as_mut() {
            // Exactly once: the part waits, closed, for the checkpoint after it.
            parts.close_active(self.size, Target::Rotated(segments.next_suffix()));
            return self.open(false);
        }
        let to = segments.next_name();
        self.sink
            .fs
            .rename(&self.sink.path, &to)
            .map_err(|e| self.failure(&format!("cannot rename to {}", to.display()), &e))?;
        if let Ok(mut files) = self.sink.stats.files.lock() {
            files.push(to);
        }
        self.open(false)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        if !self.started {
            self.start()?;
        }
        if self.completed.is_some() {
            return Ok(());
        }
        let len = (bytes.len() + usize::from(self.sink.delimiter.is_some())) as u64;
        if let Some((max, _)) = self.sink.rotate
            && self.size > 0
            && self.size + len > max
        {
            self.rotate()?;
        }
        let delimiter = self.sink.delimiter;
        // Cannot fail: `start` opened the file (or the sink has completed, above),
        // and `rotate` either reopened it or returned an error.
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

    /// The input has ended and every element is written: flushes (and syncs), and
    /// in exactly-once mode commits every part.
    pub(crate) fn finish(&mut self) -> Result<(), Failure> {
        if !self.started {
            self.start()?;
        }
        self.flush(self.syncs())?;
        if self.completed.is_some() {
            return Ok(());
        }
        let Some(parts) = self.parts.as_mut() else {
            return Ok(());
        };
        self.writer = None;
        let committed = parts.finish(self.size).map_err(|e| {
            Failure::error(
                ErrorClass::Transient,
                format!(
                    "file {}: cannot commit the output: {e}",
                    self.sink.path.display()
                ),
            )
        })?;
        self.record_commits(committed);
        Ok(())
    }

    /// Counts committed parts; rotated ones go to the stats' list.
    fn record_commits(&self, committed: Vec<PathBuf>) {
        let stats = &self.sink.stats;
        stats
            .committed_parts
            .fetch_add(committed.len() as u64, Ordering::Relaxed);
        if let Ok(mut files) = stats.files.lock() {
            files.extend(committed.into_iter().filter(|p| *p != self.sink.path));
        }
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
        if self.sink.exactly_once && self.sink.append {
            return Err("exactly_once cannot append: it replaces the file when it commits".into());
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
        if let Some(failure) = self.failed.take() {
            return Err(failure);
        }
        if !self.started {
            self.start()?;
        }
        while let Some(x) = io.pop() {
            self.write(x.as_ref())?;
            io.complete(1);
        }
        if io.input_exhausted() {
            self.finish()?;
            return Ok(Step::Finished);
        }
        if let Fsync::Every(every) = self.sink.fsync {
            self.interval(every, cx)?;
        }
        Ok(Step::Continue)
    }

    /// A failure of the sink's I/O as a snapshot error: the checkpoint fails.
    fn state_error(failure: &Failure) -> StateError {
        StateError::Encode(failure.to_string())
    }
}

/// Exactly-once mode only (the operator returns itself from `checkpoint` only
/// then): the state is the parts written and not yet committed.
impl<T> Checkpointable for FileWriteStage<T> {
    fn snapshot(&mut self, checkpoint: u64) -> Result<Snapshot, StateError> {
        if let Some(state) = self.completed.as_ref().or(self.restored.as_ref()) {
            return Snapshot::of(PARTS_VERSION, state);
        }
        if self.parts.is_none() {
            return Err(StateError::Encode(format!(
                "file sink {} is not exactly-once: it keeps no state",
                self.sink.path.display()
            )));
        }
        if !self.started {
            self.start().map_err(|f| Self::state_error(&f))?;
        }
        self.flush(true).map_err(|f| Self::state_error(&f))?;
        let next_segment = self.segments.as_ref().map(Segments::next_number);
        let size = self.size;
        let Some(parts) = self.parts.as_mut() else {
            return Err(StateError::Encode("no parts".into()));
        };
        if parts.dir_dirty {
            parts.names.sync_dir().map_err(|e| {
                StateError::Encode(format!(
                    "file sink {}: cannot sync its directory: {e}",
                    self.sink.path.display()
                ))
            })?;
            parts.dir_dirty = false;
        }
        Snapshot::of(
            PARTS_VERSION,
            &parts.snapshot(checkpoint, size, next_segment),
        )
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        if self.parts.is_none() {
            return Err(StateError::Shape(format!(
                "file sink {} is not exactly-once: it restores no state",
                self.sink.path.display()
            )));
        }
        let state: PartsState = snapshot.decode(PARTS_VERSION, ctx)?;
        self.restored = Some(state);
        self.started = false;
        self.completed = None;
        self.writer = None;
        Ok(())
    }

    fn committed(&mut self, checkpoint: u64) {
        if self.completed.is_some() {
            return;
        }
        let Some(parts) = self.parts.as_mut() else {
            return;
        };
        match parts.committed(checkpoint) {
            Ok(done) => self.record_commits(done),
            Err(e) => {
                self.failed = Some(self.failure(
                    &format!("cannot commit the parts of checkpoint {checkpoint}"),
                    &e,
                ));
            }
        }
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

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        if self.parts.is_some() {
            Some(self)
        } else {
            None
        }
    }

    fn not_checkpointable(&self) -> Option<String> {
        (self.parts.is_none() && !self.sink.append).then(|| {
            format!(
                "file sink {} truncates its file when it starts, so after a restore the \
                 file would lose what was written before the checkpoint: use \
                 FileSink::exactly_once(), or append(true) for at-least-once",
                self.sink.path.display()
            )
        })
    }

    fn on_stop(&mut self) {
        // Whatever was delivered reaches the file even when the stage is stopped
        // (cancelled, failed elsewhere); a flush error here has nowhere to go. In
        // exactly-once mode that file is a pending part: nothing becomes visible.
        if let Some(writer) = self.writer.as_mut() {
            let _ = writer.flush();
        }
    }
}

#[cfg(test)]
mod faults;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Pipeline;
    use crate::file::FileFlowExt;
    use crate::test_support::rt;

    type Stage = FileWriteStage<Vec<u8>>;

    fn lines(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("line-{i}")).collect()
    }

    /// Parts of 3 lines: `line-N\n` is 7 bytes for N < 10.
    fn sink(path: &Path) -> FileSink {
        FileSink::new(path)
            .rotate(21, Naming::Numbered)
            .exactly_once()
    }

    fn write(stage: &mut Stage, lines: &[String]) {
        for l in lines {
            stage.write(l.as_bytes()).unwrap();
        }
    }

    /// The visible files of `dir` and their contents; hidden ones apart.
    fn files(dir: &Path) -> (BTreeMap<String, String>, Vec<String>) {
        let mut visible = BTreeMap::new();
        let mut hidden = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                hidden.push(name);
            } else {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                visible.insert(name, text);
            }
        }
        hidden.sort();
        (visible, hidden)
    }

    /// What an uninterrupted run writes.
    fn reference(input: &[String]) -> BTreeMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut stage = Stage::new(sink(&dir.path().join("out")));
        write(&mut stage, input);
        stage.finish().unwrap();
        let (visible, hidden) = files(dir.path());
        assert!(hidden.is_empty(), "{hidden:?}");
        visible
    }

    fn restored(path: &Path, snapshot: &Snapshot) -> Stage {
        let mut stage = Stage::new(sink(path));
        stage.restore(snapshot, &RestoreContext::default()).unwrap();
        stage
    }

    #[test]
    fn synced_elements_counts_what_an_fsync_covered() {
        let dir = tempfile::tempdir().unwrap();
        let input = lines(5);
        let mut stage =
            Stage::new(FileSink::new(dir.path().join("a")).fsync(Fsync::EveryElements(2)));
        let stats = stage.sink.stats();
        let mut synced = Vec::new();
        for l in &input {
            stage.write(l.as_bytes()).unwrap();
            synced.push(stats.synced_elements());
        }
        assert_eq!(synced, [0, 2, 2, 4, 4]);
        stage.finish().unwrap();
        assert_eq!(stats.synced_elements(), 5);
        // A rotation syncs what it closes.
        let mut stage = Stage::new(
            FileSink::new(dir.path().join("b"))
                .fsync(Fsync::EveryElements(100))
                .rotate(14, Naming::Numbered),
        );
        let stats = stage.sink.stats();
        write(&mut stage, &input[..3]);
        assert_eq!(stats.synced_elements(), 2);
        // Never: nothing is known to be on the disk.
        let mut stage = Stage::new(FileSink::new(dir.path().join("c")).fsync(Fsync::Never));
        let stats = stage.sink.stats();
        write(&mut stage, &input);
        stage.finish().unwrap();
        assert_eq!((stats.elements(), stats.synced_elements()), (5, 0));
    }

    #[test]
    fn a_checkpoint_commits_only_the_parts_closed_before_its_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let input = lines(8);
        let mut stage = Stage::new(sink(&path));
        // Part 0 holds 0..3 and is closed by line 3.
        write(&mut stage, &input[..4]);
        stage.snapshot(1).unwrap();
        // Part 1 (3..6) is closed after the barrier, by line 6.
        write(&mut stage, &input[4..7]);
        assert!(files(dir.path()).0.is_empty(), "nothing before a commit");
        stage.committed(1);
        let (visible, _) = files(dir.path());
        assert_eq!(
            visible,
            BTreeMap::from([("out.1".to_string(), "line-0\nline-1\nline-2\n".to_string())])
        );
        stage.snapshot(2).unwrap();
        stage.committed(2);
        assert_eq!(files(dir.path()).0.len(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.2")).unwrap(),
            "line-3\nline-4\nline-5\n"
        );
        write(&mut stage, &input[7..]);
        stage.finish().unwrap();
        let (visible, hidden) = files(dir.path());
        assert_eq!(visible, reference(&input));
        assert!(hidden.is_empty(), "{hidden:?}");
        assert_eq!(stage.sink.stats.committed_parts(), 3);
        let rotated = stage.sink.stats.rotated_files();
        assert_eq!(
            rotated,
            [dir.path().join("out.1"), dir.path().join("out.2")]
        );
    }

    /// Killed after `k` lines were checkpointed and `more` were written after the
    /// barrier (with or without the checkpoint's commit, with the write buffer
    /// flushed or lost), then restored and replayed from the checkpoint: the
    /// committed files are those of an uninterrupted run, no line missing and
    /// none twice, and no pending part is left.
    #[test]
    fn a_crash_and_a_restore_leave_the_uninterrupted_output() {
        let input = lines(10);
        let expected = reference(&input);
        for k in 0..=input.len() {
            for more in [0, 1, 4, 10] {
                let more = more.min(input.len() - k);
                for commit_before_crash in [false, true] {
                    for flush_at_crash in [false, true] {
                        let dir = tempfile::tempdir().unwrap();
                        let path = dir.path().join("out");
                        let mut stage = Stage::new(sink(&path));
                        write(&mut stage, &input[..k]);
                        let snapshot = stage.snapshot(1).unwrap();
                        write(&mut stage, &input[k..k + more]);
                        if commit_before_crash {
                            stage.committed(1);
                        }
                        if flush_at_crash {
                            stage.flush(false).unwrap();
                        }
                        // The crash: nothing else runs.
                        std::mem::forget(stage);

                        let mut stage = restored(&path, &snapshot);
                        write(&mut stage, &input[k..]);
                        stage.finish().unwrap();
                        let (visible, hidden) = files(dir.path());
                        let case = format!(
                            "k {k}, more {more}, commit {commit_before_crash}, flush {flush_at_crash}"
                        );
                        assert_eq!(visible, expected, "{case}");
                        assert!(hidden.is_empty(), "{case}: {hidden:?}");
                    }
                }
            }
        }
    }

    /// Checkpoint 2 is taken but never durable (no `committed(2)`); the crash
    /// comes after more rotations; the restore is from checkpoint 1.
    #[test]
    fn a_restore_from_an_older_checkpoint_deletes_the_newer_parts() {
        let input = lines(10);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut stage = Stage::new(sink(&path));
        write(&mut stage, &input[..2]);
        let first = stage.snapshot(1).unwrap();
        stage.committed(1);
        write(&mut stage, &input[2..8]);
        stage.snapshot(2).unwrap();
        write(&mut stage, &input[8..9]);
        assert!(files(dir.path()).1.len() >= 3, "several pending parts");
        std::mem::forget(stage);
        let mut stage = restored(&path, &first);
        // Starting, the restored sink deletes the parts begun after barrier 1.
        stage.start().unwrap();
        assert_eq!(files(dir.path()).1, [".out.pending-0"]);
        write(&mut stage, &input[2..]);
        stage.finish().unwrap();
        assert_eq!(files(dir.path()).0, reference(&input));
    }

    /// A checkpoint restored twice (a crash during the recovery): the second
    /// recovery finds the renames done and the part already cut back.
    #[test]
    fn recovery_is_idempotent() {
        let input = lines(7);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut stage = Stage::new(sink(&path));
        write(&mut stage, &input[..5]);
        let snapshot = stage.snapshot(1).unwrap();
        write(&mut stage, &input[5..]);
        std::mem::forget(stage);
        let mut once = restored(&path, &snapshot);
        once.start().unwrap();
        std::mem::forget(once);
        let mut twice = restored(&path, &snapshot);
        write(&mut twice, &input[5..]);
        twice.finish().unwrap();
        assert_eq!(files(dir.path()).0, reference(&input));
    }

    /// Restored from a checkpoint taken before the stream completed and was
    /// committed whole: the replay changes nothing.
    #[test]
    fn a_restore_after_the_final_commit_writes_nothing_again() {
        let input = lines(8);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut stage = Stage::new(sink(&path));
        write(&mut stage, &input[..4]);
        let snapshot = stage.snapshot(1).unwrap();
        write(&mut stage, &input[4..]);
        stage.finish().unwrap();
        let mut again = restored(&path, &snapshot);
        write(&mut again, &input[4..]);
        // Its snapshots keep saying the same.
        assert_eq!(again.snapshot(2).unwrap(), snapshot);
        again.finish().unwrap();
        let (visible, hidden) = files(dir.path());
        assert_eq!(visible, reference(&input));
        assert!(hidden.is_empty());
    }

    #[test]
    fn a_pending_part_shorter_than_its_checkpoint_fails_the_restore() {
        let input = lines(2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut stage = Stage::new(sink(&path));
        write(&mut stage, &input);
        let snapshot = stage.snapshot(1).unwrap();
        drop(stage);
        std::fs::write(dir.path().join(".out.pending-0"), "x").unwrap();
        let err = restored(&path, &snapshot).start().unwrap_err();
        assert!(err.to_string().contains("shorter than the 14"), "{err}");
    }

    #[test]
    fn a_fresh_start_deletes_what_an_earlier_run_left_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(dir.path().join(".out.pending-7"), "stale\n").unwrap();
        let mut stage = Stage::new(sink(&path));
        write(&mut stage, &lines(1));
        stage.finish().unwrap();
        let (visible, hidden) = files(dir.path());
        assert_eq!(visible, reference(&lines(1)));
        assert!(hidden.is_empty(), "{hidden:?}");
    }

    /// A pipeline that completes commits everything without any checkpoint, and
    /// writes what the sink writes without `exactly_once`.
    #[test]
    fn completion_without_checkpoints_commits_everything() {
        let input = lines(10);
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let plain = tempfile::tempdir().unwrap();
        let done = Pipeline::from_iter(input.clone())
            .to_file(sink(&dir.path().join("out")))
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(done.output.committed_parts(), 4);
        Pipeline::from_iter(input.clone())
            .to_file(FileSink::new(plain.path().join("out")).rotate(21, Naming::Numbered))
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        let (visible, hidden) = files(dir.path());
        assert_eq!(visible, files(plain.path()).0);
        assert_eq!(visible, reference(&input));
        assert!(hidden.is_empty(), "{hidden:?}");
    }

    #[test]
    fn without_exactly_once_a_checkpoint_is_refused_unless_it_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let plain = Stage::new(FileSink::new(&path));
        let why = plain.not_checkpointable().unwrap();
        assert!(why.contains("exactly_once"), "{why}");
        assert!(
            Stage::new(FileSink::new(&path).append(true))
                .not_checkpointable()
                .is_none()
        );
        let mut eo = Stage::new(FileSink::new(&path).exactly_once());
        assert!(eo.not_checkpointable().is_none());
        assert!(eo.checkpoint().is_some());
        let both = Stage::new(FileSink::new(&path).exactly_once().append(true));
        assert!(both.check().unwrap_err().contains("cannot append"));
    }
}
