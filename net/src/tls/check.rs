//! Checking PEM input without building a configuration ([`check_ca`],
//! [`check_identity`]), and the certificate-and-key check every `build()`
//! shares.

use std::sync::Arc;

use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::sign::{CertifiedKey, SingleCertAndKey};

use super::{Pem, TlsError, provider};

/// Reads and checks CA certificates as [`TlsClientConfig::build`] and
/// [`ClientAuth`] do: the input is read, every certificate in it parses as
/// X.509 and can be a trust anchor. For a client that hands the file to a TLS
/// library of its own (weir-nats gives its path to async-nats) and wants bad
/// input named before it connects.
///
/// [`TlsClientConfig::build`]: super::TlsClientConfig::build
/// [`ClientAuth`]: super::ClientAuth
///
/// # Errors
///
/// A [`TlsError`] naming the file (or `in-memory PEM`) and the reason: missing
/// or unreadable ([`TlsError::Read`]), PEM or a certificate that does not parse
/// ([`TlsError::Parse`]), no certificate in it ([`TlsError::Missing`]).
///
/// # Examples
///
/// ```
/// use weir_net::tls::{Pem, TlsError, check_ca};
/// let error = check_ca(&Pem::file("/nonexistent/ca.pem")).unwrap_err();
/// assert!(matches!(error, TlsError::Read { what: "CA certificates", .. }));
/// assert!(error.to_string().contains("/nonexistent/ca.pem"));
/// ```
pub fn check_ca(ca: &Pem) -> Result<(), TlsError> {
    ca.root_store(&mut RootCertStore::empty())
}

/// Reads a certificate chain and its private key and checks that the key is
/// the first certificate's, as every `build()` does. For a client that hands
/// the files to a TLS library of its own (see [`check_ca`]).
///
/// # Errors
///
/// A [`TlsError`] naming the file and the reason: [`TlsError::Read`],
/// [`TlsError::Parse`], [`TlsError::Missing`] (its `what` says which input:
/// `certificate chain` or `private key`), or [`TlsError::KeyMismatch`] naming
/// both.
pub fn check_identity(cert_chain: &Pem, key: &Pem) -> Result<(), TlsError> {
    identity(cert_chain, key).map(drop)
}

/// The certificate chain and its key, checked to match, as rustls serves or
/// presents them.
pub(crate) fn identity(cert_chain: &Pem, key: &Pem) -> Result<Arc<SingleCertAndKey>, TlsError> {
    let certs = cert_chain.certificates("certificate chain")?;
    let private_key = key.private_key()?;
    let certified = CertifiedKey::from_der(certs, private_key, &provider()).map_err(|error| {
        TlsError::KeyMismatch {
            cert: cert_chain.origin(),
            key: key.origin(),
            reason: error.to_string(),
        }
    })?;
    Ok(Arc::new(SingleCertAndKey::from(certified)))
}
