//! Supervised async operators (`map_async`, `try_map_async`, `for_each_async`): a
//! failed element (an error, a panic, a timeout) is retried in place while the
//! others go on, dead-lettered, skipped or escalated; outputs keep the input order
//! and conservation counts every element.

mod common;

use common::paused;

use std::collections::{HashMap, HashSet};
use std::future::pending;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::prelude::*;

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

fn fast() -> BackoffConfig {
    BackoffConfig::new(Duration::from_millis(1), Duration::from_millis(4))
}

/// How often each element was attempted.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<u64, u32>>>);

impl Calls {
    /// Records a call on `x` and returns its attempt number (1 for the first).
    fn call(&self, x: u64) -> u32 {
        let mut calls = self.0.lock().unwrap();
        let n = calls.entry(x).or_default();
        *n += 1;
        *n
    }

    fn of(&self, x: u64) -> u32 {
        self.0.lock().unwrap().get(&x).copied().unwrap_or(0)
    }
}

/// Transient errors on the first attempt of every 7th element, a later element
/// finishing first (so retries overtake nothing): the output is the input, in
/// order, and each flaky element was retried exactly once.
#[test]
fn failed_elements_are_retried_in_place_and_order_is_kept() {
    let calls = Calls::default();
    let c = calls.clone();
    let done = Pipeline::from_iter(0..300_u64)
        .supervise(
            Supervision::new(SupervisionPolicy::default().max_attempts(3).backoff(fast()))
                .dead_letters(MemoryDlq::new(4)),
        )
        .try_map_async(8, move |x| {
            let attempt = c.call(x);
            async move {
                tokio::time::sleep(Duration::from_micros(200 * (8 - x % 8))).await;
                if x % 7 == 3 && attempt == 1 {
                    Err(Failure::error(
                        ErrorClass::Transient,
                        format!("reset on {x}"),
                    ))
                } else {
                    Ok(x * 10)
                }
            }
        })
        .name("lookup")
        .collect()
        .default_capacity(16)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, (0..300).map(|x| x * 10).collect::<Vec<_>>());
    let flaky = (0..300).filter(|x| x % 7 == 3).count() as u64;
    let lookup = done.report.stage("lookup").unwrap();
    assert_eq!(lookup.retries, flaky);
    assert_eq!((lookup.failed, lookup.dead_lettered), (0, 0));
    assert_eq!(calls.of(3), 2);
    assert_eq!(calls.of(4), 1);
    done.report.check_conservation().unwrap();
}

/// A poison element fails every attempt: it is dead-lettered after exactly
/// `max_attempts` with its error, and every other element is delivered in order.
#[test]
fn a_poison_element_is_dead_lettered_after_max_attempts() {
    let calls = Calls::default();
    let c = calls.clone();
    let dlq = MemoryDlq::new(8);
    let policy = SupervisionPolicy::default()
        .max_attempts(4)
        .backoff(fast())
        .action(ErrorClass::Permanent, Action::Retry);
    let mut pipeline = Pipeline::from_iter(0..50_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .try_map_async(4, move |x| {
            c.call(x);
            async move {
                if x == 17 {
                    Err(Failure::error(ErrorClass::Permanent, "no such user 17"))
                } else {
                    Ok(x)
                }
            }
        })
        .name("lookup")
        .collect();
    let mut events = pipeline.subscribe();
    let done = pipeline.run(&rt()).unwrap().wait().unwrap();
    let expected: Vec<u64> = (0..50).filter(|&x| x != 17).collect();
    assert_eq!(done.output, expected);
    assert_eq!(calls.of(17), 4);
    let letters = dlq.drain();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (letter.element, letter.attempts, letter.element_index),
        (17, 4, 17)
    );
    assert_eq!(letter.class, ErrorClass::Permanent);
    assert_eq!(letter.error, "no such user 17");
    assert_eq!(letter.stage, "lookup");
    let r = &done.report;
    assert_eq!((r.dead_lettered(), r.retries()), (1, 3));
    r.check_conservation().unwrap();
    // The events tell the same story: three retries, then the dead letter.
    let mut retried = 0;
    let mut dead = 0;
    while let Ok(event) = futures::executor::block_on(events.recv()) {
        match event {
            SupervisionEvent::ElementRetried { element_index, .. } => {
                assert_eq!(element_index, 17);
                retried += 1;
            }
            SupervisionEvent::ElementDeadLettered {
                element_index,
                attempts,
                ..
            } => {
                assert_eq!((element_index, attempts), (17, 4));
                dead += 1;
            }
            _ => {}
        }
    }
    assert_eq!((retried, dead), (3, 1));
}

/// A future that never finishes fails with a timeout after `element_timeout`; the
/// policy retries it and then dead-letters it. Paused time: the timeouts elapse
/// without waiting.
#[test]
fn element_timeout_fails_a_hanging_future() {
    let dlq = MemoryDlq::new(8);
    let calls = Calls::default();
    let c = calls.clone();
    let policy = SupervisionPolicy::default()
        .max_attempts(2)
        .backoff(fast())
        .element_timeout(Duration::from_secs(30));
    let report = paused(move |rt| async move {
        let done = Pipeline::from_iter(0..10_u64)
            .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
            .map_async(3, move |x| {
                c.call(x);
                async move {
                    if x == 4 {
                        pending::<()>().await;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    x
                }
            })
            .name("slow")
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        assert_eq!(done.output, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
        let letters = dlq.drain();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].element, 4);
        assert_eq!(letters[0].class, ErrorClass::Timeout);
        assert!(
            letters[0].error.contains("timed out after 30s"),
            "{}",
            letters[0].error
        );
        assert_eq!(letters[0].attempts, 2);
        done.report
    });
    assert_eq!(calls.of(4), 2);
    assert_eq!(report.dead_lettered(), 1);
    report.check_conservation().unwrap();
}

/// Panics in the function and in its future are caught per element and retried;
/// the other elements in flight are not disturbed.
#[test]
fn panics_in_the_function_and_the_future_are_retried() {
    std::panic::set_hook(Box::new(|_| {}));
    let calls = Calls::default();
    let c = calls.clone();
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Retry)
        .backoff(fast());
    let done = Pipeline::from_iter(0..100_u64)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
        .map_async(5, move |x| {
            let attempt = c.call(x);
            if x % 10 == 1 && attempt == 1 {
                panic!("function panics on {x}");
            }
            async move {
                tokio::task::yield_now().await;
                if x % 10 == 6 && attempt == 1 {
                    panic!("future panics on {x}");
                }
                x + 1
            }
        })
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    let _ = std::panic::take_hook();
    assert_eq!(done.output, (1..=100).collect::<Vec<_>>());
    assert_eq!(done.report.retries(), 20);
    done.report.check_conservation().unwrap();
}

/// `Skip` drops the element, counted as failed; `escalate` fails the pipeline with
/// an error naming the stage, with every element accounted for.
#[test]
fn skip_counts_and_escalation_fails_the_pipeline() {
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Permanent, Action::Skip)
        .action(ErrorClass::Panic, Action::Skip)
        .on_exhausted(Action::Skip);
    let done = Pipeline::from_iter(0..20_u64)
        .supervise(Supervision::new(policy))
        .try_map_async(3, |x| async move {
            if x % 5 == 0 {
                Err(Failure::error(ErrorClass::Permanent, "bad"))
            } else {
                Ok(x)
            }
        })
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output.len(), 16);
    assert_eq!(done.report.failed(), 4);
    done.report.check_conservation().unwrap();

    let policy = SupervisionPolicy::default().action(ErrorClass::Permanent, Action::Escalate);
    let err = Pipeline::from_iter(0..1_000_u64)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
        .try_map_async(3, |x| async move {
            if x == 500 {
                Err(Failure::error(ErrorClass::Permanent, "corrupt record"))
            } else {
                Ok(x)
            }
        })
        .name("parse")
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("parse"), "{message}");
    assert!(message.contains("corrupt record"), "{message}");
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert_eq!(report.stage("parse").unwrap().failed, 1);
}

/// Without supervision an `Err` from `try_map_async` fails the pipeline.
#[test]
fn unsupervised_errors_fail_the_pipeline() {
    let err = Pipeline::from_iter(0..10_u64)
        .try_map_async(2, |x| async move {
            if x == 6 {
                Err(Failure::error(
                    ErrorClass::Transient,
                    "timeout talking to db",
                ))
            } else {
                Ok(x)
            }
        })
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("try_map_async#1"), "{err}");
    err.report().unwrap().check_conservation().unwrap();
}

/// A supervised async sink retries a delivery that timed out, then goes on in
/// order; a delivery that always hangs ends in the dead letters.
#[test]
fn for_each_async_deliveries_are_retried_and_dead_lettered() {
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&delivered);
    let dlq = MemoryDlq::new(4);
    let calls = Calls::default();
    let c = calls.clone();
    let policy = SupervisionPolicy::default()
        .max_attempts(3)
        .backoff(fast())
        .element_timeout(Duration::from_secs(5));
    let dead = dlq.clone();
    let report = paused(move |rt| async move {
        Pipeline::from_iter(0..12_u64)
            .supervise(Supervision::new(policy).dead_letters(dead))
            .for_each_async(move |x| {
                let attempt = c.call(x);
                let out = Arc::clone(&out);
                async move {
                    // 3 hangs on its first attempt; 9 hangs on every attempt.
                    if x == 9 || (x == 3 && attempt == 1) {
                        pending::<()>().await;
                    }
                    out.lock().unwrap().push(x);
                }
            })
            .run(&rt)
            .unwrap()
            .await
            .unwrap()
            .report
    });
    let expected: Vec<u64> = (0..12).filter(|&x| x != 9).collect();
    assert_eq!(*delivered.lock().unwrap(), expected);
    assert_eq!((calls.of(3), calls.of(9)), (2, 3));
    let letters = dlq.drain();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].element, letters[0].attempts), (9, 3));
    assert_eq!(report.dead_lettered(), 1);
    assert_eq!(report.delivered(), 11);
    report.check_conservation().unwrap();
}

/// Conservation under many faults at once: a deterministic pseudo-random mix of
/// errors, panics and successes over 5 000 elements with 16 in flight. Every
/// element ends delivered once, in order, or in the dead letters.
#[test]
fn conservation_under_mixed_async_faults() {
    std::panic::set_hook(Box::new(|_| {}));
    let dlq = MemoryDlq::new(10_000);
    let policy = SupervisionPolicy::default()
        .max_attempts(3)
        .backoff(BackoffConfig::none())
        .action(ErrorClass::Panic, Action::Retry);
    let poison: HashSet<u64> = (0..5_000)
        .filter(|x| hash(*x, 0).is_multiple_of(97))
        .collect();
    let poisoned = poison.clone();
    let calls = Calls::default();
    let c = calls.clone();
    let done = Pipeline::from_iter(0..5_000_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .try_map_async(16, move |x| {
            let attempt = c.call(x);
            let poison = poisoned.contains(&x);
            async move {
                if hash(x, 1).is_multiple_of(3) {
                    tokio::task::yield_now().await;
                }
                let roll = hash(x, u64::from(attempt) + 2) % 100;
                if poison || roll < 5 {
                    Err(Failure::error(ErrorClass::Transient, "flaky"))
                } else if roll < 8 {
                    panic!("flaky panic on {x}")
                } else {
                    Ok(x)
                }
            }
        })
        .collect()
        .default_capacity(32)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    let _ = std::panic::take_hook();
    let dead: HashSet<u64> = dlq.drain().into_iter().map(|l| l.element).collect();
    assert!(
        poison.is_subset(&dead),
        "every poison element is dead-lettered"
    );
    let mut delivered = done.output.clone();
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "order kept, no repeat"
    );
    delivered.extend(dead.iter().copied());
    delivered.sort_unstable();
    assert_eq!(delivered, (0..5_000).collect::<Vec<_>>(), "no gap");
    for x in &dead {
        assert_eq!(calls.of(*x), 3, "element {x} got max_attempts calls");
    }
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.dead_lettered(), dead.len() as u64);
}

/// While the breaker is open (backpressure mode) the stage takes no new input, but
/// the elements already in flight still finish: the cooldown does not freeze them
/// (and their timeouts do not fire because of it).
#[test]
fn elements_in_flight_finish_while_the_breaker_is_open() {
    use weir::supervisor::policy::{BreakerConfig, Trip};
    let cooldown = Duration::from_secs(10);
    let finished = Arc::new(Mutex::new(HashMap::new()));
    let at = Arc::clone(&finished);
    let calls = Calls::default();
    let c = calls.clone();
    let policy = SupervisionPolicy::default()
        .max_attempts(3)
        .backoff(BackoffConfig::none())
        .element_timeout(Duration::from_secs(5))
        .breaker(BreakerConfig::new(Trip::Consecutive(2), cooldown));
    let (output, started) = paused(move |rt| async move {
        let started = tokio::time::Instant::now();
        let done = Pipeline::from_iter(0..6_u64)
            .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
            .try_map_async(4, move |x| {
                let attempt = c.call(x);
                let at = Arc::clone(&at);
                async move {
                    if x < 2 && attempt == 1 {
                        return Err(Failure::error(ErrorClass::Transient, "refused"));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    at.lock().unwrap().insert(x, tokio::time::Instant::now());
                    Ok(x)
                }
            })
            .collect()
            .run(&rt)
            .unwrap()
            .await
            .unwrap();
        done.report.check_conservation().unwrap();
        (done.output, started)
    });
    assert_eq!(output, [0, 1, 2, 3, 4, 5]);
    let finished = finished.lock().unwrap();
    for x in [2, 3] {
        let took = finished[&x] - started;
        assert!(
            took < cooldown,
            "element {x} in flight finished at {took:?}"
        );
    }
    assert!(
        finished[&4] - started >= cooldown,
        "new input waited for the cooldown"
    );
}

/// A splitmix64 hash: deterministic faults from a seed.
fn hash(x: u64, seed: u64) -> u64 {
    let mut z = x
        .wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
