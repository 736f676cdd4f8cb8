//! [`WsBroadcast`]: a WebSocket server that sends a [`BroadcastHub`]'s
//! elements to every connected client, and [`WsBroadcastServer`], its handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_operators::hub::{BroadcastHub, SubscribeError, Subscriber};
use weir_runtime::junction::LagPolicy;

use super::handshake::{self, Endpoint, Ws};
use super::options::ServerOptions;
use super::stats::{BroadcastCounters, Connections, WsBroadcastStats};
use super::{WsError, WsPayload, writer};
use crate::http_server::Stopper;

/// Turns an element into the message sent for it.
pub(crate) type Encode<T> = Arc<dyn Fn(&T) -> WsPayload + Send + Sync>;

/// Turns a number of dropped elements into the notice a client gets.
pub(crate) type Notice = Arc<dyn Fn(u64) -> WsPayload + Send + Sync>;

/// What a [`WsBroadcast`] does with a client that does not keep up: one whose
/// buffer (`client_buffer` elements) is full when the next element is
/// published.
///
/// # Examples
///
/// ```
/// use weir::hub::NoSubscriber;
/// use weir::prelude::*;
/// use weir::websocket::{SlowClient, WsBroadcast};
///
/// let (_runnable, hub) = Pipeline::from_iter(0..3_u64).broadcast_hub(NoSubscriber::Drop);
/// let endpoint = WsBroadcast::json(hub).client_buffer(64).slow_client(SlowClient::Disconnect);
/// # drop(endpoint);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowClient {
    /// The hub waits for the client: the slowest such client sets the pace of
    /// the pipeline (and of every other client). Nothing is dropped; a client
    /// that stops reading for good is closed by the write timeout.
    Block,
    /// The oldest buffered element is dropped to make room: the client keeps
    /// the newest, and is told how many it missed (the lag notice) before its
    /// next message. The default.
    #[default]
    DropOldest,
    /// The new element is dropped for this client: it keeps the oldest, and is
    /// told how many it missed before its next message.
    DropNewest,
    /// The client is closed with `1008` (policy violation) after it has
    /// received every element before the first one it missed; the reason says
    /// how many of those offered to it until then it did not get (`too slow: n
    /// messages dropped`).
    Disconnect,
}

impl SlowClient {
    fn lag_policy(self) -> LagPolicy {
        match self {
            SlowClient::Block => LagPolicy::Block,
            SlowClient::DropOldest => LagPolicy::DropOldest { buffer: 0 },
            SlowClient::DropNewest | SlowClient::Disconnect => LagPolicy::DropNewest { buffer: 0 },
        }
    }
}

/// A WebSocket server that sends every element of a [`BroadcastHub`] to every
/// connected client, as one text or binary message each; each client has its
/// own bounded buffer and [`SlowClient`] policy, as `weir::sse`
/// does for Server-Sent Events. Build it with [`new`](Self::new) or
/// [`json`](Self::json), start it with [`serve`](Self::serve); see the
/// [module docs](super).
///
/// Defaults: path `/ws`, 256 elements per client, [`SlowClient::DropOldest`]
/// with the lag notice `{"lagged":<n>}`, 1024 clients, client messages up to
/// 64 KiB (read and ignored), a ping after 15 s of silence, closed after 45 s
/// of silence, 10 s per write.
///
/// # Examples
///
/// ```
/// use weir::hub::NoSubscriber;
/// use weir::prelude::*;
/// use weir::websocket::{SlowClient, WsBroadcast};
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let (ingress, flow) = Pipeline::ingress::<u64>(16);
/// let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Drop);
/// let running = runnable.run(&rt)?;
/// let server = WsBroadcast::new(hub, |x: &u64| format!("tick {x}").into())
///     .client_buffer(128)
///     .slow_client(SlowClient::DropOldest)
///     .serve("127.0.0.1:0".parse()?)?;
/// // Browsers connect to ws://{server.local_addr()}/ws ...
/// futures::executor::block_on(ingress.send(1))?;
/// drop(ingress);
/// running.wait()?;
/// assert_eq!(server.shutdown().connections, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a WsBroadcast does nothing until serve is called"]
pub struct WsBroadcast<T> {
    hub: BroadcastHub<T>,
    encode: Encode<T>,
    notice: Option<Notice>,
    options: ServerOptions,
    buffer: usize,
    slow: SlowClient,
}

impl<T> std::fmt::Debug for WsBroadcast<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsBroadcast")
            .field("hub", &self.hub)
            .field("options", &self.options)
            .field("buffer", &self.buffer)
            .field("slow", &self.slow)
            .field("notice", &self.notice.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + 'static> WsBroadcast<T> {
    /// An endpoint that sends each element of `hub` as the message `encode`
    /// makes of it ([`WsPayload::Text`] or [`WsPayload::Binary`]).
    pub fn new(
        hub: BroadcastHub<T>,
        encode: impl Fn(&T) -> WsPayload + Send + Sync + 'static,
    ) -> Self {
        WsBroadcast {
            hub,
            encode: Arc::new(encode),
            notice: Some(Arc::new(|n| format!("{{\"lagged\":{n}}}").into())),
            options: ServerOptions::new("/ws", 64 * 1024),
            buffer: 256,
            slow: SlowClient::DropOldest,
        }
    }

    /// An endpoint that sends each element as a JSON text message.
    pub fn json(hub: BroadcastHub<T>) -> Self
    where
        T: serde::Serialize,
    {
        WsBroadcast::new(hub, |x: &T| {
            serde_json::to_string(x)
                .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode: {e}\"}}"))
                .into()
        })
    }

    /// The path clients connect to (default `/ws`); it must start with `/`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.options.path = path.into();
        self
    }

    /// Each client's buffer, in elements (default 256, at least 1).
    ///
    /// Choose it as the burst a client may fall behind by (a slow network, a
    /// busy browser tab) before its [`SlowClient`] policy applies; memory is
    /// at most `client_buffer` elements per client, plus one write buffer.
    pub fn client_buffer(mut self, elements: usize) -> Self {
        self.buffer = elements;
        self
    }

    /// What happens to a client whose buffer is full (default
    /// [`SlowClient::DropOldest`]).
    pub fn slow_client(mut self, policy: SlowClient) -> Self {
        self.slow = policy;
        self
    }

    /// The message a client gets before its next one when its policy dropped
    /// `n` elements for it (default the text `{"lagged":<n>}`).
    pub fn lag_notice(mut self, notice: impl Fn(u64) -> WsPayload + Send + Sync + 'static) -> Self {
        self.notice = Some(Arc::new(notice));
        self
    }

    /// Sends no lag notice: drops are only counted (in [`WsBroadcastStats`]
    /// and the hub's subscriber stats).
    pub fn no_lag_notice(mut self) -> Self {
        self.notice = None;
        self
    }

    /// Clients served at once (default 1024); one more gets `503` with
    /// `Retry-After` and is closed.
    pub fn max_clients(mut self, clients: usize) -> Self {
        self.options.max_connections = clients;
        self
    }

    /// The largest message a client may send, in bytes (default 64 KiB):
    /// clients' data messages are read and ignored; a longer one closes the
    /// client with `1009`.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.options.max_message_bytes = bytes;
        self
    }

    /// Requires the token at the handshake, as `Authorization: Bearer <token>`
    /// or the query parameter `access_token=<token>` (what a browser can
    /// send); without it the handshake is answered `401`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.options.token = Some(token.into());
        self
    }

    /// Serves `wss://` only, with `config`'s certificate and key, and client
    /// certificates if it asks for them (feature `server-tls`; see
    /// [`server_tls`](crate::server_tls)). The files are read when `serve`
    /// is called (`WsError::Tls` naming a file that cannot be used). A TLS
    /// handshake that fails or does not complete within the header timeout
    /// closes the connection before its WebSocket handshake is read: counted in
    /// `tls_handshake_failures` and logged at `warn`.
    #[cfg(feature = "server-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "server-tls")))]
    pub fn tls(mut self, config: crate::server_tls::TlsServerConfig) -> Self {
        self.options.tls = Some(config);
        self
    }

    /// How long a client may be silent before it is pinged (default 15 s;
    /// `None`: never). Browsers answer pings by themselves.
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.options.heartbeat = every;
        self
    }

    /// How long a client may be silent (no frame at all, pongs included)
    /// before it is closed with `1001` (default 45 s; `None`: never). It must
    /// be longer than the heartbeat. Writes do not count: a dead peer's socket
    /// takes writes for a long while.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.idle_timeout = timeout;
        self
    }

    /// How long a client may take to send its handshake (default 10 s).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.options.header_timeout = timeout;
        self
    }

    /// How long one write (a batch of messages, a ping) may take (default
    /// 10 s); a client that does not take it in time is dropped and counted
    /// `write_timeouts`. Under [`SlowClient::Block`] it bounds how long one
    /// stalled client can hold the pipeline back.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.options.write_timeout = timeout;
        self
    }

    /// Starts serving on `addr` (port 0 picks a free port: see
    /// [`WsBroadcastServer::local_addr`]) on a thread of its own.
    ///
    /// # Errors
    ///
    /// [`WsError::Invalid`] naming a setting that cannot work (a zero buffer,
    /// limit or timeout, a path without `/`, an idle timeout not above the
    /// heartbeat); [`WsError::Bind`] when the address cannot be bound.
    pub fn serve(self, addr: SocketAddr) -> Result<WsBroadcastServer, WsError> {
        self.options.validate()?;
        if self.buffer == 0 {
            return Err(WsError::Invalid {
                option: "client_buffer",
                reason: "must be at least 1",
            });
        }
        let counters = Arc::new(BroadcastCounters::new(&addr.to_string()));
        let endpoint = BroadcastEndpoint {
            shared: Arc::new(Shared {
                hub: self.hub,
                encode: self.encode,
                notice: self.notice,
                options: self.options,
                buffer: self.buffer,
                slow: self.slow,
                counters: Arc::clone(&counters),
            }),
        };
        let (local, server) = handshake::start(addr, "weir-ws-broadcast", endpoint)?;
        Ok(WsBroadcastServer {
            addr: local,
            counters,
            server,
        })
    }
}

/// What every client of a broadcast server shares.
pub(crate) struct Shared<T> {
    pub(crate) hub: BroadcastHub<T>,
    pub(crate) encode: Encode<T>,
    pub(crate) notice: Option<Notice>,
    pub(crate) options: ServerOptions,
    pub(crate) buffer: usize,
    pub(crate) slow: SlowClient,
    pub(crate) counters: Arc<BroadcastCounters>,
}

struct BroadcastEndpoint<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for BroadcastEndpoint<T> {
    fn clone(&self) -> Self {
        BroadcastEndpoint {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Clone + Send + 'static> Endpoint for BroadcastEndpoint<T> {
    type Session = Result<Subscriber<T>, SubscribeError>;

    fn options(&self) -> &ServerOptions {
        &self.shared.options
    }

    fn connections(&self) -> &Arc<Connections> {
        &self.shared.counters.conn
    }

    /// Subscribes before the `101` goes out: a client that completed its
    /// handshake receives everything published from then on.
    fn open(&self) -> Self::Session {
        let shared = &self.shared;
        shared
            .hub
            .subscribe(shared.buffer, shared.slow.lag_policy())
    }

    fn run(
        self,
        session: Self::Session,
        ws: Ws,
        peer: SocketAddr,
        stopped: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        writer::write(self.shared, session, ws, peer, stopped)
    }
}

/// A running [`WsBroadcast`] server. Dropping it shuts the server down as
/// [`shutdown`](Self::shutdown) does.
///
/// # Examples
///
/// ```
/// use weir::hub::NoSubscriber;
/// use weir::prelude::*;
/// use weir::websocket::WsBroadcast;
///
/// let (_runnable, hub) = Pipeline::from_iter(0..3_u64).broadcast_hub(NoSubscriber::Drop);
/// let server = WsBroadcast::json(hub).serve("127.0.0.1:0".parse()?)?;
/// println!("browsers connect to ws://{}/ws", server.local_addr());
/// assert_eq!(server.stats().open, 0);
/// let last = server.shutdown();
/// assert_eq!((last.sent, last.lagged), (0, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WsBroadcastServer {
    addr: SocketAddr,
    counters: Arc<BroadcastCounters>,
    server: Stopper,
}

impl WsBroadcastServer {
    /// The address it listens on (with the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counts now (see [`WsBroadcastStats`]).
    pub fn stats(&self) -> WsBroadcastStats {
        self.counters.snapshot()
    }

    /// Stops accepting, closes every client with `1001` (what its buffer
    /// still held is not sent), waits up to two seconds for them to go, and
    /// returns the final counts. The hub keeps running for its other
    /// subscribers.
    pub fn shutdown(mut self) -> WsBroadcastStats {
        self.server.stop_and_join();
        self.counters.snapshot()
    }
}
