//! Checkpoint figures of a large keyed state: with 10⁶ keys in one keyed fold, the
//! longest pause a stage makes for a snapshot (over several checkpoints: median,
//! p99 and max), the checkpoint's size per key, and the time the restore takes.
//!
//! ```text
//! cargo run --release -p weir-benches --bin checkpoint_state -- [CHECKPOINTS]
//! ```
//!
//! Prints one JSON object.

use std::process::ExitCode;

fn main() -> ExitCode {
    let checkpoints = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    match weir_benches::checkpoint::state_figures(checkpoints) {
        Ok(figures) => {
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
            let json = serde_json::json!({
                "keys": figures.keys,
                "checkpoints": pauses.len(),
                "snapshot_pause_us": { "median": at(0.5), "p99": at(0.99), "max": pauses.last() },
                "bytes": figures.bytes,
                "bytes_per_key": figures.bytes_per_key,
                "restore_us": figures.restore_us,
            });
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("checkpoint_state: {e}");
            ExitCode::FAILURE
        }
    }
}
