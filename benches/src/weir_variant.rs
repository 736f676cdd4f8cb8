//! The weir variant of the comparison workload: the same four stages as the
//! baselines, built as a weir pipeline on one arbiter (weir's default placement for
//! a linear chain).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir::prelude::*;

use crate::workload::{keep, map_step, sum_step};

/// Pushes the source values `0..elements` through a weir pipeline running the
/// [`crate::workload`] stages and returns the sink's checksum.
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn run(elements: u64) -> Result<u64, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    let done = Pipeline::from_iter(0..elements)
        .map(|x| map_step(1, x))
        .map(|x| map_step(2, x))
        .map(|x| map_step(3, x))
        .filter(|x| keep(*x))
        .fold(0_u64, sum_step)
        .run(&rt)
        .map_err(|e| e.to_string())?
        .wait()
        .map_err(|e| e.to_string())?;
    done.report
        .check_conservation()
        .map_err(|e| e.to_string())?;
    Ok(done.output)
}

/// Sends `pings` single elements through a weir pipeline of four stages (three maps
/// and a filter that keeps everything, so every ping comes back), one at a time at
/// idle, and returns each one's round-trip latency from ingress to egress.
///
/// The pinging task runs on the pipeline's arbiter, as a service's request handler
/// on the same arbiter would: the measurement is weir's own path (ingress, four
/// stage hops, egress), without a cross-thread wake-up at each end.
///
/// # Errors
///
/// Fails when the pipeline cannot be built, a ping is lost, or the pipeline fails.
pub fn latency(pings: usize) -> Result<Vec<Duration>, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let (runnable, mut egress) = flow
        .map(|x| map_step(1, x))
        .map(|x| map_step(2, x))
        .map(|x| map_step(3, x))
        .filter(|_| true)
        .egress(64);
    let running = runnable.run(&rt).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    let arbiter = rt.arbiter(0).ok_or("runtime has no arbiter")?;
    arbiter.spawn(async move {
        let mut samples = Vec::with_capacity(pings);
        for i in 0..pings as u64 {
            let start = Instant::now();
            if ingress.send(i).await.is_err() {
                break;
            }
            match egress.recv().await {
                Some(_) => samples.push(start.elapsed()),
                None => break,
            }
        }
        drop(ingress);
        let _ = tx.send(samples);
    });
    let samples = rx.recv().map_err(|_| "the pinging task died".to_owned())?;
    running.wait().map_err(|e| e.to_string())?;
    if samples.len() != pings {
        return Err(format!("{} of {pings} pings came back", samples.len()));
    }
    Ok(samples)
}
