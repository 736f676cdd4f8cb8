//! [`PipelineManager`]: many running pipelines by name (seed 004's StreamManager):
//! start, stop, list, stats and health for all of them, and a graceful shutdown of
//! all on SIGTERM or ctrl-c within a deadline, reporting what each drained.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::error::BuildError;
use crate::observe::Health;
use crate::pipeline::{
    Graph, Outcome, PipelineController, PipelineStats, Report, Runnable, Running,
};
use crate::runtime::Runtime;

/// How a managed pipeline ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ended {
    /// The final report (for a failure, the report carried by the error).
    pub report: Option<Report>,
    /// The error, as text, when the pipeline failed or lost its runtime.
    pub error: Option<String>,
}

impl Ended {
    /// Elements delivered after a graceful shutdown was asked for, when that is
    /// how it ended.
    pub fn drained(&self) -> Option<u64> {
        match self.report.as_ref()?.outcome {
            Outcome::Drained { drained } | Outcome::DeadlineExceeded { drained } => Some(drained),
            _ => None,
        }
    }
}

/// Why the manager refused.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// A pipeline of that name is already managed.
    #[error("a pipeline named `{name}` is already running; stop or remove it first")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// No pipeline of that name is managed.
    #[error("no pipeline named `{name}`")]
    Unknown {
        /// The name.
        name: String,
    },
    /// The pipeline did not build.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The pipeline did not end within the time allowed.
    #[error("pipeline `{name}` did not end within {waited:?}")]
    Timeout {
        /// The name.
        name: String,
        /// How long the manager waited.
        waited: Duration,
    },
}

/// What [`PipelineManager::shutdown_all`] did: how each pipeline ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShutdownSummary {
    /// Per pipeline, by name: how it ended (`None`: it had not ended when the
    /// manager gave up waiting).
    pub pipelines: BTreeMap<String, Option<Ended>>,
}

impl std::fmt::Display for ShutdownSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, ended) in &self.pipelines {
            match ended {
                Some(e) => match (&e.report, &e.error) {
                    (_, Some(error)) => writeln!(f, "{name}: failed: {error}")?,
                    (Some(r), None) => {
                        let drained = e
                            .drained()
                            .map_or(String::new(), |d| format!(", drained {d}"));
                        writeln!(
                            f,
                            "{name}: {:?}{drained}; delivered {}, abandoned {}",
                            r.outcome,
                            r.delivered(),
                            r.abandoned()
                        )?;
                    }
                    (None, None) => writeln!(f, "{name}: ended")?,
                },
                None => writeln!(f, "{name}: still running when the wait ended")?,
            }
        }
        Ok(())
    }
}

/// One managed pipeline: its controller and, once it has ended, how.
#[derive(Debug)]
struct Managed {
    controller: PipelineController,
    ended: Arc<(Mutex<Option<Ended>>, Condvar)>,
}

impl Managed {
    fn wait(&self, timeout: Duration) -> Option<Ended> {
        let (lock, cvar) = &*self.ended;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |e| e.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }
}

/// Hosts many running pipelines by name.
///
/// Cloning is cheap and every clone sees the same pipelines; the registry is a
/// concurrent map, so several threads can start, stop and watch pipelines at once.
/// A pipeline's sink output (`collect`'s `Vec`, say) is dropped: managed pipelines
/// deliver through their sinks (`for_each`, egress, files).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::manager::PipelineManager;
/// use weir_runtime::{Runnable, Runtime};
///
/// fn serve(rt: &Runtime, ingest: Runnable<()>, audit: Runnable<()>) -> Result<(), Box<dyn std::error::Error>> {
///     let manager = PipelineManager::new();
///     manager.start("ingest", ingest, rt)?;
///     manager.start("audit", audit, rt)?;
///     for (name, health) in manager.health() {
///         println!("{name}: {health:?}");
///     }
///     // Until SIGTERM or ctrl-c; then everything drains within 30 s.
///     let summary = manager.shutdown_on_signal(Duration::from_secs(30))?;
///     print!("{summary}");
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PipelineManager {
    pipelines: Arc<DashMap<String, Managed>>,
}

impl PipelineManager {
    /// An empty manager.
    pub fn new() -> Self {
        PipelineManager::default()
    }

    /// Runs `runnable` under `name` (which becomes the pipeline's name).
    ///
    /// # Errors
    ///
    /// [`ManagerError::NameTaken`] if a pipeline of that name is managed (even
    /// ended: [`remove`](Self::remove) it first), [`ManagerError::Build`] if it does
    /// not build.
    pub fn start<R: Send + 'static>(
        &self,
        name: &str,
        runnable: Runnable<R>,
        runtime: &Runtime,
    ) -> Result<PipelineController, ManagerError> {
        self.admit(name, || runnable.named(name).run(runtime))
    }

    /// Runs `graph` under `name` (see [`start`](Self::start)).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_graph(
        &self,
        name: &str,
        mut graph: Graph,
        runtime: &Runtime,
    ) -> Result<PipelineController, ManagerError> {
        graph.named(name);
        self.admit(name, || graph.run(runtime))
    }

    fn admit<R: Send + 'static>(
        &self,
        name: &str,
        run: impl FnOnce() -> Result<Running<R>, BuildError>,
    ) -> Result<PipelineController, ManagerError> {
        // The entry stays locked while the pipeline starts: two starts of one name
        // cannot both succeed.
        let slot = match self.pipelines.entry(name.to_owned()) {
            Entry::Occupied(_) => {
                return Err(ManagerError::NameTaken {
                    name: name.to_owned(),
                });
            }
            Entry::Vacant(slot) => slot,
        };
        let running = run()?;
        let controller = running.controller();
        let ended = Arc::new((Mutex::new(None), Condvar::new()));
        let watcher = Arc::clone(&ended);
        let arbiter = controller.shared.timer_arbiter.clone();
        arbiter.spawn(async move {
            let end = match running.join().await {
                Ok(done) => Ended {
                    report: Some(done.report),
                    error: None,
                },
                Err(e) => Ended {
                    report: e.report().cloned(),
                    error: Some(e.to_string()),
                },
            };
            let (lock, cvar) = &*watcher;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
            cvar.notify_all();
        });
        slot.insert(Managed {
            controller: controller.clone(),
            ended,
        });
        Ok(controller)
    }

    /// The names of the managed pipelines, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.pipelines.iter().map(|e| e.key().clone()).collect();
        names.sort();
        names
    }

    /// The controller of the pipeline `name`.
    pub fn controller(&self, name: &str) -> Option<PipelineController> {
        self.pipelines.get(name).map(|m| m.controller.clone())
    }

    /// A stats snapshot of every managed pipeline, sorted by name.
    pub fn stats(&self) -> Vec<PipelineStats> {
        let mut all: Vec<PipelineStats> = self
            .pipelines
            .iter()
            .map(|m| m.controller.stats())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The health verdict of every managed pipeline, by name.
    pub fn health(&self) -> BTreeMap<String, Health> {
        self.pipelines
            .iter()
            .map(|m| (m.key().clone(), m.controller.health()))
            .collect()
    }

    /// How `name` ended, if it has.
    pub fn ended(&self, name: &str) -> Option<Ended> {
        self.pipelines
            .get(name)
            .and_then(|m| m.wait(Duration::ZERO))
    }

    /// Shuts `name` down gracefully within `deadline` and waits for its end (at
    /// most `deadline` plus one second).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Unknown`], or [`ManagerError::Timeout`] if it did not end.
    pub fn stop(&self, name: &str, deadline: Duration) -> Result<Ended, ManagerError> {
        let unknown = || ManagerError::Unknown {
            name: name.to_owned(),
        };
        let controller = self.controller(name).ok_or_else(unknown)?;
        controller.shutdown(deadline);
        let waited = deadline + Duration::from_secs(1);
        let ended = self.pipelines.get(name).ok_or_else(unknown)?.wait(waited);
        ended.ok_or(ManagerError::Timeout {
            name: name.to_owned(),
            waited,
        })
    }

    /// Forgets `name` once it has ended; returns how it ended. A pipeline still
    /// running stays.
    pub fn remove(&self, name: &str) -> Option<Ended> {
        let ended = self.ended(name)?;
        self.pipelines.remove(name);
        Some(ended)
    }

    /// Shuts every managed pipeline down gracefully within `deadline` (they drain
    /// in parallel), waits for them (at most `deadline` plus one second), and
    /// reports how each ended and what it drained.
    pub fn shutdown_all(&self, deadline: Duration) -> ShutdownSummary {
        for m in self.pipelines.iter() {
            if !m.controller.is_finished() {
                m.controller.shutdown(deadline);
            }
        }
        let until = Instant::now() + deadline + Duration::from_secs(1);
        let pipelines = self
            .pipelines
            .iter()
            .map(|m| {
                let left = until.saturating_duration_since(Instant::now());
                (m.key().clone(), m.wait(left))
            })
            .collect();
        ShutdownSummary { pipelines }
    }

    /// Blocks until the process receives SIGTERM or SIGINT (ctrl-c), then shuts
    /// every pipeline down as [`shutdown_all`](Self::shutdown_all) does.
    ///
    /// # Errors
    ///
    /// The signal handlers could not be installed.
    pub fn shutdown_on_signal(&self, deadline: Duration) -> std::io::Result<ShutdownSummary> {
        let signals = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        signals.block_on(wait_for_signal())?;
        Ok(self.shutdown_all(deadline))
    }
}

/// Waits for SIGTERM or SIGINT.
async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
