//! The counts of the WebSocket connectors: their public snapshots and the
//! counters behind them, mirrored into the `metrics` facade.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use weir_runtime::observe::{Level, Tally};

/// What the connection side of a server counts, for both servers. Exported as
/// `weir_ws_<server>_*` with the label `addr`.
#[derive(Debug)]
pub(crate) struct Connections {
    /// TCP connections held now (handshakes and sessions): the connection limit.
    pub(crate) held: crate::http_server::OpenCount,
    pub(crate) opened: Tally,
    pub(crate) open: Level,
    pub(crate) refused: Tally,
    pub(crate) unauthorized: Tally,
    pub(crate) bad_requests: Tally,
    pub(crate) tls_handshake_failures: Arc<Tally>,
    pub(crate) idle_timeouts: Tally,
    pub(crate) too_large: Tally,
    pub(crate) protocol_errors: Tally,
    pub(crate) pings: Tally,
    pub(crate) pongs: Tally,
}

/// Registers a connector's counter `weir_ws_<server>_<what>`.
macro_rules! tally {
    ($server:literal, $what:literal, $labels:expr) => {
        Tally::new(concat!("weir_ws_", $server, "_", $what), $labels)
    };
}

/// Registers the [`Connections`] counters of `$server` (`"source"` or
/// `"broadcast"`).
macro_rules! connections {
    ($server:literal, $labels:expr) => {{
        let l = $labels;
        Connections {
            held: crate::http_server::OpenCount::default(),
            opened: tally!($server, "connections_total", l),
            open: Level::new(concat!("weir_ws_", $server, "_open_connections"), l),
            refused: tally!($server, "refused_total", l),
            unauthorized: tally!($server, "unauthorized_total", l),
            bad_requests: tally!($server, "bad_requests_total", l),
            tls_handshake_failures: Arc::new(tally!($server, "tls_handshake_failures_total", l)),
            idle_timeouts: tally!($server, "idle_timeouts_total", l),
            too_large: tally!($server, "too_large_total", l),
            protocol_errors: tally!($server, "protocol_errors_total", l),
            pings: tally!($server, "pings_total", l),
            pongs: tally!($server, "pongs_total", l),
        }
    }};
}

/// The counters of a [`WsSource`](super::WsSource) server.
#[derive(Debug)]
pub(crate) struct SourceCounters {
    pub(crate) conn: Arc<Connections>,
    pub(crate) received: Tally,
    pub(crate) bytes: Tally,
    pub(crate) accepted: Tally,
    pub(crate) undecodable: Tally,
    pub(crate) abandoned: Tally,
    pub(crate) dead_letters_refused: Tally,
    /// The index of the next dead letter.
    pub(crate) letters: AtomicU64,
}

impl SourceCounters {
    pub(crate) fn new(addr: &str) -> Self {
        let l = &[("addr", addr.to_owned())];
        SourceCounters {
            conn: Arc::new(connections!("source", l)),
            received: tally!("source", "received_total", l),
            bytes: tally!("source", "bytes_total", l),
            accepted: tally!("source", "accepted_total", l),
            undecodable: tally!("source", "undecodable_total", l),
            abandoned: tally!("source", "abandoned_total", l),
            dead_letters_refused: tally!("source", "dead_letters_refused_total", l),
            letters: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> WsSourceStats {
        let c = &self.conn;
        WsSourceStats {
            connections: c.opened.get(),
            open: c.open.get(),
            peak_open: c.open.peak(),
            refused: c.refused.get(),
            unauthorized: c.unauthorized.get(),
            bad_requests: c.bad_requests.get(),
            tls_handshake_failures: c.tls_handshake_failures.get(),
            received: self.received.get(),
            bytes: self.bytes.get(),
            accepted: self.accepted.get(),
            undecodable: self.undecodable.get(),
            abandoned: self.abandoned.get(),
            too_large: c.too_large.get(),
            protocol_errors: c.protocol_errors.get(),
            idle_timeouts: c.idle_timeouts.get(),
            pings: c.pings.get(),
            pongs: c.pongs.get(),
            dead_letters_refused: self.dead_letters_refused.get(),
        }
    }
}

/// The counts of a [`WsSource`](super::WsSource) server, from
/// [`WsIngest::stats`](super::WsIngest::stats).
///
/// Every data message read is accepted, undecodable, abandoned, or (at most one
/// per open connection) waiting for room in the pipeline:
/// `received = accepted + undecodable + abandoned + waiting`, and once the
/// server has shut down `waiting` is 0.
///
/// The same counts are exported through the `metrics` facade as
/// `weir_ws_source_<field>_total` (`connections_total` for `connections`,
/// and the gauge `weir_ws_source_open_connections`), labelled `addr` (the
/// address the server was asked to listen on).
///
/// # Examples
///
/// ```
/// use weir::websocket::WsSource;
///
/// let (server, _flow) = WsSource::<u64>::json().serve("127.0.0.1:0".parse()?)?;
/// let stats = server.stats();
/// assert_eq!((stats.connections, stats.received, stats.accepted), (0, 0, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WsSourceStats {
    /// WebSocket connections opened (handshake completed).
    pub connections: u64,
    /// Connections open now.
    pub open: u64,
    /// The most connections open at once.
    pub peak_open: u64,
    /// Connections over `max_connections`, answered `503` and closed.
    pub refused: u64,
    /// Handshakes refused `401` for a missing or wrong token.
    pub unauthorized: u64,
    /// Requests refused as not a WebSocket handshake for this endpoint (`400`,
    /// `404`, `405`, `426`).
    pub bad_requests: u64,
    /// Connections closed because their TLS handshake failed or timed out
    /// (feature `server-tls`: a plaintext client, a client not trusting the
    /// certificate).
    pub tls_handshake_failures: u64,
    /// Data messages (text and binary) read.
    pub received: u64,
    /// Payload bytes of the data messages read.
    pub bytes: u64,
    /// Messages accepted: handed to the pipeline, which accounts for each.
    pub accepted: u64,
    /// Messages that did not decode (dead-lettered when a dead-letter sink is set).
    pub undecodable: u64,
    /// Messages read but never accepted: the pipeline stopped taking elements,
    /// or the server shut down while they waited for room.
    pub abandoned: u64,
    /// Connections closed with `1009` for a message over `max_message_bytes`.
    pub too_large: u64,
    /// Connections closed for a protocol violation (`1002`), a text message
    /// that is not UTF-8 (`1007`), or a message that did not decode under
    /// [`OnBadMessage::Close`](super::OnBadMessage::Close) (`1007`).
    pub protocol_errors: u64,
    /// Connections closed after `idle_timeout` without a frame from the peer.
    pub idle_timeouts: u64,
    /// Pings sent.
    pub pings: u64,
    /// Pongs received.
    pub pongs: u64,
    /// Dead letters the dead-letter sink refused (it was full): the message is
    /// still counted `undecodable`.
    pub dead_letters_refused: u64,
}

/// The counters of a [`WsBroadcast`](super::WsBroadcast) server.
#[derive(Debug)]
pub(crate) struct BroadcastCounters {
    pub(crate) conn: Arc<Connections>,
    pub(crate) sent: Tally,
    pub(crate) lagged: Tally,
    pub(crate) notices: Tally,
    pub(crate) too_slow: Tally,
    pub(crate) write_timeouts: Tally,
    pub(crate) ignored: Tally,
}

impl BroadcastCounters {
    pub(crate) fn new(addr: &str) -> Self {
        let l = &[("addr", addr.to_owned())];
        BroadcastCounters {
            conn: Arc::new(connections!("broadcast", l)),
            sent: tally!("broadcast", "sent_total", l),
            lagged: tally!("broadcast", "lagged_total", l),
            notices: tally!("broadcast", "notices_total", l),
            too_slow: tally!("broadcast", "too_slow_total", l),
            write_timeouts: tally!("broadcast", "write_timeouts_total", l),
            ignored: tally!("broadcast", "ignored_total", l),
        }
    }

    pub(crate) fn snapshot(&self) -> WsBroadcastStats {
        let c = &self.conn;
        WsBroadcastStats {
            connections: c.opened.get(),
            open: c.open.get(),
            peak_open: c.open.peak(),
            refused: c.refused.get(),
            unauthorized: c.unauthorized.get(),
            bad_requests: c.bad_requests.get(),
            tls_handshake_failures: c.tls_handshake_failures.get(),
            sent: self.sent.get(),
            lagged: self.lagged.get(),
            notices: self.notices.get(),
            too_slow: self.too_slow.get(),
            write_timeouts: self.write_timeouts.get(),
            ignored: self.ignored.get(),
            too_large: c.too_large.get(),
            protocol_errors: c.protocol_errors.get(),
            idle_timeouts: c.idle_timeouts.get(),
            pings: c.pings.get(),
            pongs: c.pongs.get(),
        }
    }
}

/// The counts of a [`WsBroadcast`](super::WsBroadcast) server, from
/// [`WsBroadcastServer::stats`](super::WsBroadcastServer::stats).
///
/// Exported through the `metrics` facade as `weir_ws_broadcast_<field>_total`
/// (`connections_total` for `connections`, and the gauge
/// `weir_ws_broadcast_open_connections`), labelled `addr`.
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
/// let stats = server.stats();
/// assert_eq!((stats.open, stats.sent, stats.too_slow), (0, 0, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WsBroadcastStats {
    /// Clients connected (handshake completed), in all.
    pub connections: u64,
    /// Clients connected now.
    pub open: u64,
    /// The most clients connected at once.
    pub peak_open: u64,
    /// Connections over `max_clients`, answered `503` and closed.
    pub refused: u64,
    /// Handshakes refused `401` for a missing or wrong token.
    pub unauthorized: u64,
    /// Requests refused as not a WebSocket handshake for this endpoint.
    pub bad_requests: u64,
    /// Connections closed because their TLS handshake failed or timed out
    /// (feature `server-tls`: a plaintext client, a client not trusting the
    /// certificate).
    pub tls_handshake_failures: u64,
    /// Element messages written, over all clients.
    pub sent: u64,
    /// Elements the clients' policies dropped and announced to them: in a lag
    /// notice (when one is configured) before their next message or their
    /// close, or in the `1008` close of [`SlowClient::Disconnect`](super::SlowClient::Disconnect).
    /// Drops a client had not been told of when it went (it closed, or was
    /// closed for silence) are not counted here; the hub's subscriber stats
    /// have them.
    pub lagged: u64,
    /// Lag notices sent.
    pub notices: u64,
    /// Clients closed with `1008` by [`SlowClient::Disconnect`](super::SlowClient::Disconnect).
    pub too_slow: u64,
    /// Clients closed because a write did not complete within `write_timeout`.
    pub write_timeouts: u64,
    /// Data messages clients sent, read and ignored.
    pub ignored: u64,
    /// Clients closed with `1009` for a message over `max_message_bytes`.
    pub too_large: u64,
    /// Clients closed for a protocol violation.
    pub protocol_errors: u64,
    /// Clients closed after `idle_timeout` without a frame from them.
    pub idle_timeouts: u64,
    /// Pings sent.
    pub pings: u64,
    /// Pongs received.
    pub pongs: u64,
}
