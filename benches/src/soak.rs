//! The soak run: pipelines under chaos for a while — panics caught by
//! supervision (skipped, and restarts of a stage from its factory), subscribers
//! attaching to and detaching from a broadcast hub, live reconfiguration,
//! checkpoints every 200 ms — while the process's resident memory and open file
//! descriptors are sampled every `sample_every`. After the warm-up neither may
//! grow by more than `max_growth`: a leak of memory or descriptors under churn
//! shows as steady growth.
//!
//! ```text
//!  A (checkpointed): replayable ─► map (1 panic / 10⁴: restart) ─► map_with_config ─► key_by.scan ─► fold
//!  B:                from_iter ─► map (1 panic / 100: skip) ─► broadcast_hub ─► subscribers come and go
//! ```
//!
//! `cargo run --release -p weir-benches --bin soak -- --seconds 600` is the
//! long run (figures in `docs/performance.md`); `benches/tests/soak.rs` runs 20
//! seconds of it in CI with the same assertions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::checkpoint::CheckpointConfig;
use weir::prelude::*;
use weir::supervisor::policy::RestartIntensity;
use weir::{ErrorClass, Pipeline, Runtime};

/// How long, and how strictly.
#[derive(Debug, Clone, Copy)]
pub struct SoakConfig {
    /// The whole run, warm-up included.
    pub duration: Duration,
    /// Samples before this are not judged.
    pub warmup: Duration,
    /// Between two samples.
    pub sample_every: Duration,
    /// The largest growth allowed, as a fraction (0.05: 5 %).
    pub max_growth: f64,
}

impl SoakConfig {
    /// A run of `duration`: a quarter of it (at most a minute) warm-up, a sample
    /// every second, 5 % growth allowed.
    #[must_use]
    pub fn new(duration: Duration) -> SoakConfig {
        SoakConfig {
            duration,
            warmup: (duration / 4).min(Duration::from_secs(60)),
            sample_every: Duration::from_secs(1),
            max_growth: 0.05,
        }
    }
}

/// One sample of the process.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Since the start, in seconds.
    pub at_s: f64,
    /// Resident set size, bytes.
    pub rss: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// What a soak run did and measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Elements the checkpointed pipeline's sink folded.
    pub checkpointed_elements: u64,
    /// Elements the hub's pipeline published (those not skipped).
    pub hub_elements: u64,
    /// Panics caught (both pipelines).
    pub panics: u64,
    /// Stage restarts from the factory.
    pub restarts: u64,
    /// Elements skipped after a panic.
    pub skipped: u64,
    /// Subscribers that attached to the hub (each detached again).
    pub subscribers: u64,
    /// Configs applied while running.
    pub reconfigurations: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Growth of the resident set after the warm-up (largest sample in the last
    /// quarter over the largest in the first quarter, minus 1).
    pub rss_growth: f64,
    /// The same for open file descriptors, comparing the smallest samples of
    /// the two quarters (a checkpoint's write holds a descriptor or two for
    /// milliseconds; a leak raises the floor).
    pub fd_growth: f64,
}

impl SoakReport {
    /// `Err` naming what grew past `max_growth`, or what did not happen.
    ///
    /// # Errors
    ///
    /// When memory or descriptors grew too much, or a kind of chaos never
    /// happened (the run would prove nothing about it).
    pub fn check(&self, config: &SoakConfig) -> Result<(), String> {
        let mut wrong = Vec::new();
        if self.rss_growth > config.max_growth {
            wrong.push(format!(
                "resident memory grew {:.1} % after the warm-up",
                self.rss_growth * 100.0
            ));
        }
        if self.fd_growth > config.max_growth {
            wrong.push(format!(
                "open file descriptors grew {:.1} % after the warm-up",
                self.fd_growth * 100.0
            ));
        }
        for (what, n) in [
            ("restarts", self.restarts),
            ("skipped panics", self.skipped),
            ("hub subscribers", self.subscribers),
            ("reconfigurations", self.reconfigurations),
            ("checkpoints", self.checkpoints),
        ] {
            if n == 0 {
                wrong.push(format!("no {what} happened"));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

/// The resident set size and open descriptors of this process, from `/proc`.
fn sample(start: Instant) -> Result<Sample, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .ok_or("/proc/self/status has no VmRSS")?
        * 1024;
    let fds = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("/proc/self/fd: {e}"))?
        .count() as u64;
    Ok(Sample {
        at_s: start.elapsed().as_secs_f64(),
        rss,
        fds,
    })
}

/// Which sample of a quarter stands for it.
#[derive(Debug, Clone, Copy)]
enum Quarter {
    /// The largest: memory, whose peaks are what a budget must hold.
    Peak,
    /// The smallest: descriptors, of which a checkpoint's write holds one or
    /// two for a few milliseconds (a sample catching one is no leak; a leak
    /// raises every sample, so it raises the floor).
    Floor,
}

/// Growth of `value` between the first and the last quarter of `samples`
/// (each quarter's peak or floor), as a fraction.
fn growth(samples: &[Sample], by: Quarter, value: impl Fn(&Sample) -> u64) -> f64 {
    let quarter = (samples.len() / 4).max(1);
    let pick = |s: &[Sample]| {
        let values = s.iter().map(&value);
        match by {
            Quarter::Peak => values.max(),
            Quarter::Floor => values.min(),
        }
        .unwrap_or(0)
    };
    let first = pick(&samples[..quarter.min(samples.len())]);
    let last = pick(&samples[samples.len().saturating_sub(quarter)..]);
    if first == 0 {
        return 0.0;
    }
    last as f64 / first as f64 - 1.0
}

/// Panics once on each element `x` with `x % every == 7` (a restarted stage
/// gets the element again and must then pass it).
fn panicking(every: u64) -> impl FnMut(u64) -> u64 + Clone + Send + 'static {
    let last = Arc::new(AtomicU64::new(u64::MAX));
    move |x| {
        if x % every == 7 && last.swap(x, Ordering::Relaxed) != x {
            panic!("soak: a panic on {x}");
        }
        x
    }
}

/// Runs the soak for `config.duration`.
///
/// # Errors
///
/// When a pipeline cannot be built or fails, or `/proc` cannot be read.
pub fn run(config: &SoakConfig) -> Result<SoakReport, String> {
    weir::panics::quiet_supervised_panics();
    let rt = Runtime::builder()
        .arbiters(2)
        .build()
        .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));

    // A: checkpointed, restarts, live configuration.
    let scale = ConfigHandle::<u64>::new();
    let restart = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Restart)
        .action(ErrorClass::Permanent, Action::Escalate)
        .on_exhausted(Action::Escalate)
        .max_attempts(3)
        .intensity(RestartIntensity::new(1_000, Duration::from_secs(1)))
        .restart_backoff(BackoffConfig::new(
            Duration::from_micros(100),
            Duration::from_micros(100),
        ));
    let stopped = Arc::clone(&stop);
    let a = Pipeline::replayable(move |from| {
        let stopped = Arc::clone(&stopped);
        (from..).take_while(move |_| !stopped.load(Ordering::Relaxed))
    })
    .supervise(Supervision::new(restart))
    .map(panicking(10_000))
    .name("restarting")
    .map_with_config(&scale, 1, |k, x| x.wrapping_mul(*k))
    .name("scaled")
    .key_by(|x: &u64| x % 4_096)
    .scan(0_u64, |sum: &mut u64, x: u64| {
        *sum = sum.wrapping_add(x);
        *sum
    })
    .name("per-key")
    .fold(0_u64, |n, _| n + 1)
    .checkpoints(CheckpointConfig::new(dir.path()).interval(Duration::from_millis(200)))
    .run(&rt)
    .map_err(|e| e.to_string())?;

    // B: skipped panics, subscribers that come and go.
    let skip = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Skip)
        .action(ErrorClass::Permanent, Action::Escalate)
        .on_exhausted(Action::Escalate);
    let stopped = Arc::clone(&stop);
    let (hub_runnable, hub) =
        Pipeline::from_iter((0_u64..).take_while(move |_| !stopped.load(Ordering::Relaxed)))
            .supervise(Supervision::new(skip))
            .map(panicking(100))
            .name("skipping")
            .broadcast_hub(NoSubscriber::Drop);
    let b = hub_runnable
        .name("hub")
        .run(&rt)
        .map_err(|e| e.to_string())?;
    let subscribers = Arc::new(AtomicU64::new(0));
    let churn = {
        let (hub, stop, subscribers) = (hub.clone(), Arc::clone(&stop), Arc::clone(&subscribers));
        std::thread::spawn(move || {
            let policies = [
                LagPolicy::Block,
                LagPolicy::DropOldest { buffer: 64 },
                LagPolicy::DropNewest { buffer: 64 },
            ];
            let mut n = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut sub) = hub.subscribe(128, policies[n % policies.len()]) else {
                    return;
                };
                subscribers.fetch_add(1, Ordering::Relaxed);
                for _ in 0..2_000 {
                    if futures::executor::block_on(sub.recv()).is_none() {
                        break;
                    }
                }
                let _stats = sub.unsubscribe();
                n += 1;
            }
        })
    };
    drop(hub);

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut reconfigurations = 0_u64;
    let mut next_sample = start + config.sample_every;
    while start.elapsed() < config.duration {
        std::thread::sleep(Duration::from_millis(100));
        scale
            .reconfigure_blocking(1 + reconfigurations % 7)
            .map_err(|e| format!("reconfigure: {e}"))?;
        reconfigurations += 1;
        if Instant::now() >= next_sample {
            next_sample += config.sample_every;
            let s = sample(start)?;
            if s.at_s >= config.warmup.as_secs_f64() {
                samples.push(s);
            }
        }
    }

    stop.store(true, Ordering::Relaxed);
    let a = a
        .wait()
        .map_err(|e| format!("checkpointed pipeline: {e}"))?;
    let b = b.wait().map_err(|e| format!("hub pipeline: {e}"))?;
    churn.join().map_err(|_| "the subscriber thread panicked")?;
    a.report
        .check_conservation()
        .map_err(|e| format!("checkpointed pipeline: {e}"))?;
    b.report
        .check_conservation()
        .map_err(|e| format!("hub pipeline: {e}"))?;
    let restarting = a.report.stage("restarting").ok_or("no stage restarting")?;
    let skipping = b.report.stage("skipping").ok_or("no stage skipping")?;
    let checkpoint = a.report.checkpoint.clone().unwrap_or_default();
    if checkpoint.failed > 0 {
        return Err(format!(
            "{} checkpoints failed: {:?}",
            checkpoint.failed, checkpoint.last_error
        ));
    }
    let panics = restarting.restarts + skipping.failed;
    Ok(SoakReport {
        rss_growth: growth(&samples, Quarter::Peak, |s| s.rss),
        fd_growth: growth(&samples, Quarter::Floor, |s| s.fds),
        samples,
        checkpointed_elements: a.output,
        hub_elements: skipping.emitted,
        panics,
        restarts: restarting.restarts,
        skipped: skipping.failed,
        subscribers: subscribers.load(Ordering::Relaxed),
        reconfigurations,
        checkpoints: checkpoint.completed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rss: u64) -> Sample {
        Sample {
            at_s: 0.0,
            rss,
            fds: 10,
        }
    }

    fn fds(fds: u64) -> Sample {
        Sample {
            at_s: 0.0,
            rss: 1,
            fds,
        }
    }

    #[test]
    fn growth_compares_the_largest_of_the_first_and_last_quarters() {
        let flat: Vec<Sample> = [100, 104, 99, 101, 103, 100, 102, 101].map(at).to_vec();
        // 104 in the first quarter, 102 in the last: no growth.
        let peak = |s: &[Sample]| growth(s, Quarter::Peak, |s| s.rss);
        assert!((peak(&flat) - (102.0 / 104.0 - 1.0)).abs() < 1e-9);
        let leak: Vec<Sample> = (0..8).map(|i| at(100 + 10 * i)).collect();
        assert!((peak(&leak) - (170.0 / 110.0 - 1.0)).abs() < 1e-9);
        assert_eq!(peak(&[]), 0.0);
        assert_eq!(growth(&flat, Quarter::Floor, |s| s.fds), 0.0);
    }

    /// The CI soak once failed on 19 descriptors in the first quarter and one
    /// sample of 20 in the last (a checkpoint being written): +5.3 %. The floor
    /// ignores such a sample and still sees a leak.
    #[test]
    fn descriptor_growth_ignores_a_transient_and_sees_a_leak() {
        let transient: Vec<Sample> = [
            19, 19, 19, 19, 19, 20, 19, 19, 19, 19, 19, 19, 19, 20, 19, 19,
        ]
        .map(fds)
        .to_vec();
        assert!(growth(&transient, Quarter::Peak, |s| s.fds) > 0.05);
        assert_eq!(growth(&transient, Quarter::Floor, |s| s.fds), 0.0);
        let leak: Vec<Sample> = (0..16).map(|i| fds(19 + i / 2)).collect();
        assert!(growth(&leak, Quarter::Floor, |s| s.fds) > 0.05);
    }
}
