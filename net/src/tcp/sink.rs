//! [`TcpSink`]: writes framed elements to one TCP peer, reconnecting under the
//! stage's supervision.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_runtime::operator::{Counting, ElementSupervision, Io, Operator, Step, Verdict};
use weir_runtime::{Flow, OutputReceiver, Runnable};
use weir_supervisor::{ErrorClass, Failure};

use crate::frame::{FrameError, Framing, encode};
use crate::stream::NetStream;

/// The settings of a [`TcpSink`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_net::frame::Framing;
/// use weir_net::tcp::TcpSinkConfig;
/// let config = TcpSinkConfig::new(Framing::Lines).max_batch(64).write_timeout(Duration::from_secs(2));
/// assert!(config.check().is_ok());
/// ```
#[derive(Debug, Clone)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct TcpSinkConfig {
    framing: Framing,
    max_frame: usize,
    max_batch: usize,
    connect_timeout: Duration,
    write_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConnector>,
    #[cfg(feature = "tls")]
    tls_confirm: Duration,
}

impl TcpSinkConfig {
    /// Defaults: 64 KiB frames, batches of up to 128 elements, 5 s to connect and
    /// 10 s to write a batch.
    pub fn new(framing: Framing) -> Self {
        TcpSinkConfig {
            framing,
            max_frame: 64 * 1024,
            max_batch: 128,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_confirm: Duration::from_millis(100),
        }
    }

    /// The largest element written; a larger one fails (class `Permanent`).
    pub fn max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// Elements written with one `write_all`: the sink holds at most this many
    /// (plus their encoded bytes) beyond its input queue.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// How long a connection attempt may take (then it fails, class `Timeout`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long writing one batch may take (then it fails, class `Timeout`).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Speaks TLS (feature `tls`): each connection makes a TLS handshake with
    /// `connector` (verifying the server's certificate against its CAs and
    /// server name), within the [`connect_timeout`](Self::connect_timeout),
    /// before anything is written. A failed handshake fails the batch like a
    /// failed connect, counted in [`TcpSinkStats::tls_handshake_failures`]:
    /// class `Permanent` when rustls refused the peer (an untrusted
    /// certificate, a name mismatch, an alert from the server), `Transient`
    /// when the network failed, `Timeout` after the timeout.
    ///
    /// With TLS 1.3 a server that requires a client certificate checks it
    /// after the client finished its side of the handshake, so the sink
    /// listens for the server's verdict for [`tls_confirm`](Self::tls_confirm)
    /// before its first write: a refusal (the server's alert, or the
    /// connection closed) fails the batch like a failed handshake, and nothing
    /// is written into a connection the server already rejected.
    ///
    /// # Examples
    ///
    /// See the [`tls`](crate::tls) module.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, connector: crate::tls::TlsConnector) -> Self {
        self.tls = Some(connector);
        self
    }

    /// How long after a TLS handshake the sink waits for a refusal by the
    /// server before its first write on the connection (default 100 ms; zero
    /// does not wait). Choosing it: above the round-trip time to the server,
    /// which is how long a TLS 1.3 server takes to refuse a client
    /// certificate. It delays only the first batch of each connection. A
    /// refusal that comes later fails the next write instead, and the batch
    /// written in between is lost like bytes a plain TCP peer accepted and
    /// never read.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_confirm(mut self, wait: Duration) -> Self {
        self.tls_confirm = wait;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// A message naming the setting that is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.max_batch == 0 {
            return Err("tcp sink: max_batch must be at least 1, got 0".to_owned());
        }
        if self.max_frame == 0 || self.max_frame > u32::MAX as usize {
            return Err(format!(
                "tcp sink: max_frame must be in 1..={}, got {}",
                u32::MAX,
                self.max_frame
            ));
        }
        if self.connect_timeout.is_zero() || self.write_timeout.is_zero() {
            return Err(
                "tcp sink: connect_timeout and write_timeout must be above zero".to_owned(),
            );
        }
        Ok(())
    }
}

/// Counters of a [`TcpSink`], shared with [`TcpSinkStats`].
#[derive(Debug, Default)]
struct SinkCounters {
    written: AtomicU64,
    connects: AtomicU64,
    write_failures: AtomicU64,
    tls_handshake_failures: AtomicU64,
}

/// Reads a [`TcpSink`]'s counters while it runs.
#[derive(Debug, Clone)]
pub struct TcpSinkStats(Arc<SinkCounters>);

impl TcpSinkStats {
    /// Elements written (and completed).
    pub fn written(&self) -> u64 {
        self.0.written.load(Ordering::Relaxed)
    }

    /// Connections made (the first one and every reconnect).
    pub fn connects(&self) -> u64 {
        self.0.connects.load(Ordering::Relaxed)
    }

    /// Failed connects and writes (each reported to the stage's supervision).
    pub fn write_failures(&self) -> u64 {
        self.0.write_failures.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed or timed out (also counted in
    /// [`write_failures`](Self::write_failures)); always 0 without TLS.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.0.tls_handshake_failures.load(Ordering::Relaxed)
    }
}

/// False if the peer closed the connection (or it failed): a read would return
/// end-of-file or an error now. Bytes the peer sent are discarded (the sink's peer
/// is not expected to talk).
///
/// Over TLS the raw socket is read beneath rustls: what it discards are the
/// server's post-handshake records (session tickets, a closing alert), which a
/// write-only client never needs.
fn peer_still_open(stream: &NetStream) -> bool {
    let mut scratch = [0_u8; 64];
    loop {
        match stream.tcp().try_read(&mut scratch) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

type Write = Pin<Box<dyn Future<Output = (Option<NetStream>, Result<(), Failure>)> + Send>>;

/// The new connection as the sink writes to it: plain, or TLS once the
/// handshake completed.
async fn secure(
    stream: TcpStream,
    addr: &str,
    config: &TcpSinkConfig,
    counters: &SinkCounters,
) -> Result<NetStream, Failure> {
    #[cfg(feature = "tls")]
    if let Some(connector) = &config.tls {
        let handshake = connector
            .inner
            .connect(connector.server_name.clone(), stream);
        let refused = |error: std::io::Error| {
            let class = if crate::tls::is_refusal(&error) {
                ErrorClass::Permanent
            } else {
                ErrorClass::Transient
            };
            Failure::error(class, format!("TLS handshake with {addr}: {error}"))
        };
        let failure = match tokio::time::timeout(config.connect_timeout, handshake).await {
            Ok(Ok(mut tls)) => match confirm(&mut tls, config.tls_confirm).await {
                Ok(()) => return Ok(NetStream::Tls(Box::new(tls.into()))),
                Err(error) => refused(error),
            },
            Ok(Err(error)) => refused(error),
            Err(_) => Failure::error(
                ErrorClass::Timeout,
                format!(
                    "TLS handshake with {addr}: timed out after {:?}",
                    config.connect_timeout
                ),
            ),
        };
        counters
            .tls_handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        return Err(failure);
    }
    let _ = (addr, config, counters);
    Ok(NetStream::Plain(stream))
}

/// Waits up to `wait` for the server's verdict on a completed client
/// handshake: a TLS 1.3 server refuses a client certificate after the client
/// finished. Silence or data means accepted (session tickets are consumed by
/// rustls); an alert or a closed connection means refused.
#[cfg(feature = "tls")]
async fn confirm(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    wait: Duration,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    if wait.is_zero() {
        return Ok(());
    }
    let mut scratch = [0_u8; 64];
    match tokio::time::timeout(wait, tls.read(&mut scratch)).await {
        Err(_) | Ok(Ok(1..)) => Ok(()),
        Ok(Ok(0)) => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the server closed the connection right after the handshake",
        )),
        Ok(Err(error)) => Err(error),
    }
}

/// A sink writing each element, framed, to one TCP peer.
///
/// Elements are taken in batches of up to `max_batch`, encoded and written with
/// one `write_all`; a batch is completed (counted delivered) when the kernel took
/// all its bytes. A failed connect or write fails the batch's first element with
/// class `Transient` (`Timeout` for a timeout), which the stage's supervision
/// decides on:
///
/// - unsupervised, or `Escalate`: the stage fails (the pipeline with it); the
///   batch is counted as abandoned.
/// - `Retry` (or `Restart`): after the policy's backoff the sink reconnects and
///   writes the whole batch again: the reconnect backoff *is* the policy's
///   backoff, and no element taken is lost across a reconnect. Bytes the old
///   connection had accepted may be written twice (at-least-once).
/// - `DeadLetter`/`Skip`: the first element goes to the dead letters (or is
///   skipped), the rest of the batch is written on a new connection.
///
/// An element that cannot be framed (above `max_frame`, or a newline in a line)
/// fails alone with class `Permanent`.
///
/// # Examples
///
/// ```
/// use std::io::{BufRead, BufReader};
/// use weir_net::frame::Framing;
/// use weir_net::tcp::{TcpSink, TcpSinkConfig};
/// use weir_operators::Pipeline;
///
/// let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let addr = server.local_addr()?.to_string();
/// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
/// let (sink, _stats) = TcpSink::new(addr, TcpSinkConfig::new(Framing::Lines));
/// let running = TcpSink::attach(Pipeline::from_iter(["a", "b"].map(String::from)), sink).run(&rt)?;
/// let (conn, _) = server.accept()?;
/// let lines: Vec<String> = BufReader::new(conn).lines().collect::<Result<_, _>>()?;
/// assert_eq!(lines, ["a", "b"]);
/// running.wait()?.report.check_conservation()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TcpSink<T> {
    addr: String,
    config: TcpSinkConfig,
    conn: Option<NetStream>,
    /// Elements taken and not yet written, with their input index; the first is
    /// the one a failure is reported for.
    batch: Vec<(T, u64)>,
    /// Failed attempts of the batch's first element.
    attempt: u32,
    write: Option<Write>,
    retry_at: Option<Pin<Box<tokio::time::Sleep>>>,
    counters: Arc<SinkCounters>,
}

impl<T> std::fmt::Debug for TcpSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpSink")
            .field("addr", &self.addr)
            .field("batch", &self.batch.len())
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: AsRef<[u8]> + Send + 'static> TcpSink<T> {
    /// A sink writing to `addr` (`host:port`, resolved at each connect), and a
    /// handle on its counters.
    pub fn new(addr: impl Into<String>, config: TcpSinkConfig) -> (Self, TcpSinkStats) {
        let counters = Arc::new(SinkCounters::default());
        let sink = TcpSink {
            addr: addr.into(),
            config,
            conn: None,
            batch: Vec::new(),
            attempt: 0,
            write: None,
            retry_at: None,
            counters: Arc::clone(&counters),
        };
        (sink, TcpSinkStats(counters))
    }

    /// Ends `flow` in `sink`: `flow.to(sink, OutputReceiver::ready(()))`.
    pub fn attach(flow: Flow<T>, sink: Self) -> Runnable<()> {
        flow.to(sink, OutputReceiver::ready(()))
    }

    fn start_write(&mut self) {
        let mut wire = Vec::new();
        for (element, _) in &self.batch {
            // Checked when taken: cannot fail here.
            let _ = encode(
                self.config.framing,
                self.config.max_frame,
                element.as_ref(),
                &mut wire,
            );
        }
        // A peer that closed since the last batch: its FIN is already here. Writing
        // into that socket would "succeed" and lose the bytes, so reconnect first.
        let conn = self.conn.take().filter(peer_still_open);
        let addr = self.addr.clone();
        let config = self.config.clone();
        let counters = Arc::clone(&self.counters);
        self.write = Some(Box::pin(async move {
            let mut stream = match conn {
                Some(stream) => stream,
                None => {
                    match tokio::time::timeout(
                        config.connect_timeout,
                        TcpStream::connect(addr.as_str()),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => {
                            counters.connects.fetch_add(1, Ordering::Relaxed);
                            let _ = stream.set_nodelay(true);
                            match secure(stream, &addr, &config, &counters).await {
                                Ok(stream) => stream,
                                Err(failure) => return (None, Err(failure)),
                            }
                        }
                        Ok(Err(error)) => {
                            let message = format!("connect to {addr}: {error}");
                            return (None, Err(Failure::error(ErrorClass::Transient, message)));
                        }
                        Err(_) => {
                            let message = format!(
                                "connect to {addr}: timed out after {:?}",
                                config.connect_timeout
                            );
                            return (None, Err(Failure::error(ErrorClass::Timeout, message)));
                        }
                    }
                }
            };
            let written = async {
                stream.write_all(&wire).await?;
                // TLS buffers records: they are on the wire only once flushed.
                stream.flush().await
            };
            match tokio::time::timeout(config.write_timeout, written).await {
                Ok(Ok(())) => (Some(stream), Ok(())),
                Ok(Err(error)) => {
                    let message = format!("write to {addr}: {error}");
                    (None, Err(Failure::error(ErrorClass::Transient, message)))
                }
                Err(_) => {
                    let message = format!(
                        "write to {addr}: timed out after {:?}",
                        config.write_timeout
                    );
                    (None, Err(Failure::error(ErrorClass::Timeout, message)))
                }
            }
        }));
    }

    /// Why `element` cannot be framed, if it cannot.
    fn frame_error(&self, element: &[u8]) -> Option<FrameError> {
        let max = self.config.max_frame;
        if element.len() > max {
            return Some(FrameError::ElementTooLong {
                len: element.len(),
                max,
            });
        }
        if self.config.framing == Framing::Lines {
            let at = element.iter().position(|&b| b == b'\n')?;
            return Some(FrameError::NewlineInElement { at });
        }
        None
    }

    /// Hands the first element's failure to the stage; false if the stage fails.
    fn first_failed(&mut self, io: &mut Io<'_, T, Infallible>, failure: Failure) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let (element, index) = self.batch.remove(0);
        self.attempt += 1;
        match io.element_failed(element, index, self.attempt, failure) {
            Verdict::Retry { element, delay } => {
                self.batch.insert(0, (element, index));
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
}

impl<T: AsRef<[u8]> + Send + 'static> Operator for TcpSink<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "tcp_sink"
    }

    fn validate(&self) -> Result<(), String> {
        self.config.check()
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        self.batch.len()
    }

    fn supervise_elements(&mut self, _setup: ElementSupervision<T>) -> bool {
        // The sink keeps the elements themselves until they are written, so it
        // needs no copies.
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
            if let Some(write) = &mut self.write {
                let (conn, result) = match write.as_mut().poll(cx) {
                    Poll::Pending => return Step::Continue,
                    Poll::Ready(done) => done,
                };
                self.write = None;
                self.conn = conn;
                match result {
                    Ok(()) => {
                        let n = self.batch.len();
                        self.batch.clear();
                        self.attempt = 0;
                        self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
                        io.complete(n);
                    }
                    Err(failure) => {
                        self.counters.write_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(addr = %self.addr, error = %failure.message(), "tcp sink: write failed");
                        if !self.first_failed(io, failure) {
                            return Step::Continue;
                        }
                    }
                }
                continue;
            }
            if self.batch.is_empty() {
                while self.batch.len() < self.config.max_batch {
                    let index = io.next_index();
                    let Some(element) = io.pop() else { break };
                    let bad = self.frame_error(element.as_ref()).is_some();
                    if bad && !self.batch.is_empty() {
                        // A bad element fails alone, after what is before it.
                        io.unpop(element);
                        break;
                    }
                    self.batch.push((element, index));
                    if bad {
                        break;
                    }
                }
                if self.batch.is_empty() {
                    return io.finish_when_drained();
                }
            }
            if let Some(error) = self
                .batch
                .first()
                .and_then(|(e, _)| self.frame_error(e.as_ref()))
            {
                let failure = Failure::error(ErrorClass::Permanent, error.to_string());
                if !self.first_failed(io, failure) {
                    return Step::Continue;
                }
                continue;
            }
            self.start_write();
        }
    }
}
