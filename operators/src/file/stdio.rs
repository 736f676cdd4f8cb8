//! Standard input and output, and any blocking reader or writer: lines read on a
//! thread of their own into a bounded buffer ([`Pipeline::stdin_lines`],
//! [`Pipeline::reader_lines`]), and a sink writing each element as a line
//! ([`FileFlowExt::to_stdout`](super::FileFlowExt::to_stdout),
//! [`to_writer`](super::FileFlowExt::to_writer)).

use std::convert::Infallible;
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::task::Context;

use weir_runtime::Flow;
use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_supervisor::dead_letter::DeadLetterSink;
use weir_supervisor::{ErrorClass, Failure};

use super::reader::BoundedLineReader;
use super::source::{Checked, DEFAULT_MAX_LINE_BYTES, DEFAULT_READ_BUFFER, Line, LineDlq, checked};
use crate::Pipeline;

/// How [`Pipeline::reader_lines`] reads: the longest line, the buffer between the
/// reading thread and the pipeline, the stage names and where rejected lines go.
///
/// # Examples
///
/// ```
/// use weir_operators::file::ReaderLines;
/// use weir_operators::{FlowExt, Pipeline};
/// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let input = std::io::Cursor::new(b"alpha\nbeta\n".to_vec());
/// let lines = Pipeline::reader_lines(input, ReaderLines::new("input").capacity(64));
/// let done = lines.map(|l| l.text).collect().run(&rt)?.wait()?;
/// assert_eq!(done.output, ["alpha", "beta"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct ReaderLines {
    name: String,
    max_line_bytes: usize,
    capacity: usize,
    read_buffer: usize,
    dead_letters: Option<weir_runtime::Supervision<Checked>>,
}

impl std::fmt::Debug for ReaderLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderLines")
            .field("name", &self.name)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ReaderLines {
    /// Lines of at most [`DEFAULT_MAX_LINE_BYTES`], a buffer of 1024 lines; the
    /// stages are `name`, `name_check` and `name_out`, and the thread
    /// `weir-{name}`.
    pub fn new(name: impl Into<String>) -> Self {
        ReaderLines {
            name: name.into(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            capacity: 1024,
            read_buffer: DEFAULT_READ_BUFFER,
            dead_letters: None,
        }
    }

    /// The longest line accepted, in bytes without the newline. A longer line
    /// (or one that is not UTF-8) is not stored: it fails with its byte offset,
    /// into the [`dead_letters`](Self::dead_letters) if there are some, otherwise
    /// failing the pipeline.
    pub fn max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max.max(1);
        self
    }

    /// Lines read ahead of the pipeline, at most (at least 1): the reading thread
    /// waits while the buffer is full, so a slow pipeline slows the reader (and,
    /// through the pipe, its writer).
    pub fn capacity(mut self, lines: usize) -> Self {
        self.capacity = lines.max(1);
        self
    }

    /// Where rejected lines go: as for [`FileSource::dead_letters`](super::FileSource::dead_letters).
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<Line>) -> Self {
        self.dead_letters = Some(crate::limit::rejections_to(LineDlq(sink)));
        self
    }
}

impl Pipeline {
    /// The lines of the process's standard input, read on a thread of their own
    /// (see [`reader_lines`](Self::reader_lines)); the stages are `stdin`,
    /// `stdin_check` and `stdin_out`. The stream ends at the end of the input.
    ///
    /// Not replayable: in a checkpointed pipeline it is listed among the sources
    /// that cannot resume. An aborted pipeline leaves the thread blocked in its
    /// read until the next line or the end of the input, when it sees the
    /// pipeline is gone and exits.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use weir_operators::file::FileFlowExt;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// // `grep ERROR`, as a pipeline.
    /// Pipeline::stdin_lines()
    ///     .filter(|l| l.text.contains("ERROR"))
    ///     .map(|l| l.text)
    ///     .to_stdout()
    ///     .run(&rt)?
    ///     .wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stdin_lines() -> Flow<Line> {
        Self::reader_lines(std::io::stdin(), ReaderLines::new("stdin"))
    }

    /// The lines of a blocking reader — a child process's output, a pipe, stdin —
    /// read on a thread of their own (named `weir-{name}`) into a bounded buffer
    /// of [`capacity`](ReaderLines::capacity) lines, in constant memory (the
    /// buffer, one read buffer and one line of at most `max_line_bytes`). A read
    /// error ends the stream with a failure naming the byte offset. Each
    /// [`Line`]'s offsets count bytes from the start of the reader.
    ///
    /// # Examples
    ///
    /// See [`ReaderLines`].
    pub fn reader_lines<R: Read + Send + 'static>(reader: R, options: ReaderLines) -> Flow<Line> {
        let (ingress, flow) = Pipeline::ingress::<Checked>(options.capacity);
        let spare = ingress.clone();
        let name = options.name.clone();
        let (max, buffer) = (options.max_line_bytes, options.read_buffer);
        let spawned = std::thread::Builder::new()
            .name(format!("weir-{name}"))
            .spawn(move || {
                let mut lines = BoundedLineReader::new(reader, 0, buffer, max);
                loop {
                    let (line, last) = match lines.next_line() {
                        Ok(Some(raw)) => (checked(&name, raw, max), false),
                        Ok(None) => return,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let at = lines.offset();
                            let why = format!("{name}: read error after byte offset {at}: {e}");
                            (failed_read(at, why), true)
                        }
                    };
                    // Gone: the pipeline no longer takes lines.
                    if futures::executor::block_on(ingress.send(line)).is_err() || last {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            let why = format!("{}: cannot start its reading thread: {e}", options.name);
            // Cannot be full: nothing else was sent, and the capacity is at least 1.
            let _ = spare.try_send(failed_read(0, why));
        }
        drop(spare);
        let flow = flow.name(options.name.clone());
        super::checked_lines(flow, Some(&options.name), options.dead_letters)
    }
}

/// The last element of a stream whose reader failed: rejected with `why`.
fn failed_read(offset: u64, why: String) -> Checked {
    Checked {
        line: Line {
            offset,
            next_offset: offset,
            text: String::new(),
        },
        rejected: Some(why),
    }
}

/// A sink writing each element's bytes and a newline to a blocking writer,
/// through a buffer flushed whenever the stage has nothing more queued (so a
/// line appears as soon as the pipeline is idle). Created by
/// [`FileFlowExt::to_stdout`](super::FileFlowExt::to_stdout) and
/// [`to_writer`](super::FileFlowExt::to_writer).
///
/// A write error fails the stage with the writer's name and the reason; a
/// reader that went away (`EPIPE`, as when `| head` has read enough) says so:
/// supervise the stage, or map the failure, to end quietly.
pub struct WriteLines<W: Write, T> {
    name: &'static str,
    out: BufWriter<W>,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<W: Write, T> std::fmt::Debug for WriteLines<W, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLines")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<W: Write, T> WriteLines<W, T> {
    pub(crate) fn new(name: &'static str, out: W) -> Self {
        WriteLines {
            name,
            out: BufWriter::new(out),
            _t: std::marker::PhantomData,
        }
    }

    fn failure(&self, e: &std::io::Error) -> Failure {
        let why = if e.kind() == ErrorKind::BrokenPipe {
            "its reader closed it (broken pipe)".to_owned()
        } else {
            e.to_string()
        };
        Failure::error(
            ErrorClass::Permanent,
            format!("{}: write failed: {why}", self.name),
        )
    }
}

impl<W, T> Operator for WriteLines<W, T>
where
    W: Write + Send + 'static,
    T: AsRef<[u8]> + Send + 'static,
{
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        self.name
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, _cx: &mut Context<'_>) -> Step {
        let mut n = 0;
        while let Some(x) = io.pop() {
            let written = self
                .out
                .write_all(x.as_ref())
                .and_then(|()| self.out.write_all(b"\n"));
            if let Err(e) = written {
                io.complete(n);
                return Step::Failed(self.failure(&e));
            }
            n += 1;
        }
        io.complete(n);
        if let Err(e) = self.out.flush() {
            return Step::Failed(self.failure(&e));
        }
        io.finish_when_drained()
    }

    fn on_stop(&mut self) {
        // A flush error here has nowhere to go; the step's flush reported it.
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};

    use weir_runtime::PipelineError;
    use weir_supervisor::dead_letter::MemoryDlq;

    use super::*;
    use crate::FlowExt;
    use crate::file::FileFlowExt;
    use crate::test_support::rt;

    #[test]
    fn lines_pass_and_overlong_or_invalid_lines_are_dead_lettered_with_their_offset() {
        let input = b"ok\nthis one is too long\n\xff\xfe\nlast".to_vec();
        let dead = MemoryDlq::new(10);
        let options = ReaderLines::new("in")
            .max_line_bytes(8)
            .dead_letters(dead.clone());
        let done = Pipeline::reader_lines(Cursor::new(input), options)
            .map(|l| (l.offset, l.text))
            .collect()
            .run(&rt())
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, [(0, "ok".to_owned()), (27, "last".to_owned())]);
        let letters = dead.drain();
        let errors: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
        assert_eq!(
            errors,
            [
                "in: line at byte offset 3 is 20 bytes, over max_line_bytes 8",
                "in: line at byte offset 24 is not valid UTF-8",
            ]
        );
        done.report.check_conservation().unwrap();
    }

    /// Gives `good` bytes, then fails.
    struct Failing {
        good: Cursor<Vec<u8>>,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.good.read(buf)? {
                0 => Err(std::io::Error::other("device gone")),
                n => Ok(n),
            }
        }
    }

    /// Without dead letters a read error fails the pipeline, naming the offset;
    /// with them it is dead-lettered and the stream ends after the lines before it.
    #[test]
    fn a_read_error_names_the_offset_and_ends_the_stream_after_the_lines_before_it() {
        let failing = || Failing {
            good: Cursor::new(b"a\nb\n".to_vec()),
        };
        let err = Pipeline::reader_lines(failing(), ReaderLines::new("dev"))
            .for_each(|_| {})
            .run(&rt())
            .unwrap()
            .wait()
            .unwrap_err();
        let PipelineError::StageFailed {
            failure, report, ..
        } = &err
        else {
            panic!("{err}");
        };
        assert!(
            failure
                .message()
                .contains("dev: read error after byte offset 4: device gone"),
            "{failure}"
        );
        report.check_conservation().unwrap();

        let dead = MemoryDlq::new(10);
        let options = ReaderLines::new("dev").dead_letters(dead.clone());
        let done = Pipeline::reader_lines(failing(), options)
            .map(|l| l.text)
            .collect()
            .run(&rt())
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, ["a", "b"]);
        let letters = dead.drain();
        assert_eq!(letters.len(), 1);
        assert!(
            letters[0].error.contains("read error after byte offset 4"),
            "{:?}",
            letters[0]
        );
    }

    /// Endless `y` lines, counting the bytes handed out.
    struct Yes(Arc<AtomicU64>);

    impl Read for Yes {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len() & !1;
            for pair in buf[..n].chunks_mut(2) {
                pair.copy_from_slice(b"y\n");
            }
            self.0.fetch_add(n as u64, Relaxed);
            Ok(n)
        }
    }

    #[test]
    fn an_endless_reader_is_read_only_as_far_as_the_pipeline_takes() {
        let read = Arc::new(AtomicU64::new(0));
        let done =
            Pipeline::reader_lines(Yes(Arc::clone(&read)), ReaderLines::new("yes").capacity(8))
                .take(10)
                .collect()
                .run(&rt())
                .unwrap()
                .wait()
                .unwrap();
        assert_eq!(done.output.len(), 10);
        // The buffer and one read ahead, not the endless input.
        assert!(
            read.load(Relaxed) <= 4 * DEFAULT_READ_BUFFER as u64,
            "{read:?}"
        );
    }

    /// A `Vec<u8>` behind a handle, or a writer whose reader went away.
    #[derive(Clone)]
    struct Shared(Arc<Mutex<Vec<u8>>>, bool);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.1 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn to_writer_writes_a_line_per_element_and_a_closed_pipe_fails_saying_so() {
        let out = Shared(Arc::default(), false);
        let done = Pipeline::from_iter(["a", "bc", ""])
            .to_writer(out.clone())
            .run(&rt())
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(*out.0.lock().unwrap(), b"a\nbc\n\n");
        done.report.check_conservation().unwrap();

        let closed = Shared(Arc::default(), true);
        let err = Pipeline::from_iter(["a"])
            .to_writer(closed)
            .run(&rt())
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("write failed: its reader closed it (broken pipe)"),
            "{err}"
        );
    }
}
