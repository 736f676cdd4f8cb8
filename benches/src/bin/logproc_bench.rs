//! logproc against a hand-written single-threaded baseline, on the same file in
//! the same run, plus logproc's peak RSS on a much larger generated input.
//!
//! ```text
//! cargo run --release -p weir-benches --bin logproc_bench -- [--lines N] [--runs R]
//!     [--rss-lines N] [--workers W] [--out PATH]
//! ```
//!
//! The parent writes `--lines` generated lines (default 1 M) to a temporary file,
//! then runs the two variants `--runs` times each (default 3), alternating, every
//! run in its own child process (this binary re-invoked with `--child NAME`):
//!
//! * `baseline`: one thread; `BufRead::read_line` into a reused `String`, the
//!   same parser (`weir_examples::logproc::parse_line`), `HashMap`s.
//! * `logproc`: the logproc graph (`weir_examples::logproc::build`): the reader,
//!   a pool of `--workers` parsers (default: one per core), the router, the file
//!   dead-letter queue and the aggregates, under the policy of
//!   `examples/config/logproc.toml`.
//!
//! Each child prints one JSON line: lines/s, its peak RSS (`VmHWM`) and its totals,
//! which must be equal for both variants. Then one `logproc` child processes
//! `--rss-lines` generated lines (default 10 M, no file) for the RSS figure. The
//! parent prints a table (medians, the ratio) and writes `--out` (default
//! `target/logproc-bench.json`). `--child write --input PATH [--lines N]` only
//! writes the input file (to run `logproc --input PATH` on it by hand).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use clap::Parser;
use serde::{Deserialize, Serialize};
use weir::Runtime;
use weir::supervisor::dead_letter::{FileDlqOptions, SharedFileDlq, SyncPolicy};
use weir::supervisor::policy::PolicyConfig;
use weir_benches::stats;
use weir_examples::logproc::{
    self, DEFAULT_SEED, GeneratedBatches, Generator, LineBatch, LineReader, ReadProgress, Settings,
    parse_line,
};

const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/config/logproc.toml"
);

/// What a child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildResult {
    variant: String,
    lines: u64,
    secs: f64,
    lines_per_sec: f64,
    peak_rss_bytes: Option<u64>,
    totals: Totals,
}

/// The figures both variants must agree on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Totals {
    parsed: u64,
    malformed: u64,
    bytes_total: u64,
    status_counts: BTreeMap<u16, u64>,
    distinct_ips: usize,
    distinct_paths: usize,
    five_xx_minutes: usize,
}

/// logproc against a hand-written single-threaded baseline on the same
/// generated file, plus logproc's peak RSS on a much larger generated input.
#[derive(Debug, Parser)]
#[command(name = "logproc_bench")]
struct Options {
    /// Lines of the generated input file.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    lines: u64,
    /// Runs of each variant, alternating; the median is reported (0 counts as 1).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = at_least_one)]
    runs: usize,
    /// Generated lines for the peak-RSS run (no file).
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    rss_lines: u64,
    /// logproc's parser replicas (default: one per core; 0 counts as 1).
    #[arg(long, value_name = "W", value_parser = at_least_one)]
    workers: Option<usize>,
    /// The JSON report.
    #[arg(long, value_name = "PATH", default_value = "target/logproc-bench.json")]
    out: PathBuf,
    /// Runs one variant in this process (`baseline`, `logproc`, `rss`), or
    /// `write`: only writes the --input file (of --lines lines).
    #[arg(long, value_name = "NAME")]
    child: Option<String>,
    /// The input file of a child.
    #[arg(long, value_name = "PATH")]
    input: Option<PathBuf>,
}

/// A number; 0 counts as 1.
fn at_least_one(value: &str) -> Result<usize, String> {
    let n: u64 = value.parse().map_err(|e| format!("{e}"))?;
    Ok(n.max(1) as usize)
}

fn main() -> ExitCode {
    // --help prints the usage (exit 0), a bad argument clap's error (exit 2).
    let o = Options::parse();
    match match &o.child {
        Some(name) => child(name, &o),
        None => parent(&o),
    } {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logproc_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent(o: &Options) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("logproc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let input = dir.join("access.log");
    let result = (|| {
        let t = Instant::now();
        Generator::write_file(DEFAULT_SEED, o.lines, &input).map_err(|e| e.to_string())?;
        let size = std::fs::metadata(&input).map_or(0, |m| m.len());
        eprintln!(
            "wrote {} lines ({:.0} MiB) in {:.1} s",
            o.lines,
            size as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
        let mut runs: Vec<ChildResult> = Vec::new();
        for _ in 0..o.runs {
            for variant in ["baseline", "logproc"] {
                let r = spawn(variant, Some(&input), o)?;
                eprintln!(
                    "{variant:>9}: {:>9.0} lines/s, peak RSS {:.1} MiB",
                    r.lines_per_sec,
                    mib(r.peak_rss_bytes)
                );
                runs.push(r);
            }
        }
        let totals = &runs[0].totals;
        if let Some(bad) = runs.iter().find(|r| &r.totals != totals) {
            return Err(format!(
                "{} disagrees with baseline: {:?} vs {:?}",
                bad.variant, bad.totals, totals
            ));
        }
        let rss = if o.rss_lines > 0 {
            let r = spawn("logproc-generated", None, o)?;
            eprintln!(
                "logproc on {} generated lines: {:.0} lines/s, peak RSS {:.1} MiB",
                r.lines,
                r.lines_per_sec,
                mib(r.peak_rss_bytes)
            );
            Some(r)
        } else {
            None
        };
        report(o, &runs, rss)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn spawn(variant: &str, input: Option<&Path>, o: &Options) -> Result<ChildResult, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["--child", variant]);
    cmd.args(["--rss-lines", &o.rss_lines.to_string()]);
    if let Some(w) = o.workers {
        cmd.args(["--workers", &w.to_string()]);
    }
    if let Some(input) = input {
        cmd.arg("--input").arg(input);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("child {variant} failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).map_err(|e| format!("child {variant}: {e}: {text}"))
}

fn mib(bytes: Option<u64>) -> f64 {
    bytes.unwrap_or(0) as f64 / 1048576.0
}

fn report(o: &Options, runs: &[ChildResult], rss: Option<ChildResult>) -> Result<(), String> {
    let rates = |v: &str| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.variant == v)
            .map(|r| r.lines_per_sec)
            .collect()
    };
    let (base, weir) = (rates("baseline"), rates("logproc"));
    let base_median = stats::median(&base).unwrap_or(0.0);
    let weir_median = stats::median(&weir).unwrap_or(0.0);
    let ratios: Vec<f64> = base.iter().zip(&weir).map(|(b, w)| w / b).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "logproc bench: {} lines, {} runs each, {cores} cores",
        o.lines, o.runs
    );
    println!("{:>10} {:>14} {:>12}", "variant", "median l/s", "peak RSS");
    for (name, median) in [("baseline", base_median), ("logproc", weir_median)] {
        let peak = runs
            .iter()
            .filter(|r| r.variant == name)
            .filter_map(|r| r.peak_rss_bytes)
            .max();
        println!("{name:>10} {median:>14.0} {:>10.1} MiB", mib(peak));
    }
    println!(
        "ratio logproc / baseline: median {:.2}x, per run {}",
        weir_median / base_median.max(1e-9),
        ratios
            .iter()
            .map(|r| format!("{r:.2}x"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(r) = &rss {
        println!(
            "logproc, {} generated lines: {:.0} lines/s, peak RSS {:.1} MiB",
            r.lines,
            r.lines_per_sec,
            mib(r.peak_rss_bytes)
        );
    }
    let json = serde_json::json!({
        "lines": o.lines,
        "cores": cores,
        "runs": runs,
        "baseline_median": base_median,
        "logproc_median": weir_median,
        "ratios": ratios,
        "rss_run": rss,
    });
    if let Some(parent) = o.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(
        &o.out,
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", o.out.display()))?;
    println!("written to {}", o.out.display());
    Ok(())
}

fn child(name: &str, o: &Options) -> Result<(), String> {
    let started = Instant::now();
    let (lines, totals) = match name {
        "baseline" => baseline(o.input.as_deref().ok_or("--input needed")?)?,
        "logproc" => {
            let input = o.input.as_deref().ok_or("--input needed")?;
            let progress = Arc::new(ReadProgress::default());
            let reader =
                LineReader::open(input, 64 * 1024, progress.clone()).map_err(|e| e.to_string())?;
            with_logproc(reader, progress, o)?
        }
        "logproc-generated" => {
            let progress = Arc::new(ReadProgress::default());
            let batches =
                GeneratedBatches::new(Generator::new(DEFAULT_SEED, o.rss_lines), progress.clone());
            with_logproc(batches, progress, o)?
        }
        "write" => {
            // Writes the input file only (to time the binary by hand).
            let input = o.input.as_deref().ok_or("--input needed")?;
            Generator::write_file(DEFAULT_SEED, o.lines, input).map_err(|e| e.to_string())?;
            return Ok(());
        }
        other => return Err(format!("unknown child `{other}`")),
    };
    let secs = started.elapsed().as_secs_f64();
    let result = ChildResult {
        variant: name.to_owned(),
        lines,
        secs,
        lines_per_sec: lines as f64 / secs,
        peak_rss_bytes: stats::peak_rss_bytes(),
        totals,
    };
    println!(
        "{}",
        serde_json::to_string(&result).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The hand-written baseline: one thread, one reused line buffer, the same parser,
/// `HashMap`s.
fn baseline(input: &Path) -> Result<(u64, Totals), String> {
    let file = std::fs::File::open(input).map_err(|e| e.to_string())?;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
    let mut line = String::new();
    let mut lines = 0;
    let mut t = Totals::default();
    let mut status_bytes: HashMap<u16, u64> = HashMap::new();
    let mut ips: HashMap<String, u64> = HashMap::new();
    let mut paths: HashMap<String, u64> = HashMap::new();
    let mut five_xx: BTreeMap<i64, u64> = BTreeMap::new();
    let mut malformed_lines = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        lines += 1;
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let text = text.strip_suffix('\r').unwrap_or(text);
        match parse_line(text) {
            Ok(l) => {
                t.parsed += 1;
                t.bytes_total += l.bytes;
                *t.status_counts.entry(l.status).or_default() += 1;
                *status_bytes.entry(l.status).or_default() += l.bytes;
                for (map, key) in [(&mut ips, l.ip), (&mut paths, l.path)] {
                    match map.get_mut(key) {
                        Some(n) => *n += 1,
                        None => {
                            map.insert(key.to_owned(), 1);
                        }
                    }
                }
                if (500..600).contains(&l.status) {
                    *five_xx.entry(l.minute).or_default() += 1;
                }
            }
            Err(e) => {
                t.malformed += 1;
                malformed_lines.push((lines, e.to_string()));
            }
        }
    }
    t.distinct_ips = ips.len();
    t.distinct_paths = paths.len();
    t.five_xx_minutes = five_xx.len();
    // What the report needs at the end: the top lists.
    std::hint::black_box((
        logproc::top(&ips, 10),
        logproc::top(&paths, 10),
        malformed_lines,
    ));
    Ok((lines, t))
}

fn with_logproc<I>(
    batches: I,
    progress: Arc<ReadProgress>,
    o: &Options,
) -> Result<(u64, Totals), String>
where
    I: Iterator<Item = LineBatch> + Send + 'static,
{
    let config = PolicyConfig::from_file(POLICY).map_err(|e| e.to_string())?;
    let rt = Runtime::new().map_err(|e| e.to_string())?;
    let dlq_path = std::env::temp_dir().join(format!("logproc-bench-{}.dlq", std::process::id()));
    let _ = std::fs::remove_file(&dlq_path);
    let writer = FileDlqOptions::new()
        .sync(SyncPolicy::EveryN(1_024))
        .create(&dlq_path)
        .map_err(|e| e.to_string())?;
    let built = logproc::build(
        batches,
        Settings {
            workers: o.workers.unwrap_or(rt.arbiters()),
            max_line_bytes: 64 * 1024,
            arbiters: rt.arbiters(),
            policies: config,
            dlq: SharedFileDlq::new(writer),
            lines_in_failed_batches: Arc::new(AtomicU64::new(0)),
            panic_once_on_line: None,
        },
    )
    .map_err(|e| e.to_string())?;
    let done = built.graph.run(&rt).map_err(|e| e.to_string())?.wait();
    let _ = std::fs::remove_file(&dlq_path);
    let done = done.map_err(|e| e.to_string())?;
    done.report
        .check_conservation()
        .map_err(|e| e.to_string())?;
    let agg = futures::executor::block_on(built.aggregates).ok_or("no aggregates")?;
    let tally = futures::executor::block_on(built.dead_letters).ok_or("no dead letters")?;
    std::hint::black_box((agg.top_ips(10), agg.top_paths(10)));
    let totals = Totals {
        parsed: agg.parsed,
        malformed: tally.malformed,
        bytes_total: agg.bytes_total,
        status_counts: agg.status.iter().map(|(s, (n, _))| (*s, *n)).collect(),
        distinct_ips: agg.ips.len(),
        distinct_paths: agg.paths.len(),
        five_xx_minutes: agg.five_xx_per_minute.len(),
    };
    Ok((
        progress.lines.load(std::sync::atomic::Ordering::Relaxed),
        totals,
    ))
}

#[cfg(test)]
mod args_tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("logproc_bench").chain(args.iter().copied()))
    }

    #[test]
    fn flags_keep_their_defaults_and_meaning() {
        let o = parse(&[]).unwrap();
        assert_eq!((o.lines, o.runs, o.rss_lines), (1_000_000, 3, 10_000_000));
        assert_eq!((o.workers, o.child, o.input), (None, None, None));
        assert_eq!(o.out, PathBuf::from("target/logproc-bench.json"));
        let o = parse(&[
            "--runs",
            "0",
            "--workers",
            "0",
            "--child",
            "write",
            "--input",
            "x",
        ])
        .unwrap();
        assert_eq!((o.runs, o.workers), (1, Some(1)));
        assert_eq!(o.child.as_deref(), Some("write"));
    }

    #[test]
    fn a_bad_argument_is_a_usage_error() {
        assert_eq!(parse(&["--bogus"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["--lines", "many"]).unwrap_err().exit_code(), 2);
        let help = parse(&["--help"]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
        assert!(help.to_string().contains("--rss-lines <N>"), "{help}");
    }
}
