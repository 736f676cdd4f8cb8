//! The operator behind [`WsSink`](super::WsSink): one connection, one batch
//! in flight, failures handed to the stage's supervision.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::Error as WsProtoError;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use weir_runtime::operator::{Counting, ElementSupervision, Io, Operator, Step, Verdict};
use weir_supervisor::{ErrorClass, Failure};

use super::options;
use super::session::{Alarm, Liveness};
use super::sink::{Settings, SinkCounters};

/// The largest message the sink takes from its server (it reads only control
/// frames and ignores data).
const MAX_INCOMING: usize = 64 * 1024;

/// A connection's byte stream: plain TCP, or TLS over it (`wss://`).
trait ConnIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ConnIo for S {}

type Conn = WebSocketStream<Box<dyn ConnIo>>;

/// What a piece of work on the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// The batch's messages.
    Write,
    /// A ping to a silent server.
    Ping,
    /// The closing handshake at the end of the input.
    Close,
}

/// What a piece of work ends with.
struct Done {
    /// The connection, if it is still good.
    conn: Option<Conn>,
    /// Whether the work opened it.
    fresh: bool,
    result: Result<(), Failure>,
}

type Work = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Where the sink connects.
#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    host: String,
    port: u16,
    /// The TLS configuration of a `wss://` target.
    #[cfg(feature = "wss")]
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

pub(crate) struct WsSinkStage<T> {
    settings: Arc<Settings<T>>,
    target: Result<Target, String>,
    conn: Option<Conn>,
    liveness: Liveness,
    alarm: Option<Pin<Box<Sleep>>>,
    /// Elements taken and not yet written, with their input index; the first
    /// is the one a failure is reported for.
    batch: Vec<(T, u64)>,
    /// Their messages, in the same order.
    wire: Vec<Message>,
    /// Failed attempts of the batch's first element.
    attempt: u32,
    work: Option<(Job, Work)>,
    retry_at: Option<Pin<Box<Sleep>>>,
    counters: Arc<SinkCounters>,
}

impl<T> std::fmt::Debug for WsSinkStage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSinkStage")
            .field("url", &self.settings.url)
            .field("batch", &self.batch.len())
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> WsSinkStage<T> {
    pub(crate) fn new(settings: Settings<T>, counters: Arc<SinkCounters>) -> Self {
        let target = parse_url(&settings.url);
        #[cfg(feature = "wss")]
        let target = target.and_then(|mut target| {
            if target.uri.scheme_str() == Some("wss") {
                target.tls = Some(settings.tls.client_config("websocket sink")?);
            }
            Ok(target)
        });
        let liveness = Liveness::with(settings.heartbeat, settings.idle_timeout);
        WsSinkStage {
            settings: Arc::new(settings),
            target,
            conn: None,
            liveness,
            alarm: None,
            batch: Vec::new(),
            wire: Vec::new(),
            attempt: 0,
            work: None,
            retry_at: None,
            counters,
        }
    }
}

/// `url` as a `ws://` (or, with the feature `wss`, `wss://`) target.
fn parse_url(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("websocket sink: invalid URL {url:?}: {e}"))?;
    let default_port = match uri.scheme_str() {
        Some("ws") => 80,
        #[cfg(feature = "wss")]
        Some("wss") => 443,
        #[cfg(not(feature = "wss"))]
        Some("wss") => {
            return Err(format!(
                "websocket sink: {url:?}: wss:// needs weir's `wss` feature (plain ws:// only without it)"
            ));
        }
        _ => {
            return Err(format!(
                "websocket sink: {url:?} is not a ws:// or wss:// URL"
            ));
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("websocket sink: {url:?} has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(default_port);
    Ok(Target {
        uri,
        host,
        port,
        #[cfg(feature = "wss")]
        tls: None,
    })
}

impl<T: Send + 'static> WsSinkStage<T> {
    /// Takes the next batch from the queue, encoding each element; one over
    /// `max_message_bytes` ends the batch (it fails alone, after what is
    /// before it).
    fn take(&mut self, io: &mut Io<'_, T, Infallible>) {
        let max = self.settings.max_message_bytes;
        while self.batch.len() < self.settings.max_batch {
            let index = io.next_index();
            let Some(element) = io.pop() else { break };
            let message = (self.settings.encode)(&element).into_message();
            let too_big = message.len() > max;
            if too_big && !self.batch.is_empty() {
                io.unpop(element);
                break;
            }
            self.batch.push((element, index));
            self.wire.push(message);
            if too_big {
                break;
            }
        }
    }

    /// Hands the first element's failure to the stage; false if the stage fails.
    fn first_failed(&mut self, io: &mut Io<'_, T, Infallible>, failure: Failure) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let (element, index) = self.batch.remove(0);
        let message = self.wire.remove(0);
        self.attempt += 1;
        match io.element_failed(element, index, self.attempt, failure) {
            Verdict::Retry { element, delay } => {
                self.batch.insert(0, (element, index));
                self.wire.insert(0, message);
                self.retry_at = Some(Box::pin(tokio::time::sleep(delay)));
                true
            }
            Verdict::Settled => {
                self.attempt = 0;
                true
            }
            Verdict::Escalated => false,
        }
    }

    /// Starts `job` on `conn` (connecting first when there is none).
    fn start(&mut self, job: Job, conn: Option<Conn>, wire: Vec<Message>) {
        let settings = Arc::clone(&self.settings);
        let counters = Arc::clone(&self.counters);
        let Ok(target) = self.target.clone() else {
            return; // rejected when the pipeline was built
        };
        self.work = Some((
            job,
            Box::pin(async move {
                let (mut conn, fresh) = match conn {
                    Some(conn) => (conn, false),
                    None => match connect(&target, &settings, &counters).await {
                        Ok(conn) => (conn, true),
                        Err(failure) => {
                            return Done {
                                conn: None,
                                fresh: false,
                                result: Err(failure),
                            };
                        }
                    },
                };
                let timeout = settings.write_timeout;
                let outcome = match job {
                    Job::Write | Job::Ping => {
                        tokio::time::timeout(timeout, async {
                            for message in wire {
                                conn.feed(message).await?;
                            }
                            conn.flush().await
                        })
                        .await
                    }
                    Job::Close => {
                        tokio::time::timeout(timeout, async {
                            let frame = CloseFrame {
                                code: CloseCode::Normal,
                                reason: "end of stream".into(),
                            };
                            conn.close(Some(frame)).await?;
                            // The server's close frame, then the end.
                            while let Some(next) = conn.next().await {
                                next?;
                            }
                            Ok(())
                        })
                        .await
                    }
                };
                let url = &settings.url;
                let result = match outcome {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(Failure::error(
                        ErrorClass::Transient,
                        format!("websocket sink: write to {url}: {e}"),
                    )),
                    Err(_) => Err(Failure::error(
                        ErrorClass::Timeout,
                        format!("websocket sink: write to {url}: timed out after {timeout:?}"),
                    )),
                };
                let keep = result.is_ok() && job != Job::Close;
                Done {
                    conn: keep.then_some(conn),
                    fresh,
                    result,
                }
            }),
        ));
    }

    /// Reads what the server sent while the sink is idle: pongs, pings (the
    /// answer goes out with this read), data (ignored), and its close frame or
    /// the end of the connection, which drops it (the next batch reconnects).
    fn poll_incoming(&mut self, cx: &mut Context<'_>) {
        let Some(conn) = &mut self.conn else { return };
        loop {
            match conn.poll_next_unpin(cx) {
                Poll::Pending => return,
                Poll::Ready(Some(Ok(message))) => {
                    self.liveness.heard();
                    if matches!(message, Message::Pong(_)) {
                        let _ = self.counters.pongs.add(1);
                    }
                }
                Poll::Ready(Some(Err(_)) | None) => {
                    let _ = self.counters.closed_by_peer.add(1);
                    tracing::debug!(url = %self.settings.url, "websocket sink: the server closed the connection");
                    self.conn = None;
                    return;
                }
            }
        }
    }

    /// Pings a silent server, or drops a connection silent for the idle
    /// timeout. True if it did either.
    fn poll_alarm(&mut self, cx: &mut Context<'_>) -> bool {
        if self.conn.is_none() {
            return false;
        }
        let Some((at, alarm)) = self.liveness.due() else {
            return false;
        };
        let timer = self
            .alarm
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        match alarm {
            Alarm::Idle => {
                let _ = self.counters.idle_closed.add(1);
                tracing::debug!(url = %self.settings.url, "websocket sink: the server was silent past the idle timeout");
                self.conn = None;
            }
            Alarm::Ping => {
                let conn = self.conn.take();
                self.start(Job::Ping, conn, vec![Message::Ping(Default::default())]);
            }
        }
        true
    }
}

/// Connects to `target` and does the handshake, within `connect_timeout`.
async fn connect<T>(
    target: &Target,
    settings: &Settings<T>,
    counters: &SinkCounters,
) -> Result<Conn, Failure> {
    let url = &settings.url;
    let attempt = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| {
                Failure::error(
                    ErrorClass::Transient,
                    format!("websocket sink: connect to {url}: {e}"),
                )
            })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn ConnIo> = Box::new(tcp);
        #[cfg(feature = "wss")]
        let stream = match &target.tls {
            None => stream,
            Some(config) => {
                let name =
                    tokio_rustls::rustls::pki_types::ServerName::try_from(target.host.clone())
                        .map_err(|e| {
                            Failure::error(
                                ErrorClass::Permanent,
                                format!(
                                    "websocket sink: {url}: {:?} is no TLS server name: {e}",
                                    target.host
                                ),
                            )
                        })?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, stream)
                    .await
                    .map_err(|e| {
                        Failure::error(
                            ErrorClass::Transient,
                            format!("websocket sink: {url}: TLS handshake failed: {e}"),
                        )
                    })?;
                Box::new(tls) as Box<dyn ConnIo>
            }
        };
        let mut request = target.uri.clone().into_client_request().map_err(|e| {
            Failure::error(ErrorClass::Permanent, format!("websocket sink: {url}: {e}"))
        })?;
        for (name, value) in &settings.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let config = options::config(MAX_INCOMING);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|e| refused(url, e))?;
        Ok(ws)
    };
    match tokio::time::timeout(settings.connect_timeout, attempt).await {
        Ok(Ok(ws)) => {
            let _ = counters.connects.add(1);
            Ok(ws)
        }
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(Failure::error(
            ErrorClass::Timeout,
            format!(
                "websocket sink: connect to {url}: timed out after {:?}",
                settings.connect_timeout
            ),
        )),
    }
}

/// The failure of a handshake: an HTTP answer other than `101` names its
/// status and the start of its body; `4xx` cannot be helped by retrying
/// (`Permanent`), except `408` and `429`.
fn refused(url: &str, error: WsProtoError) -> Failure {
    let WsProtoError::Http(response) = error else {
        return Failure::error(
            ErrorClass::Transient,
            format!("websocket sink: handshake with {url}: {error}"),
        );
    };
    let status = response.status();
    let class = match status.as_u16() {
        408 => ErrorClass::Timeout,
        429 => ErrorClass::ResourceExhausted,
        400..=499 => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    };
    let body = response.body().as_deref().unwrap_or_default();
    let excerpt = String::from_utf8_lossy(&body[..body.len().min(256)]);
    Failure::error(
        class,
        format!(
            "websocket sink: {url} refused the handshake: HTTP {status}: {}",
            excerpt.trim()
        ),
    )
}

impl<T: Send + 'static> Operator for WsSinkStage<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "websocket_sink"
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.settings;
        if let Err(why) = &self.target {
            return Err(why.clone());
        }
        if let Some(why) = s.invalid.first() {
            return Err(format!("websocket sink: {why}"));
        }
        if s.max_batch == 0 {
            return Err("websocket sink: max_batch must be at least 1, got 0".into());
        }
        if s.max_message_bytes == 0 {
            return Err("websocket sink: max_message_bytes must be at least 1, got 0".into());
        }
        if s.connect_timeout.is_zero() || s.write_timeout.is_zero() {
            return Err(
                "websocket sink: connect_timeout and write_timeout must be above zero".into(),
            );
        }
        if s.heartbeat.is_some_and(|h| h.is_zero()) || s.idle_timeout.is_some_and(|i| i.is_zero()) {
            return Err(
                "websocket sink: heartbeat and idle_timeout must be above zero (or None)".into(),
            );
        }
        if let (Some(beat), Some(idle)) = (s.heartbeat, s.idle_timeout)
            && idle <= beat
        {
            return Err(format!(
                "websocket sink: idle_timeout ({idle:?}) must be longer than the heartbeat ({beat:?})"
            ));
        }
        Ok(())
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        self.batch.len()
    }

    fn supervise_elements(&mut self, _setup: ElementSupervision<T>) -> bool {
        // The sink keeps the elements themselves until they are written, so
        // it needs no copies.
        true
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, cx: &mut Context<'_>) -> Step {
        loop {
            if let Some(timer) = &mut self.retry_at {
                if timer.as_mut().poll(cx).is_pending() {
                    return Step::Continue;
                }
                self.retry_at = None;
            }
            if let Some((job, work)) = &mut self.work {
                let Poll::Ready(done) = work.as_mut().poll(cx) else {
                    return Step::Continue;
                };
                let job = *job;
                self.work = None;
                self.conn = done.conn;
                if done.fresh && self.conn.is_some() {
                    self.liveness.heard();
                }
                match (job, done.result) {
                    (Job::Write, Ok(())) => {
                        let n = self.batch.len();
                        self.batch.clear();
                        self.wire.clear();
                        self.attempt = 0;
                        let _ = self.counters.sent.add(n as u64);
                        io.complete(n);
                    }
                    (Job::Write, Err(failure)) => {
                        let _ = self.counters.failures.add(1);
                        tracing::warn!(url = %self.settings.url, error = %failure.message(), "websocket sink: write failed");
                        if !self.first_failed(io, failure) {
                            return Step::Continue;
                        }
                    }
                    (Job::Ping, Ok(())) => {
                        let _ = self.counters.pings.add(1);
                        self.liveness.pinged();
                    }
                    (Job::Ping, Err(_)) => {
                        let _ = self.counters.failures.add(1);
                    }
                    (Job::Close, _) => return Step::Finished,
                }
                continue;
            }
            self.poll_incoming(cx);
            if self.batch.is_empty() {
                self.take(io);
            }
            if self.batch.is_empty() {
                if io.input_exhausted() {
                    let Some(conn) = self.conn.take() else {
                        return Step::Finished;
                    };
                    self.start(Job::Close, Some(conn), Vec::new());
                    continue;
                }
                if self.poll_alarm(cx) {
                    continue;
                }
                return Step::Continue;
            }
            let max = self.settings.max_message_bytes;
            if let Some(len) = self.wire.first().map(Message::len).filter(|&len| len > max) {
                let failure = Failure::error(
                    ErrorClass::Permanent,
                    format!(
                        "websocket sink: an element of {len} bytes is over max_message_bytes ({max})"
                    ),
                );
                if !self.first_failed(io, failure) {
                    return Step::Continue;
                }
                continue;
            }
            let conn = self.conn.take();
            let wire = self.wire.clone();
            self.start(Job::Write, conn, wire);
        }
    }
}
