//! Rate limits, quotas, budgets and validation (issue 5, items 6 and 7): rates
//! measured on virtual time (a paused tokio clock), dead letters exact, and
//! conservation in every run.

use crate::common;

use common::paused;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use weir::prelude::*;
use weir::supervisor::dead_letter::{FileDlqReader, FileDlqWriter, SharedFileDlq};

/// A shared log of (virtual instant, value).
type Log<T> = Arc<Mutex<Vec<(Instant, T)>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn stamp<T: Clone + Send + 'static>(log: &Log<T>) -> impl FnMut(&T) + Send + 'static {
    let log = Arc::clone(log);
    move |x: &T| log.lock().unwrap().push((Instant::now(), x.clone()))
}

/// 10 000 elements through a shaping throttle of 10 000/s, burst 20: the burst
/// passes at once, then the admitted rate stays within ±5 % of the rate, and no
/// window ever holds more than `burst + window × rate` elements. (tokio's timers
/// tick in milliseconds, so the throttle wakes once per millisecond and lets the
/// 10 elements of that millisecond through: the burst absorbs the tick.)
#[test]
fn shaping_holds_the_rate_over_a_long_run() {
    const N: usize = 10_000;
    const BURST: usize = 20;
    const INTERVAL: Duration = Duration::from_micros(100);
    let admitted = log::<u32>();
    let throttle = Throttle::shape(Rate::per_second(10_000)).burst(BURST as u32);
    let stats = throttle.stats();
    let a = Arc::clone(&admitted);
    let (done, started) = paused(move |rt| async move {
        let started = Instant::now();
        let done = Pipeline::from_iter(0..N as u32)
            .throttle(throttle)
            .inspect(stamp(&a))
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        (done, started)
    });
    done.report.check_conservation().unwrap();
    assert_eq!(done.output, (0..N as u32).collect::<Vec<_>>());
    let times: Vec<Duration> = admitted
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| *t - started)
        .collect();
    assert_eq!(times.len(), N);
    // The burst at once, then the rate.
    assert!(
        times[..BURST].iter().all(|t| *t == Duration::ZERO),
        "{:?}",
        &times[..BURST + 1]
    );
    assert!(times[BURST] > Duration::ZERO);
    let span = (times[N - 1] - times[BURST]).as_secs_f64();
    let rate = (N - BURST - 1) as f64 / span;
    assert!((rate - 10_000.0).abs() <= 500.0, "admitted {rate:.1}/s");
    // GCRA bound: elements i..=i+BURST+k span at least (k + 1) intervals.
    for k in [0, 99, 999, 4_999] {
        for i in 0..N - BURST - k {
            let span = times[i + BURST + k] - times[i];
            assert!(span >= INTERVAL * (k as u32 + 1), "{k} at {i}: {span:?}");
        }
    }
    assert_eq!(stats.admitted(), N as u64);
    assert_eq!(stats.rejected(), 0);
    assert!(
        stats.waited() >= Duration::from_millis(990),
        "{:?}",
        stats.waited()
    );
}

/// The burst passes at once, then one element per interval, exactly.
#[test]
fn shaping_releases_the_burst_then_one_per_interval() {
    let admitted = log::<u32>();
    let a = Arc::clone(&admitted);
    let started = paused(move |rt| async move {
        let started = Instant::now();
        let done = Pipeline::from_iter(0..12_u32)
            .throttle(Throttle::shape(Rate::per_second(100)).burst(5))
            .inspect(stamp(&a))
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        done.report.check_conservation().unwrap();
        started
    });
    let offsets: Vec<u128> = admitted
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| (*t - started).as_millis())
        .collect();
    assert_eq!(offsets, [0, 0, 0, 0, 0, 10, 20, 30, 40, 50, 60, 70]);
}

/// Everything arrives at once: exactly `burst` elements pass, every other one is
/// dead-lettered with the reason, and the report counts them.
#[test]
fn enforcing_dead_letters_exactly_the_excess() {
    let dead = MemoryDlq::new(2_000);
    let d = dead.clone();
    let throttle = Throttle::enforce(Rate::per_second(100)).burst(10);
    let stats = throttle.stats();
    let done = paused(move |rt| async move {
        Pipeline::from_iter(0..1_000_u32)
            .supervise(rejections_to(d))
            .throttle(throttle)
            .name("police")
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap()
    });
    assert_eq!(done.output, (0..10).collect::<Vec<_>>());
    let letters = dead.drain();
    assert_eq!(
        letters.iter().map(|l| l.element).collect::<Vec<_>>(),
        (10..1_000).collect::<Vec<_>>()
    );
    for l in &letters {
        assert_eq!(l.class, ErrorClass::ResourceExhausted);
        assert_eq!(l.stage, "police");
        assert_eq!(l.attempts, 1);
        assert!(
            l.error
                .starts_with("rate limit exceeded: 100 per 1s with burst 10"),
            "{}",
            l.error
        );
    }
    let r = &done.report;
    r.check_conservation().unwrap();
    let stage = r.stage("police").unwrap();
    assert_eq!((stage.completed, stage.dead_lettered), (10, 990));
    assert_eq!(r.dead_lettered(), 990);
    assert_eq!((stats.admitted(), stats.rejected()), (10, 990));
}

/// A source paced at one element per 3 ms against 100/s, burst 2: the admitted
/// elements are exactly those a reference GCRA admits at their arrival times.
#[test]
fn enforcing_matches_a_reference_gcra_on_a_paced_source() {
    let arrivals = log::<u32>();
    let dead = MemoryDlq::new(1_000);
    let (ar, d) = (Arc::clone(&arrivals), dead.clone());
    let output = paused(move |rt| async move {
        let paced = futures::stream::unfold(0_u32, |i| async move {
            (i < 300).then_some(())?;
            tokio::time::sleep(Duration::from_millis(3)).await;
            Some((i, i + 1))
        });
        let done = Pipeline::from_stream(paced)
            .inspect(stamp(&ar))
            .supervise(rejections_to(d))
            .throttle(Throttle::enforce(Rate::per_second(100)).burst(2))
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        done.report.check_conservation().unwrap();
        done.output
    });
    // Reference GCRA: T = 10 ms, tau = (burst - 1) T; admit at t if t >= tat - tau.
    let (t, tau) = (Duration::from_millis(10), Duration::from_millis(10));
    let arrivals = arrivals.lock().unwrap().clone();
    let start = arrivals[0].0;
    let mut tat = Duration::ZERO;
    let mut expected = Vec::new();
    for (at, x) in &arrivals {
        let now = *at - start;
        if now + tau >= tat {
            tat = tat.max(now) + t;
            expected.push(*x);
        }
    }
    assert_eq!(output, expected);
    let rejected: Vec<u32> = dead.drain().into_iter().map(|l| l.element).collect();
    assert_eq!(rejected.len() + output.len(), 300);
    assert!(rejected.iter().all(|x| !output.contains(x)));
    // 0.9 s of arrivals at 100/s, plus the burst.
    assert!((90..=93).contains(&output.len()), "{}", output.len());
}

/// One key flooding does not use up another key's quota.
#[test]
fn per_key_quotas_are_independent() {
    let dead = MemoryDlq::new(1_000);
    let d = dead.clone();
    let input: Vec<(char, u32)> = (0..300)
        .map(|i| if i % 10 == 9 { ('b', i) } else { ('a', i) })
        .collect();
    let done = paused(move |rt| async move {
        Pipeline::from_iter(input)
            .supervise(rejections_to(d))
            .throttle_by_key(
                |(k, _)| *k,
                Throttle::enforce(Rate::per_second(10)).burst(3),
            )
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap()
    });
    done.report.check_conservation().unwrap();
    assert_eq!(
        done.output,
        [('a', 0), ('a', 1), ('a', 2), ('b', 9), ('b', 19), ('b', 29)]
    );
    assert_eq!(dead.len(), 294);
}

/// With max_keys 2 and the table full of busy keys, a third key is refused
/// (enforcing) until the oldest key is idle; then it gets a quota.
#[test]
fn a_full_quota_table_refuses_new_keys_until_one_is_idle() {
    let dead = MemoryDlq::new(100);
    let d = dead.clone();
    let throttle = Throttle::enforce(Rate::per_second(10))
        .burst(1)
        .max_keys(2)
        .when_keys_full(KeysFull::Refuse);
    let stats = throttle.stats();
    let output = paused(move |rt| async move {
        // a, b at 0 ms; c at 0 ms (refused); c at 150 ms (a idle after 100 ms).
        let script = [(0, 'a'), (0, 'b'), (0, 'c'), (150, 'c')];
        let timed = futures::stream::iter(script).then(|(ms, k)| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            k
        });
        let done = Pipeline::from_stream(timed)
            .supervise(rejections_to(d))
            .throttle_by_key(|k| *k, throttle)
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        done.report.check_conservation().unwrap();
        done.output
    });
    assert_eq!(output, ['a', 'b', 'c']);
    let letters = dead.drain();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0]
            .error
            .starts_with("quota table full: 2 keys tracked"),
        "{}",
        letters[0].error
    );
    assert_eq!(
        (stats.keys(), stats.idle_evicted(), stats.evicted()),
        (2, 1, 0)
    );
}

/// EvictLeastRecent never refuses a new key: it forgets the oldest, counted.
#[test]
fn evict_least_recent_bounds_the_table_and_counts_evictions() {
    let throttle = Throttle::shape(Rate::per_minute(1))
        .max_keys(100)
        .when_keys_full(KeysFull::EvictLeastRecent);
    let stats = throttle.stats();
    let done = paused(move |rt| async move {
        Pipeline::from_iter(0..10_000_u32)
            .throttle_by_key(|x| *x, throttle)
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap()
    });
    done.report.check_conservation().unwrap();
    assert_eq!(done.output.len(), 10_000);
    assert_eq!(
        (stats.keys(), stats.evicted(), stats.delayed()),
        (100, 9_900, 0)
    );
}

use futures::StreamExt as _;

/// Invalid and oversized elements are in the dead letters with their reasons,
/// before any later stage sees them; the report counts them as dead-lettered.
#[test]
fn validation_dead_letters_invalid_and_oversized_elements() {
    let dead = MemoryDlq::new(100);
    let seen_later = Arc::new(Mutex::new(Vec::new()));
    let later = Arc::clone(&seen_later);
    let input = ["ok", "", "a fine line", "x".repeat(50).leak(), "tail"];
    let done = Pipeline::from_iter(input)
        .supervise(rejections_to(dead.clone()))
        .max_element_bytes(20, |s: &&str| s.len())
        .name("size")
        .supervise(rejections_to(dead.clone()))
        .validate(|s: &&str| {
            if s.is_empty() {
                Err("empty line".into())
            } else {
                Ok(())
            }
        })
        .name("check")
        .inspect(move |s| later.lock().unwrap().push(s.len()))
        .map(String::from)
        .collect()
        .run(&Runtime::builder().arbiters(1).build().unwrap())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, ["ok", "a fine line", "tail"]);
    assert!(
        seen_later
            .lock()
            .unwrap()
            .iter()
            .all(|n| (1..=20).contains(n))
    );
    let letters = dead.drain();
    let got: Vec<(&str, &str, ErrorClass, u64)> = letters
        .iter()
        .map(|l| (l.stage.as_str(), l.error.as_str(), l.class, l.element_index))
        .collect();
    assert_eq!(
        got,
        [
            (
                "size",
                "element of 50 bytes exceeds max_element_bytes 20",
                ErrorClass::Permanent,
                3
            ),
            ("check", "empty line", ErrorClass::Permanent, 1),
        ]
    );
    let r = &done.report;
    r.check_conservation().unwrap();
    assert_eq!(r.stage("size").unwrap().dead_lettered, 1);
    assert_eq!(r.stage("check").unwrap().dead_lettered, 1);
    assert_eq!((r.delivered(), r.dead_lettered()), (3, 2));
}

/// Without supervision, the first invalid element fails the pipeline with its
/// reason, naming the stage.
#[test]
fn validation_without_supervision_fails_the_pipeline_with_the_reason() {
    let err = Pipeline::from_iter([1, 2, -3, 4])
        .validate(|x: &i32| {
            if *x < 0 {
                Err(format!("{x} is negative"))
            } else {
                Ok(())
            }
        })
        .collect()
        .run(&Runtime::builder().arbiters(1).build().unwrap())
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("-3 is negative"), "{err}");
    match &err {
        PipelineError::StageFailed { stage, .. } => assert_eq!(stage, "validate#1"),
        other => panic!("{other:?}"),
    }
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert_eq!(report.stage("validate#1").unwrap().failed, 1);
}

/// A policy that retries permanent failures is obeyed: the element is checked
/// again after the backoff, in place, then dead-lettered when exhausted.
#[test]
fn validation_obeys_a_retrying_policy_and_keeps_order() {
    let dead = MemoryDlq::new(10);
    let d = dead.clone();
    let policy = SupervisionPolicy::default()
        .max_attempts(3)
        .action(ErrorClass::Permanent, Action::Retry);
    let done = paused(move |rt| async move {
        Pipeline::from_iter(0..6_u32)
            .supervise(Supervision::new(policy).dead_letters(d))
            .validate(|x: &u32| {
                if x % 3 == 1 {
                    Err(format!("{x} refused"))
                } else {
                    Ok(())
                }
            })
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap()
    });
    assert_eq!(done.output, [0, 2, 3, 5]);
    let letters = dead.drain();
    assert_eq!(
        letters
            .iter()
            .map(|l| (l.element, l.attempts))
            .collect::<Vec<_>>(),
        [(1, 3), (4, 3)]
    );
    assert_eq!(done.report.retries(), 4);
    done.report.check_conservation().unwrap();
}

/// The durable file dead-letter queue takes rejections too.
#[test]
fn rejections_go_to_a_file_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rejected.dlq");
    let sink = SharedFileDlq::new(FileDlqWriter::<String>::create(&path).unwrap());
    let done = Pipeline::from_iter(["{}", "{oops", "[]"].map(String::from))
        .supervise(rejections_to(sink.clone()))
        .validate(|s: &String| {
            serde_json::from_str::<serde_json::Value>(s)
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .collect()
        .run(&Runtime::builder().arbiters(1).build().unwrap())
        .unwrap()
        .wait()
        .unwrap();
    sink.flush().unwrap();
    assert_eq!(done.output, ["{}", "[]"]);
    let letters = FileDlqReader::<String>::open(&path)
        .unwrap()
        .read_all()
        .unwrap()
        .letters;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].element, "{oops");
    assert!(letters[0].error.contains("line 1"), "{}", letters[0].error);
    done.report.check_conservation().unwrap();
}

/// `max_bytes` with `AtLimit::End` delivers what fits, ends the stream and
/// cancels the source; with `AtLimit::Fail` the pipeline fails naming the limit.
#[test]
fn byte_budget_ends_or_fails_at_the_limit() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let done = Pipeline::from_iter((0_u64..).map(|i| vec![0_u8; (i % 7 + 1) as usize]))
        .max_bytes(100, |v: &Vec<u8>| v.len() as u64, AtLimit::End)
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    let total: usize = done.output.iter().map(Vec::len).sum();
    let next = done.output.len() % 7 + 1;
    assert!(
        total <= 100 && total + next > 100,
        "total {total}, next {next}"
    );
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.outcome, Outcome::Completed);

    let err = Pipeline::from_iter(["aaaa", "bbbb", "cccc"])
        .max_bytes(10, |s: &&str| s.len() as u64, AtLimit::Fail)
        .map(String::from)
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "max_bytes limit of 10 exceeded: an element of 4 would bring the total to 12"
        ),
        "{err}"
    );
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert_eq!(report.stage("max_bytes#1").unwrap().completed, 2);
    assert_eq!(report.stage("max_bytes#1").unwrap().failed, 1);
}

/// Bad arguments are build errors naming the stage.
#[test]
fn bad_limit_arguments_are_build_errors() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let cases: Vec<(Runnable<Vec<u32>>, &str)> = vec![
        (
            Pipeline::from_iter(0..1_u32)
                .throttle(Throttle::shape(Rate::per_second(0)))
                .collect(),
            "throttle rate must be positive",
        ),
        (
            Pipeline::from_iter(0..1_u32)
                .throttle(Throttle::shape(Rate::per_second(1)).burst(0))
                .collect(),
            "burst must be at least 1",
        ),
        (
            Pipeline::from_iter(0..1_u32)
                .throttle_by_key(|x| *x, Throttle::shape(Rate::per_second(1)).max_keys(0))
                .collect(),
            "max_keys",
        ),
        (
            Pipeline::from_iter(0..1_u32)
                .max_element_bytes(0, |_| 4)
                .collect(),
            "max_element_bytes(0)",
        ),
    ];
    for (runnable, expected) in cases {
        let err = runnable.run(&rt).unwrap_err().to_string();
        assert!(err.contains(expected) && err.contains("#1"), "{err}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the elements and the check: the output is the valid elements in
    /// order, the dead letters are the invalid ones in order, and conservation
    /// holds.
    #[test]
    fn validation_partitions_the_input_exactly(
        input in proptest::collection::vec(0_u16..1_000, 0..200),
        modulus in 2_u16..7,
    ) {
        let dead = MemoryDlq::new(200);
        let done = Pipeline::from_iter(input.clone())
            .supervise(rejections_to(dead.clone()))
            .validate(move |x: &u16| if x.is_multiple_of(modulus) { Err(format!("{x}")) } else { Ok(()) })
            .collect()
            .default_capacity(3)
            .max_batch(2)
            .run(&Runtime::builder().arbiters(1).build().unwrap())
            .unwrap()
            .wait()
            .unwrap();
        let (bad, good): (Vec<u16>, Vec<u16>) = input.iter().partition(|x| x.is_multiple_of(modulus));
        prop_assert_eq!(&done.output, &good);
        let letters = dead.drain();
        prop_assert_eq!(letters.iter().map(|l| l.element).collect::<Vec<_>>(), bad.clone());
        prop_assert!(letters.iter().all(|l| l.error == l.element.to_string()));
        prop_assert!(done.report.check_conservation().is_ok());
        prop_assert_eq!(done.report.dead_lettered(), bad.len() as u64);
    }
}
