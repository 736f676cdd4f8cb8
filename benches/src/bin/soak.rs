//! The soak run (`weir_benches::soak`): pipelines under chaos for `--seconds`,
//! resident memory and open file descriptors sampled every second; exits 1 when
//! either grew by more than `--max-growth-percent` after the warm-up, printing
//! every sample and the totals as JSON.
//!
//! ```text
//! cargo run --release -p weir-benches --bin soak -- --seconds 600
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use weir_benches::soak::{self, SoakConfig};

/// Pipelines under chaos (panics, restarts, hub churn, reconfiguration,
/// checkpoints) while memory and descriptors are sampled.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// How long to run, warm-up included.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Seconds not judged at the start (default: a quarter of the run, at most 60).
    #[arg(long)]
    warmup: Option<u64>,
    /// The largest growth allowed after the warm-up, in percent.
    #[arg(long, default_value_t = 5.0)]
    max_growth_percent: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = SoakConfig::new(Duration::from_secs(args.seconds));
    if let Some(warmup) = args.warmup {
        config.warmup = Duration::from_secs(warmup);
    }
    config.max_growth = args.max_growth_percent / 100.0;
    let report = match soak::run(&config) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::to_string_pretty(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("soak: the report as JSON: {e}"),
    }
    match report.check(&config) {
        Ok(()) => {
            eprintln!(
                "soak: {} s, resident memory {:+.1} %, descriptors {:+.1} % after the warm-up: ok",
                args.seconds,
                report.rss_growth * 100.0,
                report.fd_growth * 100.0
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}
