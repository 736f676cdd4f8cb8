//! The weir variant of the comparison workload: the same four stages as the
//! baselines, built as a weir pipeline on one arbiter (weir's default placement for
//! a linear chain).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::prelude::*;

use crate::workload::{keep, map_step, sum_step};

/// Pushes the source values `0..elements` through a weir pipeline running the
/// [`crate::workload`] stages and returns the sink's checksum.
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn run(elements: u64) -> Result<u64, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    let done = finish_and_run(
        Pipeline::from_iter(0..elements).map(|x| map_step(1, x)),
        &rt,
    )?;
    Ok(done.output)
}

/// [`run`] on a runtime with a memory budget that never binds (1 GiB): the
/// cost of charging every element on every edge (`weir::memory`).
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn run_budget(elements: u64) -> Result<u64, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .memory_budget(1_u64 << 30)
        .build()
        .map_err(|e| e.to_string())?;
    let done = finish_and_run(
        Pipeline::from_iter(0..elements).map(|x| map_step(1, x)),
        &rt,
    )?;
    let usage = rt.memory().ok_or("no budget")?;
    if usage.used != 0 {
        return Err(format!("{} bytes still charged at the end", usage.used));
    }
    Ok(done.output)
}

/// Adds stages 2 to 4 and the summing sink to a flow that ran stage 1, runs it to
/// completion and checks conservation.
fn finish_and_run(stage1: Flow<u64>, rt: &Runtime) -> Result<Completion<u64>, String> {
    let done = stage1
        .map(|x| map_step(2, x))
        .map(|x| map_step(3, x))
        .filter(|x| keep(*x))
        .fold(0_u64, sum_step)
        .run(rt)
        .map_err(|e| e.to_string())?
        .wait()
        .map_err(|e| e.to_string())?;
    done.report
        .check_conservation()
        .map_err(|e| e.to_string())?;
    Ok(done)
}

/// The workload with an async boundary after every stage: each stage in an actor
/// of its own, batches crossing a mailbox between each two (weir before fusion).
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn run_unfused(elements: u64) -> Result<u64, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    let done = Pipeline::from_iter(0..elements)
        .async_boundary()
        .map(|x| map_step(1, x))
        .async_boundary()
        .map(|x| map_step(2, x))
        .async_boundary()
        .map(|x| map_step(3, x))
        .async_boundary()
        .filter(|x| keep(*x))
        .async_boundary()
        .fold(0_u64, sum_step)
        .run(&rt)
        .map_err(|e| e.to_string())?
        .wait()
        .map_err(|e| e.to_string())?;
    done.report
        .check_conservation()
        .map_err(|e| e.to_string())?;
    Ok(done.output)
}

/// The workload with a retry policy on every stage (and a dead-letter queue for
/// what the policy gives up on), no faults: the cost of being supervised.
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn run_supervised(elements: u64) -> Result<u64, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    let dead_letters = MemoryDlq::new(1_000);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Retry)
        .max_attempts(3);
    let supervised = || Supervision::new(policy.clone()).dead_letters(dead_letters.clone());
    let done = Pipeline::from_iter(0..elements)
        .supervise(supervised())
        .map(|x| map_step(1, x))
        .supervise(supervised())
        .map(|x| map_step(2, x))
        .supervise(supervised())
        .map(|x| map_step(3, x))
        .supervise(supervised())
        .filter(|x| keep(*x))
        .fold(0_u64, sum_step)
        .run(&rt)
        .map_err(|e| e.to_string())?
        .wait()
        .map_err(|e| e.to_string())?;
    done.report
        .check_conservation()
        .map_err(|e| e.to_string())?;
    Ok(done.output)
}

/// Sends `pings` single elements through a weir pipeline of four stages (three maps
/// and a filter that keeps everything, so every ping comes back), one at a time at
/// idle, and returns each one's round-trip latency from ingress to egress.
///
/// The pinging task runs on the pipeline's arbiter, as a service's request handler
/// on the same arbiter would: the measurement is weir's own path (ingress, four
/// stage hops, egress), without a cross-thread wake-up at each end.
///
/// # Errors
///
/// Fails when the pipeline cannot be built, a ping is lost, or the pipeline fails.
pub fn latency(pings: usize) -> Result<Vec<Duration>, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let (runnable, mut egress) = flow
        .map(|x| map_step(1, x))
        .map(|x| map_step(2, x))
        .map(|x| map_step(3, x))
        .filter(|_| true)
        .egress(64);
    let running = runnable.run(&rt).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    let arbiter = rt.arbiter(0).ok_or("runtime has no arbiter")?;
    arbiter.spawn(async move {
        let mut samples = Vec::with_capacity(pings);
        for i in 0..pings as u64 {
            let start = Instant::now();
            if ingress.send(i).await.is_err() {
                break;
            }
            match egress.recv().await {
                Some(_) => samples.push(start.elapsed()),
                None => break,
            }
        }
        drop(ingress);
        let _ = tx.send(samples);
    });
    let samples = rx.recv().map_err(|_| "the pinging task died".to_owned())?;
    running.wait().map_err(|e| e.to_string())?;
    if samples.len() != pings {
        return Err(format!("{} of {pings} pings came back", samples.len()));
    }
    Ok(samples)
}

/// What the last [`run_faulty`] observed.
#[derive(Debug, Clone, Default)]
pub struct FaultyStats {
    /// Restarts of the faulty stage.
    pub restarts: u64,
    /// Elements sent to the dead letters (0 when every retry succeeds).
    pub dead_lettered: u64,
    /// Time from each caught panic to the restarted stage processing its next
    /// element.
    pub restart_latencies: Vec<Duration>,
}

static FAULTY: Mutex<Option<FaultyStats>> = Mutex::new(None);

/// The figures of the last [`run_faulty`] in this process.
pub fn faulty_stats() -> Option<FaultyStats> {
    FAULTY.lock().ok().and_then(|s| s.clone())
}

/// Like [`run`], but the first map panics on one call in 10 000 (transient: the
/// retried call succeeds), under a policy that restarts the stage on a panic
/// (one-for-one, restart intensity high enough for the run, no restart backoff).
/// Records restarts, dead letters and the restart latency in [`faulty_stats`].
///
/// The default panic hook, which prints every panic, is replaced by a silent one
/// for the run, as a service with its own hook would have it.
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn run_faulty(elements: u64) -> Result<u64, String> {
    faulty_pipeline(elements, true)
}

/// [`run_faulty`]'s pipeline, same supervision, with no fault injected: the
/// baseline its cost per fault is measured against.
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn run_faulty_clean(elements: u64) -> Result<u64, String> {
    faulty_pipeline(elements, false)
}

fn faulty_pipeline(elements: u64, inject: bool) -> Result<u64, String> {
    std::panic::set_hook(Box::new(|_| {}));
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    let dead_letters = MemoryDlq::new(1_000);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Restart)
        .max_attempts(3)
        .intensity(weir::supervisor::policy::RestartIntensity::new(
            10_000,
            Duration::from_secs(1),
        ))
        .restart_backoff(BackoffConfig::none());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut faults = Faults {
        failed: None,
        samples: Arc::clone(&latencies),
    };
    let stage1 = Pipeline::from_iter(0..elements)
        .supervise(Supervision::new(policy).dead_letters(dead_letters.clone()))
        .map(move |x| {
            if inject && x % FAULT_EVERY == FAULT_EVERY - 1 {
                faults.fault(x);
            }
            map_step(1, x)
        });
    let done = finish_and_run(stage1, &rt);
    let _ = std::panic::take_hook();
    let done = done?;
    let restart_latencies = std::mem::take(&mut *latencies.lock().map_err(|e| e.to_string())?);
    *FAULTY.lock().map_err(|e| e.to_string())? = Some(FaultyStats {
        restarts: done.report.restarts(),
        dead_lettered: done.report.dead_lettered(),
        restart_latencies,
    });
    Ok(done.output)
}

/// One element in this many makes the first call on it panic, in [`run_faulty`].
pub const FAULT_EVERY: u64 = 10_000;

/// The injected faults of [`run_faulty`]: the first call on every 10 000th element
/// panics, its retry succeeds; and the time from that panic to the retry (the
/// restarted stage's first element).
///
/// Keyed by the element, so that the per-element check is one multiply-and-compare
/// with no state written: the workload, not the fault injection, is what the
/// variant measures next to `weir`.
struct Faults {
    /// The element whose first call panicked, and when.
    failed: Option<(u64, Instant)>,
    samples: Arc<Mutex<Vec<Duration>>>,
}

impl Faults {
    /// Kept out of line so that the per-element path stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn fault(&mut self, x: u64) {
        match self.failed.take() {
            Some((failed, at)) if failed == x => {
                self.samples.lock().expect("samples").push(at.elapsed());
            }
            _ => {
                self.failed = Some((x, Instant::now()));
                panic!("transient fault on element {x}");
            }
        }
    }
}
