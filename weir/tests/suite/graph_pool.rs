//! Pools: replicas on their own arbiters, ordered and unordered results, crashes
//! handled per replica with nothing lost, validation.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use common::*;
use weir::operator::{Io, Operator, Step};
use weir::prelude::*;

fn rt(arbiters: usize) -> Runtime {
    Runtime::builder().arbiters(arbiters).build().unwrap()
}

fn fast() -> BackoffConfig {
    BackoffConfig::new(Duration::from_millis(1), Duration::from_millis(2))
}

/// Some work that depends on `x`, so replicas finish out of order.
fn work(x: u64) -> u64 {
    let mut h = x;
    for _ in 0..(x % 7) * 50 {
        h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    }
    std::hint::black_box(h);
    x * 2
}

/// True for about one element in `one_in`, spread pseudo-randomly by `seed`.
fn chosen(x: u64, seed: u64, one_in: u64) -> bool {
    (x ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40 & (one_in - 1) == 0
}

#[test]
fn ordered_pool_map_keeps_input_order_across_replicas_on_every_arbiter() {
    let rt = rt(2);
    let mut g = Graph::new();
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let seen = threads.clone();
    let numbers = g.source(Pipeline::from_iter(0..20_000_u64));
    let pool = Pool::new(4).ordered().name("work").replica_capacity(32);
    let out = g.pool_map(numbers, pool, move || {
        let seen = seen.clone();
        move |x| {
            seen.lock().unwrap().insert(std::thread::current().id());
            work(x)
        }
    });
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(take(out), (0..20_000).map(|x| x * 2).collect::<Vec<_>>());
    let per_replica: Vec<u64> = (0..4)
        .map(|k| done.report.stage(&format!("work-{k}")).unwrap().input)
        .collect();
    assert_eq!(per_replica.iter().sum::<u64>(), 20_000);
    assert!(
        per_replica.iter().all(|&n| n > 0),
        "every replica worked: {per_replica:?}"
    );
    assert_eq!(
        threads.lock().unwrap().len(),
        2,
        "replicas ran on both arbiters"
    );
    let collect = done.report.stage("work.collect").unwrap();
    assert_eq!((collect.input, collect.completed), (20_000, 20_000));
    assert_eq!(done.report.stage("work.dispatch").unwrap().input, 20_000);
}

#[test]
fn unordered_pool_map_delivers_every_element_exactly_once() {
    let rt = rt(2);
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..50_000_u64));
    let out = g.pool_map(numbers, Pool::new(3), || work);
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let mut out = take(out);
    out.sort_unstable();
    assert_eq!(out, (0..50_000).map(|x| x * 2).collect::<Vec<_>>());
}

/// Doubles each element; counts its instances.
struct Doubler;

impl Operator for Doubler {
    type In = u64;
    type Out = u64;

    fn kind(&self) -> &'static str {
        "doubler"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, u64, u64>, _cx: &mut Context<'_>) -> Step {
        while io.room() >= 2 {
            let Some(x) = io.pop() else { break };
            io.push(x * 2);
            io.push(x * 2 + 1);
            io.complete(1);
        }
        io.finish_when_drained()
    }

    fn counting(&self) -> weir::operator::Counting {
        weir::operator::Counting::Custom
    }
}

/// Regression: with replicas that hold more than the dispatcher is given (replica
/// capacity 8, edges of 4), least-loaded balancing sent everything to replica 0.
/// Each pass handed it all that was queued (a share of its room), and the next
/// pass found it caught up again and tied with the idle one, ties going to the
/// first: replica 1 got nothing and the pool ran at one replica's speed. Now ties
/// take turns and a pass spreads what is queued.
#[test]
fn least_loaded_keeps_every_replica_busy_when_replicas_hold_more_than_arrives() {
    for ordered in [true, false] {
        let rt = rt(2);
        let mut g = Graph::new();
        g.default_capacity(4);
        // The source apart from the dispatcher (on arbiter 0), as a reader would be.
        let source = g.source(Pipeline::from_iter(0..200_u64).on_arbiter(1));
        let mut pool = Pool::new(2).name("p").replica_capacity(8);
        if ordered {
            pool = pool.ordered();
        }
        let out = g.pool_map(source, pool, || {
            |x: u64| {
                let started = std::time::Instant::now();
                while started.elapsed() < Duration::from_micros(500) {
                    std::hint::spin_loop();
                }
                x
            }
        });
        let sum = g.sink(out, |f| f.fold(0_u64, |a, x| a + x));
        let done = g.run(&rt).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(take(sum), (0..200).sum::<u64>());
        for replica in ["p-0", "p-1"] {
            let completed = done.report.stage(replica).unwrap().completed;
            assert!(
                completed >= 20,
                "ordered {ordered}: {replica} processed {completed} of 200"
            );
        }
    }
}

#[test]
fn a_pool_of_any_operator_merges_all_outputs() {
    let rt = rt(2);
    let mut g = Graph::new();
    let instances = Arc::new(AtomicU64::new(0));
    let counted = instances.clone();
    let numbers = g.source(Pipeline::from_iter(0..10_000_u64));
    let out = g.pool(numbers, Pool::new(3).name("double"), move || {
        counted.fetch_add(1, Relaxed);
        Doubler
    });
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let mut out = take(out);
    out.sort_unstable();
    assert_eq!(out, (0..20_000).collect::<Vec<_>>());
    assert_eq!(instances.load(Relaxed), 3, "one instance per replica");
    assert_eq!(done.report.stage("double.merge").unwrap().completed, 20_000);
}

#[test]
fn replicas_crashing_at_random_lose_nothing_and_keep_the_order() {
    for seed in [1_u64, 2, 3] {
        let rt = rt(2);
        let mut g = Graph::new();
        let dlq = MemoryDlq::new(16);
        let policy = SupervisionPolicy::default()
            .max_attempts(10)
            .restart_backoff(fast())
            .intensity(weir::supervisor::policy::RestartIntensity::new(
                10_000,
                Duration::from_secs(60),
            ));
        // Each chosen element crashes its replica once: the restarted replica
        // (a fresh closure from the factory) processes it again.
        let crashed = Arc::new(Mutex::new(HashSet::new()));
        let instances = Arc::new(AtomicU64::new(0));
        let (crashes, made) = (crashed.clone(), instances.clone());
        let numbers = g.source(Pipeline::from_iter(0..30_000_u64));
        let pool = Pool::new(4)
            .ordered()
            .name("crashy")
            .replica_capacity(16)
            .supervise(Supervision::new(policy).dead_letters(dlq.clone()));
        let out = g.pool_map(numbers, pool, move || {
            made.fetch_add(1, Relaxed);
            let crashes = crashes.clone();
            move |x| {
                if chosen(x, seed, 256) && crashes.lock().unwrap().insert(x) {
                    panic!("replica crashes on {x}");
                }
                work(x)
            }
        });
        let out = collect(&mut g, out);
        let done = g.run(&rt).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(
            take(out),
            (0..30_000).map(|x| x * 2).collect::<Vec<_>>(),
            "seed {seed}: every element, in order"
        );
        let injected = crashed.lock().unwrap().len() as u64;
        assert!(injected > 50, "seed {seed}: {injected} crashes injected");
        let restarts: u64 = (0..4)
            .map(|k| done.report.stage(&format!("crashy-{k}")).unwrap().restarts)
            .sum();
        assert_eq!(restarts, injected, "seed {seed}: one restart per crash");
        assert_eq!(
            instances.load(Relaxed),
            4 + injected,
            "seed {seed}: each restart built a fresh replica"
        );
        assert!(dlq.is_empty());
        for stage in &done.report.stages {
            assert_eq!(
                (stage.failed, stage.abandoned, stage.dead_lettered),
                (0, 0, 0),
                "{}",
                stage.name
            );
        }
    }
}

#[test]
fn a_replica_waiting_to_restart_does_not_stop_the_others() {
    let rt = rt(2);
    let mut g = Graph::new();
    // The first restart is immediate, the second waits 1 s.
    let policy = SupervisionPolicy::default().restart_backoff(
        BackoffConfig::new(Duration::from_secs(1), Duration::from_secs(1)).jitter(0.0),
    );
    let crashed = Arc::new(AtomicU64::new(0));
    let once = crashed.clone();
    let numbers = g.source(Pipeline::from_iter(0..5_000_u64));
    let pool = Pool::new(3)
        .name("w")
        .replica_capacity(16)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)));
    let out = g.pool_map(numbers, pool, move || {
        let once = once.clone();
        move |x: u64| {
            if x == 5 && once.fetch_add(1, Relaxed) < 2 {
                panic!("crash on 5");
            }
            x
        }
    });
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let mut out = take(out);
    out.sort_unstable();
    assert_eq!(out, (0..5_000).collect::<Vec<_>>());
    let restarted: Vec<_> = done
        .report
        .stages
        .iter()
        .filter(|s| s.restarts == 2)
        .collect();
    assert_eq!(restarted.len(), 1);
    // While it waited 1 s, the others took everything but what it held: its
    // queue (16) and the element it crashed on.
    assert!(
        restarted[0].input <= 16 + 1 + 16,
        "the crashed replica got {} elements",
        restarted[0].input
    );
}

#[test]
fn dead_lettered_elements_leave_gaps_and_the_rest_stays_in_order() {
    let rt = rt(2);
    let mut g = Graph::new();
    let dlq = MemoryDlq::new(1_000);
    let policy = SupervisionPolicy::default().action(ErrorClass::Panic, Action::DeadLetter);
    let numbers = g.source(Pipeline::from_iter(0..5_000_u64));
    let pool = Pool::new(3)
        .ordered()
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()));
    let out = g.pool_map(numbers, pool, || {
        |x: u64| {
            assert!(x % 97 != 13, "poison {x}");
            x
        }
    });
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(
        take(out),
        (0..5_000).filter(|x| x % 97 != 13).collect::<Vec<_>>()
    );
    let letters = dlq.drain();
    let elements: Vec<u64> = letters.iter().map(|l| l.element).collect();
    let mut sorted = elements.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..5_000).filter(|x| x % 97 == 13).collect::<Vec<_>>()
    );
    assert!(
        letters.iter().all(|l| l.element_index == l.element),
        "a letter's index is the element's position in the pool's input"
    );
}

#[test]
fn pool_try_map_errors_follow_the_policy() {
    let rt = rt(1);
    let mut g = Graph::new();
    let dlq = MemoryDlq::new(100);
    let numbers = g.source(Pipeline::from_iter(0..1_000_u64));
    let pool = Pool::new(2)
        .ordered()
        .supervise(Supervision::new(SupervisionPolicy::default()).dead_letters(dlq.clone()));
    let out = g.pool_try_map(numbers, pool, || {
        |x: u64| {
            if x.is_multiple_of(100) {
                Err(Failure::error(ErrorClass::Permanent, format!("bad {x}")))
            } else {
                Ok(x)
            }
        }
    });
    let out = collect(&mut g, out);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(take(out).len(), 990);
    assert_eq!(dlq.len(), 10);
}

#[test]
fn an_unsupervised_replica_failure_fails_the_pipeline_naming_it() {
    let rt = rt(1);
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..1_000_u64));
    let out = g.pool_map(numbers, Pool::new(2).name("p"), || {
        |x: u64| {
            assert!(x != 500, "boom");
            x
        }
    });
    let _out = collect(&mut g, out);
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("`p-"), "{err}");
    err.report().unwrap().check_conservation().unwrap();
}

#[test]
fn invalid_pools_are_rejected_naming_the_stage() {
    let rt = rt(1);
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..10_u64));
    let out = g.pool_map(numbers, Pool::new(0).name("empty"), || |x: u64| x);
    let _out = collect(&mut g, out);
    let err = g.run(&rt).unwrap_err().to_string();
    assert!(
        err.contains("`empty.dispatch`") && err.contains("at least one replica"),
        "{err}"
    );

    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..10_u64));
    let out = g.pool(numbers, Pool::new(2).ordered().name("any"), || Doubler);
    let _out = collect(&mut g, out);
    let err = g.run(&rt).unwrap_err().to_string();
    assert!(err.contains("`any`") && err.contains("pool_map"), "{err}");
}

/// Equal keys reach one replica: each replica's keyed fold emits only its keys,
/// so every key comes out once with its full count; a keyed pool that could move
/// keys (resizable, numbered) is refused.
#[test]
fn a_keyed_pool_sends_each_key_to_one_replica_and_refuses_what_would_move_keys() {
    let rt = rt(3);
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..30_000_u64));
    let pool = Pool::new(3).by_key(|x: &u64| x % 100).name("per-key");
    let counted = g.pool_flow(numbers, pool, |f| {
        f.key_by(|x: &u64| x % 100)
            .fold(0u64, |n: &mut u64, _| *n += 1)
            .name("count")
    });
    let out = collect(&mut g, counted);
    let done = g.run(&rt).unwrap().wait().unwrap();
    let mut counts = futures::executor::block_on(out).unwrap();
    counts.sort_unstable();
    assert_eq!(counts, (0..100).map(|k| (k, 300)).collect::<Vec<_>>());
    let replicas: Vec<&str> = done
        .report
        .stages
        .iter()
        .filter(|s| s.name.starts_with("per-key-"))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(replicas, ["per-key-0", "per-key-1", "per-key-2"]);

    let size = weir::reconfig::ConfigHandle::<usize>::new();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..10_u64));
    let pool = Pool::new(2).by_key(|x: &u64| *x).resizable(4, &size);
    let out = g.pool(numbers, pool, || Doubler);
    let _out = collect(&mut g, out);
    let err = g.run(&rt).unwrap_err().to_string();
    assert!(err.contains("`pool`") && err.contains("resizable"), "{err}");

    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..10_u64));
    let pool = Pool::new(2).by_key(|x: &u64| *x).name("numbered");
    let out = g.pool_map(numbers, pool, || |x: u64| x);
    let _out = collect(&mut g, out);
    let err = g.run(&rt).unwrap_err().to_string();
    assert!(
        err.contains("`numbered`") && err.contains("pool_flow"),
        "{err}"
    );
}
