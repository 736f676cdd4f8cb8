//! A live, read-only console for a [`PipelineManager`]'s pipelines (feature
//! `console`): one page that answers "what is it doing, and what is holding it
//! back?", the JSON and SSE APIs it is drawn from, health endpoints for a
//! service's orchestrator, and the Prometheus text.
//!
//! ```text
//! GET /              the page: every pipeline's graph, left to right, with live
//!                    figures per node and edges coloured by queue fill
//! GET /api/graph     every pipeline's Topology (JSON); ?format=dot or
//!                    ?format=mermaid for the graphs as text
//! GET /api/stats     live stats, edge fill, totals, conservation, bottleneck,
//!                    readiness and recent events of every pipeline (JSON)
//! GET /api/events    the same, pushed every `interval` (Server-Sent Events)
//! GET /healthz       liveness: 200 while the console answers
//! GET /readyz        readiness: 200, or 503 naming what is wrong
//! GET /metrics       the Prometheus text (feature `prometheus`, after
//!                    `weir::prometheus::install()`), else 404
//! POST /api/control/<pipeline>/<stage>/<pause|resume|reset-breaker|resize>
//! POST /api/control/<pipeline>/checkpoint
//!                    controls, only with `enable_controls` and a token
//! ```
//!
//! # Safe by default
//!
//! - It binds where it is told: give it `127.0.0.1:<port>` unless the network
//!   around it is trusted, and a [`bearer_token`](Console::bearer_token) when it
//!   is not on loopback. With a token, every request must carry it
//!   (`Authorization: Bearer <token>`, or `?token=<token>` for the page and its
//!   event stream, which a browser's `EventSource` cannot give headers); a
//!   request without it or with another gets `401` and no data; it is
//!   counted ([`ConsoleServer::unauthorized`],
//!   `weir_console_unauthorized_total`) and logged at `warn`.
//! - Over TLS with [`tls`](Console::tls) (feature `server-tls`; see
//!   [`server_tls`](crate::server_tls)): HTTPS only, optionally with client
//!   certificates. A handshake that fails (a plaintext client, a browser that
//!   does not trust the certificate) is closed before any request is read,
//!   counted ([`ConsoleServer::tls_handshake_failures`],
//!   `weir_console_tls_handshake_failures_total`) and logged at `warn`; a
//!   certificate or key that cannot be used fails [`serve`](Console::serve)
//!   with `ConsoleError::Tls` naming the file.
//! - Read-only unless [`enable_controls`](Console::enable_controls) turns the
//!   controls on (pause and resume a source, reset a breaker, resize a pool,
//!   take a checkpoint), which requires a bearer token.
//! - Bounded: at most [`max_clients`](Console::max_clients) event streams at
//!   once (one more gets `503`); a client that stops reading for
//!   [`slow_client_timeout`](Console::slow_client_timeout) is dropped, and
//!   nothing is buffered for it beyond one frame and the socket's buffers.
//! - Cheap: the figures are the stages' counters, sampled once per `interval`
//!   for every event stream together; nothing is done per element.
//!
//! # The bottleneck
//!
//! Each pipeline's figures name the stage that holds it back (see
//! [`Bottleneck::find`]): the root of a stall if the stall watchdog reports one,
//! otherwise the stage whose input edge is full while its output edges are
//! starved — blocked upstream, starved downstream.
//!
//! # Examples
//!
//! ```
//! use std::io::{Read, Write};
//! use weir::console::Console;
//! use weir::manager::PipelineManager;
//! use weir::prelude::*;
//!
//! let rt = Runtime::builder().arbiters(1).build()?;
//! let manager = PipelineManager::new();
//! let (ingress, flow) = Pipeline::ingress::<u64>(16);
//! manager.start("ingest", flow.map(|x| x * 2).for_each(|_| ()), &rt)?;
//! let console = Console::new(&manager).serve("127.0.0.1:0".parse()?)?;
//!
//! let mut client = std::net::TcpStream::connect(console.local_addr())?;
//! client.write_all(b"GET /readyz HTTP/1.0\r\n\r\n")?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
//! drop(ingress);
//! # manager.shutdown_all(std::time::Duration::from_secs(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod answer;
mod bottleneck;
mod control;
mod log;
mod server;
mod view;

use std::net::SocketAddr;
use std::time::Duration;

use weir_runtime::manager::PipelineManager;

pub use bottleneck::{Bottleneck, BottleneckReason, FULL, STARVED};
pub use server::ConsoleServer;

/// The default push interval of `/api/events`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// The default most event streams served at once.
pub const DEFAULT_MAX_CLIENTS: usize = 16;

/// The default time a client may stop reading its event stream before it is
/// dropped.
pub const DEFAULT_SLOW_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many recent events the console keeps for its page.
const EVENT_LOG: usize = 200;

/// Why the console could not start, or an option was invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The address could not be bound.
    #[error("cannot serve the console on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error: binding, or starting the server's runtime or thread.
        #[source]
        source: std::io::Error,
    },
    /// An option is out of range.
    #[error("invalid console option `{option}`: {reason}")]
    Invalid {
        /// The option's builder method.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS certificate or key cannot be used (feature `server-tls`).
    #[cfg(feature = "server-tls")]
    #[error("cannot serve the console over TLS: {source}")]
    Tls {
        /// What is wrong, naming the file.
        #[source]
        source: crate::server_tls::TlsError,
    },
}

/// Serves the console of `manager`'s pipelines on `addr` with the defaults (no
/// token, [`DEFAULT_MAX_CLIENTS`], [`DEFAULT_INTERVAL`]).
///
/// # Errors
///
/// As [`Console::serve`].
pub fn serve(addr: SocketAddr, manager: &PipelineManager) -> Result<ConsoleServer, ConsoleError> {
    Console::new(manager).serve(addr)
}

/// The console's settings; [`serve`](Self::serve) starts it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir::console::Console;
/// use weir::manager::PipelineManager;
///
/// let manager = PipelineManager::new();
/// let console = Console::new(&manager)
///     .bearer_token("s3cret")
///     .max_clients(4)
///     .interval(Duration::from_millis(250))
///     .serve("127.0.0.1:0".parse()?)?;
/// println!("console on http://{}/?token=s3cret", console.local_addr());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Console {
    manager: PipelineManager,
    pub(crate) token: Option<String>,
    #[cfg(feature = "server-tls")]
    pub(crate) tls: Option<crate::server_tls::TlsServerConfig>,
    pub(crate) max_clients: usize,
    pub(crate) interval: Duration,
    pub(crate) slow_client_timeout: Duration,
    pub(crate) header_timeout: Duration,
    /// `(pipeline, stage)` pairs marked required for readiness.
    pub(crate) required: Vec<(String, String)>,
    /// Whether `POST /api/control/...` acts (see [`Console::enable_controls`]).
    pub(crate) controls: bool,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Console");
        d.field("manager", &self.manager)
            // Never the token itself.
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("max_clients", &self.max_clients)
            .field("interval", &self.interval)
            .field("slow_client_timeout", &self.slow_client_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("required", &self.required)
            .field("controls", &self.controls);
        #[cfg(feature = "server-tls")]
        d.field("tls", &self.tls);
        d.finish()
    }
}

impl Console {
    /// The console of `manager`'s pipelines (every clone of the manager sees the
    /// same ones, whenever they are started).
    pub fn new(manager: &PipelineManager) -> Self {
        Console {
            manager: manager.clone(),
            token: None,
            #[cfg(feature = "server-tls")]
            tls: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            interval: DEFAULT_INTERVAL,
            slow_client_timeout: DEFAULT_SLOW_CLIENT_TIMEOUT,
            header_timeout: Duration::from_secs(10),
            required: Vec::new(),
            controls: false,
        }
    }

    /// Marks stage `stage` of pipeline `pipeline` as *required* for `/readyz`.
    /// A pipeline with no stage marked is ready while it runs with no circuit
    /// breaker open or probing anywhere. Once some of its stages are marked, only
    /// theirs count, and a marked stage also makes it unready while it is stalled
    /// (the watchdog) or after its failure ended its merge input
    /// (`InputFailure::EndInput`: the pipeline goes on without that branch). Mark
    /// the stages a service cannot do without, and leave side branches (a metrics
    /// sink, an audit copy) unmarked so that their trouble shows on the page
    /// without taking the service out of its load balancer.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::console::Console;
    /// use weir::manager::PipelineManager;
    ///
    /// let manager = PipelineManager::new();
    /// let console = Console::new(&manager)
    ///     .required("orders", "charge")
    ///     .required("orders", "store");
    /// # drop(console);
    /// ```
    #[must_use]
    pub fn required(mut self, pipeline: impl Into<String>, stage: impl Into<String>) -> Self {
        self.required.push((pipeline.into(), stage.into()));
        self
    }

    /// Requires `token` on every request (`Authorization: Bearer <token>` or
    /// `?token=<token>`): without it, or with another, the answer is `401` with
    /// no data. Give one whenever the console is reachable by others than you.
    #[must_use]
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Serves HTTPS only, with `config`'s certificate and key, and client
    /// certificates if it asks for them (feature `server-tls`; see
    /// [`server_tls`](crate::server_tls)). The files are read when
    /// [`serve`](Self::serve) is called; each connection's handshake must
    /// complete within 10 s (the header timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::console::Console;
    /// use weir::manager::PipelineManager;
    /// use weir::server_tls::{Pem, TlsServerConfig};
    ///
    /// let manager = PipelineManager::new();
    /// let tls = TlsServerConfig::new(Pem::file("/etc/weir/console.pem"), Pem::file("/etc/weir/console.key"));
    /// // Files that are not there: an error naming the first one, nothing bound.
    /// let error = Console::new(&manager).tls(tls).serve("127.0.0.1:0".parse()?).unwrap_err();
    /// assert!(error.to_string().contains("/etc/weir/console.pem"), "{error}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "server-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "server-tls")))]
    #[must_use]
    pub fn tls(mut self, config: crate::server_tls::TlsServerConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// The most event streams (`/api/events`) served at once (default 16); one
    /// more gets `503` with `Retry-After`. Each costs a connection and one
    /// snapshot's JSON per interval: a few open pages need no more than the
    /// default.
    #[must_use]
    pub fn max_clients(mut self, max_clients: usize) -> Self {
        self.max_clients = max_clients;
        self
    }

    /// How often `/api/events` pushes the figures: 250 ms to 1 s (default
    /// 500 ms). Shorter shows more detail in the rates; every tick samples every
    /// stage's counters once, whatever the number of clients.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long an event stream's client may stop reading before it is dropped
    /// (default 5 s; at least two intervals). Nothing is kept for it meanwhile
    /// but one frame and the socket's buffers.
    #[must_use]
    pub fn slow_client_timeout(mut self, timeout: Duration) -> Self {
        self.slow_client_timeout = timeout;
        self
    }

    /// Turns the controls on: `POST /api/control/...` pauses and resumes a
    /// source, resets a circuit breaker, resizes a pool and takes a checkpoint,
    /// and the page shows buttons for them. Off by default (the console is then
    /// read-only, and those paths answer `403`). They need a
    /// [`bearer_token`](Self::bearer_token): [`serve`](Self::serve) refuses
    /// controls without one. Every control, applied or refused, is an entry of
    /// the page's event list (kind `control`) and a `tracing` event (target
    /// `weir::console`).
    ///
    /// | Control | Path | Applies to |
    /// |---|---|---|
    /// | pause, resume | `/api/control/<pipeline>/<stage>/pause`, `…/resume` | a source |
    /// | reset the breaker | `/api/control/<pipeline>/<stage>/reset-breaker` | a stage with a circuit breaker |
    /// | resize | `/api/control/<pipeline>/<stage>/resize?replicas=<n>` | a resizable pool (its dispatch or its name) |
    /// | checkpoint | `/api/control/<pipeline>/checkpoint` | a checkpointed pipeline |
    ///
    /// Answers: `200` with what was done; `404` for an unknown pipeline, stage
    /// or control; `409` for a stage that cannot do it (pausing a non-source,
    /// resizing a non-pool) or a pipeline that ended; `400` for a bad size.
    /// Each body is JSON naming the pipeline, stage and action.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use weir::console::Console;
    /// use weir::manager::PipelineManager;
    /// use weir::prelude::*;
    ///
    /// let rt = Runtime::builder().arbiters(1).build()?;
    /// let manager = PipelineManager::new();
    /// let (ingress, flow) = Pipeline::ingress::<u64>(16);
    /// let flow = flow.name("orders").map(|x| x * 2).for_each(|_| ());
    /// manager.start("ingest", flow, &rt)?;
    /// let console = Console::new(&manager)
    ///     .bearer_token("s3cret")
    ///     .enable_controls()
    ///     .serve("127.0.0.1:0".parse()?)?;
    ///
    /// let mut client = std::net::TcpStream::connect(console.local_addr())?;
    /// client.write_all(
    ///     b"POST /api/control/ingest/orders/pause HTTP/1.0\r\n\
    ///       Authorization: Bearer s3cret\r\n\r\n",
    /// )?;
    /// let mut answer = String::new();
    /// client.read_to_string(&mut answer)?;
    /// assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    /// assert!(manager.controller("ingest").unwrap().stats().stages[0].paused);
    ///
    /// // Without a token, controls are refused when serving.
    /// assert!(Console::new(&manager).enable_controls().serve("127.0.0.1:0".parse()?).is_err());
    /// drop(ingress);
    /// # manager.shutdown_all(std::time::Duration::from_secs(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn enable_controls(mut self) -> Self {
        self.controls = true;
        self
    }

    fn validate(&self) -> Result<(), ConsoleError> {
        let invalid = |option, reason: &str| {
            Err(ConsoleError::Invalid {
                option,
                reason: reason.to_owned(),
            })
        };
        if !(Duration::from_millis(250)..=Duration::from_secs(1)).contains(&self.interval) {
            return invalid("interval", "must be from 250 ms to 1 s");
        }
        if self.max_clients == 0 {
            return invalid("max_clients", "must be at least 1");
        }
        if self.slow_client_timeout < 2 * self.interval {
            return invalid("slow_client_timeout", "must be at least two intervals");
        }
        if self.token.as_deref().is_some_and(str::is_empty) {
            return invalid("bearer_token", "must not be empty");
        }
        if self.controls && self.token.is_none() {
            return invalid(
                "enable_controls",
                "controls need a bearer token (Console::bearer_token)",
            );
        }
        Ok(())
    }

    /// Binds `addr` (use `127.0.0.1:<port>`; port 0 picks a free one) and serves
    /// the console on a thread of its own until the returned server is shut down
    /// or dropped.
    ///
    /// # Errors
    ///
    /// [`ConsoleError::Invalid`] for an option out of range; `ConsoleError::Tls`
    /// (feature `server-tls`) naming a certificate or key file that cannot be
    /// used; [`ConsoleError::Bind`] if the address cannot be bound.
    pub fn serve(self, addr: SocketAddr) -> Result<ConsoleServer, ConsoleError> {
        self.validate()?;
        server::start(self, addr)
    }
}
