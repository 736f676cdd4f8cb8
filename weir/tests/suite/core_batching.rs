//! Batching without latency: batches grow under load and shrink to one element at
//! idle, with no linger timer.

use weir::prelude::*;

#[test]
fn idle_elements_travel_alone() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    let (runnable, mut egress) = flow.map(|x| x + 1).filter(|_| true).egress(16);
    let running = runnable.run(&rt).unwrap();
    futures::executor::block_on(async {
        for i in 0..200 {
            ingress.send(i).await.unwrap();
            // Each element comes out before the next goes in: no timer held it back.
            assert_eq!(egress.recv().await, Some(i + 1));
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    for stage in done.report.stages.iter().filter(|s| !s.is_sink) {
        assert_eq!(stage.largest_batch, 1, "{stage:?}");
        assert_eq!(stage.batches, 200);
    }
}

#[test]
fn batches_grow_under_load() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let done = Pipeline::from_iter(0..200_000_u64)
        .map(|x| x + 1)
        .map(|x| x * 2)
        .fold(0_u64, |a, x| a.wrapping_add(x))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    for stage in done.report.stages.iter().filter(|s| !s.is_sink) {
        assert!(stage.mean_batch() > 100.0, "{stage:?}");
        assert!(stage.largest_batch <= weir::DEFAULT_CAPACITY);
    }
}

#[test]
fn max_batch_caps_every_batch_and_loses_nothing() {
    // Regression: with queues longer than the batch limit, a filter once reported
    // itself finished while inputs were still waiting and dropped them.
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    for placement in [Placement::Together, Placement::Spread] {
        let done = Pipeline::from_iter(0..20_000_u64)
            .map(|x| x)
            .filter(|x| x % 2 == 0)
            .map(|x| x)
            .collect()
            .default_capacity(64)
            .max_batch(8)
            .placement(placement)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(
            done.output,
            (0..20_000).filter(|x| x % 2 == 0).collect::<Vec<_>>()
        );
        assert_eq!(done.report.abandoned(), 0);
        for stage in done.report.stages.iter().filter(|s| !s.is_sink) {
            assert!(stage.largest_batch <= 8, "{stage:?}");
        }
    }
}
