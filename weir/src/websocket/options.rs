//! The settings both WebSocket servers share, their defaults and their checks.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::WsError;

/// Bytes tungstenite reads from a socket at a time (its eagerly allocated read
/// buffer, per connection).
const READ_CHUNK: usize = 8 * 1024;

/// Bytes of outgoing frames buffered before they are written (a flush writes
/// them at once in any case).
const WRITE_CHUNK: usize = 16 * 1024;

/// The settings of a server endpoint; see the builder methods of
/// [`WsSource`](super::WsSource) and [`WsBroadcast`](super::WsBroadcast).
#[derive(Clone)]
pub(crate) struct ServerOptions {
    pub(crate) path: String,
    pub(crate) token: Option<String>,
    pub(crate) max_connections: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) header_timeout: Duration,
    pub(crate) write_timeout: Duration,
    #[cfg(feature = "server-tls")]
    pub(crate) tls: Option<crate::server_tls::TlsServerConfig>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("max_connections", &self.max_connections)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("heartbeat", &self.heartbeat)
            .field("idle_timeout", &self.idle_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerOptions {
    /// Path `path`, no token, 1024 connections, messages up to `max_message_bytes`,
    /// a ping after 15 s of silence, closed after 45 s of silence, 10 s for the
    /// request headers and for each write.
    pub(crate) fn new(path: &str, max_message_bytes: usize) -> Self {
        ServerOptions {
            path: path.to_owned(),
            token: None,
            max_connections: 1024,
            max_message_bytes,
            heartbeat: Some(Duration::from_secs(15)),
            idle_timeout: Some(Duration::from_secs(45)),
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            #[cfg(feature = "server-tls")]
            tls: None,
        }
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// [`WsError::Invalid`] naming the first setting that cannot work.
    pub(crate) fn validate(&self) -> Result<(), WsError> {
        let invalid = |option, reason| Err(WsError::Invalid { option, reason });
        if !self.path.starts_with('/') {
            return invalid("path", "must start with `/`");
        }
        if self.token.as_deref() == Some("") {
            return invalid("bearer_token", "must not be empty");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.max_message_bytes == 0 {
            return invalid("max_message_bytes", "must be at least 1");
        }
        if self.heartbeat == Some(Duration::ZERO) {
            return invalid("heartbeat", "must be longer than zero (or None)");
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return invalid("idle_timeout", "must be longer than zero (or None)");
        }
        if let (Some(beat), Some(idle)) = (self.heartbeat, self.idle_timeout)
            && idle <= beat
        {
            return invalid(
                "idle_timeout",
                "must be longer than the heartbeat, or a live peer is closed before it is pinged",
            );
        }
        if self.header_timeout.is_zero() {
            return invalid("header_timeout", "must be longer than zero");
        }
        if self.write_timeout.is_zero() {
            return invalid("write_timeout", "must be longer than zero");
        }
        Ok(())
    }

    /// The protocol settings of a connection: a message (and each of its
    /// frames) at most `max_message_bytes`, checked from the frame header before
    /// its payload is read.
    pub(crate) fn ws_config(&self) -> WebSocketConfig {
        config(self.max_message_bytes)
    }
}

/// Protocol settings for incoming messages of at most `max` bytes.
pub(crate) fn config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK.min(max.max(1024)))
        .write_buffer_size(WRITE_CHUNK)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}
