//! Completion, cancellation, graceful shutdown, abort and failure: each ends with a
//! report in which conservation holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir::prelude::*;

fn runtime() -> Runtime {
    Runtime::builder().arbiters(2).build().unwrap()
}

#[test]
fn end_of_stream_completes_with_order_and_counts() {
    let rt = runtime();
    let done = Pipeline::from_iter(0..50_000_u64)
        .map(|x| x * 3)
        .filter(|x| x % 2 == 0)
        .inspect(|_| {})
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    let expected: Vec<u64> = (0..50_000).map(|x| x * 3).filter(|x| x % 2 == 0).collect();
    assert_eq!(done.output, expected);
    assert_eq!(done.report.outcome, Outcome::Completed);
    assert_eq!(done.report.admitted(), 50_000);
    assert_eq!(done.report.delivered(), 25_000);
    assert_eq!(done.report.filtered(), 25_000);
    assert_eq!(done.report.abandoned(), 0);
    done.report.check_conservation().unwrap();
}

#[test]
fn take_cancels_an_endless_source() {
    let rt = runtime();
    let done = Pipeline::from_iter(0_u64..)
        .map(|x| x + 1)
        .take(1_000)
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, (1..=1_000).collect::<Vec<_>>());
    assert_eq!(done.report.outcome, Outcome::Completed);
    done.report.check_conservation().unwrap();
    // The source was asked for no more than the path could hold beyond the 1000.
    assert!(done.report.emitted_by_sources() <= 1_000 + 2 * 1024 + 1024);
}

#[test]
fn graceful_shutdown_drains_everything_accepted() {
    let rt = runtime();
    let (ingress, flow) = Pipeline::ingress::<u64>(8);
    let delivered = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&delivered);
    let running = flow
        .map(|x| x * 2)
        .capacity(4)
        .for_each_async(move |_| {
            let seen = Arc::clone(&seen);
            async move {
                tokio::time::sleep(Duration::from_micros(200)).await;
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
        .capacity(4)
        .run(&rt)
        .unwrap();
    let sender = ingress.clone();
    let producer = std::thread::spawn(move || {
        futures::executor::block_on(async {
            for i in 0..200 {
                sender.send(i).await.unwrap();
            }
        })
    });
    producer.join().unwrap();
    let done = futures::executor::block_on(running.shutdown(Duration::from_secs(30))).unwrap();
    // Every accepted element was delivered, none abandoned.
    assert_eq!(done.report.admitted(), 200);
    assert_eq!(done.report.delivered(), 200);
    assert_eq!(delivered.load(Ordering::SeqCst), 200);
    assert!(
        matches!(done.report.outcome, Outcome::Drained { .. }),
        "{:?}",
        done.report.outcome
    );
    done.report.check_conservation().unwrap();
    // The source no longer accepts anything, and hands the element back.
    assert_eq!(ingress.try_send(7), Err(TrySendError::Closed(7)));
}

#[test]
fn shutdown_deadline_abandons_what_did_not_drain() {
    let rt = runtime();
    let running = Pipeline::from_iter(0_u64..)
        .map(|x| x)
        .capacity(10)
        .for_each_async(|_| std::future::pending())
        .capacity(10)
        .run(&rt)
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let done = futures::executor::block_on(running.shutdown(Duration::from_millis(50))).unwrap();
    assert_eq!(
        done.report.outcome,
        Outcome::DeadlineExceeded { drained: 0 }
    );
    assert_eq!(done.report.delivered(), 0);
    // 10 + 10 on the edges, plus the one element inside the sink's pending future.
    assert_eq!(done.report.abandoned(), 21, "{}", done.report);
    done.report.check_conservation().unwrap();
}

#[test]
fn abort_reports_what_was_abandoned_and_where() {
    let rt = runtime();
    let (runnable, egress) = Pipeline::from_iter(0_u64..)
        .name("numbers")
        .map(|x| x + 1)
        .name("inc")
        .capacity(100)
        .egress(10);
    let running = runnable.name("out").capacity(50).run(&rt).unwrap();
    while running.stats().stages[0].emitted < 160 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let done = futures::executor::block_on(running.abort()).unwrap();
    assert_eq!(done.report.outcome, Outcome::Aborted);
    assert_eq!(done.report.stage("inc").unwrap().abandoned, 100);
    assert_eq!(done.report.stage("out").unwrap().abandoned, 50);
    assert_eq!(done.report.delivered(), 10);
    assert_eq!(egress.len(), 10, "delivered elements stay readable");
    done.report.check_conservation().unwrap();
}

#[test]
fn abort_in_full_flight_conserves_every_element() {
    let rt = runtime();
    for placement in [Placement::Together, Placement::Spread] {
        let running = Pipeline::from_iter(0_u64..)
            .map(|x| x.wrapping_mul(7))
            .filter(|x| x % 3 != 0)
            .chunks(10)
            .flat_map(|chunk| chunk)
            .fold(0_u64, |a, x| a.wrapping_add(x))
            .placement(placement)
            .default_capacity(64)
            .max_batch(16)
            .run(&rt)
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let done = futures::executor::block_on(running.abort()).unwrap();
        assert_eq!(done.report.outcome, Outcome::Aborted);
        assert!(done.report.delivered() > 0);
        done.report.check_conservation().unwrap();
    }
}

#[test]
fn a_panicking_stage_fails_the_pipeline_by_name_and_the_arbiter_survives() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let err = Pipeline::from_iter(0..10_000_u64)
        .map(|x| x + 1)
        .map(|x| {
            if x == 5_000 {
                panic!("bad element {x}")
            } else {
                x
            }
        })
        .name("boom")
        .for_each(drop)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    match &err {
        PipelineError::StageFailed { stage, failure, .. } => {
            assert_eq!(stage, "boom");
            assert_eq!(failure.class(), weir::ErrorClass::Panic);
            assert!(failure.message().contains("bad element 5000"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("stage `boom` failed"));
    let report = err.report().unwrap();
    assert_eq!(report.stage("boom").unwrap().failed, 1);
    assert!(matches!(report.outcome, Outcome::Failed { .. }));
    report.check_conservation().unwrap();

    // The same (only) arbiter still runs pipelines.
    let done = Pipeline::from_iter(0..10_u64)
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output.len(), 10);
}

#[test]
fn a_panicking_sink_fails_the_pipeline() {
    let rt = runtime();
    let err = Pipeline::from_iter(0..100_u64)
        .for_each(|x| assert!(x < 50, "sink rejects {x}"))
        .name("picky")
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    let report = err.report().unwrap();
    assert_eq!(report.stage("picky").unwrap().failed, 1);
    assert_eq!(report.delivered(), 50);
    report.check_conservation().unwrap();
}

#[test]
fn a_controller_stops_the_pipeline_from_another_thread() {
    let rt = runtime();
    let running = Pipeline::from_iter(0_u64..)
        .map(|x| x)
        .for_each(drop)
        .run(&rt)
        .unwrap();
    let controller = running.controller();
    assert!(!controller.is_finished());
    std::thread::spawn(move || {
        while controller.stats().stages.last().unwrap().completed == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        controller.shutdown(Duration::from_secs(5));
    });
    let done = running.wait().unwrap();
    assert!(matches!(done.report.outcome, Outcome::Drained { .. }));
    assert!(done.report.delivered() > 0);
    assert_eq!(done.report.abandoned(), 0);
    done.report.check_conservation().unwrap();
}

#[test]
fn dropping_the_runtime_resolves_running_pipelines_with_an_error() {
    // Regression: stages dropped with their arbiter never reported, and `wait` hung.
    let rt = runtime();
    let running = Pipeline::from_iter(0_u64..)
        .map(|x| x)
        .for_each(drop)
        .run(&rt)
        .unwrap();
    while running.stats().stages[0].emitted == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(rt);
    let err = running.wait().unwrap_err();
    assert!(
        matches!(err, PipelineError::RuntimeStopped { .. }),
        "{err:?}"
    );
}
