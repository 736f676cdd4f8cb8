//! TLS on the HTTP ingest source and the WebSocket source (feature
//! `server-tls`), and bad certificate and key files on every HTTP server: a
//! client without the required client certificate, or with one from another
//! CA, admits nothing; a `wss://` sink delivers everything to a TLS WebSocket
//! source; a certificate that does not parse, a key that does not match, a
//! missing file fail `serve` with the server's error naming the file, and
//! nothing is bound.

use std::io::Write;

use weir::console::{Console, ConsoleError};
use weir::http_source::{HttpSource, HttpSourceError};
use weir::hub::NoSubscriber;
use weir::manager::PipelineManager;
use weir::prelude::*;
use weir::server_tls::{ClientAuth, Pem, TlsServerConfig};
use weir::sse::{Sse, SseError};
use weir::websocket::{WsError, WsSink, WsSinkExt, WsSource};

use super::server_tls::{config, plaintext, send};
use crate::common::{eventually, pki, rt1, tls_client};

fn local() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn post(body: &str) -> String {
    format!(
        "POST /events HTTP/1.1\r\nConnection: close\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn ingest_over_mutual_tls_admits_only_clients_with_a_trusted_certificate() {
    let (server, client) = pki();
    let (_, stranger) = pki();
    let rt = rt1();
    let (ingest, flow) = HttpSource::<u64>::json()
        .tls(config(&server).client_auth(ClientAuth::Required(Pem::memory(server.ca.clone()))))
        .serve(local())
        .unwrap();
    let received = flow.collect().run(&rt).unwrap();
    let addr = ingest.local_addr();
    // A refused client certificate is told after the client finished its
    // side of the handshake: the request may be written, but is never read.
    let ingest_as =
        |identity, body: &str| send(&mut tls_client(addr, &server.ca, identity), &post(body));

    // No client certificate, and one from another CA: refused, nothing admitted.
    let none = ingest_as(None, "1\n2\n");
    assert!(!none.contains("202"), "{none:?}");
    let foreign = ingest_as(Some(&stranger), "3\n");
    assert!(!foreign.contains("202"), "{foreign:?}");
    eventually("both refused handshakes counted", || {
        ingest.stats().tls_handshake_failures == 2
    });
    let answer = plaintext(addr, "/events");
    assert!(!answer.contains("HTTP/1.1"), "{answer:?}");
    eventually("the plaintext client counted", || {
        ingest.stats().tls_handshake_failures == 3
    });
    assert_eq!(ingest.stats().requests, 0);

    // The client with its certificate is served.
    let ok = ingest_as(Some(&client), "4\n5\n");
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");
    let stats = ingest.shutdown();
    let done = received.wait().unwrap();
    assert_eq!(done.output, [4, 5]);
    done.report.check_conservation().unwrap();
    assert_eq!((stats.requests, stats.admitted, stats.elements), (1, 1, 2));
    assert_eq!(stats.tls_handshake_failures, 3);
}

#[test]
fn a_wss_sink_delivers_everything_to_a_tls_websocket_source_and_a_plain_client_nothing() {
    let (server, _) = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &server.ca).unwrap();
    let rt = rt1();
    let (ws, flow) = WsSource::<u64>::json()
        .tls(config(&server))
        .serve(local())
        .unwrap();
    let received = flow.collect().run(&rt).unwrap();
    let port = ws.local_addr().port();

    let answer = plaintext(ws.local_addr(), "/ws");
    assert!(!answer.contains("HTTP/1.1"), "{answer:?}");
    eventually("the plaintext client counted", || {
        ws.stats().tls_handshake_failures == 1
    });

    let sink = WsSink::json(format!("wss://localhost:{port}/ws"))
        .ca_file(&ca_file)
        .without_system_roots();
    let sent = Pipeline::from_iter(0..50_u64)
        .to_websocket(sink)
        .name("ws")
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    sent.report.check_conservation().unwrap();
    eventually("every element accepted", || ws.stats().accepted == 50);
    let stats = ws.shutdown();
    let done = received.wait().unwrap();
    assert_eq!(done.output, (0..50).collect::<Vec<_>>());
    assert_eq!((stats.connections, stats.tls_handshake_failures), (1, 1));
}

/// The server certificate of one CA, and PEM files that cannot be used.
struct BadFiles {
    dir: tempfile::TempDir,
}

impl BadFiles {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = pki();
        let write = |name: &str, text: &str| {
            let mut file = std::fs::File::create(dir.path().join(name)).unwrap();
            file.write_all(text.as_bytes()).unwrap();
        };
        write("cert.pem", &server.cert);
        write("key.pem", &server.key);
        write("other-key.pem", &client.key);
        // Valid PEM framing around bytes that are not X.509.
        write(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
        );
        BadFiles { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn config(&self, cert: &str, key: &str) -> TlsServerConfig {
        TlsServerConfig::new(Pem::file(self.path(cert)), Pem::file(self.path(key)))
    }
}

fn assert_names(error: &dyn std::error::Error, file: &str, reason: &str) {
    let text = error.to_string();
    assert!(text.contains(file), "{text} does not name {file}");
    assert!(text.contains(reason), "{text} does not say {reason:?}");
}

#[test]
fn bad_certificate_and_key_files_fail_serve_naming_the_file() {
    let files = BadFiles::new();
    let missing = files.path("missing.pem");
    let rt = rt1();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Drop);
    let _running = runnable.run(&rt).unwrap();

    // The files as they should be work.
    let good = Sse::json(hub.clone())
        .tls(files.config("cert.pem", "key.pem"))
        .serve(local())
        .unwrap();
    drop(good);

    let sse = |config| Sse::json(hub.clone()).tls(config).serve(local());
    let garbage = sse(files.config("garbage.pem", "key.pem")).unwrap_err();
    assert!(matches!(garbage, SseError::Tls { .. }), "{garbage:?}");
    assert_names(&garbage, &files.path("garbage.pem"), "does not parse");
    let mismatch = sse(files.config("cert.pem", "other-key.pem")).unwrap_err();
    assert_names(&mismatch, &files.path("other-key.pem"), "does not match");
    let absent = sse(files.config("missing.pem", "key.pem")).unwrap_err();
    assert_names(&absent, &missing, "cannot read");

    let manager = PipelineManager::new();
    let console = Console::new(&manager)
        .tls(files.config("cert.pem", "missing.pem"))
        .serve(local())
        .unwrap_err();
    assert!(matches!(console, ConsoleError::Tls { .. }), "{console:?}");
    assert_names(&console, &missing, "private key");

    let ingest = HttpSource::<u64>::json()
        .tls(files.config("cert.pem", "other-key.pem"))
        .serve(local())
        .unwrap_err();
    assert!(matches!(ingest, HttpSourceError::Tls { .. }), "{ingest:?}");
    assert_names(&ingest, &files.path("other-key.pem"), "does not match");

    let ws = WsSource::<u64>::json()
        .tls(files.config("garbage.pem", "key.pem"))
        .serve(local())
        .unwrap_err();
    assert!(matches!(ws, WsError::Tls { .. }), "{ws:?}");
    assert_names(&ws, &files.path("garbage.pem"), "does not parse");

    // A client-certificate CA file that does not exist fails the same way.
    let ca = files
        .config("cert.pem", "key.pem")
        .client_auth(ClientAuth::Required(Pem::file(&missing)));
    let error = Sse::json(hub).tls(ca).serve(local()).unwrap_err();
    assert_names(&error, &missing, "CA certificates");
}
