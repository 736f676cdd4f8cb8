//! [`TcpSourceConfig`] and [`ConnectionQuota`]: the limits of a TCP source.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::frame::Framing;

/// What a connection over its quota gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverQuota {
    /// The connection is not read until the quota allows its next frame: the
    /// peer is slowed down by TCP backpressure and no frame is lost (default).
    #[default]
    Delay,
    /// Frames over the quota are dropped and counted
    /// ([`TcpSourceStats::over_quota_dropped`](super::TcpSourceStats::over_quota_dropped));
    /// the connection goes on.
    Drop,
}

/// A per-connection rate quota: `per_second` frames a second, with bursts of up to
/// `burst` frames (GCRA, the `governor` crate, read on tokio's clock).
///
/// # Examples
///
/// ```
/// use weir_net::tcp::{ConnectionQuota, OverQuota};
/// let quota = ConnectionQuota::per_second(100).burst(10).over_quota(OverQuota::Drop);
/// assert_eq!(quota.per_second_value(), 100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct ConnectionQuota {
    per_second: u32,
    burst: u32,
    mode: OverQuota,
}

impl ConnectionQuota {
    /// `per_second` frames a second per connection, bursts of 1, delaying
    /// (0 is rejected when the pipeline is built).
    pub fn per_second(per_second: u32) -> Self {
        ConnectionQuota {
            per_second,
            burst: 1,
            mode: OverQuota::Delay,
        }
    }

    /// Frames a connection may send at once after a quiet period.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// What happens to frames over the quota.
    pub fn over_quota(mut self, mode: OverQuota) -> Self {
        self.mode = mode;
        self
    }

    /// The rate, frames a second.
    pub fn per_second_value(&self) -> u32 {
        self.per_second
    }

    /// The burst.
    pub fn burst_value(&self) -> u32 {
        self.burst
    }

    /// What happens to frames over the quota.
    pub fn mode(&self) -> OverQuota {
        self.mode
    }

    pub(crate) fn governor(&self) -> Option<governor::Quota> {
        let rate = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst)?;
        Some(governor::Quota::per_second(rate).allow_burst(burst))
    }
}

/// The limits of a [`TcpSource`](super::TcpSource). Every limit is on by default.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_net::frame::Framing;
/// use weir_net::tcp::{ConnectionQuota, TcpSourceConfig};
///
/// let config = TcpSourceConfig::new(Framing::Lines)
///     .max_frame(4096)
///     .max_connections(100)
///     .idle_timeout(Duration::from_secs(30))
///     .read_timeout(Duration::from_secs(5))
///     .quota(ConnectionQuota::per_second(1_000).burst(100));
/// assert!(config.check().is_ok());
/// assert!(config.max_connections(0).check().unwrap_err().contains("max_connections"));
/// ```
#[derive(Debug, Clone)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct TcpSourceConfig {
    pub(crate) framing: Framing,
    pub(crate) max_frame: usize,
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) quota: Option<ConnectionQuota>,
    pub(crate) buffer: usize,
    pub(crate) read_chunk: usize,
    pub(crate) backlog: u32,
    pub(crate) name: String,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsAcceptor>,
}

impl TcpSourceConfig {
    /// Defaults: 64 KiB frames, 1 024 connections, 60 s idle timeout, 10 s read
    /// timeout, no quota, a buffer of 256 frames, 4 KiB reads, a backlog of 1 024.
    pub fn new(framing: Framing) -> Self {
        TcpSourceConfig {
            framing,
            max_frame: 64 * 1024,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(10),
            quota: None,
            buffer: 256,
            read_chunk: 4096,
            backlog: 1024,
            name: "tcp-source".to_owned(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The largest frame accepted (bytes, without framing). A larger one closes the
    /// connection. It is also what one connection may pin in memory.
    pub fn max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// Connections served at once; more are accepted and closed at once (counted
    /// as refused), so the source never holds more descriptors than this plus its
    /// listener.
    pub fn max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// A connection that sends nothing for this long is closed.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// A frame must be complete this long after its first byte arrived, or the
    /// connection is closed: this is what stops a peer trickling a byte at a time.
    /// Time the connection waits on backpressure does not count.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// A rate quota per connection.
    pub fn quota(mut self, quota: ConnectionQuota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Frames decoded but not yet taken by the pipeline, over all connections.
    /// When it is full, connections stop reading their sockets. Choosing it: a few
    /// batches; the pipeline's own edges hold the rest.
    pub fn buffer(mut self, frames: usize) -> Self {
        self.buffer = frames;
        self
    }

    /// Bytes read from a socket at once (the per-connection read buffer).
    pub fn read_chunk(mut self, bytes: usize) -> Self {
        self.read_chunk = bytes;
        self
    }

    /// Connections the kernel may hold before they are accepted (the `listen`
    /// backlog, default 1 024; the kernel caps it at `net.core.somaxconn`). They
    /// are not descriptors of this process.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// The stage name written in the dead letters of bad input.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Serves TLS only (feature `tls`): every connection must complete a TLS
    /// handshake with `acceptor` within the
    /// [`read_timeout`](Self::read_timeout) before anything it sends is read as
    /// frames. A connection whose handshake fails (a plaintext client, a client
    /// that does not trust the certificate, a client certificate missing or
    /// not signed by the CAs of [`ClientAuth`](crate::tls::ClientAuth)) is
    /// closed, counted in
    /// [`TcpSourceStats::tls_handshake_failures`](super::TcpSourceStats::tls_handshake_failures)
    /// and logged (`warn`); nothing it sent is admitted.
    ///
    /// # Examples
    ///
    /// See the [`tls`](crate::tls) module.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, acceptor: crate::tls::TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// A message naming the setting that is wrong.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("max_frame", self.max_frame),
            ("max_connections", self.max_connections),
            ("buffer", self.buffer),
            ("read_chunk", self.read_chunk),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("tcp source: {name} must be at least 1, got 0"));
            }
        }
        if self.max_frame > u32::MAX as usize {
            return Err(format!(
                "tcp source: max_frame must be at most {} (u32 lengths), got {}",
                u32::MAX,
                self.max_frame
            ));
        }
        for (name, value) in [
            ("idle_timeout", self.idle_timeout),
            ("read_timeout", self.read_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("tcp source: {name} must be above zero"));
            }
        }
        if let Some(quota) = &self.quota
            && quota.governor().is_none()
        {
            return Err(format!(
                "tcp source: quota needs per_second >= 1 and burst >= 1, got {} and {}",
                quota.per_second, quota.burst
            ));
        }
        Ok(())
    }
}
