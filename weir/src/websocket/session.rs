//! What the sessions of both servers share: heartbeats and the idle timeout,
//! the reasons a session ends, and the closing handshake.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsProtoError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::handshake::Ws;
use super::options::ServerOptions;
use super::stats::Connections;

/// How long a session that sent its close frame waits for the peer's, reading
/// what still arrives, before it drops the connection.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// When to ping a silent peer and when to give up on it. Only frames from the
/// peer count as signs of life (writes into a dead peer's socket succeed for a
/// long while).
#[derive(Debug)]
pub(crate) struct Liveness {
    heartbeat: Option<Duration>,
    idle: Option<Duration>,
    last_heard: Instant,
    next_ping: Option<Instant>,
}

/// What [`Liveness::alarm`] wakes up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alarm {
    /// The peer has been silent for a heartbeat: ping it.
    Ping,
    /// The peer has been silent for the idle timeout: close it.
    Idle,
}

impl Liveness {
    pub(crate) fn new(options: &ServerOptions) -> Self {
        Liveness::with(options.heartbeat, options.idle_timeout)
    }

    /// Pings after `heartbeat` of silence, gives up after `idle` of it.
    pub(crate) fn with(heartbeat: Option<Duration>, idle: Option<Duration>) -> Self {
        let mut liveness = Liveness {
            heartbeat,
            idle,
            last_heard: Instant::now(),
            next_ping: None,
        };
        liveness.heard();
        liveness
    }

    /// A frame arrived (or the session was busy on the pipeline's account,
    /// which is not the peer's silence).
    pub(crate) fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.pinged();
    }

    /// A ping went out: the next one is a heartbeat later.
    pub(crate) fn pinged(&mut self) {
        self.next_ping = self.heartbeat.map(|beat| Instant::now() + beat);
    }

    /// The next alarm and when it is due; none without a heartbeat or an idle
    /// timeout.
    pub(crate) fn due(&self) -> Option<(Instant, Alarm)> {
        let idle = self.idle.map(|idle| (self.last_heard + idle, Alarm::Idle));
        let ping = self.next_ping.map(|at| (at, Alarm::Ping));
        match (ping, idle) {
            (Some(ping), Some(idle)) => Some(if ping.0 < idle.0 { ping } else { idle }),
            (one, other) => one.or(other),
        }
    }

    /// Waits for the next alarm; never, without one.
    pub(crate) async fn alarm(&self) -> Alarm {
        match self.due() {
            Some((at, alarm)) => {
                tokio::time::sleep_until(at).await;
                alarm
            }
            None => std::future::pending().await,
        }
    }
}

/// Why a session ends, and so how it is closed and counted.
#[derive(Debug)]
pub(crate) enum End {
    /// The peer closed: its close frame was answered, or the connection ended.
    Closed,
    /// Nothing from the peer within the idle timeout: `1001`.
    Idle,
    /// A message over `max_message_bytes`: `1009`.
    TooLarge { size: usize, max: usize },
    /// A protocol violation (`1002`), or a message the source's policy closes
    /// the connection for (`1007`): the code and what was wrong.
    Protocol(CloseCode, String),
    /// A text message that is not UTF-8: `1007`.
    Utf8(String),
    /// The connection failed (reset, broken pipe).
    Broken(String),
    /// A write did not complete within `write_timeout`: dropped, not closed.
    WriteTimeout,
    /// A broadcast client fell behind its buffer under
    /// [`SlowClient::Disconnect`](super::SlowClient::Disconnect): `1008`, with
    /// the number of messages it missed.
    TooSlow(u64),
    /// The server closes the session normally: the code and the reason.
    Closing(CloseCode, &'static str),
}

impl End {
    /// What a read error means for the session.
    pub(crate) fn from_error(error: WsProtoError) -> End {
        match error {
            WsProtoError::ConnectionClosed | WsProtoError::AlreadyClosed => End::Closed,
            WsProtoError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                End::TooLarge {
                    size,
                    max: max_size,
                }
            }
            WsProtoError::Utf8(why) => End::Utf8(format!("a text message is not UTF-8: {why}")),
            WsProtoError::Protocol(why) => End::Protocol(CloseCode::Protocol, why.to_string()),
            WsProtoError::Io(e) => End::Broken(e.to_string()),
            other => End::Protocol(CloseCode::Protocol, other.to_string()),
        }
    }

    /// Counts the end under `connections`.
    pub(crate) fn count(&self, connections: &Connections) {
        let counter = match self {
            End::Idle => &connections.idle_timeouts,
            End::TooLarge { .. } => &connections.too_large,
            End::Protocol(..) | End::Utf8(_) => &connections.protocol_errors,
            _ => return,
        };
        let _ = counter.add(1);
    }

    /// The close frame the server sends, if it sends one.
    fn frame(&self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Closed | End::Broken(_) | End::WriteTimeout => return None,
            End::Idle => (CloseCode::Away, "idle timeout".to_owned()),
            End::TooLarge { max, .. } => (
                CloseCode::Size,
                format!("message over the limit of {max} bytes"),
            ),
            End::Protocol(code, why) => (*code, why.clone()),
            End::Utf8(why) => (CloseCode::Invalid, why.clone()),
            End::TooSlow(missed) => (
                CloseCode::Policy,
                format!("too slow: {missed} messages dropped"),
            ),
            End::Closing(code, reason) => (*code, (*reason).to_owned()),
        };
        // A close frame's reason is at most 123 bytes.
        let mut reason = reason;
        if reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }

    /// Whether the session can still read frames after this end (a close
    /// handshake), rather than only bytes to discard.
    fn readable(&self) -> bool {
        matches!(self, End::Idle | End::TooSlow(_) | End::Closing(..))
    }
}

/// Sends `Ping` within `write_timeout`; false if it could not be sent.
pub(crate) async fn ping(ws: &mut Ws, write_timeout: Duration, connections: &Connections) -> bool {
    let sent = tokio::time::timeout(write_timeout, ws.send(Message::Ping(Bytes::new()))).await;
    let ok = matches!(sent, Ok(Ok(())));
    if ok {
        let _ = connections.pings.add(1);
    }
    ok
}

/// Sends the close frame of `end` (within `write_timeout`). Returns whether the
/// session should wait for the peer's close frame: false when it has nothing
/// left to wait for (the peer closed, the connection broke, or the stream can
/// no longer be read, in which case this also ends the TCP connection and
/// discards what arrives for up to [`CLOSE_WAIT`], so that the peer reads the
/// close frame before the connection goes).
pub(crate) async fn send_close(ws: &mut Ws, end: &End, write_timeout: Duration) -> bool {
    let Some(frame) = end.frame() else {
        return false;
    };
    let sent = tokio::time::timeout(write_timeout, ws.close(Some(frame))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return false;
    }
    if end.readable() {
        return true;
    }
    // The frame decoder's state is lost (an oversized or malformed frame):
    // end the connection from this side and let the peer see the close frame.
    let io = ws.get_mut();
    let _ = tokio::time::timeout(write_timeout, io.shutdown()).await;
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut scratch = [0_u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, io.read(&mut scratch)).await {
        if n == 0 {
            break;
        }
    }
    false
}

/// Reads and discards frames until the peer's close frame has been answered
/// (the stream ends) or [`CLOSE_WAIT`] has passed. Returns the data messages
/// that arrived meanwhile, counted by the caller.
pub(crate) async fn linger(ws: &mut Ws) -> u64 {
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut data = 0;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if message.is_text() || message.is_binary() {
            data += 1;
        }
    }
    data
}
