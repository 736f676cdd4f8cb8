//! The test kit's own tests: each probe, fault injector, time helper and check
//! does what it says, and each assertion fails when it should.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Context;
use std::time::Duration;

use weir::operator::{Io, Operator, Step};
use weir::prelude::*;
use weir_testkit::check::SequenceError;
use weir_testkit::fault::Slowed;
use weir_testkit::prelude::*;

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => (*payload.downcast::<&str>().expect("a text panic")).to_owned(),
    }
}

/// A deliberately broken operator: it loses the element `3` without counting it
/// (neither pushed nor filtered).
struct Lossy;

impl Operator for Lossy {
    type In = u32;
    type Out = u32;

    fn kind(&self) -> &'static str {
        "lossy"
    }

    fn step(&mut self, io: &mut Io<'_, u32, u32>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if x != 3 {
                io.push(x);
            }
        }
        io.finish_when_drained()
    }
}

#[test]
fn conservation_assertion_fails_when_an_element_is_dropped_on_purpose() {
    let done = run(|rt| async move {
        Pipeline::from_iter(0..10_u32)
            .via(Lossy)
            .name("broken")
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap()
    });
    assert_eq!(done.output.len(), 9);
    let message = panic_message(|| assert_conserved(&done.report));
    assert!(
        message.contains("conservation broken at stage `broken`"),
        "{message}"
    );
    assert!(message.contains("input 10 != completed 9"), "{message}");

    // The same pipeline with an honest operator passes.
    let honest = run(|rt| async move {
        let running = Pipeline::from_iter(0..10_u32)
            .filter(|x| *x != 3)
            .name("honest")
            .collect()
            .run(&rt)
            .unwrap();
        running.await.unwrap()
    });
    assert_conserved(&honest.report);
    assert_bounded(&honest.report);
}

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

#[test]
fn panic_at_fails_exactly_the_nth_element() {
    run(|rt| async move {
        let running = Pipeline::from_iter(1..=10_u32)
            .inject(Fault::panic_at(4))
            .name("chaos")
            .collect()
            .run(&rt)
            .unwrap();
        let (error, report) = expect_failure(running, "chaos").await;
        assert!(error.contains("injected fault at attempt 4"), "{error}");
        let chaos = report.stage("chaos").unwrap();
        // The three before it passed; the failure stops the pipeline at once, so
        // they may be abandoned downstream, counted.
        assert_eq!(
            (chaos.completed, chaos.emitted, chaos.failed),
            (3, 3, 1),
            "{report}"
        );
        let sink = &report.stages[2];
        assert_eq!(sink.completed + sink.abandoned, 3, "{report}");
    });
}

#[test]
fn error_at_is_retried_by_supervision_and_then_passes() {
    run_paused(|rt| async move {
        let done = Pipeline::from_iter(1..=10_u32)
            .supervise(
                Supervision::new(SupervisionPolicy::default()).dead_letters(MemoryDlq::new(8)),
            )
            .inject(Fault::error_at(6))
            .name("chaos")
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        assert_eq!(done.output, (1..=10).collect::<Vec<_>>());
        let chaos = done.report.stage("chaos").unwrap();
        assert_eq!((chaos.retries, chaos.failed), (1, 0));
        assert_conserved(&done.report);
    });
}

#[test]
fn probabilistic_faults_are_deterministic_from_the_seed() {
    // Offline: the attempts the fault fails, from its seed.
    let firing = |seed| {
        let mut f = Fault::error_with_probability(0.05, seed);
        (1..=1000_u64)
            .filter(|_| f.next_attempt().is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(firing(11), firing(11));
    assert_ne!(firing(11), firing(12));
    let fails = firing(11).len();
    assert!((20..=80).contains(&fails), "about 5 % of 1000: {fails}");

    // In a pipeline that dead-letters failed elements, the same ones fail.
    let failed = run(|rt| async move {
        let policy = SupervisionPolicy::default().action(ErrorClass::Transient, Action::DeadLetter);
        let dlq = MemoryDlq::new(10_000);
        let done = Pipeline::from_iter(1..=1000_u64)
            .supervise(Supervision::from(policy).dead_letters(dlq.clone()))
            .inject(Fault::error_with_probability(0.05, 11))
            .name("chaos")
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        assert_conserved(&done.report);
        let mut lost: Vec<u64> = dlq.drain().into_iter().map(|l| l.element).collect();
        lost.sort_unstable();
        assert_eq!(done.output.len() + lost.len(), 1000);
        lost
    });
    assert_eq!(failed, firing(11));
}

#[test]
fn wrapped_functions_fail_where_the_fault_says() {
    run(|rt| async move {
        let running = Pipeline::from_iter(0..10_u32)
            .try_map(
                Fault::error_at(2)
                    .class(ErrorClass::Permanent)
                    .wrap_try(|x| Ok(x * 2)),
            )
            .name("user")
            .collect()
            .run(&rt)
            .unwrap();
        let (error, report) = expect_failure(running, "user").await;
        assert!(error.contains("injected fault at attempt 2"), "{error}");
        let user = report.stage("user").unwrap();
        assert_eq!((user.completed, user.failed), (1, 1), "{report}");
    });
}

#[test]
fn invalid_fault_arguments_are_build_errors_naming_the_stage() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let err = Pipeline::from_iter(0..3_u32)
        .inject(Fault::panic_at(0))
        .name("zero")
        .collect()
        .run(&rt)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`zero`") && err.contains("counted from 1"),
        "{err}"
    );
    let err = Pipeline::from_iter(0..3_u32)
        .inject(Fault::panic_with_probability(1.5, 1))
        .name("odds")
        .collect()
        .run(&rt)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`odds`") && err.contains("outside [0, 1]"),
        "{err}"
    );
}

#[test]
fn delay_each_and_slowed_take_virtual_time_not_real_time() {
    let real = std::time::Instant::now();
    let (delayed, slowed) = run_paused(|rt| async move {
        let start = tokio::time::Instant::now();
        let done = Pipeline::from_iter(0..20_u32)
            .delay_each(Duration::from_millis(50))
            .name("slow")
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        assert_eq!(done.output, (0..20).collect::<Vec<_>>());
        assert_conserved(&done.report);
        let delayed = start.elapsed();

        let start = tokio::time::Instant::now();
        let done = Pipeline::from_iter(0..20_u32)
            .via(Slowed::new(Lossless, Duration::from_millis(10)))
            .capacity(4)
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        assert_eq!(done.output.len(), 20);
        assert_conserved(&done.report);
        (delayed, start.elapsed())
    });
    assert!(
        (Duration::from_millis(1000)..Duration::from_millis(1100)).contains(&delayed),
        "20 × 50 ms: {delayed:?}"
    );
    assert!(
        (Duration::from_millis(200)..Duration::from_millis(300)).contains(&slowed),
        "20 × 10 ms: {slowed:?}"
    );
    assert!(
        real.elapsed() < Duration::from_secs(1),
        "{:?}",
        real.elapsed()
    );
}

/// An honest one-to-one operator, for wrapping.
struct Lossless;

impl Operator for Lossless {
    type In = u32;
    type Out = u32;

    fn kind(&self) -> &'static str {
        "lossless"
    }

    fn step(&mut self, io: &mut Io<'_, u32, u32>, _cx: &mut Context<'_>) -> Step {
        io.map_batch(|x| x);
        io.finish_when_drained()
    }
}

#[test]
fn stall_after_holds_the_flow_until_released() {
    run_paused(|rt| async move {
        let (flow, stall) = Pipeline::from_iter(0_u64..)
            .name("src")
            .take(100)
            .capacity(4)
            .stall_after(10);
        let (runnable, mut sink) = flow.name("stall").capacity(6).test_sink();
        let running = runnable.name("sink").capacity(2).run(&rt).unwrap();
        sink.request_all();
        assert_eq!(sink.expect_next_n(10).await, (0..10).collect::<Vec<_>>());
        sink.expect_no_message(Duration::from_secs(60)).await;
        let stats = running.stats();
        assert_eq!(stats.stage("stall").unwrap().completed, 10);
        assert_eq!(stats.stage("stall").unwrap().in_flight, 6, "{stats:#?}");
        stall.release();
        assert_eq!(sink.expect_elements_until_complete().await.len(), 90);
        assert_conserved(&running.await.unwrap().report);
    });
}

#[test]
fn failing_source_emits_then_closes_with_an_error() {
    run(|rt| async move {
        let (runnable, mut sink) = failing_source(0..3_u32, "broker gone")
            .name("feed")
            .test_sink();
        let running = runnable.run(&rt).unwrap();
        sink.request_all();
        let mut got = Vec::new();
        while let SinkEvent::Next(x) = sink.next_event().await {
            got.push(x);
        }
        let (error, report) = expect_failure(running, "feed").await;
        assert!(error.contains("broker gone"), "{error}");
        // All three left the source; the failure stops the pipeline at once, so
        // the sink got a prefix of them and the rest are counted as abandoned.
        assert_eq!(report.stage("feed").unwrap().emitted, 3, "{report}");
        assert_eq!(got, [0, 1, 2][..got.len()]);
        assert_eq!(got.len() as u64, report.delivered());
    });
}

#[test]
fn sequence_checker_finds_gaps_repeats_and_short_tails() {
    let mut check = SequenceChecker::new();
    check.observe('a', 0).unwrap();
    assert_eq!(
        check.observe('a', 0),
        Err(SequenceError::Repeat {
            key: 'a',
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        check.observe('b', 1),
        Err(SequenceError::Gap {
            key: 'b',
            expected: 0,
            got: 1
        })
    );
    check.observe('a', 1).unwrap();
    assert!(check.expect_counts([('a', 2)]).is_ok());
    assert!(check.expect_counts([('a', 3)]).is_err(), "a lost tail");
    assert_eq!(check.seen(), 2);
}

/// `(key, sequence number)` pairs: three keys, `n` each, interleaved.
fn keyed(n: u64) -> impl Iterator<Item = (u8, u64)> + Send + 'static {
    (0..n).flat_map(|seq| (0..3_u8).map(move |k| (k, seq)))
}

#[test]
fn the_sequence_stage_passes_intact_streams_and_fails_on_a_duplicate() {
    run(|rt| async move {
        let done = Pipeline::from_iter(keyed(100))
            .check_sequence(|&(k, s)| (k, s))
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        assert_eq!(done.output.len(), 300);
        check_sequences(done.output)
            .unwrap()
            .expect_counts((0..3).map(|k| (k, 100)))
            .unwrap();

        let running = Pipeline::from_iter(keyed(100))
            .flat_map(|e| if e == (1, 42) { vec![e, e] } else { vec![e] })
            .check_sequence(|&(k, s)| (k, s))
            .name("semantics")
            .collect()
            .run(&rt)
            .unwrap();
        let (error, _) = expect_failure(running, "semantics").await;
        assert!(
            error.contains("key 1: repeat, expected 43, got 42"),
            "{error}"
        );
    });
}

#[test]
fn depth_probe_sees_the_bound_and_fails_a_tighter_one() {
    run_paused(|rt| async move {
        let running = Pipeline::from_iter(0..500_u32)
            .name("src")
            .map(|x| x)
            .name("a")
            .capacity(16)
            .delay_each(Duration::from_millis(1))
            .name("slow")
            .capacity(8)
            .collect()
            .name("sink")
            .run(&rt)
            .unwrap();
        let depth = DepthProbe::start(running.controller(), Duration::from_millis(3));
        let done = running.await.unwrap();
        let seen = depth.report();
        assert!(seen.samples >= 100, "{seen:?}");
        // The slow stage's queue is full most of the time: the sampler sees it.
        assert_eq!(seen.max_depth("slow"), Some(8), "{seen:?}");
        depth.assert_max_depth("slow", 8);
        depth.assert_within_capacity();
        let message = panic_message(|| depth.assert_max_depth("slow", 7));
        assert!(
            message.contains("stage `slow` reached depth 8, over the bound 7"),
            "{message}"
        );
        assert_conserved(&done.report);
        assert_bounded(&done.report);
    });
}

#[test]
fn advance_fires_timers_in_virtual_time() {
    run_paused(|rt| async move {
        let (tx, source) = Pipeline::ingress::<u32>(8);
        let (runnable, mut sink) = source
            .processing_time_windows(
                Windows::tumbling(Duration::from_secs(60)),
                |_| (),
                Aggregate::count(),
            )
            .test_sink();
        let running = runnable.run(&rt).unwrap();
        sink.request_all();
        for x in 0..5 {
            tx.send(x).await.unwrap();
        }
        advance(Duration::from_secs(59)).await;
        sink.expect_no_message(Duration::ZERO).await;
        advance(Duration::from_secs(2)).await;
        let window = sink.expect_element().await;
        assert_eq!(window.value, 5);
        drop(tx);
        sink.expect_complete().await;
        assert_conserved(&running.await.unwrap().report);
    });
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

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
            const N: u64 = 200;
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
