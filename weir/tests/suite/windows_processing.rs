//! Processing-time windows and `grouped_within` under paused tokio time, and
//! count windows.

use crate::common;

use std::time::Duration;

use weir::prelude::*;

use common::{paused, rt1, settle};

async fn advance(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
    settle().await;
}

/// Tumbling windows of 1 s on the paused clock: a window fires when the clock
/// passes its end, with no further input.
#[test]
fn processing_time_tumbling_fires_on_the_clock() {
    paused(|rt| async move {
        let (tx, source) = Pipeline::ingress::<(char, u64)>(16);
        let (runnable, mut out) = source
            .processing_time_windows(
                Windows::tumbling(Duration::from_secs(1)),
                |e| e.0,
                Aggregate::new(|| 0, |s: &mut u64, e: &(char, u64)| *s += e.1, |s| *s),
            )
            .name("ptw")
            .egress(16);
        let running = runnable.run(&rt).unwrap();
        for e in [('a', 1), ('b', 10), ('a', 2)] {
            tx.send(e).await.unwrap();
        }
        settle().await;
        advance(500).await;
        tx.send(('a', 4)).await.unwrap();
        settle().await;
        assert!(out.try_recv().is_none(), "the first second has not ended");
        advance(600).await;
        let mut first = [out.try_recv().unwrap(), out.try_recv().unwrap()];
        first.sort_by_key(|r| r.key);
        assert_eq!(
            first
                .iter()
                .map(|r| (r.key, r.window.start, r.window.end, r.value))
                .collect::<Vec<_>>(),
            [('a', 0, 1000, 7), ('b', 0, 1000, 10)]
        );
        assert!(out.try_recv().is_none());
        tx.send(('b', 5)).await.unwrap();
        settle().await;
        advance(1000).await;
        let r = out.try_recv().unwrap();
        assert_eq!((r.key, r.window.start, r.value), ('b', 1000, 5));
        drop(tx);
        let done = running.await.unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.stage("ptw").unwrap().completed, 5);
    });
}

/// Session windows on the paused clock: a gap of silence closes the session.
#[test]
fn processing_time_sessions_close_after_the_gap() {
    paused(|rt| async move {
        let (tx, source) = Pipeline::ingress::<u32>(16);
        let (runnable, mut out) = source
            .processing_time_windows(
                Windows::session(Duration::from_millis(300)),
                |_| (),
                Aggregate::count(),
            )
            .egress(16);
        let running = runnable.run(&rt).unwrap();
        for _ in 0..3 {
            tx.send(1).await.unwrap();
            settle().await;
            advance(200).await;
        }
        assert!(
            out.try_recv().is_none(),
            "gaps of 200 ms keep the session open"
        );
        advance(200).await;
        let r = out.try_recv().expect("300 ms of silence closed it");
        assert_eq!((r.value, r.window.start, r.window.end), (3, 0, 700));
        tx.send(1).await.unwrap();
        drop(tx);
        let done = running.await.unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(
            out.try_recv().map(|r| r.value),
            Some(1),
            "the end of input fires the last session"
        );
    });
}

/// Sliding windows on the paused clock: an element counts in every window it
/// falls in.
#[test]
fn processing_time_sliding_counts_each_element_in_each_window() {
    paused(|rt| async move {
        let (tx, source) = Pipeline::ingress::<u32>(16);
        let (runnable, mut out) = source
            .processing_time_windows(
                Windows::sliding(Duration::from_millis(400), Duration::from_millis(200)),
                |_| (),
                Aggregate::count(),
            )
            .egress(16);
        let running = runnable.run(&rt).unwrap();
        tx.send(1).await.unwrap(); // t = 0: windows [0,400)
        settle().await;
        advance(250).await;
        tx.send(2).await.unwrap(); // t = 250: windows [0,400), [200,600)
        settle().await;
        advance(1000).await;
        let got: Vec<_> = std::iter::from_fn(|| out.try_recv())
            .map(|r| (r.window.start, r.value))
            .collect();
        assert_eq!(got, [(0, 2), (200, 1)]);
        drop(tx);
        running.await.unwrap().report.check_conservation().unwrap();
    });
}

/// `grouped_within`: full batches go at once; a partial batch goes when the
/// duration since its first element has passed.
#[test]
fn grouped_within_emits_by_size_or_by_time() {
    paused(|rt| async move {
        let (tx, source) = Pipeline::ingress::<u32>(16);
        let (runnable, mut out) = source
            .grouped_within(3, Duration::from_millis(100))
            .name("batches")
            .egress(16);
        let running = runnable.run(&rt).unwrap();
        for x in 0..4 {
            tx.send(x).await.unwrap();
        }
        settle().await;
        assert_eq!(out.try_recv(), Some(vec![0, 1, 2]), "full: at once");
        advance(60).await;
        tx.send(4).await.unwrap();
        settle().await;
        assert_eq!(out.try_recv(), None, "60 ms since 3 arrived");
        advance(50).await;
        assert_eq!(
            out.try_recv(),
            Some(vec![3, 4]),
            "100 ms since the batch's first element"
        );
        tx.send(5).await.unwrap();
        drop(tx);
        let done = running.await.unwrap();
        assert_eq!(out.try_recv(), Some(vec![5]), "the end of input flushes");
        done.report.check_conservation().unwrap();
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
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.stage("cw").unwrap().completed, 7);

    let done = Pipeline::from_iter(1..=8_u32)
        .count_windows(3, 3)
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, [vec![1, 2, 3], vec![4, 5, 6], vec![7, 8]]);
    done.report.check_conservation().unwrap();
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
    done.report.check_conservation().unwrap();
    let stage = done.report.stage("cw").unwrap();
    assert!(stage.abandoned >= 3, "{stage:?}");
}
