//! TLS for weir's HTTP servers (feature `server-tls`): the SSE endpoint
//! ([`Sse::tls`](crate::sse::Sse::tls)), the console
//! ([`Console::tls`](crate::console::Console::tls)), the HTTP ingest source
//! ([`HttpSource::tls`](crate::http_source::HttpSource::tls)) and the WebSocket
//! servers ([`WsSource::tls`](crate::websocket::WsSource::tls),
//! [`WsBroadcast::tls`](crate::websocket::WsBroadcast::tls)), each with the
//! features that build it.
//!
//! The configuration is the one weir's TCP source takes
//! ([`TlsServerConfig`], from `weir-net`): rustls, TLS 1.3 only, the `ring`
//! provider, a certificate chain and key as PEM files or PEM in memory
//! ([`Pem`]), and optionally client certificates ([`ClientAuth`]: none, optional,
//! required — mutual TLS). HTTP/1.1 is spoken inside TLS; no ALPN protocol is
//! offered (clients fall back to HTTP/1.1 by themselves).
//!
//! - **Bad input fails `serve`.** Each server reads and checks the files when
//!   it starts: a missing file, PEM that does not parse, a certificate that is
//!   not X.509, a key that does not match the certificate is the server's error
//!   (`SseError::Tls`, `ConsoleError::Tls`, …) holding the [`TlsError`] that
//!   names the file and the reason; nothing is bound.
//! - **A refused handshake is counted, logged, and admits nothing.** The
//!   handshake must complete within the server's header timeout. One that fails
//!   (a plaintext client, a client that does not trust the certificate, a
//!   missing or untrusted client certificate) or times out closes that
//!   connection before anything it sent is read as HTTP: it is counted (the
//!   server's `tls_handshake_failures` and the counter
//!   `weir_<server>_tls_handshake_failures_total{addr}`) and logged at `warn`
//!   with the peer and the reason. No request is served, no SSE or WebSocket
//!   client subscribed, no element admitted.
//! - **The bearer token is checked inside TLS.** With a token set
//!   (`bearer_token`), a request without it or with another is answered `401`,
//!   counted (`unauthorized`) and logged at `warn` (never the token).
//!
//! See `docs/security.md` for the threat model of each server.
//!
//! # Examples
//!
//! An SSE endpoint over TLS; a certificate file that is missing is an error
//! naming it:
//!
//! ```
//! use weir::hub::NoSubscriber;
//! use weir::prelude::*;
//! use weir::server_tls::{Pem, TlsServerConfig};
//! use weir::sse::{Sse, SseError};
//! # let ca_params = { let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! #     p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained); p };
//! # let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
//! # let key = rcgen::KeyPair::generate()?;
//! # let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &ca)?;
//! # let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
//!
//! let rt = Runtime::builder().arbiters(1).build()?;
//! let (_ingress, flow) = Pipeline::ingress::<u64>(16);
//! let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
//! let _running = runnable.run(&rt)?;
//!
//! let tls = TlsServerConfig::new(Pem::memory(cert_pem), Pem::memory(key_pem));
//! let server = Sse::json(hub.clone())
//!     .tls(tls)
//!     .bearer_token("s3cret")
//!     .serve("127.0.0.1:0".parse()?)?;
//! println!("events on https://localhost:{}/events", server.local_addr().port());
//! assert_eq!(server.stats().tls_handshake_failures, 0);
//!
//! let missing = TlsServerConfig::new(Pem::file("/nonexistent/cert.pem"), Pem::file("key.pem"));
//! let error = Sse::json(hub).tls(missing).serve("127.0.0.1:0".parse()?).unwrap_err();
//! assert!(matches!(error, SseError::Tls { .. }));
//! assert!(error.to_string().contains("/nonexistent/cert.pem"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use weir_net::tls::{ClientAuth, Pem, TlsError, TlsServerConfig};
