//! Barrier-synchronised streams (weir's `Barrier`): three sensors sampled at
//! different speeds, aligned so that every sensor's k-th reading is released
//! together; then a sensor that stalls, and the barrier's timeout naming it.
//!
//! ```text
//!  temperature (1 ms) ─┐             ┌─► tag ─┐
//!  pressure    (3 ms) ─┼─► barrier ──┼─► tag ─┼─► merge ──► rows by step
//!  humidity    (5 ms) ─┘  (timeout)  └─► tag ─┘
//! ```
//!
//! The fast sensors wait at the barrier for the slowest: each step leaves when
//! all three readings are there, so the rows come out complete and at the
//! slowest sensor's pace. The barrier holds nothing itself: waiting readings stay
//! in its bounded input queues.
//!
//! Run it with `cargo run --release -p weir-examples --bin barrier_sync`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir_examples::outln;

use futures::StreamExt as _;
use weir::prelude::*;

const STEPS: u32 = 40;
const SENSORS: [(&str, u64); 3] = [("temperature", 1), ("pressure", 3), ("humidity", 5)];

/// `n` readings of sensor `s`, one every `every_ms`; `n: None` never ends and
/// stops sending after 3 readings (a stalled sensor).
fn sensor(s: usize, every_ms: u64, n: Option<u32>) -> Flow<(usize, u32, Instant)> {
    let readings = futures::stream::iter(0..n.unwrap_or(3)).then(move |k| async move {
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
        (s, k, Instant::now())
    });
    match n {
        Some(_) => Pipeline::from_stream(readings),
        None => Pipeline::from_stream(readings.chain(futures::stream::pending())),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().arbiters(1).build()?;
    let names = SENSORS.map(|(name, _)| name);

    // 1. Aligned streams.
    let barrier = Barrier::new()
        .timeout(Duration::from_secs(2))
        .input_names(names);
    let progress = barrier.stats();
    let mut g = Graph::new();
    g.named("barrier_sync");
    let inputs = [0, 1, 2].map(|s| g.source(sensor(s, SENSORS[s].1, Some(STEPS))));
    let aligned = g.barrier(inputs, barrier);
    // Times since `epoch`: the fold's accumulator is checkpointable state, and a
    // `Duration` is a serde type where an `Instant` is not.
    let epoch = Instant::now();
    let tagged = aligned.map(|o| {
        g.flow(o, |f| {
            f.map(move |(s, k, sent)| (s, k, sent.duration_since(epoch), epoch.elapsed()))
        })
    });
    let all = g.merge(tagged);
    let rows = g.sink(all, |f| {
        f.fold(
            BTreeMap::<u32, Vec<(usize, Duration, Duration)>>::new(),
            |mut rows, (s, k, sent, released)| {
                rows.entry(k).or_default().push((s, sent, released));
                rows
            },
        )
    });
    let done = g.run(&rt)?.wait()?;
    done.report.check_conservation()?;
    let rows = futures::executor::block_on(rows).ok_or("no rows")?;

    outln!(
        "aligned {} steps of {} sensors ({})",
        progress.steps(),
        names.len(),
        names.join(", ")
    );
    outln!(
        "  {:>4}  {:>24}  {:>14}",
        "step",
        "readings sent at (ms)",
        "released (ms)"
    );
    let t0 = rows[&0].iter().map(|r| r.1).min().ok_or("empty")?;
    let ms = |t: Duration| t.saturating_sub(t0).as_secs_f64() * 1_000.0;
    let mut aligned_ok = true;
    for (k, row) in &rows {
        let mut sent = [0.0; 3];
        for &(s, at, _) in row {
            sent[s] = ms(at);
        }
        let last_sent = row.iter().map(|r| r.1).max().ok_or("empty row")?;
        let first_release = row.iter().map(|r| r.2).min().ok_or("empty row")?;
        // Nobody's k-th reading was released before the last one was sent.
        aligned_ok &= row.len() == 3 && first_release >= last_sent;
        if *k < 5 || *k == STEPS - 1 {
            outln!(
                "  {k:>4}  {:>7.1} {:>7.1} {:>7.1}  {:>14.1}",
                sent[0],
                sent[1],
                sent[2],
                ms(first_release)
            );
        } else if *k == 5 {
            outln!("  {:>4}", "…");
        }
    }
    outln!("  every row complete and released after its last reading: {aligned_ok}");

    // 2. A sensor that stalls: the barrier times out and names it.
    let mut g = Graph::new();
    let inputs = [
        g.source(sensor(0, 1, Some(STEPS))),
        g.source(sensor(1, 3, Some(STEPS))),
        g.source(sensor(2, 5, None)),
    ];
    let outs = g.barrier(
        inputs,
        Barrier::new()
            .timeout(Duration::from_millis(100))
            .input_names(names),
    );
    for o in outs {
        g.sink(o, |f| f.for_each(drop));
    }
    let started = Instant::now();
    let err = g
        .run(&rt)?
        .wait()
        .err()
        .ok_or("the stalled run should fail")?;
    outln!(
        "stalled humidity sensor, timeout 100 ms, failed after {:?}:",
        started.elapsed()
    );
    outln!("  {err}");
    err.report().ok_or("no report")?.check_conservation()?;

    let names_late = err.to_string().contains("input 2 (\"humidity\") late");
    if !(aligned_ok
        && rows.len() == STEPS as usize
        && progress.steps() == u64::from(STEPS)
        && names_late)
    {
        return Err("a check failed".into());
    }
    outln!("all checks passed");
    Ok(())
}
