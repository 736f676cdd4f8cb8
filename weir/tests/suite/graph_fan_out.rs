//! Fan-out junctions: broadcast (every lag policy), tee, partition, route,
//! partition_by_key, balance. Order per branch, exact counts, backpressure bounds.

use std::sync::{Arc, Mutex};

use crate::common;

use common::*;
use weir::prelude::*;
use weir::sink::Egress;

#[test]
fn broadcast_gives_every_branch_every_element_in_order() {
    let rt = rt1();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..10_000_u64));
    let [a, b, c] = g.broadcast(src, Broadcast::new(3));
    g.name_stage(a, "fanout");
    let b = g.flow(b, |f| f.map(|x| x * 2));
    let (a, b, c) = (collect(&mut g, a), collect(&mut g, b), collect(&mut g, c));
    let done = g.run(&rt).unwrap().wait().unwrap();
    let expected: Vec<u64> = (0..10_000).collect();
    assert_eq!(take(a), expected);
    assert_eq!(take(b), expected.iter().map(|x| x * 2).collect::<Vec<_>>());
    assert_eq!(take(c), expected);
    done.report.check_conservation().unwrap();
    let fanout = done.report.stage("fanout").unwrap();
    assert_eq!((fanout.input, fanout.completed), (10_000, 10_000));
    for port in &fanout.outputs {
        assert_eq!(
            (port.pushed, port.emitted, port.dropped),
            (10_000, 10_000, 0)
        );
    }
}

/// The egress of a branch nobody reads: the sink stalls once its buffer is full.
fn stalled_egress<T: Clone + Send + 'static>(
    g: &mut Graph,
    from: Outlet<T>,
    buffer: usize,
    capacity: usize,
) -> Egress<T> {
    let mut egress = None;
    g.sink(from, |f| {
        let (runnable, e) = f.egress(buffer);
        egress = Some(e);
        runnable.name("stalled").capacity(capacity)
    });
    egress.unwrap()
}

#[test]
fn broadcast_with_a_stalled_blocking_branch_stops_the_source_after_the_exact_bound() {
    actix_rt::System::new().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let mut g = Graph::new();
        let src = g.source(Pipeline::from_iter(0_u64..).name("source"));
        let [a, b, c] = g.broadcast(src, Broadcast::new(3));
        g.name_stage(a, "fanout").capacity_of(a, 5);
        let seen = Arc::new(Mutex::new(0_u64));
        for (i, branch) in [a, b].into_iter().enumerate() {
            let seen = Arc::clone(&seen);
            g.sink(branch, move |f| {
                f.for_each(move |_| *seen.lock().unwrap() += 1)
                    .name(format!("healthy{i}"))
                    .capacity(3)
            });
        }
        let mut egress = stalled_egress(&mut g, c, 11, 13);
        let running = g.run(&rt).unwrap();
        settle().await;

        // The stalled branch holds 13 in its queue and 11 in its egress buffer; the
        // broadcast holds 5 in its input queue; nothing else may be in flight.
        let stats = running.stats();
        let source = stats.stage("source").unwrap();
        assert_eq!(source.emitted, 13 + 11 + 5, "{stats:#?}");
        assert_eq!(source.credit, 0);
        // The healthy branches got exactly what the stalled one got: Block paces
        // every branch by the slowest.
        assert_eq!(*seen.lock().unwrap(), 2 * (13 + 11));
        settle().await;
        assert_eq!(running.stats().stage("source").unwrap().emitted, 29);

        // Draining the stalled branch lets everything move again.
        let mut got = Vec::new();
        for _ in 0..200 {
            got.push(egress.recv().await.unwrap());
        }
        assert_eq!(got, (0..200).collect::<Vec<u64>>());
        assert!(running.stats().stage("source").unwrap().emitted > 200);
        let _ = running.abort().await;
    });
}

#[test]
fn detached_branch_drops_exactly_what_it_missed_and_reattaches() {
    const N: u64 = 200_000;
    actix_rt::System::new().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let mut g = Graph::new();
        let src = g.source(Pipeline::from_iter(0..N));
        let policy = LagPolicy::Detach {
            max_lag: 64,
            max_wait: None,
        };
        let [healthy, slow] = g.broadcast(src, Broadcast::new(2).lag(1, policy));
        g.name_stage(healthy, "fanout");
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let healthy = g.flow(healthy, move |f| {
            f.inspect(move |_| {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
        });
        let healthy = collect(&mut g, healthy);
        let mut egress = stalled_egress(&mut g, slow, 8, 16);
        let running = g.run(&rt).unwrap();
        // The slow branch reads nothing until the healthy one has seen 2 000
        // elements, then everything.
        while seen.load(std::sync::atomic::Ordering::Relaxed) < 2_000 {
            tokio::task::yield_now().await;
        }
        let mut slow_got = Vec::new();
        while let Some(x) = egress.recv().await {
            slow_got.push(x);
        }
        let done = running.await.unwrap();
        let healthy = take(healthy);
        assert_eq!(
            healthy,
            (0..N).collect::<Vec<_>>(),
            "the healthy branch lost nothing"
        );
        let fanout = done.report.stage("fanout").unwrap();
        let port = &fanout.outputs[1];
        assert_eq!(port.pushed, N);
        assert_eq!(port.emitted as usize, slow_got.len());
        assert_eq!(
            port.dropped,
            N - slow_got.len() as u64,
            "drops = what it missed"
        );
        assert!(port.detached >= 1, "{port:?}");
        assert!(
            slow_got.len() > 16 + 8 + 64,
            "it re-attached after catching up: got {}",
            slow_got.len()
        );
        assert!(slow_got.windows(2).all(|w| w[0] < w[1]), "order kept");
        assert_eq!(fanout.outputs[0].dropped, 0);
        done.report.check_conservation().unwrap();
    });
}

#[test]
fn drop_newest_and_drop_oldest_keep_order_and_count_every_drop() {
    for policy in [
        LagPolicy::DropNewest { buffer: 10 },
        LagPolicy::DropOldest { buffer: 10 },
        LagPolicy::DropOldest { buffer: 0 },
    ] {
        actix_rt::System::new().block_on(async {
            let rt = Runtime::from_current().unwrap();
            let mut g = Graph::new();
            let src = g.source(Pipeline::from_iter(0..5_000_u64));
            let dlq = MemoryDlq::new(10_000);
            let [fast, slow] = g.broadcast(
                src,
                Broadcast::new(2).lag(1, policy).dead_letters(dlq.clone()),
            );
            g.name_stage(fast, "fanout");
            let fast = collect(&mut g, fast);
            let mut egress = stalled_egress(&mut g, slow, 4, 4);
            let running = g.run(&rt).unwrap();
            settle().await;
            let mut slow_got = Vec::new();
            while let Some(x) = egress.recv().await {
                slow_got.push(x);
            }
            let done = running.await.unwrap();
            assert_eq!(
                take(fast).len(),
                5_000,
                "{policy:?}: the fast branch is not slowed"
            );
            let port = &done.report.stage("fanout").unwrap().outputs[1];
            assert_eq!(port.emitted as usize, slow_got.len(), "{policy:?}");
            assert_eq!(port.pushed, port.emitted + port.dropped, "{policy:?}");
            assert!(port.dropped > 0, "{policy:?}: the slow branch missed some");
            assert_eq!(
                dlq.len() as u64,
                port.dropped,
                "{policy:?}: every drop dead-lettered"
            );
            assert!(slow_got.windows(2).all(|w| w[0] < w[1]), "{policy:?}");
            let mut lettered: Vec<u64> =
                dlq.drain().into_iter().map(|l| l.into_element()).collect();
            lettered.extend(&slow_got);
            lettered.sort_unstable();
            assert_eq!(
                lettered,
                (0..5_000).collect::<Vec<_>>(),
                "{policy:?}: delivered + dropped = all"
            );
            if matches!(policy, LagPolicy::DropOldest { buffer: 10 }) {
                // Drop-oldest keeps the newest: the last element reaches the branch.
                assert_eq!(slow_got.last(), Some(&4_999));
            }
            if matches!(policy, LagPolicy::DropNewest { .. }) {
                // Drop-newest keeps what came first.
                assert_eq!(&slow_got[..5], &[0, 1, 2, 3, 4]);
            }
            done.report.check_conservation().unwrap();
        });
    }
}

#[test]
fn a_cancelled_branch_does_not_stop_the_others() {
    let rt = rt1();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..1_000_u64));
    let [a, b] = g.broadcast(src, Broadcast::new(2));
    g.name_stage(a, "fanout");
    let a = g.sink(a, |f| f.take(5).collect());
    let b = collect(&mut g, b);
    let done = g.run(&rt).unwrap().wait().unwrap();
    assert_eq!(take(a), vec![0, 1, 2, 3, 4]);
    assert_eq!(take(b).len(), 1_000);
    let port = &done.report.stage("fanout").unwrap().outputs[0];
    assert_eq!(port.pushed, 1_000);
    assert_eq!(port.pushed, port.emitted + port.dropped);
    done.report.check_conservation().unwrap();
}

#[test]
fn tee_sends_a_copy_to_the_side_branch() {
    let rt = rt1();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..100_u64));
    let (main, side) = g.tee(src, LagPolicy::Block);
    let main = g.flow(main, |f| f.map(|x| x + 1));
    let (main, side) = (collect(&mut g, main), collect(&mut g, side));
    g.run(&rt).unwrap().wait().unwrap();
    assert_eq!(take(main), (1..101).collect::<Vec<_>>());
    assert_eq!(take(side), (0..100).collect::<Vec<_>>());
}

#[test]
fn partition_route_and_partition_by_key_send_each_element_to_exactly_one_branch() {
    let rt = rt1();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..3_000_u64));
    let [evens, odds] = g.partition(src, |x: &u64| (x % 2) as usize);
    let [small, mid, rest] = g.route(
        odds,
        vec![Box::new(|x: &u64| *x < 100), Box::new(|x: &u64| *x < 1_000)],
    );
    let shards: [Outlet<u64>; 4] = g.partition_by_key(evens, |x: &u64| x % 10);
    let shards = shards.map(|s| collect(&mut g, s));
    let (small, mid, rest) = (
        collect(&mut g, small),
        collect(&mut g, mid),
        collect(&mut g, rest),
    );
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();

    let (small, mid, rest) = (take(small), take(mid), take(rest));
    assert_eq!(small, (1..100).step_by(2).collect::<Vec<_>>());
    assert_eq!(mid, (101..1_000).step_by(2).collect::<Vec<_>>());
    assert_eq!(rest, (1_001..3_000).step_by(2).collect::<Vec<_>>());
    let shards: Vec<Vec<u64>> = shards.into_iter().map(take).collect();
    let mut all: Vec<u64> = shards.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..3_000).step_by(2).collect::<Vec<_>>());
    for (i, shard) in shards.iter().enumerate() {
        assert!(shard.windows(2).all(|w| w[0] < w[1]), "shard {i} in order");
        for other in shards.iter().skip(i + 1) {
            // Equal keys never land on two shards.
            assert!(shard.iter().all(|x| other.iter().all(|y| x % 10 != y % 10)));
        }
    }
}

#[test]
fn a_partition_picking_a_missing_branch_fails_naming_the_stage() {
    let rt = rt1();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..10_u64));
    let [a, b] = g.partition(src, |x: &u64| if *x == 7 { 5 } else { 0 });
    g.name_stage(a, "splitter");
    let (_a, _b) = (collect(&mut g, a), collect(&mut g, b));
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`splitter`") && msg.contains("picked branch 5"),
        "{msg}"
    );
    // A typed error, not a panic: the pick is user input.
    match &err {
        PipelineError::StageFailed { failure, .. } => {
            assert_eq!(failure.class(), ErrorClass::Permanent, "{failure}");
        }
        other => panic!("expected StageFailed, got {other:?}"),
    }
    err.report().unwrap().check_conservation().unwrap();
}

#[test]
fn balance_spreads_work_and_loses_nothing() {
    for strategy in [BalanceStrategy::RoundRobin, BalanceStrategy::LeastLoaded] {
        let rt = rt1();
        let mut g = Graph::new();
        let src = g.source(Pipeline::from_iter(0..20_000_u64));
        let branches: [Outlet<u64>; 3] = g.balance(src, Balance::new(strategy));
        let outs = branches.map(|b| collect(&mut g, b));
        let done = g.run(&rt).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        let outs: Vec<Vec<u64>> = outs.into_iter().map(take).collect();
        let mut all: Vec<u64> = outs.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..20_000).collect::<Vec<_>>(), "{strategy:?}");
        for out in &outs {
            assert!(!out.is_empty(), "{strategy:?}: every branch got work");
            assert!(
                out.windows(2).all(|w| w[0] < w[1]),
                "{strategy:?}: order per branch"
            );
        }
    }
}

/// An element whose `clone` panics for one value.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Brittle(u64);

impl Clone for Brittle {
    fn clone(&self) -> Self {
        assert!(self.0 != 5, "clone of 5");
        Brittle(self.0)
    }
}

#[test]
fn a_panicking_clone_in_a_blocking_broadcast_keeps_the_counts_exact() {
    let rt = rt1();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter((0..10_u64).map(Brittle)));
    let [a, b] = g.broadcast(src, Broadcast::new(2));
    g.name_stage(a, "fanout");
    let (_a, _b) = (collect(&mut g, a), collect(&mut g, b));
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("`fanout`"), "{err}");
    err.report().unwrap().check_conservation().unwrap();
}

#[test]
fn a_panicking_partition_function_counts_nothing_twice() {
    let rt = rt1();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..10_u64));
    let [a, b] = g.partition(src, |x: &u64| {
        assert!(*x != 5, "boom");
        0
    });
    g.name_stage(a, "part");
    let (_a, _b) = (collect(&mut g, a), collect(&mut g, b));
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    let part = report.stage("part").unwrap();
    // The function runs before the element is taken: nothing was in hand.
    assert_eq!(part.failed, 0, "{part:?}");
    let counted: u64 = report
        .stages
        .iter()
        .map(|s| s.failed + s.abandoned)
        .sum::<u64>()
        + report.delivered();
    assert_eq!(
        counted,
        report.admitted(),
        "each element counted once: {report}"
    );
}

#[test]
fn the_partition_function_runs_once_per_element_even_under_backpressure() {
    let rt = rt1();
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let mut turn = 0_u64;
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..2_000_u64));
    let [a, b] = g.partition(src, move |_: &u64| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        turn += 1;
        (turn % 2) as usize
    });
    let a = g.sink(a, |f| {
        f.map_async(1, |x| async move {
            tokio::time::sleep(std::time::Duration::from_micros(50)).await;
            x
        })
        .capacity(4)
        .fold(0_u64, |n, _| n + 1)
    });
    let b = g.sink(b, |f| f.fold(0_u64, |n, _| n + 1));
    g.run(&rt).unwrap().wait().unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2_000);
    // A stateful (round-robin) pick splits exactly.
    assert_eq!((take(a), take(b)), (1_000, 1_000));
}

#[test]
fn detach_keeps_what_the_branch_had_credit_for() {
    let rt = rt1();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..100_u64));
    let policy = LagPolicy::Detach {
        max_lag: 4,
        max_wait: None,
    };
    let [a, b] = g.broadcast(src, Broadcast::new(2).lag(1, policy));
    g.name_stage(a, "fanout");
    let _a = collect(&mut g, a);
    let side = g.sink(b, |f| f.collect().capacity(4));
    let done = g.run(&rt).unwrap().wait().unwrap();
    let side = take(side);
    assert!(side.len() >= 4, "got {side:?}");
    assert_eq!(
        &side[..4],
        &[0, 1, 2, 3],
        "the first elements it had credit for"
    );
    let port = &done.report.stage("fanout").unwrap().outputs[1];
    assert_eq!(port.dropped + side.len() as u64, 100);
    done.report.check_conservation().unwrap();
}

#[test]
fn dead_letters_of_dropped_elements_carry_their_own_position() {
    for policy in [
        LagPolicy::DropOldest { buffer: 4 },
        LagPolicy::DropNewest { buffer: 4 },
        LagPolicy::Detach {
            max_lag: 4,
            max_wait: None,
        },
    ] {
        let rt = rt1();
        let dlq = MemoryDlq::new(1_000);
        let mut g = Graph::new();
        let src = g.source(Pipeline::from_iter(0..500_u64));
        let [a, b] = g.broadcast(
            src,
            Broadcast::new(2).lag(1, policy).dead_letters(dlq.clone()),
        );
        let _a = collect(&mut g, a);
        let _b = g.sink(b, |f| f.collect().capacity(4));
        g.run(&rt).unwrap().wait().unwrap();
        let letters = dlq.drain();
        assert!(!letters.is_empty(), "{policy:?}");
        for letter in letters {
            assert_eq!(letter.element_index, letter.element, "{policy:?}");
        }
    }
}

#[test]
fn a_lag_policy_for_a_missing_branch_is_reported_as_such() {
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..3_u64));
    let [a, b] = g.broadcast(
        src,
        Broadcast::new(2).lag(2, LagPolicy::DropNewest { buffer: 1 }),
    );
    let (_a, _b) = (collect(&mut g, a), collect(&mut g, b));
    let msg = g.run(&rt1()).unwrap_err().to_string();
    assert!(
        msg.contains("a lag policy was set for branch 2, but the broadcast has 2"),
        "{msg}"
    );
}
