//! TLS for the client sinks (`https://` for the HTTP client sink, feature
//! `https`; `wss://` for the WebSocket client sink, feature `wss`): the rustls
//! client configuration a sink's connections use, built when the pipeline is
//! built so that a CA file that is missing or does not parse is a `BuildError`
//! naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// What a sink trusts.
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    /// PEM files of further CAs to trust (a private CA, a self-signed server).
    pub(crate) ca_files: Vec<PathBuf>,
    /// Trust only `ca_files`, not the system's roots.
    pub(crate) without_system_roots: bool,
    /// A configuration given whole (client certificates, pinned roots, …).
    pub(crate) config: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_files", &self.ca_files)
            .field("without_system_roots", &self.without_system_roots)
            .field("config", &self.config.is_some())
            .finish()
    }
}

impl TlsSettings {
    /// The client configuration: the given one, or the system's roots plus the
    /// CA files, TLS 1.3 with the `ring` provider, no client certificate. No
    /// ALPN protocols: the HTTP connector offers `http/1.1` itself (and refuses a
    /// configuration that already names some).
    pub(crate) fn client_config(&self, who: &str) -> Result<Arc<ClientConfig>, String> {
        if let Some(config) = &self.config {
            if !config.alpn_protocols.is_empty() {
                return Err(format!(
                    "{who}: the TLS configuration must name no ALPN protocols (the sink \
                     offers its protocol itself)"
                ));
            }
            return Ok(Arc::clone(config));
        }
        let mut roots = RootCertStore::empty();
        if !self.without_system_roots {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A system certificate rustls cannot use is skipped, as every
                // rustls client does; the others still verify.
                let _ = roots.add(cert);
            }
        }
        for path in &self.ca_files {
            for cert in read_certs(who, path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{who}: CA file {}: {e}", path.display()))?;
            }
        }
        if roots.is_empty() {
            return Err(format!(
                "{who}: no root certificate to verify servers with (no system roots found \
                 and no ca_file)"
            ));
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("{who}: TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// Every certificate of a PEM file: at least one.
fn read_certs(who: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("{who}: CA file {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{who}: CA file {}: not PEM certificates: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{who}: CA file {}: no certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}
