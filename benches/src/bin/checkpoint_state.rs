//! Checkpoint figures of a large state: with 10⁶ keys in the state of one
//! operator (keyed `scan`, keyed `aggregate`, an event-time tumbling window with
//! 10⁶ open (key, window) entries, an interval join with 10⁶ buffered rows), the
//! longest pause a stage makes for a snapshot (over several checkpoints: median,
//! p99 and max), the checkpoint's size per key, and the time the restore takes.
//!
//! ```text
//! cargo run --release -p weir-benches --bin checkpoint_state -- [--operator NAME] [CHECKPOINTS]
//! ```
//!
//! `NAME` is `scan`, `aggregate`, `window`, `join` or `all` (the default);
//! `CHECKPOINTS` defaults to 20. Prints one JSON object per operator, one a line.

use std::process::ExitCode;

use weir_benches::checkpoint::{StateFigures, StateOp, state_figures};

const USAGE: &str =
    "usage: checkpoint_state [--operator scan|aggregate|window|join|all] [CHECKPOINTS]

With 10^6 keys in one operator's state: the longest snapshot pause of a stage over
CHECKPOINTS checkpoints (median, p99, max; default 20), bytes per key, restore time.
One JSON object per operator, one a line.";

fn json(figures: &StateFigures) -> serde_json::Value {
    let mut pauses = figures.pauses_us.clone();
    pauses.sort_unstable();
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((pauses.len() as f64 - 1.0) * q).round() as usize;
        pauses.get(i).copied().unwrap_or(0)
    };
    serde_json::json!({
        "operator": figures.operator,
        "keys": figures.keys,
        "checkpoints": pauses.len(),
        "snapshot_pause_us": { "median": at(0.5), "p99": at(0.99), "max": pauses.last() },
        "bytes": figures.bytes,
        "bytes_per_key": figures.bytes_per_key,
        "restore_us": figures.restore_us,
    })
}

fn main() -> ExitCode {
    let mut ops = StateOp::ALL.to_vec();
    let mut checkpoints = 20;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--operator" => match args.next().as_deref() {
                Some("all") => ops = StateOp::ALL.to_vec(),
                Some(name) if StateOp::from_name(name).is_some() => {
                    ops = StateOp::from_name(name).into_iter().collect();
                }
                other => {
                    eprintln!("checkpoint_state: unknown operator {other:?}\n{USAGE}");
                    return ExitCode::FAILURE;
                }
            },
            n => match n.parse() {
                Ok(n) => checkpoints = n,
                Err(_) => {
                    eprintln!("checkpoint_state: unknown argument {n:?}\n{USAGE}");
                    return ExitCode::FAILURE;
                }
            },
        }
    }
    for op in ops {
        match state_figures(op, checkpoints) {
            Ok(figures) => println!("{}", json(&figures)),
            Err(e) => {
                eprintln!("checkpoint_state: {}: {e}", op.name());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
