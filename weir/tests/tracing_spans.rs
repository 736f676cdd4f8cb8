//! `tracing`: a span per stage (with pipeline, stage and kind), a span per batch
//! at debug level, supervision events as structured events, nothing per element
//! at info; every server's refused TLS handshakes (a plaintext client) and
//! tokens (wrong, missing) as warnings naming the server and the peer that
//! never show the token: SSE, the console, HTTP ingest, the WebSocket source
//! and the TCP source (`weir_testkit::logs` captures them).

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use weir::prelude::*;
use weir_testkit::logs::{Level, Logs};

#[test]
fn stages_have_spans_and_supervision_events_are_structured() {
    let seen = Logs::capture();

    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let tripped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let policy = SupervisionPolicy::default().restart_backoff(BackoffConfig::new(
        std::time::Duration::from_millis(1),
        std::time::Duration::from_millis(1),
    ));
    let done = Pipeline::from_iter(0..5_000_u64)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
        .map(move |x| {
            if x == 100 && !tripped.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("trip on {x}");
            }
            x
        })
        .name("traced")
        .collect()
        .named("spans")
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output.len(), 5_000);

    let spans = seen.spans();
    let stage = spans
        .iter()
        .find(|span| span.name == "stage" && span.fields.contains("stage=traced"))
        .expect("a span for the stage");
    assert_eq!(stage.level, Level::INFO);
    assert!(
        stage.fields.contains("pipeline=spans") && stage.fields.contains("kind=\"map\""),
        "{stage:?}"
    );
    assert!(
        spans
            .iter()
            .any(|span| span.name == "batch" && span.level == Level::DEBUG),
        "a debug span per batch"
    );

    let events = seen.events();
    let supervision: Vec<_> = events
        .iter()
        .filter(|event| event.target == "weir::supervision")
        .collect();
    assert!(
        supervision.iter().any(|event| event.level == Level::WARN
            && event.fields.contains("stage=traced")
            && event.fields.contains("trip on 100")),
        "the failure as a structured warning: {supervision:?}"
    );
    assert!(
        supervision
            .iter()
            .any(|event| event.fields.contains("StageRestarted")),
        "{supervision:?}"
    );
    // Nothing per element at info or above: far fewer events than elements.
    let loud = events
        .iter()
        .filter(|event| event.level <= Level::INFO)
        .count();
    assert!(
        loud < 50,
        "{loud} events at info or above for 5 000 elements"
    );
}

/// The token every server here requires; the one a client guesses.
const TOKEN: &str = "s3cret-token";
const GUESS: &str = "guessed-token";

/// A TLS config for the server certificate of `server`.
fn tls(server: &common::Pki) -> weir::server_tls::TlsServerConfig {
    use weir::server_tls::{Pem, TlsServerConfig};
    TlsServerConfig::new(
        Pem::memory(server.cert.clone()),
        Pem::memory(server.key.clone()),
    )
}

/// Sends `request` (a request line) to the TLS and token-protected server at
/// `addr`, as its logs name it `server`: from a plaintext client, over TLS
/// with a wrong token, over TLS with none. Each must be a warning naming the
/// server and the client's own address (the peer), and neither token may
/// show in any log.
fn refusals_are_logged(server: &str, addr: std::net::SocketAddr, ca: &str, request: &str) {
    let logs = Logs::capture();
    let server = format!("server=\"{server}\"");
    let path = format!("path=\"{}\"", request.split(' ').nth(1).unwrap());

    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let peer = format!("peer=Some({})", plain.local_addr().unwrap());
    let _ = plain.write_all(format!("{request}\r\nHost: localhost\r\n\r\n").as_bytes());
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "{server}: {answer:?}");
    common::eventually("the plaintext client logged", || {
        logs.warned(&["TLS handshake failed", &server, &peer])
    });

    for (authorization, reason) in [
        (
            format!("Authorization: Bearer {GUESS}\r\n"),
            "wrong bearer token",
        ),
        (String::new(), "no bearer token"),
    ] {
        let mut client = common::tls_client(addr, ca, None);
        let peer = format!("peer=Some({})", client.sock.local_addr().unwrap());
        client
            .write_all(
                format!(
                    "{request}\r\nHost: localhost\r\n{authorization}Content-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer);
        assert!(
            answer.starts_with(b"HTTP/1.1 401"),
            "{server}: {}",
            String::from_utf8_lossy(&answer)
        );
        // Logged before the answer is written.
        assert!(
            logs.warned(&["request refused (401)", reason, &server, &peer, &path]),
            "{server} {reason}: {:?}",
            logs.events()
        );
    }
    for secret in [TOKEN, GUESS] {
        assert!(!logs.shows(secret), "{secret} logged: {:?}", logs.events());
    }
}

#[test]
fn sse_refusals_are_warnings_naming_the_peer_that_never_show_the_token() {
    let (server, _) = common::pki();
    let rt = common::rt1();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(weir::hub::NoSubscriber::Drop);
    let _running = runnable.run(&rt).unwrap();
    let sse = weir::sse::Sse::json(hub)
        .tls(tls(&server))
        .bearer_token(TOKEN)
        .serve("127.0.0.1:0".parse().unwrap())
        .unwrap();
    refusals_are_logged("sse", sse.local_addr(), &server.ca, "GET /events HTTP/1.1");
    let stats = sse.stats();
    assert_eq!((stats.tls_handshake_failures, stats.unauthorized), (1, 2));
    assert_eq!(stats.subscribed, 0);
}

#[test]
fn console_refusals_are_warnings_naming_the_peer_that_never_show_the_token() {
    let (server, _) = common::pki();
    let manager = weir::manager::PipelineManager::new();
    let console = weir::console::Console::new(&manager)
        .tls(tls(&server))
        .bearer_token(TOKEN)
        .serve("127.0.0.1:0".parse().unwrap())
        .unwrap();
    refusals_are_logged(
        "console",
        console.local_addr(),
        &server.ca,
        "GET /api/stats HTTP/1.1",
    );
    assert_eq!(
        (console.tls_handshake_failures(), console.unauthorized()),
        (1, 2)
    );
    console.shutdown();
}

#[test]
fn http_ingest_refusals_are_warnings_naming_the_peer_that_never_show_the_token() {
    let (server, _) = common::pki();
    let rt = common::rt1();
    let (ingest, flow) = weir::http_source::HttpSource::<u64>::json()
        .tls(tls(&server))
        .bearer_token(TOKEN)
        .serve("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    refusals_are_logged(
        "http source",
        ingest.local_addr(),
        &server.ca,
        "POST /events HTTP/1.1",
    );
    let stats = ingest.shutdown();
    assert_eq!((stats.tls_handshake_failures, stats.unauthorized), (1, 2));
    assert_eq!((stats.admitted, stats.elements), (0, 0));
    assert!(running.wait().unwrap().output.is_empty());
}

#[test]
fn websocket_refusals_are_warnings_naming_the_peer_that_never_show_the_token() {
    let (server, _) = common::pki();
    let rt = common::rt1();
    let (ingest, flow) = weir::websocket::WsSource::<u64>::json()
        .tls(tls(&server))
        .bearer_token(TOKEN)
        .serve("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    refusals_are_logged(
        "websocket",
        ingest.local_addr(),
        &server.ca,
        "GET /ws HTTP/1.1",
    );
    let stats = ingest.shutdown();
    assert_eq!((stats.tls_handshake_failures, stats.unauthorized), (1, 2));
    assert_eq!((stats.connections, stats.received), (0, 0));
    assert!(running.wait().unwrap().output.is_empty());
}

#[test]
fn a_refused_tls_handshake_on_the_tcp_source_is_a_warning_naming_the_listener_and_peer() {
    use weir::net::frame::Framing;
    use weir::net::tcp::{TcpSourceConfig, listen};
    let logs = Logs::capture();
    let (server, _) = common::pki();
    let acceptor = tls(&server).build().unwrap();
    let (handle, flow) = listen(
        "127.0.0.1:0",
        TcpSourceConfig::new(Framing::Lines).tls(acceptor),
    )
    .unwrap();
    let rt = common::rt1();
    let received = flow.map(|frame| frame.bytes).collect().run(&rt).unwrap();
    let addr = handle.local_addr();
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let peer = plain.local_addr().unwrap();
    // Lines that would be frames on a plain listener.
    plain.write_all(b"hello\nworld\n").unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    common::eventually("the refused handshake logged", || {
        logs.warned(&[
            "tcp source: TLS handshake failed",
            &format!("addr={addr}"),
            &format!("peer={peer}"),
        ])
    });
    handle.close();
    let stats = handle.stats();
    assert_eq!((stats.tls_handshake_failures, stats.frames), (1, 0));
    assert!(received.wait().unwrap().output.is_empty());
}
