//! The console's HTTP server: the sampler, routing, the token check, the event
//! streams and their limits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_runtime::manager::PipelineManager;
use weir_runtime::observe::Tally;

use super::answer::{error_json, json, metrics, text, to_json};
use super::log::{Collector, EventLog};
use super::{Console, ConsoleError, EVENT_LOG, control, view};
use crate::http_server::{self, Body, Counted, OpenCount, Opening, Stopper};

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// How long a shut-down server waits for its connections to close.
const DRAIN: Duration = Duration::from_secs(1);

/// A running console, from [`Console::serve`](super::Console::serve). Dropping it
/// shuts the server down as [`shutdown`](Self::shutdown) does.
#[derive(Debug)]
pub struct ConsoleServer {
    addr: SocketAddr,
    counters: Arc<Counters>,
    server: Stopper,
}

/// The server's counts; the open connections and event streams are also the
/// gauges `weir_console_open_connections` and `weir_console_clients`, the
/// refusals the counters `weir_console_unauthorized_total` and
/// `weir_console_tls_handshake_failures_total` (label `addr`: the address the
/// console was asked to listen on).
#[derive(Debug)]
struct Counters {
    /// Event streams open now.
    clients: OpenCount,
    /// Event streams refused for being one too many.
    rejected: AtomicU64,
    /// Event streams dropped for not reading.
    dropped_slow: AtomicU64,
    /// Requests refused for a missing or wrong token.
    unauthorized: Tally,
    /// Connections whose TLS handshake failed or timed out.
    tls_handshake_failures: Arc<Tally>,
    /// Connections open now.
    connections: OpenCount,
}

impl Counters {
    fn new(addr: SocketAddr) -> Self {
        let l = [("addr", addr.to_string())];
        Counters {
            clients: OpenCount::exported("weir_console_clients", &l),
            rejected: AtomicU64::new(0),
            dropped_slow: AtomicU64::new(0),
            unauthorized: Tally::new("weir_console_unauthorized_total", &l),
            tls_handshake_failures: Arc::new(Tally::new(
                "weir_console_tls_handshake_failures_total",
                &l,
            )),
            connections: OpenCount::exported("weir_console_open_connections", &l),
        }
    }
}

impl ConsoleServer {
    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Event streams (`/api/events`) open now.
    pub fn clients(&self) -> usize {
        self.counters.clients.get()
    }

    /// Event streams refused so far for being over
    /// [`max_clients`](super::Console::max_clients).
    pub fn rejected(&self) -> u64 {
        self.counters.rejected.load(Ordering::Acquire)
    }

    /// Event streams dropped so far because their client stopped reading.
    pub fn dropped_slow(&self) -> u64 {
        self.counters.dropped_slow.load(Ordering::Acquire)
    }

    /// Requests refused so far for a missing or wrong token.
    pub fn unauthorized(&self) -> u64 {
        self.counters.unauthorized.get()
    }

    /// Connections closed so far because their TLS handshake failed or timed
    /// out (feature `server-tls`: a plaintext client, a client not trusting
    /// the certificate or, when required, without a trusted client
    /// certificate); always 0 without [`tls`](super::Console::tls).
    pub fn tls_handshake_failures(&self) -> u64 {
        self.counters.tls_handshake_failures.get()
    }

    /// Stops accepting, ends every event stream, and waits up to a second for
    /// the connections to close; the pipelines go on.
    pub fn shutdown(mut self) {
        self.server.stop_and_join();
    }
}

/// Binds `addr` and starts the server's thread.
pub(super) fn start(console: Console, addr: SocketAddr) -> Result<ConsoleServer, ConsoleError> {
    let counters = Arc::new(Counters::new(addr));
    let opening = Opening::plain(
        "console",
        console.header_timeout,
        Arc::clone(&counters.tls_handshake_failures),
    );
    #[cfg(feature = "server-tls")]
    let opening = opening
        .with_tls(console.tls.as_ref())
        .map_err(|source| ConsoleError::Tls { source })?;
    let (stop, stopped) = watch::channel(false);
    let (frames, frame) = watch::channel(Arc::new(String::new()));
    let server = Server {
        opening,
        console: Arc::new(console),
        log: Arc::new(EventLog::new(EVENT_LOG)),
        counters: Arc::clone(&counters),
        started: Instant::now(),
        stopped,
        frame,
    };
    let (local, thread) = crate::http_server::spawn(addr, "weir-console", move |listener| {
        server.run(listener, frames)
    })
    .map_err(|source| ConsoleError::Bind { addr, source })?;
    Ok(ConsoleServer {
        addr: local,
        counters,
        server: Stopper::new(stop, thread),
    })
}

/// What the accept loop, the sampler and every connection share.
#[derive(Clone)]
struct Server {
    opening: Opening,
    console: Arc<Console>,
    log: Arc<EventLog>,
    counters: Arc<Counters>,
    started: Instant,
    stopped: watch::Receiver<bool>,
    /// The latest figures as one SSE frame, for every event stream.
    frame: watch::Receiver<Arc<String>>,
}

impl Server {
    fn manager(&self) -> &PipelineManager {
        &self.console.manager
    }

    fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn run(self, listener: TcpListener, frames: watch::Sender<Arc<String>>) {
        let sampler = tokio::spawn(self.clone().sample(frames));
        let (open, stopped) = (&self.counters.connections, self.stopped.clone());
        http_server::accept_until(listener, stopped, "console", open, DRAIN, |socket| {
            self.admit(socket);
        })
        .await;
        sampler.abort();
    }

    /// Once per interval: gathers the events and renders the figures once, for
    /// every event stream.
    async fn sample(self, frames: watch::Sender<Arc<String>>) {
        let mut collector = Collector::new(self.manager());
        let mut tick = tokio::time::interval(self.console.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq: u64 = 0;
        loop {
            tick.tick().await;
            collector.collect(self.manager(), &self.log);
            // Rendered only for someone to read it.
            if self.counters.clients.get() == 0 {
                continue;
            }
            seq += 1;
            let stats = view::stats(
                self.manager(),
                &self.console.required,
                self.console.controls,
                &self.log,
                self.uptime_ms(),
            );
            let json = serde_json::to_string(&stats).unwrap_or_else(|e| error_json(&e.to_string()));
            let _ = frames.send(Arc::new(format!(
                "event: stats\nid: {seq}\ndata: {json}\n\n"
            )));
        }
    }

    fn admit(&self, socket: TcpStream) {
        let (_, guard) = Counted::enter(&self.counters, |c| &c.connections);
        let server = self.clone();
        tokio::spawn(async move {
            let peer = socket.peer_addr().ok();
            let Some(conn) = server.opening.open(socket).await else {
                return; // counted and logged
            };
            // Set while the connection streams events: when its client last took a frame.
            let progress = Arc::new(AtomicU64::new(0));
            let mut http = hyper::server::conn::http1::Builder::new();
            http.keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(server.console.header_timeout);
            let conn_server = server.clone();
            let conn_progress = Arc::clone(&progress);
            let service = service_fn(move |req| {
                let server = conn_server.clone();
                let progress = Arc::clone(&conn_progress);
                async move {
                    if req.uri().path().starts_with(control::PREFIX) {
                        return Ok::<_, Infallible>(server.control(&req, peer).await);
                    }
                    Ok::<_, Infallible>(server.respond(&req, peer, &progress))
                }
            });
            let conn = http.serve_connection(TokioIo::new(conn), service);
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "console connection ended with an error");
                    }
                }
                () = server.watch_slow(&progress) => {
                    server.counters.dropped_slow.fetch_add(1, Ordering::AcqRel);
                    tracing::debug!("console event stream dropped: the client stopped reading");
                }
            }
            drop(guard);
        });
    }

    /// Returns once an event stream's client has taken no frame for the slow
    /// client timeout; never for a connection that does not stream.
    async fn watch_slow(&self, progress: &AtomicU64) {
        let limit = u64::try_from(self.console.slow_client_timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::time::sleep(self.console.interval).await;
            let last = progress.load(Ordering::Acquire);
            if last != 0 && self.uptime_ms().saturating_sub(last) > limit {
                return;
            }
        }
    }

    /// Whether the request carries the token (`?token=` for the page and its
    /// event stream); a refusal is logged.
    fn authorized(&self, req: &Request<Incoming>, peer: Option<SocketAddr>) -> bool {
        let token = self.console.token.as_deref();
        http_server::admits(req, token, Some("token"), "console", peer)
    }

    /// `401` for a missing or wrong token, counted.
    fn unauthorized(&self) -> Response<Body> {
        let _ = self.counters.unauthorized.add(1);
        let mut res = json(
            StatusCode::UNAUTHORIZED,
            error_json("a bearer token is required"),
        );
        res.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        res
    }

    /// `POST /api/control/...`: `401` without the token, `403` while controls
    /// are disabled, `405` for another method; then the control's own answer.
    async fn control(&self, req: &Request<Incoming>, peer: Option<SocketAddr>) -> Response<Body> {
        if !self.authorized(req, peer) {
            return self.unauthorized();
        }
        let path = req.uri().path();
        if !self.console.controls {
            tracing::warn!(
                target: "weir::console", path,
                "console control refused: controls are disabled"
            );
            return json(
                StatusCode::FORBIDDEN,
                error_json(
                    "controls are disabled: the console is read-only (enable them with \
                     Console::enable_controls and a bearer token)",
                ),
            );
        }
        if req.method() != Method::POST {
            let mut res = json(
                StatusCode::METHOD_NOT_ALLOWED,
                error_json("controls are POST requests"),
            );
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return res;
        }
        let outcome = match control::parse(path, req.uri().query().unwrap_or("")) {
            Ok((pipeline, command)) => {
                control::apply(self.manager(), &self.log, &pipeline, command).await
            }
            Err(refused) => {
                tracing::warn!(
                    target: "weir::console", path, status = refused.status.as_u16(),
                    "console control refused: {}", refused.body["error"]
                );
                refused
            }
        };
        json(outcome.status, outcome.body.to_string())
    }

    /// The answer to one request.
    fn respond(
        &self,
        req: &Request<Incoming>,
        peer: Option<SocketAddr>,
        progress: &Arc<AtomicU64>,
    ) -> Response<Body> {
        // The page's script and style sheet are the same embedded files in every
        // console and carry no data: a browser loads them without the token the
        // page's own address carries.
        let asset = matches!(req.uri().path(), "/console.js" | "/console.css");
        if !asset && !self.authorized(req, peer) {
            return self.unauthorized();
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let message = if self.console.controls {
                "GET only here; controls are POST /api/control/..."
            } else {
                "the console is read-only: GET only"
            };
            let mut res = json(StatusCode::METHOD_NOT_ALLOWED, error_json(message));
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let query = req.uri().query().unwrap_or("");
        match req.uri().path() {
            "/" | "/index.html" => {
                let mut res = text(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML);
                res.headers_mut().insert(
                    "content-security-policy",
                    HeaderValue::from_static(
                        "default-src 'self'; script-src 'self'; style-src 'self'; \
                         img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
                    ),
                );
                res
            }
            "/console.js" => text(StatusCode::OK, "text/javascript; charset=utf-8", CONSOLE_JS),
            "/console.css" => text(StatusCode::OK, "text/css; charset=utf-8", CONSOLE_CSS),
            "/api/graph" => self.graph(query),
            "/api/stats" => json(
                StatusCode::OK,
                to_json(&view::stats(
                    self.manager(),
                    &self.console.required,
                    self.console.controls,
                    &self.log,
                    self.uptime_ms(),
                )),
            ),
            "/api/events" => self.events(progress),
            "/healthz" => json(
                StatusCode::OK,
                to_json(&serde_json::json!({
                    "status": "alive",
                    "pipelines": self.manager().names().len(),
                    "uptime_ms": self.uptime_ms(),
                })),
            ),
            "/readyz" => {
                let ready = view::readiness(self.manager(), &self.console.required);
                let status = if ready.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, to_json(&ready))
            }
            "/metrics" => metrics(),
            _ => json(StatusCode::NOT_FOUND, error_json("no such page")),
        }
    }

    fn graph(&self, query: &str) -> Response<Body> {
        let topologies = self.manager().topologies();
        let format = query.split('&').find_map(|p| p.strip_prefix("format="));
        match format {
            None | Some("json") => json(
                StatusCode::OK,
                to_json(&view::GraphView {
                    pipelines: topologies,
                }),
            ),
            Some("dot") => text(
                StatusCode::OK,
                "text/vnd.graphviz; charset=utf-8",
                topologies
                    .iter()
                    .map(weir_runtime::Topology::to_dot)
                    .collect::<String>(),
            ),
            Some("mermaid") => text(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                topologies
                    .iter()
                    .map(weir_runtime::Topology::to_mermaid)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Some(_) => json(
                StatusCode::BAD_REQUEST,
                error_json("format must be json, dot or mermaid"),
            ),
        }
    }

    /// `GET /api/events`: the figures every interval, as `stats` events.
    fn events(&self, progress: &Arc<AtomicU64>) -> Response<Body> {
        let (open, guard) = Counted::enter(&self.counters, |c| &c.clients);
        if open >= self.console.max_clients {
            drop(guard);
            self.counters.rejected.fetch_add(1, Ordering::AcqRel);
            let mut res = json(
                StatusCode::SERVICE_UNAVAILABLE,
                error_json(&format!(
                    "too many event streams (at most {}); retry later",
                    self.console.max_clients
                )),
            );
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
        progress.store(self.uptime_ms().max(1), Ordering::Release);
        let state = Stream {
            server: self.clone(),
            frame: self.frame.clone(),
            stopped: self.stopped.clone(),
            progress: Arc::clone(progress),
            first: true,
            done: false,
            _guard: guard,
        };
        let frames = futures::stream::unfold(state, |mut st| async move {
            let text = st.next().await?;
            st.progress
                .store(st.server.uptime_ms().max(1), Ordering::Release);
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(text))), st))
        });
        let mut res = Response::new(StreamBody::new(frames).boxed_unsync());
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        res
    }
}

/// One event stream.
struct Stream {
    server: Server,
    frame: watch::Receiver<Arc<String>>,
    stopped: watch::Receiver<bool>,
    progress: Arc<AtomicU64>,
    first: bool,
    done: bool,
    _guard: Counted<Counters>,
}

impl Stream {
    async fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        if self.first {
            self.first = false;
            // The figures of now, at once, after the reconnection delay.
            let stats = view::stats(
                self.server.manager(),
                &self.server.console.required,
                self.server.console.controls,
                &self.server.log,
                self.server.uptime_ms(),
            );
            let _ = self.frame.borrow_and_update();
            return Some(format!(
                "retry: 2000\n: connected\n\nevent: stats\nid: 0\ndata: {}\n\n",
                to_json(&stats)
            ));
        }
        tokio::select! {
            biased;
            _ = self.stopped.changed() => {
                self.done = true;
                Some("event: end\ndata: shutdown\n\n".to_owned())
            }
            changed = self.frame.changed() => match changed {
                Ok(()) => Some(self.frame.borrow_and_update().as_str().to_owned()),
                Err(_) => {
                    self.done = true;
                    Some("event: end\ndata: shutdown\n\n".to_owned())
                }
            },
        }
    }
}
