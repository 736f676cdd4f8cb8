//! etl: extract from three sources at once, transform, load into three sinks.
//!
//! Extracts orders from a CSV file, a JSON-lines file and a generated stream
//! (with no arguments it writes its own input files into a temporary
//! directory), parses and validates them (invalid rows go to a dead-letter file
//! with the reason), enriches them from a lookup table, and loads them into a
//! JSON-lines file, a CSV file and a SQLite database (batched transactions). The
//! validation threshold and the rate limit come from a TOML file that weir's
//! `ConfigWatcher` reloads while the pipeline runs, applying the changes to the
//! running stages through their config handles. Prints progress per source, a summary, and
//! with `--report PATH` the counts per source and per sink as JSON.
//!
//! ```sh
//! cargo run --release -p weir-examples --bin etl
//! cargo run --release -p weir-examples --bin etl -- --rows 200000 --report report.json
//! ```

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_examples::cli::{ConsoleOptions, Fatal, Run, Tickers, exit, failed, stdout_closed, usage};

use clap::Parser;
use weir::PipelineController;
use weir::prelude::*;
use weir_examples::etl::{
    self, Handles, InputFiles, Progress, Reloader, Settings, SourceId, Summary,
};

/// The settings used without `--config`: the example file, built into the binary
/// (an installed binary needs no source tree).
const BUILT_IN_CONFIG: &str = include_str!("../../config/etl.toml");

/// ETL on weir: three sources, validation, enrichment, three sinks, hot config.
#[derive(Debug, Parser)]
#[command(name = "etl", version)]
struct Args {
    /// The CSV input (`id,customer,country,amount` with a header). Give it with
    /// --jsonl; without both, etl generates its input files.
    #[arg(long, value_name = "FILE", requires = "jsonl")]
    csv: Option<PathBuf>,
    /// The JSON-lines input (`{"id","customer","country","amount_cents"}`).
    #[arg(long, value_name = "FILE", requires = "csv")]
    jsonl: Option<PathBuf>,
    /// Rows to generate per input file when no files are given.
    #[arg(long, default_value_t = 20_000)]
    rows: u64,
    /// Rows of the generated stream.
    #[arg(long, default_value_t = 20_000)]
    generated_rows: u64,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the outputs go (created). Default: a new directory in the system's
    /// temporary directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The reloadable config (validation threshold, rate limit, policies),
    /// watched while etl runs. Without it, the built-in settings (the example's
    /// config/etl.toml), not reloaded.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// How often to check the config file for changes, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    watch_ms: u64,
    /// Rows per SQLite transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    sqlite_batch: u64,
    /// Longer input lines are dead-lettered.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_line_bytes: u64,
    /// Writes the summary as JSON.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Serves Prometheus metrics on this address (e.g. 127.0.0.1:9899).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Serves the live console on this address while etl runs (e.g.
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
    /// Prints progress per source every SECS (default: every second when
    /// stderr is a terminal).
    #[arg(long, value_name = "SECS")]
    progress_every: Option<f64>,
}

fn main() -> ExitCode {
    exit("etl", run(Args::parse()))
}

fn seconds(flag: &str, secs: Option<f64>) -> Result<Option<Duration>, Fatal> {
    match secs {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(usage(format!(
            "--{flag} needs a positive number of seconds"
        ))),
        other => Ok(other.map(Duration::from_secs_f64)),
    }
}

fn run(args: Args) -> Result<(), Fatal> {
    let handles = Handles::default();
    let mut watcher = args
        .config
        .as_ref()
        .map(|path| etl::watcher(path, &handles));
    let config = match watcher.as_mut() {
        Some(w) => w.load().map_err(|e| usage(format!("config {e}")))?,
        None => etl::EtlConfig::parse(BUILT_IN_CONFIG)
            .map_err(|e| failed(format!("the built-in config: {e}")))?,
    };
    let health_every = seconds("health-every", args.health_every)?;
    let progress_every = seconds("progress-every", args.progress_every)?.or_else(|| {
        std::io::stderr()
            .is_terminal()
            .then_some(Duration::from_secs(1))
    });
    let out_dir = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("etl-{}-{}", std::process::id(), now_secs()))
    });
    std::fs::create_dir_all(&out_dir).map_err(|e| usage(format!("{}: {e}", out_dir.display())))?;
    let inputs = match (&args.csv, &args.jsonl) {
        (Some(csv), Some(jsonl)) => InputFiles {
            csv: csv.clone(),
            jsonl: jsonl.clone(),
        },
        _ => {
            let dir = out_dir.join("input");
            std::fs::create_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
            let files = etl::write_inputs(&dir, args.seed, args.rows)
                .map_err(|e| failed(format!("writing input files into {}: {e}", dir.display())))?;
            eprintln!(
                "etl: generated {} rows each into {} and {}",
                args.rows,
                files.csv.display(),
                files.jsonl.display()
            );
            files
        }
    };
    let built = etl::build(&Settings {
        inputs,
        generated_rows: args.generated_rows,
        seed: args.seed,
        out_dir: out_dir.clone(),
        sqlite_batch: args.sqlite_batch as usize,
        max_line_bytes: args.max_line_bytes as usize,
        config: config.clone(),
        handles,
    })
    .map_err(usage)?;
    if let Some(addr) = args.metrics_addr {
        weir::prometheus::serve(addr).map_err(usage)?;
        eprintln!("etl: Prometheus metrics on http://{addr}/metrics");
    }

    let rt = Runtime::new().map_err(failed)?;
    let started = Instant::now();
    let console = ConsoleOptions::from_flags(args.console, args.console_controls)?;
    let running = Run::start("etl", "etl", built.graph, &rt, console)?;
    // Started once the stages run: a change reaches them from now on.
    let reloader = watcher.map(|watcher| {
        Reloader::start(
            watcher,
            Duration::from_millis(args.watch_ms),
            |change| match change {
                Ok(c) => eprintln!(
                    "etl: config reloaded: max_amount_cents {}, rate_limit {}",
                    c.max_amount_cents, c.rate_limit
                ),
                Err(e) => eprintln!("etl: config rejected, the previous one stays: {e}"),
            },
        )
    });
    let ticks = Ticks::start(
        &running.controller(),
        health_every,
        progress_every,
        &built.progress,
    );
    let done = running.wait();
    ticks.stop();
    let reloads = reloader.as_ref().map(Reloader::counts);
    drop(reloader);
    let elapsed = started.elapsed();
    let report = done.map_err(|e| failed(format!("the pipeline failed: {e}")))?;
    report.check_conservation().map_err(failed)?;
    built.rejected.finish().map_err(failed)?;
    let take = |rx: weir::OutputReceiver<Arc<weir::file::FileSinkStats>>, name: &str| {
        futures::executor::block_on(rx)
            .map(|s| s.elements())
            .ok_or_else(|| failed(format!("the {name} sink produced no result")))
    };
    let summary = Summary {
        rows: built.progress.rows(),
        valid: built.progress.valid(),
        invalid: built.rejected.per_source(),
        jsonl_written: take(built.jsonl, "jsonl")?,
        csv_written: take(built.csv, "csv")?,
        sqlite_written: futures::executor::block_on(built.sqlite)
            .ok_or_else(|| failed("the sqlite sink produced no result"))?,
        config_changes: reloads.as_ref().map_or(0, |r| r.applied()),
        config_rejected: reloads.as_ref().map_or(0, |r| r.rejected()),
        config: reloads.and_then(|r| r.in_force()).unwrap_or(config),
        config_generations: ["rate_limit", "transform"]
            .map(|s| report.stage(s).map_or(0, |r| r.config_generation)),
        rejected_file: built.outputs.rejected.clone(),
        elapsed,
    };
    summary.check().map_err(failed)?;
    // A closed stdout (`etl | head -1`) ends the output, not the run: the
    // report is still written, and etl exits with 0 (see `cli`).
    let closed = {
        let mut out = std::io::stdout().lock();
        stdout_closed(summary.print(&mut out).and_then(|()| {
            writeln!(
                out,
                "  outputs: {}, {}, {}",
                built.outputs.jsonl.display(),
                built.outputs.csv.display(),
                built.outputs.sqlite.display()
            )
        }))?
    };
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&summary.json()).map_err(failed)?;
        std::fs::write(path, json)
            .map_err(|e| failed(format!("report {}: {e}", path.display())))?;
        if !closed {
            let mut out = std::io::stdout().lock();
            stdout_closed(writeln!(out, "report written to {}", path.display()))?;
        }
    }
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The threads that print health and progress while the pipeline runs.
struct Ticks {
    tickers: Tickers,
}

impl Ticks {
    fn start(
        controller: &PipelineController,
        health_every: Option<Duration>,
        progress_every: Option<Duration>,
        progress: &Progress,
    ) -> Ticks {
        let mut ticks = Ticks {
            tickers: Tickers::default(),
        };
        if let Some(period) = health_every {
            let controller = controller.clone();
            ticks.tickers.every(period, move || {
                let health = controller.health();
                let json = serde_json::to_string(&health).unwrap_or_else(|e| e.to_string());
                // Not read any more (stdout closed): the run goes on.
                let _ = writeln!(std::io::stdout().lock(), "health: {json}");
            });
        }
        if let Some(period) = progress_every {
            let progress = progress.clone();
            ticks.tickers.every(period, move || {
                let parts: Vec<String> = SourceId::ALL
                    .iter()
                    .zip(progress.fractions())
                    .zip(progress.rows())
                    .map(|((s, (done, total)), rows)| {
                        let pct = if total == 0 {
                            100.0
                        } else {
                            done as f64 * 100.0 / total as f64
                        };
                        format!("{} {rows} rows ({pct:.0}%)", s.name())
                    })
                    .collect();
                eprintln!("progress: {}", parts.join(", "));
            });
        }
        ticks
    }

    fn stop(self) {
        self.tickers.stop();
    }
}
