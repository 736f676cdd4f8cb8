//! TLS and the bearer token on weir's HTTP servers (feature `server-tls`): the
//! SSE endpoint and the console over HTTPS with a generated, trusted CA; a
//! plaintext client, a client trusting another CA, and a missing or wrong token
//! are each refused, counted (stats and the exported counters) and admit
//! nothing — no SSE subscription, no element delivered. Certificates are
//! generated here with rcgen, never committed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use weir::console::Console;
use weir::hub::NoSubscriber;
use weir::manager::PipelineManager;
use weir::prelude::*;
use weir::server_tls::{Pem, TlsServerConfig};
use weir::sse::Sse;

use crate::common::{Pki, eventually, pki, rt1, tls_client};

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub(crate) fn config(server: &Pki) -> TlsServerConfig {
    TlsServerConfig::new(
        Pem::memory(server.cert.clone()),
        Pem::memory(server.key.clone()),
    )
}

/// Sends `head` (a request line and headers, without the blank line) and
/// returns all that comes back until the server closes: the whole answer, or
/// nothing but a TLS alert for a refused handshake.
pub(crate) fn exchange(stream: &mut (impl Read + Write), head: &str) -> String {
    let request = format!("{head}\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    send(stream, &request)
}

/// Writes `request` as it is and returns all that comes back (see
/// [`exchange`]).
pub(crate) fn send(stream: &mut (impl Read + Write), request: &str) -> String {
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let _ = stream.flush();
    let mut answer = Vec::new();
    // A refused handshake, or a close without close_notify, ends in an error
    // after what was read.
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A plaintext client asking for `path` over TCP.
pub(crate) fn plaintext(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    exchange(&mut tcp, &format!("GET {path} HTTP/1.1"))
}

/// The exported counters, by name (a debugging recorder's snapshot resets
/// them: take one).
pub(crate) fn counters(snapshotter: &Snapshotter) -> HashMap<String, u64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, .., value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_owned(), n)),
            _ => None,
        })
        .collect()
}

#[test]
fn sse_over_tls_streams_events_to_a_client_with_the_token() {
    let (server, _) = pki();
    let rt = rt1();
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let running = runnable.run(&rt).unwrap();
    let sse = Sse::new(hub, |x: &u64| format!("tick {x}"))
        .tls(config(&server))
        .bearer_token("s3cret")
        .serve(local())
        .unwrap();

    let mut client = tls_client(sse.local_addr(), &server.ca, None);
    client
        .write_all(
            b"GET /events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\n\r\n",
        )
        .unwrap();
    let mut lines = BufReader::new(client).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "HTTP/1.1 200 OK");
    while lines.next().unwrap().unwrap() != ": connected" {}
    futures::executor::block_on(ingress.send(7)).unwrap();
    assert!(lines.any(|l| l.unwrap() == "data: tick 7"));
    drop(ingress);
    running.wait().unwrap();
    let stats = sse.shutdown();
    assert_eq!((stats.subscribed, stats.events), (1, 1));
    assert_eq!((stats.unauthorized, stats.tls_handshake_failures), (0, 0));
}

#[test]
fn sse_refuses_plaintext_untrusted_and_tokenless_clients_and_sends_them_nothing() {
    let (server, _) = pki();
    let (other, _) = pki();
    let rt = rt1();
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Drop);
    let running = runnable.run(&rt).unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let sse = metrics::with_local_recorder(&recorder, || {
        Sse::json(hub)
            .tls(config(&server))
            .bearer_token("s3cret")
            .serve(local())
            .unwrap()
    });
    let addr = sse.local_addr();

    // A plaintext client: no HTTP answer, the handshake failure counted.
    let answer = plaintext(addr, "/events");
    assert!(!answer.contains("HTTP/1.1"), "{answer:?}");
    eventually("the plaintext client counted", || {
        sse.stats().tls_handshake_failures == 1
    });

    // A client that trusts another CA gives up; the server counts it.
    let mut untrusted = tls_client(addr, &other.ca, None);
    let error = untrusted
        .write_all(b"GET /events HTTP/1.1\r\n\r\n")
        .unwrap_err();
    // (rcgen's CAs share a name: the other CA's signature is what fails.)
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
    drop(untrusted);
    eventually("the untrusting client counted", || {
        sse.stats().tls_handshake_failures == 2
    });

    // Over TLS, without the token and with another: 401, never subscribed.
    let missing = exchange(
        &mut tls_client(addr, &server.ca, None),
        "GET /events HTTP/1.1",
    );
    assert!(missing.starts_with("HTTP/1.1 401"), "{missing}");
    assert!(
        missing.to_lowercase().contains("www-authenticate: bearer"),
        "{missing}"
    );
    let wrong = exchange(
        &mut tls_client(addr, &server.ca, None),
        "GET /events?access_token=s3cre7 HTTP/1.1\r\nAuthorization: Bearer guess",
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    futures::executor::block_on(ingress.send(1)).unwrap();

    drop(ingress);
    running.wait().unwrap();
    let stats = sse.shutdown();
    assert_eq!(stats.tls_handshake_failures, 2);
    assert_eq!(stats.unauthorized, 2);
    assert_eq!((stats.subscribed, stats.events, stats.clients), (0, 0, 0));
    let exported = counters(&snapshotter);
    assert_eq!(exported["weir_sse_tls_handshake_failures_total"], 2);
    assert_eq!(exported["weir_sse_unauthorized_total"], 2);
}

#[test]
fn the_console_over_tls_serves_its_page_and_api_and_refuses_the_rest() {
    let (server, _) = pki();
    let (other, _) = pki();
    let rt = rt1();
    let manager = PipelineManager::new();
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    manager
        .start("ingest", flow.map(|x| x * 2).for_each(|_| ()), &rt)
        .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let console = metrics::with_local_recorder(&recorder, || {
        Console::new(&manager)
            .tls(config(&server))
            .bearer_token("s3cret")
            .serve(local())
            .unwrap()
    });
    let addr = console.local_addr();
    let get = |head: &str| exchange(&mut tls_client(addr, &server.ca, None), head);

    let page = get("GET /?token=s3cret HTTP/1.1");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    let stats = get("GET /api/stats HTTP/1.1\r\nAuthorization: Bearer s3cret");
    assert!(stats.starts_with("HTTP/1.1 200"), "{stats}");
    assert!(stats.contains("\"ingest\""), "{stats}");

    // The event stream, over TLS.
    let mut client = tls_client(addr, &server.ca, None);
    client
        .write_all(b"GET /api/events?token=s3cret HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut lines = BufReader::new(client).lines();
    assert!(lines.any(|l| l.unwrap() == "event: stats"));
    drop(lines);

    // Refused: no token, a wrong one, a plaintext client, an untrusting one.
    for head in [
        "GET /api/stats HTTP/1.1",
        "GET /api/graph?token=nope HTTP/1.1",
    ] {
        let answer = get(head);
        assert!(answer.starts_with("HTTP/1.1 401"), "{head}: {answer}");
        assert!(!answer.contains("ingest"), "{head}: {answer}");
    }
    assert_eq!(console.unauthorized(), 2);
    let answer = plaintext(addr, "/healthz");
    assert!(!answer.contains("alive"), "{answer:?}");
    let mut untrusted = tls_client(addr, &other.ca, None);
    assert!(
        untrusted
            .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .is_err()
    );
    drop(untrusted);
    eventually("both refused handshakes counted", || {
        console.tls_handshake_failures() == 2
    });
    let exported = counters(&snapshotter);
    assert_eq!(exported["weir_console_tls_handshake_failures_total"], 2);
    assert_eq!(exported["weir_console_unauthorized_total"], 2);
    console.shutdown();
    drop(ingress);
    manager.shutdown_all(Duration::from_secs(5));
}

#[test]
fn a_silent_client_times_out_its_handshake_and_one_too_many_gets_503_inside_tls() {
    let (server, _) = pki();
    let rt = rt1();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Drop);
    let _running = runnable.run(&rt).unwrap();
    let sse = Sse::json(hub)
        .tls(config(&server))
        .max_clients(1)
        .header_timeout(Duration::from_millis(200))
        .serve(local())
        .unwrap();
    let addr = sse.local_addr();

    // Connected, and never a byte: closed after the header timeout, counted.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    eventually("the silent client counted", || {
        sse.stats().tls_handshake_failures == 1
    });

    // One client streaming; the next one is told 503 over TLS.
    let mut first = tls_client(addr, &server.ca, None);
    first
        .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut lines = BufReader::new(first).lines();
    while lines.next().unwrap().unwrap() != ": connected" {}
    let busy = exchange(
        &mut tls_client(addr, &server.ca, None),
        "GET /events HTTP/1.1",
    );
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy:?}");
    drop(lines);
    let stats = sse.shutdown();
    assert_eq!((stats.subscribed, stats.rejected), (1, 1));
    assert_eq!(stats.tls_handshake_failures, 1);
}
