//! Observability: the health verdict follows breakers, stalls, restarts and
//! failures; stats carry breaker state and last error; the `metrics` facade gets
//! every stage's counters, gauges and histograms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use weir::observe::{BreakerState, Health, HealthPolicy};
use weir::prelude::*;
use weir::supervisor::policy::{BreakerConfig, Trip};

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// Polls `cond` until it holds, for at most five seconds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn health_turns_degraded_when_a_breaker_opens_and_healthy_when_it_closes() {
    let down = Arc::new(AtomicBool::new(true));
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Transient, Action::Retry)
        .max_attempts(10_000)
        .backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .breaker(BreakerConfig::new(
            Trip::Consecutive(3),
            Duration::from_millis(30),
        ));
    let d = down.clone();
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    let running = flow
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
        .try_map(move |x| {
            if d.load(Ordering::SeqCst) {
                Err(Failure::error(ErrorClass::Transient, "service down"))
            } else {
                Ok(x)
            }
        })
        .name("lookup")
        .for_each(|_| {})
        .run(&rt)
        .unwrap();
    assert_eq!(running.health(), Health::Healthy);

    ingress.try_send(1).unwrap();
    eventually("the breaker opens", || !running.health().is_healthy());
    let health = running.health();
    assert!(matches!(health, Health::Degraded(_)), "{health:?}");
    assert!(
        health.reasons()[0].contains("`lookup`") && health.reasons()[0].contains("circuit breaker"),
        "{health:?}"
    );
    let stats = running.stats();
    let lookup = stats.stage("lookup").unwrap();
    assert_ne!(lookup.breaker, BreakerState::Closed);
    assert_eq!(lookup.last_error.as_deref(), Some("service down"));

    down.store(false, Ordering::SeqCst);
    eventually("the breaker closes", || running.health().is_healthy());
    assert_eq!(
        running.stats().stage("lookup").unwrap().breaker,
        BreakerState::Closed
    );
    drop(ingress);
    running.wait().unwrap().report.check_conservation().unwrap();
}

#[test]
fn health_fails_with_the_pipeline_and_degrades_on_restart_storms() {
    let rt = rt();
    // A failure: Failing, naming the stage.
    let running = Pipeline::from_iter(0..10_u64)
        .map(|x| {
            assert!(x != 5, "boom");
            x
        })
        .name("broken")
        .collect()
        .run(&rt)
        .unwrap();
    let controller = running.controller();
    let _ = running.wait();
    let health = controller.health();
    assert!(matches!(health, Health::Failing(_)), "{health:?}");
    assert!(health.reasons()[0].contains("`broken`"), "{health:?}");

    // Restarts above the policy's rate: Degraded.
    let policy = SupervisionPolicy::default()
        .restart_backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .intensity(weir::supervisor::policy::RestartIntensity::new(
            1_000,
            Duration::from_secs(60),
        ));
    let tripped = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    let running = flow
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
        .map(move |x| {
            if tripped.lock().unwrap().insert(x) {
                panic!("first try of {x}");
            }
            x
        })
        .name("flaky")
        .for_each(|_| {})
        .run(&rt)
        .unwrap();
    for x in 0..8 {
        futures::executor::block_on(ingress.send(x)).unwrap();
    }
    let strict = HealthPolicy::default().max_restarts(5, Duration::from_secs(60));
    eventually("8 restarts", || {
        running.stats().stage("flaky").unwrap().restarts == 8
    });
    let health = running.controller().health_with(&strict);
    assert!(
        matches!(&health, Health::Degraded(r) if r[0].contains("8 restarts")),
        "{health:?}"
    );
    let lenient = HealthPolicy::default().max_restarts(100, Duration::from_secs(60));
    assert!(running.controller().health_with(&lenient).is_healthy());
    drop(ingress);
    running.wait().unwrap();
}

fn find<'a>(
    snapshot: &'a [(
        CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    kind: MetricKind,
    name: &str,
    stage: &str,
) -> Option<&'a DebugValue> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let k = key.key();
        let matches = key.kind() == kind
            && k.name() == name
            && k.labels().any(|l| l.key() == "stage" && l.value() == stage);
        matches.then_some(value)
    })
}

#[test]
fn every_stage_publishes_its_counters_gauges_and_histograms() {
    let recorder = DebuggingRecorder::new();
    let snapshotter: Snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let done = Pipeline::from_iter(0..10_000_u64)
        .map(|x| x * 2)
        .name("double")
        .filter(|x| x % 3 == 0)
        .name("thirds")
        .collect()
        .named("observed")
        .metrics_interval(Duration::from_millis(5))
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    // The sampler publishes once more after the pipeline has finished. A
    // snapshot drains the histograms' samples, so they are summed as they come.
    let mut batched = 0.0;
    let mut snapshot = Vec::new();
    eventually("the final sample", || {
        snapshot = snapshotter.snapshot().into_vec();
        if let Some(DebugValue::Histogram(sizes)) = find(
            &snapshot,
            MetricKind::Histogram,
            "weir_stage_batch_size",
            "double",
        ) {
            batched += sizes.iter().map(|s| s.into_inner()).sum::<f64>();
        }
        find(
            &snapshot,
            MetricKind::Counter,
            "weir_stage_completed_total",
            "double",
        ) == Some(&DebugValue::Counter(10_000))
    });
    assert_eq!(batched, 10_000.0, "every element was in one recorded batch");
    assert_eq!(
        find(
            &snapshot,
            MetricKind::Counter,
            "weir_stage_filtered_total",
            "thirds"
        ),
        Some(&DebugValue::Counter(10_000 - 3_334))
    );
    assert_eq!(
        find(
            &snapshot,
            MetricKind::Counter,
            "weir_stage_received_total",
            "thirds"
        ),
        Some(&DebugValue::Counter(10_000))
    );
    for gauge in [
        "weir_stage_in_flight",
        "weir_stage_mailbox",
        "weir_stage_credit",
        "weir_stage_breaker_state",
    ] {
        assert!(
            find(&snapshot, MetricKind::Gauge, gauge, "double").is_some(),
            "{gauge} missing"
        );
    }
    assert!(
        snapshot
            .iter()
            .any(|(k, _, _, _)| k.key().name() == "weir_pipeline_health"
                && k.key()
                    .labels()
                    .any(|l| l.key() == "pipeline" && l.value() == "observed")),
        "pipeline health gauge"
    );

    // Regression: the sampler used to be installed after the stages had started,
    // so a pipeline that finished before that published no final sample at all.
    // The final sample is taken before `wait` returns, so no polling here.
    let rt = rt();
    for i in 0..50 {
        let name = format!("tiny-{i}");
        Pipeline::from_iter(0..1_u64)
            .map(|x| x + 1)
            .name("tiny")
            .collect()
            .named(name.clone())
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        let snapshot = snapshotter.snapshot().into_vec();
        let completed = snapshot.iter().find_map(|(key, _, _, value)| {
            let k = key.key();
            let mine = key.kind() == MetricKind::Counter
                && k.name() == "weir_stage_completed_total"
                && k.labels()
                    .any(|l| l.key() == "stage" && l.value() == "tiny")
                && k.labels()
                    .any(|l| l.key() == "pipeline" && l.value() == name);
            mine.then_some(value)
        });
        assert_eq!(
            completed,
            Some(&DebugValue::Counter(1)),
            "pipeline {name}'s final sample"
        );
    }
}
