//! Helpers the graph test suites share.
#![allow(dead_code, unreachable_pub)]

use weir::prelude::*;

pub mod crash;

/// Lets every actor on this single-threaded System run until nothing moves.
pub async fn settle() {
    for _ in 0..500 {
        tokio::task::yield_now().await;
    }
}

/// A runtime with one arbiter.
pub fn rt1() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// Adds a sink that collects `from` and returns its receiver.
pub fn collect<T: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    g: &mut Graph,
    from: Outlet<T>,
) -> weir::OutputReceiver<Vec<T>> {
    g.sink(from, |f| f.collect())
}

/// The sink's result, once the graph has completed.
pub fn take<R>(rx: weir::OutputReceiver<R>) -> R {
    futures::executor::block_on(rx).expect("the sink handed over its result")
}

/// Runs `f` on an actix System whose tokio clock is paused: timers fire as soon
/// as nothing else can run, in virtual time.
pub fn paused<R, Fut>(f: impl FnOnce(Runtime) -> Fut) -> R
where
    Fut: std::future::Future<Output = R>,
{
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    });
    system.block_on(async move { f(Runtime::from_current().unwrap()).await })
}

/// A certificate and its key, and the CA that signed it, as PEM text.
pub struct Pki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A fresh CA, a server certificate for `localhost` and a client certificate
/// (`client`), both signed by it; generated here, never committed.
pub fn pki() -> (Pki, Pki) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let issue = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        Pki {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    };
    (issue("localhost"), issue("client"))
}

/// A fresh CA (as PEM) and a TLS acceptor for `localhost` with a certificate it
/// signed; generated here, never committed.
pub fn tls_server() -> (String, tokio_rustls::TlsAcceptor) {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (server, _) = pki();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(server.cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
        )
        .unwrap();
    (server.ca, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A blocking TLS client stream (rustls) to `addr`, verifying the server's
/// certificate for `localhost` against `ca` and presenting `identity` when
/// given; the handshake happens at the first read or write. Reads time out
/// after 5 s.
pub fn tls_client(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<&Pki>,
) -> tokio_rustls::rustls::StreamOwned<tokio_rustls::rustls::ClientConnection, std::net::TcpStream>
{
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Waits until `done` holds, polling every 5 ms; panics naming `what` after
/// 10 s.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A small deterministic generator (xorshift), seeded from the clock and
/// printed, so that a failing run can be told apart.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
