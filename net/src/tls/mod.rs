//! TLS for the TCP connectors (feature `tls`): rustls, TLS 1.3, the `ring`
//! crypto provider (the library and provider async-nats already compiles).
//!
//! - [`TlsServerConfig`] → [`TlsAcceptor`]: a certificate chain and key, and
//!   optionally the CAs whose client certificates are accepted
//!   ([`ClientAuth`]). Used by the TCP source
//!   ([`TcpSourceConfig::tls`](crate::tcp::TcpSourceConfig::tls)) and by
//!   [`Duplex::accept_tls`](crate::duplex::Duplex::accept_tls).
//! - [`TlsClientConfig`] → [`TlsConnector`]: the server name to verify, the CAs
//!   trusted, optionally a client certificate. Used by the TCP sink
//!   ([`TcpSinkConfig::tls`](crate::tcp::TcpSinkConfig::tls)) and by
//!   [`Duplex::connect_tls`](crate::duplex::Duplex::connect_tls).
//!
//! Certificates and keys come as PEM ([`Pem`]: a file or bytes in memory) and
//! are read and checked by `build()`: a missing file, PEM that does not parse,
//! a certificate that is not X.509, a key that does not match the certificate
//! is a [`TlsError`] naming the file and the reason, before any connection is
//! made. [`check_ca`] and [`check_identity`] make the same checks for a client
//! that hands the files to a TLS library of its own (weir-nats). A handshake that fails later (a plaintext client, a certificate the
//! other side does not trust, a missing client certificate) closes that
//! connection: the source counts it
//! ([`TcpSourceStats::tls_handshake_failures`](crate::tcp::TcpSourceStats::tls_handshake_failures),
//! `weir_tcp_source_tls_handshake_failures_total`) and logs it, and nothing the
//! peer sent is admitted.
//!
//! See `docs/security.md` for the threat model and `docs/network.md` for the
//! connectors.
//!
//! # Examples
//!
//! A TLS listener and a TLS sink writing to it:
//!
//! ```
//! use weir_net::frame::Framing;
//! use weir_net::tcp::{TcpSink, TcpSinkConfig, TcpSourceConfig, listen};
//! use weir_net::tls::{Pem, TlsClientConfig, TlsServerConfig};
//! use weir_operators::{FlowExt, Pipeline};
//! # let ca_params = { let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! #     p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained); p };
//! # let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
//! # let key = rcgen::KeyPair::generate()?;
//! # let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &ca)?;
//! # let (cert_pem, key_pem, ca_pem) = (cert.pem(), key.serialize_pem(), ca.pem());
//!
//! let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
//! let acceptor = TlsServerConfig::new(Pem::memory(cert_pem), Pem::memory(key_pem)).build()?;
//! let (handle, flow) = listen("127.0.0.1:0", TcpSourceConfig::new(Framing::Lines).tls(acceptor))?;
//! let received = flow.map(|frame| frame.bytes).take(2).collect().run(&rt)?;
//!
//! let connector = TlsClientConfig::new("localhost").ca(Pem::memory(ca_pem)).build()?;
//! let (sink, _stats) = TcpSink::new(handle.local_addr().to_string(), TcpSinkConfig::new(Framing::Lines).tls(connector));
//! let sent = TcpSink::attach(Pipeline::from_iter(["a", "b"].map(String::from)), sink).run(&rt)?;
//! sent.wait()?.report.check_conservation()?;
//! assert_eq!(received.wait()?.output, [b"a".to_vec(), b"b".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod check;
mod client;
mod error;
mod pem;
mod server;

use std::sync::Arc;

pub use check::{check_ca, check_identity};
pub use client::{TlsClientConfig, TlsConnector};
pub use error::TlsError;
pub use pem::Pem;
pub use server::{ClientAuth, TlsAcceptor, TlsServerConfig};
/// The rustls crate weir-net builds on (for [`TlsAcceptor::from_rustls`] and
/// [`TlsConnector::from_rustls`]).
pub use tokio_rustls::rustls;

/// The crypto provider of every configuration built here: `ring`, explicitly,
/// so that nothing depends on a process-wide default provider.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// True if `error` (from a handshake) is rustls refusing the peer (a
/// certificate, an alert, a protocol error) rather than the network failing.
pub(crate) fn is_refusal(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}
