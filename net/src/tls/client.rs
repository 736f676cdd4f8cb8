//! [`TlsClientConfig`] (the settings) and [`TlsConnector`] (what they build):
//! the client side of TLS, for the TCP sink and the connecting side of a duplex
//! connection.

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::check::identity;
use super::{Pem, TlsError, provider};

/// The settings of a TLS client: the name the server's certificate must carry,
/// the CAs trusted to sign it, and optionally a client certificate (for servers
/// that require one).
///
/// TLS 1.3 only, with rustls and the `ring` provider. Nothing is read until
/// [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use weir_net::tls::{Pem, TlsClientConfig, TlsError};
/// # let ca_params = { let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
/// #     p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained); p };
/// # let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
/// # let ca_pem = ca.pem();
/// let connector = TlsClientConfig::new("ingest.example.com")
///     .ca(Pem::memory(ca_pem))
///     .build()?;
///
/// // Nothing to verify the server with: refused.
/// let error = TlsClientConfig::new("ingest.example.com").build().unwrap_err();
/// assert!(matches!(error, TlsError::NoRoots));
/// # drop(connector);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct TlsClientConfig {
    server_name: String,
    cas: Vec<Pem>,
    roots: Option<RootCertStore>,
    identity: Option<(Pem, Pem)>,
}

impl TlsClientConfig {
    /// A client verifying that the server's certificate is valid for
    /// `server_name` (a DNS name or an IP address; not the port).
    pub fn new(server_name: impl Into<String>) -> Self {
        TlsClientConfig {
            server_name: server_name.into(),
            cas: Vec::new(),
            roots: None,
            identity: None,
        }
    }

    /// Trusts the CA certificates in `ca` (may be called more than once).
    pub fn ca(mut self, ca: Pem) -> Self {
        self.cas.push(ca);
        self
    }

    /// Trusts the certificates of a prepared rustls root store (for example
    /// the system's, loaded with `rustls-native-certs`), with those of
    /// [`ca`](Self::ca).
    pub fn roots(mut self, roots: RootCertStore) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Presents this certificate chain and key when the server asks for one.
    pub fn client_cert(mut self, cert_chain: Pem, key: Pem) -> Self {
        self.identity = Some((cert_chain, key));
        self
    }

    /// Reads and checks everything.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file and the reason (missing, does not parse,
    /// key does not match), [`TlsError::NoRoots`] without any CA, or
    /// [`TlsError::ServerName`] for a name that is neither a DNS name nor an IP
    /// address.
    pub fn build(&self) -> Result<TlsConnector, TlsError> {
        let server_name = ServerName::try_from(self.server_name.clone()).map_err(|error| {
            TlsError::ServerName {
                name: self.server_name.clone(),
                reason: error.to_string(),
            }
        })?;
        let mut roots = self.roots.clone().unwrap_or_else(RootCertStore::empty);
        for ca in &self.cas {
            ca.root_store(&mut roots)?;
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots);
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert_chain, key)) => {
                builder.with_client_cert_resolver(identity(cert_chain, key)?)
            }
        };
        Ok(TlsConnector::from_rustls(Arc::new(config), server_name))
    }
}

/// A checked TLS client configuration and the server name it verifies, from
/// [`TlsClientConfig::build`]; cheap to clone.
#[derive(Clone)]
pub struct TlsConnector {
    pub(crate) inner: tokio_rustls::TlsConnector,
    pub(crate) server_name: ServerName<'static>,
}

impl TlsConnector {
    /// A rustls client configuration made elsewhere, verifying `server_name`.
    pub fn from_rustls(config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Self {
        TlsConnector {
            inner: tokio_rustls::TlsConnector::from(config),
            server_name,
        }
    }

    /// The name the server's certificate must carry.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}
