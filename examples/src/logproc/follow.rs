//! [`follow_lines`]: the source of `logproc --follow`: a log file tailed as it
//! grows and across rotation by weir's file source
//! ([`FileSource::follow`](weir::file::FileSource::follow)), its lines numbered
//! and gathered into the [`LineBatch`]es the rest of logproc's graph takes.
//!
//! ```text
//! tail ─► tail_check ─► tail_out ─► read (NumberLines) ─► parse.dispatch ─► …
//!            └─ rejected lines (overlong, not UTF-8) ──┘ (back into their place)
//! ```
//!
//! The file source turns a line over `--max-line-bytes` or not UTF-8 away
//! before it reaches the batches: it dead-letters it (with its offsets and a
//! sample). Here those dead letters are not the end: the numbering stage puts
//! each back at its place in the stream as a rejected line of its batch, so it
//! gets its line number and reaches logproc's dead-letter file as a malformed
//! line, as in a run without `--follow`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Context;
use std::time::Duration;

use futures::task::AtomicWaker;
use weir::file::{FileSource, FileSourceStats, Line};
use weir::operator::{Counting, Io, Operator, Step};
use weir::prelude::*;
use weir::supervisor::dead_letter::DeadLetterSink;

use super::lines::{
    BATCH_BYTES, InputError, LineBatch, LineReader, ReadProgress, Reject, Rejected, SAMPLE_BYTES,
};

/// The most rejected lines that may wait for their place in the stream. They
/// wait only until the line before them arrives (it is at most a few edges
/// behind), so the queue stays short; beyond this bound the file source's
/// dead letters are refused and the pipeline fails, saying so, instead of
/// growing.
pub const MAX_WAITING_REJECTS: usize = 16 * 1024;

/// The lines of the log file at `path`, followed: at its end the file source
/// looks again every `poll`, reads what was appended, and goes on in the new
/// file when the old one was rotated (renamed away and a new one created at
/// `path`; the old one is read to its end first). The stream ends only when
/// the pipeline is shut down; a last line without its newline is not read
/// until its newline is written.
///
/// The lines come in [`LineBatch`]es numbered from 1 across rotations, as if
/// the files were one: batches grow to [`BATCH_BYTES`] under load and shrink
/// to one line when the file grows slowly. `progress` counts the lines and
/// bytes. A line over `max_line_bytes` or not UTF-8 is a rejected line of its
/// batch (see the [module docs](self)).
///
/// Its stages are `tail` (the file source's reader), `tail_check` (turns the
/// rejected lines away), `tail_out` and the numbering stage. Built with
/// [`build_following`](super::build_following), a policy file reaches the two
/// in the middle as their roles need, unless it names them in a
/// `[stages.<name>]` table: `tail_check` always dead-letters what it turns
/// away (`permanent` and `resource_exhausted` = `dead_letter`: no policy can
/// skip a line the report would then not count), and `tail_out`, which has no
/// dead-letter queue, escalates what `[default]` would dead-letter.
///
/// Not checkpointable: a checkpointed pipeline with it is refused when it is
/// built (the numbering stage's place in the file source's dead letters cannot
/// be recorded at a barrier).
///
/// # Errors
///
/// The file cannot be a text log (missing, a directory, binary): the checks
/// of [`LineReader::open`].
pub fn follow_lines(
    path: &Path,
    max_line_bytes: usize,
    poll: Duration,
    progress: Arc<ReadProgress>,
) -> Result<Flow<LineBatch>, InputError> {
    // The checks of a plain run, on the file as it is now.
    drop(LineReader::open(path, max_line_bytes, Arc::default())?);
    let rejects = Rejects::new(max_line_bytes);
    let source = FileSource::lines(path)
        .name("tail")
        .max_line_bytes(max_line_bytes)
        .follow(poll)
        .dead_letters(rejects.clone());
    let stats = source.stats();
    Ok(Pipeline::file_lines(source).via(NumberLines {
        rejects,
        source: stats,
        progress,
        next_line: 1,
        expect: 0,
    }))
}

/// `config` for a graph over [`follow_lines`]: the file source's stages get
/// their own policy, unless `config` has a `[stages.<name>]` table for them.
///
/// * `tail_check`, which turns the rejected lines away, dead-letters them
///   (into the numbering stage, which puts them back): `permanent` and
///   `resource_exhausted` are `dead_letter` whatever `[default]` says, so that
///   no policy can skip a line the report would then not count.
/// * `tail_out` hands the lines on and has no dead-letter queue: what
///   `[default]` would dead-letter there escalates (fails the pipeline).
pub(crate) fn policies(config: &PolicyConfig) -> PolicyConfig {
    let named = |name: &str| config.stage_names().any(|n| n == name);
    let mut config = config.clone();
    let default = config.default_policy().clone();
    if !named("tail_check") {
        let check = default
            .clone()
            .action(ErrorClass::Permanent, Action::DeadLetter)
            .action(ErrorClass::ResourceExhausted, Action::DeadLetter);
        config = config.with_stage("tail_check", check);
    }
    if !named("tail_out") {
        let mut out = default;
        let a = &mut out.actions;
        for action in [
            &mut a.panic,
            &mut a.transient,
            &mut a.permanent,
            &mut a.timeout,
            &mut a.resource_exhausted,
            &mut a.on_exhausted,
        ] {
            if *action == Action::DeadLetter {
                *action = Action::Escalate;
            }
        }
        config = config.with_stage("tail_out", out);
    }
    config
}

/// A line the file source turned away, waiting for its place in the stream.
#[derive(Debug)]
struct Waiting {
    offset: u64,
    next_offset: u64,
    reject: Reject,
    sample: String,
}

/// The file source's dead letters, in the order it turned the lines away,
/// and the numbering stage's waker.
#[derive(Debug, Clone)]
struct Rejects(Arc<RejectsInner>);

#[derive(Debug)]
struct RejectsInner {
    queue: Mutex<VecDeque<Waiting>>,
    waker: AtomicWaker,
    max_line_bytes: usize,
}

impl Rejects {
    fn new(max_line_bytes: usize) -> Self {
        Rejects(Arc::new(RejectsInner {
            queue: Mutex::default(),
            waker: AtomicWaker::new(),
            max_line_bytes,
        }))
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Waiting>> {
        // Pushes and pops only: a panic elsewhere cannot leave it inconsistent.
        self.0.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DeadLetterSink<Line> for Rejects {
    fn offer(&self, letter: DeadLetter<Line>) -> Result<(), (DeadLetter<Line>, String)> {
        let mut queue = self.queue();
        if queue.len() >= MAX_WAITING_REJECTS {
            drop(queue);
            return Err((
                letter,
                format!("{MAX_WAITING_REJECTS} rejected lines already wait for their place"),
            ));
        }
        let line = &letter.element;
        // The file source's reasons: "… is not valid UTF-8", or "… is N
        // bytes, over max_line_bytes M".
        let reject = if letter.error.contains("not valid UTF-8") {
            Reject::NotUtf8
        } else {
            Reject::TooLong {
                // Without its newline.
                len: (line.next_offset - line.offset).saturating_sub(1),
                max: self.0.max_line_bytes,
            }
        };
        let mut sample = line.text.clone();
        let mut end = sample.len().min(SAMPLE_BYTES);
        while !sample.is_char_boundary(end) {
            end -= 1;
        }
        sample.truncate(end);
        queue.push_back(Waiting {
            offset: line.offset,
            next_offset: line.next_offset,
            reject,
            sample,
        });
        drop(queue);
        self.0.waker.wake();
        Ok(())
    }
}

/// Which comes next in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The first queued line.
    Line,
    /// The first waiting rejected line.
    Rejected,
    /// Neither can be placed yet.
    Wait,
}

/// Places the first waiting rejected line (at offset `rejected`) against the
/// first queued line (at offset `line`), `expect` being the offset after the
/// last line numbered. The file source turns a line away before it hands on
/// any line after it, so every rejected line before a queued line is waiting
/// already; `settled` says that no line is on its way between the file
/// source and the numbering stage (or that the input has ended).
///
/// * A rejected line at `expect` is next: the line before it was the last
///   numbered.
/// * A queued line not at `expect` follows a gap — the file was rotated (a new
///   file, read from its start) or lines of it were turned away: a rejected
///   line before it is in that gap, and next.
/// * Otherwise the queued line is next. With none queued, a waiting rejected
///   line is next once nothing is on its way (`settled`): the lines before it
///   are all numbered. Until then it waits for the line before it.
///
/// So every line gets the number it has in the concatenation of the files
/// read — except when two rotations come while lines are on their way (the
/// rejected lines of the three files can then be numbered a few lines off).
/// Either way each line is counted once.
fn next(line: Option<u64>, rejected: Option<u64>, expect: u64, settled: bool) -> Next {
    match (line, rejected) {
        (_, Some(r)) if r == expect => Next::Rejected,
        (Some(l), Some(r)) if l != expect && r < l => Next::Rejected,
        (Some(_), _) => Next::Line,
        (None, Some(_)) if settled => Next::Rejected,
        (None, _) => Next::Wait,
    }
}

/// Numbers the lines (the file source's and its rejected ones, each in its
/// place) and gathers them into [`LineBatch`]es.
struct NumberLines {
    rejects: Rejects,
    /// The file source's counters: what it has emitted (rejected lines too).
    source: Arc<FileSourceStats>,
    progress: Arc<ReadProgress>,
    /// The number of the next line, from 1.
    next_line: u64,
    /// The offset after the last line numbered.
    expect: u64,
}

impl std::fmt::Debug for NumberLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberLines")
            .field("next_line", &self.next_line)
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

impl NumberLines {
    /// The next batch of what can be placed now, `None` when nothing can.
    fn batch(&mut self, io: &mut Io<'_, Line, LineBatch>) -> Option<LineBatch> {
        let ended = io.input_ended();
        let first_line = self.next_line;
        let (mut text, mut rejected, mut lines, mut bytes) = (Vec::new(), Vec::new(), 0, 0);
        let mut waiting = self.rejects.queue();
        while text.len() < BATCH_BYTES {
            let line = io.pop();
            // Read after the queue was locked: the lines it holds were emitted
            // before, so a line on its way leaves `emitted` above the rest.
            let settled = line.is_none()
                && (ended
                    || self.source.emitted()
                        <= (self.next_line - 1) + io.input_len() as u64 + waiting.len() as u64);
            let at = match next(
                line.as_ref().map(|l| l.offset),
                waiting.front().map(|w| w.offset),
                self.expect,
                settled,
            ) {
                Next::Line => {
                    let Some(line) = line else { break };
                    text.extend_from_slice(line.text.as_bytes());
                    lines += 1;
                    (line.offset, line.next_offset)
                }
                Next::Rejected => {
                    if let Some(line) = line {
                        io.unpop(line);
                    }
                    let Some(w) = waiting.pop_front() else { break };
                    rejected.push(Rejected {
                        line: self.next_line,
                        reject: w.reject,
                        sample: w.sample,
                    });
                    (w.offset, w.next_offset)
                }
                Next::Wait => {
                    if let Some(line) = line {
                        io.unpop(line);
                    }
                    break;
                }
            };
            // Its place in the batch's text ends with a newline (a rejected
            // line's is empty).
            text.push(b'\n');
            bytes += at.1.saturating_sub(at.0);
            self.expect = at.1;
            self.next_line += 1;
        }
        drop(waiting);
        if text.is_empty() {
            return None;
        }
        io.complete(lines);
        let numbered = self.next_line - first_line;
        self.progress.lines.fetch_add(numbered, Ordering::Relaxed);
        self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
        Some(LineBatch::new(first_line, text, rejected))
    }
}

impl Operator for NumberLines {
    type In = Line;
    type Out = LineBatch;

    fn kind(&self) -> &'static str {
        "number_lines"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, Line, LineBatch>, cx: &mut Context<'_>) -> Step {
        // Registered before looking: a rejected line offered from now on wakes
        // the stage.
        self.rejects.0.waker.register(cx.waker());
        while io.has_room() {
            match self.batch(io) {
                Some(batch) => io.push(batch),
                None => break,
            }
        }
        if io.input_exhausted() && self.rejects.queue().is_empty() {
            return Step::Finished;
        }
        Step::Continue
    }

    fn not_checkpointable(&self) -> Option<String> {
        Some(
            "it numbers the lines and puts the file source's rejected lines back in their \
             place; at a barrier some of those may still wait, and a checkpoint cannot say \
             which of them come before it"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Next, next};

    #[test]
    fn a_rejected_line_takes_its_place_in_the_stream() {
        // In one file: at the expected offset it is next; after the queued
        // line, it comes after it.
        assert_eq!(next(Some(30), Some(10), 10, false), Next::Rejected);
        assert_eq!(next(Some(10), Some(30), 10, false), Next::Line);
        assert_eq!(next(None, Some(10), 10, false), Next::Rejected);
        // Nothing queued: it waits for the line before it, unless no line is
        // on its way.
        assert_eq!(next(None, Some(30), 10, false), Next::Wait);
        assert_eq!(next(None, Some(30), 10, true), Next::Rejected);
        assert_eq!(next(None, None, 10, true), Next::Wait);
        // After a rotation (the queued line is not at `expect`): the new
        // file's rejected lines before it come first, those after it later,
        // whether the new file's line is before or beyond where the old one
        // ended.
        assert_eq!(next(Some(20), Some(0), 500, false), Next::Rejected);
        assert_eq!(next(Some(20), Some(40), 500, false), Next::Line);
        assert_eq!(next(Some(900), Some(0), 500, false), Next::Rejected);
        assert_eq!(next(None, Some(0), 500, false), Next::Wait);
    }
}
