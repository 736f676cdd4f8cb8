//! [`Opening`]: how a server opens an accepted connection before HTTP is
//! spoken on it, as it is or (feature `server-tls`) after a TLS handshake; and
//! [`Conn`], the connection it yields.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use weir_runtime::observe::Tally;

/// An accepted connection, ready for HTTP: plain, or TLS once its handshake
/// completed.
#[cfg(feature = "server-tls")]
pub(crate) type Conn =
    tokio_util::either::Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;
/// An accepted connection, ready for HTTP.
#[cfg(not(feature = "server-tls"))]
pub(crate) type Conn = TcpStream;

/// How a server opens its accepted connections, shared by its tasks.
#[derive(Clone)]
pub(crate) struct Opening {
    /// The acceptor, for a TLS listener.
    #[cfg(feature = "server-tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// How long a handshake may take (the server's header timeout).
    #[cfg_attr(not(feature = "server-tls"), allow(dead_code))]
    timeout: Duration,
    /// The server's name in logs.
    #[cfg_attr(not(feature = "server-tls"), allow(dead_code))]
    server: &'static str,
    /// Where failed handshakes are counted (the server's stats and metrics).
    #[cfg_attr(not(feature = "server-tls"), allow(dead_code))]
    failures: Arc<Tally>,
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("server", &self.server)
            .field("tls", &self.is_tls())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Opening {
    /// Plain connections, as accepted; a handshake (see
    /// [`with_tls`](Self::with_tls)) must complete within `timeout`, and one
    /// that fails is counted in `failures`.
    pub(crate) fn plain(server: &'static str, timeout: Duration, failures: Arc<Tally>) -> Self {
        Opening {
            #[cfg(feature = "server-tls")]
            tls: None,
            timeout,
            server,
            failures,
        }
    }

    /// TLS connections when `tls` is set (its certificate and key read and
    /// checked now), plain ones otherwise. A handshake that fails or times out
    /// is counted and logged.
    ///
    /// # Errors
    ///
    /// The [`TlsError`](weir_net::tls::TlsError) naming the file (or
    /// `in-memory PEM`) that is missing, does not parse, or holds a key that
    /// does not match the certificate.
    #[cfg(feature = "server-tls")]
    pub(crate) fn with_tls(
        mut self,
        tls: Option<&weir_net::tls::TlsServerConfig>,
    ) -> Result<Self, weir_net::tls::TlsError> {
        if let Some(config) = tls {
            let acceptor = config.build()?;
            self.tls = Some(tokio_rustls::TlsAcceptor::from(acceptor.rustls_config()));
        }
        Ok(self)
    }

    /// Whether connections are opened with a TLS handshake.
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "server-tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "server-tls"))]
        false
    }

    /// The connection ready for HTTP, or `None` when its TLS handshake failed
    /// or timed out (a plaintext client, a client that does not trust the
    /// certificate, a missing or untrusted client certificate): then it is
    /// counted, logged at `warn` with the peer and the reason, and closed
    /// before anything it sent is read as HTTP.
    pub(crate) async fn open(&self, socket: TcpStream) -> Option<Conn> {
        #[cfg(feature = "server-tls")]
        if let Some(acceptor) = &self.tls {
            let peer = socket.peer_addr().ok();
            let accepted = tokio::time::timeout(self.timeout, acceptor.accept(socket)).await;
            let error = match accepted {
                Ok(Ok(tls)) => return Some(Conn::Right(Box::new(tls))),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("timed out after {:?}", self.timeout),
            };
            let _ = self.failures.add(1);
            tracing::warn!(
                server = self.server,
                peer = ?peer,
                %error,
                "TLS handshake failed, connection refused"
            );
            return None;
        }
        #[cfg(feature = "server-tls")]
        return Some(Conn::Left(socket));
        #[cfg(not(feature = "server-tls"))]
        Some(socket)
    }
}
