//! The `pool` workload of the comparison harness: a CPU-heavy map (about 1 µs of
//! work per element, [`cpu_work`]) spread over replicas, on weir
//! ([`Graph::pool_map`](weir::Graph::pool_map)) and on a hand-written crossbeam
//! thread pool.
//!
//! `0..n` → `replicas` workers each applying [`cpu_work`] (which returns its input)
//! → one sink summing. The sum is that of `0..n`, checked by the caller.

use crossbeam_channel::bounded;
use weir::prelude::*;

use crate::junctions::{CHANNEL_BATCHES, EDGE_CAPACITY, JunctionPlacement, arbiters};
use crate::workload::{BATCH, sum_step};

/// Rounds of [`cpu_work`]: a dependent xorshift-multiply chain (which, unlike an
/// affine recurrence, the compiler cannot fold) of about 1 µs.
pub const WORK_ROUNDS: u32 = 500;

/// About 1 µs of CPU work that the compiler cannot skip; returns `x`.
#[inline]
#[must_use]
pub fn cpu_work(x: u64) -> u64 {
    let mut h = x | 1;
    for _ in 0..WORK_ROUNDS {
        h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
    std::hint::black_box(h);
    x
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `pool` on weir with one replica per arbiter (one arbiter per core).
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete.
pub fn pool_weir(n: u64, placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    pool_weir_with(n, placement, arbiters())
}

/// `pool` on weir with a single replica: the scaling reference.
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete.
pub fn pool1_weir(n: u64, placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    pool_weir_with(n, placement, 1)
}

/// `0..n` → [`Graph::pool_map`](weir::Graph::pool_map) of `replicas` replicas of
/// [`cpu_work`] (unordered) → a summing sink.
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete.
pub fn pool_weir_with(
    n: u64,
    placement: JunctionPlacement,
    replicas: usize,
) -> Result<Vec<u64>, String> {
    let rt = Runtime::builder()
        .arbiters(arbiters())
        .build()
        .map_err(err)?;
    let mut g = Graph::new();
    // As much buffered per replica as the baseline's channel holds per worker.
    g.default_capacity(EDGE_CAPACITY);
    if placement == JunctionPlacement::Spread {
        g.placement(Placement::Spread);
    }
    let source = g.source(Pipeline::from_iter(0..n));
    let worked = g.pool_map(source, Pool::new(replicas), || cpu_work);
    let sum = g.sink(worked, |f| f.fold(0_u64, sum_step));
    let done = g.run(&rt).map_err(err)?.wait().map_err(err)?;
    done.report.check_conservation().map_err(err)?;
    let sum = futures::executor::block_on(sum).ok_or("the sink gave no sum")?;
    Ok(vec![sum])
}

/// `pool` on threads with one worker per core.
///
/// # Errors
///
/// Fails when a thread cannot be spawned or panics.
pub fn pool_crossbeam(n: u64) -> Result<Vec<u64>, String> {
    pool_crossbeam_with(n, arbiters())
}

/// `pool` on one worker thread: the scaling reference.
///
/// # Errors
///
/// Fails when a thread cannot be spawned or panics.
pub fn pool1_crossbeam(n: u64) -> Result<Vec<u64>, String> {
    pool_crossbeam_with(n, 1)
}

/// A producer sends batches of [`BATCH`] into one bounded work channel shared by
/// `workers` threads (room for [`CHANNEL_BATCHES`] batches per worker); each worker
/// applies [`cpu_work`] and sends its batch to one collector that sums.
///
/// # Errors
///
/// Fails when a thread cannot be spawned or panics.
pub fn pool_crossbeam_with(n: u64, workers: usize) -> Result<Vec<u64>, String> {
    let (work_tx, work_rx) = bounded::<Vec<u64>>(CHANNEL_BATCHES * workers);
    let (done_tx, done_rx) = bounded::<Vec<u64>>(CHANNEL_BATCHES * workers);
    std::thread::scope(|s| {
        let spawn_err = |name: &str, e: std::io::Error| format!("spawning {name}: {e}");
        let collector = std::thread::Builder::new()
            .name("cb-pool-sink".into())
            .spawn_scoped(s, move || {
                done_rx.iter().fold(0_u64, |acc, batch| {
                    batch.iter().copied().fold(acc, sum_step)
                })
            })
            .map_err(|e| spawn_err("cb-pool-sink", e))?;
        let mut handles = Vec::with_capacity(workers);
        for k in 0..workers {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            let name = format!("cb-pool-worker{k}");
            let h = std::thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(s, move || {
                    for mut batch in rx.iter() {
                        for x in &mut batch {
                            *x = cpu_work(*x);
                        }
                        if tx.send(batch).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| spawn_err(&name, e))?;
            handles.push((name, h));
        }
        drop((work_rx, done_tx));
        let mut next = 0_u64;
        while next < n {
            let end = n.min(next.saturating_add(BATCH as u64));
            if work_tx.send((next..end).collect()).is_err() {
                break;
            }
            next = end;
        }
        drop(work_tx);
        for (name, h) in handles {
            h.join().map_err(|_| format!("{name} panicked"))?;
        }
        collector
            .join()
            .map(|sum| vec![sum])
            .map_err(|_| "cb-pool-sink panicked".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::junctions::expected_sum;

    #[test]
    fn pool_variants_sum_correctly() {
        for n in [0_u64, 1, BATCH as u64 + 3, 5_000] {
            let want = Ok(vec![expected_sum(n)]);
            assert_eq!(pool_crossbeam(n), want, "n={n}");
            assert_eq!(pool1_crossbeam(n), want, "n={n}");
            for p in [JunctionPlacement::Together, JunctionPlacement::Spread] {
                assert_eq!(pool_weir(n, p), want, "n={n} {p:?}");
                assert_eq!(pool1_weir(n, p), want, "n={n} {p:?}");
            }
        }
    }
}
