//! Fan-out and fan-in: one source broadcast to three branches, joined again.
//!
//! ```text
//!                            ┌─[0] Block ──► double ─┐
//!  readings ──► fanout ──────┼─[1] Block ──► square ─┴─► zip ──► pairs ─┐
//!   (0..N)    (broadcast)    │                                          ├─► merge ──► totals
//!                            └─[2] DropOldest{16} ──► audit ──► tag ────┘    (fold)
//!                                  (slow: 1 ms per element)
//! ```
//!
//! Branches 0 and 1 block: the broadcast waits for them, so they see every reading
//! and the zip pairs the k-th output of one with the k-th of the other. Branch 2 is
//! a slow audit call; its `DropOldest` lag policy keeps at most 16 readings waiting
//! for it beyond its credit and drops the oldest ones, so it never slows the others
//! down. Every dropped reading goes to a dead-letter queue. The report's per-port
//! counts (`report.stages[..].outputs`) say what each branch was given, sent and
//! dropped.
//!
//! Run it with `cargo run --release -p weir-examples --bin fan_out_fan_in`.

use std::time::Duration;
use weir_examples::outln;

use weir::prelude::*;
use weir_examples::{print_ports, stage};

/// Readings sent through the graph.
const N: u64 = 20_000;

/// What reaches the sink: a zipped pair, or a reading the audit branch saw.
#[derive(Clone)]
enum Tagged {
    Pair { double: u64, square: u64 },
    Audited(u64),
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Totals {
    pairs: u64,
    sum_of_doubles: u64,
    sum_of_squares: u64,
    /// The readings the audit branch saw, in the order they arrived.
    audited: Vec<u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().arbiters(1).build()?;
    let dropped_readings = MemoryDlq::new(N as usize);

    let mut g = Graph::new();
    g.named("fan_out_fan_in");
    let readings = g.source(Pipeline::from_iter(0..N).name("readings"));
    let [double, square, audit] = g.broadcast(
        readings,
        Broadcast::new(3)
            .lag(2, LagPolicy::DropOldest { buffer: 16 })
            .dead_letters(dropped_readings.clone()),
    );
    g.name_stage(double, "fanout");

    let double = g.flow(double, |f| f.map(|x| x * 2).name("double"));
    let square = g.flow(square, |f| f.map(|x| x * x).name("square"));
    let pairs = g.zip(double, square);
    g.name_stage(pairs, "zip");
    let pairs = g.flow(pairs, |f| {
        f.map(|(double, square)| Tagged::Pair { double, square })
            .name("pairs")
    });

    let audited = g.flow(audit, |f| {
        // Stands in for a call to a slow audit service. 16 places in its queue: the
        // broadcast's credit for this branch.
        f.map_async(1, |x| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            x
        })
        .name("audit")
        .capacity(16)
        .map(Tagged::Audited)
        .name("tag")
    });

    let merged = g.merge([pairs, audited]);
    g.name_stage(merged, "merge");
    let totals = g.sink(merged, |f| {
        f.fold(Totals::default(), |mut t, tagged| {
            match tagged {
                Tagged::Pair { double, square } => {
                    // The zip paired the k-th double with the k-th square.
                    assert_eq!(square, (double / 2) * (double / 2), "misaligned pair");
                    t.pairs += 1;
                    t.sum_of_doubles += double;
                    t.sum_of_squares += square;
                }
                Tagged::Audited(x) => t.audited.push(x),
            }
            t
        })
        .name("totals")
    });

    let done = g.run(&rt)?.wait()?;
    let totals = futures::executor::block_on(totals).ok_or("the sink gave no result")?;
    let report = &done.report;
    report.check_conservation()?;

    outln!("{report}");
    let fanout = stage(report, "fanout")?;
    outln!("per-branch counts of `fanout` (broadcast):");
    print_ports(fanout);
    outln!(
        "\nzip pairs: {}, sum of doubles {}, sum of squares {}",
        totals.pairs,
        totals.sum_of_doubles,
        totals.sum_of_squares
    );
    // Each branch keeps the input order, minus what its lag policy dropped.
    let audit_in_order = totals.audited.windows(2).all(|w| w[0] < w[1]);
    outln!(
        "audit branch: saw {} of {N} readings (first {:?}, last {:?}), in order: {audit_in_order}",
        totals.audited.len(),
        &totals.audited[..totals.audited.len().min(4)],
        &totals.audited[totals.audited.len().saturating_sub(4)..],
    );
    outln!(
        "  {} dropped for it (the oldest waiting ones), {} dead letters",
        fanout.outputs[2].dropped,
        dropped_readings.len()
    );

    // What the graph computed.
    assert_eq!(totals.pairs, N);
    assert_eq!(totals.sum_of_doubles, (0..N).map(|x| x * 2).sum::<u64>());
    assert_eq!(totals.sum_of_squares, (0..N).map(|x| x * x).sum::<u64>());
    assert!(audit_in_order);

    // What the broadcast's ports say.
    assert_eq!(fanout.input, N);
    assert_eq!(fanout.completed, N);
    for port in &fanout.outputs {
        // Every branch was given every reading; nothing is left behind at the end.
        assert_eq!(port.pushed, N, "port {}", port.port);
        assert_eq!(port.buffered, 0, "port {}", port.port);
        assert_eq!(
            port.emitted + port.dropped,
            port.pushed,
            "port {}",
            port.port
        );
        assert_eq!(port.detached, 0, "port {}", port.port);
    }
    let [blocking_0, blocking_1, lossy] = &fanout.outputs[..] else {
        return Err("the broadcast should have 3 ports".into());
    };
    // Blocking branches lose nothing: they set the pace.
    assert_eq!((blocking_0.dropped, blocking_1.dropped), (0, 0));
    // The slow branch lost readings instead of slowing the others down…
    assert!(lossy.dropped > 0, "the audit branch should have lagged");
    // …got exactly what the port sent…
    assert_eq!(totals.audited.len() as u64, lossy.emitted);
    assert_eq!(stage(report, "audit")?.input, lossy.emitted);
    // …and every drop became a dead letter, naming the branch.
    let letters = dropped_readings.drain();
    assert_eq!(letters.len() as u64, lossy.dropped);
    assert!(letters.iter().all(|l| l.stage == "fanout"));
    assert!(letters.iter().all(|l| l.error.contains("branch 2")));
    // Each reading was either audited or dead-lettered, never both.
    let mut accounted: Vec<u64> = letters.iter().map(|l| l.element).collect();
    accounted.extend(&totals.audited);
    accounted.sort_unstable();
    assert!(accounted.iter().copied().eq(0..N));

    // The zip and the merge: what came in went out.
    let zip = stage(report, "zip")?;
    assert_eq!((zip.input, zip.produced), (2 * N, N));
    let merge = stage(report, "merge")?;
    assert_eq!(merge.produced, N + lossy.emitted);
    assert_eq!(report.delivered(), N + lossy.emitted);
    assert_eq!(report.abandoned(), 0);
    outln!("\nall checks passed");
    Ok(())
}
