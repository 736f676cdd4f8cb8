//! [`NatsError`]: what went wrong talking to NATS, with the cause kept as the
//! error's [`source`](std::error::Error::source).

use std::error::Error as StdError;
use std::fmt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use crate::server::INSTALL_HINT;

/// A client error kept as a cause: async-nats has one error type per request, so
/// the cause is boxed; shared so that [`NatsError`] stays `Clone`.
pub type NatsCause = Arc<dyn StdError + Send + Sync + 'static>;

/// An error talking to NATS: connecting, creating a stream or consumer,
/// publishing, fetching, flushing, or starting a [`TestServer`](crate::TestServer).
///
/// Every variant with a cause keeps it as the error's
/// [`source`](std::error::Error::source), typed: an async-nats error, a
/// [`std::io::Error`] or a [`tokio::task::JoinError`], behind an `Arc` so the error
/// stays `Clone`. The message names what was being done and includes the cause.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use weir_nats::NatsError;
///
/// let err = NatsError::Io {
///     operation: "binding a port".into(),
///     source: std::sync::Arc::new(std::io::Error::other("no ports left")),
/// };
/// assert_eq!(err.to_string(), "nats: binding a port: no ports left");
/// assert!(err.source().unwrap().downcast_ref::<std::io::Error>().is_some());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NatsError {
    /// The server could not be reached or refused the connection
    /// ([`refusal`](NatsError::refusal) says which and why). Logged at `warn`
    /// when it happens; a refusal is also counted.
    Connect {
        /// The URL given to [`Nats::connect`](crate::Nats::connect) (the
        /// message shows it with any user and password replaced by `***`).
        url: String,
        /// The client's error.
        source: Arc<async_nats::ConnectError>,
    },
    /// A file of the [`NatsOptions`](crate::NatsOptions) (CA certificates,
    /// client certificate or key, credentials) is missing, unreadable or does
    /// not parse (a certificate that is not X.509 included), or the client key
    /// is not the client certificate's. Found before connecting.
    File {
        /// What the file was to hold (`"credentials"`, `"CA certificates"`, …).
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
        /// The I/O error, when the file could not be read.
        source: Option<Arc<std::io::Error>>,
    },
    /// A [`NatsOptions`](crate::NatsOptions) value is invalid (an nkey seed
    /// that does not decode); the message never includes the secret.
    InvalidOptions(String),
    /// A request to the server failed: creating or looking up a stream or
    /// consumer, publishing, fetching, flushing.
    Request {
        /// What was being done (`"creating the stream"`, `"publish"`, …).
        operation: &'static str,
        /// The client's error (one of async-nats' request error types).
        source: NatsCause,
    },
    /// An I/O operation failed: starting the connection's thread or runtime, or
    /// the test server.
    Io {
        /// What was being done.
        operation: String,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
    /// The connection's thread stopped: the connection is gone.
    ThreadStopped,
    /// A task on the connection's runtime panicked or was cancelled.
    Task(Arc<tokio::task::JoinError>),
    /// A [`ConsumerSettings`](crate::ConsumerSettings) value is invalid; the
    /// message names the setting and the rule it breaks.
    InvalidSettings(String),
    /// No `nats-server` binary was found (the message says how to install one).
    ServerMissing,
    /// The test server exited while starting.
    ServerExited(ExitStatus),
    /// The test server did not accept connections in time.
    ServerTimeout(Duration),
}

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsError::Connect { url, source } => {
                let url = crate::refused::redacted(url);
                let why = match source.kind() {
                    async_nats::ConnectErrorKind::AuthorizationViolation => {
                        "the server refused the credentials: "
                    }
                    async_nats::ConnectErrorKind::Tls => "TLS failed: ",
                    _ if tls_cause(&**source) => "TLS failed: ",
                    async_nats::ConnectErrorKind::Authentication => "authentication failed: ",
                    _ => "",
                };
                write!(f, "nats: cannot connect to {url}: {why}{source}")
            }
            NatsError::File {
                what, path, reason, ..
            } => write!(f, "nats: the {what} file {path}: {reason}"),
            NatsError::InvalidOptions(what) => write!(f, "nats: invalid options: {what}"),
            NatsError::Request { operation, source } => {
                write!(f, "nats: {operation} failed: {source}")
            }
            NatsError::Io { operation, source } => write!(f, "nats: {operation}: {source}"),
            NatsError::ThreadStopped => f.write_str("nats: the connection thread stopped"),
            NatsError::Task(e) => {
                write!(f, "nats: a task on the connection's runtime failed: {e}")
            }
            NatsError::InvalidSettings(what) => {
                write!(f, "nats: invalid consumer settings: {what}")
            }
            NatsError::ServerMissing => write!(f, "nats: {INSTALL_HINT}"),
            NatsError::ServerExited(status) => {
                write!(f, "nats: nats-server exited at start: {status}")
            }
            NatsError::ServerTimeout(limit) => {
                write!(f, "nats: nats-server did not start within {limit:?}")
            }
        }
    }
}

// Written out, not derived: the source is the error inside the `Arc` (so it
// downcasts to the client's, I/O or join error type), not the `Arc` itself.
impl StdError for NatsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            NatsError::Connect { source, .. } => Some(&**source),
            NatsError::Request { source, .. } => Some(&**source),
            NatsError::Io { source, .. } => Some(&**source),
            NatsError::File { source, .. } => source.as_deref().map(|e| e as _),
            NatsError::Task(e) => Some(&**e),
            NatsError::InvalidOptions(_)
            | NatsError::ThreadStopped
            | NatsError::InvalidSettings(_)
            | NatsError::ServerMissing
            | NatsError::ServerExited(_)
            | NatsError::ServerTimeout(_) => None,
        }
    }
}

/// Why a server refused a connection, from [`NatsError::refusal`]: also the
/// `reason` label of the counter `weir_nats_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// TLS failed: the server's certificate is not trusted (a client without
    /// the server's CA, a wrong CA), the server offers no TLS though it is
    /// required, or the server refused the client certificate or its absence.
    Tls,
    /// The server refused the credentials (a wrong token, password, nkey or
    /// JWT, or none where it requires one), or they could not sign its nonce.
    Credentials,
}

impl Refusal {
    /// `"tls"` or `"credentials"`, as the counter's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Tls => "tls",
            Refusal::Credentials => "credentials",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NatsError {
    /// Why the server refused the connection, for a [`NatsError::Connect`]
    /// that is a refusal; `None` for every other error, a server that cannot
    /// be reached included.
    ///
    /// # Examples
    ///
    /// ```
    /// // Nothing listens on port 1: not reached, so not refused.
    /// let error = weir_nats::Nats::connect("127.0.0.1:1").unwrap_err();
    /// assert_eq!(error.refusal(), None);
    /// ```
    pub fn refusal(&self) -> Option<Refusal> {
        let NatsError::Connect { source, .. } = self else {
            return None;
        };
        match source.kind() {
            async_nats::ConnectErrorKind::AuthorizationViolation
            | async_nats::ConnectErrorKind::Authentication => Some(Refusal::Credentials),
            async_nats::ConnectErrorKind::Tls => Some(Refusal::Tls),
            _ if tls_cause(&**source) => Some(Refusal::Tls),
            _ => None,
        }
    }
}

/// True if rustls is somewhere in `error`'s chain of causes (the client reports
/// a refused certificate as an I/O error).
fn tls_cause(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<async_nats::rustls::Error>() {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
        {
            return true;
        }
        next = error.source();
    }
    false
}

impl NatsError {
    /// A failed request, `operation` naming it.
    pub(crate) fn request<E: StdError + Send + Sync + 'static>(
        operation: &'static str,
    ) -> impl FnOnce(E) -> NatsError {
        move |source| NatsError::Request {
            operation,
            source: Arc::new(source),
        }
    }

    /// A failed I/O operation, `operation` naming it.
    pub(crate) fn io(operation: impl Into<String>) -> impl FnOnce(std::io::Error) -> NatsError {
        let operation = operation.into();
        move |source| NatsError::Io {
            operation,
            source: Arc::new(source),
        }
    }
}

impl From<tokio::task::JoinError> for NatsError {
    fn from(e: tokio::task::JoinError) -> Self {
        NatsError::Task(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn causes_are_kept_as_typed_sources() {
        let err =
            NatsError::io("starting the connection's thread")(std::io::Error::other("EAGAIN"));
        assert_eq!(
            err.to_string(),
            "nats: starting the connection's thread: EAGAIN"
        );
        let source = err.source().expect("an I/O cause");
        assert!(source.downcast_ref::<std::io::Error>().is_some());

        let err = NatsError::request("flush")(std::fmt::Error);
        assert!(err.to_string().starts_with("nats: flush failed: "), "{err}");
        let source = err.source().expect("the client's error");
        assert!(source.downcast_ref::<std::fmt::Error>().is_some());

        assert!(NatsError::ThreadStopped.source().is_none());
        assert!(
            NatsError::ServerMissing
                .to_string()
                .contains("apt-get install")
        );
    }

    #[test]
    fn a_refused_connection_keeps_the_client_error() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let err = crate::Nats::connect("127.0.0.1:1").unwrap_err();
        assert!(matches!(err, NatsError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
        let source = err.source().expect("the client's error");
        assert!(source.downcast_ref::<async_nats::ConnectError>().is_some());
    }
}
