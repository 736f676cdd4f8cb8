//! Mux and demux: several tenants' event streams share one edge; one tenant's
//! consumer stalls, and the others do not notice.
//!
//! ```text
//!  alpha (N) ───┐                          ┌──► alpha sink (fold)
//!  beta  (N) ───┤                          ├──► beta sink  (fold)
//!  gamma (N) ───┼──► mux ══ one edge ══► demux ┼──► gamma egress: nobody reads it (stalled)
//!  delta (10) ──┤   (sub-stream credit 64)     ├──► delta sink: ends early
//!  echo  (∞) ───┘                          └──► take(100): cancels echo only
//! ```
//!
//! Every tenant is a sub-stream with its own credit of 64 elements between the mux
//! and the demux. While nobody reads gamma's egress, gamma fills exactly its bound
//! (egress buffer + its sink's queue + 64 + the mux's input queue) and stops; alpha
//! and beta deliver all their events meanwhile, because the demux always takes the
//! shared edge in full. delta ends early and its sink completes at once; echo's
//! consumer takes 100 events and cancels, which cancels echo's source and nothing
//! else. Then gamma's egress is read and gamma completes, in order.
//!
//! A baseline run first, with every consumer reading, times alpha and beta for
//! comparison.
//!
//! Run it with `cargo run --release -p weir-examples --bin mux_demux`.

use std::time::{Duration, Instant};
use weir_examples::outln;

use weir::OutputReceiver;
use weir::prelude::*;
use weir_examples::{print_ports, stage};

/// Events per long tenant.
const N: u64 = 20_000;
/// Credit of each sub-stream between the mux and the demux.
const SUB: usize = 64;
/// Input queue of the mux, per tenant.
const MUX_QUEUE: usize = 32;
/// The stalled tenant's egress buffer and its sink's input queue.
const EGRESS: usize = 8;
const EGRESS_QUEUE: usize = 16;

/// How many events a sink saw, checking that they arrived in order.
fn count_in_order(seen: u64, event: u64) -> u64 {
    assert_eq!(event, seen, "events of one tenant arrive in order");
    seen + 1
}

/// The graph's handles: what each tenant's sink hands over, and gamma's egress.
struct Tenants {
    alpha: OutputReceiver<u64>,
    beta: OutputReceiver<u64>,
    gamma: Egress<u64>,
    delta: OutputReceiver<Vec<u64>>,
    echo: OutputReceiver<Vec<u64>>,
}

fn tenants(name: &str) -> Result<(Graph, Tenants), Box<dyn std::error::Error>> {
    let mut g = Graph::new();
    g.named(name);
    let tenants = [
        g.source(Pipeline::from_iter(0..N).name("alpha")),
        g.source(Pipeline::from_iter(0..N).name("beta")),
        g.source(Pipeline::from_iter(0..N).name("gamma")),
        g.source(Pipeline::from_iter(0..10_u64).name("delta")),
        g.source(Pipeline::from_iter(0_u64..).name("echo")),
    ];
    let muxed = g.mux_with(tenants, SUB);
    g.name_mux(&muxed, "mux").capacity_of_mux(&muxed, MUX_QUEUE);
    let [alpha, beta, gamma, delta, echo] = g.demux(muxed);
    g.name_stage(alpha, "demux");

    let alpha = g.sink(alpha, |f| f.fold(0, count_in_order).name("alpha_sink"));
    let beta = g.sink(beta, |f| f.fold(0, count_in_order).name("beta_sink"));
    let mut gamma_egress = None;
    g.sink(gamma, |f| {
        let (sink, egress) = f.egress(EGRESS);
        gamma_egress = Some(egress);
        sink.name("gamma_sink").capacity(EGRESS_QUEUE)
    });
    let delta = g.sink(delta, |f| f.collect().name("delta_sink"));
    let echo = g.sink(echo, |f| f.take(100).name("echo_take").collect());
    let handles = Tenants {
        alpha,
        beta,
        gamma: gamma_egress.ok_or("no egress")?,
        delta,
        echo,
    };
    Ok((g, handles))
}

/// Reads an egress to its end on another thread, checking the order; returns
/// how many events it read.
fn read_all(mut egress: Egress<u64>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        futures::executor::block_on(async {
            let mut next = 0;
            while let Some(event) = egress.recv().await {
                assert_eq!(event, next, "gamma in order");
                next += 1;
            }
            next
        })
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().arbiters(2).build()?;

    // Baseline: gamma's consumer reads from the start.
    let (g, t) = tenants("baseline")?;
    let started = Instant::now();
    let running = g.run(&rt)?;
    let reader = read_all(t.gamma);
    let (alpha, beta) = futures::executor::block_on(async { (t.alpha.await, t.beta.await) });
    let baseline = started.elapsed();
    assert_eq!((alpha, beta), (Some(N), Some(N)));
    running.wait()?.report.check_conservation()?;
    assert_eq!(reader.join().map_err(|_| "gamma's reader panicked")?, N);
    outln!(
        "baseline, every consumer reading: alpha and beta delivered {N} events each in {:.1} ms",
        baseline.as_secs_f64() * 1e3
    );

    // Now nobody reads gamma.
    let (g, t) = tenants("mux_demux")?;
    let Tenants {
        alpha,
        beta,
        gamma: gamma_egress,
        delta,
        echo,
    } = t;
    let started = Instant::now();
    let running = g.run(&rt)?;

    // Nobody reads gamma yet. The other tenants complete regardless: each sink
    // hands its result over when its own sub-stream ends.
    let delta = futures::executor::block_on(delta).ok_or("delta gave no result")?;
    let echo = futures::executor::block_on(echo).ok_or("echo gave no result")?;
    let alpha = futures::executor::block_on(alpha).ok_or("alpha gave no result")?;
    let beta = futures::executor::block_on(beta).ok_or("beta gave no result")?;
    let healthy_time = started.elapsed();
    outln!(
        "while gamma was stalled: alpha {alpha} and beta {beta} events in order in {:.1} ms, \
         delta {delta:?}, echo took {} then cancelled",
        healthy_time.as_secs_f64() * 1e3,
        echo.len()
    );

    // gamma holds exactly its bound, and nothing more is taken from its source.
    let bound = (EGRESS + EGRESS_QUEUE + SUB + MUX_QUEUE) as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = running.stats();
        let gamma = stats.stage("gamma").ok_or("no gamma")?;
        if gamma.emitted >= bound || Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let gamma_emitted = stats.stage("gamma").ok_or("no gamma")?.emitted;
    let demux_now = stats.stage("demux").ok_or("no demux")?;
    outln!(
        "gamma stalled: its source emitted {gamma_emitted} = egress {EGRESS} + sink queue \
         {EGRESS_QUEUE} + sub-stream credit {SUB} + mux queue {MUX_QUEUE}; \
         the demux holds {} for it",
        demux_now.outputs[2].buffered
    );
    assert_eq!(gamma_emitted, bound);
    assert_eq!(demux_now.outputs[2].buffered, SUB);

    // Now gamma's consumer reads: gamma resumes, in order, and completes.
    let next = read_all(gamma_egress)
        .join()
        .map_err(|_| "gamma's reader panicked")?;
    let done = running.wait()?;
    let report = &done.report;
    report.check_conservation()?;
    outln!("gamma resumed and delivered {next} events\n");
    outln!("{report}");
    let mux = stage(report, "mux")?;
    let demux = stage(report, "demux")?;
    outln!("per-sub-stream counts of `demux`:");
    print_ports(demux);

    // What each tenant got.
    assert_eq!((alpha, beta, next), (N, N, N));
    assert_eq!(delta, (0..10).collect::<Vec<_>>());
    assert_eq!(echo, (0..100).collect::<Vec<_>>());
    assert_eq!(report.outcome, Outcome::Completed);

    // The shared edge carried one frame per event and one End per sub-stream.
    let echo_taken = demux.outputs[4].pushed;
    let events = 3 * N + 10 + echo_taken;
    assert_eq!(mux.outputs[0].pushed, events + 5);
    assert_eq!(demux.input, events + 5);
    // Only echo lost anything: what was on its way when its consumer cancelled
    // (dropped at the demux) or queued at the mux (filtered there).
    for port in &demux.outputs[..4] {
        assert_eq!(port.dropped, 0, "port {}", port.port);
        assert_eq!(port.emitted, port.pushed, "port {}", port.port);
    }
    let echo_port = &demux.outputs[4];
    assert_eq!(echo_port.emitted + echo_port.dropped, echo_port.pushed);
    let echo_source = stage(report, "echo")?;
    assert_eq!(
        echo_source.produced,
        echo_port.pushed + mux.filtered + mux.abandoned,
        "every echo event: routed by the demux, or filtered or abandoned at the mux"
    );
    outln!("\nall checks passed");
    Ok(())
}
