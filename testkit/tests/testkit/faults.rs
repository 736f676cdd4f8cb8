//! Each fault injector does what it says.

use std::time::Duration;

use weir::prelude::*;
use weir_testkit::prelude::*;

use crate::Lossless;

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

/// `Faulty` fails exactly the chosen element inside the user's own stage, even
/// when the whole input is queued at once, and works in a graph.
#[test]
fn faulty_fails_the_chosen_element_inside_the_wrapped_operator() {
    run(|rt| async move {
        let mut g = Graph::new();
        let numbers = g.source(Pipeline::from_iter(0..50_u32).name("src"));
        let out = g.flow(numbers, |f| {
            f.via(Faulty::new(Lossless, Fault::panic_at(20)))
                .name("user")
                .capacity(64)
        });
        let _sink = TestSink::attach(&mut g, out);
        let (error, report) = expect_failure(g.run(&rt).unwrap(), "user").await;
        assert!(error.contains("injected fault at attempt 20"), "{error}");
        let user = report.stage("user").unwrap();
        assert_eq!((user.completed, user.failed), (19, 1), "{report}");
    });
}

/// Under supervision the chosen element is retried in the user's stage, and its
/// retry (a new attempt) passes: everything comes out, in order.
#[test]
fn faulty_under_supervision_retries_and_keeps_order() {
    run_paused(|rt| async move {
        let policy = SupervisionPolicy::default().action(ErrorClass::Panic, Action::Retry);
        let done = Pipeline::from_iter(0..300_u32)
            .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(8)))
            .via(Faulty::new(
                Lossless,
                Fault::panic_with_probability(0.05, 3),
            ))
            .name("user")
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        assert_eq!(done.output, (0..300).collect::<Vec<_>>());
        let user = done.report.stage("user").unwrap();
        // The same seed picks the same attempts: count them offline.
        let mut fault = Fault::panic_with_probability(0.05, 3);
        let (mut attempts, mut passed) = (0, 0);
        while passed < 300 {
            attempts += 1;
            if fault.next_attempt().is_none() {
                passed += 1;
            }
        }
        assert_eq!(user.retries, attempts - 300, "{}", done.report);
        assert_conserved(&done.report);
    });
}
