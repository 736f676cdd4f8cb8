//! Hot reconfiguration: typed configs applied to running stages between batches,
//! acknowledged with a generation, never losing or reordering an element; invalid
//! configs rejected with the old one kept; the config in force kept across a
//! restart; a stage's restart policy and a throttle's rate changed while they run.

use crate::common;
#[path = "reconfig/pools.rs"]
mod pools;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::Context;
use std::time::Duration;

use common::paused;
use weir::operator::{Io, Operator, Step};
use weir::prelude::*;

const N: u64 = 1_000_000;
const CHANGES: u64 = 100;

/// 10^6 elements while the config of the tagging stage changes 100 times: every
/// element arrives once and in order, each element carries the config it was
/// processed under, configs take effect in order (the tags never go down), an
/// element sent after an acknowledgement is processed under that config or a
/// later one, and each change is acknowledged with its generation and visible in
/// the stats at once and in the report at the end.
#[test]
fn a_million_elements_under_a_hundred_config_changes() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let tag = ConfigHandle::<u64>::new();
    let (ingress, flow) = Pipeline::ingress::<u64>(1024);
    let running = flow
        .map_with_config(&tag, 0, |generation, x| (x, *generation))
        .name("tag")
        .collect()
        .run(&rt)
        .unwrap();
    let chunk = N / CHANGES;
    futures::executor::block_on(async {
        for c in 0..CHANGES {
            if c > 0 {
                let applied = tag.reconfigure(c).await.unwrap();
                assert_eq!(applied.generation, c);
                assert_eq!(applied.stage, "tag");
                let stats = running.stats();
                let stage = stats.stage("tag").unwrap();
                assert_eq!(stage.config_generation, c);
                assert_eq!(stage.config.as_deref(), Some(c.to_string().as_str()));
            }
            for x in c * chunk..(c + 1) * chunk {
                // The fast path first; wait for room only when the edge is full.
                if let Err(TrySendError::Full(x)) = ingress.try_send(x) {
                    ingress.send(x).await.unwrap();
                }
            }
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.output.len() as u64, N);
    let mut last_tag = 0;
    for (i, &(x, generation)) in done.output.iter().enumerate() {
        assert_eq!(x, i as u64, "element lost, repeated or reordered");
        assert!(generation >= last_tag, "a config took effect out of order");
        assert!(
            generation >= x / chunk,
            "element {x} sent after ack {}",
            x / chunk
        );
        last_tag = generation;
    }
    // The changes happened while elements flowed: many configs were seen.
    let seen: std::collections::BTreeSet<u64> = done.output.iter().map(|p| p.1).collect();
    assert!(seen.len() > 50, "only {} configs seen", seen.len());
    let stage = done.report.stage("tag").unwrap();
    assert_eq!(stage.config_generation, CHANGES - 1);
    assert_eq!(stage.config.as_deref(), Some("99"));
    assert_eq!(tag.generation(), CHANGES - 1);
    assert_eq!(tag.current(), Some(CHANGES - 1));
}

/// A config the handle's check refuses is rejected in the stage with the reason;
/// the threshold in force stays, the rejection is counted, and the generation does
/// not move. An invalid initial config is a build error naming the stage.
#[test]
fn an_invalid_config_is_rejected_and_the_old_one_stays() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let check = |min: &u64| {
        if *min <= 100 {
            Ok(())
        } else {
            Err(format!("threshold {min} is above 100"))
        }
    };
    let min = ConfigHandle::<u64>::with_check(check);
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    let running = flow
        .filter_with_config(&min, 0, |min, x| x % 100 >= *min)
        .name("threshold")
        .collect()
        .run(&rt)
        .unwrap();
    futures::executor::block_on(async {
        assert_eq!(min.reconfigure(50).await.unwrap().generation, 1);
        let err = min.reconfigure(500).await.unwrap_err();
        assert_eq!(
            err,
            ReconfigError::Rejected {
                stage: "threshold".into(),
                reason: "threshold 500 is above 100".into(),
            }
        );
        assert!(err.to_string().contains("old config kept"));
        for x in 0..1_000 {
            ingress.send(x).await.unwrap();
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    // The threshold 50 stayed in force: half of each hundred passes.
    assert_eq!(done.output.len(), 500);
    assert!(done.output.iter().all(|x| x % 100 >= 50));
    let stage = done.report.stage("threshold").unwrap();
    assert_eq!((stage.config_generation, stage.config_rejected), (1, 1));
    assert_eq!(stage.filtered, 500);
    assert_eq!(min.current(), Some(50));

    let bad = ConfigHandle::<u64>::with_check(check);
    let err = Pipeline::from_iter(0..3_u64)
        .filter_with_config(&bad, 1_000, |min, x| x >= min)
        .name("too-high")
        .collect()
        .run(&rt)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`too-high`") && text.contains("above 100"),
        "{text}"
    );
}

/// A handle serves one stage; one not bound to a running stage says so, and a
/// stopped stage answers `Stopped`.
#[test]
fn handles_bind_once_and_report_stopped_stages() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let shared = ConfigHandle::<u64>::new();
    assert_eq!(
        shared.reconfigure_blocking(1).unwrap_err(),
        ReconfigError::NotRunning
    );
    let err = Pipeline::from_iter(0..3_u64)
        .map_with_config(&shared, 1, |k, x| x * k)
        .map_with_config(&shared, 1, |k, x| x * k)
        .name("second")
        .collect()
        .run(&rt)
        .unwrap_err();
    assert!(err.to_string().contains("already attached"), "{err}");

    let k = ConfigHandle::<u64>::new();
    let done = Pipeline::from_iter(0..3_u64)
        .map_with_config(&k, 2, |k, x| x * k)
        .name("double")
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, [0, 2, 4]);
    assert_eq!(
        k.reconfigure_blocking(3).unwrap_err(),
        ReconfigError::Stopped {
            stage: "double".into()
        }
    );
}

/// Multiplies by its config; panics once, on the element 500.
struct Scale {
    k: u64,
    tripped: Arc<AtomicBool>,
}

impl Operator for Scale {
    type In = u64;
    type Out = u64;

    fn kind(&self) -> &'static str {
        "scale"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, u64, u64>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if x == 500 && !self.tripped.swap(true, SeqCst) {
                panic!("trip on {x}");
            }
            io.push(x * self.k);
        }
        io.finish_when_drained()
    }
}

impl Reconfigurable for Scale {
    type Config = u64;

    fn reconfigure(&mut self, k: &u64) -> Result<(), String> {
        if *k == 0 {
            return Err("k must be positive".into());
        }
        self.k = *k;
        Ok(())
    }
}

fn quick_restarts() -> SupervisionPolicy {
    SupervisionPolicy::default().restart_backoff(BackoffConfig::new(
        Duration::from_millis(1),
        Duration::from_millis(1),
    ))
}

/// The factory builds `Scale` with k = 1; the config applied at run time (k = 7)
/// is applied again to the fresh operator after the restart, so every element,
/// before and after the restart, is multiplied by 7.
#[test]
fn a_restart_keeps_the_config_in_force() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let tripped = Arc::new(AtomicBool::new(false));
    let k = ConfigHandle::<u64>::new();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let trip = tripped.clone();
    let running = flow
        .supervise(Supervision::new(quick_restarts()).dead_letters(MemoryDlq::new(4)))
        .via_factory_reconfigurable(
            move || Scale {
                k: 1,
                tripped: trip.clone(),
            },
            &k,
        )
        .name("scale")
        .collect()
        .run(&rt)
        .unwrap();
    futures::executor::block_on(async {
        assert_eq!(k.reconfigure(7).await.unwrap().generation, 1);
        for x in 0..1_000 {
            ingress.send(x).await.unwrap();
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    assert!(tripped.load(SeqCst));
    let stage = done.report.stage("scale").unwrap();
    assert_eq!(stage.restarts, 1);
    assert_eq!(stage.config_generation, 1);
    let expected: Vec<u64> = (0..1_000).map(|x| x * 7).collect();
    assert_eq!(done.output, expected);
}

/// A policy that never drops an element: panics restart (quickly) or escalate.
fn never_drops(panic: Action) -> SupervisionPolicy {
    quick_restarts()
        .action(ErrorClass::Panic, panic)
        .action(ErrorClass::Permanent, Action::Escalate)
        .on_exhausted(Action::Escalate)
}

/// The stage starts with a policy that escalates panics; a new policy (restart)
/// applied at run time makes the same panic a restart instead of a failed
/// pipeline. Policies the stage cannot honour are rejected and the one in force
/// kept.
#[test]
fn the_restart_policy_changes_at_run_time() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let policy = ConfigHandle::<SupervisionPolicy>::new();
    let tripped = Arc::new(AtomicBool::new(false));
    let trip = tripped.clone();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let running = flow
        .supervise(Supervision::new(never_drops(Action::Escalate)).dead_letters(MemoryDlq::new(4)))
        .policy_handle(&policy)
        .via_factory(move || Scale {
            k: 1,
            tripped: trip.clone(),
        })
        .name("scale")
        .collect()
        .run(&rt)
        .unwrap();
    futures::executor::block_on(async {
        // Element timeouts only apply to async operators: rejected.
        let timeout = never_drops(Action::Restart).element_timeout(Duration::from_secs(1));
        let err = policy.reconfigure(timeout).await.unwrap_err();
        assert!(err.to_string().contains("element_timeout"), "{err}");
        // The graph was validated for a stage that drops nothing: a policy that
        // dead-letters is rejected.
        let drops = never_drops(Action::DeadLetter);
        let err = policy.reconfigure(drops).await.unwrap_err();
        assert!(err.to_string().contains("can drop elements"), "{err}");
        let restart = never_drops(Action::Restart);
        assert_eq!(policy.reconfigure(restart).await.unwrap().generation, 1);
        for x in 0..1_000 {
            ingress.send(x).await.unwrap();
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    assert!(tripped.load(SeqCst));
    let stage = done.report.stage("scale").unwrap();
    assert_eq!((stage.restarts, stage.config_rejected), (1, 2));
    assert_eq!(done.output, (0..1_000).collect::<Vec<u64>>());
}

/// Without the new policy the same panic fails the pipeline: the test above
/// proves the change, not the default.
#[test]
fn the_initial_policy_escalates_the_panic() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let tripped = Arc::new(AtomicBool::new(false));
    let err = Pipeline::from_iter(0..1_000_u64)
        .supervise(Supervision::new(never_drops(Action::Escalate)).dead_letters(MemoryDlq::new(4)))
        .via_factory(move || Scale {
            k: 1,
            tripped: tripped.clone(),
        })
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("trip on 500"), "{err}");
}

/// A shaping throttle at 10 per second would need 20 virtual seconds for 200
/// elements; raised to 10 000 per second after the first few, it finishes in
/// well under a second more, with every element delivered in order.
#[test]
fn a_throttle_rate_changes_while_it_runs() {
    let (done, elapsed) = paused(|rt| async move {
        let rate = ConfigHandle::<ThrottleConfig>::new();
        let started = tokio::time::Instant::now();
        let running = Pipeline::from_iter(0..200_u32)
            .throttle_with_config(Throttle::shape(Rate::per_second(10)), &rate)
            .name("throttle")
            .collect()
            .run(&rt)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Burst 0 is invalid: rejected, 10 per second stays.
        assert!(
            rate.reconfigure(ThrottleConfig::new(Rate::per_second(10_000), 0))
                .await
                .is_err()
        );
        let applied = rate
            .reconfigure(ThrottleConfig::new(Rate::per_second(10_000), 10))
            .await
            .unwrap();
        assert_eq!(applied.generation, 1);
        let done = running.await.unwrap();
        (done, started.elapsed())
    });
    done.report.check_conservation().unwrap();
    assert_eq!(done.output, (0..200).collect::<Vec<u32>>());
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    let stage = done.report.stage("throttle").unwrap();
    assert_eq!((stage.config_generation, stage.config_rejected), (1, 1));
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct EtlSettings {
    min: u64,
    rate: u32,
}

/// The file watcher applies only what changed (the threshold, not the rate), a
/// file that does not parse or fails a handle's check is rejected naming the
/// file, line and field with nothing applied, and a later valid file applies.
#[test]
fn the_config_file_watcher_applies_changes_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etl.toml");
    std::fs::write(&path, "min = 10\nrate = 100000\n").unwrap();
    let min = ConfigHandle::<u64>::with_check(|m| {
        if *m < 100 {
            Ok(())
        } else {
            Err(format!("min {m} must be below 100"))
        }
    });
    let rate = ConfigHandle::<ThrottleConfig>::new();
    let mut watcher = ConfigWatcher::<EtlSettings>::new(&path)
        .bind(&min, |s| s.min)
        .bind(&rate, |s| {
            ThrottleConfig::new(Rate::per_second(s.rate), 100)
        });
    let initial = watcher.load().unwrap();
    assert!(!watcher.changed());

    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let running = flow
        .filter_with_config(&min, initial.min, |min, x| x % 100 >= *min)
        .name("threshold")
        .throttle_with_config(
            Throttle::shape(Rate::per_second(initial.rate)).burst(100),
            &rate,
        )
        .name("rate")
        .collect()
        .run(&rt)
        .unwrap();

    // A type error: named by file, line and field; nothing applied.
    std::fs::write(&path, "min = 20\nrate = \"faster\"\n").unwrap();
    assert!(watcher.changed());
    let err = futures::executor::block_on(watcher.poll()).unwrap_err();
    assert_eq!((err.line, err.field.as_deref()), (Some(2), Some("rate")));
    assert!(err.to_string().contains("etl.toml, line 2"), "{err}");
    // A value the threshold's check refuses: rejected before anything applies.
    std::fs::write(&path, "min = 500\nrate = 200000\n").unwrap();
    let err = watcher.reload_blocking().unwrap_err();
    assert!(err.message.contains("must be below 100"), "{err}");
    assert_eq!((min.generation(), rate.generation()), (0, 0));
    assert_eq!(watcher.current(), Some(&initial));
    // Only the threshold changed: only it is reconfigured.
    std::fs::write(&path, "min = 50\nrate = 100000\n").unwrap();
    let reload = futures::executor::block_on(watcher.poll())
        .unwrap()
        .unwrap();
    assert_eq!(reload.applied.len(), 1);
    assert_eq!(reload.applied[0].stage, "threshold");
    assert_eq!((min.generation(), rate.generation()), (1, 0));
    assert!(
        futures::executor::block_on(watcher.poll())
            .unwrap()
            .is_none()
    );

    futures::executor::block_on(async {
        for x in 0..1_000 {
            ingress.send(x).await.unwrap();
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.output.len(), 500);
    let stage = done.report.stage("threshold").unwrap();
    assert_eq!(
        (stage.config_generation, stage.config.as_deref()),
        (1, Some("50"))
    );
    assert_eq!(done.report.stage("rate").unwrap().config_generation, 0);
}

/// One step of a schedule: send this many elements, then apply this threshold.
fn schedule() -> impl proptest::strategy::Strategy<Value = Vec<(u64, u64)>> {
    proptest::collection::vec((0_u64..400, 0_u64..100), 0..8)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Whatever the schedule of thresholds and the capacity: every element is
    /// delivered or filtered (exact counts), the output keeps input order, and each
    /// element's fate matches a threshold in force at or after the last
    /// acknowledgement before it was sent.
    #[test]
    fn any_schedule_of_configs_conserves_and_orders(
        steps in schedule(),
        capacity in 1_usize..64,
    ) {
        let rt = Runtime::builder().arbiters(2).build().unwrap();
        let min = ConfigHandle::<u64>::new();
        let (ingress, flow) = Pipeline::ingress::<u64>(capacity);
        let running = flow
            .filter_with_config(&min, 0, |min, x| x % 100 >= *min)
            .name("threshold")
            .capacity(capacity)
            .collect()
            .run(&rt)
            .unwrap();
        // thresholds[k]: in force after the k-th acknowledgement; sent_after[x]: k.
        let mut thresholds = vec![0_u64];
        let mut sent_after = Vec::new();
        futures::executor::block_on(async {
            let mut x = 0;
            for &(count, threshold) in &steps {
                for _ in 0..count {
                    ingress.send(x).await.unwrap();
                    sent_after.push(thresholds.len() - 1);
                    x += 1;
                }
                min.reconfigure(threshold).await.unwrap();
                thresholds.push(threshold);
            }
        });
        drop(ingress);
        let done = running.wait().unwrap();
        done.report.check_conservation().unwrap();
        let n = sent_after.len() as u64;
        let stage = done.report.stage("threshold").unwrap();
        proptest::prop_assert_eq!(done.output.len() as u64 + stage.filtered, n);
        proptest::prop_assert!(done.output.windows(2).all(|w| w[0] < w[1]));
        proptest::prop_assert_eq!(stage.config_generation, steps.len() as u64);
        let mut kept = done.output.iter().peekable();
        for x in 0..n {
            let passed = kept.next_if_eq(&&x).is_some();
            let possible = &thresholds[sent_after[x as usize]..];
            proptest::prop_assert!(
                possible.iter().any(|t| (x % 100 >= *t) == passed),
                "element {} {} under none of {:?}", x, if passed { "kept" } else { "filtered" }, possible
            );
        }
    }
}
