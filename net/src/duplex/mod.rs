//! A bidirectional stream over one TCP connection: both directions carry
//! elements under a sliding window with acknowledgements, with heartbeats and a
//! peer timeout.
//!
//! [`Duplex::connect`] and [`Duplex::accept`] give, for one connection, a
//! [`DuplexSink`] (a flow ends in it: its elements go to the peer) and a flow of
//! the elements the peer sends (a [`DuplexSource`]), and a [`DuplexHandle`] on
//! the connection's figures.
//!
//! # Protocol
//!
//! Each message is one length-prefixed frame ([`Framing::LengthPrefixed`])
//! whose body starts with a tag ([`Message`]): `DATA(seq, payload)`,
//! `ACK(upto)`, `CREDIT(n)`, `PING`, `PONG`, `END(total)`, `ERROR(reason)`.
//!
//! - **Window.** Each side first grants the peer `CREDIT(window)`. The sink
//!   takes an element from its input only while it has credit, so at most the
//!   peer's window is in flight (sent or queued, not acknowledged). The source
//!   hands received elements to its pipeline as the pipeline has room, then
//!   sends `ACK(delivered)` and `CREDIT(k)` for the `k` elements taken. The
//!   receiver buffers at most `window` elements; a `DATA` beyond the granted
//!   window, out of sequence or after `END` is a protocol violation. This is
//!   weir's credit, carried over the connection.
//! - **Completion.** When the sink's input ends, `END(total)` follows the last
//!   `DATA`; the sink stage finishes once every element is acknowledged. The
//!   source stage finishes after the peer's `END` and the elements before it.
//!   The connection is closed once both directions ended.
//! - **Heartbeats.** A side that wrote nothing for `heartbeat` sends `PING`
//!   (answered with `PONG`). If nothing at all arrives from the peer within
//!   `peer_timeout`, or a write stays blocked that long, the connection fails
//!   with class [`ErrorClass::Timeout`](weir_supervisor::ErrorClass::Timeout)
//!   and a message naming the peer and the timeout.
//! - **Failure.** A read or write error, the peer's `ERROR` or the peer closing
//!   early fail the connection (class `Transient`); a malformed frame or a
//!   protocol violation fails it with class `Permanent` and a message naming
//!   what is wrong. Both stages then fail with the same error, and the peer is
//!   told with `ERROR`.
//!
//! # Guarantees
//!
//! An element counts as delivered by the sink only when the peer acknowledged
//! it, that is after the peer's source handed it to its pipeline. When the
//! connection fails, the elements taken by the sink and not acknowledged are
//! counted as abandoned in its report (never silently lost), and the elements
//! the source received but did not hand on are dropped unacknowledged: the peer
//! counts them abandoned. A side that fails or is cancelled first acknowledges
//! what it handed on, then sends `ERROR`. A stage whose own direction had ended
//! cleanly finishes normally even if the connection fails later. Nothing is
//! resent: a failed connection is not resumed.
//!
//! # Examples
//!
//! ```
//! use weir_net::duplex::{Duplex, DuplexConfig, DuplexSink};
//! use weir_operators::{FlowExt, Pipeline};
//!
//! let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let config = DuplexConfig::new().window(4);
//! let (a_sink, a_source, _a) = Duplex::connect(listener.local_addr()?, config.clone())?;
//! let (b_sink, b_source, _b) = Duplex::accept(&listener, config)?;
//!
//! let a_out = DuplexSink::attach(Pipeline::from_iter(["ping"; 10]), a_sink).run(&rt)?;
//! let b_out = DuplexSink::attach(Pipeline::from_iter(["pong"; 10]), b_sink).run(&rt)?;
//! let a_in = a_source.collect().run(&rt)?;
//! let b_in = b_source.collect().run(&rt)?;
//! assert_eq!(a_in.wait()?.output, vec![b"pong".to_vec(); 10]);
//! assert_eq!(b_in.wait()?.output, vec![b"ping".to_vec(); 10]);
//! a_out.wait()?.report.check_conservation()?;
//! b_out.wait()?.report.check_conservation()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Framing::LengthPrefixed`]: crate::frame::Framing::LengthPrefixed

mod driver;
mod protocol;
mod shared;
mod stages;

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use protocol::{HEADER, MAX_REASON, Message, ProtocolError};
pub use stages::{DuplexSink, DuplexSource};
use weir_runtime::Flow;

use shared::Shared;

/// The settings of a duplex connection.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_net::duplex::DuplexConfig;
///
/// let config = DuplexConfig::new()
///     .window(16)
///     .heartbeat(Duration::from_millis(100))
///     .peer_timeout(Duration::from_secs(1));
/// assert!(config.check().is_ok());
/// assert!(DuplexConfig::new().window(0).check().unwrap_err().contains("window"));
/// ```
#[derive(Debug, Clone)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct DuplexConfig {
    window: u32,
    max_payload: usize,
    heartbeat: Duration,
    peer_timeout: Duration,
}

impl Default for DuplexConfig {
    fn default() -> Self {
        DuplexConfig::new()
    }
}

impl DuplexConfig {
    /// Defaults: a window of 64 elements, payloads up to 64 KiB, a heartbeat
    /// every second and a peer timeout of 5 seconds.
    pub fn new() -> Self {
        DuplexConfig {
            window: 64,
            max_payload: 64 * 1024,
            heartbeat: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
        }
    }

    /// How many elements the peer may send before this side acknowledges them:
    /// this side's receive buffer, in elements.
    pub fn window(mut self, window: u32) -> Self {
        self.window = window;
        self
    }

    /// The largest element, in bytes, sent or accepted (a larger one received is
    /// a protocol error; a larger one to send fails with class `Permanent`).
    pub fn max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload;
        self
    }

    /// How long a side may write nothing before it sends a PING.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// How long the peer may stay silent (nothing received) before the
    /// connection fails. Must be above the heartbeat.
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.peer_timeout = timeout;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// A message naming the setting that is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.window == 0 {
            return Err("duplex: window must be at least 1, got 0".to_owned());
        }
        let most = u32::MAX as usize - HEADER;
        if self.max_payload == 0 || self.max_payload > most {
            return Err(format!(
                "duplex: max_payload must be in 1..={most}, got {}",
                self.max_payload
            ));
        }
        if self.heartbeat.is_zero() || self.peer_timeout <= self.heartbeat {
            return Err(format!(
                "duplex: heartbeat must be above zero and peer_timeout above it, got heartbeat {:?} and peer_timeout {:?}",
                self.heartbeat, self.peer_timeout
            ));
        }
        Ok(())
    }
}

/// The figures of one duplex connection, from [`DuplexHandle::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DuplexStats {
    /// Elements sent (DATA written).
    pub sent: u64,
    /// Elements the peer acknowledged.
    pub acknowledged: u64,
    /// Elements received.
    pub received: u64,
    /// Elements handed to the source's pipeline.
    pub delivered: u64,
    /// The most elements ever in flight from this side (taken by the sink, not
    /// acknowledged): never above the peer's window.
    pub max_in_flight: u64,
    /// The most received elements ever buffered on this side: never above this
    /// side's window.
    pub max_buffered: u64,
    /// PINGs sent.
    pub pings_sent: u64,
}

/// Reads a duplex connection's figures and state.
#[derive(Debug, Clone)]
pub struct DuplexHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl DuplexHandle {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// This side's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the figures.
    pub fn stats(&self) -> DuplexStats {
        let state = self.shared.lock();
        DuplexStats {
            sent: state.written,
            acknowledged: state.acked,
            received: state.received,
            delivered: state.delivered,
            max_in_flight: state.max_in_flight,
            max_buffered: state.max_buffered,
            pings_sent: state.pings_sent,
        }
    }

    /// Why the connection failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failure.as_ref().map(|(_, m)| m.clone())
    }

    /// True once both directions ended and the connection was closed cleanly.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

/// The two ends of one duplex connection: a sink to the peer, a flow from it,
/// and a handle.
pub type DuplexEnds<T> = (DuplexSink<T>, Flow<Vec<u8>>, DuplexHandle);

/// Makes duplex connections; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct Duplex;

impl Duplex {
    /// Connects to `addr` (blocking until the TCP connection is made).
    ///
    /// # Errors
    ///
    /// The connection cannot be made.
    pub fn connect<T: AsRef<[u8]> + Send + 'static>(
        addr: impl ToSocketAddrs,
        config: DuplexConfig,
    ) -> std::io::Result<DuplexEnds<T>> {
        Duplex::from_stream(TcpStream::connect(addr)?, config)
    }

    /// Accepts one connection on `listener` (blocking until one comes).
    ///
    /// # Errors
    ///
    /// Accepting fails.
    pub fn accept<T: AsRef<[u8]> + Send + 'static>(
        listener: &TcpListener,
        config: DuplexConfig,
    ) -> std::io::Result<DuplexEnds<T>> {
        let (stream, _) = listener.accept()?;
        Duplex::from_stream(stream, config)
    }

    /// [`connect`](Self::connect) over TLS (feature `tls`): this side is the
    /// TLS client and verifies the peer's certificate with `connector`. The
    /// handshake is made when the first stage starts, within the
    /// `peer_timeout`; if it fails, both stages fail with a message naming the
    /// peer and the reason (class `Permanent` when rustls refused the peer,
    /// e.g. an untrusted certificate) and no element is exchanged.
    ///
    /// # Errors
    ///
    /// The TCP connection cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_net::duplex::{Duplex, DuplexConfig, DuplexSink};
    /// use weir_net::tls::{Pem, TlsClientConfig, TlsServerConfig};
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let ca_params = { let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
    /// #     p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained); p };
    /// # let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    /// # let key = rcgen::KeyPair::generate()?;
    /// # let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &ca)?;
    /// # let (cert_pem, key_pem, ca_pem) = (cert.pem(), key.serialize_pem(), ca.pem());
    ///
    /// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let acceptor = TlsServerConfig::new(Pem::memory(cert_pem), Pem::memory(key_pem)).build()?;
    /// let connector = TlsClientConfig::new("localhost").ca(Pem::memory(ca_pem)).build()?;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let (a_sink, a_source, _a) = Duplex::connect_tls(listener.local_addr()?, connector, DuplexConfig::new())?;
    /// let (b_sink, b_source, _b) = Duplex::accept_tls(&listener, acceptor, DuplexConfig::new())?;
    ///
    /// let a_out = DuplexSink::attach(Pipeline::from_iter(["ping"; 3]), a_sink).run(&rt)?;
    /// let b_out = DuplexSink::attach(Pipeline::from_iter(["pong"; 3]), b_sink).run(&rt)?;
    /// let (a_in, b_in) = (a_source.collect().run(&rt)?, b_source.collect().run(&rt)?);
    /// assert_eq!(a_in.wait()?.output, vec![b"pong".to_vec(); 3]);
    /// assert_eq!(b_in.wait()?.output, vec![b"ping".to_vec(); 3]);
    /// a_out.wait()?.report.check_conservation()?;
    /// b_out.wait()?.report.check_conservation()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn connect_tls<T: AsRef<[u8]> + Send + 'static>(
        addr: impl ToSocketAddrs,
        connector: crate::tls::TlsConnector,
        config: DuplexConfig,
    ) -> std::io::Result<DuplexEnds<T>> {
        let ends = Duplex::from_stream(TcpStream::connect(addr)?, config)?;
        ends.2.shared.lock().tls = Some(shared::Handshake::Client(connector));
        Ok(ends)
    }

    /// [`accept`](Self::accept) over TLS (feature `tls`): this side is the TLS
    /// server, presenting `acceptor`'s certificate and checking the client's
    /// if it requires one. See [`connect_tls`](Self::connect_tls) for the
    /// handshake and its failures.
    ///
    /// # Errors
    ///
    /// Accepting fails.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn accept_tls<T: AsRef<[u8]> + Send + 'static>(
        listener: &TcpListener,
        acceptor: crate::tls::TlsAcceptor,
        config: DuplexConfig,
    ) -> std::io::Result<DuplexEnds<T>> {
        let (stream, _) = listener.accept()?;
        let ends = Duplex::from_stream(stream, config)?;
        ends.2.shared.lock().tls = Some(shared::Handshake::Server(acceptor));
        Ok(ends)
    }

    /// Runs the protocol over an established connection. The configuration is
    /// checked when the pipelines are built (a build error naming the stage).
    ///
    /// # Errors
    ///
    /// The socket's addresses cannot be read.
    pub fn from_stream<T: AsRef<[u8]> + Send + 'static>(
        stream: TcpStream,
        config: DuplexConfig,
    ) -> std::io::Result<DuplexEnds<T>> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let local_addr = stream.local_addr()?;
        let shared = Shared::new(stream, peer, config);
        let handle = DuplexHandle {
            shared: Arc::clone(&shared),
            local_addr,
        };
        let source = Flow::from_source(DuplexSource::new(Arc::clone(&shared)));
        Ok((DuplexSink::new(shared), source, handle))
    }
}
