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
//! ```sh
//! cargo run --release -p weir-examples --bin logproc
//! cargo run --release -p weir-examples --bin logproc -- --input access.log --report report.json
//! ```

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir_examples::cli::{Fatal, Tickers, exit, failed, usage};

use clap::Parser;
use weir::prelude::*;
use weir::supervisor::dead_letter::{FileDlqOptions, SharedFileDlq, SyncPolicy};
use weir::supervisor::policy::PolicyConfig;
use weir::{PipelineController, Report};
use weir_examples::logproc::{
    self, Aggregates, DEFAULT_SEED, DlqTally, GeneratedBatches, Generator, LineBatch, LineReader,
    ReadProgress, Settings,
};

const DEFAULT_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/logproc.toml");

/// Access-log analytics on weir: parse, validate, route, aggregate, report.
#[derive(Debug, Parser)]
#[command(name = "logproc", version)]
struct Args {
    /// A Common/Combined Log Format file. Without it, logproc generates `--lines`
    /// realistic lines (about 0.5 % malformed).
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
    /// `logproc-<time>-<pid>.dlq` in the system's temporary directory.
    #[arg(long, value_name = "PATH")]
    dlq: Option<PathBuf>,
    /// The supervision policy file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Writes the summary as JSON.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Serves Prometheus metrics on this address (e.g. 127.0.0.1:9898).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Prints the pipeline's health verdict at the start and then every SECS.
    #[arg(long, value_name = "SECS")]
    health_every: Option<f64>,
    /// Entries in the top lists.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Injects a fault: the parser panics once on the batch holding this line
    /// (shows the restart policy at work).
    #[arg(long, hide = true, value_name = "LINE")]
    panic_once_on_line: Option<u64>,
}

fn main() -> ExitCode {
    exit("logproc", run(Args::parse()))
}

fn run(args: Args) -> Result<(), Fatal> {
    let config = PolicyConfig::from_file(&args.config)
        .map_err(|e| usage(format!("policy file {}: {e}", args.config.display())))?;
    if let Some(secs) = args.health_every
        && !(secs.is_finite() && secs > 0.0)
    {
        return Err(usage("--health-every needs a positive number of seconds"));
    }

    let progress = Arc::new(ReadProgress::default());
    let (batches, source, total): (Box<dyn Iterator<Item = LineBatch> + Send>, String, Total) =
        match &args.input {
            Some(path) => {
                let reader = LineReader::open(path, args.max_line_bytes as usize, progress.clone())
                    .map_err(usage)?;
                let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                (
                    Box::new(reader),
                    path.display().to_string(),
                    Total::Bytes(size),
                )
            }
            None => (
                Box::new(GeneratedBatches::new(
                    Generator::new(args.seed, args.lines),
                    progress.clone(),
                )),
                format!("generator ({} lines, seed {})", args.lines, args.seed),
                Total::Lines(args.lines),
            ),
        };

    let dlq_path = args.dlq.clone().unwrap_or_else(default_dlq_path);
    let writer = FileDlqOptions::new()
        .sync(SyncPolicy::EveryN(1_024))
        .create(&dlq_path)
        .map_err(|e| usage(format!("dead-letter file {}: {e}", dlq_path.display())))?;
    let dlq = SharedFileDlq::new(writer);

    if let Some(addr) = args.metrics_addr {
        weir::prometheus::serve(addr).map_err(usage)?;
        eprintln!("logproc: Prometheus metrics on http://{addr}/metrics");
    }

    let rt = Runtime::new().map_err(failed)?;
    let workers = args.workers.unwrap_or(rt.arbiters());
    let lost = Arc::new(AtomicU64::new(0));
    let built = logproc::build(
        batches,
        Settings {
            workers,
            max_line_bytes: args.max_line_bytes as usize,
            arbiters: rt.arbiters(),
            policies: config,
            dlq: dlq.clone(),
            lines_in_failed_batches: lost.clone(),
            panic_once_on_line: args.panic_once_on_line,
        },
    )
    .map_err(usage)?;
    let started = Instant::now();
    let running = built.graph.run(&rt).map_err(usage)?;
    let watchers = Watchers::start(&running.controller(), &args, &progress, total);
    let done = running.wait();
    watchers.stop();
    let elapsed = started.elapsed();
    let done = done.map_err(|e| failed(format!("the pipeline failed: {e}")))?;
    let aggregates = futures::executor::block_on(built.aggregates)
        .ok_or_else(|| failed("the aggregate stage produced no result"))?;
    let tally = futures::executor::block_on(built.dead_letters)
        .ok_or_else(|| failed("the dead-letter stage produced no result"))?;
    dlq.flush()
        .map_err(|e| failed(format!("dead-letter file {}: {e}", dlq_path.display())))?;
    if let Ok(mut slot) = progress.error.lock()
        && let Some(error) = slot.take()
    {
        return Err(failed(format!("input {source}: {error}")));
    }
    if let Some(error) = &tally.error {
        return Err(failed(error));
    }
    done.report.check_conservation().map_err(failed)?;

    let summary = Summary {
        source,
        lines: progress.lines.load(Ordering::Relaxed),
        aggregates,
        tally,
        lost: lost.load(Ordering::Relaxed),
        report: done.report,
        elapsed,
        dlq_path,
        workers,
        top: args.top,
    };
    summary.print();
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&summary.json()).map_err(failed)?;
        std::fs::write(path, json)
            .map_err(|e| failed(format!("report {}: {e}", path.display())))?;
        println!("report written to {}", path.display());
    }
    Ok(())
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
    ) -> Self {
        let mut watchers = Watchers {
            tickers: Tickers::default(),
            bar: None,
        };
        if let Some(secs) = args.health_every {
            let controller = controller.clone();
            watchers
                .tickers
                .every(Duration::from_secs_f64(secs), move || {
                    let health = controller.health();
                    let json = serde_json::to_string(&health).unwrap_or_else(|e| e.to_string());
                    println!("health: {json}");
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
                    Total::Bytes(_) => progress.bytes.load(Ordering::Relaxed),
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

fn progress_bar(total: Total) -> indicatif::ProgressBar {
    let (len, template) = match total {
        Total::Bytes(n) => (n, "{bar:40} {bytes}/{total_bytes} {msg}"),
        Total::Lines(n) => (n, "{bar:40} {percent:>3}% {msg}"),
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

struct Summary {
    source: String,
    lines: u64,
    aggregates: Aggregates,
    tally: DlqTally,
    lost: u64,
    report: Report,
    elapsed: Duration,
    dlq_path: PathBuf,
    workers: usize,
    top: usize,
}

impl Summary {
    fn lines_per_sec(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&self) {
        let a = &self.aggregates;
        println!(
            "logproc: {} lines from {} in {:.2} s: {:.0} lines/s ({} parser replicas)",
            self.lines,
            self.source,
            self.elapsed.as_secs_f64(),
            self.lines_per_sec(),
            self.workers
        );
        println!(
            "  parsed {}, malformed {}, dead-lettered {} (to {}), restarts {}",
            a.parsed,
            self.tally.malformed,
            self.tally.written + self.lost,
            self.dlq_path.display(),
            self.report.restarts()
        );
        if self.lost > 0 {
            println!(
                "  {} lines in batches the parser failed on (dead-lettered whole)",
                self.lost
            );
        }
        println!("  bytes served {}", a.bytes_total);
        println!("  {:>6} {:>10} {:>14}", "status", "requests", "bytes");
        for (status, (requests, bytes)) in &a.status {
            println!("  {status:>6} {requests:>10} {bytes:>14}");
        }
        println!("  top {} clients:", self.top);
        for (ip, n) in a.top_ips(self.top) {
            println!("    {n:>8}  {ip}");
        }
        println!("  top {} paths:", self.top);
        for (path, n) in a.top_paths(self.top) {
            println!("    {n:>8}  {path}");
        }
        let per_minute = a.five_xx_by_minute_text();
        let total_5xx: u64 = per_minute.values().sum();
        let mut worst: Vec<(&String, &u64)> = per_minute.iter().collect();
        worst.sort_by(|x, y| y.1.cmp(x.1).then_with(|| x.0.cmp(y.0)));
        println!(
            "  5xx: {total_5xx} in {} minutes (by the log's timestamps); worst minutes: {}",
            per_minute.len(),
            worst
                .iter()
                .take(3)
                .map(|(m, n)| format!("{m} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(rss) = logproc::peak_rss_bytes() {
            println!("  peak RSS {:.1} MiB", rss as f64 / (1024.0 * 1024.0));
        }
    }

    fn json(&self) -> serde_json::Value {
        let a = &self.aggregates;
        let status_counts: serde_json::Map<String, serde_json::Value> = a
            .status
            .iter()
            .map(|(s, (n, _))| (s.to_string(), (*n).into()))
            .collect();
        let status_bytes: serde_json::Map<String, serde_json::Value> = a
            .status
            .iter()
            .map(|(s, (_, b))| (s.to_string(), (*b).into()))
            .collect();
        serde_json::json!({
            "source": self.source,
            "lines": self.lines,
            "parsed": a.parsed,
            "malformed": self.tally.malformed,
            "dead_lettered": self.tally.written + self.lost,
            "lines_in_failed_batches": self.lost,
            "dlq": self.dlq_path,
            "status_counts": status_counts,
            "status_bytes": status_bytes,
            "top_ips": a.top_ips(self.top),
            "top_paths": a.top_paths(self.top),
            "bytes_total": a.bytes_total,
            "five_xx_per_minute": a.five_xx_by_minute_text(),
            "restarts": self.report.restarts(),
            "workers": self.workers,
            "elapsed_sec": self.elapsed.as_secs_f64(),
            "lines_per_sec": self.lines_per_sec(),
            "peak_rss_bytes": logproc::peak_rss_bytes(),
        })
    }
}
