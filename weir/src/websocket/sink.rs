//! [`WsSink`]: a WebSocket client sink, its counters and the flow method that
//! ends a flow in it.

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, header};
use weir_runtime::observe::Tally;
use weir_runtime::{Flow, OutputReceiver, Runnable};

use super::WsPayload;
use super::sink_stage::WsSinkStage;

/// Turns an element into the message sent for it.
pub(crate) type Encode<T> = Arc<dyn Fn(&T) -> WsPayload + Send + Sync>;

/// A WebSocket client sink: connects to a `ws://` URL and sends each element
/// as one message. Build it with [`json`](Self::json) or [`new`](Self::new),
/// end a flow with it with [`WsSinkExt::to_websocket`].
///
/// Elements are taken in batches of up to `max_batch` (what is queued when a
/// write can start: one at idle), written and flushed in one go; a batch
/// counts as delivered once the kernel took its bytes. When the input ends the
/// sink closes the connection with `1000` and waits (up to `write_timeout`) for
/// the server's close frame, so after a clean finish the server has read every
/// message.
///
/// **Failures and reconnection.** A failed connect, handshake or write fails the
/// batch's first element, which the stage's supervision decides on
/// ([`Flow::supervise`](weir_runtime::Flow::supervise)): `Retry` waits the
/// policy's backoff, reconnects and writes the whole batch again (the backoff
/// *is* the reconnect backoff; messages the old connection had taken may be
/// sent twice: at least once); `DeadLetter`/`Skip` forgets that element and
/// sends the rest on a new connection; unsupervised, the stage fails (the
/// pipeline with it), naming the URL and the cause. Classes: a refused or
/// broken connection and a `5xx` handshake answer are `Transient`; a
/// timeout is `Timeout`; a `4xx` handshake answer (`401`: a wrong token) and an
/// element over `max_message_bytes` are `Permanent`.
///
/// **Liveness.** While idle the sink reads what the server sends (pongs, its
/// pings, which are answered, and its close frame, after which it reconnects
/// for the next batch), pings a server that has been silent for `heartbeat`,
/// and drops a connection silent for `idle_timeout`: a dead server is noticed
/// before a batch is written into its socket.
///
/// Defaults: batches of 64, messages up to 1 MiB, 5 s to connect (handshake
/// included), 10 s per write, a ping after 15 s of silence, dropped after 45 s.
/// `ws://`, and `wss://` with the feature `wss` (`ca_file` and
/// friends say what the server's certificate is verified against); without it a
/// `wss://` URL is refused when the pipeline is built.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use weir::prelude::*;
/// use weir::websocket::{WsSink, WsSinkExt};
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let policy = SupervisionPolicy::default()
///     .max_attempts(10)
///     .backoff(BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(5)));
/// let sink = WsSink::json("ws://127.0.0.1:9000/ingest")
///     .bearer_token("s3cret")
///     .max_batch(128);
/// let done = Pipeline::from_iter(0..1_000_u64)
///     .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(100)))
///     .to_websocket(sink)
///     .run(&rt)?
///     .wait()?;
/// println!("{} sent over {} connections", done.output.sent(), done.output.connects());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct WsSink<T> {
    pub(crate) settings: Settings<T>,
    stats: WsSinkStats,
}

/// What the stage needs of the builder.
pub(crate) struct Settings<T> {
    pub(crate) url: String,
    pub(crate) encode: Encode<T>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) max_batch: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    /// Settings that did not parse: reported when the pipeline is built.
    pub(crate) invalid: Vec<String>,
    /// What a `wss://` server is verified against.
    #[cfg(feature = "wss")]
    pub(crate) tls: crate::client_tls::TlsSettings,
}

impl<T> std::fmt::Debug for WsSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.settings;
        f.debug_struct("WsSink")
            .field("url", &s.url)
            .field(
                "headers",
                &s.headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("max_batch", &s.max_batch)
            .field("max_message_bytes", &s.max_message_bytes)
            .field("connect_timeout", &s.connect_timeout)
            .field("write_timeout", &s.write_timeout)
            .field("heartbeat", &s.heartbeat)
            .field("idle_timeout", &s.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<T: serde::Serialize + Send + 'static> WsSink<T> {
    /// A sink sending each element as a JSON text message to `url`
    /// (`ws://host[:port][/path]`, checked when the pipeline is built).
    pub fn json(url: impl Into<String>) -> Self {
        WsSink::new(url, |x: &T| match serde_json::to_string(x) {
            Ok(text) => WsPayload::Text(text),
            Err(e) => WsPayload::Text(format!("{{\"error\":\"cannot encode: {e}\"}}")),
        })
    }
}

impl<T: Send + 'static> WsSink<T> {
    /// A sink sending each element as the message `encode` makes of it.
    pub fn new(
        url: impl Into<String>,
        encode: impl Fn(&T) -> WsPayload + Send + Sync + 'static,
    ) -> Self {
        let url = url.into();
        WsSink {
            stats: WsSinkStats::new(&url),
            settings: Settings {
                url,
                encode: Arc::new(encode),
                headers: Vec::new(),
                max_batch: 64,
                max_message_bytes: 1 << 20,
                connect_timeout: Duration::from_secs(5),
                write_timeout: Duration::from_secs(10),
                heartbeat: Some(Duration::from_secs(15)),
                idle_timeout: Some(Duration::from_secs(45)),
                invalid: Vec::new(),
                #[cfg(feature = "wss")]
                tls: crate::client_tls::TlsSettings::default(),
            },
        }
    }

    /// Also trusts the CA certificates in the PEM file at `path` for a `wss://`
    /// server (a private CA, or a self-signed server's certificate), besides the
    /// system's roots. Read when the pipeline is built: a file that is missing
    /// or holds no certificate is a `BuildError` naming it.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::websocket::WsSink;
    ///
    /// let sink = WsSink::<u64>::json("wss://feeds.internal/ws")
    ///     .ca_file("/etc/weir/internal-ca.pem")
    ///     .without_system_roots();
    /// ```
    #[cfg(feature = "wss")]
    #[cfg_attr(docsrs, doc(cfg(feature = "wss")))]
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.settings.tls.ca_files.push(path.into());
        self
    }

    /// Trusts only the [`ca_file`](Self::ca_file)s, not the system's root
    /// certificates.
    #[cfg(feature = "wss")]
    #[cfg_attr(docsrs, doc(cfg(feature = "wss")))]
    pub fn without_system_roots(mut self) -> Self {
        self.settings.tls.without_system_roots = true;
        self
    }

    /// Uses this rustls client configuration for `wss://` (client
    /// certificates, pinned roots) instead of the one built from the system's
    /// roots and the CA files. It must name no ALPN protocols (a `BuildError`
    /// otherwise).
    #[cfg(feature = "wss")]
    #[cfg_attr(docsrs, doc(cfg(feature = "wss")))]
    pub fn tls_config(mut self, config: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.settings.tls.config = Some(config);
        self
    }

    /// Adds a header to the handshake request. A name or value that is not
    /// valid HTTP is reported when the pipeline is built.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => self.settings.headers.push((name, value)),
            _ => self
                .settings
                .invalid
                .push(format!("invalid header {name:?}: {value:?}")),
        }
        self
    }

    /// Sends `Authorization: Bearer <token>` with the handshake (marked
    /// sensitive, never shown in `Debug` output).
    pub fn bearer_token(mut self, token: &str) -> Self {
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.settings.headers.push((header::AUTHORIZATION, value));
            }
            Err(_) => self
                .settings
                .invalid
                .push("the bearer token is not a valid header value".into()),
        }
        self
    }

    /// The most elements written with one flush, at least 1 (default 64): the
    /// sink holds at most this many beyond its input queue.
    pub fn max_batch(mut self, elements: usize) -> Self {
        self.settings.max_batch = elements;
        self
    }

    /// The largest message sent, in bytes (default 1 MiB); a larger element
    /// fails alone (class `Permanent`: dead-lettered by a supervised stage).
    /// Set it to the server's limit.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_message_bytes = bytes;
        self
    }

    /// How long connecting may take, TCP and handshake (default 5 s); then the
    /// attempt fails with class `Timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long writing one batch (or a ping, or the closing handshake) may
    /// take (default 10 s); then it fails with class `Timeout`.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.settings.write_timeout = timeout;
        self
    }

    /// How long the server may be silent while the sink is idle before it is
    /// pinged (default 15 s; `None`: never).
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.settings.heartbeat = every;
        self
    }

    /// How long the server may be silent while the sink is idle before the
    /// connection is dropped (default 45 s; `None`: never); the next batch
    /// reconnects. It must be longer than the heartbeat.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.idle_timeout = timeout;
        self
    }

    /// The sink's live counters (also the pipeline's output).
    pub fn stats(&self) -> WsSinkStats {
        self.stats.clone()
    }
}

/// Ends a flow in a [`WsSink`].
///
/// # Examples
///
/// ```no_run
/// use weir::prelude::*;
/// use weir::websocket::{WsPayload, WsSink, WsSinkExt};
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let sink = WsSink::new("ws://127.0.0.1:9000/ws", |line: &String| WsPayload::Text(line.clone()));
/// let done = Pipeline::from_iter(["a", "b"].map(String::from)).to_websocket(sink).run(&rt)?.wait()?;
/// assert_eq!(done.output.sent(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait WsSinkExt<T> {
    /// Sends every element to `sink`'s server: a stage named `websocket_sink#N`
    /// (rename it with [`Runnable::name`]); the output is the sink's
    /// [`WsSinkStats`].
    ///
    /// # Errors
    ///
    /// The pipeline's build ([`Runnable::run`]) fails with
    /// [`BuildError::InvalidArgument`](weir_runtime::BuildError::InvalidArgument),
    /// naming the stage, for a URL that is not `ws://host[:port][/path]` (a
    /// `wss://` one among them: no TLS yet), an invalid header, a zero batch,
    /// limit or timeout, or an idle timeout not above the heartbeat.
    fn to_websocket(self, sink: WsSink<T>) -> Runnable<WsSinkStats>;
}

impl<T: Clone + Send + 'static> WsSinkExt<T> for Flow<T> {
    fn to_websocket(self, sink: WsSink<T>) -> Runnable<WsSinkStats> {
        let stats = sink.stats.clone();
        let stage = WsSinkStage::new(sink.settings, sink.stats.counters());
        self.cloneable().to(stage, OutputReceiver::ready(stats))
    }
}

/// A [`WsSink`]'s counters, live while it runs (from [`WsSink::stats`]) and the
/// pipeline's output when it ends. Elements are counted by the stage's report
/// (delivered, dead-lettered, retries); these count messages and connections.
///
/// Exported through the `metrics` facade as
/// `weir_ws_sink_{sent,connects,failures,pings,pongs,closed_by_peer,idle_closed}_total`,
/// labelled `url`, registered when the sink is created.
///
/// # Examples
///
/// ```
/// use weir::websocket::WsSink;
///
/// let sink = WsSink::<u64>::json("ws://127.0.0.1:9000/ws");
/// let stats = sink.stats();
/// assert_eq!((stats.sent(), stats.connects(), stats.failures()), (0, 0, 0));
/// ```
#[derive(Debug, Clone)]
pub struct WsSinkStats(Arc<SinkCounters>);

#[derive(Debug)]
pub(crate) struct SinkCounters {
    pub(crate) sent: Tally,
    pub(crate) connects: Tally,
    pub(crate) failures: Tally,
    pub(crate) pings: Tally,
    pub(crate) pongs: Tally,
    pub(crate) closed_by_peer: Tally,
    pub(crate) idle_closed: Tally,
}

impl WsSinkStats {
    fn new(url: &str) -> Self {
        let l = &[("url", url.to_owned())];
        WsSinkStats(Arc::new(SinkCounters {
            sent: Tally::new("weir_ws_sink_sent_total", l),
            connects: Tally::new("weir_ws_sink_connects_total", l),
            failures: Tally::new("weir_ws_sink_failures_total", l),
            pings: Tally::new("weir_ws_sink_pings_total", l),
            pongs: Tally::new("weir_ws_sink_pongs_total", l),
            closed_by_peer: Tally::new("weir_ws_sink_closed_by_peer_total", l),
            idle_closed: Tally::new("weir_ws_sink_idle_closed_total", l),
        }))
    }

    pub(crate) fn counters(&self) -> Arc<SinkCounters> {
        Arc::clone(&self.0)
    }

    /// Element messages written and flushed (delivered).
    pub fn sent(&self) -> u64 {
        self.0.sent.get()
    }

    /// Connections made (the first and every reconnect).
    pub fn connects(&self) -> u64 {
        self.0.connects.get()
    }

    /// Failed connects, handshakes and writes (each reported to the stage's
    /// supervision).
    pub fn failures(&self) -> u64 {
        self.0.failures.get()
    }

    /// Pings sent to a silent server.
    pub fn pings(&self) -> u64 {
        self.0.pings.get()
    }

    /// Pongs received.
    pub fn pongs(&self) -> u64 {
        self.0.pongs.get()
    }

    /// Connections the server closed (its close frame, or the end of the
    /// connection) while the sink was idle.
    pub fn closed_by_peer(&self) -> u64 {
        self.0.closed_by_peer.get()
    }

    /// Connections dropped after `idle_timeout` of the server's silence.
    pub fn idle_closed(&self) -> u64 {
        self.0.idle_closed.get()
    }
}
