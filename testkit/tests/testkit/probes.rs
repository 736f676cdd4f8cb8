//! The source and sink probes.

use std::time::Duration;

use weir::prelude::*;
use weir_testkit::prelude::*;

#[test]
fn probes_script_demand_and_backpressure_exactly() {
    run_paused(|rt| async move {
        let (source, flow) = TestSource::probe::<u32>();
        let (runnable, mut sink) = flow
            .name("src")
            .map(|x| x + 100)
            .name("inc")
            .capacity(3)
            .test_sink();
        let running = runnable.name("probe").capacity(5).run(&rt).unwrap();
        source.send_all(0..50);
        settle().await;
        // No demand: the edges hold exactly their capacities, the rest waits.
        assert_eq!(source.taken(), 3 + 5);
        assert_eq!(source.pending(), 42);
        sink.expect_no_message(Duration::from_secs(10)).await;

        sink.request(2);
        sink.expect_next(100).await;
        sink.expect_next(101).await;
        sink.expect_no_message(Duration::from_millis(100)).await;
        settle().await;
        assert_eq!(source.taken(), 10, "two taken, two more admitted");
        assert_eq!(sink.requested(), 0);

        sink.request(3);
        assert_eq!(sink.expect_next_n(3).await, [102, 103, 104]);
        source.send_complete();
        sink.request_all();
        let rest = sink.expect_elements_until_complete().await;
        assert_eq!(rest, (105..150).collect::<Vec<_>>());
        let done = running.await.unwrap();
        assert_eq!(done.report.outcome, Outcome::Completed);
        assert_eq!(done.report.delivered(), 50);
        assert_conserved(&done.report);
        assert_bounded(&done.report);
    });
}

#[test]
fn a_source_error_fails_the_pipeline_and_the_sink_sees_it() {
    run_paused(|rt| async move {
        let (source, flow) = TestSource::probe::<u32>();
        let (runnable, mut sink) = flow.name("src").test_sink();
        let running = runnable.run(&rt).unwrap();
        sink.request(10);
        source.send_next(7);
        sink.expect_next(7).await;
        source.send_error("disk on fire");
        sink.expect_error().await;
        let (error, report) = expect_failure(running, "src").await;
        assert!(error.contains("disk on fire"), "{error}");
        assert_eq!(report.delivered(), 1);
    });
}

#[test]
fn dropping_the_source_probe_ends_the_stream_after_its_script() {
    run(|rt| async move {
        let (source, flow) = TestSource::probe::<u32>();
        let (runnable, mut sink) = flow.test_sink();
        let running = runnable.run(&rt).unwrap();
        source.send_all([1, 2]);
        drop(source);
        sink.request_all();
        assert_eq!(sink.expect_elements_until_complete().await, [1, 2]);
        assert_conserved(&running.await.unwrap().report);
    });
}

/// Dropping the sink probe cancels the sink, as dropping an egress does: the
/// pipeline ends and what was queued for the sink is abandoned, counted.
#[test]
fn dropping_the_sink_probe_cancels_the_sink() {
    run_paused(|rt| async move {
        let (runnable, mut sink) = Pipeline::from_iter(0_u64..)
            .map(|x| x)
            .capacity(4)
            .test_sink();
        let running = runnable.name("sink").capacity(4).run(&rt).unwrap();
        sink.request(3);
        assert_eq!(sink.expect_next_n(3).await, [0, 1, 2]);
        drop(sink);
        let done = running.await.unwrap();
        assert_eq!(done.report.delivered(), 3);
        assert!(done.report.abandoned() > 0, "{}", done.report);
        assert_conserved(&done.report);
    });
}

#[test]
#[should_panic(expected = "test sink: expected Next(5), got Next(1)")]
fn expect_next_names_what_came_instead() {
    run_paused(|rt| async move {
        let (runnable, mut sink) = Pipeline::from_iter(1..3_u32).test_sink();
        let _running = runnable.run(&rt).unwrap();
        sink.request(1);
        sink.expect_next(5).await;
    });
}

#[test]
#[should_panic(expected = "test sink: no event within 250ms (requested so far: 0)")]
fn expect_next_times_out_in_virtual_time() {
    run_paused(|rt| async move {
        let (runnable, sink) = Pipeline::from_iter(1..3_u32).test_sink();
        let mut sink = sink.with_timeout(Duration::from_millis(250));
        let _running = runnable.run(&rt).unwrap();
        // No demand: nothing can come.
        sink.expect_next(1).await;
    });
}

#[test]
#[should_panic(expected = "expected no message for 1s, got Complete")]
fn expect_no_message_fails_on_a_message() {
    run_paused(|rt| async move {
        let (runnable, mut sink) = Pipeline::from_iter(0..0_u32).test_sink();
        let _running = runnable.run(&rt).unwrap();
        sink.expect_no_message(Duration::from_secs(1)).await;
    });
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// For any capacities and any sequence of requests, the source has been asked
    /// for exactly the sum of the capacities plus what the sink took: the path is
    /// always exactly full, never over. And every element comes out once, in order.
    #[test]
    fn demand_releases_exactly_what_was_taken(
        caps in proptest::collection::vec(1_usize..6, 1..4),
        sink_cap in 1_usize..6,
        requests in proptest::collection::vec(0_u64..7, 1..6),
    ) {
        run(|rt| async move {
            const N: u64 = 100;
            let (source, mut flow) = TestSource::probe::<u64>();
            for &c in &caps {
                flow = flow.map(|x| x).capacity(c);
            }
            let (runnable, mut sink) = flow.test_sink();
            let running = runnable.capacity(sink_cap).run(&rt).unwrap();
            source.send_all(0..N);
            let path = (caps.iter().sum::<usize>() + sink_cap) as u64;
            let mut taken = 0;
            for n in requests {
                sink.request(n);
                for _ in 0..n {
                    sink.expect_next(taken).await;
                    taken += 1;
                }
                settle().await;
                assert_eq!(source.taken(), path + taken);
            }
            source.send_complete();
            sink.request_all();
            let rest = sink.expect_elements_until_complete().await;
            assert_eq!(rest, (taken..N).collect::<Vec<_>>());
            let done = running.await.unwrap();
            assert_conserved(&done.report);
            assert_bounded(&done.report);
        });
    }
}
