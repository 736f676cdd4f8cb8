//! HTTP ingest (feature `http`): a pipeline's source fed by `POST` requests,
//! with the pipeline's backpressure mapped onto the protocol.
//!
//! ```text
//!  client ── POST /events (NDJSON or one JSON value) ──▶ HttpSource ──▶ pipeline
//!         ◀── 202 {"accepted": n} | 400 | 401 | 413 | 415 | 503 + Retry-After
//! ```
//!
//! # The protocol
//!
//! `POST <path>` (default `/events`) with
//!
//! - `Content-Type: application/x-ndjson` (or `application/jsonl`): one element
//!   per non-empty line;
//! - `Content-Type: application/json`: the body is one element.
//!
//! The whole request is admitted **at once or not at all**: every element is
//! decoded first (a malformed one answers `400` naming its line, and nothing is
//! admitted), then room for all of them is reserved in the ingress buffer. While
//! the pipeline has no room the request waits, up to [`wait`](HttpSource::wait)
//! (default 5 s); then it answers `503 Service Unavailable` with `Retry-After`,
//! and nothing is admitted. Admitted, it answers `202 Accepted` with
//! `{"accepted": n}`: from then on the pipeline accounts for every element
//! (delivered, filtered, failed, dead-lettered, or abandoned at an abort), as for
//! an [`Ingress`](weir_operators::source::Ingress).
//!
//! | Request | Answer |
//! |---|---|
//! | another path | `404` |
//! | another method | `405` with `Allow: POST` |
//! | no or wrong bearer token (when one is set) | `401` with `WWW-Authenticate: Bearer`; the body is not read |
//! | another content type | `415` |
//! | a body over `max_body_bytes` (default 1 MiB), or more elements than the ingress capacity | `413` |
//! | an element that does not decode | `400`, `line N: reason` |
//! | no room within `wait` | `503`, `Retry-After` |
//! | the pipeline stopped taking elements | `503` |
//! | more than `max_connections` open (default 1024) | `503`, `Retry-After`, closed |
//!
//! Not replayable: in a checkpointed pipeline it is listed among the sources that
//! cannot resume (a client that got `202` relies on the pipeline, not on a
//! replay). The stream ends when the server is shut down
//! ([`HttpIngest::shutdown`], or dropping it).
//!
//! # Examples
//!
//! ```
//! use std::io::{Read, Write};
//! use weir::http_source::HttpSource;
//! use weir::prelude::*;
//!
//! let rt = Runtime::builder().arbiters(1).build()?;
//! let (server, flow) = HttpSource::<u64>::json().serve("127.0.0.1:0".parse()?)?;
//! let running = flow.fold(0, |sum, x| sum + x).run(&rt)?;
//!
//! let body = "1\n2\n3\n";
//! let mut socket = std::net::TcpStream::connect(server.local_addr())?;
//! write!(
//!     socket,
//!     "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
//!      Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
//!     body.len()
//! )?;
//! let mut answer = String::new();
//! socket.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
//!
//! server.shutdown(); // the stream ends
//! assert_eq!(running.wait()?.output, 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod server;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use weir_runtime::observe::Tally;

use serde::de::DeserializeOwned;
use weir_operators::Pipeline;
use weir_runtime::Flow;

pub use server::HttpIngest;

/// Turns one element's bytes (a line of NDJSON, or a JSON body) into an element,
/// or says what is wrong with them.
pub type Decode<T> = Arc<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// An HTTP ingest endpoint for a pipeline: [`serve`](Self::serve) binds it and
/// returns the pipeline's source. See the [module docs](self) for the protocol.
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct HttpSource<T> {
    decode: Decode<T>,
    options: Options,
}

impl<T> std::fmt::Debug for HttpSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The settings of an endpoint.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) path: String,
    pub(crate) capacity: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) wait: Duration,
    pub(crate) token: Option<String>,
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
    #[cfg(feature = "server-tls")]
    pub(crate) tls: Option<crate::server_tls::TlsServerConfig>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("wait", &self.wait)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + 'static> HttpSource<T> {
    /// Elements decoded from JSON (`serde_json`).
    pub fn json() -> Self {
        Self::new(|bytes| serde_json::from_slice(bytes).map_err(|e| e.to_string()))
    }
}

impl<T: Send + 'static> HttpSource<T> {
    /// Elements decoded by `decode`; path `/events`, 1024 elements buffered, bodies
    /// up to 1 MiB, a 5 s wait for room, no token, 1024 connections.
    pub fn new(decode: impl Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static) -> Self {
        HttpSource {
            decode: Arc::new(decode),
            options: Options {
                path: "/events".into(),
                capacity: 1024,
                max_body_bytes: 1 << 20,
                wait: Duration::from_secs(5),
                token: None,
                max_connections: 1024,
                header_timeout: Duration::from_secs(10),
                #[cfg(feature = "server-tls")]
                tls: None,
            },
        }
    }

    /// The path requests are posted to.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.options.path = path.into();
        self
    }

    /// Elements accepted ahead of the pipeline, at most (at least 1): the
    /// ingress buffer. A request with more elements than this is refused (`413`).
    pub fn capacity(mut self, elements: usize) -> Self {
        self.options.capacity = elements.max(1);
        self
    }

    /// The largest body accepted, in bytes; a larger one is refused (`413`)
    /// without being held.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.options.max_body_bytes = bytes;
        self
    }

    /// How long a request waits for room in a backpressuring pipeline before it
    /// is refused with `503` and `Retry-After`.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.options.wait = wait;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request (`401`
    /// without, or with another; counted in
    /// [`unauthorized`](HttpSourceStats::unauthorized) and logged at `warn`,
    /// the body not read, nothing admitted).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.options.token = Some(token.into());
        self
    }

    /// Serves HTTPS only, with `config`'s certificate and key, and client
    /// certificates if it asks for them (feature `server-tls`; see
    /// [`server_tls`](crate::server_tls)). The files are read when
    /// [`serve`](Self::serve) is called. A handshake that fails or does not
    /// complete within 10 s (the header timeout) closes the connection before
    /// any request is read: counted in
    /// [`tls_handshake_failures`](HttpSourceStats::tls_handshake_failures) and
    /// logged at `warn`, nothing admitted.
    #[cfg(feature = "server-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "server-tls")))]
    pub fn tls(mut self, config: crate::server_tls::TlsServerConfig) -> Self {
        self.options.tls = Some(config);
        self
    }

    /// Connections served at once; one more gets `503` and is closed.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.options.max_connections = connections.max(1);
        self
    }

    /// Binds `addr` (port 0 picks one: see [`HttpIngest::local_addr`]) and
    /// serves on a thread of its own; returns the server handle and the
    /// pipeline's source, a flow named `http`.
    ///
    /// # Errors
    ///
    /// [`HttpSourceError::Bind`] when the address cannot be bound;
    /// [`HttpSourceError::Invalid`] for an empty path, a zero body limit or an
    /// empty token; `HttpSourceError::Tls` (feature `server-tls`) naming a
    /// certificate or key file that cannot be used.
    pub fn serve(self, addr: SocketAddr) -> Result<(HttpIngest, Flow<T>), HttpSourceError> {
        if !self.options.path.starts_with('/') {
            return Err(HttpSourceError::Invalid(format!(
                "the path must start with '/', not {:?}",
                self.options.path
            )));
        }
        if self.options.max_body_bytes == 0 {
            return Err(HttpSourceError::Invalid(
                "max_body_bytes must be at least 1".into(),
            ));
        }
        if self.options.token.as_deref() == Some("") {
            return Err(HttpSourceError::Invalid(
                "the bearer token must not be empty".into(),
            ));
        }
        let (ingress, flow) = Pipeline::ingress::<T>(self.options.capacity);
        let server = server::start(addr, ingress, self.decode, self.options)?;
        Ok((server, flow.name("http")))
    }
}

/// Why an endpoint did not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpSourceError {
    /// The address could not be bound.
    #[error("cannot bind the HTTP source to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A setting that cannot work.
    #[error("invalid HTTP source setting: {0}")]
    Invalid(String),
    /// The TLS certificate or key cannot be used (feature `server-tls`).
    #[cfg(feature = "server-tls")]
    #[error("cannot serve the HTTP source over TLS: {source}")]
    Tls {
        /// What is wrong, naming the file.
        #[source]
        source: crate::server_tls::TlsError,
    },
}

/// What an endpoint has done so far ([`HttpIngest::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HttpSourceStats {
    /// Requests answered.
    pub requests: u64,
    /// Requests admitted (`202`).
    pub admitted: u64,
    /// Elements admitted.
    pub elements: u64,
    /// Requests refused because the pipeline had no room within the wait, or
    /// stopped (`503`), and connections over the limit.
    pub busy: u64,
    /// Requests refused for a missing or wrong token (`401`).
    pub unauthorized: u64,
    /// Requests refused as malformed (`400`, `404`, `405`, `413`, `415`).
    pub bad: u64,
    /// Connections closed because their TLS handshake failed or timed out (a
    /// plaintext client, a client not trusting the certificate).
    pub tls_handshake_failures: u64,
}

/// The counters behind [`HttpSourceStats`], also exported through the
/// `metrics` facade as `weir_http_source_*_total`, and the connections open now
/// as the gauge `weir_http_source_open_connections`, with the label `addr` (the
/// address the endpoint was asked to listen on).
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) requests: Tally,
    pub(crate) admitted: Tally,
    pub(crate) elements: Tally,
    pub(crate) busy: Tally,
    pub(crate) unauthorized: Tally,
    pub(crate) bad: Tally,
    pub(crate) tls_handshake_failures: Arc<Tally>,
    pub(crate) connections: crate::http_server::OpenCount,
}

impl Counters {
    pub(crate) fn new(addr: std::net::SocketAddr) -> Self {
        let l = [("addr", addr.to_string())];
        Counters {
            requests: Tally::new("weir_http_source_requests_total", &l),
            admitted: Tally::new("weir_http_source_admitted_total", &l),
            elements: Tally::new("weir_http_source_elements_total", &l),
            busy: Tally::new("weir_http_source_busy_total", &l),
            unauthorized: Tally::new("weir_http_source_unauthorized_total", &l),
            bad: Tally::new("weir_http_source_bad_total", &l),
            tls_handshake_failures: Arc::new(Tally::new(
                "weir_http_source_tls_handshake_failures_total",
                &l,
            )),
            connections: crate::http_server::OpenCount::exported(
                "weir_http_source_open_connections",
                &l,
            ),
        }
    }

    pub(crate) fn snapshot(&self) -> HttpSourceStats {
        let get = Tally::get;
        HttpSourceStats {
            requests: get(&self.requests),
            admitted: get(&self.admitted),
            elements: get(&self.elements),
            busy: get(&self.busy),
            unauthorized: get(&self.unauthorized),
            bad: get(&self.bad),
            tls_handshake_failures: get(&self.tls_handshake_failures),
        }
    }
}
