//! Unit tests of the handshake checks, the settings and the close frames; the
//! connectors over real connections are tested in `weir/tests/suite/websocket.rs`.

use std::time::Duration;

use hyper::{Request, StatusCode};

use super::handshake::check;
use super::options::ServerOptions;
use super::{WsError, WsSource};

/// A valid handshake request for `path`, with `extra` headers.
fn handshake(path: &str, extra: &[(&str, &str)]) -> Request<()> {
    let mut req = Request::builder()
        .method("GET")
        .uri(path)
        .header("Host", "test")
        .header("Connection", "keep-alive, Upgrade")
        .header("Upgrade", "WebSocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.body(()).unwrap()
}

fn options() -> ServerOptions {
    ServerOptions::new("/ws", 1024)
}

#[test]
fn a_valid_handshake_gets_the_accept_key_of_rfc_6455() {
    // The example of RFC 6455 section 1.3.
    let accept = check(&handshake("/ws", &[]), &options(), None).unwrap();
    assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn bad_handshakes_are_refused_naming_what_is_wrong() {
    let o = options();
    let refusal = check(&handshake("/other", &[]), &o, None).unwrap_err();
    assert_eq!(refusal.status, StatusCode::NOT_FOUND);

    let mut post = handshake("/ws", &[]);
    *post.method_mut() = hyper::Method::POST;
    assert_eq!(
        check(&post, &o, None).unwrap_err().status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    let plain = Request::builder().uri("/ws").body(()).unwrap();
    let refusal = check(&plain, &o, None).unwrap_err();
    assert_eq!(refusal.status, StatusCode::UPGRADE_REQUIRED);
    assert!(refusal.text.contains("Upgrade: websocket"), "{refusal:?}");

    let mut old = handshake("/ws", &[]);
    old.headers_mut()
        .insert("Sec-WebSocket-Version", "8".parse().unwrap());
    let refusal = check(&old, &o, None).unwrap_err();
    assert_eq!(refusal.status, StatusCode::UPGRADE_REQUIRED);
    assert!(refusal.text.contains("version 13"), "{refusal:?}");

    let mut keyless = handshake("/ws", &[]);
    keyless
        .headers_mut()
        .insert("Sec-WebSocket-Key", "short".parse().unwrap());
    let refusal = check(&keyless, &o, None).unwrap_err();
    assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
    assert!(refusal.text.contains("Sec-WebSocket-Key"), "{refusal:?}");

    let mut http10 = handshake("/ws", &[]);
    *http10.version_mut() = hyper::Version::HTTP_10;
    assert_eq!(
        check(&http10, &o, None).unwrap_err().status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn the_token_is_taken_from_the_header_or_the_query() {
    let mut o = options();
    o.token = Some("s3cret".into());
    let none = check(&handshake("/ws", &[]), &o, None).unwrap_err();
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let wrong = handshake("/ws", &[("Authorization", "Bearer s3cre7")]);
    assert_eq!(
        check(&wrong, &o, None).unwrap_err().status,
        StatusCode::UNAUTHORIZED
    );
    let longer = handshake("/ws?access_token=s3cret2", &[]);
    assert_eq!(
        check(&longer, &o, None).unwrap_err().status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        check(
            &handshake("/ws", &[("Authorization", "Bearer s3cret")]),
            &o,
            None
        )
        .is_ok()
    );
    assert!(check(&handshake("/ws?x=1&access_token=s3cret", &[]), &o, None).is_ok());
}

#[test]
fn settings_that_cannot_work_are_refused_naming_the_option() {
    let invalid =
        |source: WsSource<super::WsMessage>| match source.serve("127.0.0.1:0".parse().unwrap()) {
            Err(WsError::Invalid { option, .. }) => option,
            other => panic!("expected an invalid option, got {other:?}"),
        };
    assert_eq!(invalid(WsSource::messages().path("ws")), "path");
    assert_eq!(
        invalid(WsSource::messages().max_message_bytes(0)),
        "max_message_bytes"
    );
    assert_eq!(
        invalid(WsSource::messages().max_connections(0)),
        "max_connections"
    );
    assert_eq!(
        invalid(WsSource::messages().bearer_token("")),
        "bearer_token"
    );
    assert_eq!(
        invalid(
            WsSource::messages()
                .heartbeat(Some(Duration::from_secs(2)))
                .idle_timeout(Some(Duration::from_secs(1)))
        ),
        "idle_timeout"
    );
    assert_eq!(
        invalid(WsSource::messages().heartbeat(Some(Duration::ZERO))),
        "heartbeat"
    );
    let err = WsSource::messages()
        .write_timeout(Duration::ZERO)
        .serve("127.0.0.1:0".parse().unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid WebSocket option `write_timeout`: must be longer than zero"
    );
}

#[test]
fn the_counts_are_exported_through_the_metrics_facade() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::stats::{BroadcastCounters, SourceCounters};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (source, broadcast, sink) = metrics::with_local_recorder(&recorder, || {
        (
            SourceCounters::new("127.0.0.1:9001"),
            BroadcastCounters::new("127.0.0.1:9002"),
            super::WsSink::<u64>::json("ws://127.0.0.1:9003/ws").stats(),
        )
    });
    source.received.add(3);
    source.accepted.add(2);
    source.conn.open.up();
    broadcast.lagged.add(5);
    broadcast.conn.too_large.add(1);
    sink.counters().sent.add(4);
    assert_eq!((source.snapshot().received, source.snapshot().open), (3, 1));
    assert_eq!(broadcast.snapshot().lagged, 5);
    assert_eq!(sink.sent(), 4);
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, label: &str| {
        snapshot.iter().find_map(|(key, _, _, value)| {
            let labelled = key.key().labels().any(|l| l.value() == label);
            (labelled && key.key().name() == name).then_some(value)
        })
    };
    let addr = "127.0.0.1:9001";
    assert_eq!(
        value("weir_ws_source_received_total", addr),
        Some(&DebugValue::Counter(3))
    );
    assert_eq!(
        value("weir_ws_source_accepted_total", addr),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        value("weir_ws_source_open_connections", addr),
        Some(&DebugValue::Gauge(1.0.into()))
    );
    let addr = "127.0.0.1:9002";
    assert_eq!(
        value("weir_ws_broadcast_lagged_total", addr),
        Some(&DebugValue::Counter(5))
    );
    assert_eq!(
        value("weir_ws_broadcast_too_large_total", addr),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value("weir_ws_sink_sent_total", "ws://127.0.0.1:9003/ws"),
        Some(&DebugValue::Counter(4))
    );
}
