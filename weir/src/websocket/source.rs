//! [`WsSource`]: a WebSocket server whose clients' messages are a pipeline's
//! source, and [`WsIngest`], its running handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::watch;
use weir_operators::Pipeline;
use weir_operators::source::Ingress;
use weir_runtime::Flow;
use weir_supervisor::dead_letter::DeadLetterSink;

use super::handshake::{self, Endpoint, Ws};
use super::options::ServerOptions;
use super::stats::{Connections, SourceCounters, WsSourceStats};
use super::{BadMessage, WsError, WsMessage, reader};
use crate::http_server::Stopper;

/// Makes every message an element.
type Whole<T> = Arc<dyn Fn(WsMessage) -> T + Send + Sync>;

/// Decodes a message, or says what is wrong with it.
type Fallible<T> = Arc<dyn Fn(&WsMessage) -> Result<T, String> + Send + Sync>;

/// Turns a message into an element, or says why it cannot.
pub(crate) enum Decode<T> {
    /// Every message is an element ([`WsSource::messages`]).
    Whole(Whole<T>),
    /// The message is decoded; a failure keeps it for the dead letter.
    Fallible(Fallible<T>),
}

impl<T> Clone for Decode<T> {
    fn clone(&self) -> Self {
        match self {
            Decode::Whole(f) => Decode::Whole(Arc::clone(f)),
            Decode::Fallible(f) => Decode::Fallible(Arc::clone(f)),
        }
    }
}

/// What a [`WsSource`] does with a connection whose message did not decode
/// (the message itself is counted `undecodable`, and dead-lettered when a
/// dead-letter sink is set, in either case).
///
/// # Examples
///
/// ```
/// use weir::websocket::{OnBadMessage, WsSource};
///
/// let strict = WsSource::<u64>::json().on_bad_message(OnBadMessage::Close);
/// # drop(strict);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnBadMessage {
    /// The connection goes on with its next message. The default.
    #[default]
    Skip,
    /// The connection is closed with `1007` (invalid payload data), the reason
    /// naming what did not decode.
    Close,
}

/// A WebSocket server as a pipeline's source: every text or binary message a
/// client sends becomes an element. Build it with [`messages`](Self::messages),
/// [`json`](Self::json) or [`new`](Self::new), start it with
/// [`serve`](Self::serve). See the [module docs](super) for the protocol, the
/// limits and what happens to bad input.
///
/// Defaults: path `/ws`, 1024 elements buffered ahead of the pipeline, 1024
/// connections, messages up to 1 MiB, a ping after 15 s of silence, closed
/// after 45 s of silence, no token, bad messages skipped.
///
/// # Examples
///
/// ```
/// use weir::prelude::*;
/// use weir::websocket::WsSource;
///
/// #[derive(Debug, Clone, serde::Deserialize)]
/// struct Click { x: u32, y: u32 }
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let (server, clicks) = WsSource::<Click>::json()
///     .path("/clicks")
///     .max_message_bytes(4096)
///     .bearer_token("s3cret")
///     .serve("127.0.0.1:0".parse()?)?;
/// let running = clicks.map(|c| c.x + c.y).collect().run(&rt)?;
/// // Clients connect to ws://{server.local_addr()}/clicks ...
/// server.shutdown(); // the flow ends
/// assert!(running.wait()?.output.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct WsSource<T> {
    decode: Decode<T>,
    options: ServerOptions,
    capacity: usize,
    on_bad: OnBadMessage,
    dead_letters: Option<Arc<dyn DeadLetterSink<BadMessage>>>,
}

impl<T> std::fmt::Debug for WsSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSource")
            .field("options", &self.options)
            .field("capacity", &self.capacity)
            .field("on_bad", &self.on_bad)
            .field("dead_letters", &self.dead_letters.is_some())
            .finish_non_exhaustive()
    }
}

impl WsSource<WsMessage> {
    /// Every data message as a [`WsMessage`]: its peer and its payload, text or
    /// binary.
    pub fn messages() -> Self {
        WsSource::with(Decode::Whole(Arc::new(|message| message)))
    }
}

impl<T: DeserializeOwned + Send + 'static> WsSource<T> {
    /// Every message (text or binary) decoded as one JSON value (`serde_json`);
    /// one that does not decode is a bad message, counted and dead-lettered.
    pub fn json() -> Self {
        WsSource::new(|message: &WsMessage| {
            serde_json::from_slice(message.payload.as_bytes()).map_err(|e| e.to_string())
        })
    }
}

impl<T: Send + 'static> WsSource<T> {
    /// Every message decoded by `decode`; an `Err` (saying what is wrong) makes
    /// it a bad message, counted and dead-lettered with its payload.
    pub fn new(decode: impl Fn(&WsMessage) -> Result<T, String> + Send + Sync + 'static) -> Self {
        WsSource::with(Decode::Fallible(Arc::new(decode)))
    }

    fn with(decode: Decode<T>) -> Self {
        WsSource {
            decode,
            options: ServerOptions::new("/ws", 1 << 20),
            capacity: 1024,
            on_bad: OnBadMessage::Skip,
            dead_letters: None,
        }
    }

    /// The path clients connect to (default `/ws`); it must start with `/`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.options.path = path.into();
        self
    }

    /// Elements accepted ahead of the pipeline, at most (default 1024, at least
    /// 1): the ingress buffer all connections share. Each connection holds at
    /// most one more message, read and waiting for room.
    ///
    /// Choose it as the burst the pipeline may fall behind by before clients
    /// are slowed; memory is `capacity` elements plus, per connection, one
    /// message and one read buffer.
    pub fn capacity(mut self, elements: usize) -> Self {
        self.capacity = elements.max(1);
        self
    }

    /// The largest message accepted, in bytes (default 1 MiB). A longer
    /// message (or a frame declaring more) closes its connection with `1009`
    /// before its payload is held, and is counted `too_large`.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.options.max_message_bytes = bytes;
        self
    }

    /// Connections served at once (default 1024); one more gets `503` with
    /// `Retry-After` and is closed before its handshake is read.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.options.max_connections = connections;
        self
    }

    /// Requires the token at the handshake, as `Authorization: Bearer <token>`
    /// or the query parameter `access_token=<token>` (browsers cannot set
    /// headers on a WebSocket; mind that URLs end up in logs). Without it the
    /// handshake is answered `401`.
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

    /// How long a peer may be silent before it is pinged (default 15 s;
    /// `None`: never pinged). A peer's frames of any kind count, its pongs
    /// included.
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.options.heartbeat = every;
        self
    }

    /// How long a peer may be silent before it is closed with `1001` and
    /// counted `idle_timeouts` (default 45 s; `None`: never). It must be longer
    /// than the heartbeat; three heartbeats let a live peer miss two pongs.
    /// Time a connection spends waiting for room in the pipeline does not
    /// count: the peer is not read then.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.idle_timeout = timeout;
        self
    }

    /// How long a client may take to send its handshake (default 10 s).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.options.header_timeout = timeout;
        self
    }

    /// How long one write (a pong, a ping, a close frame) may take before the
    /// connection is dropped (default 10 s).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.options.write_timeout = timeout;
        self
    }

    /// What happens to a connection whose message did not decode (default
    /// [`OnBadMessage::Skip`]).
    pub fn on_bad_message(mut self, policy: OnBadMessage) -> Self {
        self.on_bad = policy;
        self
    }

    /// Dead-letters bad input into `sink`: messages that did not decode (with
    /// their payload), messages over the limit and text that is not UTF-8
    /// (without). A full sink refuses the letter: it is counted
    /// `dead_letters_refused`, and the stage goes on.
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<BadMessage>) -> Self {
        self.dead_letters = Some(Arc::new(sink));
        self
    }

    /// Binds `addr` (port 0 picks one: see [`WsIngest::local_addr`]) and serves
    /// on a thread of its own; returns the server's handle and the pipeline's
    /// source, a flow named `websocket`.
    ///
    /// # Errors
    ///
    /// [`WsError::Invalid`] naming a setting that cannot work (a path without
    /// `/`, a zero limit or timeout, an idle timeout not above the heartbeat,
    /// an empty token); [`WsError::Bind`] when the address cannot be bound.
    pub fn serve(self, addr: SocketAddr) -> Result<(WsIngest, Flow<T>), WsError> {
        self.options.validate()?;
        let (ingress, flow) = Pipeline::ingress::<T>(self.capacity);
        let counters = Arc::new(SourceCounters::new(&addr.to_string()));
        let endpoint = SourceEndpoint {
            shared: Arc::new(Shared {
                ingress,
                decode: self.decode,
                options: self.options,
                on_bad: self.on_bad,
                dead_letters: self.dead_letters,
                counters: Arc::clone(&counters),
            }),
        };
        let (local, server) = handshake::start(addr, "weir-ws-source", endpoint)?;
        let handle = WsIngest {
            addr: local,
            counters,
            server,
        };
        Ok((handle, flow.name("websocket")))
    }
}

/// What every connection of a source shares.
pub(crate) struct Shared<T> {
    pub(crate) ingress: Ingress<T>,
    pub(crate) decode: Decode<T>,
    pub(crate) options: ServerOptions,
    pub(crate) on_bad: OnBadMessage,
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterSink<BadMessage>>>,
    pub(crate) counters: Arc<SourceCounters>,
}

struct SourceEndpoint<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for SourceEndpoint<T> {
    fn clone(&self) -> Self {
        SourceEndpoint {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Send + 'static> Endpoint for SourceEndpoint<T> {
    type Session = ();

    fn options(&self) -> &ServerOptions {
        &self.shared.options
    }

    fn connections(&self) -> &Arc<Connections> {
        &self.shared.counters.conn
    }

    fn open(&self) {}

    fn run(
        self,
        (): (),
        ws: Ws,
        peer: SocketAddr,
        stopped: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        reader::read(self.shared, ws, peer, stopped)
    }
}

/// A running [`WsSource`] server. Dropping it shuts the server down as
/// [`shutdown`](Self::shutdown) does.
///
/// # Examples
///
/// ```
/// use weir::prelude::*;
/// use weir::websocket::WsSource;
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let (server, flow) = WsSource::messages().serve("127.0.0.1:0".parse()?)?;
/// let running = flow.collect().run(&rt)?;
/// assert_eq!(server.stats().open, 0);
/// let last = server.shutdown();
/// assert_eq!(last.received, last.accepted + last.undecodable + last.abandoned);
/// assert!(running.wait()?.output.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WsIngest {
    addr: SocketAddr,
    counters: Arc<SourceCounters>,
    server: Stopper,
}

impl WsIngest {
    /// The address it listens on (with the port chosen when 0 was asked for).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::websocket::WsSource;
    ///
    /// let (server, _flow) = WsSource::messages().serve("127.0.0.1:0".parse()?)?;
    /// assert_ne!(server.local_addr().port(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counts now (see [`WsSourceStats`]).
    pub fn stats(&self) -> WsSourceStats {
        self.counters.snapshot()
    }

    /// Stops accepting connections and closes every open one with `1001`.
    /// Messages that arrive before the peer's close frame (within a second)
    /// are still taken; a message waiting for room gets up to two seconds in
    /// all, then is counted `abandoned`. The pipeline's source then ends: the
    /// pipeline completes with what was accepted. Returns the final counts.
    pub fn shutdown(mut self) -> WsSourceStats {
        self.server.stop_and_join();
        self.counters.snapshot()
    }
}
