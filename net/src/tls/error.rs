//! [`TlsError`]: why a TLS configuration could not be built.

use std::sync::Arc;

/// A TLS configuration that cannot be built, naming the PEM input (a file's
/// path, or `in-memory PEM`) and the reason.
///
/// Returned by [`TlsServerConfig::build`](super::TlsServerConfig::build) and
/// [`TlsClientConfig::build`](super::TlsClientConfig::build): bad certificates
/// and keys are found when the configuration is built, before any connection.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read (missing, unreadable).
    #[error("tls: cannot read the {what} file {path}: {source}")]
    Read {
        /// What the file was to hold (`certificate chain`, `private key`, `CA certificates`).
        what: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The input is not valid PEM, or a certificate in it is not valid X.509.
    #[error("tls: the {what} in {origin} does not parse: {reason}")]
    Parse {
        /// What the input was to hold.
        what: &'static str,
        /// The file's path, or `in-memory PEM`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The input holds no item of the kind expected (no `CERTIFICATE`, no
    /// `PRIVATE KEY` block).
    #[error("tls: no {what} found in {origin}")]
    Missing {
        /// What the input was to hold.
        what: &'static str,
        /// The file's path, or `in-memory PEM`.
        origin: String,
    },
    /// The private key is not the key of the certificate chain's first
    /// certificate, or is of a kind the crypto provider cannot use.
    #[error("tls: the private key in {key} does not match the certificate in {cert}: {reason}")]
    KeyMismatch {
        /// Where the certificate chain came from.
        cert: String,
        /// Where the key came from.
        key: String,
        /// What rustls said.
        reason: String,
    },
    /// The server name a client verifies is not a valid DNS name or IP address.
    #[error("tls: invalid server name {name:?}: {reason}")]
    ServerName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A client configuration without any CA certificate to verify the server.
    #[error("tls: the client trusts no CA: give one with TlsClientConfig::ca or ::roots")]
    NoRoots,
    /// rustls refused the configuration for another reason.
    #[error("tls: {0}")]
    Config(String),
}
