//! TLS on the TCP source, the TCP sink and duplex connections: round trips with
//! and without client certificates; a plaintext client, an untrusted server
//! certificate, a missing or untrusted client certificate are refused, counted
//! (stats and `weir_tcp_source_tls_handshake_failures_total`), and admit
//! nothing; bad PEM input fails `build()` with an error naming the file.
//! Certificates are generated here with rcgen, never committed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use weir_net::duplex::{Duplex, DuplexConfig, DuplexSink};
use weir_net::frame::Framing;
use weir_net::tcp::{TcpSink, TcpSinkConfig, TcpSourceConfig, TcpSourceHandle, listen};
use weir_net::tls::rustls;
use weir_net::tls::{ClientAuth, Pem, TlsClientConfig, TlsError, TlsServerConfig};
use weir_operators::{FlowExt, Pipeline};
use weir_runtime::Runtime;

/// A CA and what it signed, as PEM text.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

/// A fresh CA, a server certificate for `localhost` and a client certificate
/// (`client`), both signed by it.
fn pki() -> (Pki, Pki) {
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

fn mem(pem: &str) -> Pem {
    Pem::memory(pem.as_bytes().to_vec())
}

fn runtime() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

fn wait_for(what: &str, handle: &TcpSourceHandle, done: impl Fn(&TcpSourceHandle) -> bool) {
    let start = Instant::now();
    while !done(handle) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: {:?}",
            handle.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A blocking rustls client to `addr` trusting `ca`, with an optional identity.
fn raw_client(
    addr: std::net::SocketAddr,
    ca: &str,
    identity: Option<&Pki>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn sink_to_source_over_mutual_tls() {
    let (server, client) = pki();
    let acceptor = TlsServerConfig::new(mem(&server.cert), mem(&server.key))
        .client_auth(ClientAuth::Required(mem(&server.ca)))
        .build()
        .unwrap();
    let rt = runtime();
    let (handle, flow) = listen(
        "127.0.0.1:0",
        TcpSourceConfig::new(Framing::LengthPrefixed).tls(acceptor),
    )
    .unwrap();
    let received = flow.map(|f| f.bytes).take(100).collect().run(&rt).unwrap();
    let connector = TlsClientConfig::new("localhost")
        .ca(mem(&client.ca))
        .client_cert(mem(&client.cert), mem(&client.key))
        .build()
        .unwrap();
    let (sink, stats) = TcpSink::new(
        handle.local_addr().to_string(),
        TcpSinkConfig::new(Framing::LengthPrefixed)
            .max_batch(7)
            .tls(connector),
    );
    let elements: Vec<Vec<u8>> = (0..100_u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let sent = TcpSink::attach(Pipeline::from_iter(elements.clone()), sink)
        .run(&rt)
        .unwrap();
    sent.wait().unwrap().report.check_conservation().unwrap();
    let done = received.wait().unwrap();
    assert_eq!(done.output, elements);
    done.report.check_conservation().unwrap();
    assert_eq!(stats.connects(), 1);
    assert_eq!(stats.tls_handshake_failures(), 0);
    let s = handle.stats();
    assert_eq!((s.frames, s.tls_handshake_failures), (100, 0));
}

#[test]
fn plaintext_client_is_refused_counted_and_admits_nothing() {
    let (server, _) = pki();
    let acceptor = TlsServerConfig::new(mem(&server.cert), mem(&server.key))
        .build()
        .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (handle, flow) = metrics::with_local_recorder(&recorder, || {
        listen(
            "127.0.0.1:0",
            TcpSourceConfig::new(Framing::Lines).tls(acceptor),
        )
        .unwrap()
    });
    let rt = runtime();
    let received = flow.map(|f| f.bytes).collect().run(&rt).unwrap();
    let mut plain = TcpStream::connect(handle.local_addr()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Lines that would be valid frames on a plain listener.
    plain
        .write_all(b"GET / HTTP/1.1\r\nhello\nworld\n")
        .unwrap();
    wait_for("handshake failure counted", &handle, |h| {
        h.stats().tls_handshake_failures == 1
    });
    // The server closed the connection (it may first send an alert).
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    assert!(!rest.windows(5).any(|w| w == b"hello"));

    // A TLS client is still served afterwards.
    let mut tls = raw_client(handle.local_addr(), &server.ca, None);
    tls.write_all(b"fine\n").unwrap();
    tls.flush().unwrap();
    wait_for("the TLS client's frame", &handle, |h| h.stats().frames == 1);
    drop(tls);
    handle.close();
    let done = received.wait().unwrap();
    assert_eq!(done.output, [b"fine".to_vec()]);
    done.report.check_conservation().unwrap();
    let stats = handle.stats();
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.tls_handshake_failures, 1);
    assert_eq!(stats.bad_frames, 0);

    let addr = handle.local_addr().to_string();
    let exported = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| {
            key.key().name() == "weir_tcp_source_tls_handshake_failures_total"
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "addr" && l.value() == addr)
        })
        .map(|(.., value)| value);
    assert_eq!(exported, Some(DebugValue::Counter(1)));
}

#[test]
fn sink_refuses_a_server_certificate_it_does_not_trust() {
    let (server, _) = pki();
    let (other, _) = pki();
    let acceptor = TlsServerConfig::new(mem(&server.cert), mem(&server.key))
        .build()
        .unwrap();
    let rt = runtime();
    let (handle, flow) = listen(
        "127.0.0.1:0",
        TcpSourceConfig::new(Framing::Lines).tls(acceptor),
    )
    .unwrap();
    let received = flow.map(|f| f.bytes).collect().run(&rt).unwrap();
    // Trusts another CA: the server's certificate is refused.
    let connector = TlsClientConfig::new("localhost")
        .ca(mem(&other.ca))
        .build()
        .unwrap();
    let (sink, stats) = TcpSink::new(
        handle.local_addr().to_string(),
        TcpSinkConfig::new(Framing::Lines).tls(connector),
    );
    let sent = TcpSink::attach(Pipeline::from_iter(["secret".to_owned()]), sink)
        .run(&rt)
        .unwrap();
    let error = sent.wait().unwrap_err().to_string();
    assert!(
        error.contains("TLS handshake with") && error.contains("certificate"),
        "{error}"
    );
    assert_eq!(stats.tls_handshake_failures(), 1);
    assert_eq!(stats.written(), 0);
    // The client's alert fails the server's side of the handshake too.
    wait_for("server counted the failure", &handle, |h| {
        h.stats().tls_handshake_failures == 1
    });
    handle.close();
    assert!(received.wait().unwrap().output.is_empty());
    assert_eq!(handle.stats().frames, 0);
}

#[test]
fn missing_or_untrusted_client_certificate_is_refused_when_required() {
    let (server, client) = pki();
    let (_, stranger) = pki();
    let acceptor = TlsServerConfig::new(mem(&server.cert), mem(&server.key))
        .client_auth(ClientAuth::Required(mem(&server.ca)))
        .build()
        .unwrap();
    let rt = runtime();
    let (handle, flow) = listen(
        "127.0.0.1:0",
        TcpSourceConfig::new(Framing::Lines).tls(acceptor),
    )
    .unwrap();
    let received = flow.map(|f| f.bytes).collect().run(&rt).unwrap();
    for (n, identity) in [(1, None), (2, Some(&stranger))] {
        let mut tls = raw_client(handle.local_addr(), &server.ca, identity);
        // TLS 1.3: the client's side completes, the server then refuses it.
        let _ = tls.write_all(b"intruder\n").and_then(|()| tls.flush());
        wait_for("client certificate refused", &handle, |h| {
            h.stats().tls_handshake_failures == n
        });
        let mut rest = Vec::new();
        assert!(tls.read_to_end(&mut rest).is_err() || rest.is_empty());
    }
    let mut tls = raw_client(handle.local_addr(), &server.ca, Some(&client));
    tls.write_all(b"member\n").unwrap();
    tls.flush().unwrap();
    wait_for("the member's frame", &handle, |h| h.stats().frames == 1);
    drop(tls);
    handle.close();
    assert_eq!(received.wait().unwrap().output, [b"member".to_vec()]);
    assert_eq!(handle.stats().tls_handshake_failures, 2);
}

#[test]
fn a_sink_without_the_required_client_certificate_writes_nothing() {
    let (server, client) = pki();
    let (_, stranger) = pki();
    let acceptor = TlsServerConfig::new(mem(&server.cert), mem(&server.key))
        .client_auth(ClientAuth::Required(mem(&server.ca)))
        .build()
        .unwrap();
    let rt = runtime();
    let (handle, flow) = listen(
        "127.0.0.1:0",
        TcpSourceConfig::new(Framing::Lines).tls(acceptor),
    )
    .unwrap();
    let received = flow.map(|f| f.bytes).collect().run(&rt).unwrap();
    for (n, connector) in [
        TlsClientConfig::new("localhost").ca(mem(&client.ca)),
        TlsClientConfig::new("localhost")
            .ca(mem(&client.ca))
            .client_cert(mem(&stranger.cert), mem(&stranger.key)),
    ]
    .into_iter()
    .enumerate()
    {
        let (sink, stats) = TcpSink::new(
            handle.local_addr().to_string(),
            TcpSinkConfig::new(Framing::Lines).tls(connector.build().unwrap()),
        );
        let sent = TcpSink::attach(Pipeline::from_iter(["lost?".to_owned()]), sink)
            .run(&rt)
            .unwrap();
        // The server's refusal arrives after the client's side of the handshake
        // and before the first write.
        let error = sent.wait().unwrap_err().to_string();
        assert!(error.contains("TLS handshake with"), "{error}");
        assert_eq!(stats.written(), 0);
        assert_eq!(stats.tls_handshake_failures(), 1);
        wait_for("server refused the client", &handle, |h| {
            h.stats().tls_handshake_failures == n as u64 + 1
        });
    }
    handle.close();
    assert!(received.wait().unwrap().output.is_empty());
}

#[test]
fn optional_client_certificate_serves_anonymous_clients_but_checks_presented_ones() {
    let (server, _) = pki();
    let (_, stranger) = pki();
    let acceptor = TlsServerConfig::new(mem(&server.cert), mem(&server.key))
        .client_auth(ClientAuth::Optional(mem(&server.ca)))
        .build()
        .unwrap();
    let rt = runtime();
    let (handle, flow) = listen(
        "127.0.0.1:0",
        TcpSourceConfig::new(Framing::Lines).tls(acceptor),
    )
    .unwrap();
    let received = flow.map(|f| f.bytes).collect().run(&rt).unwrap();
    let mut anonymous = raw_client(handle.local_addr(), &server.ca, None);
    anonymous.write_all(b"anonymous\n").unwrap();
    anonymous.flush().unwrap();
    wait_for("the anonymous frame", &handle, |h| h.stats().frames == 1);
    let mut wrong = raw_client(handle.local_addr(), &server.ca, Some(&stranger));
    let _ = wrong.write_all(b"intruder\n").and_then(|()| wrong.flush());
    wait_for("the stranger refused", &handle, |h| {
        h.stats().tls_handshake_failures == 1
    });
    drop((anonymous, wrong));
    handle.close();
    assert_eq!(received.wait().unwrap().output, [b"anonymous".to_vec()]);
}

#[test]
fn duplex_over_tls_refuses_an_untrusted_peer() {
    let (server, _) = pki();
    let (other, _) = pki();
    let acceptor = TlsServerConfig::new(mem(&server.cert), mem(&server.key))
        .build()
        .unwrap();
    let connector = TlsClientConfig::new("localhost")
        .ca(mem(&other.ca))
        .build()
        .unwrap();
    let rt = runtime();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = DuplexConfig::new();
    let (a_sink, a_source, a) =
        Duplex::connect_tls::<&str>(listener.local_addr().unwrap(), connector, config.clone())
            .unwrap();
    let (b_sink, b_source, b) = Duplex::accept_tls::<&str>(&listener, acceptor, config).unwrap();
    let a_out = DuplexSink::attach(Pipeline::from_iter(["x"; 3]), a_sink)
        .run(&rt)
        .unwrap();
    let b_out = DuplexSink::attach(Pipeline::from_iter(["y"; 3]), b_sink)
        .run(&rt)
        .unwrap();
    let a_in = a_source.collect().run(&rt).unwrap();
    let b_in = b_source.collect().run(&rt).unwrap();
    let a_error = a_in.wait().unwrap_err().to_string();
    assert!(a_error.contains("TLS handshake refused"), "{a_error}");
    assert!(b_in.wait().is_err());
    assert!(a_out.wait().is_err());
    assert!(b_out.wait().is_err());
    assert_eq!((a.stats().received, b.stats().received), (0, 0));
    assert!(
        b.failure().unwrap().contains("TLS handshake"),
        "{:?}",
        b.failure()
    );
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_certificates_and_keys_fail_build_naming_the_file() {
    let (server, client) = pki();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(&dir, "cert.pem", &server.cert);
    let key = write(&dir, "key.pem", &server.key);
    let other_key = write(&dir, "other-key.pem", &client.key);
    let garbage = write(
        &dir,
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    let torn = write(&dir, "torn.pem", &server.cert[..server.cert.len() / 2]);
    let empty = write(&dir, "empty.pem", "nothing here\n");
    let missing = dir.path().join("missing.pem");

    // From files, it works.
    let ca = write(&dir, "ca.pem", &server.ca);
    TlsServerConfig::new(Pem::file(&cert), Pem::file(&key))
        .client_auth(ClientAuth::Required(Pem::file(&ca)))
        .build()
        .unwrap();
    TlsClientConfig::new("localhost")
        .ca(Pem::file(&ca))
        .client_cert(Pem::file(&cert), Pem::file(&key))
        .build()
        .unwrap();

    let server_error = |cert: &PathBuf, key: &PathBuf| {
        TlsServerConfig::new(Pem::file(cert), Pem::file(key))
            .build()
            .unwrap_err()
    };
    let e = server_error(&missing, &key);
    assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    assert!(e.to_string().contains("certificate chain"), "{e}");

    let e = server_error(&garbage, &key);
    assert!(matches!(e, TlsError::Parse { .. }), "{e:?}");
    assert!(e.to_string().contains("garbage.pem"), "{e}");

    let e = server_error(&torn, &key);
    assert!(matches!(e, TlsError::Parse { .. }), "{e:?}");
    assert!(e.to_string().contains("torn.pem"), "{e}");

    let e = server_error(&empty, &key);
    assert!(matches!(e, TlsError::Missing { .. }), "{e:?}");
    assert!(e.to_string().contains("empty.pem"), "{e}");

    let e = server_error(&cert, &empty);
    assert!(
        matches!(
            e,
            TlsError::Missing {
                what: "private key",
                ..
            }
        ),
        "{e:?}"
    );

    let e = server_error(&cert, &other_key);
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    assert!(
        e.to_string().contains("other-key.pem") && e.to_string().contains("cert.pem"),
        "{e}"
    );

    let e = TlsServerConfig::new(Pem::file(&cert), Pem::file(&key))
        .client_auth(ClientAuth::Required(Pem::file(&missing)))
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains("CA certificates") && e.to_string().contains("missing.pem"),
        "{e}"
    );

    let e = TlsClientConfig::new("localhost")
        .ca(Pem::file(&garbage))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("garbage.pem"), "{e}");
    let e = TlsClientConfig::new("localhost")
        .ca(mem(&server.ca))
        .client_cert(Pem::file(&cert), Pem::file(&other_key))
        .build()
        .unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    let e = TlsClientConfig::new("not a name!")
        .ca(mem(&server.ca))
        .build()
        .unwrap_err();
    assert!(matches!(e, TlsError::ServerName { .. }), "{e:?}");
    assert!(matches!(
        TlsClientConfig::new("localhost").build(),
        Err(TlsError::NoRoots)
    ));
}
