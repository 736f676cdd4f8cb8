//! The assertions: each passes on a correct run and fails when it should.

use std::time::Duration;

use weir::prelude::*;
use weir_testkit::check::SequenceError;
use weir_testkit::prelude::*;

use crate::{Lossy, panic_message};

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
