//! Mux and demux: order per sub-stream, exact counts, no head-of-line blocking (a
//! stalled sub-stream holds exactly its bound while the others complete),
//! independent ends, cancellation of one output, no stall on the credit wake-up,
//! validation errors, and a property over random shapes.

use std::time::Duration;

use proptest::prelude::*;

use crate::common;

use common::*;
use weir::prelude::*;

/// Waits for `running` on another thread; a graph that has not finished after
/// `limit` is a stall, reported as a failure rather than a hung test.
fn wait_or_stall(running: Running<()>, limit: Duration) -> Completion<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(running.wait());
    });
    rx.recv_timeout(limit)
        .expect("the graph stalled")
        .expect("the graph completed")
}

#[test]
fn each_sub_stream_arrives_in_order_with_exact_counts() {
    let lens = [10_000_u64, 3_000, 1, 0];
    let rt = rt1();
    let mut g = Graph::new();
    let ins: Vec<Outlet<u64>> = lens
        .iter()
        .map(|&n| g.source(Pipeline::from_iter(0..n)))
        .collect();
    let muxed = g.mux_with(ins, 16);
    assert_eq!((muxed.streams(), muxed.sub_capacity()), (4, 16));
    g.name_mux(&muxed, "mux");
    let outs: [Outlet<u64>; 4] = g.demux(muxed);
    g.name_stage(outs[0], "demux");
    let rxs: Vec<_> = outs.into_iter().map(|o| collect(&mut g, o)).collect();
    let done = wait_or_stall(g.run(&rt).unwrap(), Duration::from_secs(20));
    for (rx, &n) in rxs.into_iter().zip(&lens) {
        assert_eq!(take(rx), (0..n).collect::<Vec<_>>());
    }
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.outcome, Outcome::Completed);
    let total: u64 = lens.iter().sum();
    let mux = done.report.stage("mux").unwrap();
    assert_eq!((mux.input, mux.completed, mux.filtered), (total, total, 0));
    // The shared edge carries one frame per element plus one End per sub-stream.
    let frames = total + lens.len() as u64;
    assert_eq!(
        (mux.outputs[0].pushed, mux.outputs[0].emitted),
        (frames, frames)
    );
    let demux = done.report.stage("demux").unwrap();
    assert_eq!((demux.input, demux.completed), (frames, frames));
    for (port, &n) in demux.outputs.iter().zip(&lens) {
        assert_eq!((port.pushed, port.emitted, port.dropped), (n, n, 0));
    }
}

#[test]
fn sub_capacity_one_across_threads_never_stalls() {
    // Every element waits for the demux to hand its credit back, which it does
    // when the slow sinks (capacity 1) take the element: later than it granted the
    // edge, so only the wake-up tells the mux. The mux and demux run on different
    // threads. A lost wake-up stalls this graph.
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    for sub in [1, 2] {
        let mut g = Graph::new();
        g.placement(Placement::Spread);
        let a = g.source(Pipeline::from_iter(0..2_000_u64));
        let b = g.source(Pipeline::from_iter(0..500_u64));
        let muxed = g.mux_with([a, b], sub);
        let [a, b] = g.demux(muxed);
        let a = g.sink(a, |f| f.collect().capacity(1));
        let b = g.sink(b, |f| f.collect().capacity(1));
        let done = wait_or_stall(g.run(&rt).unwrap(), Duration::from_secs(20));
        assert_eq!(take(a), (0..2_000).collect::<Vec<_>>());
        assert_eq!(take(b), (0..500).collect::<Vec<_>>());
        done.report.check_conservation().unwrap();
    }
}

#[test]
fn a_stalled_sub_stream_holds_exactly_its_bound_and_does_not_slow_the_others() {
    const N: u64 = 20_000;
    const SUB: usize = 40;
    actix_rt::System::new().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let mut g = Graph::new();
        let stalled = g.source(Pipeline::from_iter(0_u64..).name("endless"));
        let x = g.source(Pipeline::from_iter(0..N));
        let y = g.source(Pipeline::from_iter(0..N));
        let muxed = g.mux_with([stalled, x, y], SUB);
        g.name_mux(&muxed, "mux").capacity_of_mux(&muxed, 7);
        let [stalled, x, y] = g.demux(muxed);
        g.name_stage(stalled, "demux").capacity_of(stalled, 16);
        let mut egress = None;
        g.sink(stalled, |f| {
            let (r, e) = f.egress(3);
            egress = Some(e);
            r.name("stalled").capacity(5)
        });
        let mut egress = egress.unwrap();
        // Each healthy sink counts what it saw, checking the order as it goes.
        let healthy: Vec<_> = [x, y]
            .into_iter()
            .enumerate()
            .map(|(i, out)| {
                g.sink(out, move |f| {
                    f.fold(0_u64, |seen, v| {
                        assert_eq!(v, seen, "in order");
                        seen + 1
                    })
                    .name(format!("healthy{i}"))
                })
            })
            .collect();
        let running = g.run(&rt).unwrap();
        // Nobody reads the egress: sub-stream 0 stalls. The others complete: their
        // sinks end and hand over their counts while the graph runs on.
        for rx in healthy {
            let seen = tokio::time::timeout(Duration::from_secs(20), rx)
                .await
                .expect("the healthy sub-streams were held up");
            assert_eq!(seen, Some(N));
        }
        settle().await;
        let stats = running.stats();
        // Sub-stream 0 holds: 3 in the egress buffer, 5 in the sink's queue, SUB
        // between mux and demux (all in the demux's buffer 0), 7 in the mux's
        // input queue. Nothing more was taken from its source.
        let endless = stats.stage("endless").unwrap();
        assert_eq!(endless.emitted, 3 + 5 + SUB as u64 + 7, "{stats:#?}");
        assert_eq!(endless.credit, 0);
        let demux = stats.stage("demux").unwrap();
        assert_eq!(demux.outputs[0].buffered, SUB);
        assert_eq!(demux.outputs[0].pushed, (3 + 5 + SUB) as u64);
        for port in &demux.outputs[1..] {
            assert_eq!((port.pushed, port.emitted), (N, N));
        }
        // The stall did not reach the shared edge: it is empty, and the mux holds
        // only the stalled input's queue.
        assert_eq!(demux.in_flight, SUB as u64, "only buffer 0 holds anything");
        assert_eq!(stats.stage("mux").unwrap().in_flight, 7);

        // Reading the egress lets sub-stream 0 move again, in order.
        let resumed = async {
            for k in 0..500_u64 {
                assert_eq!(egress.recv().await, Some(k));
            }
        };
        // Without the demux's wake-up the mux would never learn that the credit
        // came back: the stalled sub-stream would stay stalled.
        tokio::time::timeout(Duration::from_secs(20), resumed)
            .await
            .expect("the stalled sub-stream resumed");
        settle().await;
        assert!(running.stats().stage("endless").unwrap().emitted > 500);
        drop(egress);
        let done = running.abort().await.unwrap();
        done.report.check_conservation().unwrap();
    });
}

#[test]
fn a_short_sub_stream_ends_its_output_while_the_others_go_on() {
    actix_rt::System::new().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let mut g = Graph::new();
        let short = g.source(Pipeline::from_iter(0..5_u64));
        let (ingress, open) = Pipeline::ingress::<u64>(8);
        let open = g.source(open);
        let muxed = g.mux_with([short, open], 4);
        let [short, open] = g.demux(muxed);
        let (short, open) = (collect(&mut g, short), collect(&mut g, open));
        let running = g.run(&rt).unwrap();
        ingress.send(100).await.unwrap();
        // The short sub-stream's sink completes (hands its result over) while the
        // other sub-stream is still open.
        assert_eq!(short.await, Some(vec![0, 1, 2, 3, 4]));
        assert!(!running.stats().finished);
        for x in 101..200 {
            ingress.send(x).await.unwrap();
        }
        drop(ingress);
        let done = running.await.unwrap();
        assert_eq!(open.await, Some((100..200).collect()));
        assert_eq!(done.report.outcome, Outcome::Completed);
        done.report.check_conservation().unwrap();
    });
}

#[test]
fn a_cancelled_output_cancels_its_sub_stream_only() {
    let rt = rt1();
    let mut g = Graph::new();
    let endless = g.source(Pipeline::from_iter(0_u64..).name("endless"));
    let other = g.source(Pipeline::from_iter(0..20_000_u64));
    let muxed = g.mux_with([endless, other], 32);
    g.name_mux(&muxed, "mux");
    let [first, other] = g.demux(muxed);
    g.name_stage(first, "demux");
    let first = g.sink(first, |f| f.take(10).collect());
    let other = collect(&mut g, other);
    let done = wait_or_stall(g.run(&rt).unwrap(), Duration::from_secs(20));
    assert_eq!(take(first), (0..10).collect::<Vec<_>>());
    assert_eq!(take(other), (0..20_000).collect::<Vec<_>>());
    assert_eq!(done.report.outcome, Outcome::Completed);
    done.report.check_conservation().unwrap();
    let demux = done.report.stage("demux").unwrap();
    let port = &demux.outputs[0];
    // Whatever was on its way when the branch cancelled is counted as dropped.
    assert_eq!(port.pushed, port.emitted + port.dropped);
    assert_eq!(demux.outputs[1].pushed, 20_000);
    // The endless source was cancelled: it emitted a bounded amount.
    let endless = done.report.stage("endless").unwrap();
    assert!(endless.produced < 10_000, "{}", endless.produced);
}

fn build_error(g: Graph) -> String {
    g.run(&rt1()).unwrap_err().to_string()
}

#[test]
fn bad_arguments_are_rejected_naming_the_stage() {
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..3_u64));
    let b = g.source(Pipeline::from_iter(0..3_u64));
    let muxed = g.mux([a, b]);
    let [x, y, z] = g.demux(muxed);
    g.name_stage(x, "split");
    for o in [x, y, z] {
        collect(&mut g, o);
    }
    assert_eq!(
        build_error(g),
        "stage `split`: the mux has 2 sub-streams, but the demux has 3 outputs"
    );

    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..3_u64));
    let muxed = g.mux_with([a], 0);
    g.name_mux(&muxed, "tagger");
    let [x] = g.demux(muxed);
    collect(&mut g, x);
    assert_eq!(
        build_error(g),
        "stage `tagger`: sub-stream capacity must be at least 1"
    );

    let mut g = Graph::new();
    let muxed = g.mux(Vec::<Outlet<u64>>::new());
    let [] = g.demux::<u64, 0>(muxed);
    assert_eq!(
        build_error(g),
        "stage `mux#0`: a mux needs at least one input"
    );

    // A mux whose frames go nowhere.
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..3_u64));
    let muxed = g.mux([a]);
    g.name_mux(&muxed, "mux");
    assert_eq!(
        build_error(g),
        "port `out[0]` of stage `mux` is not connected"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_shape_delivers_every_sub_stream_in_order(
        lens in prop::collection::vec(0_u64..400, 1..5),
        sub in 1_usize..12,
        edge in 1_usize..12,
        sink_capacity in 1_usize..12,
    ) {
        let rt = rt1();
        let mut g = Graph::new();
        let ins: Vec<Outlet<u64>> =
            lens.iter().map(|&n| g.source(Pipeline::from_iter(0..n))).collect();
        let muxed = g.mux_with(ins, sub);
        g.name_mux(&muxed, "mux");
        let mut rxs = Vec::new();
        macro_rules! demux_n {
            ($n:literal) => {{
                let outs: [Outlet<u64>; $n] = g.demux(muxed);
                g.name_stage(outs[0], "demux").capacity_of(outs[0], edge);
                for o in outs {
                    rxs.push(g.sink(o, |f| f.collect().capacity(sink_capacity)));
                }
            }};
        }
        match lens.len() {
            1 => demux_n!(1),
            2 => demux_n!(2),
            3 => demux_n!(3),
            _ => demux_n!(4),
        }
        let done = wait_or_stall(g.run(&rt).unwrap(), Duration::from_secs(20));
        for (rx, &n) in rxs.into_iter().zip(&lens) {
            prop_assert_eq!(take(rx), (0..n).collect::<Vec<_>>());
        }
        done.report.check_conservation().unwrap();
        let demux = done.report.stage("demux").unwrap();
        prop_assert_eq!(demux.bound_violations, 0);
        prop_assert!(demux.peak_occupancy <= edge);
        for (port, &n) in demux.outputs.iter().zip(&lens) {
            prop_assert_eq!((port.pushed, port.emitted, port.dropped), (n, n, 0));
        }
    }
}
