//! [`serve`]: the service, from start to its final [`Summary`].

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use weir::prelude::*;
use weir::{PipelineError, RuntimeError};

use super::http::{self, Admission, AdmissionCounts, AppState, Settings};
use super::pipeline::{self, Hold, Limits};

/// What the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The pipeline's bounds.
    pub limits: Limits,
    /// How the handlers admit events (send timeout, `Retry-After`).
    pub http: Settings,
    /// How long the shutdown waits for the accepted events to drain; what has
    /// not drained by then is abandoned, and counted in the report.
    ///
    /// Choosing it: the pipeline holds at most a few times
    /// [`Limits::capacity`] events; the deadline only matters when its stages
    /// are slow (or held by a [`Hold`]).
    pub drain_deadline: Duration,
    /// Holds the pipeline until released (tests and demonstrations, see
    /// [`Hold`]).
    pub hold: Option<Hold>,
}

impl Default for Config {
    fn default() -> Self {
        let limits = Limits::default();
        Config {
            limits,
            http: Settings {
                send_timeout: Duration::from_millis(100),
                retry_after_secs: 1,
                max_key_bytes: limits.max_key_bytes,
            },
            drain_deadline: Duration::from_secs(5),
            hold: None,
        }
    }
}

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// [`serve`] was called outside an actix System: weir's stages have no
    /// arbiter to run on.
    #[error("no actix System to run the pipeline on: {0}")]
    Runtime(#[source] RuntimeError),
    /// The pipeline was refused when it was built (a bound of 0).
    #[error("the pipeline: {0}")]
    Build(#[source] BuildError),
    /// The pipeline failed while it ran, or its runtime went away.
    #[error("the pipeline failed: {0}")]
    Pipeline(#[source] PipelineError),
    /// The HTTP server stopped on an error.
    #[error("the HTTP server: {0}")]
    Server(#[source] std::io::Error),
}

/// What the service did, from its start to its shutdown.
#[derive(Debug, Clone)]
pub struct Summary {
    /// What `POST /events` answered.
    pub admission: AdmissionCounts,
    /// Events the pipeline counted.
    pub counted: u64,
    /// Accepted events dead-lettered because their key was one too many.
    pub over_key_limit: u64,
    /// The count per key.
    pub keys: BTreeMap<String, u64>,
    /// The pipeline's report.
    pub report: Report,
}

impl Summary {
    /// Checks that every accepted event was counted exactly once (or
    /// dead-lettered over the key limit, or abandoned by a shutdown that ran out
    /// of time), that the counts per key add up, and the report's conservation.
    ///
    /// # Errors
    ///
    /// What does not add up.
    pub fn check(&self) -> Result<(), String> {
        self.report
            .check_conservation()
            .map_err(|e| e.to_string())?;
        let abandoned = self.report.abandoned();
        let accepted = self.admission.accepted;
        if accepted != self.counted + self.over_key_limit + abandoned {
            return Err(format!(
                "accepted {accepted} events, but counted {}, dead-lettered {} over the key \
                 limit and abandoned {abandoned}",
                self.counted, self.over_key_limit
            ));
        }
        let per_key: u64 = self.keys.values().sum();
        if per_key != self.counted {
            return Err(format!(
                "the counts per key add up to {per_key}, not to the {} counted",
                self.counted
            ));
        }
        Ok(())
    }

    /// The summary as JSON: `admission`, `counted`, `over_key_limit`, `keys`,
    /// `outcome`, `abandoned`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "admission": self.admission,
            "counted": self.counted,
            "over_key_limit": self.over_key_limit,
            "keys": self.keys,
            "outcome": format!("{:?}", self.report.outcome),
            "abandoned": self.report.abandoned(),
        })
    }

    /// Writes the summary, then the pipeline's report, to `out`.
    ///
    /// # Errors
    ///
    /// Writing failed.
    pub fn print(&self, out: &mut dyn Write, top: usize) -> std::io::Result<()> {
        let a = &self.admission;
        writeln!(
            out,
            "axum_service: accepted {} events, refused {} (503: {} without room, {} while \
             shutting down), invalid {}",
            a.accepted,
            a.refused_full + a.refused_closing,
            a.refused_full,
            a.refused_closing,
            a.invalid
        )?;
        writeln!(
            out,
            "  counted {} in {} keys, over the key limit {}, abandoned {}",
            self.counted,
            self.keys.len(),
            self.over_key_limit,
            self.report.abandoned()
        )?;
        let mut keys: Vec<(&String, &u64)> = self.keys.iter().collect();
        keys.sort_by(|x, y| y.1.cmp(x.1).then_with(|| x.0.cmp(y.0)));
        for (key, count) in keys.into_iter().take(top) {
            writeln!(out, "  {count:>10}  {key}")?;
        }
        write!(out, "{}", self.report)
    }
}

/// Runs the service on `listener` until `shutdown` resolves, then stops it
/// gracefully and returns what it did.
///
/// Call it inside an actix System (`actix_rt::System::new().block_on(..)`, or
/// [`System::with_tokio_rt`](actix_rt::System::with_tokio_rt) over the
/// service's own multi-threaded tokio runtime, as the `axum_service` binary
/// does): the pipeline's stages run on the System's arbiter — the thread
/// running the `block_on` — through [`Runtime::from_current`], and the HTTP
/// server is spawned on the tokio runtime (its workers, when it has some).
///
/// The shutdown, once `shutdown` resolves:
///
/// 1. the server stops accepting connections and finishes the requests it is
///    serving; at the same time the pipeline stops taking events (a `POST`
///    still waiting for room is answered `503`, "shutting down");
/// 2. the accepted events drain through the pipeline, within
///    [`Config::drain_deadline`];
/// 3. the [`Summary`] is returned.
///
/// # Errors
///
/// A [`ServiceError`]: outside an actix System, a bound of 0, a pipeline or
/// server failure.
///
/// # Examples
///
/// ```no_run
/// use weir_examples::axum_service::{Config, serve};
///
/// let summary = actix_rt::System::new().block_on(async {
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
///     let ctrl_c = async {
///         let _ = tokio::signal::ctrl_c().await;
///     };
///     Ok::<_, Box<dyn std::error::Error>>(serve(listener, Config::default(), ctrl_c).await?)
/// })?;
/// summary.check()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, ServiceError> {
    let rt = Runtime::from_current().map_err(ServiceError::Runtime)?;
    let built = pipeline::build(config.limits, config.hold.as_ref());
    let running = built.runnable.run(&rt).map_err(ServiceError::Build)?;
    let admission = Arc::new(Admission::default());
    let state = Arc::new(AppState {
        ingress: built.ingress,
        controller: running.controller(),
        counts: Arc::clone(&built.counts),
        admission: Arc::clone(&admission),
        settings: config.http,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, http::router(state)).with_graceful_shutdown(async move {
        let _ = stopped.await;
    });
    // On the tokio runtime's workers, not on the arbiter's thread: the
    // requests are served even while the pipeline's stages are busy.
    let server = tokio::spawn(server.into_future());

    shutdown.await;
    let _ = stop.send(());
    let done = running.shutdown(config.drain_deadline).await;
    let served = server.await;
    let done = done.map_err(ServiceError::Pipeline)?;
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ServiceError::Server(e)),
        Err(e) => return Err(ServiceError::Server(std::io::Error::other(e))),
    }
    Ok(Summary {
        admission: admission.counts(),
        counted: built.counts.total(),
        over_key_limit: built.counts.over_key_limit(),
        keys: built.counts.snapshot(),
        report: done.report,
    })
}
