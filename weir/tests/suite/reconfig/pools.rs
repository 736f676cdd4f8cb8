//! Resizing pools and reconfiguring a partition while elements flow.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::task::Context;

use weir::operator::{Io, Operator, Step};
use weir::prelude::*;

/// An ordered pool resized up and down while elements flow: every element
/// arrives once, in input order; an element sent after a resize was acknowledged
/// is dispatched under that size or a later one, so it goes to a replica below
/// the largest of them (each replica tags its results with its index; the last
/// sizes shrink, so the last chunk must go to replica 0 alone); the grown replicas
/// take work; the size changes are recorded as configs of the dispatch stage.
#[test]
fn an_ordered_pool_resizes_up_and_down_under_load() {
    const PER_SIZE: u64 = 5_000;
    let sizes = [1_usize, 4, 2, 3, 1, 4, 2, 1];
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let size = ConfigHandle::<usize>::new();
    let ids = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut g = Graph::new();
    let (ingress, flow) = Pipeline::ingress::<u64>(256);
    let numbers = g.source(flow);
    let pool = Pool::new(sizes[0])
        .ordered()
        .name("work")
        .replica_capacity(16)
        .resizable(4, &size);
    let out = g.pool_map(numbers, pool, move || {
        // Replicas are built in index order: replica k gets the id k.
        let id = ids.fetch_add(1, SeqCst);
        move |x: u64| (x, id)
    });
    let out = g.sink(out, |f| f.collect());
    let running = g.run(&rt).unwrap();
    futures::executor::block_on(async {
        for (c, &n) in sizes.iter().enumerate() {
            if c > 0 {
                let applied = size.reconfigure(n).await.unwrap();
                assert_eq!(
                    (applied.stage.as_str(), applied.generation),
                    ("work.dispatch", c as u64)
                );
            }
            for x in c as u64 * PER_SIZE..(c as u64 + 1) * PER_SIZE {
                if let Err(TrySendError::Full(x)) = ingress.try_send(x) {
                    ingress.send(x).await.unwrap();
                }
            }
        }
        // Out of range: rejected, the size in force stays.
        let err = size.reconfigure(5).await.unwrap_err();
        assert!(err.to_string().contains("outside 1..=4"), "{err}");
        assert!(size.reconfigure(0).await.is_err());
    });
    drop(ingress);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    let output = futures::executor::block_on(out).unwrap();
    let total = sizes.len() as u64 * PER_SIZE;
    assert_eq!(output.len() as u64, total);
    let mut used = [0_u64; 4];
    for (i, &(x, id)) in output.iter().enumerate() {
        assert_eq!(x, i as u64, "element lost, repeated or reordered");
        let c = (x / PER_SIZE) as usize;
        let n = sizes[c..].iter().copied().max().unwrap();
        assert!(
            id < n,
            "element {x} went to replica {id}; sizes since it was sent: {:?}",
            &sizes[c..]
        );
        used[id] += 1;
    }
    assert!(used.iter().all(|&u| u > 0), "replicas used: {used:?}");
    let dispatch = done.report.stage("work.dispatch").unwrap();
    assert_eq!(dispatch.config_generation, sizes.len() as u64 - 1);
    assert_eq!(dispatch.config.as_deref(), Some("replicas: 1"));
    assert_eq!(dispatch.config_rejected, 2);
}

/// An unordered `Graph::pool` grows from 1 to 3 replicas with nothing lost; a
/// resizable pool that starts above its maximum is a build error naming it.
#[test]
fn an_unordered_pool_grows_and_bad_sizes_are_build_errors() {
    struct Double;
    impl Operator for Double {
        type In = u64;
        type Out = u64;
        fn kind(&self) -> &'static str {
            "double"
        }
        fn step(&mut self, io: &mut Io<'_, u64, u64>, _cx: &mut Context<'_>) -> Step {
            io.map_batch(|x| x * 2);
            io.finish_when_drained()
        }
    }
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let size = ConfigHandle::<usize>::new();
    let mut g = Graph::new();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let numbers = g.source(flow);
    let pool = Pool::new(1)
        .name("double")
        .replica_capacity(8)
        .resizable(3, &size);
    let out = g.pool(numbers, pool, || Double);
    let out = g.sink(out, |f| f.collect());
    let running = g.run(&rt).unwrap();
    futures::executor::block_on(async {
        for x in 0..10_000 {
            ingress.send(x).await.unwrap();
        }
        assert_eq!(size.reconfigure(3).await.unwrap().generation, 1);
        for x in 10_000..40_000 {
            ingress.send(x).await.unwrap();
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    let mut output = futures::executor::block_on(out).unwrap();
    output.sort_unstable();
    assert_eq!(output, (0..40_000).map(|x| x * 2).collect::<Vec<u64>>());
    for k in 1..3 {
        assert!(done.report.stage(&format!("double-{k}")).unwrap().input > 0);
    }

    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..3_u64));
    let pool = Pool::new(4).name("big").resizable(2, &ConfigHandle::new());
    let out = g.pool_map(numbers, pool, || |x: u64| x);
    drop(g.sink(out, |f| f.collect()));
    let err = g.run(&rt).unwrap_err().to_string();
    assert!(
        err.contains("`big`") && err.contains("1 to max_replicas (2)"),
        "{err}"
    );
}

/// A partition's limit changes while it runs: each branch keeps input order,
/// nothing is lost, every element sent after the acknowledgement is routed by the
/// new limit, and the change is recorded on the partition stage.
#[test]
fn a_partition_limit_changes_while_it_runs() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let limit = ConfigHandle::<u64>::new();
    let mut g = Graph::new();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let numbers = g.source(flow);
    let [small, large] =
        g.partition_with_config(numbers, &limit, u64::MAX, |limit, x| usize::from(x > limit));
    let small = g.sink(small, |f| f.collect());
    let large = g.sink(large, |f| f.collect());
    let running = g.run(&rt).unwrap();
    futures::executor::block_on(async {
        for x in 0..5_000 {
            ingress.send(x).await.unwrap();
        }
        let applied = limit.reconfigure(0).await.unwrap();
        assert_eq!(applied.generation, 1);
        for x in 5_000..10_000 {
            ingress.send(x).await.unwrap();
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    let small = futures::executor::block_on(small).unwrap();
    let large = futures::executor::block_on(large).unwrap();
    assert!(small.windows(2).all(|w| w[0] < w[1]) && large.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(small.len() + large.len(), 10_000);
    assert!(
        small.iter().all(|&x| x < 5_000),
        "routed by the old limit after the ack"
    );
    assert!(small.contains(&0));
    let partition = done
        .report
        .stages
        .iter()
        .find(|s| s.kind == "partition")
        .unwrap();
    assert_eq!(
        (partition.config_generation, partition.config.as_deref()),
        (1, Some("0"))
    );
}
