//! [`Pem`]: where PEM input comes from, and the private helpers that load it.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// PEM input: a file (read when the configuration is built) or bytes in memory.
///
/// # Examples
///
/// ```
/// use weir_net::tls::Pem;
/// assert_eq!(Pem::file("/etc/weir/cert.pem").origin(), "/etc/weir/cert.pem");
/// assert_eq!(Pem::memory("-----BEGIN CERTIFICATE-----...").origin(), "in-memory PEM");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// A PEM file.
    File(PathBuf),
    /// PEM text in memory.
    Memory(Vec<u8>),
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print what may be a private key.
        match self {
            Pem::File(path) => f.debug_tuple("File").field(path).finish(),
            Pem::Memory(bytes) => write!(f, "Memory({} bytes)", bytes.len()),
        }
    }
}

impl Pem {
    /// A PEM file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Pem::File(path.into())
    }

    /// PEM text in memory.
    pub fn memory(pem: impl Into<Vec<u8>>) -> Self {
        Pem::Memory(pem.into())
    }

    /// Where it comes from, as errors name it: the path, or `in-memory PEM`.
    pub fn origin(&self) -> String {
        match self {
            Pem::File(path) => path.display().to_string(),
            Pem::Memory(_) => "in-memory PEM".to_owned(),
        }
    }

    fn bytes(&self, what: &'static str) -> Result<std::borrow::Cow<'_, [u8]>, TlsError> {
        match self {
            Pem::Memory(bytes) => Ok(bytes.as_slice().into()),
            Pem::File(path) => {
                std::fs::read(path)
                    .map(Into::into)
                    .map_err(|source| TlsError::Read {
                        what,
                        path: path.display().to_string(),
                        source: Arc::new(source),
                    })
            }
        }
    }

    /// Every certificate, each checked to be X.509 (not only valid base64).
    pub(crate) fn certificates(
        &self,
        what: &'static str,
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let bytes = self.bytes(what)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.parse_error(what, error.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::Missing {
                what,
                origin: self.origin(),
            });
        }
        for (i, cert) in certs.iter().enumerate() {
            // webpki's parser: a block of garbage that is valid base64 fails here,
            // not at the first handshake.
            tokio_rustls::rustls::server::ParsedCertificate::try_from(cert).map_err(|error| {
                self.parse_error(what, format!("certificate #{}: {error}", i + 1))
            })?;
        }
        Ok(certs)
    }

    /// The first private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let what = "private key";
        let bytes = self.bytes(what)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
            tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing {
                what,
                origin: self.origin(),
            },
            error => self.parse_error(what, error.to_string()),
        })
    }

    /// A root store of the certificates.
    pub(crate) fn root_store(&self, into: &mut RootCertStore) -> Result<(), TlsError> {
        let what = "CA certificates";
        for (i, cert) in self.certificates(what)?.into_iter().enumerate() {
            into.add(cert).map_err(|error| {
                self.parse_error(what, format!("certificate #{}: {error}", i + 1))
            })?;
        }
        Ok(())
    }

    fn parse_error(&self, what: &'static str, reason: String) -> TlsError {
        TlsError::Parse {
            what,
            origin: self.origin(),
            reason,
        }
    }
}
