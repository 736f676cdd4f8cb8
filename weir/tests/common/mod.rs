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

/// A fresh CA (as PEM) and a TLS acceptor for `localhost` with a certificate it
/// signed; generated here, never committed.
pub fn tls_server() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
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
