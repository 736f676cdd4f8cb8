//! Dynamic hubs: subscribers and producers that come and go while a pipeline runs.
//! Exact counts, exact backpressure bounds, order per subscriber and per producer,
//! completion and abort, conservation in every report.

use crate::common;

use std::time::Duration;

use common::settle;
use weir::hub::{HubClosed, SubscribeError};
use weir::prelude::*;
use weir::source::TrySendError;

static_assertions::assert_impl_all!(BroadcastHub<u64>: Send, Sync, Clone);
static_assertions::assert_impl_all!(Subscriber<u64>: Send, Sync, futures::Stream);
static_assertions::assert_impl_all!(MergeHub<u64>: Send, Sync, Clone);
static_assertions::assert_impl_all!(Producer<u64>: Send, Sync, Clone);

/// A single-threaded actix System: every stage and every task of the test runs on
/// it, so `settle` leaves the pipeline exactly where it stops.
fn system() -> actix_rt::SystemRunner {
    actix_rt::System::new()
}

/// The same, on a paused tokio clock that moves only with `tokio::time::advance`.
fn paused_system() -> actix_rt::SystemRunner {
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    })
}

async fn recv_n<T>(sub: &mut Subscriber<T>, n: usize) -> Vec<T> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(sub.recv().await.expect("the hub is still running"));
    }
    got
}

/// Every element is counted once at the hub's sink, and the hub's own counts
/// agree with the report.
fn check_hub_report(report: &Report, sink: &str, hub: &BroadcastHub<u64>) {
    report.check_conservation().unwrap();
    let s = report.stage(sink).unwrap();
    let stats = hub.stats();
    assert_eq!(s.completed, stats.delivered, "{s:?}");
    assert_eq!(s.filtered, stats.unclaimed, "{s:?}");
}

#[test]
fn a_late_subscriber_receives_only_what_is_published_after_it_subscribed() {
    system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (ingress, flow) = Pipeline::ingress::<u64>(8);
        let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
        let running = runnable.name("hub").run(&rt).unwrap();
        let mut early = hub.subscribe(64, LagPolicy::Block).unwrap();
        for i in 0..10 {
            ingress.send(i).await.unwrap();
        }
        // Read back: all ten are published before the second subscriber exists.
        assert_eq!(recv_n(&mut early, 10).await, (0..10).collect::<Vec<_>>());

        let mut late = hub.subscribe(64, LagPolicy::Block).unwrap();
        assert_eq!(hub.subscribers(), 2);
        for i in 10..20 {
            ingress.send(i).await.unwrap();
        }
        assert_eq!(recv_n(&mut late, 10).await, (10..20).collect::<Vec<_>>());
        assert_eq!(recv_n(&mut early, 5).await, (10..15).collect::<Vec<_>>());

        // Leaving while running: its buffered five go with it; the hub goes on.
        let early_stats = early.unsubscribe();
        assert_eq!(
            (
                early_stats.offered,
                early_stats.received,
                early_stats.dropped,
                early_stats.buffered
            ),
            (20, 15, 0, 5)
        );
        assert_eq!(hub.subscribers(), 1);
        for i in 20..25 {
            ingress.send(i).await.unwrap();
        }
        drop(ingress);
        let mut rest = Vec::new();
        while let Some(x) = late.recv().await {
            rest.push(x);
        }
        assert_eq!(rest, (20..25).collect::<Vec<_>>());
        assert_eq!(late.end(), Some(HubEnd::Completed));
        let stats = late.stats();
        assert_eq!((stats.offered, stats.received, stats.dropped), (15, 15, 0));

        let done = running.await.unwrap();
        assert_eq!(done.report.outcome, Outcome::Completed);
        check_hub_report(&done.report, "hub", &hub);
        let sink = done.report.stage("hub").unwrap();
        assert_eq!((sink.input, sink.completed, sink.filtered), (25, 25, 0));
    });
}

#[test]
fn a_stalled_block_subscriber_stops_the_source_after_its_buffer_plus_the_sink_queue() {
    system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (runnable, hub) = Pipeline::from_iter(0_u64..)
            .name("source")
            .broadcast_hub(NoSubscriber::Wait);
        let running = runnable
            .name("hub")
            .default_capacity(3)
            .max_batch(2)
            .run(&rt)
            .unwrap();

        // No subscriber yet: the sink waits, holding its input queue (3).
        settle().await;
        assert_eq!(running.stats().stage("source").unwrap().emitted, 3);
        assert_eq!(hub.stats().delivered, 0);

        let mut stalled = hub.subscribe(4, LagPolicy::Block).unwrap();
        let fast = hub.subscribe(100, LagPolicy::Block).unwrap();
        let reader = actix_rt::spawn(async move {
            let mut fast = fast;
            let got = recv_n(&mut fast, 3_000).await;
            (got, fast.unsubscribe())
        });
        settle().await;
        // The stalled subscriber's buffer (4) plus the sink's input queue (3).
        let stats = running.stats();
        assert_eq!(stats.stage("source").unwrap().emitted, 4 + 3, "{stats:#?}");
        assert_eq!(stalled.len(), 4);
        assert_eq!(hub.stats().delivered, 4, "Block paces every subscriber");
        settle().await;
        assert_eq!(running.stats().stage("source").unwrap().emitted, 7);

        // Reading lets everything move again, in order.
        assert_eq!(
            recv_n(&mut stalled, 200).await,
            (0..200).collect::<Vec<_>>()
        );
        // Leaving releases the hub for good: the fast one runs ahead alone.
        drop(stalled);
        settle().await;
        assert!(hub.stats().delivered > 1_000);

        // With the last handle and the last subscriber gone, the hub finishes.
        drop(hub);
        let done = running.await.unwrap();
        let (got, fast) = reader.await.unwrap();
        assert_eq!(got, (0..3_000).collect::<Vec<_>>());
        let report = &done.report;
        report.check_conservation().unwrap();
        assert_eq!(report.outcome, Outcome::Completed);
        // The fast subscriber blocks and never drops: it was offered every
        // published element.
        let sink = report.stage("hub").unwrap();
        assert_eq!(sink.completed, fast.offered);
        assert_eq!(fast.offered, fast.received + fast.buffered as u64);
    });
}

#[test]
fn drop_subscribers_lose_only_their_own_elements_and_count_every_drop() {
    const N: u64 = 5_000;
    system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (runnable, hub) = Pipeline::from_iter(0..N).broadcast_hub(NoSubscriber::Wait);
        let fast = hub.subscribe(16, LagPolicy::Block).unwrap();
        // Two that never read while the pipeline runs, one that reads slowly.
        let newest = hub
            .subscribe(4, LagPolicy::DropNewest { buffer: 4 })
            .unwrap();
        let oldest = hub
            .subscribe(4, LagPolicy::DropOldest { buffer: 4 })
            .unwrap();
        let slow = hub
            .subscribe(2, LagPolicy::DropOldest { buffer: 0 })
            .unwrap();
        let running = runnable.name("hub").run(&rt).unwrap();
        let fast = actix_rt::spawn(async move {
            let mut fast = fast;
            let mut got = Vec::new();
            while let Some(x) = fast.recv().await {
                got.push(x);
            }
            got
        });
        let slow = actix_rt::spawn(async move {
            let mut slow = slow;
            let mut got = Vec::new();
            while let Some(x) = slow.recv().await {
                got.push(x);
                for _ in 0..20 {
                    tokio::task::yield_now().await;
                }
            }
            (got, slow.stats())
        });
        let done = running.await.unwrap();
        assert_eq!(fast.await.unwrap(), (0..N).collect::<Vec<_>>());

        // DropNewest keeps the first 4 + 4, DropOldest the last 4 + 4.
        for (sub, kept) in [(newest, 0..8), (oldest, N - 8..N)] {
            let stats = sub.stats();
            assert_eq!(
                (stats.offered, stats.dropped, stats.buffered),
                (N, N - 8, 8)
            );
            let got: Vec<u64> = futures::executor::block_on(futures::StreamExt::collect(sub));
            assert_eq!(got, kept.collect::<Vec<_>>());
        }
        let (got, stats) = slow.await.unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(got.last(), Some(&(N - 1)), "DropOldest keeps the newest");
        assert_eq!(stats.received, got.len() as u64);
        assert_eq!(stats.received + stats.dropped, N);
        assert!(stats.dropped > 0, "the slow reader fell behind");

        check_hub_report(&done.report, "hub", &hub);
        let sink = done.report.stage("hub").unwrap();
        assert_eq!((sink.completed, sink.filtered), (N, 0));
    });
}

#[test]
fn elements_nobody_takes_are_counted_as_filtered() {
    system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (runnable, hub) = Pipeline::from_iter(0..100_u64).broadcast_hub(NoSubscriber::Drop);
        let (ingress, flow) = Pipeline::ingress::<u64>(4);
        let (gate, gate_hub) = flow.broadcast_hub(NoSubscriber::Wait);
        // Nobody subscribed: every element is dropped, counted at the sink.
        let done = runnable.name("hub").run(&rt).unwrap().await.unwrap();
        check_hub_report(&done.report, "hub", &hub);
        assert_eq!(done.report.stage("hub").unwrap().filtered, 100);
        assert_eq!(hub.stats().unclaimed, 100);

        // A subscriber whose policy drops everything past its one place.
        let running = gate.name("hub").run(&rt).unwrap();
        let mut one = gate_hub
            .subscribe(1, LagPolicy::DropNewest { buffer: 0 })
            .unwrap();
        for i in 0..10 {
            ingress.send(i).await.unwrap();
        }
        drop(ingress);
        let done = running.await.unwrap();
        check_hub_report(&done.report, "hub", &gate_hub);
        let sink = done.report.stage("hub").unwrap();
        assert_eq!((sink.completed, sink.filtered), (1, 9));
        assert_eq!(one.recv().await, Some(0));
        assert_eq!(one.recv().await, None);
        assert_eq!(one.stats().dropped, 9);
    });
}

#[test]
fn subscribers_drain_then_end_and_a_subscriber_after_the_end_ends_at_once() {
    system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (runnable, hub) = Pipeline::from_iter(0..5_u64).broadcast_hub(NoSubscriber::Wait);
        let mut sub = hub.subscribe(8, LagPolicy::Block).unwrap();
        let done = runnable.run(&rt).unwrap().await.unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(hub.end(), Some(HubEnd::Completed));
        assert_eq!(sub.end(), Some(HubEnd::Completed));
        assert_eq!(sub.len(), 5, "the buffer outlives the pipeline");
        assert_eq!(sub.try_recv(), Some(0));
        assert_eq!(recv_n(&mut sub, 4).await, [1, 2, 3, 4]);
        assert_eq!(sub.recv().await, None);
        assert_eq!(sub.try_recv(), None);

        let mut after = hub.subscribe(8, LagPolicy::Block).unwrap();
        assert_eq!(after.recv().await, None);
        assert_eq!(after.stats().offered, 0);
        assert_eq!(
            hub.subscribe(0, LagPolicy::Block).unwrap_err(),
            SubscribeError::ZeroCapacity
        );
    });
}

#[test]
fn an_abort_ends_subscribers_as_stopped_after_what_they_hold() {
    system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (ingress, flow) = Pipeline::ingress::<u64>(8);
        let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
        let running = runnable.name("hub").default_capacity(2).run(&rt).unwrap();
        let mut sub = hub.subscribe(3, LagPolicy::Block).unwrap();
        for i in 0..8 {
            ingress.send(i).await.unwrap();
        }
        settle().await;
        // 3 in the subscriber, 2 in the sink's queue, 3 in the ingress buffer.
        assert_eq!(sub.len(), 3);
        let done = running.abort().await.unwrap();
        let report = &done.report;
        report.check_conservation().unwrap();
        assert_eq!(report.outcome, Outcome::Aborted);
        let sink = report.stage("hub").unwrap();
        assert_eq!((sink.completed, sink.abandoned), (3, 2));
        assert_eq!(report.stage("ingress#0").unwrap().abandoned, 3);

        assert_eq!(sub.end(), Some(HubEnd::Stopped));
        assert_eq!(recv_n(&mut sub, 3).await, [0, 1, 2]);
        assert_eq!(sub.recv().await, None);
        assert_eq!(
            ingress.try_send(9),
            Err(TrySendError::Closed(9)),
            "the pipeline is gone"
        );
    });
}

#[test]
fn dropping_every_handle_and_subscriber_finishes_the_hub() {
    system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (runnable, hub) = Pipeline::from_iter(0_u64..).broadcast_hub(NoSubscriber::Wait);
        let running = runnable.name("hub").default_capacity(4).run(&rt).unwrap();
        let mut sub = hub.subscribe(2, LagPolicy::Block).unwrap();
        assert_eq!(recv_n(&mut sub, 5).await, [0, 1, 2, 3, 4]);
        drop(hub);
        settle().await;
        assert!(!running.stats().finished, "a subscriber is left");
        drop(sub);
        let done = running.await.unwrap();
        let report = &done.report;
        report.check_conservation().unwrap();
        assert_eq!(report.outcome, Outcome::Completed);
        let sink = report.stage("hub").unwrap();
        assert_eq!(sink.completed, 5 + 2, "read, and left in the subscriber");
        assert_eq!(sink.abandoned, 4, "the sink's queue");
    });
}

#[test]
fn detach_drops_what_waits_beyond_the_buffer_after_max_wait_then_reattaches() {
    paused_system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (ingress, flow) = Pipeline::ingress::<u64>(8);
        let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
        let running = runnable.name("hub").run(&rt).unwrap();
        let policy = LagPolicy::Detach {
            max_lag: 3,
            max_wait: Some(Duration::from_millis(100)),
        };
        let mut sub = hub.subscribe(2, policy).unwrap();
        for i in 0..4 {
            ingress.send(i).await.unwrap();
        }
        settle().await;
        // Two beyond its capacity of 2, waiting since now.
        assert_eq!(sub.stats().buffered, 4);
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(!sub.stats().detached);
        tokio::time::advance(Duration::from_millis(1)).await;
        let stats = sub.stats();
        assert!(stats.detached);
        assert_eq!(
            (stats.buffered, stats.dropped, stats.detachments),
            (2, 2, 1)
        );

        // Detached: everything is dropped until it has caught up.
        ingress.send(4).await.unwrap();
        settle().await;
        assert_eq!(sub.stats().dropped, 3);
        assert_eq!(recv_n(&mut sub, 2).await, [0, 1]);
        assert!(!sub.stats().detached, "an empty buffer reattaches");
        for i in 5..8 {
            ingress.send(i).await.unwrap();
        }
        settle().await;
        assert_eq!(recv_n(&mut sub, 3).await, [5, 6, 7]);

        // Past capacity + max_lag it detaches at once, without waiting.
        for i in 8..14 {
            ingress.send(i).await.unwrap();
        }
        settle().await;
        let stats = sub.stats();
        assert_eq!((stats.detachments, stats.buffered), (2, 2));
        drop(ingress);
        assert_eq!(recv_n(&mut sub, 2).await, [8, 9]);
        assert_eq!(sub.recv().await, None);
        let stats = sub.stats();
        assert_eq!(stats.offered, stats.received + stats.dropped);
        assert_eq!((stats.offered, stats.received, stats.dropped), (14, 7, 7));
        let done = running.await.unwrap();
        check_hub_report(&done.report, "hub", &hub);
    });
}

#[test]
fn producers_attach_at_run_time_from_threads_and_the_source_ends_when_closed_and_detached() {
    const PER: u64 = 2_000;
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (hub, flow) = MergeHub::<(u64, u64)>::source(16);
    let running = flow.collect().default_capacity(8).run(&rt).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|p| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                // Attached on its own thread, after the pipeline started.
                let producer = hub.attach().unwrap();
                for i in 0..PER {
                    futures::executor::block_on(producer.send((p, i))).unwrap();
                }
                producer.sent()
            })
        })
        .collect();
    let sent: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(sent, 4 * PER);
    // Every producer is gone, but the hub is open: the source keeps running.
    let start = std::time::Instant::now();
    while running.stats().stage("merge_hub#0").unwrap().emitted < 4 * PER {
        assert!(start.elapsed() < Duration::from_secs(5), "not all emitted");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(hub.producers(), 0);
    assert!(hub.is_open());
    assert!(!running.stats().finished);
    // A producer can still come, until the hub is closed.
    let late = hub.attach().unwrap();
    late.try_send((9, 0)).unwrap();
    hub.close();
    assert_eq!(hub.attach().unwrap_err(), HubClosed);
    late.try_send((9, 1)).unwrap();
    assert_eq!(hub.producers(), 1);
    drop(late);

    let done = running.wait().unwrap();
    let report = &done.report;
    report.check_conservation().unwrap();
    assert_eq!(hub.accepted(), 4 * PER + 2);
    assert_eq!(report.stage("merge_hub#0").unwrap().input, hub.accepted());
    assert_eq!(done.output.len() as u64, hub.accepted());
    for p in [0, 1, 2, 3, 9] {
        let mine: Vec<u64> = done
            .output
            .iter()
            .filter(|x| x.0 == p)
            .map(|x| x.1)
            .collect();
        let n = if p == 9 { 2 } else { PER };
        assert_eq!(mine, (0..n).collect::<Vec<_>>(), "producer {p} in order");
    }
}

#[test]
fn accepted_elements_are_never_lost_on_abort() {
    system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (hub, flow) = MergeHub::<u64>::source(2);
        let running = flow
            .for_each_async(|_| std::future::pending())
            .default_capacity(1)
            .run(&rt)
            .unwrap();
        let a = hub.attach().unwrap();
        let b = a.clone();
        assert_eq!(hub.producers(), 2);
        let mut accepted = 0;
        for i in 0..10 {
            let producer = if i % 2 == 0 { &a } else { &b };
            if producer.try_send(i).is_ok() {
                accepted += 1;
            }
            settle().await;
        }
        // One in the sink's future, one in its queue, two in the hub's buffer.
        assert_eq!(accepted, 4);
        assert_eq!(a.sent() + b.sent(), 4);
        let done = running.abort().await.unwrap();
        let report = &done.report;
        report.check_conservation().unwrap();
        let source = report.stage("merge_hub#0").unwrap();
        assert_eq!((source.input, source.abandoned), (4, 2));
        assert_eq!(hub.accepted(), 4);
        assert!(a.is_closed());
        assert_eq!(a.send(7).await.unwrap_err().0, 7);
        assert!(!hub.is_open());
        assert_eq!(hub.attach().unwrap_err(), HubClosed);
    });
}

/// Producers on threads race an abort: every element a producer was told was
/// accepted is in the report (delivered or abandoned at the source), also one
/// whose slot was taken just before the source stopped.
#[test]
fn every_element_accepted_around_an_abort_is_counted() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    for round in 0..20_u64 {
        let (hub, flow) = MergeHub::<u64>::source(8);
        let running = flow.for_each(|_| {}).run(&rt).unwrap();
        let producers: Vec<_> = (0..3)
            .map(|_| {
                let producer = hub.attach().unwrap();
                std::thread::spawn(move || {
                    loop {
                        match producer.try_send(1) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => std::thread::yield_now(),
                            Err(TrySendError::Closed(_)) => break producer.sent(),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(200 * round));
        let report = match futures::executor::block_on(running.abort()) {
            Ok(done) => done.report,
            Err(e) => e.report().unwrap().clone(),
        };
        let sent: u64 = producers.into_iter().map(|t| t.join().unwrap()).sum();
        report.check_conservation().unwrap();
        let source = report.stage("merge_hub#0").unwrap();
        assert_eq!(source.input, sent, "round {round}: {source:?}");
        assert_eq!(hub.accepted(), sent);
    }
}

#[test]
fn zero_capacity_merge_hub_is_rejected_naming_the_stage() {
    let (_hub, flow) = MergeHub::<u64>::source(0);
    let err = flow.collect().run(&common::rt1()).unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "merge_hub#0"),
        "{err:?}"
    );
}
