//! Backpressure bounds, asserted exactly (as in vector's topology backpressure
//! tests): with a sink that stops consuming, a fast source emits exactly the sum of
//! the capacities on its path and then nothing more. The single-threaded tests run
//! on the test kit's `run`; the kit's sink probe grants demand element by element.

use std::time::{Duration, Instant};

use weir::prelude::*;
use weir_testkit::prelude::*;

#[test]
fn blocked_sink_holds_exactly_the_sum_of_capacities() {
    run(|rt| async move {
        let (runnable, egress) = Pipeline::from_iter(0_u64..)
            .name("source")
            .map(|x| x + 1)
            .name("a")
            .capacity(7)
            .filter(|_| true)
            .name("b")
            .capacity(5)
            .map(|x| x * 2)
            .name("c")
            .capacity(3)
            .egress(11);
        let running = runnable.name("sink").capacity(13).run(&rt).unwrap();
        settle().await;

        // 7 + 5 + 3 + 13 on the stage edges, 11 in the egress buffer.
        let stats = running.stats();
        let source = stats.stage("source").unwrap();
        assert_eq!(source.emitted, 39, "{stats:#?}");
        assert_eq!(source.credit, 0);
        for (name, capacity) in [("a", 7), ("b", 5), ("c", 3), ("sink", 13)] {
            let s = stats.stage(name).unwrap();
            assert_eq!(s.peak_occupancy, capacity, "{name}: {stats:#?}");
            assert_eq!(s.in_flight + s.mailbox, capacity as u64, "{name}");
        }
        assert_eq!(egress.len(), 11);

        // Still exactly 39 after more scheduling rounds: the source is blocked, not slow.
        settle().await;
        assert_eq!(running.stats().stage("source").unwrap().emitted, 39);

        // Dropping the receiver finishes the sink; what it held is abandoned, counted.
        drop(egress);
        let done = running.await.unwrap();
        assert_conserved(&done.report);
        assert_bounded(&done.report);
        assert_eq!(done.report.emitted_by_sources(), 39);
        assert_eq!(done.report.delivered(), 11);
        assert_eq!(done.report.abandoned(), 28);
    });
}

/// Each element of demand the sink grants lets the source emit exactly one more:
/// the path stays exactly full, and nothing is taken ahead of demand.
#[test]
fn each_request_releases_exactly_that_many_from_the_source() {
    run(|rt| async move {
        let (source, flow) = TestSource::probe::<u64>();
        let (runnable, mut sink) = flow
            .name("source")
            .map(|x| x * 2)
            .name("a")
            .capacity(7)
            .filter(|_| true)
            .name("b")
            .capacity(5)
            .test_sink();
        let running = runnable.name("sink").capacity(3).run(&rt).unwrap();
        source.send_all(0..1_000);
        settle().await;
        assert_eq!(source.taken(), 7 + 5 + 3);
        let depth = DepthProbe::start(running.controller(), Duration::from_millis(1));
        let mut next = 0;
        for n in [1, 4, 9, 30] {
            sink.request(n);
            for _ in 0..n {
                sink.expect_next(next * 2).await;
                next += 1;
            }
            settle().await;
            assert_eq!(source.taken(), 15 + next, "after {next} delivered");
            depth.sample();
        }
        depth.assert_within_capacity();
        source.send_complete();
        sink.request_all();
        assert_eq!(
            sink.expect_elements_until_complete().await.len() as u64,
            1_000 - next
        );
        let done = running.await.unwrap();
        assert_conserved(&done.report);
        assert_bounded(&done.report);
        assert_eq!(done.report.delivered(), 1_000);
    });
}

#[test]
fn a_slow_sink_bounds_every_edge_across_arbiters() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let (runnable, mut egress) = Pipeline::from_iter(0_u64..20_000)
        .map(|x| x + 1)
        .capacity(16)
        .filter(|x| x % 3 != 0)
        .capacity(8)
        .map(|x| x * 2)
        .capacity(32)
        .egress(4);
    let running = runnable
        .capacity(2)
        .placement(Placement::Spread)
        .run(&rt)
        .unwrap();
    let mut got = 0_u64;
    let mut last = 0;
    while let Some(x) = futures::executor::block_on(egress.recv()) {
        assert!(x > last, "order");
        last = x;
        got += 1;
    }
    let done = running.wait().unwrap();
    assert_conserved(&done.report);
    assert_bounded(&done.report);
    assert_eq!(got, done.report.delivered());
    assert_eq!(done.report.outcome, Outcome::Completed);
}

#[test]
fn blocked_sink_bound_holds_across_arbiters() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let (runnable, egress) = Pipeline::from_iter(0_u64..)
        .map(|x| x)
        .capacity(6)
        .map(|x| x)
        .capacity(9)
        .egress(5);
    let running = runnable
        .capacity(4)
        .placement(Placement::Spread)
        .run(&rt)
        .unwrap();
    let expected = 6 + 9 + 4 + 5;
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.stats().stages[0].emitted < expected {
        assert!(Instant::now() < deadline, "source never filled the path");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Give the other threads ample opportunity to overshoot; they must not.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(running.stats().stages[0].emitted, expected);
    drop(egress);
    let done = running.wait().unwrap();
    assert_conserved(&done.report);
    assert_bounded(&done.report);
}
