//! The logproc graph: read → parse (a pool) → split → route → dead letters |
//! aggregates.
//!
//! ```text
//!                    ┌─► parse-0 ─┐
//! read ─► parse.dispatch ─► …  ──┼─► parse.collect ─► split ─► route ─┬─► dead-letter (file DLQ)
//! (batches of        └─► parse-n ─┘   (input order)                    └─► aggregate (fold)
//!  1 024 lines)
//! ```

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use weir::junction::Predicate;
use weir::prelude::*;
use weir::supervisor::dead_letter::{DeadLetterSink, SharedFileDlq};
use weir::{BuildError, OutputReceiver};

use super::aggregate::{Aggregates, MalformedLine, ParsedBatch, Records, parse_batch};
use super::lines::{Line, LineBatch};

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
/// Order: the pool is ordered, so dead letters are written in line order.
/// Backpressure: every edge holds at most [`EDGE_CAPACITY`] batches; the reader
/// reads only what the graph has room for. Failure: a parser replica that fails is
/// supervised by the policy file (`settings.policies`); a batch it gives up on goes to the
/// dead letters line by line.
///
/// # Errors
///
/// `workers` is 0 (a [`BuildError`] naming the pool).
pub fn build<I>(batches: I, settings: Settings) -> Result<Built, BuildError>
where
    I: Iterator<Item = LineBatch> + Send + 'static,
{
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
    let lines = g.source(
        Pipeline::from_iter(batches)
            .name("read")
            .on_arbiter(reader_arbiter),
    );
    let whole_batches = BatchLetters {
        dlq: dlq.clone(),
        lines: lines_in_failed_batches,
    };
    let pool = Pool::new(workers)
        .ordered()
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
    let dead_letters = g.sink(errors, move |f| {
        f.fold(DlqTally::default(), move |tally, part| {
            write_letters(&dlq, tally, part)
        })
        .name("dead-letter")
    });
    let aggregates = g.sink(normal, |f| {
        f.fold(Aggregates::default(), |mut agg, part| {
            if let Part::Records(records) = part {
                agg.add_records(&records);
            }
            agg
        })
        .name("aggregate")
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

fn write_letters(dlq: &SharedFileDlq<MalformedLine>, mut tally: DlqTally, part: Part) -> DlqTally {
    let Part::Malformed(lines) = part else {
        return tally;
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
    tally
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
