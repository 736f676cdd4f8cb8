//! [`PipelineManager`]: many running pipelines by name (a stream manager):
//! start, stop, list, stats and health for all of them, a graceful shutdown of
//! all on SIGTERM or ctrl-c within a deadline, reporting what each drained — and
//! the level of supervision above pipelines: a pipeline added with
//! [`PipelineManager::supervise`] is rebuilt from its factory under a
//! [`RestartPolicy`], and escalates past its intensity
//! ([`ManagerEvent::Escalated`], [`OnEscalation`]).

mod child;
mod event;
mod policy;
mod status;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::broadcast;
use weir_supervisor::policy::ConfigError;

use self::child::{Child, Factory, Supervisor};
use self::event::MANAGER_EVENT_BUFFER;
pub use self::event::{ManagerEvent, ManagerEvents};
pub use self::policy::{OnEscalation, RestartPolicy};
pub use self::status::{PipelineState, PipelineStatus};

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
    /// How many times the manager had restarted the pipeline before this run (0
    /// for the first run).
    pub restarts: u32,
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
    /// The restart policy is invalid.
    #[error("invalid restart policy: {0}")]
    Policy(#[from] ConfigError),
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

/// A pipeline the manager can run, and run again from a factory: a linear
/// [`Runnable`] or a [`Graph`].
///
/// # Examples
///
/// ```
/// use weir_runtime::manager::ManagedPipeline;
/// use weir_runtime::{Graph, Runnable};
///
/// fn managed<P: ManagedPipeline>() {}
/// managed::<Runnable<()>>();
/// managed::<Runnable<Vec<u64>>>();
/// managed::<Graph>();
/// ```
pub trait ManagedPipeline: 'static {
    /// What the pipeline's sink hands back; the manager drops it.
    type Output: Send + 'static;

    /// Names the pipeline `name` and runs it on `runtime`.
    ///
    /// # Errors
    ///
    /// The pipeline does not build.
    fn run_as(self, name: &str, runtime: &Runtime) -> Result<Running<Self::Output>, BuildError>;
}

impl<R: Send + 'static> ManagedPipeline for Runnable<R> {
    type Output = R;

    fn run_as(self, name: &str, runtime: &Runtime) -> Result<Running<R>, BuildError> {
        self.named(name).run(runtime)
    }
}

impl ManagedPipeline for Graph {
    type Output = ();

    fn run_as(mut self, name: &str, runtime: &Runtime) -> Result<Running<()>, BuildError> {
        self.named(name);
        self.run(runtime)
    }
}

/// What every clone of a manager shares.
#[derive(Debug)]
pub(crate) struct Inner {
    pipelines: DashMap<String, Arc<Child>>,
    events: broadcast::Sender<ManagerEvent>,
    on_escalation: Mutex<OnEscalation>,
}

impl Inner {
    pub(crate) fn escalation(&self) -> OnEscalation {
        *self.on_escalation.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            pipelines: DashMap::new(),
            events: broadcast::Sender::new(MANAGER_EVENT_BUFFER),
            on_escalation: Mutex::new(OnEscalation::default()),
        }
    }
}

/// Hosts many running pipelines by name, and keeps those added with
/// [`supervise`](Self::supervise) alive under a [`RestartPolicy`].
///
/// Cloning is cheap and every clone sees the same pipelines; the registry is a
/// concurrent map, so several threads can start, stop and watch pipelines at once.
/// A pipeline's sink output (`collect`'s `Vec`, say) is dropped: managed pipelines
/// deliver through their sinks (`for_each`, egress, files).
///
/// # The supervision tree
///
/// ```text
/// PipelineManager            RestartPolicy per pipeline, OnEscalation for all
///  ├── pipeline "ingest"     rebuilt from its factory after a failed run
///  │    ├── stage            SupervisionPolicy per stage: retry, restart, …
///  │    └── pool replicas    restarted by the pool before the pipeline fails
///  └── pipeline "audit"
/// ```
///
/// A stage's supervision handles what it can; what it escalates fails its run.
/// The manager then rebuilds the pipeline (restart type, intensity, backoff of
/// its [`RestartPolicy`]), and past the intensity it escalates in turn: a
/// [`ManagerEvent::Escalated`] on [`subscribe`](Self::subscribe), then the
/// manager's [`OnEscalation`].
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
    inner: Arc<Inner>,
}

impl PipelineManager {
    /// An empty manager whose escalations keep the other pipelines running
    /// ([`OnEscalation::KeepOthers`]).
    pub fn new() -> Self {
        PipelineManager::default()
    }

    /// Sets what happens when a pipeline escalates (default
    /// [`OnEscalation::KeepOthers`]), for this manager and every clone of it.
    #[must_use]
    pub fn on_escalation(self, on_escalation: OnEscalation) -> Self {
        *self
            .inner
            .on_escalation
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = on_escalation;
        self
    }

    /// What happens when a pipeline escalates.
    pub fn escalation(&self) -> OnEscalation {
        self.inner.escalation()
    }

    /// Subscribes to what the manager does to its pipelines (restarts,
    /// escalations, ends for good) from now on.
    pub fn subscribe(&self) -> ManagerEvents {
        ManagerEvents::new(self.inner.events.subscribe())
    }

    /// Runs `runnable` under `name` (which becomes the pipeline's name), once:
    /// it is never restarted (a [`RestartPolicy::temporary`] pipeline).
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
        self.admit::<Runnable<R>>(name, RestartPolicy::temporary(), None, runtime, || {
            runnable.run_as(name, runtime)
        })
    }

    /// Runs `graph` under `name`, once (see [`start`](Self::start)).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_graph(
        &self,
        name: &str,
        graph: Graph,
        runtime: &Runtime,
    ) -> Result<PipelineController, ManagerError> {
        self.admit::<Graph>(name, RestartPolicy::temporary(), None, runtime, || {
            graph.run_as(name, runtime)
        })
    }

    /// Runs the pipeline `factory` builds under `name` and keeps it alive under
    /// `policy`: when a run ends in a way the policy restarts (see
    /// [`RestartPolicy`]), the manager waits the backoff, calls `factory` for a
    /// fresh pipeline and runs it, counting the restart; past the policy's
    /// intensity the pipeline escalates ([`ManagerEvent::Escalated`], then the
    /// manager's [`OnEscalation`]).
    ///
    /// `factory` builds a [`Runnable`] or a [`Graph`]; it is called once now and
    /// once per restart, on one of the runtime's arbiters. Each run starts from
    /// nothing: counts, operator state and sink outputs are the new run's, and
    /// each run's [`Report`] (in the [`ManagerEvent`]s) balances on its own.
    /// Returns the first run's controller; [`controller`](Self::controller) always
    /// gives the current run's. Stop the pipeline with [`stop`](Self::stop): a
    /// run shut down through its controller directly counts as ending on its own.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NameTaken`] as for [`start`](Self::start),
    /// [`ManagerError::Policy`] if the policy does not validate,
    /// [`ManagerError::Build`] if the first run does not build (a later run that
    /// does not build counts as a failed run).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_runtime::manager::{PipelineManager, RestartPolicy};
    /// use weir_runtime::{BuildError, Runnable, Runtime};
    /// use weir_supervisor::policy::RestartIntensity;
    ///
    /// fn keep_alive(
    ///     manager: &PipelineManager,
    ///     rt: &Runtime,
    ///     build: impl Fn() -> Result<Runnable<()>, BuildError> + Send + Sync + 'static,
    /// ) -> Result<(), weir_runtime::manager::ManagerError> {
    ///     let policy = RestartPolicy::transient()
    ///         .intensity(RestartIntensity::new(3, Duration::from_secs(60)));
    ///     manager.supervise("ingest", policy, build, rt)?;
    ///     Ok(())
    /// }
    /// ```
    pub fn supervise<P, F>(
        &self,
        name: &str,
        policy: RestartPolicy,
        factory: F,
        runtime: &Runtime,
    ) -> Result<PipelineController, ManagerError>
    where
        P: ManagedPipeline,
        F: Fn() -> Result<P, BuildError> + Send + Sync + 'static,
    {
        policy.validate()?;
        let factory: Factory<P> = Arc::new(factory);
        let first = Arc::clone(&factory);
        self.admit(name, policy, Some(factory), runtime, move || {
            child::build(&*first, name, runtime)
        })
    }

    fn admit<P: ManagedPipeline>(
        &self,
        name: &str,
        policy: RestartPolicy,
        factory: Option<Factory<P>>,
        runtime: &Runtime,
        run: impl FnOnce() -> Result<Running<P::Output>, BuildError>,
    ) -> Result<PipelineController, ManagerError> {
        // The entry stays locked while the pipeline starts: two starts of one name
        // cannot both succeed.
        let slot = match self.inner.pipelines.entry(name.to_owned()) {
            Entry::Occupied(_) => {
                return Err(ManagerError::NameTaken {
                    name: name.to_owned(),
                });
            }
            Entry::Vacant(slot) => slot,
        };
        let running = run()?;
        let controller = running.controller();
        let child = Arc::new(Child::new(controller.clone(), &policy));
        slot.insert(Arc::clone(&child));
        let supervisor = Supervisor {
            name: name.to_owned(),
            child,
            policy,
            factory,
            runtime: runtime.clone(),
            events: self.inner.events.clone(),
            manager: Arc::downgrade(&self.inner),
        };
        controller
            .shared
            .timer_arbiter
            .spawn(supervisor.run(running));
        Ok(controller)
    }

    /// The names of the managed pipelines, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .pipelines
            .iter()
            .map(|e| e.key().clone())
            .collect();
        names.sort();
        names
    }

    /// The child of `name`, out of the map (so that no map lock is held while
    /// using it).
    fn child(&self, name: &str) -> Option<Arc<Child>> {
        self.inner
            .pipelines
            .get(name)
            .map(|c| Arc::clone(c.value()))
    }

    /// The controller of the pipeline `name`'s current run (its last, once it
    /// has ended for good).
    pub fn controller(&self, name: &str) -> Option<PipelineController> {
        self.child(name).map(|c| c.controller())
    }

    /// A stats snapshot of every managed pipeline's current run, sorted by name.
    /// The restarts per pipeline are in [`status`](Self::status).
    pub fn stats(&self) -> Vec<PipelineStats> {
        let mut all: Vec<PipelineStats> = self
            .inner
            .pipelines
            .iter()
            .map(|c| c.controller().stats())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The graph of every managed pipeline's current run, sorted by name (see
    /// [`PipelineController::topology`]).
    pub fn topologies(&self) -> Vec<crate::pipeline::Topology> {
        let mut all: Vec<crate::pipeline::Topology> = self
            .inner
            .pipelines
            .iter()
            .map(|c| c.controller().topology())
            .collect();
        all.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        all
    }

    /// The health verdict of every managed pipeline's current run, by name.
    pub fn health(&self) -> BTreeMap<String, Health> {
        self.inner
            .pipelines
            .iter()
            .map(|c| (c.key().clone(), c.controller().health()))
            .collect()
    }

    /// Where every managed pipeline stands in its supervision (state, restarts,
    /// last error), by name.
    pub fn status(&self) -> BTreeMap<String, PipelineStatus> {
        self.inner
            .pipelines
            .iter()
            .map(|c| (c.key().clone(), c.status()))
            .collect()
    }

    /// How many times the manager restarted `name`.
    pub fn restarts(&self, name: &str) -> Option<u32> {
        self.child(name).map(|c| c.status().restarts)
    }

    /// How `name` ended for good, if it has (a pipeline waiting to restart has
    /// not).
    pub fn ended(&self, name: &str) -> Option<Ended> {
        self.child(name).and_then(|c| c.wait(Duration::ZERO))
    }

    /// Waits, without blocking the thread, until `name` has ended for good:
    /// for async code, where [`stop`](Self::stop) would block. `None` for a
    /// name the manager does not know.
    pub async fn join(&self, name: &str) -> Option<Ended> {
        let child = self.child(name)?;
        Some(child.join().await)
    }

    /// Shuts `name` down gracefully within `deadline`, for good (no restart
    /// follows, and a backoff in progress is cut short), and waits for its end
    /// (at most `deadline` plus one second). Blocks the thread: from async code,
    /// use [`request_stop`](Self::request_stop) and [`join`](Self::join).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Unknown`], or [`ManagerError::Timeout`] if it did not end.
    pub fn stop(&self, name: &str, deadline: Duration) -> Result<Ended, ManagerError> {
        let child = self.child(name).ok_or_else(|| ManagerError::Unknown {
            name: name.to_owned(),
        })?;
        child.request_stop(deadline);
        let waited = deadline + Duration::from_secs(1);
        child.wait(waited).ok_or(ManagerError::Timeout {
            name: name.to_owned(),
            waited,
        })
    }

    /// Starts stopping `name` for good as [`stop`](Self::stop) does, without
    /// waiting.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Unknown`].
    pub fn request_stop(&self, name: &str, deadline: Duration) -> Result<(), ManagerError> {
        let child = self.child(name).ok_or_else(|| ManagerError::Unknown {
            name: name.to_owned(),
        })?;
        child.request_stop(deadline);
        Ok(())
    }

    /// Forgets `name` once it has ended for good; returns how it ended. A
    /// pipeline still running, or waiting to restart, stays.
    pub fn remove(&self, name: &str) -> Option<Ended> {
        let ended = self.ended(name)?;
        self.inner.pipelines.remove(name);
        Some(ended)
    }

    /// Shuts every managed pipeline down gracefully within `deadline`, for good
    /// (they drain in parallel; none restarts), waits for them (at most
    /// `deadline` plus one second), and reports how each ended and what it
    /// drained.
    pub fn shutdown_all(&self, deadline: Duration) -> ShutdownSummary {
        let children: Vec<(String, Arc<Child>)> = self
            .inner
            .pipelines
            .iter()
            .map(|c| (c.key().clone(), Arc::clone(c.value())))
            .collect();
        for (_, child) in &children {
            child.request_stop(deadline);
        }
        let until = Instant::now() + deadline + Duration::from_secs(1);
        let pipelines = children
            .into_iter()
            .map(|(name, child)| {
                let left = until.saturating_duration_since(Instant::now());
                (name, child.wait(left))
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
