//! A moving average over a stream of readings with a sliding count window
//! (`count_windows(N, 1)`): every reading, the mean of the last `N`.
//!
//! ```text
//!  readings ──► count_windows(N, 1) ──► mean ──► check
//! ```
//!
//! The program computes the same averages with a plain loop and checks that the
//! pipeline's match, in order, and that every reading is accounted for.
//!
//! Run it with `cargo run -p weir-examples --bin moving_average`.

use weir::prelude::*;
use weir_examples::outln;

/// Readings in the stream.
const READINGS: u64 = 10_000;
/// Readings per average.
const N: usize = 5;

/// A noisy saw-tooth sensor reading.
fn reading(i: u64) -> f64 {
    (i % 50) as f64 + ((i * 7919) % 13) as f64 / 10.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().arbiters(1).build()?;
    let done = Pipeline::from_iter((0..READINGS).map(reading))
        .count_windows(N, 1)
        .name("last5")
        .map(|w| w.iter().sum::<f64>() / w.len() as f64)
        .name("mean")
        .collect()
        .run(&rt)?
        .wait()?;
    done.report.check_conservation()?;

    let readings: Vec<f64> = (0..READINGS).map(reading).collect();
    let expected: Vec<f64> = readings
        .windows(N)
        .map(|w| w.iter().sum::<f64>() / N as f64)
        .collect();
    outln!(
        "{} readings, {} moving averages over {N}; first: {:.2}, {:.2}, {:.2}",
        READINGS,
        done.output.len(),
        done.output[0],
        done.output[1],
        done.output[2]
    );
    assert_eq!(done.output.len(), expected.len());
    for (got, want) in done.output.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-9, "{got} != {want}");
    }
    let stage = done.report.stage("last5").expect("the window stage");
    assert_eq!(stage.completed, READINGS, "every reading left the window");
    outln!(
        "window stage: {} in, {} windows out, {} completed",
        stage.input,
        stage.produced,
        stage.completed
    );
    outln!("all checks passed");
    Ok(())
}
