//! Files as sources and sinks.
//!
//! - [`FileSource`] reads a file as [`Line`]s ([`Pipeline::file_lines`]) or
//!   [`Chunk`]s ([`Pipeline::file_chunks`]) in constant memory, only as fast as
//!   downstream grants credit. Each element carries its byte offsets: the
//!   `next_offset` of the last element processed is a checkpoint, and
//!   [`FileSource::from_offset`] resumes exactly there. A line longer than the
//!   bound (or not UTF-8) is never stored: it fails with the file and its byte
//!   offset, into the source's dead letters.
//! - [`FileSink`] ([`FileFlowExt::to_file`]) writes through a buffer, syncs as
//!   its [`Fsync`] policy says, and rotates the file by size ([`Naming`]). An
//!   I/O error fails the stage.
//!
//! [`BoundedLineReader`] is the reader under the source, usable on its own over
//! any [`Read`](std::io::Read).
//!
//! # Examples
//!
//! Copies the lines of a file, upper-cased, into another one:
//!
//! ```
//! use weir_operators::file::{FileFlowExt, FileSink, FileSource};
//! use weir_operators::{FlowExt, Pipeline};
//! # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
//! let dir = std::env::temp_dir().join(format!("weir-doc-file-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("in.txt"), "a\nb\n")?;
//! Pipeline::file_lines(FileSource::lines(dir.join("in.txt")))
//!     .map(|line| line.text.to_uppercase())
//!     .to_file(FileSink::new(dir.join("out.txt")))
//!     .run(&rt)?
//!     .wait()?;
//! assert_eq!(std::fs::read_to_string(dir.join("out.txt"))?, "A\nB\n");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod commit;
#[cfg(test)]
mod follow_tests;
mod position;
mod reader;
mod rotate;
mod sink;
mod source;
mod stdio;

pub use reader::{BoundedLineReader, Overlong, RawLine, SAMPLE_BYTES};
pub use rotate::Naming;
pub use sink::{DEFAULT_WRITE_BUFFER, FileSink, FileSinkStats, Fsync};
pub use source::{
    Chunk, DEFAULT_MAX_LINE_BYTES, DEFAULT_READ_BUFFER, FileSource, FileSourceStats, Line,
};
pub use stdio::{ReaderLines, WriteLines};

use weir_runtime::{Flow, OutputReceiver, Runnable};

use crate::limit::LimitExt;
use crate::{FlowExt, Pipeline};
use sink::FileWriteStage;
use source::{ChunksStage, FileReadStage, LinesStage};

/// The stages after a line-reading stage: one turns rejected lines away (into
/// `dead_letters`, or failing the pipeline without), one hands on the [`Line`]s,
/// named `{name}_check` and `{name}_out`.
fn checked_lines(
    flow: Flow<source::Checked>,
    name: Option<&str>,
    dead_letters: Option<weir_runtime::Supervision<source::Checked>>,
) -> Flow<Line> {
    let mut flow = flow;
    if let Some(supervision) = dead_letters {
        flow = flow.supervise(supervision);
    }
    flow = flow.validate(|c: &source::Checked| c.rejected.clone().map_or(Ok(()), Err));
    if let Some(name) = name {
        flow = flow.name(format!("{name}_check"));
    }
    let flow = flow.map(|c| c.line);
    match name {
        Some(name) => flow.name(format!("{name}_out")),
        None => flow,
    }
}

impl Pipeline {
    /// The lines of a file (see [`FileSource`]). Three stages: one reads, one
    /// turns rejected lines away (into the source's
    /// [`dead_letters`](FileSource::dead_letters), or failing the pipeline when it
    /// has none), one hands on the [`Line`]s (see [`FileSource::name`]). A missing
    /// file, a directory, or a zero bound is a build error naming the reading
    /// stage.
    ///
    /// # Examples
    ///
    /// See [`FileSource`].
    pub fn file_lines(source: FileSource) -> Flow<Line> {
        let stage = LinesStage(FileReadStage::new(&source));
        // Sized for a runtime's memory budget by their text, not their inline size.
        let mut flow = Flow::from_source(stage)
            .sized::<source::Checked>()
            .sized::<Line>();
        if let Some(name) = &source.name {
            flow = flow.name(name.clone());
        }
        checked_lines(flow, source.name.as_deref(), source.dead_letters)
    }

    /// The bytes of a file in chunks (see [`FileSource::chunks`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::file::FileSource;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let path = std::env::temp_dir().join(format!("weir-doc-chunks-{}", std::process::id()));
    /// std::fs::write(&path, b"0123456789")?;
    /// let done = Pipeline::file_chunks(FileSource::chunks(&path, 4)).collect().run(&rt)?.wait()?;
    /// let sizes: Vec<_> = done.output.iter().map(|c| (c.offset, c.bytes.len())).collect();
    /// assert_eq!(sizes, [(0, 4), (4, 4), (8, 2)]);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file_chunks(source: FileSource) -> Flow<Chunk> {
        let flow = Flow::from_source(ChunksStage(FileReadStage::new(&source))).sized::<Chunk>();
        match source.name {
            Some(name) => flow.name(name),
            None => flow,
        }
    }
}

/// The file sink, as a method on a [`Flow`]. In the prelude.
pub trait FileFlowExt<T: Clone + Send + 'static>: Sized {
    /// Writes every element into a file (see [`FileSink`]); the output is the
    /// sink's [`FileSinkStats`].
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::file::{FileFlowExt, FileSink, Naming};
    /// use weir_operators::Pipeline;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let dir = std::env::temp_dir().join(format!("weir-doc-rot-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let sink = FileSink::new(dir.join("out")).rotate(4, Naming::Numbered);
    /// let done = Pipeline::from_iter(["a", "b", "c"]).to_file(sink).run(&rt)?.wait()?;
    /// assert_eq!(done.output.rotations(), 1);
    /// assert_eq!(std::fs::read_to_string(dir.join("out.1"))?, "a\nb\n");
    /// assert_eq!(std::fs::read_to_string(dir.join("out"))?, "c\n");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn to_file(self, sink: FileSink) -> Runnable<std::sync::Arc<FileSinkStats>>
    where
        T: AsRef<[u8]>;

    /// Writes each element's bytes and a newline to the process's standard
    /// output (see [`WriteLines`]): a stage named `stdout`, at-least-once in a
    /// checkpointed pipeline.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::file::FileFlowExt;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// Pipeline::from_iter(["hello", "world"]).to_stdout().run(&rt)?.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn to_stdout(self) -> Runnable<()>
    where
        T: AsRef<[u8]>;

    /// Writes each element's bytes and a newline to `writer` (a pipe, a socket in
    /// blocking mode, a `Vec<u8>` behind a handle) on the stage's arbiter thread:
    /// a writer that blocks holds the pipeline back. See [`WriteLines`].
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::file::FileFlowExt;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// Pipeline::from_iter(["a", "b"]).to_writer(std::io::sink()).run(&rt)?.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn to_writer<W: std::io::Write + Send + 'static>(self, writer: W) -> Runnable<()>
    where
        T: AsRef<[u8]>;
}

impl<T: Clone + Send + 'static> FileFlowExt<T> for Flow<T> {
    fn to_file(self, sink: FileSink) -> Runnable<std::sync::Arc<FileSinkStats>>
    where
        T: AsRef<[u8]>,
    {
        let stats = sink.stats();
        self.cloneable()
            .to(FileWriteStage::new(sink), OutputReceiver::ready(stats))
    }

    fn to_stdout(self) -> Runnable<()>
    where
        T: AsRef<[u8]>,
    {
        self.cloneable().to(
            WriteLines::new("stdout", std::io::stdout()),
            OutputReceiver::ready(()),
        )
    }

    fn to_writer<W: std::io::Write + Send + 'static>(self, writer: W) -> Runnable<()>
    where
        T: AsRef<[u8]>,
    {
        self.cloneable().to(
            WriteLines::new("write_lines", writer),
            OutputReceiver::ready(()),
        )
    }
}
