//! The HTTP side of both servers: the listener thread, the connection limit,
//! the opening handshake (checked by hand, answered by hyper) and the upgrade
//! to a WebSocket session.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::WsError;
use super::options::ServerOptions;
use super::stats::Connections;
use crate::http_server::{self, Counted, Opening, Stopper};

/// A WebSocket session over an upgraded HTTP connection.
pub(crate) type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What holds a connection's place under `max_connections` until the session
/// (or the refused handshake) is over.
pub(crate) type Held = Arc<Counted<Connections>>;

/// How long a shut-down server waits for its sessions to finish their closing
/// handshakes before the rest are dropped.
const DRAIN: Duration = Duration::from_secs(2);

/// The answer to one connection too many, written without parsing its request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain\r\nContent-Length: 27\r\nConnection: close\r\n\r\n\
too many WebSocket clients\r\n";

/// What a server does with its sessions: the source reads them into its
/// pipeline, the broadcast writes its hub to them.
pub(crate) trait Endpoint: Clone + Send + Sync + 'static {
    /// What a handshake prepares before it answers `101` (a hub subscription),
    /// so that the client misses nothing published once it is connected.
    type Session: Send + 'static;

    fn options(&self) -> &ServerOptions;

    fn connections(&self) -> &Arc<Connections>;

    fn open(&self) -> Self::Session;

    /// Serves one session until it ends; `stopped` changes when the server
    /// shuts down.
    fn run(
        self,
        session: Self::Session,
        ws: Ws,
        peer: SocketAddr,
        stopped: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// Binds `addr` and serves `endpoint` on a thread named `name`; returns the
/// bound address and the handle that stops the server.
pub(crate) fn start<E: Endpoint>(
    addr: SocketAddr,
    name: &str,
    endpoint: E,
) -> Result<(SocketAddr, Stopper), WsError> {
    let options = endpoint.options();
    let failures = Arc::clone(&endpoint.connections().tls_handshake_failures);
    let opening = Opening::plain("websocket", options.header_timeout, failures);
    #[cfg(feature = "server-tls")]
    let opening = opening
        .with_tls(options.tls.as_ref())
        .map_err(|source| WsError::Tls { source })?;
    let (stop, stopped) = watch::channel(false);
    let (local, thread) = http_server::spawn(addr, name, move |listener| {
        serve(listener, endpoint, opening, stopped)
    })
    .map_err(|source| WsError::Bind { addr, source })?;
    Ok((local, Stopper::new(stop, thread)))
}

async fn serve<E: Endpoint>(
    listener: TcpListener,
    endpoint: E,
    opening: Opening,
    stopped: watch::Receiver<bool>,
) {
    let connections = Arc::clone(endpoint.connections());
    let signal = stopped.clone();
    http_server::accept_until(
        listener,
        signal,
        "websocket",
        &connections.held,
        DRAIN,
        |socket| admit(&endpoint, &opening, socket, &stopped),
    )
    .await;
}

/// Serves a new connection's handshake (after its TLS handshake, on a TLS
/// listener), or refuses it when `max_connections` are held.
fn admit<E: Endpoint>(
    endpoint: &E,
    opening: &Opening,
    socket: TcpStream,
    stopped: &watch::Receiver<bool>,
) {
    let connections = endpoint.connections();
    let (held, guard) = Counted::enter(connections, |c| &c.held);
    if held >= endpoint.options().max_connections {
        let _ = connections.refused.add(1);
        http_server::refuse(opening, socket, BUSY, guard);
        return;
    }
    let Ok(peer) = socket.peer_addr() else {
        return; // gone already
    };
    let _ = socket.set_nodelay(true);
    let guard: Held = Arc::new(guard);
    let endpoint = endpoint.clone();
    let (opening, stopped) = (opening.clone(), stopped.clone());
    tokio::spawn(async move {
        let Some(conn) = opening.open(socket).await else {
            return; // counted and logged
        };
        // Keep-alive stays on: with it off, hyper would add `close` to the
        // `101`'s `Connection: Upgrade`. A connection waiting for its next
        // request is closed by the header timeout all the same.
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(endpoint.options().header_timeout);
        let service = service_fn(move |req| {
            let answer = respond(&endpoint, req, peer, &guard, &stopped);
            async move { Ok::<_, Infallible>(answer) }
        });
        let conn = http.serve_connection(TokioIo::new(conn), service);
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%peer, error = %e, "WebSocket handshake connection ended with an error");
        }
    });
}

/// The answer to a handshake: `101 Switching Protocols` with the session
/// started once hyper hands the connection over, or the refusal.
fn respond<E: Endpoint>(
    endpoint: &E,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    guard: &Held,
    stopped: &watch::Receiver<bool>,
) -> Response<Full<Bytes>> {
    let connections = endpoint.connections();
    let accept = match check(&req, endpoint.options(), Some(peer)) {
        Ok(accept) => accept,
        Err(refusal) => {
            let counter = if refusal.status == StatusCode::UNAUTHORIZED {
                &connections.unauthorized
            } else {
                &connections.bad_requests
            };
            let _ = counter.add(1);
            tracing::debug!(%peer, status = %refusal.status, reason = refusal.text, "WebSocket handshake refused");
            return refusal.into_response();
        }
    };
    let session = endpoint.open();
    let upgrade = hyper::upgrade::on(&mut req);
    let config = endpoint.options().ws_config();
    let endpoint = endpoint.clone();
    let guard = Arc::clone(guard);
    let stopped = stopped.clone();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let connections = Arc::clone(endpoint.connections());
        let _ = connections.opened.add(1);
        connections.open.up();
        endpoint.run(session, ws, peer, stopped).await;
        connections.open.down();
        drop(guard);
    });
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    res
}

/// A handshake refused: its status, the text of its body, and a header to add.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) text: &'static str,
    header: Option<(header::HeaderName, &'static str)>,
}

impl Refusal {
    fn new(status: StatusCode, text: &'static str) -> Self {
        Refusal {
            status,
            text,
            header: None,
        }
    }

    fn with(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(Bytes::from(format!("{}\n", self.text))));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some((name, value)) = self.header {
            headers.insert(name, HeaderValue::from_static(value));
        }
        res
    }
}

/// Checks an opening handshake (RFC 6455 section 4.2.1) and the token (a
/// refusal for the token is logged with `peer`); returns the
/// `Sec-WebSocket-Accept` value.
///
/// # Errors
///
/// The refusal: `404` another path, `405` another method, `401` no or a wrong
/// token, `426` not an upgrade to WebSocket version 13, `400` another HTTP
/// version or a missing or malformed key.
pub(crate) fn check<B>(
    req: &Request<B>,
    options: &ServerOptions,
    peer: Option<SocketAddr>,
) -> Result<String, Refusal> {
    if req.uri().path() != options.path {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "no WebSocket endpoint here",
        ));
    }
    if req.method() != Method::GET {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket handshake is a GET",
        )
        .with(header::ALLOW, "GET"));
    }
    // `access_token=`: browsers cannot set headers on a WebSocket (RFC 6750
    // section 2.3).
    let token = options.token.as_deref();
    if !http_server::admits(req, token, Some("access_token"), "websocket", peer) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer <token>, or ?access_token=<token>)",
        )
        .with(header::WWW_AUTHENTICATE, "Bearer"));
    }
    let headers = req.headers();
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket only: send `Connection: Upgrade` and `Upgrade: websocket`",
        )
        .with(header::UPGRADE, "websocket"));
    }
    if req.version() != Version::HTTP_11 {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "a WebSocket handshake needs HTTP/1.1",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Refusal::new(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is spoken",
        )
        .with(header::SEC_WEBSOCKET_VERSION, "13"));
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| valid_key(key.as_bytes()))
    else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key (16 bytes in base64)",
        ));
    };
    Ok(derive_accept_key(key.as_bytes()))
}

/// Whether a comma-separated header `name` holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// A `Sec-WebSocket-Key`: 16 bytes in base64, so 22 characters and `==`.
fn valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}
