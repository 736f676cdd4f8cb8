//! Keyed state (`key_by` → `scan` / `reduce` / `fold` / `aggregate` / `dedupe`):
//! results against a `HashMap` reference, TTL expiry on a paused clock, the key
//! bound's policies, bounded state under unbounded key cardinality, and the state
//! a supervised restart loses.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use weir::prelude::*;

fn rt1() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// An actix System on a current-thread tokio runtime whose clock is paused.
fn paused_system() -> actix_rt::SystemRunner {
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    })
}

/// Lets every actor on the current-thread System run until nothing moves, without
/// advancing the paused clock.
async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// scan, reduce and fold agree with a HashMap computed by hand, whatever the
    /// keys, values and edge sizes.
    #[test]
    fn keyed_results_match_a_hashmap(
        input in prop::collection::vec((0_u8..12, 0_u32..1000), 0..300),
        capacity in 1_usize..8,
    ) {
        let rt = rt1();
        let mut sums: HashMap<u8, u64> = HashMap::new();
        let mut maxes: HashMap<u8, u32> = HashMap::new();
        let mut want_scan = Vec::new();
        let mut want_reduce = Vec::new();
        for &(k, v) in &input {
            let s = sums.entry(k).or_default();
            *s += u64::from(v);
            want_scan.push((k, *s));
            let m = maxes.entry(k).or_insert(v);
            *m = (*m).max(v);
            want_reduce.push((k, *m));
        }
        let scan = Pipeline::from_iter(input.clone())
            .key_by(|(k, _): &(u8, u32)| *k)
            .scan(0_u64, |s: &mut u64, (k, v)| { *s += u64::from(v); (k, *s) })
            .collect()
            .default_capacity(capacity)
            .run(&rt).unwrap().wait().unwrap();
        scan.report.check_conservation().unwrap();
        prop_assert_eq!(&scan.output, &want_scan);

        let reduce = Pipeline::from_iter(input.clone())
            .key_by(|(k, _): &(u8, u32)| *k)
            .reduce(|a, b| if b.1 > a.1 { b } else { a })
            .collect()
            .default_capacity(capacity)
            .run(&rt).unwrap().wait().unwrap();
        reduce.report.check_conservation().unwrap();
        prop_assert_eq!(&reduce.output, &want_reduce);

        let fold = Pipeline::from_iter(input.clone())
            .key_by(|(k, _): &(u8, u32)| *k)
            .fold(0_u64, |s: &mut u64, (_, v)| *s += u64::from(v))
            .collect()
            .default_capacity(capacity)
            .run(&rt).unwrap().wait().unwrap();
        fold.report.check_conservation().unwrap();
        let got: HashMap<u8, u64> = fold.output.iter().copied().collect();
        prop_assert_eq!(got.len(), fold.output.len(), "each key emitted once");
        prop_assert_eq!(got, sums);
        prop_assert_eq!(fold.report.stage("keyed_fold#1").unwrap().completed, input.len() as u64);
    }

    /// dedupe remembering the last `n` keys drops exactly what an LRU of `n` keys
    /// computed by hand drops, and reports them as filtered.
    #[test]
    fn dedupe_by_capacity_matches_a_reference_lru(
        input in prop::collection::vec(0_u8..20, 0..300),
        n in 1_usize..8,
    ) {
        let rt = rt1();
        let mut lru: VecDeque<u8> = VecDeque::new();
        let mut want = Vec::new();
        for &k in &input {
            if lru.contains(&k) {
                continue; // a repeat does not refresh the key
            }
            if lru.len() == n {
                lru.pop_front();
            }
            lru.push_back(k);
            want.push(k);
        }
        let counters = StateCounters::new();
        let done = Pipeline::from_iter(input.clone())
            .key_by(|k: &u8| *k)
            .max_keys(n, OnFull::EvictLru)
            .counters(&counters)
            .dedupe()
            .collect()
            .run(&rt).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        prop_assert_eq!(&done.output, &want);
        prop_assert_eq!(done.report.filtered(), (input.len() - want.len()) as u64);
        prop_assert_eq!(counters.evicted(), want.len().saturating_sub(n) as u64);
        prop_assert!(counters.peak_keys() <= n as u64);
    }
}

/// TTL expiry on a paused clock: a key seen again 1 ms before its TTL keeps its
/// state; a key idle for exactly the TTL is gone — by the timer, with no input to
/// notice it — and starts again from `init`.
#[test]
fn ttl_expires_idle_keys_exactly_on_a_paused_clock() {
    paused_system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let counters = StateCounters::new();
        let (ingress, flow) = Pipeline::ingress::<&'static str>(16);
        let (runnable, mut egress) = flow
            .key_by(|k: &&str| k.to_string())
            .ttl(Duration::from_secs(10))
            .counters(&counters)
            .scan(0_u32, |n: &mut u32, k| {
                *n += 1;
                (k, *n)
            })
            .egress(16);
        let running = runnable.run(&rt).unwrap();
        let ms = Duration::from_millis;

        ingress.send("a").await.unwrap();
        ingress.send("b").await.unwrap();
        assert_eq!(egress.recv().await, Some(("a", 1)));
        assert_eq!(egress.recv().await, Some(("b", 1)));
        tokio::time::sleep(ms(9_999)).await;
        ingress.send("a").await.unwrap(); // 1 ms before "a" expires
        assert_eq!(egress.recv().await, Some(("a", 2)));
        settle().await;
        assert_eq!((counters.keys(), counters.expired()), (2, 0));

        tokio::time::sleep(ms(1)).await; // "b" idle for exactly 10 s
        settle().await;
        assert_eq!((counters.keys(), counters.expired()), (1, 1));
        tokio::time::sleep(ms(9_998)).await; // "a" idle for 9.999 s
        settle().await;
        assert_eq!((counters.keys(), counters.expired()), (1, 1));
        tokio::time::sleep(ms(1)).await;
        settle().await;
        assert_eq!((counters.keys(), counters.expired()), (0, 2));

        ingress.send("a").await.unwrap();
        ingress.send("b").await.unwrap();
        assert_eq!(egress.recv().await, Some(("a", 1)));
        assert_eq!(egress.recv().await, Some(("b", 1)));
        drop(ingress);
        assert_eq!(egress.recv().await, None);
        let done = running.await.unwrap();
        done.report.check_conservation().unwrap();
    });
}

/// fold emits a key's result when its TTL runs out, before the input ends.
#[test]
fn fold_emits_a_key_when_it_expires() {
    paused_system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let (ingress, flow) = Pipeline::ingress::<(char, u32)>(16);
        let (runnable, mut egress) = flow
            .key_by(|(k, _): &(char, u32)| *k)
            .ttl(Duration::from_secs(5))
            .fold(0_u32, |s: &mut u32, (_, v)| *s += v)
            .egress(16);
        let running = runnable.run(&rt).unwrap();
        let t0 = tokio::time::Instant::now();
        for x in [('x', 1), ('y', 10), ('x', 2)] {
            ingress.send(x).await.unwrap();
        }
        // Both idle since t0; "y" was seen less recently, so it expires first.
        assert_eq!(egress.recv().await, Some(('y', 10)));
        assert_eq!(egress.recv().await, Some(('x', 3)));
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
        ingress.send(('x', 7)).await.unwrap();
        drop(ingress);
        assert_eq!(egress.recv().await, Some(('x', 7)));
        assert_eq!(egress.recv().await, None);
        running.await.unwrap().report.check_conservation().unwrap();
    });
}

/// 200 000 distinct keys through a stage bounded to 1 000: the state never holds
/// more, every eviction is counted, and fold still emits every key exactly once
/// (evicted keys on eviction, the rest at the end).
#[test]
fn unbounded_key_cardinality_keeps_state_bounded() {
    let rt = rt1();
    let counters = StateCounters::new();
    let n = 200_000_u64;
    let done = Pipeline::from_iter(0..n)
        .key_by(|x: &u64| *x)
        .max_keys(1_000, OnFull::EvictLru)
        .counters(&counters)
        .fold(0_u64, |s: &mut u64, x| *s += x)
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(counters.peak_keys(), 1_000);
    assert_eq!(counters.evicted(), n - 1_000);
    assert_eq!(counters.keys(), 0);
    assert_eq!(done.output.len() as u64, n);
    assert!(done.output.iter().all(|(k, s)| k == s));
}

/// `OnFull::Fail` fails the element that brings a key beyond the bound: the
/// pipeline fails naming the stage and the policy, and the refusal is counted.
#[test]
fn max_keys_with_fail_policy_fails_the_stage() {
    let rt = rt1();
    let counters = StateCounters::new();
    let err = Pipeline::from_iter([1_u32, 2, 1, 3, 4])
        .key_by(|x: &u32| *x)
        .max_keys(2, OnFull::Fail)
        .counters(&counters)
        .scan(0_u32, |n: &mut u32, _| *n)
        .name("bounded")
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("bounded") && text.contains("OnFull::Fail"),
        "{text}"
    );
    assert_eq!(counters.rejected(), 1);
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert_eq!(report.stage("bounded").unwrap().failed, 1);
}

/// Invalid bounds are rejected when the pipeline is built, naming the stage.
#[test]
fn zero_bounds_and_an_unbounded_dedupe_are_build_errors() {
    let rt = rt1();
    let err = Pipeline::from_iter(0..3_u32)
        .key_by(|x: &u32| *x)
        .ttl(Duration::ZERO)
        .scan(0, |_: &mut u32, x| x)
        .name("zero-ttl")
        .collect()
        .run(&rt)
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidArgument { stage, message }
        if stage == "zero-ttl" && message.contains("ttl(0)")),
        "{err:?}"
    );
    let err = Pipeline::from_iter(0..3_u32)
        .key_by(|x: &u32| *x)
        .max_keys(0, OnFull::EvictLru)
        .fold(0, |_: &mut u32, _| {})
        .collect()
        .run(&rt)
        .unwrap_err();
    assert!(err.to_string().contains("max_keys(0)"), "{err}");
    let err = Pipeline::from_iter(0..3_u32)
        .key_by(|x: &u32| *x)
        .dedupe()
        .collect()
        .run(&rt)
        .unwrap_err();
    assert!(err.to_string().contains("dedupe"), "{err}");
}

/// A keyed stage that panics is restarted by its supervision with empty state:
/// the keys it held are reported as `state_lost`, the failed element is retried
/// on the fresh state, and every element still comes out.
#[test]
fn a_supervised_restart_loses_keyed_state_visibly() {
    let rt = rt1();
    let tripped = Arc::new(AtomicBool::new(false));
    let trip = Arc::clone(&tripped);
    let policy = SupervisionPolicy::default().restart_backoff(BackoffConfig::none());
    let done = Pipeline::from_iter(0..100_u64)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
        .key_by(|x: &u64| x % 7)
        .scan(0_u64, move |n: &mut u64, x| {
            if x == 50 && !trip.swap(true, Ordering::SeqCst) {
                panic!("boom on {x}");
            }
            *n += 1;
            (x, *n)
        })
        .name("counts")
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    let stage = done.report.stage("counts").unwrap();
    assert_eq!(stage.restarts, 1);
    assert_eq!(stage.state_lost, 7, "all 7 keys were held when it crashed");
    assert_eq!(done.output.len(), 100);
    assert_eq!(done.output[49], (49, 8)); // the 8th element of key 0
    assert_eq!(done.output[50], (50, 1), "fresh state after the restart");
    assert_eq!(done.output[57], (57, 2));
}
