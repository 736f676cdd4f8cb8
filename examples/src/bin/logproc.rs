//! logproc: access-log analytics on weir — the flagship example.
//!
//! Reads Common/Combined Log Format lines (`--input FILE`, streamed in constant
//! memory; by default a built-in generator of 1 000 000 realistic lines, 0.5 %
//! malformed), parses them in a pool of parsers across the cores, routes
//! malformed lines to a file dead-letter queue (with line number and reason) and
//! aggregates the rest: requests and bytes per status, top clients and paths,
//! 5xx per minute of the log's own timestamps. Prints a summary; `--report PATH`
//! writes it as JSON.
//!
//! With `--checkpoint-dir DIR` the run is checkpointed (every
//! `--checkpoint-interval-ms`, 1 000 by default, and once at the end): killed at
//! any moment (`kill -9`, a crash, Ctrl-C) and started again with the same
//! arguments, it resumes from the last checkpoint, and its report equals an
//! uninterrupted run's; its dead-letter file (`DIR/dead-letters.dlq` by
//! default) holds each malformed line once. Started again after it finished, it
//! prints the same report and reads nothing. Ctrl-C stops it gracefully: what
//! was read drains, a final checkpoint is written, and it exits with 130.
//!
//! With `--follow` it tails `--input FILE` as it grows and across rotation
//! (weir's file source, `FileSource::follow`) until Ctrl-C: every
//! `--report-interval-ms` (1 000 by default) it prints the figures so far, or
//! replaces `--report` with them (written beside it, then renamed: a reader
//! never sees half a report); Ctrl-C drains what was read and ends with the
//! final report, the one a plain run over everything read gives.
//!
//! ```sh
//! cargo run --release -p weir-examples --bin logproc
//! cargo run --release -p weir-examples --bin logproc -- --input access.log --report report.json
//! cargo run --release -p weir-examples --bin logproc -- --input access.log --follow --report live.json
//! cargo run --release -p weir-examples --bin logproc -- --input access.log --checkpoint-dir ckpt
//! cargo run --release -p weir-examples --bin logproc -- --console 127.0.0.1:9899
//! ```
//!
//! With `--console ADDR` the live console (`weir::console`: the pipeline's graph
//! with its figures and bottleneck, `/api/*`, `/healthz`, `/readyz`) is served on
//! ADDR while logproc runs; its URL is printed to stderr.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir_examples::cli::{
    ConsoleOptions, Fatal, Interrupts, Run, Tickers, exit, failed, stdout_closed, usage,
    write_atomically,
};

use clap::Parser;
use weir::checkpoint::{CheckpointConfig, CheckpointStore, StoreOptions};
use weir::prelude::*;
use weir::supervisor::dead_letter::{
    FileDlqOptions, FileDlqReader, FileDlqWriter, SharedFileDlq, SyncPolicy,
};
use weir::supervisor::policy::{ConfigError, PolicyConfig};
use weir::{Outcome, PipelineController};
use weir_examples::logproc::{
    self, Aggregates, CheckpointSummary, DEFAULT_SEED, DlqTally, FollowSummary, LineBatch, Live,
    MalformedLine, PoolOrder, ReadProgress, ReadSource, Settings, Summary,
};

/// Access-log analytics on weir: parse, validate, route, aggregate, report.
#[derive(Debug, Parser)]
#[command(name = "logproc", version)]
struct Args {
    /// A Common/Combined Log Format file, or `-` for standard input (`zcat
    /// access.log.gz | logproc --input -`). Without it, logproc generates
    /// `--lines` realistic lines (about 0.5 % malformed).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Lines to generate when no --input is given.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// The generator's seed.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Longer lines become dead letters (with a sample of their start).
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_line_bytes: u32,
    /// Parser replicas (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// The dead-letter file to create (it must not exist). Default: a new
    /// `logproc-<time>-<pid>.dlq` in the system's temporary directory, or
    /// `dead-letters.dlq` in the --checkpoint-dir. With --checkpoint-dir it
    /// belongs to the job: opened for append (and cut back to the checkpoint)
    /// when resuming, replaced when no checkpoint was completed yet.
    #[arg(long, value_name = "PATH")]
    dlq: Option<PathBuf>,
    /// Checkpoints the run in DIR and resumes from the last checkpoint there:
    /// started again with the same arguments after a crash, a kill or Ctrl-C, it
    /// goes on where the checkpoint was, and reports what an uninterrupted run
    /// would have.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Milliseconds between checkpoints (with --checkpoint-dir).
    #[arg(long, value_name = "MS", default_value_t = 1_000,
          requires = "checkpoint_dir",
          value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_interval_ms: u64,
    /// A supervision policy file (TOML, see docs/supervision.md). Default: the
    /// built-in policies, those of the source tree's examples/config/logproc.toml.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Writes the summary as JSON.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Serves Prometheus metrics on this address (e.g. 127.0.0.1:9898).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Serves the live console on this address while logproc runs (e.g.
    /// 127.0.0.1:9899; port 0 picks a free one): the pipeline's graph with its
    /// live figures and bottleneck, `/api/graph`, `/api/stats`, `/api/events`,
    /// `/healthz`, `/readyz`. Its URL is printed to stderr.
    #[arg(long, value_name = "ADDR")]
    console: Option<SocketAddr>,
    /// With --console: its controls too (pause and resume the source, reset a
    /// breaker, resize a pool, take a checkpoint), for requests carrying the
    /// bearer token, which is read from the environment variable
    /// WEIR_CONSOLE_TOKEN (required with this flag; it also guards every read).
    #[arg(long)]
    console_controls: bool,
    /// Prints the pipeline's health verdict at the start and then every SECS.
    #[arg(long, value_name = "SECS")]
    health_every: Option<f64>,
    /// Entries in the top lists.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Follows --input FILE as it grows, across rotation (`tail -F`), until
    /// Ctrl-C, which drains what was read and ends with the final report. Every
    /// --report-interval-ms the current figures are printed, or written to
    /// --report (replaced whole: a reader never sees half a report).
    #[arg(long)]
    follow: bool,
    /// Milliseconds between the live reports of --follow.
    #[arg(long, value_name = "MS", default_value_t = 1_000,
          requires = "follow",
          value_parser = clap::value_parser!(u64).range(1..))]
    report_interval_ms: u64,
    /// How often --follow looks for more at the end of the file, in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100,
          requires = "follow",
          value_parser = clap::value_parser!(u64).range(1..))]
    follow_poll_ms: u64,
    /// Injects a fault: the parser panics once on the batch holding this line
    /// (shows the restart policy at work).
    #[arg(long, hide = true, value_name = "LINE")]
    panic_once_on_line: Option<u64>,
}

fn main() -> ExitCode {
    exit("logproc", run(Args::parse()))
}

fn run(args: Args) -> Result<(), Fatal> {
    let config = match &args.config {
        Some(path) => PolicyConfig::from_file(path).map_err(|e| match e {
            ConfigError::Io { source, .. } => {
                usage(format!("policy file {}: {source}", path.display()))
            }
            e => usage(format!("policy file {}: {e}", path.display())),
        })?,
        None => logproc::default_policies(),
    };
    if let Some(secs) = args.health_every
        && !(secs.is_finite() && secs > 0.0)
    {
        return Err(usage("--health-every needs a positive number of seconds"));
    }

    let progress = Arc::new(ReadProgress::default());
    let max_line_bytes = args.max_line_bytes as usize;
    let stdin = args.input.as_deref() == Some(std::path::Path::new("-"));
    if stdin && args.checkpoint_dir.is_some() {
        return Err(usage(
            "--input - (standard input) cannot be checkpointed: stdin cannot be replayed \
             after a crash; read a file with --input FILE to use --checkpoint-dir",
        ));
    }
    if args.follow {
        check_follow(&args, stdin)?;
    }
    let (read, source, total) = match &args.input {
        Some(_) if stdin => (
            Input::Read(ReadSource::stdin(max_line_bytes, progress.clone())),
            "stdin".to_owned(),
            Total::Unknown,
        ),
        Some(path) if args.follow => {
            let poll = Duration::from_millis(args.follow_poll_ms);
            let lines = logproc::follow_lines(path, max_line_bytes, poll, progress.clone())
                .map_err(usage)?;
            (
                Input::Follow(Box::new(lines)),
                path.display().to_string(),
                Total::Unknown,
            )
        }
        Some(path) => {
            let read = ReadSource::file(path, max_line_bytes, progress.clone()).map_err(usage)?;
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            (
                Input::Read(read),
                path.display().to_string(),
                Total::Bytes(size),
            )
        }
        None => (
            Input::Read(ReadSource::generated(
                args.seed,
                args.lines,
                max_line_bytes,
                progress.clone(),
            )),
            format!("generator ({} lines, seed {})", args.lines, args.seed),
            Total::Lines(args.lines),
        ),
    };

    let resume = match &args.checkpoint_dir {
        Some(dir) => Some(Resume::find(dir)?),
        None => None,
    };
    let dlq_path = match (&args.dlq, &args.checkpoint_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.join(CHECKPOINTED_DLQ),
        (None, None) => default_dlq_path(),
    };
    let dlq_error =
        |e: &dyn std::fmt::Display| usage(format!("dead-letter file {}: {e}", dlq_path.display()));
    let options = FileDlqOptions::new().sync(SyncPolicy::EveryN(1_024));
    let writer = match &resume {
        None => options.create(&dlq_path).map_err(|e| dlq_error(&e))?,
        Some(resume) => resume
            .open_dlq(&dlq_path, options)
            .map_err(|e| dlq_error(&e))?,
    };
    let dlq = SharedFileDlq::new(writer);
    if let Some(addr) = args.metrics_addr {
        weir::prometheus::serve(addr).map_err(usage)?;
        eprintln!("logproc: Prometheus metrics on http://{addr}/metrics");
    }

    let rt = Runtime::new().map_err(failed)?;
    let workers = args.workers.unwrap_or(rt.arbiters());
    let lost = Arc::new(AtomicU64::new(0));
    // Dead letters in line order, with or without checkpoints.
    let order = PoolOrder::Lines;
    let settings = Settings {
        workers,
        max_line_bytes,
        arbiters: rt.arbiters(),
        policies: config,
        dlq: dlq.clone(),
        lines_in_failed_batches: lost.clone(),
        panic_once_on_line: args.panic_once_on_line,
    };
    let live = Live::default();
    let mut built = match read {
        Input::Read(read) => logproc::build_resumable(read, settings, order),
        Input::Follow(lines) => logproc::build_following(*lines, settings, &live),
    }
    .map_err(usage)?;
    if let Some(dir) = &args.checkpoint_dir {
        built.graph.checkpoints(
            CheckpointConfig::new(dir).interval(Duration::from_millis(args.checkpoint_interval_ms)),
        );
    }
    let console = ConsoleOptions::from_flags(args.console, args.console_controls)?;
    let started = Instant::now();
    let run = Run::start(
        "logproc",
        logproc::pipeline::PIPELINE,
        built.graph,
        &rt,
        console,
    )?;
    let interrupted = if args.checkpoint_dir.is_some() {
        Some(drain_on_ctrl_c(
            run.controller(),
            "draining what was read and writing a final checkpoint",
            "a restart resumes from the last checkpoint",
        ))
    } else if args.follow {
        // The usual end of a followed run: not an interruption.
        drain_on_ctrl_c(
            run.controller(),
            "no more reading; draining what was read for the final report",
            "no final report",
        );
        None
    } else {
        None
    };
    let reports = Arc::new(AtomicU64::new(0));
    let live_report = args.follow.then(|| LiveReport {
        live: live.clone(),
        progress: Arc::clone(&progress),
        lost: Arc::clone(&lost),
        controller: run.controller(),
        started,
        template: Summary {
            source: source.clone(),
            lines: 0,
            aggregates: Aggregates::default(),
            tally: DlqTally::default(),
            lost: 0,
            restarts: 0,
            elapsed: Duration::ZERO,
            dlq_path: dlq_path.clone(),
            workers,
            top: args.top,
            checkpoint: None,
            follow: None,
        },
        interval_ms: args.report_interval_ms,
        path: args.report.clone(),
        reports: Arc::clone(&reports),
        last_error: None,
    });
    let watchers = Watchers::start(&run.controller(), &args, &progress, total, live_report);
    let report = run.wait();
    watchers.stop();
    let elapsed = started.elapsed();
    let input_error = || progress.error.lock().ok().and_then(|mut slot| slot.take());
    let report = report.map_err(|e| match input_error() {
        Some(error) => failed(format!("input {source}: {error}")),
        None => failed(format!("the pipeline failed: {e}")),
    })?;
    let aggregates = futures::executor::block_on(built.aggregates)
        .ok_or_else(|| failed("the aggregate stage produced no result"))?;
    let tally = futures::executor::block_on(built.dead_letters)
        .ok_or_else(|| failed("the dead-letter stage produced no result"))?;
    dlq.flush()
        .map_err(|e| failed(format!("dead-letter file {}: {e}", dlq_path.display())))?;
    if let Some(error) = input_error() {
        return Err(failed(format!("input {source}: {error}")));
    }
    if let Some(error) = &tally.error {
        return Err(failed(error));
    }
    report.check_conservation().map_err(failed)?;

    let lines = progress.lines.load(Ordering::Relaxed);
    let resumed = progress.resumed.lock().ok().and_then(|slot| *slot);
    let checkpoint = args.checkpoint_dir.as_ref().map(|dir| CheckpointSummary {
        dir: dir.clone(),
        interval_ms: args.checkpoint_interval_ms,
        resumed,
        stats: report.checkpoint.clone().unwrap_or_default(),
    });
    if interrupted.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
        let stats = report.checkpoint.clone().unwrap_or_default();
        let saved = match (&report.outcome, stats.last_id) {
            (Outcome::Drained { .. }, Some(id)) => format!("a final checkpoint ({id}) was written"),
            (_, Some(id)) => format!("the last checkpoint is {id}"),
            (_, None) => "no checkpoint was completed".to_owned(),
        };
        return Err(Fatal(
            format!(
                "interrupted after line {lines}: {saved}; run the same command again to resume"
            ),
            130,
        ));
    }

    let summary = Summary {
        source,
        lines,
        aggregates,
        tally,
        lost: lost.load(Ordering::Relaxed),
        restarts: report.restarts(),
        elapsed,
        dlq_path,
        workers,
        top: args.top,
        checkpoint,
        follow: args.follow.then(|| FollowSummary {
            interval_ms: args.report_interval_ms,
            reports: reports.load(Ordering::Relaxed),
            last: true,
        }),
    };
    // A closed stdout (`logproc | head -1`) ends the output, not the run: the
    // report is still written, and logproc exits with 0 (see `cli`).
    let closed = stdout_closed(summary.print(&mut std::io::stdout().lock()))?;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&summary.json()).map_err(failed)?;
        write_atomically(path, json.as_bytes())
            .map_err(|e| failed(format!("report {}: {e}", path.display())))?;
        if !closed {
            let mut out = std::io::stdout().lock();
            stdout_closed(writeln!(out, "report written to {}", path.display()))?;
        }
    }
    Ok(())
}

/// The dead-letter file's name in the checkpoint directory.
const CHECKPOINTED_DLQ: &str = "dead-letters.dlq";

/// What the checkpoint directory holds, found before the run: whether the run
/// resumes, and so how the dead-letter file is opened.
struct Resume {
    /// The newest complete checkpoint, if any.
    checkpoint: Option<u64>,
}

impl Resume {
    /// Looks for a complete checkpoint in `dir` (the same search the run makes
    /// when it restores; the store is closed again before the run opens it).
    fn find(dir: &std::path::Path) -> Result<Self, Fatal> {
        let dir_error = |e: &dyn std::fmt::Display| {
            usage(format!("checkpoint directory {}: {e}", dir.display()))
        };
        let store =
            CheckpointStore::open(dir, StoreOptions::default()).map_err(|e| dir_error(&e))?;
        let loaded = store.load_latest().map_err(|e| dir_error(&e))?;
        let checkpoint = loaded.checkpoint.map(|(manifest, _)| manifest.id);
        match checkpoint {
            Some(id) => eprintln!(
                "logproc: resuming from checkpoint {id} in {}",
                dir.display()
            ),
            None => eprintln!(
                "logproc: no complete checkpoint in {}: starting from the beginning",
                dir.display()
            ),
        }
        Ok(Resume { checkpoint })
    }

    /// The dead-letter file of a checkpointed run. Resuming: the existing one,
    /// opened for append (the dead-letter stage's restore cuts it back to the
    /// checkpoint). Starting afresh: a new one; one left by a run that completed
    /// no checkpoint holds letters no checkpoint counts, and is replaced (a file
    /// that is not a dead-letter file is refused, never replaced).
    fn open_dlq(
        &self,
        path: &std::path::Path,
        options: FileDlqOptions,
    ) -> Result<FileDlqWriter<MalformedLine>, String> {
        if let Some(id) = self.checkpoint {
            if !path.exists() {
                return Err(format!(
                    "missing: checkpoint {id} counts the letters in it (give the same --dlq as                      before, or another --checkpoint-dir to start over)"
                ));
            }
            return options.open_append(path).map_err(|e| e.to_string());
        }
        if path.exists() {
            let before = FileDlqReader::<MalformedLine>::open(path).map_err(|e| {
                format!("exists and is not a dead-letter file logproc can replace: {e}")
            })?;
            drop(before);
            std::fs::remove_file(path).map_err(|e| e.to_string())?;
            eprintln!(
                "logproc: replacing {}: it was left by a run that completed no checkpoint",
                path.display()
            );
        }
        options.create(path).map_err(|e| e.to_string())
    }
}

/// On the first Ctrl-C, shuts the pipeline down gracefully (what was read
/// drains; a checkpointed pipeline then writes a final checkpoint), saying
/// `draining`; on the second, exits at once with 130, saying `at_once`. Returns
/// whether Ctrl-C was pressed.
fn drain_on_ctrl_c(
    controller: PipelineController,
    draining: &'static str,
    at_once: &'static str,
) -> Arc<AtomicBool> {
    let pressed = Arc::new(AtomicBool::new(false));
    let flag = pressed.clone();
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let interrupts = signals.and_then(|signals| {
        // Registered now, before `wait`: no Ctrl-C after `run` is missed.
        let interrupts = signals.block_on(async { Interrupts::register() })?;
        Ok((signals, interrupts))
    });
    match interrupts {
        Ok((signals, mut interrupts)) => {
            std::thread::spawn(move || {
                signals.block_on(async move {
                    if !interrupts.next().await {
                        return;
                    }
                    flag.store(true, Ordering::Relaxed);
                    eprintln!(
                        "logproc: Ctrl-C: stopping; {draining} (Ctrl-C again to stop at once)"
                    );
                    controller.shutdown(Duration::from_secs(30));
                    if interrupts.next().await {
                        eprintln!("logproc: stopped at once; {at_once}");
                        std::process::exit(130);
                    }
                });
            });
        }
        Err(e) => eprintln!("logproc: Ctrl-C will not drain (no signal handler: {e})"),
    }
    pressed
}

fn default_dlq_path() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::env::temp_dir().join(format!("logproc-{secs}-{}.dlq", std::process::id()))
}

/// What the progress bar counts to.
#[derive(Debug, Clone, Copy)]
enum Total {
    Bytes(u64),
    Lines(u64),
    /// Standard input: no end known in advance.
    Unknown,
}

/// The threads that print health and progress while the pipeline runs.
struct Watchers {
    tickers: Tickers,
    bar: Option<indicatif::ProgressBar>,
}

impl Watchers {
    fn start(
        controller: &PipelineController,
        args: &Args,
        progress: &Arc<ReadProgress>,
        total: Total,
        live_report: Option<LiveReport>,
    ) -> Self {
        let mut watchers = Watchers {
            tickers: Tickers::default(),
            bar: None,
        };
        if let Some(mut report) = live_report {
            let period = Duration::from_millis(report.interval_ms);
            watchers.tickers.every(period, move || report.tick());
        }
        if let Some(secs) = args.health_every {
            let controller = controller.clone();
            watchers
                .tickers
                .every(Duration::from_secs_f64(secs), move || {
                    let health = controller.health();
                    let json = serde_json::to_string(&health).unwrap_or_else(|e| e.to_string());
                    // Not read any more (stdout closed): the run goes on.
                    let _ = writeln!(std::io::stdout().lock(), "health: {json}");
                });
        }
        if std::io::stderr().is_terminal() {
            let bar = progress_bar(total);
            let progress = progress.clone();
            let started = Instant::now();
            watchers.bar = Some(bar.clone());
            watchers.tickers.every(Duration::from_millis(100), move || {
                let lines = progress.lines.load(Ordering::Relaxed);
                bar.set_position(match total {
                    Total::Bytes(_) | Total::Unknown => progress.bytes.load(Ordering::Relaxed),
                    Total::Lines(_) => lines,
                });
                let rate = lines as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("{lines} lines, {rate:.0} lines/s"));
            });
        }
        watchers
    }

    fn stop(self) {
        self.tickers.stop();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What logproc reads: its own source, or a followed file (`--follow`).
enum Input {
    Read(ReadSource),
    Follow(Box<Flow<LineBatch>>),
}

/// Refuses what `--follow` cannot go with, saying why.
fn check_follow(args: &Args, stdin: bool) -> Result<(), Fatal> {
    if stdin {
        return Err(usage(
            "--follow tails a file as it grows and is rotated; standard input (--input -) is \
             read as it comes already, to its end, and cannot be rotated: drop --follow, or \
             give a file with --input FILE",
        ));
    }
    if args.input.is_none() {
        return Err(usage(
            "--follow tails a log file: give it with --input FILE",
        ));
    }
    if args.checkpoint_dir.is_some() {
        return Err(usage(
            "--follow cannot be checkpointed (--checkpoint-dir): the followed lines are \
             numbered, with the lines the file source rejected put back in their place, by a \
             stage whose waiting rejected lines a checkpoint cannot place; and a file rotated \
             while logproc is stopped would be read from the new file's start, losing the \
             rest of the old one. Use one or the other",
        ));
    }
    Ok(())
}

/// `--follow`'s live report: the figures so far, every `interval_ms`,
/// printed or written to `path` (replaced whole).
struct LiveReport {
    live: Live,
    progress: Arc<ReadProgress>,
    lost: Arc<AtomicU64>,
    controller: PipelineController,
    started: Instant,
    /// The fields that do not change while the run goes on.
    template: Summary,
    interval_ms: u64,
    path: Option<PathBuf>,
    /// Reports written (or printed) so far.
    reports: Arc<AtomicU64>,
    /// The last write error, said once until a write succeeds.
    last_error: Option<String>,
}

impl LiveReport {
    fn tick(&mut self) {
        let stats = self.controller.stats();
        let summary = Summary {
            lines: self.progress.lines.load(Ordering::Relaxed),
            aggregates: self.live.aggregates(),
            tally: self.live.tally(),
            lost: self.lost.load(Ordering::Relaxed),
            restarts: stats.stages.iter().map(|s| s.restarts).sum(),
            elapsed: self.started.elapsed(),
            follow: Some(FollowSummary {
                interval_ms: self.interval_ms,
                reports: self.reports.load(Ordering::Relaxed),
                last: false,
            }),
            ..self.template.clone()
        };
        let written = match &self.path {
            Some(path) => serde_json::to_string_pretty(&summary.json())
                .map_err(std::io::Error::other)
                .and_then(|json| write_atomically(path, json.as_bytes()))
                .map_err(|e| format!("live report {}: {e}", path.display())),
            // Not read any more (stdout closed): the run goes on.
            None => {
                let _ = summary.print(&mut std::io::stdout().lock());
                Ok(())
            }
        };
        match written {
            Ok(()) => {
                self.reports.fetch_add(1, Ordering::Relaxed);
                self.last_error = None;
            }
            Err(error) => {
                if self.last_error.as_ref() != Some(&error) {
                    eprintln!("logproc: {error}");
                }
                self.last_error = Some(error);
            }
        }
    }
}

fn progress_bar(total: Total) -> indicatif::ProgressBar {
    let (len, template) = match total {
        Total::Bytes(n) => (Some(n), "{bar:40} {bytes}/{total_bytes} {msg}"),
        Total::Lines(n) => (Some(n), "{bar:40} {percent:>3}% {msg}"),
        Total::Unknown => (None, "{spinner} {bytes} {msg}"),
    };
    let bar =
        indicatif::ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
