//! Threaded baseline: four threads joined by bounded crossbeam channels that
//! carry `Vec<u64>` batches of [`BATCH`] elements.
//!
//! Thread 1 generates and applies map 1, thread 2 map 2, thread 3 map 3 and
//! thread 4 filters and sums. Each channel holds at most [`CHANNEL_BATCHES`]
//! batches, so the pipeline is back-pressured like a bounded stream.

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::workload::{BATCH, keep, map_step, sum_step};

/// Capacity, in batches, of each channel between two threads.
pub const CHANNEL_BATCHES: usize = 4;

/// Runs the workload over `0..n` on four threads and returns the checksum.
///
/// # Errors
///
/// Fails when a stage thread cannot be spawned or panics.
pub fn run(n: u64) -> Result<u64, String> {
    let (tx1, rx1) = bounded::<Vec<u64>>(CHANNEL_BATCHES);
    let (tx2, rx2) = bounded::<Vec<u64>>(CHANNEL_BATCHES);
    let (tx3, rx3) = bounded::<Vec<u64>>(CHANNEL_BATCHES);
    std::thread::scope(|s| {
        let builder = |name: &str| std::thread::Builder::new().name(name.to_owned());
        let spawn_err = |name: &'static str| move |e| format!("spawning {name}: {e}");
        let stages = [
            builder("cb-source-map1")
                .spawn_scoped(s, move || source(n, &tx1))
                .map_err(spawn_err("cb-source-map1"))?,
            builder("cb-map2")
                .spawn_scoped(s, move || map_stage(2, &rx1, &tx2))
                .map_err(spawn_err("cb-map2"))?,
            builder("cb-map3")
                .spawn_scoped(s, move || map_stage(3, &rx2, &tx3))
                .map_err(spawn_err("cb-map3"))?,
        ];
        let sink = builder("cb-filter-sum")
            .spawn_scoped(s, move || sink(&rx3))
            .map_err(spawn_err("cb-filter-sum"))?;
        let checksum = sink.join().map_err(|_| "cb-filter-sum panicked".to_owned());
        for stage in stages {
            stage
                .join()
                .map_err(|_| "a map stage thread panicked".to_owned())?;
        }
        checksum
    })
}

/// Generates `0..n` in batches, applies map 1 and sends the batches on.
fn source(n: u64, tx: &Sender<Vec<u64>>) {
    let mut next = 0u64;
    while next < n {
        let end = n.min(next.saturating_add(BATCH as u64));
        let batch: Vec<u64> = (next..end).map(|x| map_step(1, x)).collect();
        if tx.send(batch).is_err() {
            break;
        }
        next = end;
    }
}

/// Applies map `stage` to every batch from `rx` and forwards it to `tx`.
fn map_stage(stage: u64, rx: &Receiver<Vec<u64>>, tx: &Sender<Vec<u64>>) {
    for mut batch in rx {
        for x in &mut batch {
            *x = map_step(stage, *x);
        }
        if tx.send(batch).is_err() {
            break;
        }
    }
}

/// Filters and sums every batch from `rx`; returns the checksum.
fn sink(rx: &Receiver<Vec<u64>>) -> u64 {
    rx.iter().fold(0u64, |acc, batch| {
        batch
            .iter()
            .copied()
            .filter(|&x| keep(x))
            .fold(acc, sum_step)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::reference_checksum;

    #[test]
    fn matches_reference() {
        for n in [0, 1, BATCH as u64, 10_000] {
            assert_eq!(run(n), Ok(reference_checksum(n)));
        }
    }
}
