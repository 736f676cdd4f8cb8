//! Processing-time windows and `grouped_within` under paused tokio time, and
//! count windows. The timed tests script their input with the test kit's source
//! probe, drain the windows with its sink probe, and move the virtual clock with
//! `advance`.

use std::time::Duration;

use weir::prelude::*;
use weir_testkit::prelude::*;

fn rt1() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

async fn advance_ms(ms: u64) {
    advance(Duration::from_millis(ms)).await;
}

/// Nothing is waiting at the probe now (no virtual time passes).
async fn nothing_yet<T: std::fmt::Debug>(sink: &mut SinkProbe<T>) {
    sink.expect_no_message(Duration::ZERO).await;
}

/// Tumbling windows of 1 s on the paused clock: a window fires when the clock
/// passes its end, with no further input.
#[test]
fn processing_time_tumbling_fires_on_the_clock() {
    run_paused(|rt| async move {
        let (source, flow) = TestSource::probe::<(char, u64)>();
        let (runnable, mut out) = flow
            .processing_time_windows(
                Windows::tumbling(Duration::from_secs(1)),
                |e| e.0,
                Aggregate::new(|| 0, |s: &mut u64, e: &(char, u64)| *s += e.1, |s| *s),
            )
            .name("ptw")
            .test_sink();
        let running = runnable.run(&rt).unwrap();
        out.request_all();
        source.send_all([('a', 1), ('b', 10), ('a', 2)]);
        settle().await;
        advance_ms(500).await;
        source.send_next(('a', 4));
        settle().await;
        nothing_yet(&mut out).await; // the first second has not ended
        advance_ms(600).await;
        let mut first = out.expect_next_n(2).await;
        first.sort_by_key(|r| r.key);
        assert_eq!(
            first
                .iter()
                .map(|r| (r.key, r.window.start, r.window.end, r.value))
                .collect::<Vec<_>>(),
            [('a', 0, 1000, 7), ('b', 0, 1000, 10)]
        );
        nothing_yet(&mut out).await;
        source.send_next(('b', 5));
        settle().await;
        advance_ms(1000).await;
        let r = out.expect_element().await;
        assert_eq!((r.key, r.window.start, r.value), ('b', 1000, 5));
        source.send_complete();
        out.expect_complete().await;
        let done = running.await.unwrap();
        assert_conserved(&done.report);
        assert_eq!(done.report.stage("ptw").unwrap().completed, 5);
    });
}

/// Session windows on the paused clock: a gap of silence closes the session.
#[test]
fn processing_time_sessions_close_after_the_gap() {
    run_paused(|rt| async move {
        let (source, flow) = TestSource::probe::<u32>();
        let (runnable, mut out) = flow
            .processing_time_windows(
                Windows::session(Duration::from_millis(300)),
                |_| (),
                Aggregate::count(),
            )
            .test_sink();
        let running = runnable.run(&rt).unwrap();
        out.request_all();
        for _ in 0..3 {
            source.send_next(1);
            settle().await;
            advance_ms(200).await;
        }
        nothing_yet(&mut out).await; // gaps of 200 ms keep the session open
        advance_ms(200).await;
        let r = out.expect_element().await; // 300 ms of silence closed it
        assert_eq!((r.value, r.window.start, r.window.end), (3, 0, 700));
        source.send_next(1);
        source.send_complete();
        // The end of input fires the last session.
        assert_eq!(out.expect_element().await.value, 1);
        out.expect_complete().await;
        assert_conserved(&running.await.unwrap().report);
    });
}

/// Sliding windows on the paused clock: an element counts in every window it
/// falls in.
#[test]
fn processing_time_sliding_counts_each_element_in_each_window() {
    run_paused(|rt| async move {
        let (source, flow) = TestSource::probe::<u32>();
        let (runnable, mut out) = flow
            .processing_time_windows(
                Windows::sliding(Duration::from_millis(400), Duration::from_millis(200)),
                |_| (),
                Aggregate::count(),
            )
            .test_sink();
        let running = runnable.run(&rt).unwrap();
        out.request_all();
        source.send_next(1); // t = 0: windows [0,400)
        settle().await;
        advance_ms(250).await;
        source.send_next(2); // t = 250: windows [0,400), [200,600)
        settle().await;
        advance_ms(1000).await;
        let got: Vec<_> = out
            .expect_next_n(2)
            .await
            .into_iter()
            .map(|r| (r.window.start, r.value))
            .collect();
        assert_eq!(got, [(0, 2), (200, 1)]);
        nothing_yet(&mut out).await;
        drop(source);
        out.expect_complete().await;
        assert_conserved(&running.await.unwrap().report);
    });
}

/// `grouped_within`: full batches go at once; a partial batch goes when the
/// duration since its first element has passed.
#[test]
fn grouped_within_emits_by_size_or_by_time() {
    run_paused(|rt| async move {
        let (source, flow) = TestSource::probe::<u32>();
        let (runnable, mut out) = flow
            .grouped_within(3, Duration::from_millis(100))
            .name("batches")
            .test_sink();
        let running = runnable.run(&rt).unwrap();
        out.request_all();
        source.send_all(0..4);
        settle().await;
        out.expect_next(vec![0, 1, 2]).await; // full: at once
        advance_ms(60).await;
        source.send_next(4);
        settle().await;
        nothing_yet(&mut out).await; // 60 ms since 3 arrived
        advance_ms(50).await;
        // 100 ms since the batch's first element.
        out.expect_next(vec![3, 4]).await;
        source.send_next(5);
        source.send_complete();
        out.expect_next(vec![5]).await; // the end of input flushes
        out.expect_complete().await;
        let done = running.await.unwrap();
        assert_conserved(&done.report);
        let stage = done.report.stage("batches").unwrap();
        assert_eq!((stage.completed, stage.produced), (6, 3));
    });
}

#[test]
fn grouped_within_rejects_zero_arguments() {
    let err = Pipeline::from_iter(0..3_u32)
        .grouped_within(0, Duration::from_secs(1))
        .name("g")
        .collect()
        .run(&rt1())
        .unwrap_err();
    assert!(err.to_string().contains("grouped_within(0"), "{err}");
}

#[test]
fn count_windows_slide_and_tumble() {
    let done = Pipeline::from_iter(1..=7_u32)
        .count_windows(3, 2)
        .name("cw")
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    // Windows end at elements 3, 5, 7; nothing arrived after 7's window.
    assert_eq!(done.output, [vec![1, 2, 3], vec![3, 4, 5], vec![5, 6, 7]]);
    assert_conserved(&done.report);
    assert_eq!(done.report.stage("cw").unwrap().completed, 7);

    let done = Pipeline::from_iter(1..=8_u32)
        .count_windows(3, 3)
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, [vec![1, 2, 3], vec![4, 5, 6], vec![7, 8]]);
    assert_conserved(&done.report);
}

/// Cut short by a `take`, the elements the window holds are abandoned, counted.
#[test]
fn count_windows_held_elements_are_abandoned_on_cancel() {
    let done = Pipeline::from_iter(0_u64..)
        .count_windows(4, 1)
        .name("cw")
        .take(5)
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output[4], [4, 5, 6, 7]);
    assert_conserved(&done.report);
    let stage = done.report.stage("cw").unwrap();
    assert!(stage.abandoned >= 3, "{stage:?}");
}
