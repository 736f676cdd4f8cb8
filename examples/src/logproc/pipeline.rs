//! The logproc graph: read → parse (a pool) → split → route → dead letters |
//! aggregates.
//!
//! ```text
//!                    ┌─► parse-0 ─┐
//! read ─► parse.dispatch ─► …  ──┼─► parse.collect ─► split ─► route ─┬─► dead-letter (file DLQ)
//! (batches of        └─► parse-n ─┘   (input order)                    └─► aggregate
//!  1 024 lines)
//! ```
//!
//! Built over a [`ReadSource`] ([`build_resumable`]) the graph can be
//! checkpointed: `read`, `dead-letter` and `aggregate` keep state, every other
//! stage passes barriers on.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Context;

use weir::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir::junction::Predicate;
use weir::operator::{Counting, Io, Operator, Step};
use weir::prelude::*;
use weir::supervisor::dead_letter::{DeadLetterSink, SharedFileDlq};
use weir::{BuildError, OutputReceiver, OutputSender};

use super::aggregate::{Aggregates, MalformedLine, ParsedBatch, Records, parse_batch};
use super::lines::{Line, LineBatch};
use super::source::ReadSource;

/// The pipeline's name (the `pipeline` label of its metrics).
pub const PIPELINE: &str = "logproc";

/// Elements on each edge: batches of up to 1 024 lines / 256 KiB, so an edge holds
/// at most about 1 MiB of text.
pub const EDGE_CAPACITY: usize = 4;

/// What flows after the parser: a batch's records, or its malformed lines.
#[derive(Debug, Clone)]
pub enum Part {
    /// Parsed, valid lines.
    Records(Records),
    /// Lines the reader or the parser rejected.
    Malformed(Vec<MalformedLine>),
}

/// What the dead-letter branch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DlqTally {
    /// Malformed lines that reached the branch.
    pub malformed: u64,
    /// Letters written to the file.
    pub written: u64,
    /// The first write error; no letter is written after it.
    pub error: Option<String>,
}

/// The aggregates and the dead-letter tally of a running pipeline, shared with
/// the two stages that keep them ([`AggregateSink`], [`DeadLetterWriter`]), so
/// that a live report can read them while the pipeline runs
/// ([`build_following`]). Cloning gives another handle on the same figures.
///
/// The two are read one after the other, each as its stage left it after its
/// last step: what was read but is still between the reader and these stages
/// is in neither.
#[derive(Debug, Clone, Default)]
pub struct Live {
    aggregates: Arc<Mutex<Aggregates>>,
    tally: Arc<Mutex<DlqTally>>,
}

impl Live {
    /// A copy of the aggregates now.
    pub fn aggregates(&self) -> Aggregates {
        locked(&self.aggregates).clone()
    }

    /// A copy of the dead-letter tally now.
    pub fn tally(&self) -> DlqTally {
        locked(&self.tally).clone()
    }
}

/// The value behind `mutex`. A stage that panicked while holding it fails the
/// pipeline (these stages are not restarted), so what it left is only read.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Settings of [`build`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Parser replicas.
    pub workers: usize,
    /// Longer lines are malformed.
    pub max_line_bytes: usize,
    /// The supervision policy file, applied to the whole graph (`[stages.parse]`
    /// reaches every parser replica, `[default]` every other stage).
    pub policies: PolicyConfig,
    /// Where malformed lines go.
    pub dlq: SharedFileDlq<MalformedLine>,
    /// Lines of batches the parser's supervision dead-lettered whole (a parser
    /// failure that the policy gave up on), counted by [`build`].
    pub lines_in_failed_batches: Arc<AtomicU64>,
    /// A fault to inject (for tests and demonstrations): the first parse of the
    /// batch holding this line number panics, once.
    pub panic_once_on_line: Option<u64>,
    /// The runtime's arbiters ([`Runtime::arbiters`]), for placing the aggregate.
    pub arbiters: usize,
}

/// The graph, and the receivers of its two sinks.
#[derive(Debug)]
pub struct Built {
    /// The graph, ready to run.
    pub graph: Graph,
    /// The aggregates, once the pipeline ends.
    pub aggregates: OutputReceiver<Aggregates>,
    /// The dead-letter branch's tally, once the pipeline ends.
    pub dead_letters: OutputReceiver<DlqTally>,
}

/// Builds the logproc graph over `batches`.
///
/// Order: the pool is ordered ([`PoolOrder::Lines`]), so dead letters are
/// written in line order.
/// Backpressure: every edge holds at most [`EDGE_CAPACITY`] batches; the reader
/// reads only what the graph has room for. Failure: a parser replica that fails is
/// supervised by the policy file (`settings.policies`); a batch it gives up on goes to the
/// dead letters line by line.
///
/// The source (`from_iter`) keeps no position: for a checkpointed run, use
/// [`build_resumable`].
///
/// # Errors
///
/// `workers` is 0 (a [`BuildError`] naming the pool).
pub fn build<I>(batches: I, settings: Settings) -> Result<Built, BuildError>
where
    I: Iterator<Item = LineBatch> + Send + 'static,
{
    assemble(Pipeline::from_iter(batches), settings, PoolOrder::Lines)
}

/// Builds the logproc graph over `source`, ready to be checkpointed
/// ([`Graph::checkpoints`] on [`Built::graph`]): every stage takes part, and
/// the three that keep state restore it.
///
/// * `read` ([`ReadSource`]): its position, so a restored run reads each line
///   once;
/// * `dead-letter` ([`DeadLetterWriter`]): its tally and the dead-letter file's
///   length, to which a restore cuts the file back, so the file holds each
///   malformed line once;
/// * `aggregate` ([`AggregateSink`]): the [`Aggregates`].
///
/// The parser replicas, `split` and the junctions (the pool's dispatch and
/// collect, `route`) keep none: a barrier passes them once what is before it has
/// gone through. `order` says in which order the pool hands the parsed batches
/// on (see [`PoolOrder`]).
///
/// # Errors
///
/// As [`build`].
pub fn build_resumable(
    source: ReadSource,
    settings: Settings,
    order: PoolOrder,
) -> Result<Built, BuildError> {
    assemble(Flow::from_source(source), settings, order)
}

/// Builds the logproc graph over `batches`, a source that does not end by
/// itself (the lines of a followed file, [`follow_lines`](super::follow_lines)),
/// sharing its figures through `live` while it runs. The graph is that of
/// [`build`] (an ordered pool); it ends when the pipeline is shut down, and the
/// figures in `live` are then final. The policy file reaches the file
/// source's stages as described in [`follow_lines`](super::follow_lines).
///
/// # Errors
///
/// As [`build`].
pub fn build_following(
    batches: Flow<LineBatch>,
    mut settings: Settings,
    live: &Live,
) -> Result<Built, BuildError> {
    settings.policies = super::follow::policies(&settings.policies);
    assemble_with(batches, settings, PoolOrder::Lines, live.clone())
}

/// In which order the parser pool hands its parsed batches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolOrder {
    /// Input order (an ordered pool): the dead letters are written in line
    /// order.
    Lines,
    /// As the parsers finish (an unordered pool): the dead letters are written
    /// in about line order, each batch's in line order. The aggregates are the
    /// same either way.
    Parsed,
}

fn assemble(
    read: Flow<LineBatch>,
    settings: Settings,
    order: PoolOrder,
) -> Result<Built, BuildError> {
    assemble_with(read, settings, order, Live::default())
}

fn assemble_with(
    read: Flow<LineBatch>,
    settings: Settings,
    order: PoolOrder,
    live: Live,
) -> Result<Built, BuildError> {
    let Settings {
        workers,
        max_line_bytes,
        policies,
        dlq,
        lines_in_failed_batches,
        panic_once_on_line,
        arbiters,
    } = settings;
    if workers == 0 {
        return Err(BuildError::InvalidArgument {
            stage: "parse".into(),
            message: "--workers must be at least 1".into(),
        });
    }
    // The reader gets an arbiter of its own when there is one, apart from the
    // aggregate, the other sequential stage with work per line (the parser
    // replicas go everywhere and balance by load).
    let reader_arbiter = usize::from(arbiters > 1);
    let mut g = Graph::new();
    g.named(PIPELINE)
        .default_capacity(EDGE_CAPACITY)
        .policies(&policies);
    let lines = g.source(read.name("read").on_arbiter(reader_arbiter));
    let whole_batches = BatchLetters {
        dlq: dlq.clone(),
        lines: Arc::clone(&lines_in_failed_batches),
    };
    let pool = match order {
        PoolOrder::Lines => Pool::new(workers).ordered(),
        PoolOrder::Parsed => Pool::new(workers),
    };
    let pool = pool
        .name("parse")
        .replica_capacity(2)
        // The file decides the replicas' policy; the code where their dead letters go.
        .supervise(Supervision::default().dead_letters_to(whole_batches));
    let fault = panic_once_on_line.map(|line| (line, Arc::new(AtomicBool::new(false))));
    let parsed = g.pool_map(lines, pool, move || {
        let fault = fault.clone();
        move |batch: LineBatch| {
            if let Some((line, fired)) = &fault {
                let holds =
                    (batch.first_line..batch.first_line + batch.len() as u64).contains(line);
                if holds && !fired.swap(true, Ordering::Relaxed) {
                    panic!("injected fault: the parser panics on the batch holding line {line}");
                }
            }
            parse_batch(batch, max_line_bytes)
        }
    });
    let parts = g.flow(parsed, |f| f.flat_map(split).name("split"));
    let is_malformed: Predicate<Part> = Box::new(|p: &Part| matches!(p, Part::Malformed(_)));
    let [errors, normal] = g.route(parts, vec![is_malformed]);
    g.name_stage(errors, "route");
    let tally = Arc::clone(&live.tally);
    let dead_letters = g.sink(errors, move |f| {
        let (tx, rx) = weir::output();
        let mut writer = DeadLetterWriter::new(dlq, lines_in_failed_batches, tx);
        // Counted into `live`, from zero (`new` starts from zero too).
        *locked(&tally) = DlqTally::default();
        writer.tally = tally;
        f.to(writer, rx).name("dead-letter")
    });
    let aggregates = g.sink(normal, |f| {
        let (tx, rx) = weir::output();
        f.to(AggregateSink::shared(tx, &live), rx).name("aggregate")
    });
    Ok(Built {
        graph: g,
        aggregates,
        dead_letters,
    })
}

fn split(parsed: ParsedBatch) -> Vec<Part> {
    let mut parts = Vec::with_capacity(2);
    if !parsed.records.is_empty() {
        parts.push(Part::Records(parsed.records));
    }
    if !parsed.malformed.is_empty() {
        parts.push(Part::Malformed(parsed.malformed));
    }
    parts
}

fn write_letters(dlq: &SharedFileDlq<MalformedLine>, tally: &mut DlqTally, part: Part) {
    let Part::Malformed(lines) = part else {
        return;
    };
    for line in lines {
        tally.malformed += 1;
        if tally.error.is_some() {
            continue;
        }
        let failure = Failure::error(ErrorClass::Permanent, line.reason.clone());
        let index = line.line - 1;
        let letter = DeadLetter::new(line, "parse", PIPELINE, &failure, 1, index);
        match dlq.offer(letter) {
            Ok(()) => tally.written += 1,
            Err((_, reason)) => tally.error = Some(reason),
        }
    }
}

/// The version of [`AggregateSink`]'s snapshot.
const AGGREGATE_STATE_VERSION: u32 = 1;

/// The sink of the parsed records: counts them into [`Aggregates`], handed over
/// when the pipeline ends; checkpointed (the aggregates are its state, so a run
/// started again after the end reports the same aggregates).
pub struct AggregateSink {
    aggregates: Arc<Mutex<Aggregates>>,
    output: OutputSender<Aggregates>,
}

impl std::fmt::Debug for AggregateSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateSink")
            .field("parsed", &locked(&self.aggregates).parsed)
            .finish_non_exhaustive()
    }
}

impl AggregateSink {
    /// Counts from empty aggregates, hands them to `output` at the end.
    pub fn new(output: OutputSender<Aggregates>) -> Self {
        AggregateSink {
            aggregates: Arc::default(),
            output,
        }
    }

    /// As [`new`](Self::new), counting into `live`'s aggregates (which it
    /// empties), so that a live report reads them while the pipeline runs.
    pub fn shared(output: OutputSender<Aggregates>, live: &Live) -> Self {
        *locked(&live.aggregates) = Aggregates::default();
        AggregateSink {
            aggregates: Arc::clone(&live.aggregates),
            output,
        }
    }
}

impl Operator for AggregateSink {
    type In = Part;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "aggregate"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, Part, Infallible>, _cx: &mut Context<'_>) -> Step {
        if io.input_len() == 0 {
            return io.finish_when_drained();
        }
        let mut aggregates = locked(&self.aggregates);
        io.consume_all(|part| {
            if let Part::Records(records) = part {
                aggregates.add_records(&records);
            }
        });
        io.finish_when_drained()
    }

    fn on_stop(&mut self) {
        self.output.send(locked(&self.aggregates).clone());
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

impl Checkpointable for AggregateSink {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(AGGREGATE_STATE_VERSION, &*locked(&self.aggregates))
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        *locked(&self.aggregates) = snapshot.decode(AGGREGATE_STATE_VERSION, ctx)?;
        Ok(())
    }
}

/// The version of [`DeadLetterWriter`]'s snapshot.
const DLQ_STATE_VERSION: u32 = 1;

/// What a checkpoint holds of the dead-letter stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DlqState {
    tally: DlqTally,
    /// The dead-letter file's length at the barrier, every letter before it
    /// synced.
    end_offset: u64,
    /// Lines of batches the parser's supervision dead-lettered whole, so far.
    lines_in_failed_batches: u64,
}

/// The sink of the malformed lines: writes each as a dead letter (line number,
/// reason, text) to the file, counts them, and hands its [`DlqTally`] over when
/// the pipeline ends.
///
/// Exactly once across a restore: its snapshot syncs the file
/// ([`SharedFileDlq::flush`]) and records its length
/// ([`SharedFileDlq::end_offset`]) with the tally; its restore cuts the file back
/// to that length ([`SharedFileDlq::truncate_to`]), dropping the letters of the
/// lines after the barrier, which the restored source reads again. A file that
/// is shorter than the recorded length, or that holds no letter boundary there
/// (replaced, cut), is refused with the reason.
///
/// The parser pool's whole-batch dead letters (`BatchLetters`: a parser failure
/// the policy gave up on) go to the same file from the pool's supervisor, not
/// through this stage, so they are not in barrier order: after a restore they
/// are at least once (a batch dead-lettered after the barrier and replayed can
/// be dead-lettered again), and their count is restored as it was at the
/// snapshot.
pub struct DeadLetterWriter {
    dlq: SharedFileDlq<MalformedLine>,
    tally: Arc<Mutex<DlqTally>>,
    lines_in_failed_batches: Arc<AtomicU64>,
    output: OutputSender<DlqTally>,
}

impl std::fmt::Debug for DeadLetterWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterWriter")
            .field("tally", &*locked(&self.tally))
            .finish_non_exhaustive()
    }
}

impl DeadLetterWriter {
    /// Writes to `dlq`, hands the tally to `output`; `lines_in_failed_batches` is
    /// the count the pool's whole-batch dead letters keep (checkpointed with the
    /// tally).
    pub fn new(
        dlq: SharedFileDlq<MalformedLine>,
        lines_in_failed_batches: Arc<AtomicU64>,
        output: OutputSender<DlqTally>,
    ) -> Self {
        DeadLetterWriter {
            dlq,
            tally: Arc::default(),
            lines_in_failed_batches,
            output,
        }
    }
}

impl Operator for DeadLetterWriter {
    type In = Part;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "dead-letter-file"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, Part, Infallible>, _cx: &mut Context<'_>) -> Step {
        if io.input_len() == 0 {
            return io.finish_when_drained();
        }
        let (dlq, mut tally) = (&self.dlq, locked(&self.tally));
        io.consume_all(|part| write_letters(dlq, &mut tally, part));
        io.finish_when_drained()
    }

    fn on_stop(&mut self) {
        // A copy: the state stays, for the final checkpoint taken after this.
        self.output.send(locked(&self.tally).clone());
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

impl Checkpointable for DeadLetterWriter {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        let file = |e: weir::supervisor::dead_letter::DlqError| {
            StateError::Encode(format!(
                "dead-letter file {}: {e}",
                self.dlq.path().display()
            ))
        };
        self.dlq.flush().map_err(file)?;
        let state = DlqState {
            tally: locked(&self.tally).clone(),
            end_offset: self.dlq.end_offset().map_err(file)?,
            lines_in_failed_batches: self.lines_in_failed_batches.load(Ordering::Relaxed),
        };
        Snapshot::of(DLQ_STATE_VERSION, &state)
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let state: DlqState = snapshot.decode(DLQ_STATE_VERSION, ctx)?;
        self.dlq.truncate_to(state.end_offset).map_err(|e| {
            StateError::Shape(format!(
                "the dead-letter file {} cannot be cut back to the {} bytes checkpoint {}                  recorded (was it replaced or cut?): {e}",
                self.dlq.path().display(),
                state.end_offset,
                ctx.checkpoint
            ))
        })?;
        *locked(&self.tally) = state.tally;
        self.lines_in_failed_batches
            .store(state.lines_in_failed_batches, Ordering::Relaxed);
        Ok(())
    }
}

/// Dead letters of the parser pool (whole batches) written line by line into the
/// same file as the malformed lines.
struct BatchLetters {
    dlq: SharedFileDlq<MalformedLine>,
    lines: Arc<AtomicU64>,
}

impl DeadLetterSink<LineBatch> for BatchLetters {
    fn offer(&self, letter: DeadLetter<LineBatch>) -> Result<(), (DeadLetter<LineBatch>, String)> {
        let failure = Failure::error(letter.class, letter.error.clone());
        let mut refused = None;
        for (number, line) in letter.element.lines(usize::MAX) {
            let text = match line {
                Line::Text(text) | Line::Rejected(_, Cow::Borrowed(text)) => text.to_owned(),
                Line::Rejected(_, Cow::Owned(text)) => text,
            };
            let mut end = text.len().min(256);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let line = MalformedLine {
                line: number,
                reason: format!("the parser failed on this line's batch: {}", letter.error),
                text: text[..end].to_owned(),
            };
            let one = DeadLetter::new(
                line,
                letter.stage.clone(),
                PIPELINE,
                &failure,
                letter.attempts,
                number - 1,
            );
            if let Err((_, reason)) = self.dlq.offer(one) {
                refused = Some(reason);
                break;
            }
        }
        if let Some(reason) = refused {
            return Err((letter, reason));
        }
        self.lines
            .fetch_add(letter.element.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
