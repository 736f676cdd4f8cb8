//! WebSocket connectors (feature `websocket`): a server whose clients feed a
//! pipeline, a server that broadcasts a pipeline's output to its clients, and
//! a client sink that sends each element to a WebSocket server.
//!
//! ```text
//!  clients ── messages ──▶ WsSource ──▶ pipeline ──▶ BroadcastHub ──▶ WsBroadcast ──▶ clients
//!     ▲  one message read per slot of room;              │ per-client buffer + SlowClient policy
//!     └─ a full pipeline stops reading (TCP slows them)  └─▶ … ──▶ WsSink ──▶ ws://server
//! ```
//!
//! The servers speak plain `ws://` (put a TLS-terminating proxy in front of
//! them); [`WsSink`] dials `wss://` too with the feature `wss`. No subprotocols
//! and no extensions (per-message compression is not negotiated).
//!
//! # The servers
//!
//! [`WsSource`] and [`WsBroadcast`] serve one path (default `/ws`) on an
//! address, each on a thread of its own (so they never run on the pipelines'
//! arbiters). The opening handshake is checked before anything else is
//! accepted:
//!
//! | Request | Answer |
//! |---|---|
//! | another path | `404` |
//! | another method | `405` with `Allow: GET` |
//! | no or a wrong bearer token (when one is set) | `401` with `WWW-Authenticate: Bearer` |
//! | not an upgrade to WebSocket | `426` with `Upgrade: websocket` |
//! | a `Sec-WebSocket-Version` other than 13 | `426` with `Sec-WebSocket-Version: 13` |
//! | not HTTP/1.1, no valid `Sec-WebSocket-Key` | `400` naming what is wrong |
//! | more than `max_connections` (`max_clients`) held | `503` with `Retry-After`, closed before the request is read |
//! | headers not in within `header_timeout` (10 s) | closed |
//!
//! The token is `Authorization: Bearer <token>`, or the query parameter
//! `access_token=<token>` for browsers (which cannot set headers on a
//! WebSocket).
//!
//! On a session, the server pings a peer that has been silent for `heartbeat`
//! (default 15 s) and closes with `1001` one that has been silent for
//! `idle_timeout` (default 45 s): any frame counts, pongs included, so a live
//! peer is never closed and a dead one goes within the timeout. Pings from the
//! peer are answered. Bad input closes only its own connection, never the
//! stage: a message (or a frame declaring one) over `max_message_bytes` with
//! `1009` before its payload is held, text that is not UTF-8 with `1007`, a
//! protocol violation with `1002`; each is counted, with the reason in the close
//! frame. [`shutdown`](WsIngest::shutdown) closes every session with `1001`.
//!
//! # The source
//!
//! Every text or binary message is an element ([`WsSource::messages`],
//! [`WsSource::json`], or decoded by your function with [`WsSource::new`]).
//! **Per-connection credit**: a connection's message goes into the source's
//! bounded buffer (`capacity`), and the connection reads its next message only
//! once that one is in; while the pipeline has no room, no connection is read,
//! and TCP's window slows the clients. At any time the server holds at most
//! `capacity` messages plus one per connection, so its memory is bounded by
//! `capacity` elements plus, per connection, a read buffer (8 KiB) and two
//! messages of `max_message_bytes`. A message that does not decode is counted
//! and dead-lettered (with [`WsSource::dead_letters`]), and the connection
//! goes on (or is closed with `1007`, [`OnBadMessage::Close`]).
//!
//! A message is **accepted** once it is in the source's buffer
//! ([`WsSourceStats::accepted`]): from then on the pipeline accounts for it
//! (delivered, filtered, failed, dead-lettered or abandoned at an abort), and
//! it is never dropped. WebSocket has no acknowledgement, so a client cannot
//! know which of its messages were accepted when a connection breaks; a message
//! read and not accepted (the pipeline stopped) is counted `abandoned`. Messages
//! of one connection keep their order; connections interleave. Not replayable
//! under checkpoints.
//!
//! # The broadcast
//!
//! [`WsBroadcast`] serves a [`BroadcastHub`](weir_operators::hub::BroadcastHub):
//! each client subscribes at its handshake with its own buffer
//! (`client_buffer`) and receives every element published after its `101`, one
//! message each, in order. A client that falls behind its buffer is handled
//! by its [`SlowClient`] policy: the hub waits for it (`Block`), it misses the
//! oldest or the newest elements and is told how many with a lag notice before
//! its next message (`DropOldest`, `DropNewest`), or it is closed with `1008`
//! (`Disconnect`). What is dropped is counted exactly
//! ([`WsBroadcastStats::lagged`]). A write that takes longer than
//! `write_timeout` drops the client. When the hub's input ends each client is
//! closed with `1000` after its last element (`1001` if the pipeline stopped).
//! Clients' own data messages are read and ignored.
//!
//! # The client sink
//!
//! [`WsSink`] (with [`WsSinkExt::to_websocket`]) connects to a `ws://` URL and
//! sends each element as a message, reconnecting under the stage's
//! supervision; see its docs.
//!
//! # Examples
//!
//! A pipeline sends numbers to a WebSocket source served by the same process:
//!
//! ```
//! use weir::prelude::*;
//! use weir::websocket::{WsSink, WsSinkExt, WsSource};
//!
//! let rt = Runtime::builder().arbiters(1).build()?;
//! let (server, numbers) = WsSource::<u64>::json().serve("127.0.0.1:0".parse()?)?;
//! let sum = numbers.fold(0, |sum, x| sum + x).run(&rt)?;
//!
//! let url = format!("ws://{}/ws", server.local_addr());
//! let sent = Pipeline::from_iter(1..=10_u64).to_websocket(WsSink::json(url)).run(&rt)?.wait()?;
//! assert_eq!(sent.output.sent(), 10);
//! // The sink finished with a closing handshake: the server has read everything.
//! assert_eq!(server.shutdown().accepted, 10);
//! assert_eq!(sum.wait()?.output, 55);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod broadcast;
mod handshake;
mod options;
mod reader;
mod session;
mod sink;
mod sink_stage;
mod source;
mod stats;
#[cfg(test)]
mod tests;
mod writer;

use std::net::SocketAddr;

use tokio_tungstenite::tungstenite::Message;

pub use broadcast::{SlowClient, WsBroadcast, WsBroadcastServer};
pub use sink::{WsSink, WsSinkExt, WsSinkStats};
pub use source::{OnBadMessage, WsIngest, WsSource};
pub use stats::{WsBroadcastStats, WsSourceStats};

/// The payload of a data message: text or binary.
///
/// # Examples
///
/// ```
/// use weir::websocket::WsPayload;
///
/// let text = WsPayload::from("hello");
/// assert_eq!(text.as_bytes(), b"hello");
/// assert!(text.is_text());
/// assert_eq!(WsPayload::from(vec![1_u8, 2, 3]).len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WsPayload {
    /// A text message (UTF-8).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl WsPayload {
    /// The payload's bytes (a text's UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WsPayload::Text(text) => text.as_bytes(),
            WsPayload::Binary(bytes) => bytes,
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, WsPayload::Text(_))
    }

    pub(crate) fn into_message(self) -> Message {
        match self {
            WsPayload::Text(text) => Message::text(text),
            WsPayload::Binary(bytes) => Message::binary(bytes),
        }
    }
}

impl From<String> for WsPayload {
    fn from(text: String) -> Self {
        WsPayload::Text(text)
    }
}

impl From<&str> for WsPayload {
    fn from(text: &str) -> Self {
        WsPayload::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for WsPayload {
    fn from(bytes: Vec<u8>) -> Self {
        WsPayload::Binary(bytes)
    }
}

/// A message a client sent to a [`WsSource`]: who sent it, and what.
///
/// # Examples
///
/// ```
/// use weir::prelude::*;
/// use weir::websocket::{WsMessage, WsPayload, WsSource};
///
/// let (server, messages) = WsSource::messages().serve("127.0.0.1:0".parse()?)?;
/// let texts = messages.filter_map(|m: WsMessage| match m.payload {
///     WsPayload::Text(text) => Some(text),
///     WsPayload::Binary(_) => None,
/// });
/// # drop((server, texts));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WsMessage {
    /// The client's address.
    pub peer: SocketAddr,
    /// The message.
    pub payload: WsPayload,
}

/// What was wrong with a [`BadMessage`].
///
/// # Examples
///
/// ```
/// use weir::websocket::{BadKind, BadMessage};
///
/// fn retryable(bad: &BadMessage) -> bool {
///     // An oversized message was never read: only its sender can send it again.
///     bad.kind == BadKind::Undecodable && bad.payload.is_some()
/// }
/// # let _ = retryable;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum BadKind {
    /// The message did not decode into an element (the connection goes on,
    /// unless [`OnBadMessage::Close`]).
    Undecodable,
    /// The message was over `max_message_bytes` (its connection was closed
    /// with `1009`; the payload was never read).
    TooLarge,
    /// A text message was not UTF-8 (its connection was closed with `1007`).
    InvalidUtf8,
}

/// Bad input from a client, as a [`WsSource`] dead-letters it
/// ([`WsSource::dead_letters`]).
///
/// # Examples
///
/// ```
/// use weir::prelude::*;
/// use weir::websocket::{BadMessage, WsSource};
///
/// let bad = MemoryDlq::<BadMessage>::new(100);
/// let (server, _flow) = WsSource::<u64>::json()
///     .dead_letters(bad.clone())
///     .serve("127.0.0.1:0".parse()?)?;
/// # drop(server);
/// for letter in bad.drain() {
///     println!("{} sent {:?}: {}", letter.element.peer, letter.element.kind, letter.element.reason);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadMessage {
    /// The client that sent it.
    pub peer: SocketAddr,
    /// What was wrong.
    pub kind: BadKind,
    /// What was wrong, in words (the decoder's error, the size and the limit).
    pub reason: String,
    /// The message, when it was read whole (an undecodable one); `None` for
    /// one over the limit or not UTF-8.
    pub payload: Option<WsPayload>,
}

/// Why a WebSocket server could not start.
///
/// # Examples
///
/// ```
/// use weir::websocket::{WsError, WsSource};
///
/// let err = WsSource::<u64>::json().path("ws").serve("127.0.0.1:0".parse()?).unwrap_err();
/// assert!(matches!(err, WsError::Invalid { option: "path", .. }));
/// assert_eq!(err.to_string(), "invalid WebSocket option `path`: must start with `/`");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The address could not be bound.
    #[error("cannot serve WebSocket on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error: binding, setting up the listener, or starting the
        /// server's runtime or thread.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid WebSocket option `{option}`: {reason}")]
    Invalid {
        /// The option's builder method.
        option: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// The TLS certificate or key of a server cannot be used (feature
    /// `server-tls`).
    #[cfg(feature = "server-tls")]
    #[error("cannot serve WebSocket over TLS: {source}")]
    Tls {
        /// What is wrong, naming the file.
        #[source]
        source: crate::server_tls::TlsError,
    },
}
