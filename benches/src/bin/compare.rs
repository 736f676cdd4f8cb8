//! Comparison harness: pushes the shared [`workload`] through several variants
//! in one invocation and reports throughput, peak RSS and weir's latency; then the
//! [`junctions`] workloads (`broadcast4`, `merge4`) and the [`pool`] workloads
//! (`pool`: one replica per core, `pool1`: one replica), each next to its crossbeam
//! baseline, and the [`detach`] workload (`detach3`: a broadcast with one stalled
//! `Detach` branch), next to the same graph with nothing stalled.
//!
//! ```text
//! cargo run --release -p weir-benches --bin compare -- [--elements N] [--runs R]
//!     [--per-element-elements N] [--pings P] [--junction-elements N]
//!     [--placement together|spread] [--variants a,b,...] [--out PATH]
//! ```
//!
//! Each variant runs in a child process (this binary re-invoked with
//! `--child NAME`) that runs it `R` times and prints one JSON line with the
//! per-run elements/s, whether every checksum matched the reference, and its
//! own peak RSS (`VmHWM`). The parent only collects, prints a table and writes
//! a JSON report; it exits non-zero when any selected variant failed.
//!
//! A junction workload's child alternates its baseline and weir, `R` runs of
//! each, so that both are measured in the same stretch of time; its entry carries
//! both medians (`elements_per_sec`, `baseline_elements_per_sec`) and names the
//! baseline (`baseline`: `crossbeam`, or `unstalled` for `detach3`, whose ratio is
//! the fraction of the unstalled throughput the healthy branches keep).

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use clap::Parser;
use serde::{Deserialize, Serialize};
use weir_benches::baselines::{self, RunFn};
use weir_benches::junctions::{self, JunctionPlacement};
use weir_benches::{
    checkpoint, console, detach, join, pool, stats, weir_variant, window, workload,
};

/// Every throughput variant, in report order.
const VARIANTS: &[(&str, RunFn)] = &[
    ("fused", baselines::fused::run),
    ("crossbeam_batched", baselines::crossbeam_batched::run),
    ("actix_per_element", baselines::actix_per_element::run),
    ("actix_batched", baselines::actix_batched::run),
    ("weir", weir_variant::run),
    ("weir_unfused", weir_variant::run_unfused),
    ("weir_budget", weir_variant::run_budget),
    ("weir_supervised", weir_variant::run_supervised),
    ("weir_faulty", weir_variant::run_faulty),
    ("weir_faulty_clean", weir_variant::run_faulty_clean),
];
/// The variant with injected panics, whose child also reports restarts.
const FAULTY: &str = "weir_faulty";
/// A junction workload run: one sum per checked sink.
type JunctionFn = fn(u64, JunctionPlacement) -> Result<Vec<u64>, String>;

/// A junction workload: its weir variant and its baseline (a crossbeam one, which
/// ignores the placement, or another weir graph), each returning one sum per sink.
struct JunctionVariant {
    name: &'static str,
    weir: JunctionFn,
    baseline: JunctionFn,
    /// What the baseline is, in the report.
    baseline_name: &'static str,
    /// Sinks, each of which must sum to [`junctions::expected_sum`].
    sinks: usize,
    /// The workload runs `--junction-elements / divisor` elements (the pool's
    /// elements cost about 1 µs each).
    divisor: u64,
    /// What each sink must sum to, for the elements run.
    expected: fn(u64) -> u64,
}

/// The junction workloads, in report order.
const JUNCTIONS: &[JunctionVariant] = &[
    JunctionVariant {
        name: "broadcast4",
        weir: junctions::broadcast4_weir,
        baseline: |n, _| junctions::broadcast4_crossbeam(n),
        baseline_name: CROSSBEAM,
        sinks: junctions::FAN,
        divisor: 1,
        expected: junctions::expected_sum,
    },
    JunctionVariant {
        name: "merge4",
        weir: junctions::merge4_weir,
        baseline: |n, _| junctions::merge4_crossbeam(n),
        baseline_name: CROSSBEAM,
        sinks: 1,
        divisor: 1,
        expected: junctions::expected_sum,
    },
    JunctionVariant {
        name: "merge4_batches",
        weir: junctions::merge4_batches_weir,
        baseline: |n, _| junctions::merge4_crossbeam(n),
        baseline_name: CROSSBEAM,
        sinks: 1,
        divisor: 1,
        expected: junctions::expected_sum,
    },
    JunctionVariant {
        name: "pool",
        weir: pool::pool_weir,
        baseline: |n, _| pool::pool_crossbeam(n),
        baseline_name: CROSSBEAM,
        sinks: 1,
        divisor: 8,
        expected: junctions::expected_sum,
    },
    JunctionVariant {
        name: "pool1",
        weir: pool::pool1_weir,
        baseline: |n, _| pool::pool1_crossbeam(n),
        baseline_name: CROSSBEAM,
        sinks: 1,
        divisor: 8,
        expected: junctions::expected_sum,
    },
    JunctionVariant {
        name: "detach3",
        weir: detach::detach3_weir,
        baseline: detach::detach3_unstalled_weir,
        baseline_name: "unstalled",
        // The two healthy branches; the stalled one is checked by count.
        sinks: 2,
        divisor: 1,
        expected: junctions::expected_sum,
    },
    JunctionVariant {
        name: "window_agg",
        weir: window::window_agg_weir,
        baseline: |n, _| window::window_agg_hashmap(n),
        baseline_name: "hashmap",
        sinks: 1,
        divisor: 1,
        expected: junctions::expected_sum,
    },
    // An event-time interval join against a hand-written HashMap join.
    JunctionVariant {
        name: "join",
        weir: join::join_weir,
        baseline: |n, _| join::join_hashmap(n),
        baseline_name: "hashmap",
        sinks: 1,
        divisor: 1,
        expected: junctions::expected_sum,
    },
    // A keyed running sum checkpointed every second, then every 100 ms, each
    // against the same pipeline with checkpoints off.
    // The workload under a PipelineManager with a console serving it to an
    // event-stream client, against the same without the console.
    JunctionVariant {
        name: "weir_console",
        weir: |n, _| console::run_console(n).map(|sum| vec![sum]),
        baseline: |n, _| console::run_managed(n).map(|sum| vec![sum]),
        baseline_name: "console off",
        sinks: 1,
        divisor: 1,
        expected: workload::reference_checksum,
    },
    JunctionVariant {
        name: "checkpoint_1s",
        weir: checkpoint::every_second,
        baseline: checkpoint::off,
        baseline_name: "checkpoints off",
        sinks: 1,
        divisor: 1,
        expected: checkpoint_expected,
    },
    JunctionVariant {
        name: "checkpoint_100ms",
        weir: checkpoint::every_100ms,
        baseline: checkpoint::off,
        baseline_name: "checkpoints off",
        sinks: 1,
        divisor: 1,
        expected: checkpoint_expected,
    },
];

/// The checkpoint workloads' sum.
fn checkpoint_expected(n: u64) -> u64 {
    checkpoint::keyed_expected(n).map_or(0, |v| v[0])
}
/// The baseline of most junction workloads.
const CROSSBEAM: &str = "crossbeam";
/// Default source elements of a junction workload.
const JUNCTION_ELEMENTS: u64 = 4_000_000;
/// Name of the latency measurement (weir only).
const LATENCY: &str = "latency";
/// The variant that pushes at most `--per-element-elements` elements.
const PER_ELEMENT: &str = "actix_per_element";

/// Parsed command line.
#[derive(Debug, Clone, PartialEq)]
struct Args {
    elements: u64,
    per_element_elements: u64,
    runs: usize,
    pings: usize,
    junction_elements: u64,
    placement: JunctionPlacement,
    variants: Vec<String>,
    out: PathBuf,
    child: Option<String>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            elements: 10_000_000,
            per_element_elements: baselines::actix_per_element::DEFAULT_ELEMENTS,
            runs: 5,
            pings: 100_000,
            junction_elements: JUNCTION_ELEMENTS,
            placement: JunctionPlacement::default(),
            variants: all_names(),
            out: PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/compare.json"
            )),
            child: None,
        }
    }
}

fn all_names() -> Vec<String> {
    VARIANTS
        .iter()
        .map(|(name, _)| *name)
        .chain(JUNCTIONS.iter().map(|j| j.name))
        .chain([LATENCY])
        .map(str::to_owned)
        .collect()
}

/// weir against baselines (fused loop, crossbeam, actix) on the same workloads,
/// each variant in child processes of its own; prints a table and writes a
/// JSON report.
#[derive(Debug, Parser)]
#[command(name = "compare")]
struct Cli {
    /// Elements per run (`_` separators allowed: 10_000_000).
    #[arg(long, value_name = "N", default_value = "10000000", value_parser = count::<u64>(0))]
    elements: u64,
    /// Runs per variant; the median is reported.
    #[arg(long, value_name = "R", default_value = "5", value_parser = count::<usize>(1))]
    runs: usize,
    /// Cap on the elements of actix_per_element.
    #[arg(long, value_name = "N",
          default_value_t = baselines::actix_per_element::DEFAULT_ELEMENTS,
          value_parser = count::<u64>(0))]
    per_element_elements: u64,
    /// Pings for the weir latency measurement.
    #[arg(long, value_name = "P", default_value = "100000", value_parser = count::<usize>(1))]
    pings: usize,
    /// Source elements of broadcast4, merge4(_batches) and detach3; pool and
    /// pool1 run an eighth of them.
    #[arg(long, value_name = "N", default_value_t = JUNCTION_ELEMENTS, value_parser = count::<u64>(0))]
    junction_elements: u64,
    /// weir's placement in the junction workloads, on one arbiter per core:
    /// together or spread.
    #[arg(long, value_name = "P", default_value = "together", value_parser = placement)]
    placement: JunctionPlacement,
    /// Comma-separated subset of: fused, crossbeam_batched, actix_per_element,
    /// actix_batched, weir, weir_unfused, weir_budget (a memory budget that never
    /// binds), weir_supervised, weir_faulty,
    /// weir_faulty_clean (with weir_faulty: the fault_cost figure), broadcast4, merge4, merge4_batches, pool, pool1, detach3, window_agg, join,
    /// weir_console (a console with a client attached, against none), checkpoint_1s, checkpoint_100ms, latency (default: all). The report's order is fixed; the list only selects.
    #[arg(long, value_name = "LIST", value_parser = variants)]
    variants: Option<Variants>,
    /// The JSON report (default: target/compare.json in the workspace).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Runs one variant in this process (the parent starts one child per variant).
    #[arg(long, value_name = "NAME", hide = true)]
    child: Option<String>,
}

/// A `--variants` list: known names, in report order.
#[derive(Debug, Clone)]
struct Variants(Vec<String>);

impl From<Cli> for Args {
    fn from(cli: Cli) -> Self {
        let defaults = Args::default();
        Args {
            elements: cli.elements,
            per_element_elements: cli.per_element_elements,
            runs: cli.runs,
            pings: cli.pings,
            junction_elements: cli.junction_elements,
            placement: cli.placement,
            variants: cli.variants.map_or(defaults.variants, |v| v.0),
            out: cli.out.unwrap_or(defaults.out),
            child: cli.child,
        }
    }
}

/// A value parser for a count of at least `min`; `_` separators are allowed.
fn count<T>(min: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |value: &str| {
        let parsed: T = value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("`{value}` is not a non-negative integer"))?;
        if parsed < min {
            return Err(format!("must be at least {min}, got {value}"));
        }
        Ok(parsed)
    }
}

fn placement(value: &str) -> Result<JunctionPlacement, String> {
    JunctionPlacement::parse(value)
        .ok_or_else(|| format!("`{value}` is neither `together` nor `spread`"))
}

fn variants(value: &str) -> Result<Variants, String> {
    let known = all_names();
    let mut selected = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !known.iter().any(|k| k == name) {
            return Err(format!(
                "unknown variant `{name}` (known: {})",
                known.join(", ")
            ));
        }
        selected.push(name.to_owned());
    }
    if selected.is_empty() {
        return Err("empty list".into());
    }
    // Report order is fixed; the list only selects.
    Ok(Variants(
        known.into_iter().filter(|k| selected.contains(k)).collect(),
    ))
}

/// Parses the arguments after the program name.
#[cfg(test)]
fn parse_args(raw: impl IntoIterator<Item = String>) -> Result<Args, clap::Error> {
    Cli::try_parse_from(std::iter::once("compare".to_owned()).chain(raw)).map(Args::from)
}

/// What a throughput child prints (one JSON line on stdout).
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    name: String,
    elements: u64,
    runs: Vec<f64>,
    checksum_ok: bool,
    peak_rss_bytes: Option<u64>,
    error: Option<String>,
    /// `weir_faulty` only: restarts and dead letters of the last run, and the
    /// restart latency percentiles over all runs.
    #[serde(default)]
    restarts: Option<u64>,
    #[serde(default)]
    dead_lettered: Option<u64>,
    #[serde(default)]
    restart_p50_us: Option<f64>,
    #[serde(default)]
    restart_p99_us: Option<f64>,
}

/// What a junction child prints (one JSON line on stdout).
#[derive(Debug, Serialize, Deserialize)]
struct JunctionChildReport {
    name: String,
    elements: u64,
    placement: String,
    arbiters: usize,
    /// weir's elements/s, one per run.
    runs: Vec<f64>,
    /// The baseline's elements/s, one per run.
    baseline_runs: Vec<f64>,
    /// Whether every sink of every run, weir and baseline, summed correctly.
    checksum_ok: bool,
    peak_rss_bytes: Option<u64>,
    error: Option<String>,
}

/// What the latency child prints (one JSON line on stdout).
#[derive(Debug, Serialize, Deserialize)]
struct LatencyChildReport {
    pings: usize,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    peak_rss_bytes: Option<u64>,
    error: Option<String>,
}

/// One throughput variant in the JSON report.
#[derive(Debug, Serialize)]
struct VariantEntry {
    name: String,
    elements: u64,
    elements_per_sec: f64,
    peak_rss_bytes: Option<u64>,
    checksum_ok: bool,
    runs: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restarts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_lettered: Option<u64>,
    #[serde(skip)]
    restart_latency: Option<(f64, f64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A junction workload in the JSON report: weir and its baseline, medians of the
/// same child's alternating runs.
#[derive(Debug, Serialize)]
struct JunctionEntry {
    name: String,
    elements: u64,
    elements_per_sec: f64,
    baseline_elements_per_sec: f64,
    /// What the baseline is: `crossbeam`, or `unstalled` (`detach3`).
    baseline: &'static str,
    /// weir's placement, on `arbiters` arbiters.
    placement: String,
    arbiters: usize,
    /// weir and the baseline in the same process: its peak RSS covers both.
    peak_rss_bytes: Option<u64>,
    checksum_ok: bool,
    runs: Vec<f64>,
    baseline_runs: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The latency measurement in the JSON report.
#[derive(Debug, Serialize)]
struct LatencyEntry {
    name: &'static str,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    pings: usize,
    peak_rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What one fault costs: weir's supervision (`weir_faulty` against
/// `weir_faulty_clean`) and a bare `catch_unwind` plus retry, in the same run.
#[derive(Debug, Serialize)]
struct FaultCostEntry {
    name: &'static str,
    weir_us_per_fault: f64,
    bare_us_per_fault: f64,
    faults: u64,
}

/// One element of the JSON report's list.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Entry {
    Variant(VariantEntry),
    Junction(JunctionEntry),
    Latency(LatencyEntry),
    FaultCost(FaultCostEntry),
}

fn run_child(name: &str, args: &Args) -> Result<String, String> {
    if name == LATENCY {
        return serde_json::to_string(&child_latency(args.pings)).map_err(|e| e.to_string());
    }
    if let Some(junction) = JUNCTIONS.iter().find(|j| j.name == name) {
        let report = child_junction(junction, args.elements, args.runs, args.placement);
        return serde_json::to_string(&report).map_err(|e| e.to_string());
    }
    let Some(&(_, run)) = VARIANTS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("--child: unknown variant `{name}`"));
    };
    serde_json::to_string(&child_variant(name, run, args.elements, args.runs))
        .map_err(|e| e.to_string())
}

fn child_variant(name: &str, run: RunFn, elements: u64, runs: usize) -> ChildReport {
    let expected = workload::reference_checksum(elements);
    let mut report = ChildReport {
        name: name.to_owned(),
        elements,
        runs: Vec::with_capacity(runs),
        checksum_ok: false,
        peak_rss_bytes: None,
        error: None,
        restarts: None,
        dead_lettered: None,
        restart_p50_us: None,
        restart_p99_us: None,
    };
    let mut restart_samples = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let result = run(std::hint::black_box(elements));
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok(sum) if sum == expected => {
                report.runs.push(if secs > 0.0 {
                    elements as f64 / secs
                } else {
                    0.0
                });
                if name == FAULTY
                    && let Some(faulty) = weir_variant::faulty_stats()
                {
                    report.restarts = Some(faulty.restarts);
                    report.dead_lettered = Some(faulty.dead_lettered);
                    restart_samples.extend(faulty.restart_latencies);
                }
            }
            Ok(sum) => {
                report.error = Some(format!("checksum {sum:#x} != reference {expected:#x}"));
                break;
            }
            Err(e) => {
                report.error = Some(e);
                break;
            }
        }
    }
    report.checksum_ok = report.error.is_none() && report.runs.len() == runs;
    report.peak_rss_bytes = stats::peak_rss_bytes();
    if !restart_samples.is_empty() {
        restart_samples.sort();
        let us = |p| stats::percentile(&restart_samples, p).map(|d| d.as_secs_f64() * 1e6);
        report.restart_p50_us = us(0.5);
        report.restart_p99_us = us(0.99);
    }
    report
}

/// Runs `junction`'s baseline and weir in turn, `runs` times each, checking every
/// sink's sum.
fn child_junction(
    junction: &JunctionVariant,
    elements: u64,
    runs: usize,
    placement: JunctionPlacement,
) -> JunctionChildReport {
    let mut report = JunctionChildReport {
        name: junction.name.to_owned(),
        elements,
        placement: placement.name().to_owned(),
        arbiters: junctions::arbiters(),
        runs: Vec::with_capacity(runs),
        baseline_runs: Vec::with_capacity(runs),
        checksum_ok: false,
        peak_rss_bytes: None,
        error: None,
    };
    let want = vec![(junction.expected)(elements); junction.sinks];
    let timed = |run: &dyn Fn(u64) -> Result<Vec<u64>, String>, what: &str| {
        let start = Instant::now();
        let sums = run(std::hint::black_box(elements));
        let secs = start.elapsed().as_secs_f64();
        match sums {
            Ok(sums) if sums == want => Ok(if secs > 0.0 {
                elements as f64 / secs
            } else {
                0.0
            }),
            Ok(sums) => Err(format!("{what}: sums {sums:?} != expected {want:?}")),
            Err(e) => Err(format!("{what}: {e}")),
        }
    };
    for _ in 0..runs {
        let baseline = timed(&|n| (junction.baseline)(n, placement), "baseline");
        let weir = timed(&|n| (junction.weir)(n, placement), "weir");
        match (baseline, weir) {
            (Ok(b), Ok(w)) => {
                report.baseline_runs.push(b);
                report.runs.push(w);
            }
            (Err(e), _) | (_, Err(e)) => {
                report.error = Some(e);
                break;
            }
        }
    }
    report.checksum_ok = report.error.is_none() && report.runs.len() == runs;
    report.peak_rss_bytes = stats::peak_rss_bytes();
    report
}

fn child_latency(pings: usize) -> LatencyChildReport {
    let mut report = LatencyChildReport {
        pings: 0,
        p50_us: None,
        p99_us: None,
        peak_rss_bytes: None,
        error: None,
    };
    match weir_variant::latency(pings) {
        Ok(mut samples) if !samples.is_empty() => {
            samples.sort_unstable();
            let us = |p| stats::percentile(&samples, p).map(|d| d.as_secs_f64() * 1e6);
            report.pings = samples.len();
            report.p50_us = us(0.50);
            report.p99_us = us(0.99);
        }
        Ok(_) => report.error = Some("no latency samples".into()),
        Err(e) => report.error = Some(e),
    }
    report.peak_rss_bytes = stats::peak_rss_bytes();
    report
}

/// Runs `--child name` with `extra` arguments and returns its last JSON line.
fn spawn_child(name: &str, extra: &[String]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the harness: {e}"))?;
    let output = Command::new(exe)
        .args(["--child", name])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("spawning the {name} child: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
    {
        Some(line) if output.status.success() => Ok(line.to_owned()),
        _ => Err(format!("{name} child failed ({})", output.status)),
    }
}

fn measure_variant(name: &str, args: &Args) -> VariantEntry {
    let elements = if name == PER_ELEMENT {
        args.elements.min(args.per_element_elements)
    } else {
        args.elements
    };
    eprintln!(
        "running {name}: {elements} elements x {} runs ...",
        args.runs
    );
    let extra = [
        "--elements".to_owned(),
        elements.to_string(),
        "--runs".to_owned(),
        args.runs.to_string(),
    ];
    let report = spawn_child(name, &extra).and_then(|line| {
        serde_json::from_str::<ChildReport>(&line)
            .map_err(|e| format!("{name} child printed bad JSON: {e}"))
    });
    match report {
        Ok(report) => VariantEntry {
            name: name.to_owned(),
            elements: report.elements,
            elements_per_sec: if report.checksum_ok {
                stats::median(&report.runs).unwrap_or(0.0)
            } else {
                0.0
            },
            peak_rss_bytes: report.peak_rss_bytes,
            checksum_ok: report.checksum_ok,
            runs: report.runs,
            restarts: report.restarts,
            dead_lettered: report.dead_lettered,
            restart_latency: report.restart_p50_us.zip(report.restart_p99_us),
            error: report.error,
        },
        Err(error) => VariantEntry {
            name: name.to_owned(),
            elements,
            elements_per_sec: 0.0,
            peak_rss_bytes: None,
            checksum_ok: false,
            runs: Vec::new(),
            restarts: None,
            dead_lettered: None,
            restart_latency: None,
            error: Some(error),
        },
    }
}

fn measure_junction(junction: &JunctionVariant, args: &Args) -> JunctionEntry {
    let name = junction.name;
    let elements = args.junction_elements / junction.divisor;
    eprintln!(
        "running {name}: {elements} elements x {} runs, weir {} on {} arbiters, and its {} baseline ...",
        args.runs,
        args.placement.name(),
        junctions::arbiters(),
        junction.baseline_name
    );
    let extra = [
        "--elements".to_owned(),
        elements.to_string(),
        "--runs".to_owned(),
        args.runs.to_string(),
        "--placement".to_owned(),
        args.placement.name().to_owned(),
    ];
    let report = spawn_child(name, &extra).and_then(|line| {
        serde_json::from_str::<JunctionChildReport>(&line)
            .map_err(|e| format!("{name} child printed bad JSON: {e}"))
    });
    match report {
        Ok(report) => {
            let median = |runs: &[f64]| {
                if report.checksum_ok {
                    stats::median(runs).unwrap_or(0.0)
                } else {
                    0.0
                }
            };
            JunctionEntry {
                name: name.to_owned(),
                elements: report.elements,
                elements_per_sec: median(&report.runs),
                baseline_elements_per_sec: median(&report.baseline_runs),
                baseline: junction.baseline_name,
                placement: report.placement,
                arbiters: report.arbiters,
                peak_rss_bytes: report.peak_rss_bytes,
                checksum_ok: report.checksum_ok,
                runs: report.runs,
                baseline_runs: report.baseline_runs,
                error: report.error,
            }
        }
        Err(error) => JunctionEntry {
            name: name.to_owned(),
            elements,
            elements_per_sec: 0.0,
            baseline_elements_per_sec: 0.0,
            baseline: junction.baseline_name,
            placement: args.placement.name().to_owned(),
            arbiters: junctions::arbiters(),
            peak_rss_bytes: None,
            checksum_ok: false,
            runs: Vec::new(),
            baseline_runs: Vec::new(),
            error: Some(error),
        },
    }
}

fn measure_latency(args: &Args) -> LatencyEntry {
    eprintln!("running {LATENCY}: {} pings ...", args.pings);
    let extra = ["--pings".to_owned(), args.pings.to_string()];
    let report = spawn_child(LATENCY, &extra).and_then(|line| {
        serde_json::from_str::<LatencyChildReport>(&line)
            .map_err(|e| format!("latency child printed bad JSON: {e}"))
    });
    let (report, error) = match report {
        Ok(report) => {
            let error = report.error.clone();
            (Some(report), error)
        }
        Err(error) => (None, Some(error)),
    };
    LatencyEntry {
        name: LATENCY,
        p50_us: report.as_ref().and_then(|r| r.p50_us),
        p99_us: report.as_ref().and_then(|r| r.p99_us),
        pings: report.as_ref().map_or(0, |r| r.pings),
        peak_rss_bytes: report.as_ref().and_then(|r| r.peak_rss_bytes),
        error,
    }
}

fn format_rate(per_sec: f64) -> String {
    match per_sec {
        r if r >= 1e9 => format!("{:.2} G/s", r / 1e9),
        r if r >= 1e6 => format!("{:.2} M/s", r / 1e6),
        r if r >= 1e3 => format!("{:.2} k/s", r / 1e3),
        r => format!("{r:.0} /s"),
    }
}

fn ratio(entry: &VariantEntry, base: Option<&VariantEntry>) -> String {
    match base {
        Some(b) if entry.checksum_ok && b.checksum_ok => {
            ratio_of(entry.elements_per_sec, b.elements_per_sec)
        }
        _ => "n/a".into(),
    }
}

/// `value / base`, to three significant digits down to tiny ratios (per-element
/// actix is slow); "n/a" when `base` is not positive.
fn ratio_of(value: f64, base: f64) -> String {
    if base > 0.0 {
        let r = value / base;
        let decimals = (2 - r.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{r:.decimals$}x")
    } else {
        "n/a".into()
    }
}

fn print_junctions(entries: &[JunctionEntry]) {
    if entries.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<18} {:>10} {:>14} {:>14} {:>10} {:>12} {:>16} {:>12} {:>9}",
        "junction",
        "elements",
        "weir median",
        "baseline",
        "which",
        "vs baseline",
        "weir placement",
        "peak RSS MiB",
        "checksum"
    );
    for j in entries {
        let rate = |r: f64| {
            if j.checksum_ok {
                format_rate(r)
            } else {
                "-".into()
            }
        };
        let rss = j.peak_rss_bytes.map_or_else(
            || "?".into(),
            |b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)),
        );
        println!(
            "{:<18} {:>10} {:>14} {:>14} {:>10} {:>12} {:>16} {:>12} {:>9}",
            j.name,
            j.elements,
            rate(j.elements_per_sec),
            rate(j.baseline_elements_per_sec),
            j.baseline,
            if j.checksum_ok {
                ratio_of(j.elements_per_sec, j.baseline_elements_per_sec)
            } else {
                "n/a".into()
            },
            format!("{} x{}", j.placement, j.arbiters),
            rss,
            if j.checksum_ok { "ok" } else { "FAILED" },
        );
    }
    for j in entries {
        if let Some(error) = &j.error {
            println!("  {} failed: {error}", j.name);
        }
    }
}

fn print_table(variants: &[VariantEntry], latency: Option<&LatencyEntry>) {
    let find = |name: &str| variants.iter().find(|v| v.name == name && v.checksum_ok);
    let (crossbeam, per_element) = (find("crossbeam_batched"), find(PER_ELEMENT));
    println!(
        "{:<18} {:>10} {:>14} {:>13} {:>14} {:>12} {:>9}",
        "variant",
        "elements",
        "elem/s median",
        "vs crossbeam",
        "vs actix/elem",
        "peak RSS MiB",
        "checksum"
    );
    for v in variants {
        let rss = v.peak_rss_bytes.map_or_else(
            || "?".into(),
            |b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)),
        );
        println!(
            "{:<18} {:>10} {:>14} {:>13} {:>14} {:>12} {:>9}",
            v.name,
            v.elements,
            if v.checksum_ok {
                format_rate(v.elements_per_sec)
            } else {
                "-".into()
            },
            ratio(v, crossbeam),
            ratio(v, per_element),
            rss,
            if v.checksum_ok { "ok" } else { "FAILED" },
        );
    }
    for v in variants {
        if let Some(error) = &v.error {
            println!("  {} failed: {error}", v.name);
        }
    }
    print_fusion_targets(variants);
    if let Some(l) = latency {
        match (&l.error, l.p50_us, l.p99_us) {
            (None, Some(p50), Some(p99)) => {
                println!(
                    "latency (weir, {} pings): p50 {p50:.1} us, p99 {p99:.1} us",
                    l.pings
                );
            }
            (error, _, _) => println!(
                "latency failed: {}",
                error.as_deref().unwrap_or("no percentiles")
            ),
        }
    }
}

/// The cost per fault, when both `weir_faulty` and `weir_faulty_clean` ran: the
/// time the faults added to weir's run over their count, beside the bare loop's
/// (measured here, in the parent, on the same elements).
fn fault_cost(variants: &[VariantEntry], args: &Args) -> Option<FaultCostEntry> {
    let find = |name: &str| variants.iter().find(|v| v.name == name && v.checksum_ok);
    let (faulty, clean) = (find(FAULTY)?, find("weir_faulty_clean")?);
    let faults = faulty.elements / weir_variant::FAULT_EVERY;
    let seconds = |v: &VariantEntry| v.elements as f64 / v.elements_per_sec;
    let weir_us = (seconds(faulty) - seconds(clean)) * 1e6 / faults.max(1) as f64;
    let bare_us =
        baselines::bare_fault::us_per_fault(faulty.elements, weir_variant::FAULT_EVERY, args.runs);
    Some(FaultCostEntry {
        name: "fault_cost",
        weir_us_per_fault: weir_us,
        bare_us_per_fault: bare_us,
        faults,
    })
}

/// The fusion targets (issue 18): each ratio of two variants of this run against
/// its target, met or missed. Rows whose variants did not both run are left out.
fn print_fusion_targets(variants: &[VariantEntry]) {
    const TARGETS: &[(&str, &str, f64)] = &[
        ("weir", "fused", 0.5),
        ("weir_unfused", "crossbeam_batched", 1.0),
        ("weir", "actix_batched", 1.5),
        ("weir_supervised", "weir", 0.97),
    ];
    let find = |name: &str| variants.iter().find(|v| v.name == name && v.checksum_ok);
    let mut header = false;
    for &(a, b, target) in TARGETS {
        let (Some(va), Some(vb)) = (find(a), find(b)) else {
            continue;
        };
        if !std::mem::replace(&mut header, true) {
            println!("fusion targets:");
        }
        let r = va.elements_per_sec / vb.elements_per_sec;
        let verdict = if r >= target { "met" } else { "MISSED" };
        println!("  {a} vs {b}: {r:.3}x (target >= {target}x) {verdict}");
    }
}

fn write_report(path: &PathBuf, entries: &[Entry]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(entries).map_err(|e| e.to_string())?;
    std::fs::write(path, json + "\n").map_err(|e| format!("writing {}: {e}", path.display()))
}

fn main() -> ExitCode {
    // --help prints the usage (exit 0), a bad argument clap's error (exit 2).
    let args = Args::from(Cli::parse());
    if let Some(name) = &args.child {
        return match run_child(name, &args) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("compare child: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let variants: Vec<VariantEntry> = VARIANTS
        .iter()
        .filter(|(name, _)| args.variants.iter().any(|v| v == name))
        .map(|(name, _)| measure_variant(name, &args))
        .collect();
    let junction_entries: Vec<JunctionEntry> = JUNCTIONS
        .iter()
        .filter(|j| args.variants.iter().any(|v| v == j.name))
        .map(|j| measure_junction(j, &args))
        .collect();
    let latency = args
        .variants
        .iter()
        .any(|v| v == LATENCY)
        .then(|| measure_latency(&args));

    println!();
    if !variants.is_empty() || latency.is_some() {
        print_table(&variants, latency.as_ref());
    }
    let failed = variants.iter().any(|v| !v.checksum_ok)
        || junction_entries.iter().any(|j| !j.checksum_ok)
        || latency
            .as_ref()
            .is_some_and(|l| l.error.is_some() || l.p50_us.is_none());

    let restart = variants
        .iter()
        .find(|v| v.name == FAULTY)
        .and_then(|v| v.restart_latency)
        .map(|(p50, p99)| LatencyEntry {
            name: "restart",
            p50_us: Some(p50),
            p99_us: Some(p99),
            pings: 0,
            peak_rss_bytes: None,
            error: None,
        });
    if let Some(r) = &restart {
        let faulty = variants.iter().find(|v| v.name == FAULTY);
        println!(
            "restart (weir_faulty: {} restarts, {} dead-lettered in the last run): p50 {:.1} us, p99 {:.1} us",
            faulty.and_then(|v| v.restarts).unwrap_or(0),
            faulty.and_then(|v| v.dead_lettered).unwrap_or(0),
            r.p50_us.unwrap_or(f64::NAN),
            r.p99_us.unwrap_or(f64::NAN)
        );
    }
    let fault_cost = fault_cost(&variants, &args);
    if let Some(f) = &fault_cost {
        println!(
            "fault_cost ({} faults): weir {:.2} us per fault, bare catch_unwind + retry {:.2} us: {:.2}x (target <= 1.5x) {}",
            f.faults,
            f.weir_us_per_fault,
            f.bare_us_per_fault,
            f.weir_us_per_fault / f.bare_us_per_fault,
            if f.weir_us_per_fault <= 1.5 * f.bare_us_per_fault {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    print_junctions(&junction_entries);
    let mut entries: Vec<Entry> = variants.into_iter().map(Entry::Variant).collect();
    entries.extend(junction_entries.into_iter().map(Entry::Junction));
    entries.extend(latency.map(Entry::Latency));
    entries.extend(restart.map(Entry::Latency));
    entries.extend(fault_cost.map(Entry::FaultCost));
    let written = write_report(&args.out, &entries);
    match &written {
        Ok(()) => {
            let shown = std::fs::canonicalize(&args.out).unwrap_or_else(|_| args.out.clone());
            println!("report written to {}", shown.display());
        }
        Err(e) => eprintln!("compare: {e}"),
    }
    if let Some(rss) = stats::peak_rss_bytes() {
        println!(
            "harness parent peak RSS: {:.1} MiB",
            rss as f64 / (1024.0 * 1024.0)
        );
    }
    if failed || written.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| (*s).to_owned())).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.elements, 10_000_000);
        assert_eq!(args.runs, 5);
        assert_eq!(args.pings, 100_000);
        assert_eq!(args.per_element_elements, 200_000);
        assert_eq!(args.junction_elements, JUNCTION_ELEMENTS);
        assert_eq!(args.placement, JunctionPlacement::Together);
        assert_eq!(args.variants.len(), VARIANTS.len() + JUNCTIONS.len() + 1);
        assert!(args.out.ends_with("target/compare.json"));
    }

    #[test]
    fn flags_and_inline_values() {
        let args = parse(&[
            "--elements",
            "1_000",
            "--runs=3",
            "--variants",
            "weir,fused",
            "--out",
            "/tmp/x.json",
        ])
        .unwrap();
        assert_eq!(args.elements, 1000);
        assert_eq!(args.runs, 3);
        assert_eq!(args.variants, ["fused", "weir"]);
        assert_eq!(args.out, PathBuf::from("/tmp/x.json"));
        let args = parse(&[
            "--variants=merge4,latency,broadcast4",
            "--junction-elements",
            "4_000",
            "--placement=spread",
        ])
        .unwrap();
        assert_eq!(args.variants, ["broadcast4", "merge4", "latency"]);
        assert_eq!(args.junction_elements, 4000);
        assert_eq!(args.placement, JunctionPlacement::Spread);
    }

    #[test]
    fn bad_flags_are_reported() {
        assert!(
            parse(&["--bogus"])
                .unwrap_err()
                .contains("unexpected argument '--bogus'")
        );
        assert!(
            parse(&["--elements"])
                .unwrap_err()
                .contains("a value is required for '--elements <N>'")
        );
        let err = parse_args(["--runs".to_owned(), "x".to_owned()]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let help = parse_args(["--help".to_owned()]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
        assert!(
            help.to_string().contains("--junction-elements <N>"),
            "{help}"
        );
        assert!(!help.to_string().contains("--child"), "{help}");
        for name in all_names() {
            assert!(help.to_string().contains(&name), "{name} missing in {help}");
        }
        assert!(parse(&["--elements", "ten"]).is_err());
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(
            parse(&["--variants", "fused,nope"])
                .unwrap_err()
                .contains("nope")
        );
        assert!(parse(&["--placement", "everywhere"]).is_err());
    }

    #[test]
    fn child_junction_checks_every_sink() {
        for j in JUNCTIONS {
            let report = child_junction(j, 10_000, 2, JunctionPlacement::Together);
            assert!(report.checksum_ok, "{}: {:?}", j.name, report.error);
            assert_eq!((report.runs.len(), report.baseline_runs.len()), (2, 2));
        }
        let wrong = JunctionVariant {
            name: "wrong",
            weir: |n, _| Ok(vec![junctions::expected_sum(n) ^ 1]),
            baseline: |n, _| Ok(vec![junctions::expected_sum(n)]),
            baseline_name: CROSSBEAM,
            sinks: 1,
            divisor: 1,
            expected: junctions::expected_sum,
        };
        let report = child_junction(&wrong, 10, 2, JunctionPlacement::Together);
        assert!(!report.checksum_ok);
        assert!(report.error.unwrap().starts_with("weir: sums"));
    }

    #[test]
    fn detach3_compares_the_stalled_graph_with_the_unstalled_one() {
        let args = parse(&["--variants=detach3,broadcast4"]).unwrap();
        assert_eq!(args.variants, ["broadcast4", "detach3"]);
        let j = JUNCTIONS.iter().find(|j| j.name == "detach3").unwrap();
        assert_eq!((j.baseline_name, j.sinks), ("unstalled", 2));
        // Enough elements that the stalled branch is detached: its counts are
        // checked in every run (delivered + dropped = n).
        let n = 4 * (detach::MAX_LAG + detach::STALLED_CAPACITY + detach::EGRESS_BUFFER) as u64;
        for placement in [JunctionPlacement::Together, JunctionPlacement::Spread] {
            let report = child_junction(j, n, 2, placement);
            assert!(report.checksum_ok, "{placement:?}: {:?}", report.error);
            let rates: Vec<f64> = report
                .runs
                .iter()
                .chain(&report.baseline_runs)
                .copied()
                .collect();
            assert!(
                rates.len() == 4 && rates.iter().all(|r| *r > 0.0),
                "{rates:?}"
            );
        }
    }

    #[test]
    fn child_variant_reports_runs_and_checksum() {
        let report = child_variant("fused", baselines::fused::run, 10_000, 2);
        assert!(report.checksum_ok);
        assert_eq!(report.runs.len(), 2);
        let failing = child_variant("broken", |_| Err("boom".into()), 10, 2);
        assert!(!failing.checksum_ok);
        assert_eq!(failing.error.as_deref(), Some("boom"));
        let wrong = child_variant("wrong", |n| Ok(workload::reference_checksum(n) ^ 1), 10, 2);
        assert!(!wrong.checksum_ok);
        assert!(wrong.runs.is_empty());
    }

    #[test]
    fn rates_and_ratios_format() {
        assert_eq!(format_rate(2.5e9), "2.50 G/s");
        assert_eq!(format_rate(1.5e6), "1.50 M/s");
        assert_eq!(format_rate(999.0), "999 /s");
        let entry = |eps| VariantEntry {
            name: "x".into(),
            elements: 1,
            elements_per_sec: eps,
            peak_rss_bytes: None,
            checksum_ok: true,
            runs: Vec::new(),
            restarts: None,
            dead_lettered: None,
            restart_latency: None,
            error: None,
        };
        assert_eq!(ratio(&entry(1.0), Some(&entry(1.0))), "1.00x");
        assert_eq!(ratio(&entry(1234.0), Some(&entry(1.0))), "1234x");
        assert_eq!(ratio(&entry(1.0), Some(&entry(500.0))), "0.00200x");
        assert_eq!(ratio(&entry(1.0), None), "n/a");
        assert_eq!(ratio_of(0.75, 1.0), "0.750x");
        assert_eq!(ratio_of(1.0, 0.0), "n/a");
    }
}
