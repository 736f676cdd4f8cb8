//! Server-Sent Events egress (feature `sse`): stream a pipeline's output to
//! browser clients over HTTP.
//!
//! A [`BroadcastHub`] is the pipeline's end; [`Sse`] serves it on an address.
//! Every HTTP client that opens the event path subscribes to the hub with **its
//! own bounded buffer and lag policy**, so a slow or stalled browser loses (and is
//! told about) what it missed instead of holding back the pipeline or the other
//! clients — unless you choose [`LagPolicy::Block`], which makes the hub wait for
//! it like any blocking branch.
//!
//! ```text
//!  pipeline ──▶ BroadcastHub ──┬─▶ subscriber (buffer, lag policy) ──▶ client 1
//!                              ├─▶ subscriber (buffer, lag policy) ──▶ client 2
//!                              └─▶ …                        (at most max_clients)
//! ```
//!
//! # The protocol
//!
//! `GET <path>` (default `/events`; a query string is ignored) answers
//! `200 text/event-stream` and then, for each element, one event:
//!
//! ```text
//! event: <name>          (only when `event_name` is set)
//! id: <index>             (among the elements offered to this client, from 0)
//! data: <first line of the encoded element>
//! data: <second line …>
//!
//! ```
//!
//! plus, on the same stream:
//!
//! - `event: lagged` with `data: <n>` where the client's lag policy dropped `n`
//!   elements: before the next element it receives (whose `id` is then `n` past
//!   the previous one), or before the `end` event. The client always knows
//!   where and how much it missed; the counts are exact. (A browser that
//!   reconnects sends `Last-Event-ID`; weir does not replay, the new stream
//!   starts at what is published next.)
//! - `: keep-alive` comments every `heartbeat` interval (default 15 s) so that
//!   proxies and browsers keep an idle stream open;
//! - `event: end` with `data: completed` when the pipeline's input ended and the
//!   client has received everything, `data: stopped` when the pipeline stopped
//!   before that, or `data: shutdown` when the server shuts down; then the
//!   response ends.
//!
//! The first bytes of the stream are `retry: <ms>` (the browser's reconnection
//! delay) and a `: connected` comment: once a client has read them it is
//! subscribed, and receives every element published from then on.
//!
//! # Bounds and bad input
//!
//! - Memory: each client holds at most its buffer (plus what its lag policy
//!   allows beyond it); the server holds no other per-element state.
//! - Connections: at most `max_clients` connections are served at once (default
//!   1024). One more gets `503 Service Unavailable` with `Retry-After` written
//!   straight onto the socket, and is closed; it is counted as rejected.
//! - A request whose headers do not arrive within `header_timeout` (default 10 s)
//!   is closed; a request for another path gets `404`, another method `405`.
//! - A client that goes away unsubscribes at once: the hub stops keeping elements
//!   for it.
//!
//! # TLS and a bearer token
//!
//! - [`bearer_token`](Sse::bearer_token): every request must carry the token,
//!   as `Authorization: Bearer <token>` or as the query parameter
//!   `access_token=<token>` (a browser's `EventSource` cannot set headers; mind
//!   that URLs end up in logs). Without it, or with another, the answer is
//!   `401` with `WWW-Authenticate: Bearer`, counted in
//!   [`unauthorized`](SseStats::unauthorized) and logged at `warn`; the client
//!   is never subscribed, so it receives nothing.
//! - [`tls`](Sse::tls) (feature `server-tls`): the endpoint speaks HTTPS only
//!   (see [`server_tls`](crate::server_tls)). A handshake that fails (a
//!   plaintext client, a client that does not trust the certificate) or does
//!   not complete within `header_timeout` closes the connection, counted in
//!   [`tls_handshake_failures`](SseStats::tls_handshake_failures) and logged at
//!   `warn`; a certificate or key that cannot be used fails
//!   [`serve`](Sse::serve) with [`SseError::Tls`] naming the file.
//!
//! # Examples
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::TcpStream;
//! use weir::hub::NoSubscriber;
//! use weir::prelude::*;
//! use weir::sse::Sse;
//!
//! let rt = Runtime::builder().arbiters(1).build()?;
//! let (ingress, flow) = Pipeline::ingress::<u64>(16);
//! let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
//! let running = runnable.run(&rt)?;
//! let server = Sse::new(hub, |x: &u64| format!("tick {x}")).serve("127.0.0.1:0".parse()?)?;
//!
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.write_all(b"GET /events HTTP/1.0\r\n\r\n")?;
//! let mut lines = BufReader::new(client).lines();
//! // Subscribed once the stream's first comment has arrived.
//! while lines.next().transpose()?.as_deref() != Some(": connected") {}
//! futures::executor::block_on(ingress.send(7))?;
//! drop(ingress);
//! assert!(lines.any(|l| l.unwrap() == "data: tick 7"));
//! running.wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod http;
mod stream;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weir_operators::hub::BroadcastHub;
use weir_runtime::junction::LagPolicy;
use weir_runtime::observe::Tally;

use crate::http_server::OpenCount;

pub use http::SseServer;

/// Why an SSE endpoint could not start, or an option was invalid.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// The address could not be bound.
    #[error("cannot serve server-sent events on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error: binding, setting up the listener, or starting the
        /// server's runtime or thread.
        #[source]
        source: std::io::Error,
    },
    /// An option is out of range.
    #[error("invalid SSE option `{option}`: {reason}")]
    Invalid {
        /// The option's builder method.
        option: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// The TLS certificate or key cannot be used (feature `server-tls`).
    #[cfg(feature = "server-tls")]
    #[error("cannot serve server-sent events over TLS: {source}")]
    Tls {
        /// What is wrong, naming the file.
        #[source]
        source: crate::server_tls::TlsError,
    },
}

/// Turns an element into the `data` of its event. Newlines in the result are
/// sent as several `data:` lines, which a browser joins back with `\n`.
type Encode<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// The settings of an endpoint; see the builder methods of [`Sse`].
#[derive(Clone)]
struct Options {
    path: String,
    buffer: usize,
    policy: LagPolicy,
    max_clients: usize,
    heartbeat: Option<Duration>,
    header_timeout: Duration,
    retry: Duration,
    event: Option<String>,
    token: Option<String>,
    #[cfg(feature = "server-tls")]
    tls: Option<crate::server_tls::TlsServerConfig>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Options");
        d.field("path", &self.path)
            .field("buffer", &self.buffer)
            .field("policy", &self.policy)
            .field("max_clients", &self.max_clients)
            .field("heartbeat", &self.heartbeat)
            .field("header_timeout", &self.header_timeout)
            .field("retry", &self.retry)
            .field("event", &self.event)
            // Never the token itself.
            .field("token", &self.token.as_ref().map(|_| "<set>"));
        #[cfg(feature = "server-tls")]
        d.field("tls", &self.tls);
        d.finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            path: "/events".to_owned(),
            buffer: 256,
            policy: LagPolicy::DropOldest { buffer: 0 },
            max_clients: 1024,
            heartbeat: Some(Duration::from_secs(15)),
            header_timeout: Duration::from_secs(10),
            retry: Duration::from_secs(3),
            event: None,
            token: None,
            #[cfg(feature = "server-tls")]
            tls: None,
        }
    }
}

/// A Server-Sent Events endpoint for a [`BroadcastHub`], configured with builder
/// methods and started with [`serve`](Self::serve). See the [module
/// docs](self) for the protocol and the bounds.
#[must_use = "an Sse does nothing until serve is called"]
pub struct Sse<T> {
    hub: BroadcastHub<T>,
    encode: Encode<T>,
    options: Options,
}

impl<T> std::fmt::Debug for Sse<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse")
            .field("hub", &self.hub)
            .field("options", &self.options)
            .finish()
    }
}

impl<T: Clone + Send + 'static> Sse<T> {
    /// An endpoint that sends each element of `hub` as the text `encode` makes
    /// of it.
    pub fn new(
        hub: BroadcastHub<T>,
        encode: impl Fn(&T) -> String + Send + Sync + 'static,
    ) -> Self {
        Sse {
            hub,
            encode: Arc::new(encode),
            options: Options::default(),
        }
    }

    /// An endpoint that sends each element as JSON.
    pub fn json(hub: BroadcastHub<T>) -> Self
    where
        T: serde::Serialize,
    {
        Sse::new(hub, |x: &T| {
            serde_json::to_string(x)
                .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode: {e}\"}}"))
        })
    }

    /// The path clients open (default `/events`); it must start with `/`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.options.path = path.into();
        self
    }

    /// Each client's buffer, in elements (default 256).
    pub fn client_buffer(mut self, elements: usize) -> Self {
        self.options.buffer = elements;
        self
    }

    /// What happens when a client's buffer is full (default
    /// `LagPolicy::DropOldest { buffer: 0 }`: the client keeps the newest
    /// elements and is told how many it missed). `LagPolicy::Block` makes the
    /// whole hub wait for the slowest such client.
    pub fn lag_policy(mut self, policy: LagPolicy) -> Self {
        self.options.policy = policy;
        self
    }

    /// Connections served at once (default 1024); more are answered `503`.
    pub fn max_clients(mut self, clients: usize) -> Self {
        self.options.max_clients = clients;
        self
    }

    /// How often an idle stream gets a `: keep-alive` comment (default 15 s;
    /// `None`: never).
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.options.heartbeat = every;
        self
    }

    /// Requires `token` on every request, as `Authorization: Bearer <token>`
    /// or the query parameter `access_token=<token>` (what a browser's
    /// `EventSource` can send); without it, or with another, the answer is
    /// `401` and nothing is streamed. See the [module docs](self#tls-and-a-bearer-token).
    ///
    /// # Examples
    ///
    /// ```
    /// # use weir::hub::NoSubscriber;
    /// # use weir::prelude::*;
    /// use std::io::{Read, Write};
    /// use weir::sse::Sse;
    /// # let rt = Runtime::builder().arbiters(1).build()?;
    /// # let (_ingress, flow) = Pipeline::ingress::<u64>(16);
    /// # let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    /// # let _running = runnable.run(&rt)?;
    /// let server = Sse::json(hub).bearer_token("s3cret").serve("127.0.0.1:0".parse()?)?;
    /// let mut client = std::net::TcpStream::connect(server.local_addr())?;
    /// client.write_all(b"GET /events HTTP/1.0\r\nAuthorization: Bearer wrong\r\n\r\n")?;
    /// let mut answer = String::new();
    /// client.read_to_string(&mut answer)?;
    /// assert!(answer.contains(" 401 Unauthorized"));
    /// assert_eq!(server.stats().unauthorized, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.options.token = Some(token.into());
        self
    }

    /// Serves HTTPS only, with `config`'s certificate and key (feature
    /// `server-tls`; see [`server_tls`](crate::server_tls) for an example).
    /// The files are read when [`serve`](Self::serve) is called; each
    /// connection's handshake must complete within the
    /// [`header_timeout`](Self::header_timeout).
    #[cfg(feature = "server-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "server-tls")))]
    pub fn tls(mut self, config: crate::server_tls::TlsServerConfig) -> Self {
        self.options.tls = Some(config);
        self
    }

    /// How long a client may take to send its request headers (default 10 s),
    /// and, with [`tls`](Self::tls), to complete its TLS handshake.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.options.header_timeout = timeout;
        self
    }

    /// The reconnection delay told to browsers in the stream's `retry:` field
    /// (default 3 s).
    pub fn retry(mut self, delay: Duration) -> Self {
        self.options.retry = delay;
        self
    }

    /// The `event:` name of element events (default none: browsers deliver
    /// them to `onmessage`). Must be one line and not `lagged` or `end`.
    pub fn event_name(mut self, name: impl Into<String>) -> Self {
        self.options.event = Some(name.into());
        self
    }

    /// Starts serving on `addr` (port 0 picks a free port: see
    /// [`SseServer::local_addr`]) on a thread of its own, and returns the
    /// server's handle. Dropping the handle shuts the server down.
    ///
    /// # Errors
    ///
    /// [`SseError::Invalid`] for an option out of range (a zero buffer or
    /// `max_clients`, a path without a leading `/`, a zero heartbeat, a bad
    /// event name, an empty token); `SseError::Tls` (feature `server-tls`)
    /// naming a certificate or key file that cannot be used;
    /// [`SseError::Bind`] when the address cannot be bound.
    pub fn serve(self, addr: SocketAddr) -> Result<SseServer, SseError> {
        self.validate()?;
        http::start(addr, self.hub, self.encode, self.options)
    }

    fn validate(&self) -> Result<(), SseError> {
        let o = &self.options;
        let invalid = |option, reason| Err(SseError::Invalid { option, reason });
        if !o.path.starts_with('/') {
            return invalid("path", "must start with `/`");
        }
        if o.buffer == 0 {
            return invalid("client_buffer", "must be at least 1");
        }
        if o.max_clients == 0 {
            return invalid("max_clients", "must be at least 1");
        }
        if o.heartbeat == Some(Duration::ZERO) {
            return invalid("heartbeat", "must be longer than zero (or None)");
        }
        if o.token.as_deref() == Some("") {
            return invalid("bearer_token", "must not be empty");
        }
        if o.header_timeout.is_zero() {
            return invalid("header_timeout", "must be longer than zero");
        }
        if let Some(name) = &o.event
            && (name.is_empty() || name.contains(['\n', '\r']) || name == "lagged" || name == "end")
        {
            return invalid(
                "event_name",
                "must be one non-empty line, not `lagged` or `end`",
            );
        }
        Ok(())
    }
}

/// An endpoint's counts, from [`SseServer::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SseStats {
    /// Connections open now (streaming clients and requests being answered).
    pub connections: usize,
    /// Clients streaming now.
    pub clients: usize,
    /// Clients that have opened the event stream, in all.
    pub subscribed: u64,
    /// Connections refused with `503` because `max_clients` were open.
    pub rejected: u64,
    /// Element events sent, over all clients.
    pub events: u64,
    /// Elements dropped by the clients' lag policies and reported to them in
    /// `lagged` events (drops a client had not been told of when it left are
    /// not counted here; they are in the hub's subscriber stats).
    pub lagged: u64,
    /// Requests answered `404` or `405`.
    pub bad_requests: u64,
    /// Requests refused `401` for a missing or wrong bearer token.
    pub unauthorized: u64,
    /// Connections closed because their TLS handshake failed or timed out (a
    /// plaintext client, a client not trusting the certificate).
    pub tls_handshake_failures: u64,
}

/// The counters behind [`SseStats`], shared by the server's tasks. The counts
/// are also exported through the `metrics` facade as `weir_sse_*_total`, and the
/// open connections and streaming clients as the gauges
/// `weir_sse_open_connections` and `weir_sse_clients`, with the label `addr`
/// (the address the server was asked to listen on).
#[derive(Debug)]
struct Counters {
    connections: OpenCount,
    clients: OpenCount,
    subscribed: Tally,
    rejected: Tally,
    events: Tally,
    lagged: Tally,
    bad_requests: Tally,
    unauthorized: Tally,
    tls_handshake_failures: Arc<Tally>,
}

impl Counters {
    fn new(addr: SocketAddr) -> Self {
        let l = [("addr", addr.to_string())];
        Counters {
            connections: OpenCount::exported("weir_sse_open_connections", &l),
            clients: OpenCount::exported("weir_sse_clients", &l),
            subscribed: Tally::new("weir_sse_subscribed_total", &l),
            rejected: Tally::new("weir_sse_rejected_total", &l),
            events: Tally::new("weir_sse_events_total", &l),
            lagged: Tally::new("weir_sse_lagged_total", &l),
            bad_requests: Tally::new("weir_sse_bad_requests_total", &l),
            unauthorized: Tally::new("weir_sse_unauthorized_total", &l),
            tls_handshake_failures: Arc::new(Tally::new(
                "weir_sse_tls_handshake_failures_total",
                &l,
            )),
        }
    }

    fn snapshot(&self) -> SseStats {
        SseStats {
            connections: self.connections.get(),
            clients: self.clients.get(),
            subscribed: self.subscribed.get(),
            rejected: self.rejected.get(),
            events: self.events.get(),
            lagged: self.lagged.get(),
            bad_requests: self.bad_requests.get(),
            unauthorized: self.unauthorized.get(),
            tls_handshake_failures: self.tls_handshake_failures.get(),
        }
    }
}
