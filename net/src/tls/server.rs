//! [`TlsServerConfig`] (the settings) and [`TlsAcceptor`] (what they build): the
//! server side of TLS, for the TCP source and the accepting side of a duplex
//! connection.

use std::sync::Arc;

use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use super::check::identity;
use super::{Pem, TlsError, provider};

/// Whether a TLS server asks its clients for a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (default): any client that completes
    /// the handshake is served.
    #[default]
    None,
    /// A client may present a certificate; if it does, it must be signed by one
    /// of these CAs, or the handshake fails. A client without one is served.
    Optional(Pem),
    /// Every client must present a certificate signed by one of these CAs
    /// (mutual TLS); a client without one, or with another, is refused.
    Required(Pem),
}

/// The settings of a TLS server: its certificate chain and private key (PEM
/// files or in memory) and whether clients must present certificates.
///
/// TLS 1.3 only, with rustls and the `ring` provider (the ones async-nats
/// compiles). Nothing is read until [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use weir_net::tls::{ClientAuth, Pem, TlsServerConfig};
/// # let ca_params = { let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
/// #     p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained); p };
/// # let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
/// # let key = rcgen::KeyPair::generate()?;
/// # let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &ca)?;
/// # let (cert_pem, key_pem, ca_pem) = (cert.pem(), key.serialize_pem(), ca.pem());
/// let acceptor = TlsServerConfig::new(Pem::memory(cert_pem), Pem::memory(key_pem))
///     .client_auth(ClientAuth::Required(Pem::memory(ca_pem)))
///     .build()?;
///
/// // A missing file is an error naming it.
/// let error = TlsServerConfig::new(Pem::file("/nonexistent/cert.pem"), Pem::file("key.pem"))
///     .build()
///     .unwrap_err();
/// assert!(error.to_string().contains("/nonexistent/cert.pem"));
/// # drop(acceptor);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct TlsServerConfig {
    cert_chain: Pem,
    key: Pem,
    client_auth: ClientAuth,
}

impl TlsServerConfig {
    /// A server presenting `cert_chain` (its own certificate first, then the
    /// intermediates) with the private key `key` (PKCS#8, PKCS#1 or SEC1).
    pub fn new(cert_chain: Pem, key: Pem) -> Self {
        TlsServerConfig {
            cert_chain,
            key,
            client_auth: ClientAuth::None,
        }
    }

    /// Whether clients must present a certificate, and which CAs sign them.
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// Reads and checks everything: each file is read, each certificate parsed,
    /// the key matched against the certificate.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file (or `in-memory PEM`) and the reason: a
    /// missing file, PEM or a certificate that does not parse, no key, a key that
    /// does not match the certificate.
    pub fn build(&self) -> Result<TlsAcceptor, TlsError> {
        let identity = identity(&self.cert_chain, &self.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(ca) | ClientAuth::Required(ca) => {
                let mut roots = RootCertStore::empty();
                ca.root_store(&mut roots)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = match &self.client_auth {
                    ClientAuth::Optional(_) => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier.build().map_err(|error| TlsError::Parse {
                    what: "CA certificates",
                    origin: ca.origin(),
                    reason: error.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_cert_resolver(identity);
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            client_auth: match self.client_auth {
                ClientAuth::None => "none",
                ClientAuth::Optional(_) => "optional",
                ClientAuth::Required(_) => "required",
            },
        })
    }
}

/// A checked TLS server configuration, from [`TlsServerConfig::build`]; cheap
/// to clone (the rustls configuration is shared).
#[derive(Clone)]
pub struct TlsAcceptor {
    pub(crate) inner: tokio_rustls::TlsAcceptor,
    client_auth: &'static str,
}

impl TlsAcceptor {
    /// A rustls server configuration made elsewhere (another provider, session
    /// resumption, ALPN…), used as it is.
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
            client_auth: "custom",
        }
    }

    /// The rustls server configuration it accepts with (for serving another
    /// protocol over it, as the `weir` facade's HTTP servers do).
    pub fn rustls_config(&self) -> Arc<ServerConfig> {
        Arc::clone(self.inner.config())
    }
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}
