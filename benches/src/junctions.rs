//! The junction workloads of the comparison harness, each on weir and on a
//! hand-written crossbeam-thread baseline.
//!
//! * `broadcast4`: one source of the `u64` values `0..n`, broadcast to four sinks
//!   that each sum what they get. Throughput counts source elements.
//! * `merge4`: four sources of about `n / 4` values each (together `0..n`), merged
//!   into one sink that sums them. `merge4_batches` is the same graph with batch
//!   sources (`Pipeline::from_batches`) that make batches of [`BATCH`] values as
//!   the baseline's producers do.
//!
//! Every weir edge holds [`EDGE_CAPACITY`] elements, as much as a baseline channel
//! holds per producer.
//!
//! Every run returns its sums, checked by the caller against [`expected_sum`]:
//! each broadcast branch and the merge sink must see the sum of `0..n`.

use crossbeam_channel::{Receiver, Sender, bounded};
use weir::OutputReceiver;
use weir::prelude::*;

use crate::workload::{BATCH, sum_step};

/// Capacity, in batches of [`BATCH`], of each baseline channel per producer: the
/// same as [`crate::baselines::crossbeam_batched`] uses between two threads.
pub const CHANNEL_BATCHES: usize = 4;

/// Elements each weir edge holds in these workloads: what a baseline channel
/// holds per producer ([`CHANNEL_BATCHES`] batches of [`BATCH`]), so that both
/// sides buffer as much (weir's default, 1 024, is one batch: every batch would
/// wait for the credit of the one before).
pub const EDGE_CAPACITY: usize = CHANNEL_BATCHES * BATCH;

/// Branches of `broadcast4`, inputs of `merge4`.
pub const FAN: usize = 4;

/// Where the weir variants put their stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JunctionPlacement {
    /// Every stage on one arbiter (weir's default placement).
    #[default]
    Together,
    /// Stages over every arbiter in turn ([`Placement::Spread`]).
    Spread,
}

impl JunctionPlacement {
    /// The command-line name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            JunctionPlacement::Together => "together",
            JunctionPlacement::Spread => "spread",
        }
    }

    /// Parses a command-line name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "together" => Some(JunctionPlacement::Together),
            "spread" => Some(JunctionPlacement::Spread),
            _ => None,
        }
    }

    fn placement(self) -> Placement {
        match self {
            JunctionPlacement::Together => Placement::Together,
            JunctionPlacement::Spread => Placement::Spread,
        }
    }
}

/// Arbiters of the weir runtime: one per available core.
#[must_use]
pub fn arbiters() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Wrapping sum of `0..n`: what every broadcast branch and the merge sink sum to.
#[must_use]
pub fn expected_sum(n: u64) -> u64 {
    // n * (n - 1) / 2, with the halving done before the wrapping multiply.
    if n.is_multiple_of(2) {
        (n / 2).wrapping_mul(n.wrapping_sub(1))
    } else {
        n.wrapping_mul((n - 1) / 2)
    }
}

/// The range merge input `k` of [`FAN`] emits: `0..n` cut into four consecutive
/// parts, the last one taking the remainder.
#[must_use]
pub fn merge_part(n: u64, k: usize) -> std::ops::Range<u64> {
    let part = n / FAN as u64;
    let start = part * k as u64;
    let end = if k + 1 == FAN { n } else { start + part };
    start..end
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the graph, checks conservation, and collects the sinks' sums.
fn run_graph(g: Graph, rt: &Runtime, sums: Vec<OutputReceiver<u64>>) -> Result<Vec<u64>, String> {
    let done = g.run(rt).map_err(err)?.wait().map_err(err)?;
    done.report.check_conservation().map_err(err)?;
    sums.into_iter()
        .map(|rx| futures::executor::block_on(rx).ok_or_else(|| "a sink gave no sum".to_owned()))
        .collect()
}

/// `broadcast4` on weir: `0..n` → broadcast to four summing sinks. Returns each
/// branch's sum.
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete.
pub fn broadcast4_weir(n: u64, placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    let rt = Runtime::builder()
        .arbiters(arbiters())
        .build()
        .map_err(err)?;
    let mut g = Graph::new();
    g.placement(placement.placement());
    g.default_capacity(EDGE_CAPACITY);
    let source = g.source(Pipeline::from_iter(0..n));
    let branches: [Outlet<u64>; FAN] = g.broadcast(source, Broadcast::new(FAN));
    let sums = branches
        .into_iter()
        .map(|b| g.sink(b, |f| f.fold(0_u64, sum_step)))
        .collect();
    run_graph(g, &rt, sums)
}

/// `merge4` on weir: four sources ([`Pipeline::from_iter`] over each of
/// [`merge_part`]) → merge → one summing sink. Returns the sink's sum.
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete.
pub fn merge4_weir(n: u64, placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    merge4_graph(n, placement, Pipeline::from_iter)
}

/// `merge4_batches`: [`merge4_weir`] with batch sources
/// ([`Pipeline::from_batches`]) that make batches of [`BATCH`] as the baseline's
/// producers do (`collect` of a range); each goes downstream whole.
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete.
pub fn merge4_batches_weir(n: u64, placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    merge4_graph(n, placement, |range| {
        Pipeline::from_batches(batches_of(range, BATCH as u64))
    })
}

/// The batches of `size` values that make up `range`, made as they are pulled.
fn batches_of(
    range: std::ops::Range<u64>,
    size: u64,
) -> impl Iterator<Item = Vec<u64>> + Send + 'static {
    let end = range.end;
    range
        .step_by(size.max(1) as usize)
        .map(move |start| (start..end.min(start.saturating_add(size))).collect())
}

fn merge4_graph(
    n: u64,
    placement: JunctionPlacement,
    source: impl Fn(std::ops::Range<u64>) -> Flow<u64>,
) -> Result<Vec<u64>, String> {
    let rt = Runtime::builder()
        .arbiters(arbiters())
        .build()
        .map_err(err)?;
    let mut g = Graph::new();
    g.placement(placement.placement());
    g.default_capacity(EDGE_CAPACITY);
    let sources: Vec<Outlet<u64>> = (0..FAN)
        .map(|k| g.source(source(merge_part(n, k))))
        .collect();
    let merged = g.merge(sources);
    let sum = g.sink(merged, |f| f.fold(0_u64, sum_step));
    run_graph(g, &rt, vec![sum])
}

/// Joins scoped threads, naming the one that panicked.
fn join_all<'s, T>(
    handles: Vec<(String, std::thread::ScopedJoinHandle<'s, T>)>,
) -> Result<Vec<T>, String> {
    handles
        .into_iter()
        .map(|(name, h)| h.join().map_err(|_| format!("{name} panicked")))
        .collect()
}

/// Sends `range` in batches of [`BATCH`] to `tx`.
fn produce(range: std::ops::Range<u64>, tx: &Sender<Vec<u64>>) {
    let mut next = range.start;
    while next < range.end {
        let end = range.end.min(next.saturating_add(BATCH as u64));
        if tx.send((next..end).collect()).is_err() {
            return;
        }
        next = end;
    }
}

/// Sums every batch from `rx`.
fn consume(rx: &Receiver<Vec<u64>>) -> u64 {
    rx.iter().fold(0_u64, |acc, batch| {
        batch.iter().copied().fold(acc, sum_step)
    })
}

/// `broadcast4` on threads: one producer sends each batch of [`BATCH`] to four
/// consumer threads over their own bounded channel ([`CHANNEL_BATCHES`]), a copy per
/// branch (the last branch gets the original). Returns each consumer's sum.
///
/// # Errors
///
/// Fails when a thread cannot be spawned or panics.
pub fn broadcast4_crossbeam(n: u64) -> Result<Vec<u64>, String> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..FAN)
        .map(|_| bounded::<Vec<u64>>(CHANNEL_BATCHES))
        .unzip();
    std::thread::scope(|s| {
        let mut consumers = Vec::with_capacity(FAN);
        for (k, rx) in rxs.into_iter().enumerate() {
            let name = format!("cb-bcast-sink{k}");
            let h = std::thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(s, move || consume(&rx))
                .map_err(|e| format!("spawning {name}: {e}"))?;
            consumers.push((name, h));
        }
        let producer = std::thread::Builder::new()
            .name("cb-bcast-source".into())
            .spawn_scoped(s, move || {
                let mut next = 0_u64;
                while next < n {
                    let end = n.min(next.saturating_add(BATCH as u64));
                    let batch: Vec<u64> = (next..end).collect();
                    let (last, copies) = txs.split_last().expect("FAN > 0");
                    for tx in copies {
                        if tx.send(batch.clone()).is_err() {
                            return;
                        }
                    }
                    if last.send(batch).is_err() {
                        return;
                    }
                    next = end;
                }
            })
            .map_err(|e| format!("spawning cb-bcast-source: {e}"))?;
        let sums = join_all(consumers)?;
        join_all(vec![("cb-bcast-source".to_owned(), producer)])?;
        Ok(sums)
    })
}

/// `merge4` on threads: four producers of [`merge_part`] send batches of [`BATCH`]
/// into one bounded channel (room for [`CHANNEL_BATCHES`] batches per producer),
/// one consumer sums. Returns the consumer's sum.
///
/// # Errors
///
/// Fails when a thread cannot be spawned or panics.
pub fn merge4_crossbeam(n: u64) -> Result<Vec<u64>, String> {
    let (tx, rx) = bounded::<Vec<u64>>(CHANNEL_BATCHES * FAN);
    std::thread::scope(|s| {
        let consumer = std::thread::Builder::new()
            .name("cb-merge-sink".into())
            .spawn_scoped(s, move || consume(&rx))
            .map_err(|e| format!("spawning cb-merge-sink: {e}"))?;
        let mut producers = Vec::with_capacity(FAN);
        for k in 0..FAN {
            let name = format!("cb-merge-source{k}");
            let tx = tx.clone();
            let h = std::thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(s, move || produce(merge_part(n, k), &tx))
                .map_err(|e| format!("spawning {name}: {e}"))?;
            producers.push((name, h));
        }
        drop(tx);
        join_all(producers)?;
        join_all(vec![("cb-merge-sink".to_owned(), consumer)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_cover_the_range_in_order() {
        for (range, size) in [(0..0, 4), (0..10, 4), (3..11, 4), (5..6, 1024), (0..8, 8)] {
            let batches: Vec<Vec<u64>> = batches_of(range.clone(), size).collect();
            assert!(
                batches
                    .iter()
                    .all(|b| !b.is_empty() && b.len() as u64 <= size)
            );
            let flat: Vec<u64> = batches.into_iter().flatten().collect();
            assert_eq!(flat, range.collect::<Vec<_>>());
        }
    }

    #[test]
    fn expected_sum_matches_a_loop() {
        for n in [0_u64, 1, 2, 3, 1023, 1024, 10_001] {
            assert_eq!(expected_sum(n), (0..n).fold(0, sum_step), "n={n}");
        }
        for big in [u64::MAX / 2, u64::MAX / 2 + 1, u64::MAX] {
            let exact = u128::from(big) * (u128::from(big) - 1) / 2;
            assert_eq!(expected_sum(big), exact as u64, "n={big}");
        }
    }

    #[test]
    fn merge_parts_cover_the_range() {
        for n in [0_u64, 3, 4, 7, 10_001] {
            let parts: Vec<u64> = (0..FAN).flat_map(|k| merge_part(n, k)).collect();
            assert_eq!(parts, (0..n).collect::<Vec<_>>(), "n={n}");
        }
    }

    #[test]
    fn variants_sum_correctly() {
        for n in [0_u64, 1, BATCH as u64 + 3, 20_000] {
            let want = expected_sum(n);
            assert_eq!(broadcast4_crossbeam(n), Ok(vec![want; FAN]), "n={n}");
            assert_eq!(merge4_crossbeam(n), Ok(vec![want]), "n={n}");
            for p in [JunctionPlacement::Together, JunctionPlacement::Spread] {
                assert_eq!(broadcast4_weir(n, p), Ok(vec![want; FAN]), "n={n} {p:?}");
                assert_eq!(merge4_weir(n, p), Ok(vec![want]), "n={n} {p:?}");
            }
        }
    }
}
