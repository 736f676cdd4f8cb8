//! The HTTP side: the listener thread, the connection limit, request routing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_operators::hub::BroadcastHub;

use super::{Counters, Encode, Options, SseError, SseStats, stream};
use crate::http_server::{self, Body, Counted, Opening, Stopper};

/// How long a shut-down server waits for its connections to send their `end`
/// events before closing the rest.
const DRAIN: Duration = Duration::from_secs(1);

/// The answer to one connection too many, written without parsing its request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\n\
too many SSE clients.\r\n";

/// A running SSE endpoint, from [`Sse::serve`](super::Sse::serve). Dropping it
/// shuts the server down as [`shutdown`](Self::shutdown) does.
#[derive(Debug)]
pub struct SseServer {
    addr: SocketAddr,
    counters: Arc<Counters>,
    server: Stopper,
}

impl SseServer {
    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counts now.
    pub fn stats(&self) -> SseStats {
        self.counters.snapshot()
    }

    /// Stops accepting, sends every streaming client an `end` event with
    /// `data: shutdown`, waits up to a second for them to go, closes what is
    /// left, and returns the final counts. The hub keeps running for its other
    /// subscribers.
    pub fn shutdown(mut self) -> SseStats {
        self.server.stop_and_join();
        self.counters.snapshot()
    }
}

/// Binds `addr` and starts the server's thread.
pub(super) fn start<T: Clone + Send + 'static>(
    addr: SocketAddr,
    hub: BroadcastHub<T>,
    encode: Encode<T>,
    options: Options,
) -> Result<SseServer, SseError> {
    let counters = Arc::new(Counters::new(addr));
    let opening = Opening::plain(
        "sse",
        options.header_timeout,
        Arc::clone(&counters.tls_handshake_failures),
    );
    #[cfg(feature = "server-tls")]
    let opening = opening
        .with_tls(options.tls.as_ref())
        .map_err(|source| SseError::Tls { source })?;
    let (stop, stopped) = watch::channel(false);
    let server = Server {
        hub,
        encode,
        options: Arc::new(options),
        counters: Arc::clone(&counters),
        opening,
        stopped,
    };
    let (local, thread) =
        crate::http_server::spawn(addr, "weir-sse", move |listener| server.run(listener))
            .map_err(|source| SseError::Bind { addr, source })?;
    Ok(SseServer {
        addr: local,
        counters,
        server: Stopper::new(stop, thread),
    })
}

/// What the accept loop and every connection share.
struct Server<T> {
    hub: BroadcastHub<T>,
    encode: Encode<T>,
    options: Arc<Options>,
    counters: Arc<Counters>,
    opening: Opening,
    stopped: watch::Receiver<bool>,
}

impl<T> Clone for Server<T> {
    fn clone(&self) -> Self {
        Server {
            hub: self.hub.clone(),
            encode: Arc::clone(&self.encode),
            options: Arc::clone(&self.options),
            counters: Arc::clone(&self.counters),
            opening: self.opening.clone(),
            stopped: self.stopped.clone(),
        }
    }
}

impl<T: Clone + Send + 'static> Server<T> {
    async fn run(self, listener: TcpListener) {
        // Streams see the same signal and send their `end` events; dropping the
        // runtime closes whatever is still open after the drain.
        let open = &self.counters.connections;
        let stopped = self.stopped.clone();
        http_server::accept_until(listener, stopped, "sse", open, DRAIN, |socket| {
            self.admit(socket);
        })
        .await;
    }

    /// Serves a new connection (after its TLS handshake, on a TLS listener),
    /// or refuses it when `max_clients` are open.
    fn admit(&self, socket: TcpStream) {
        let (open, guard) = Counted::enter(&self.counters, |c| &c.connections);
        if open >= self.options.max_clients {
            let _ = self.counters.rejected.add(1);
            http_server::refuse(&self.opening, socket, BUSY, guard);
            return;
        }
        let server = self.clone();
        tokio::spawn(async move {
            let peer = socket.peer_addr().ok();
            let Some(conn) = server.opening.open(socket).await else {
                return; // counted and logged
            };
            let mut http = hyper::server::conn::http1::Builder::new();
            http.keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(server.options.header_timeout);
            let service = service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.respond(&req, peer)) }
            });
            if let Err(e) = http.serve_connection(TokioIo::new(conn), service).await {
                tracing::debug!(error = %e, "SSE connection ended with an error");
            }
            drop(guard);
        });
    }

    /// The answer to one request: the event stream, or an error status (`401`
    /// first, so that a client without the token learns nothing else).
    fn respond(&self, req: &Request<Incoming>, peer: Option<SocketAddr>) -> Response<Body> {
        let token = self.options.token.as_deref();
        if !http_server::admits(req, token, Some("access_token"), "sse", peer) {
            let _ = self.counters.unauthorized.add(1);
            let mut res = self.status(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            res.headers_mut().insert(
                WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return res;
        }
        if req.uri().path() != self.options.path {
            return self.refuse(StatusCode::NOT_FOUND, "no event stream here\n");
        }
        if req.method() != Method::GET {
            let mut res = self.refuse(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
            res.headers_mut()
                .insert(ALLOW, hyper::header::HeaderValue::from_static("GET"));
            return res;
        }
        let sub = match self.hub.subscribe(self.options.buffer, self.options.policy) {
            Ok(sub) => sub,
            // Validated before the server started.
            Err(e) => return self.refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let events = stream::events(
            sub,
            Arc::clone(&self.encode),
            self.options.event.clone(),
            self.options.retry,
            self.options.heartbeat,
            self.stopped.clone(),
            Arc::clone(&self.counters),
        );
        let mut res = Response::new(StreamBody::new(events).boxed_unsync());
        let headers = res.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-cache"),
        );
        // Tells reverse proxies (nginx) not to buffer the stream.
        headers.insert(
            "x-accel-buffering",
            hyper::header::HeaderValue::from_static("no"),
        );
        res
    }

    /// An error status, counted as a bad request.
    fn refuse(&self, status: StatusCode, text: &str) -> Response<Body> {
        let _ = self.counters.bad_requests.add(1);
        self.status(status, text)
    }

    fn status(&self, status: StatusCode, text: &str) -> Response<Body> {
        let body = if text.is_empty() {
            Empty::new().boxed_unsync()
        } else {
            Full::new(Bytes::from(text.to_owned())).boxed_unsync()
        };
        let mut res = Response::new(body);
        *res.status_mut() = status;
        res
    }
}
