//! The HTTP side of [`HttpSource`](super::HttpSource): the listener thread, the
//! connection limit, and one request's admission.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_operators::source::Ingress;

use super::{Counters, Decode, HttpSourceError, HttpSourceStats, Options};
use crate::http_server::{self, Counted, Opening, Stopper};

/// The answer to one connection too many, written without parsing its request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\n\
too many connections\r\n";

/// A running HTTP ingest endpoint, from
/// [`HttpSource::serve`](super::HttpSource::serve). Dropping it shuts the server
/// down as [`shutdown`](Self::shutdown) does.
#[derive(Debug)]
pub struct HttpIngest {
    addr: SocketAddr,
    counters: Arc<Counters>,
    server: Stopper,
}

impl HttpIngest {
    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counts now.
    pub fn stats(&self) -> HttpSourceStats {
        self.counters.snapshot()
    }

    /// Stops accepting, lets the requests being served finish (what they
    /// admitted stays admitted), and ends the pipeline's source: the pipeline
    /// then completes once it has processed what was admitted. Returns the final
    /// counts.
    pub fn shutdown(mut self) -> HttpSourceStats {
        self.server.stop_and_join();
        self.counters.snapshot()
    }
}

/// Binds `addr` and starts the server's thread.
pub(super) fn start<T: Send + 'static>(
    addr: SocketAddr,
    ingress: Ingress<T>,
    decode: Decode<T>,
    options: Options,
) -> Result<HttpIngest, HttpSourceError> {
    let counters = Arc::new(Counters::new(addr));
    let opening = Opening::plain(
        "http source",
        options.header_timeout,
        Arc::clone(&counters.tls_handshake_failures),
    );
    #[cfg(feature = "server-tls")]
    let opening = opening
        .with_tls(options.tls.as_ref())
        .map_err(|source| HttpSourceError::Tls { source })?;
    let (stop, stopped) = watch::channel(false);
    let server = Server {
        opening,
        ingress,
        decode,
        options: Arc::new(options),
        counters: Arc::clone(&counters),
    };
    let (local, thread) = crate::http_server::spawn(addr, "weir-http", move |listener| {
        server.run(listener, stopped)
    })
    .map_err(|source| HttpSourceError::Bind { addr, source })?;
    Ok(HttpIngest {
        addr: local,
        counters,
        server: Stopper::new(stop, thread),
    })
}

/// What the accept loop and every connection share.
struct Server<T> {
    opening: Opening,
    ingress: Ingress<T>,
    decode: Decode<T>,
    options: Arc<Options>,
    counters: Arc<Counters>,
}

impl<T> Clone for Server<T> {
    fn clone(&self) -> Self {
        Server {
            opening: self.opening.clone(),
            ingress: self.ingress.clone(),
            decode: Arc::clone(&self.decode),
            options: Arc::clone(&self.options),
            counters: Arc::clone(&self.counters),
        }
    }
}

type Body = Full<Bytes>;

/// How a request's body holds its elements.
enum Framing {
    /// One per non-empty line.
    Lines,
    /// The whole body is one.
    One,
}

impl<T: Send + 'static> Server<T> {
    async fn run(self, listener: TcpListener, stopped: watch::Receiver<bool>) {
        // The requests being served finish (each within its wait); then the last
        // clone of the ingress goes and the pipeline's source ends.
        let drain = self.options.wait + Duration::from_secs(1);
        let open = &self.counters.connections;
        http_server::accept_until(listener, stopped, "http source", open, drain, |socket| {
            self.admit(socket);
        })
        .await;
    }

    /// Serves a new connection, or refuses it when `max_connections` are open.
    fn admit(&self, socket: TcpStream) {
        let (open, guard) = Counted::enter(&self.counters, |c| &c.connections);
        if open >= self.options.max_connections {
            let _ = self.counters.busy.add(1);
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
            http.timer(TokioTimer::new())
                .header_read_timeout(server.options.header_timeout);
            let service = service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.respond(req, peer).await) }
            });
            if let Err(e) = http.serve_connection(TokioIo::new(conn), service).await {
                tracing::debug!(error = %e, "HTTP source connection ended with an error");
            }
            drop(guard);
        });
    }

    /// The answer to one request.
    async fn respond(&self, req: Request<Incoming>, peer: Option<SocketAddr>) -> Response<Body> {
        let _ = self.counters.requests.add(1);
        let opts = &self.options;
        if req.uri().path() != opts.path {
            return self.bad(StatusCode::NOT_FOUND, "no ingest endpoint here");
        }
        if req.method() != Method::POST {
            let mut res = self.bad(StatusCode::METHOD_NOT_ALLOWED, "only POST");
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return res;
        }
        if !http_server::admits(&req, opts.token.as_deref(), None, "http source", peer) {
            let _ = self.counters.unauthorized.add(1);
            let mut res = answer(StatusCode::UNAUTHORIZED, "a bearer token is required");
            res.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return res;
        }
        let framing = match content_type(req.headers().get(CONTENT_TYPE)).as_deref() {
            Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => {
                Framing::Lines
            }
            Some("application/json") => Framing::One,
            other => {
                let said = other.unwrap_or("none");
                return self.bad(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!(
                        "content type {said} is not accepted: send application/x-ndjson \
                         (one element per line) or application/json (one element)"
                    ),
                );
            }
        };
        let body = match Limited::new(req.into_body(), opts.max_body_bytes)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return self.bad(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is over max_body_bytes ({})", opts.max_body_bytes),
                );
            }
            Err(e) => {
                return self.bad(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the body: {e}"),
                );
            }
        };
        let elements = match self.decode_all(&body, &framing) {
            Ok(elements) => elements,
            Err(why) => return self.bad(StatusCode::BAD_REQUEST, &why),
        };
        if elements.is_empty() {
            return self.bad(StatusCode::BAD_REQUEST, "the body holds no element");
        }
        let n = elements.len();
        if n > opts.capacity {
            return self.bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the body holds {n} elements, more than the ingress capacity ({}): \
                     send them in smaller requests",
                    opts.capacity
                ),
            );
        }
        match tokio::time::timeout(opts.wait, self.ingress.send_all(elements)).await {
            Ok(Ok(())) => {
                let _ = self.counters.admitted.add(1);
                let _ = self.counters.elements.add(n as u64);
                let mut res = answer(StatusCode::ACCEPTED, &format!("{{\"accepted\":{n}}}"));
                res.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                res
            }
            Ok(Err(_)) => {
                let _ = self.counters.busy.add(1);
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the pipeline no longer accepts elements",
                )
            }
            Err(_) => {
                let _ = self.counters.busy.add(1);
                let mut res = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the pipeline has no room: try again later",
                );
                let secs = opts.wait.as_secs().max(1).to_string();
                if let Ok(v) = HeaderValue::from_str(&secs) {
                    res.headers_mut().insert(RETRY_AFTER, v);
                }
                res
            }
        }
    }

    /// Every element of the body, or the first that does not decode.
    fn decode_all(&self, body: &[u8], framing: &Framing) -> Result<Vec<T>, String> {
        match framing {
            Framing::One => (self.decode)(body).map(|x| vec![x]),
            Framing::Lines => body
                .split(|&b| b == b'\n')
                .enumerate()
                .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
                .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
                .map(|(n, line)| (self.decode)(line).map_err(|e| format!("line {n}: {e}")))
                .collect(),
        }
    }

    fn bad(&self, status: StatusCode, text: &str) -> Response<Body> {
        let _ = self.counters.bad.add(1);
        answer(status, text)
    }
}

fn answer(status: StatusCode, text: &str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *res.status_mut() = status;
    res
}

/// The media type of a `Content-Type` header, lower-cased, without parameters.
fn content_type(value: Option<&HeaderValue>) -> Option<String> {
    let text = value?.to_str().ok()?;
    let media = text.split(';').next()?.trim().to_ascii_lowercase();
    (!media.is_empty()).then_some(media)
}
