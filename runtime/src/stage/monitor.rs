//! The stall monitor: sees, from a thread of its own, a stage or junction that is
//! stuck inside one step — synchronous user code that blocks or loops — which the
//! stage's own watchdog cannot see, since it runs on the blocked thread.
//!
//! A stage marks itself busy ([`Busy::enter`]) before it calls its operator, with
//! the stall timeout and stall action in force, and idle after. The monitor scans
//! the busy marks of every registered pipeline; one busy for longer than its
//! timeout is reported (a `StageStalled` event, `stalled` in stats) and acted on:
//! `fail` fails the pipeline at once naming the stage, `restart` asks the stage to
//! restart when its call returns. A Rust thread cannot be interrupted, so the
//! stuck call itself runs to its end.
//!
//! One thread serves the process; it runs while a registered pipeline does and
//! scans at a quarter of the smallest timeout in use (between 5 ms and 500 ms).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use weir_supervisor::policy::StallAction;
use weir_supervisor::{ErrorClass, Failure, SupervisionEvent};

use crate::pipeline::shared::PipelineShared;

/// When the process's monitor clock started: busy marks are nanoseconds since it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_nanos() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

const REPORT: u8 = 0;
const RESTART: u8 = 1;
const FAIL: u8 = 2;

pub(crate) fn encode(action: StallAction) -> u8 {
    match action {
        StallAction::Restart => RESTART,
        StallAction::Fail => FAIL,
        _ => REPORT,
    }
}

/// A stage's busy mark, in its shared counters.
#[derive(Debug, Default)]
pub(crate) struct Busy {
    /// When the current step began (monitor nanoseconds), 0 while idle.
    since: AtomicU64,
    /// The stall timeout in force for this step, in nanoseconds.
    limit: AtomicU64,
    /// The stall action in force for this step.
    action: AtomicU8,
    /// The monitor has reported this step.
    reported: AtomicBool,
    /// The monitor asks the stage to restart once its step returns.
    restart: AtomicBool,
}

impl Busy {
    /// Marks the stage busy in a step that may stall for `timeout`; registers the
    /// pipeline with the monitor on its first such step.
    pub(crate) fn enter(
        &self,
        pipeline: &Arc<PipelineShared>,
        timeout: Duration,
        action: StallAction,
    ) {
        let limit = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.limit.store(limit, Relaxed);
        self.action.store(encode(action), Relaxed);
        self.since.store(now_nanos(), Release);
        if !pipeline.monitored.swap(true, Relaxed) {
            register(pipeline);
        }
        pipeline.min_stall_limit.fetch_min(limit, Relaxed);
    }

    /// Marks the stage idle after its step. Returns true when the monitor saw the
    /// step stall (so that the stage's own watchdog does not report it again).
    pub(crate) fn leave(&self) -> bool {
        self.since.store(0, Release);
        self.reported.swap(false, Relaxed)
    }

    /// Whether the monitor asked for a restart after a stalled step (and clears
    /// the request).
    pub(crate) fn take_restart(&self) -> bool {
        self.restart.swap(false, Relaxed)
    }
}

struct Registry {
    pipelines: Vec<Weak<PipelineShared>>,
    running: bool,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Mutex::new(Registry {
            pipelines: Vec::new(),
            running: false,
        })
    })
}

fn register(pipeline: &Arc<PipelineShared>) {
    let mut reg = registry().lock().unwrap_or_else(PoisonError::into_inner);
    reg.pipelines.push(Arc::downgrade(pipeline));
    if !reg.running {
        let spawned = std::thread::Builder::new()
            .name("weir-stall-monitor".into())
            .spawn(run);
        // Without the thread, stalls in user code go unseen; the stages' own
        // watchdogs still run. Nothing else depends on it.
        reg.running = spawned.is_ok();
    }
}

/// The monitor thread: scans until no registered pipeline is left.
fn run() {
    loop {
        let pipelines: Vec<Arc<PipelineShared>> = {
            let mut reg = registry().lock().unwrap_or_else(PoisonError::into_inner);
            reg.pipelines
                .retain(|p| p.upgrade().is_some_and(|p| !p.is_finished()));
            if reg.pipelines.is_empty() {
                reg.running = false;
                return;
            }
            reg.pipelines.iter().filter_map(Weak::upgrade).collect()
        };
        let mut smallest = u64::MAX;
        for pipeline in &pipelines {
            smallest = smallest.min(pipeline.min_stall_limit.load(Relaxed));
            scan(pipeline);
        }
        drop(pipelines);
        let period = Duration::from_nanos(smallest / 4)
            .clamp(Duration::from_millis(5), Duration::from_millis(500));
        std::thread::sleep(period);
    }
}

/// Reports and acts on the stages of `pipeline` stuck in a step.
fn scan(pipeline: &PipelineShared) {
    let now = now_nanos();
    for stage in &pipeline.stages {
        let busy = &stage.busy;
        let since = busy.since.load(Acquire);
        if since == 0 {
            continue;
        }
        let stuck = now.saturating_sub(since);
        if stuck < busy.limit.load(Relaxed) || busy.reported.swap(true, Relaxed) {
            continue;
        }
        stage.stalled.store(true, Relaxed);
        pipeline.publish(SupervisionEvent::StageStalled {
            pipeline: pipeline.name.clone(),
            stage: stage.name.clone(),
            idle_for: Duration::from_nanos(stuck),
        });
        tracing::warn!(
            pipeline = %pipeline.name,
            stage = %stage.name,
            stuck_ms = stuck / 1_000_000,
            "stage stuck in one step (user code)"
        );
        match busy.action.load(Relaxed) {
            FAIL => pipeline.fail(
                stage.index,
                Failure::error(
                    ErrorClass::Timeout,
                    format!(
                        "stalled: stuck in one call of its user code for {:?} (on_stall = \"fail\")",
                        Duration::from_nanos(stuck)
                    ),
                ),
            ),
            RESTART => busy.restart.store(true, Relaxed),
            _ => {}
        }
    }
}
