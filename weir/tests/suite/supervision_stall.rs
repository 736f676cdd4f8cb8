//! The stall watchdog acts (`on_stall`): a stage stuck in synchronous user code is
//! seen from outside its thread, reported, and restarted or failed; a junction
//! stuck in its key function is reported. These tests block a thread on purpose
//! (`std::thread::sleep` in user code is the case under test), with timeouts
//! several times shorter than the sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir::prelude::*;

/// Passes elements through; the first instance sleeps `sleep` on each element in
/// `stuck_on` (once per element, across instances).
struct Sleepy {
    stuck_on: Vec<u64>,
    seen: Arc<std::sync::Mutex<std::collections::HashSet<u64>>>,
    sleep: Duration,
}

impl weir::operator::Operator for Sleepy {
    type In = u64;
    type Out = u64;

    fn kind(&self) -> &'static str {
        "sleepy"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(
        &mut self,
        io: &mut weir::operator::Io<'_, u64, u64>,
        _cx: &mut std::task::Context<'_>,
    ) -> weir::operator::Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            if self.stuck_on.contains(&x) && self.seen.lock().unwrap().insert(x) {
                std::thread::sleep(self.sleep);
            }
            io.push(x);
        }
        io.finish_when_drained()
    }
}

fn sleepy(stuck_on: &[u64], builds: &Arc<AtomicU64>) -> impl Fn() -> Sleepy + Send + 'static {
    let stuck_on = stuck_on.to_vec();
    let seen = Arc::default();
    let builds = Arc::clone(builds);
    move || {
        builds.fetch_add(1, Ordering::SeqCst);
        Sleepy {
            stuck_on: stuck_on.clone(),
            seen: Arc::clone(&seen),
            sleep: Duration::from_millis(600),
        }
    }
}

fn file(on_stall: &str, max_restarts: u32) -> PolicyConfig {
    PolicyConfig::from_toml_str(&format!(
        r#"
        [default]
        stall_timeout_ms = 100
        on_stall = "{on_stall}"
        actions = {{ permanent = "escalate", on_exhausted = "escalate" }}
        intensity = {{ max_restarts = {max_restarts}, within_ms = 60_000 }}
        restart_backoff = {{ initial_ms = 0, max_ms = 0 }}
        "#
    ))
    .unwrap()
}

/// Every event of a finished pipeline.
fn drain(events: &mut weir::Events) -> Vec<SupervisionEvent> {
    let mut all = Vec::new();
    while let Ok(event) = futures::executor::block_on(events.recv()) {
        all.push(event);
    }
    all
}

fn stalled(events: &[SupervisionEvent], name: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, SupervisionEvent::StageStalled { stage, .. } if stage == name))
        .count()
}

#[test]
fn the_watchdog_restarts_a_stage_stuck_in_user_code() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let builds = Arc::new(AtomicU64::new(0));
    let mut runnable = Pipeline::from_iter(0..20_u64)
        .cloneable()
        .via_factory(sleepy(&[3], &builds))
        .name("sleepy")
        .collect()
        .policies(&file("restart", 10));
    let mut events = runnable.subscribe();
    let done = runnable.run(&rt).unwrap().wait().unwrap();
    assert_eq!(
        done.output,
        (0..20).collect::<Vec<_>>(),
        "the stuck element keeps its result"
    );
    let stage = done.report.stage("sleepy").unwrap();
    assert_eq!(stage.restarts, 1);
    assert_eq!(
        builds.load(Ordering::SeqCst),
        2,
        "a fresh operator from the factory"
    );
    done.report.check_conservation().unwrap();
    let events = drain(&mut events);
    assert_eq!(stalled(&events, "sleepy"), 1, "{events:?}");
    assert!(
        events.iter().any(
            |e| matches!(e, SupervisionEvent::StageRestarted { stage, .. } if stage == "sleepy")
        )
    );
}

#[test]
fn watchdog_restarts_count_against_the_restart_intensity() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let builds = Arc::new(AtomicU64::new(0));
    let err = Pipeline::from_iter(0..20_u64)
        .cloneable()
        .via_factory(sleepy(&[3, 6], &builds))
        .name("sleepy")
        .collect()
        // One element per step: two stuck steps, two restarts.
        .default_capacity(1)
        .policies(&file("restart", 1))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("sleepy") && message.contains("restart intensity exceeded"),
        "{message}"
    );
}

#[test]
fn on_stall_fail_fails_the_pipeline_naming_the_stage() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let builds = Arc::new(AtomicU64::new(0));
    let err = Pipeline::from_iter(0..20_u64)
        .cloneable()
        .via_factory(sleepy(&[3], &builds))
        .name("sleepy")
        .collect()
        .policies(&file("fail", 10))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("`sleepy`") && message.contains("stalled"),
        "{message}"
    );
}

#[test]
fn on_stall_report_only_reports() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let builds = Arc::new(AtomicU64::new(0));
    let mut runnable = Pipeline::from_iter(0..20_u64)
        .cloneable()
        .via_factory(sleepy(&[3], &builds))
        .name("sleepy")
        .collect()
        .policies(&file("report", 10));
    let mut events = runnable.subscribe();
    let done = runnable.run(&rt).unwrap().wait().unwrap();
    assert_eq!(done.output.len(), 20);
    assert_eq!(done.report.stage("sleepy").unwrap().restarts, 0);
    assert_eq!(stalled(&drain(&mut events), "sleepy"), 1);
}

#[test]
fn a_junction_stuck_in_its_key_function_is_reported() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..10_u64));
    let mut slept = false;
    let [even, odd] = g.partition(src, move |x: &u64| {
        if *x == 4 && !std::mem::replace(&mut slept, true) {
            std::thread::sleep(Duration::from_millis(600));
        }
        usize::from(x % 2 == 1)
    });
    g.name_stage(even, "split");
    let even = g.sink(even, |f| f.collect());
    let odd = g.sink(odd, |f| f.collect());
    g.stall_timeout(Duration::from_millis(100));
    let mut events = g.subscribe();
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let block = futures::executor::block_on;
    assert_eq!(block(even).unwrap(), [0, 2, 4, 6, 8]);
    assert_eq!(block(odd).unwrap(), [1, 3, 5, 7, 9]);
    assert_eq!(stalled(&drain(&mut events), "split"), 1);
}

/// Holds its input and never takes it: a stage that is idle with input, which
/// the stage's own watchdog sees (in virtual time).
struct Stuck;

impl weir::operator::Operator for Stuck {
    type In = u64;
    type Out = u64;

    fn kind(&self) -> &'static str {
        "stuck"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(
        &mut self,
        _io: &mut weir::operator::Io<'_, u64, u64>,
        _cx: &mut std::task::Context<'_>,
    ) -> weir::operator::Step {
        weir::operator::Step::Continue
    }
}

#[test]
fn an_idle_stage_holding_input_fails_the_pipeline_under_on_stall_fail() {
    let (err, waited) = crate::common::paused(|rt| async move {
        let started = tokio::time::Instant::now();
        let err = Pipeline::from_iter(0..3_u64)
            .cloneable()
            .via(Stuck)
            .name("stuck")
            .collect()
            .policies(&file("fail", 10))
            .run(&rt)
            .unwrap()
            .await
            .unwrap_err();
        (err, started.elapsed())
    });
    let message = err.to_string();
    assert!(
        message.contains("`stuck`") && message.contains("no progress"),
        "{message}"
    );
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(200),
        "{waited:?}"
    );
}

/// A source paused by its controller holds what it was given on purpose: an
/// ingress with elements waiting in its channel is not reported stalled.
#[test]
fn a_paused_ingress_holding_elements_is_not_stalled() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (ingress, flow) = Pipeline::ingress::<u64>(8);
    let running = flow
        .name("orders")
        .map(|x| x + 1)
        .collect()
        .stall_timeout(Duration::from_millis(50))
        .run(&rt)
        .unwrap();
    let controller = running.controller();
    // One element through first: the source has run and waits on its channel
    // (pausing a source that has not polled yet could race its first step).
    ingress.try_send(0).unwrap();
    let start = std::time::Instant::now();
    while controller.stats().stages[2].completed < 1 {
        assert!(start.elapsed() < Duration::from_secs(10), "never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(controller.pause_source("orders").unwrap());
    for x in 1..5 {
        ingress.try_send(x).unwrap();
    }
    std::thread::sleep(Duration::from_millis(400));
    let stats = controller.stats();
    // The channel holds the four (the source's own gauge of it is as of its
    // last pass, which a paused source does not repeat for later sends).
    assert_eq!(
        ingress.available(),
        8 - 4,
        "the ingress holds what it accepted"
    );
    assert!(stats.stages[0].received >= 1, "{:?}", stats.stages[0]);
    assert_eq!(
        stats.stages[2].completed, 1,
        "nothing more left the paused source"
    );
    assert!(!stats.stages[0].stalled, "a paused source is not stalled");
    assert_eq!(controller.health(), weir::observe::Health::Healthy);
    assert!(controller.resume_source("orders").unwrap());
    drop(ingress);
    let done = running.wait().unwrap();
    assert_eq!(done.output, [1, 2, 3, 4, 5]);
    done.report.check_conservation().unwrap();
}
