//! Supervised stages: failing elements are retried with backoff, dead-lettered,
//! skipped or escalated by the policy; restarts keep the stage's queue and are
//! limited by the restart intensity; conservation counts every element.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::prelude::*;
use weir::{EventError, Events};

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

fn fast() -> BackoffConfig {
    BackoffConfig::new(Duration::from_millis(1), Duration::from_millis(4))
}

fn drain(events: &mut Events) -> Vec<SupervisionEvent> {
    let mut all = Vec::new();
    loop {
        match futures::executor::block_on(events.recv()) {
            Ok(event) => all.push(event),
            Err(EventError::Ended) => return all,
            Err(other) => panic!("{other:?}"),
        }
    }
}

/// Panics the first time it sees each element that `flaky` selects.
fn first_try_fails(flaky: impl Fn(u64) -> bool + Send + 'static) -> impl FnMut(u64) -> u64 + Send {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    move |x| {
        if flaky(x) && seen.lock().unwrap().insert(x) {
            panic!("transient trouble with {x}");
        }
        x * 10
    }
}

/// Drains `dlq` as a consumer would until the pipeline ends; returns its completion
/// and every letter's element, in order.
fn drain_while_running<R: Send + 'static>(
    running: Running<R>,
    dlq: &MemoryDlq<u64>,
) -> (Completion<R>, Vec<u64>) {
    let mut letters = Vec::new();
    while !running.controller().is_finished() {
        letters.extend(dlq.drain().into_iter().map(|l| l.element));
        std::thread::sleep(Duration::from_millis(1));
    }
    let done = running.wait().unwrap();
    letters.extend(dlq.drain().into_iter().map(|l| l.element));
    (done, letters)
}

/// Polls `cond` until it holds, for at most five seconds.
fn eventually(mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn transient_panics_are_retried_in_order() {
    let dlq = MemoryDlq::new(10);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Retry)
        .backoff(fast());
    let done = Pipeline::from_iter(0..2_000_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .map(first_try_fails(|x| x % 50 == 3))
        .name("flaky")
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, (0..2_000).map(|x| x * 10).collect::<Vec<_>>());
    let flaky = done.report.stage("flaky").unwrap();
    assert_eq!(flaky.retries, 40);
    assert_eq!(flaky.failed, 0);
    assert_eq!(done.report.dead_lettered(), 0);
    assert!(dlq.is_empty());
    done.report.check_conservation().unwrap();
}

#[test]
fn a_poison_element_is_dead_lettered_after_max_attempts() {
    let dlq = MemoryDlq::new(10);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Retry)
        .max_attempts(3)
        .backoff(fast());
    let mut runnable = Pipeline::from_iter(0..500_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .map(|x| if x == 77 { panic!("poison {x}") } else { x })
        .name("parse")
        .collect();
    let mut events = runnable.subscribe();
    let done = runnable.run(&rt()).unwrap().wait().unwrap();
    assert_eq!(
        done.output,
        (0..500).filter(|&x| x != 77).collect::<Vec<_>>()
    );
    assert_eq!(done.report.dead_lettered(), 1);
    assert_eq!(done.report.retries(), 2);
    done.report.check_conservation().unwrap();

    let letters = dlq.drain();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.element, 77);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.stage, "parse");
    assert_eq!(letter.element_index, 77);
    assert_eq!(letter.class, ErrorClass::Panic);
    assert!(letter.error.contains("poison 77"));

    let all = drain(&mut events);
    let failed: Vec<u32> = all
        .iter()
        .filter_map(|e| match e {
            SupervisionEvent::StageFailed {
                element_index: Some(77),
                attempt,
                ..
            } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(failed, [1, 2, 3]);
    let retried = all
        .iter()
        .filter(|e| matches!(e, SupervisionEvent::ElementRetried { .. }))
        .count();
    assert_eq!(retried, 2);
    assert!(all.iter().any(|e| matches!(
        e,
        SupervisionEvent::ElementDeadLettered {
            element_index: 77,
            attempts: 3,
            ..
        }
    )));
}

#[test]
fn skip_drops_the_element_and_counts_it() {
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Skip)
        .action(ErrorClass::Permanent, Action::Skip)
        .on_exhausted(Action::Skip);
    let done = Pipeline::from_iter(0..100_u64)
        .supervise(policy)
        .filter(|x| if x % 25 == 0 { panic!("bad {x}") } else { true })
        .name("check")
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        done.output,
        (0..100).filter(|x| x % 25 != 0).collect::<Vec<_>>()
    );
    assert_eq!(done.report.stage("check").unwrap().failed, 4);
    done.report.check_conservation().unwrap();
}

#[test]
fn a_restart_keeps_every_queued_element() {
    let dlq = MemoryDlq::new(10);
    let policy = SupervisionPolicy::default().restart_backoff(fast());
    let done = Pipeline::from_iter(0..1_000_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq))
        .map(first_try_fails(|x| x == 10))
        .name("worker")
        .capacity(64)
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, (0..1_000).map(|x| x * 10).collect::<Vec<_>>());
    let worker = done.report.stage("worker").unwrap();
    assert_eq!(worker.restarts, 1);
    assert_eq!(worker.abandoned, 0);
    done.report.check_conservation().unwrap();
}

#[test]
fn restart_intensity_escalates_and_fails_the_pipeline() {
    let dlq = MemoryDlq::new(10);
    let policy = SupervisionPolicy::default()
        .max_attempts(100)
        .intensity(weir::supervisor::policy::RestartIntensity::new(
            3,
            Duration::from_secs(60),
        ))
        .restart_backoff(fast());
    let mut runnable = Pipeline::from_iter(0..10_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq))
        .map(|x| -> u64 { panic!("always {x}") })
        .name("doomed")
        .collect();
    let mut events = runnable.subscribe();
    let err = runnable.run(&rt()).unwrap().wait().unwrap_err();
    assert!(
        err.to_string().contains("restart intensity exceeded"),
        "{err}"
    );
    let report = err.report().unwrap();
    assert_eq!(report.stage("doomed").unwrap().restarts, 3);
    report.check_conservation().unwrap();
    let all = drain(&mut events);
    let restarts = all
        .iter()
        .filter(|e| matches!(e, SupervisionEvent::StageRestarted { .. }))
        .count();
    assert_eq!(restarts, 3);
    assert!(
        all.iter()
            .any(|e| matches!(e, SupervisionEvent::Escalated { .. }))
    );
}

#[test]
fn a_full_dead_letter_queue_escalates_instead_of_dropping() {
    let dlq = MemoryDlq::new(1);
    let policy = SupervisionPolicy::default().action(ErrorClass::Panic, Action::DeadLetter);
    let err = Pipeline::from_iter(0..100_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .map(|x| if x % 10 == 5 { panic!("bad {x}") } else { x })
        .name("strict")
        .for_each(drop)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("dead-letter queue full"), "{err}");
    let report = err.report().unwrap();
    assert_eq!(report.dead_lettered(), 1);
    assert_eq!(dlq.len(), 1);
    report.check_conservation().unwrap();
}

/// Under `WhenDeadLettersFull::Backpressure` a full queue holds the stage back
/// instead of failing it: the letter waits in the stage (counted as held), no input
/// is taken, and once a consumer drains the queue everything goes on in order.
#[test]
fn a_full_dead_letter_queue_can_backpressure_until_drained() {
    use weir::supervisor::policy::WhenDeadLettersFull;
    let dlq = MemoryDlq::new(2);
    let policy = SupervisionPolicy::default()
        .when_dead_letters_full(WhenDeadLettersFull::Backpressure)
        .dead_letters_retry(Duration::from_millis(1));
    let rt = rt();
    let running = Pipeline::from_iter(0..200_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .try_map(|x| {
            if x % 10 == 0 {
                Err(Failure::error(ErrorClass::Permanent, format!("bad {x}")))
            } else {
                Ok(x)
            }
        })
        .name("strict")
        .collect()
        .default_capacity(8)
        .run(&rt)
        .unwrap();
    // The queue is full after two letters: the stage holds the third and waits.
    eventually(|| dlq.len() == 2);
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        !running.controller().is_finished(),
        "a full queue holds the stage back"
    );
    let strict = running.stats();
    let strict = strict.stage("strict").unwrap();
    assert_eq!(
        strict.dead_lettered, 2,
        "the third letter is held, not counted"
    );
    let (done, letters) = drain_while_running(running, &dlq);
    assert_eq!(letters, (0..200).step_by(10).collect::<Vec<_>>());
    let expected: Vec<u64> = (0..200).filter(|x| x % 10 != 0).collect();
    assert_eq!(done.output, expected);
    assert_eq!(done.report.dead_lettered(), 20);
    done.report.check_conservation().unwrap();
}

/// An open breaker that diverts to a full dead-letter queue backpressures too,
/// under the same policy, instead of failing.
#[test]
fn diverting_into_a_full_dead_letter_queue_backpressures() {
    use weir::supervisor::policy::{BreakerConfig, OpenBehavior, Trip, WhenDeadLettersFull};
    let dlq = MemoryDlq::new(3);
    let policy = SupervisionPolicy::default()
        .when_dead_letters_full(WhenDeadLettersFull::Backpressure)
        .dead_letters_retry(Duration::from_millis(1))
        .breaker(
            BreakerConfig::new(Trip::Consecutive(1), Duration::from_secs(600))
                .when_open(OpenBehavior::DeadLetter),
        );
    let rt = rt();
    let running = Pipeline::from_iter(0..50_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .try_map(|x| {
            if x == 0 {
                Err(Failure::error(ErrorClass::Permanent, "service down"))
            } else {
                Ok(x)
            }
        })
        .name("guarded")
        .collect()
        .default_capacity(8)
        .run(&rt)
        .unwrap();
    eventually(|| dlq.len() == 3);
    std::thread::sleep(Duration::from_millis(30));
    assert!(!running.controller().is_finished());
    let (done, letters) = drain_while_running(running, &dlq);
    assert_eq!(letters, (0..50).collect::<Vec<_>>());
    assert!(done.output.is_empty());
    assert_eq!(done.report.dead_lettered(), 50);
    done.report.check_conservation().unwrap();
}

/// A letter still waiting for room when the pipeline is aborted is reported as
/// abandoned, never silently lost.
#[test]
fn a_letter_waiting_for_room_is_abandoned_on_abort() {
    use weir::supervisor::policy::WhenDeadLettersFull;
    let dlq = MemoryDlq::new(1);
    let policy = SupervisionPolicy::default()
        .when_dead_letters_full(WhenDeadLettersFull::Backpressure)
        .dead_letters_retry(Duration::from_millis(1));
    let rt = rt();
    let running = Pipeline::from_iter(0..100_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .try_map(|x| {
            if x == 3 || x == 5 {
                Err(Failure::error(ErrorClass::Permanent, format!("bad {x}")))
            } else {
                Ok(x)
            }
        })
        .name("strict")
        .collect()
        .run(&rt)
        .unwrap();
    eventually(|| dlq.len() == 1);
    std::thread::sleep(Duration::from_millis(30));
    let report = futures::executor::block_on(running.abort()).unwrap().report;
    report.check_conservation().unwrap();
    let strict = report.stage("strict").unwrap();
    assert_eq!(strict.dead_lettered, 1);
    assert!(strict.abandoned >= 1, "{strict:?}");
    assert_eq!(dlq.len(), 1);
}

#[test]
fn policies_stages_cannot_apply_yet_are_rejected_at_build_time() {
    let without_dlq = Pipeline::from_iter(0..3_u64)
        .supervise(SupervisionPolicy::default())
        .map(|x| x)
        .name("needs-dlq")
        .collect()
        .run(&rt())
        .unwrap_err();
    assert!(
        matches!(&without_dlq, BuildError::InvalidArgument { stage, message }
            if stage == "needs-dlq" && message.contains("no dead-letter queue")),
        "{without_dlq:?}"
    );
    let stall = SupervisionPolicy::default()
        .element_timeout(Duration::from_secs(1))
        .on_exhausted(Action::Escalate)
        .action(ErrorClass::Permanent, Action::Escalate);
    let err = Pipeline::from_iter(0..3_u64)
        .supervise(stall)
        .map(|x| x)
        .collect()
        .run(&rt())
        .unwrap_err();
    assert!(err.to_string().contains("element_timeout"), "{err}");
}

/// Chaos, deterministic from a seed: elements carry per-key sequence numbers; some
/// calls fail transiently (once), some elements are poison (always fail). Every
/// element ends delivered exactly once or in the dead letters after exactly
/// `max_attempts`; per key, the delivered sequence has no gap other than the
/// dead-lettered elements and no repeat.
/// Runs `n` elements over `keys` keys (each `(key, seq, i)`) through a supervised
/// map where element `i` is poison (always panics) when `mix(i ^ seed)` is a
/// multiple of 1000 (0.1 %) and panics once, transiently, when a second hash is a
/// multiple of 100 (1 % of the elements), all deterministic from `seed`; checks
/// that every element is delivered exactly once or dead-lettered after exactly
/// `max_attempts`, with no gap and no repeat in any key's sequence.
fn chaos(n: u64, keys: u64, seed: u64) {
    fn mix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let poison = move |i: u64| mix(i ^ seed).is_multiple_of(1000);
    let transient = move |i: u64| mix(i ^ seed.rotate_left(7)).is_multiple_of(100);
    let dlq = MemoryDlq::new(n as usize / 100 + 10);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Retry)
        .max_attempts(4)
        .backoff(BackoffConfig::none());
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let done = Pipeline::from_iter((0..n).map(move |i| (i % keys, i / keys, i)))
        .supervise(
            Supervision::new(policy)
                .dead_letters(dlq.clone())
                .seed(seed),
        )
        .map(move |(key, seq, i)| {
            if poison(i) {
                panic!("poison {i}");
            }
            if transient(i) && seen.lock().unwrap().insert(i) {
                panic!("transient {i}");
            }
            (key, seq, i)
        })
        .name("chaos")
        .collect()
        .default_capacity(128)
        .max_batch(32)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    let letters = dlq.drain();
    let poisoned: HashSet<u64> = (0..n).filter(|&i| poison(i)).collect();
    assert_eq!(letters.len(), poisoned.len());
    for letter in &letters {
        assert!(poisoned.contains(&letter.element.2));
        assert_eq!(letter.attempts, 4);
        assert_eq!(letter.error, format!("poison {}", letter.element.2));
    }
    assert_eq!(done.output.len() as u64 + letters.len() as u64, n);
    let mut next = vec![0_u64; keys as usize];
    for &(key, seq, i) in &done.output {
        // Skip over dead-lettered elements of this key, then expect exactly `seq`.
        while poisoned.contains(&(next[key as usize] * keys + key)) {
            next[key as usize] += 1;
        }
        assert_eq!(
            seq, next[key as usize],
            "key {key}: element {i} out of sequence"
        );
        next[key as usize] += 1;
    }
    let transient_count = (0..n).filter(|&i| transient(i) && !poison(i)).count() as u64;
    let expected_retries = transient_count + 3 * poisoned.len() as u64;
    assert_eq!(done.report.retries(), expected_retries);
}

/// Regression: a retried element that succeeded alone in its step (batches of one)
/// left its attempt count behind, so the next failing element started at attempt 2
/// and was dead-lettered one call early.
#[test]
fn attempts_restart_from_one_for_each_element() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&calls);
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let dlq = MemoryDlq::new(4);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Retry)
        .max_attempts(4)
        .backoff(BackoffConfig::none());
    let done = Pipeline::from_iter(0..6_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .map(move |x| {
            log.lock().unwrap().push(x);
            if x == 4 || (x == 3 && seen.lock().unwrap().insert(x)) {
                panic!("fails on {x}");
            }
            x
        })
        .collect()
        .max_batch(1)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, [0, 1, 2, 3, 5]);
    let calls_on_4 = calls.lock().unwrap().iter().filter(|&&x| x == 4).count();
    assert_eq!(calls_on_4, 4, "the poison element gets max_attempts calls");
    assert_eq!(dlq.drain()[0].attempts, 4);
    assert_eq!(done.report.retries(), 1 + 3);
}

/// The large deterministic case: 10⁶ elements over 64 keys, about 10 000
/// transient panics and 1 000 poison elements.
#[test]
fn chaos_conserves_every_element_and_every_key_sequence() {
    chaos(1_000_000, 64, 42);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// The same invariants for random seeds, sizes and key counts.
    #[test]
    fn chaos_conserves_for_any_seed(
        seed in proptest::prelude::any::<u64>(),
        n in 1_000_u64..6_000,
        keys in 1_u64..80,
    ) {
        chaos(n, keys, seed);
    }
}

#[test]
fn operators_that_could_duplicate_or_misattribute_are_not_supervisable() {
    let dlq = MemoryDlq::new(1);
    let err = Pipeline::from_iter(0..3_u64)
        .supervise(Supervision::new(SupervisionPolicy::default()).dead_letters(dlq))
        .flat_map(|x| [x, x])
        .name("expand")
        .collect()
        .run(&rt())
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidArgument { stage, message }
            if stage == "expand" && message.contains("cannot be supervised yet")),
        "{err:?}"
    );
}

/// Tags each element with the operator's incarnation and its own running count;
/// panics once, on element 50.
struct Tagger {
    incarnation: u64,
    count: u64,
    failed_once: Arc<Mutex<bool>>,
}

impl weir::operator::Operator for Tagger {
    type In = u64;
    type Out = (u64, u64, u64);

    fn kind(&self) -> &'static str {
        "tagger"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(
        &mut self,
        io: &mut weir::operator::Io<'_, u64, (u64, u64, u64)>,
        _cx: &mut std::task::Context<'_>,
    ) -> weir::operator::Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if x == 50 && !std::mem::replace(&mut *self.failed_once.lock().unwrap(), true) {
                panic!("state corrupted at {x}");
            }
            io.push((x, self.incarnation, self.count));
            self.count += 1;
        }
        io.finish_when_drained()
    }
}

#[test]
fn a_restart_builds_fresh_state_from_the_factory() {
    let incarnations = Arc::new(Mutex::new(0_u64));
    let failed_once = Arc::new(Mutex::new(false));
    let (made, flag) = (Arc::clone(&incarnations), Arc::clone(&failed_once));
    let policy = SupervisionPolicy::default().restart_backoff(BackoffConfig::none());
    let done = Pipeline::from_iter(0..100_u64)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(1)))
        .via_factory(move || {
            let mut n = made.lock().unwrap();
            *n += 1;
            Tagger {
                incarnation: *n,
                count: 0,
                failed_once: Arc::clone(&flag),
            }
        })
        .name("tagger")
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(*incarnations.lock().unwrap(), 2);
    assert_eq!(done.report.restarts(), 1);
    let values: Vec<u64> = done.output.iter().map(|(x, _, _)| *x).collect();
    assert_eq!(
        values,
        (0..100).collect::<Vec<_>>(),
        "nothing lost or reordered"
    );
    for &(x, incarnation, count) in &done.output {
        if x < 50 {
            assert_eq!((incarnation, count), (1, x));
        } else {
            // The new incarnation starts counting from 0 with the failed element.
            assert_eq!((incarnation, count), (2, x - 50));
        }
    }
    done.report.check_conservation().unwrap();
}
