//! The WebSocket connectors over real loopback connections: every message
//! counted once, per-connection backpressure with an exact bound, `1009` for an
//! oversized message (and a frame declaring 1 TiB), `1007` for bad input the
//! policy closes for, idle peers closed and live ones kept by heartbeats,
//! `401`/`426`/`503` at the handshake, the broadcast's slow-client policies
//! with exact counts, and the client sink's reconnects under supervision.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsErr, Message};
use weir::hub::NoSubscriber;
use weir::prelude::*;
use weir::websocket::{
    BadKind, BadMessage, OnBadMessage, SlowClient, WsBroadcast, WsPayload, WsSink, WsSinkExt,
    WsSource,
};

use crate::common::{eventually, rt1, tls_server};

type Client = WebSocketStream<TcpStream>;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A tungstenite client connected to `path` (with its query) on `addr`.
async fn connect(addr: SocketAddr, path: &str) -> Result<Client, WsErr> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connect_over(tcp, addr, path, &[]).await
}

async fn connect_over(
    tcp: TcpStream,
    addr: SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<Client, WsErr> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    tokio_tungstenite::client_async(request, tcp)
        .await
        .map(|(ws, _)| ws)
}

/// A client whose socket takes at most a few KiB: a server writing to it
/// blocks as soon as the kernel's buffers are full.
async fn connect_small(addr: SocketAddr) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    connect_over(tcp, addr, "/ws", &[]).await.unwrap()
}

/// Sends our close frame and reads until the server's has come and the
/// connection ended.
async fn close(mut ws: Client) {
    ws.close(None).await.unwrap();
    while let Some(next) = ws.next().await {
        next.unwrap();
    }
}

/// The next close frame, skipping pings.
async fn close_frame(ws: &mut Client) -> CloseFrame {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => return frame,
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A handshake written by hand; returns the stream and the answer's head.
async fn raw_handshake(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0_u8; 1];
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (tcp, String::from_utf8(head).unwrap())
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// One frame read by hand from a server (unmasked, payload under 126 bytes:
/// what a server sends besides data): its opcode and payload.
async fn raw_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0_u8; 2];
    tcp.read_exact(&mut header).await.ok()?;
    let len = usize::from(header[1] & 0x7f);
    assert!(len < 126, "a long frame from the server: {header:?}");
    let mut payload = vec![0_u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((header[0] & 0x0f, payload))
}

/// A client frame (masked with a zero key, so the payload reads as is).
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// Polls `value` until it has not changed for 200 ms; returns it.
fn settled(value: impl Fn() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = value();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        let now = value();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_millis(200) {
            return last;
        }
    }
    panic!("never settled (last {last})");
}

#[test]
fn every_message_two_clients_send_is_accepted_once_in_order() {
    let rt = rt1();
    let (server, flow) = WsSource::<u64>::json().serve(local()).unwrap();
    let running = flow.collect().run(&rt).unwrap();
    let addr = server.local_addr();
    const N: u64 = 500;
    block_on(async {
        let mut a = connect(addr, "/ws").await.unwrap();
        let mut b = connect(addr, "/ws").await.unwrap();
        for i in 0..N {
            a.feed(Message::text(i.to_string())).await.unwrap();
            b.feed(Message::binary((N + i).to_string().into_bytes()))
                .await
                .unwrap();
        }
        a.flush().await.unwrap();
        b.flush().await.unwrap();
        // The server answers a close frame only after it accepted everything
        // sent before it.
        close(a).await;
        close(b).await;
    });
    let stats = server.shutdown();
    let bytes: u64 = (0..2 * N).map(|i| i.to_string().len() as u64).sum();
    assert_eq!(
        (
            stats.connections,
            stats.received,
            stats.accepted,
            stats.bytes
        ),
        (2, 2 * N, 2 * N, bytes),
        "{stats:?}"
    );
    assert_eq!((stats.undecodable, stats.abandoned, stats.open), (0, 0, 0));
    let done = running.wait().unwrap();
    let (from_a, from_b): (Vec<u64>, Vec<u64>) = done.output.iter().partition(|&&x| x < N);
    assert_eq!(from_a, (0..N).collect::<Vec<_>>(), "a's order");
    assert_eq!(from_b, (N..2 * N).collect::<Vec<_>>(), "b's order");
    done.report.check_conservation().unwrap();
}

/// A pipeline that takes nothing: the server reads exactly what the path can
/// hold plus the one message the connection waits to hand on, and nothing
/// more, however much the client has sent; then everything arrives.
#[test]
fn a_full_pipeline_stops_reading_its_clients_at_an_exact_bound() {
    let rt = rt1();
    let (server, flow) = WsSource::<u64>::json().capacity(4).serve(local()).unwrap();
    let (runnable, mut egress) = flow.egress(2);
    let running = runnable.capacity(3).run(&rt).unwrap();
    let addr = server.local_addr();
    const N: u64 = 200;
    let client = std::thread::spawn(move || {
        block_on(async move {
            let mut ws = connect(addr, "/ws").await.unwrap();
            for i in 0..N {
                ws.feed(Message::text(i.to_string())).await.unwrap();
            }
            ws.flush().await.unwrap();
            close(ws).await;
        });
    });
    // The ingress buffer (4), the sink's input edge (3), the egress buffer
    // (2), and one message read and waiting for room.
    let read = settled(|| server.stats().received);
    assert_eq!(read, 4 + 3 + 2 + 1, "{:?}", server.stats());
    assert_eq!(server.stats().accepted, read - 1);
    let got: Vec<u64> = (0..N)
        .map(|_| futures::executor::block_on(egress.recv()).unwrap())
        .collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    client.join().unwrap();
    let stats = server.shutdown();
    assert_eq!((stats.received, stats.accepted), (N, N));
    assert_eq!(futures::executor::block_on(egress.recv()), None);
    running.wait().unwrap().report.check_conservation().unwrap();
}

#[test]
fn an_oversized_message_closes_with_1009_and_bad_json_is_dead_lettered() {
    let rt = rt1();
    let bad = MemoryDlq::<BadMessage>::new(16);
    let (server, flow) = WsSource::<u64>::json()
        .max_message_bytes(64)
        .dead_letters(bad.clone())
        .serve(local())
        .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    let addr = server.local_addr();
    block_on(async {
        let mut a = connect(addr, "/ws").await.unwrap();
        for text in ["1", "not json", "2"] {
            a.send(Message::text(text)).await.unwrap();
        }
        a.send(Message::text("9".repeat(100))).await.unwrap();
        let frame = close_frame(&mut a).await;
        assert_eq!(frame.code, CloseCode::Size, "{frame:?}");
        assert!(frame.reason.contains("limit of 64 bytes"), "{frame:?}");

        // A frame declaring 1 TiB: refused from its header, before any of it
        // is read or held.
        let (mut raw, head) = raw_handshake(addr, UPGRADE).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&(1_u64 << 40).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        raw.write_all(&frame).await.unwrap();
        let (opcode, payload) = raw_frame(&mut raw).await.unwrap();
        assert_eq!((opcode, &payload[..2]), (0x8, &1009_u16.to_be_bytes()[..]));

        // Another connection is not affected.
        let mut b = connect(addr, "/ws").await.unwrap();
        b.send(Message::text("4")).await.unwrap();
        close(b).await;
    });
    let stats = server.shutdown();
    assert_eq!(
        (
            stats.received,
            stats.accepted,
            stats.undecodable,
            stats.too_large
        ),
        (4, 3, 1, 2),
        "{stats:?}"
    );
    assert_eq!(running.wait().unwrap().output, [1, 2, 4]);
    let letters = bad.drain();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let undecodable = letters
        .iter()
        .find(|l| l.element.kind == BadKind::Undecodable)
        .unwrap();
    assert_eq!(
        undecodable.element.payload,
        Some(WsPayload::Text("not json".into()))
    );
    assert!(
        undecodable.error.contains("undecodable message"),
        "{undecodable:?}"
    );
    let too_large: Vec<_> = letters
        .iter()
        .filter(|l| l.element.kind == BadKind::TooLarge)
        .collect();
    assert_eq!(too_large.len(), 2);
    assert!(
        too_large
            .iter()
            .all(|l| l.element.reason.contains("over max_message_bytes (64)")
                && l.element.payload.is_none()),
        "{too_large:?}"
    );
}

#[test]
fn bad_input_closes_with_1007_when_the_policy_says_so_and_for_text_that_is_not_utf8() {
    let rt = rt1();
    let (server, flow) = WsSource::<u64>::json()
        .on_bad_message(OnBadMessage::Close)
        .serve(local())
        .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    let addr = server.local_addr();
    block_on(async {
        let mut a = connect(addr, "/ws").await.unwrap();
        a.send(Message::text("5")).await.unwrap();
        a.send(Message::text("{oops")).await.unwrap();
        let frame = close_frame(&mut a).await;
        assert_eq!(frame.code, CloseCode::Invalid, "{frame:?}");
        assert!(frame.reason.contains("undecodable message"), "{frame:?}");

        let (mut raw, _) = raw_handshake(addr, UPGRADE).await;
        raw.write_all(&masked(0x1, &[0xff, 0xfe])).await.unwrap();
        let (opcode, payload) = raw_frame(&mut raw).await.unwrap();
        assert_eq!((opcode, &payload[..2]), (0x8, &1007_u16.to_be_bytes()[..]));
        assert!(String::from_utf8_lossy(&payload[2..]).contains("not UTF-8"));
    });
    let stats = server.shutdown();
    assert_eq!(
        (stats.accepted, stats.undecodable, stats.protocol_errors),
        (1, 1, 2),
        "{stats:?}"
    );
    assert_eq!(running.wait().unwrap().output, [5]);
}

/// A peer that never answers pings is closed with `1001` once the idle
/// timeout has passed; a client that answers them stays up for three idle
/// timeouts and more, and its ping is answered.
#[test]
fn heartbeats_keep_a_live_peer_and_a_silent_one_is_closed_after_the_idle_timeout() {
    let rt = rt1();
    let idle = Duration::from_millis(250);
    let (server, flow) = WsSource::<u64>::json()
        .heartbeat(Some(Duration::from_millis(50)))
        .idle_timeout(Some(idle))
        .serve(local())
        .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    let addr = server.local_addr();
    block_on(async {
        let started = Instant::now();
        let (mut silent, head) = raw_handshake(addr, UPGRADE).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut pings = 0;
        let goodbye = loop {
            match raw_frame(&mut silent).await {
                Some((0x9, _)) => pings += 1,
                Some((0x8, payload)) => break payload,
                other => panic!("unexpected {other:?}"),
            }
        };
        let waited = started.elapsed();
        assert!(waited >= idle, "closed after {waited:?}");
        assert!(
            waited < idle + Duration::from_secs(3),
            "closed after {waited:?}"
        );
        assert_eq!(&goodbye[..2], &1001_u16.to_be_bytes());
        assert_eq!(&goodbye[2..], b"idle timeout");
        assert!(pings >= 2, "{pings} pings before the close");

        let mut live = connect(addr, "/ws").await.unwrap();
        let until = tokio::time::Instant::now() + 3 * idle;
        let mut pinged = 0;
        while let Ok(next) = tokio::time::timeout_at(until, live.next()).await {
            match next {
                Some(Ok(Message::Ping(_))) => pinged += 1,
                other => panic!("the live client got {other:?}"),
            }
        }
        assert!(pinged >= 5, "{pinged} pings in {:?}", 3 * idle);
        live.send(Message::Ping("hi".into())).await.unwrap();
        loop {
            match live.next().await {
                Some(Ok(Message::Pong(payload))) => {
                    assert_eq!(&payload[..], b"hi");
                    break;
                }
                Some(Ok(Message::Ping(_))) => {}
                other => panic!("expected a pong, got {other:?}"),
            }
        }
        live.send(Message::text("7")).await.unwrap();
        close(live).await;
    });
    let stats = server.shutdown();
    assert_eq!((stats.idle_timeouts, stats.accepted), (1, 1), "{stats:?}");
    assert!(stats.pongs >= 5, "{stats:?}");
    assert_eq!(running.wait().unwrap().output, [7]);
}

#[test]
fn the_handshake_refuses_a_bad_token_with_401_a_plain_request_with_426_and_one_too_many_with_503() {
    let rt = rt1();
    let (server, flow) = WsSource::<u64>::json()
        .bearer_token("s3cret")
        .max_connections(2)
        .serve(local())
        .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    let addr = server.local_addr();
    block_on(async {
        for headers in [&[][..], &[("authorization", "Bearer s3cre7")][..]] {
            let tcp = TcpStream::connect(addr).await.unwrap();
            match connect_over(tcp, addr, "/ws", headers).await {
                Err(WsErr::Http(response)) => {
                    assert_eq!(response.status(), 401);
                    assert_eq!(response.headers()["www-authenticate"], "Bearer");
                }
                other => panic!("expected 401, got {other:?}"),
            }
        }
        let (_, head) = raw_handshake(
            addr,
            "GET /ws HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer s3cret\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 426"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("upgrade: websocket"),
            "{head}"
        );

        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut by_header = connect_over(tcp, addr, "/ws", &[("authorization", "Bearer s3cret")])
            .await
            .unwrap();
        let mut by_query = connect(addr, "/ws?access_token=s3cret").await.unwrap();
        let (_, head) = raw_handshake(addr, UPGRADE).await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(head.contains("Retry-After: 1"), "{head}");
        by_header.send(Message::text("1")).await.unwrap();
        by_query.send(Message::text("2")).await.unwrap();
        close(by_header).await;
        close(by_query).await;
    });
    let stats = server.shutdown();
    assert_eq!(
        (
            stats.unauthorized,
            stats.bad_requests,
            stats.refused,
            stats.connections,
            stats.accepted
        ),
        (2, 1, 1, 2, 2),
        "{stats:?}"
    );
    let mut output = running.wait().unwrap().output;
    output.sort_unstable();
    assert_eq!(output, [1, 2]);
}

/// What a broadcast client read until its close frame.
#[derive(Debug, Default)]
struct Received {
    elements: Vec<u64>,
    notices: Vec<u64>,
    close: Option<CloseFrame>,
}

async fn receive_all(mut ws: Client) -> Received {
    let mut got = Received::default();
    while let Some(next) = ws.next().await {
        match next.unwrap() {
            Message::Text(text) => {
                if let Some(n) = text.strip_prefix("{\"lagged\":") {
                    got.notices.push(n.trim_end_matches('}').parse().unwrap());
                } else {
                    let index = text.split(' ').next().unwrap();
                    got.elements.push(index.parse().unwrap());
                }
            }
            Message::Close(frame) => got.close = frame,
            _ => {}
        }
    }
    got
}

/// One hub, three endpoints: a client that keeps up (under `Block`) gets every
/// element; a stalled one under `DropOldest` gets the newest and a lag notice
/// for every gap, which add up to what was published; a stalled one under
/// `Disconnect` gets an unbroken prefix, then `1008` saying how many it missed.
#[test]
fn the_broadcast_reaches_every_client_and_counts_what_slow_ones_miss_exactly() {
    let rt = rt1();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let running = runnable.run(&rt).unwrap();
    // 16 KiB a message: far more than the kernel buffers hold in all.
    let pad: Arc<str> = "x".repeat(16 * 1024).into();
    let encode = move |x: &u64| WsPayload::Text(format!("{x} {pad}"));
    let serve = |slow: SlowClient| {
        WsBroadcast::new(hub.clone(), encode.clone())
            .client_buffer(4)
            .slow_client(slow)
            .serve(local())
            .unwrap()
    };
    let block = serve(SlowClient::Block);
    let drop_oldest = serve(SlowClient::DropOldest);
    let disconnect = serve(SlowClient::Disconnect);
    drop(hub);
    const N: u64 = 600;
    let (fast, dropped, disconnected) = block_on(async {
        let fast = connect(block.local_addr(), "/ws").await.unwrap();
        let stalled = connect_small(drop_oldest.local_addr()).await;
        let cut = connect_small(disconnect.local_addr()).await;
        // Connected: subscribed. The fast client reads as it goes; the others
        // read nothing until everything is published.
        let fast = tokio::spawn(receive_all(fast));
        for i in 0..N {
            ingress.send(i).await.unwrap();
        }
        drop(ingress);
        let fast = fast.await.unwrap();
        (fast, receive_all(stalled).await, receive_all(cut).await)
    });
    running.wait().unwrap().report.check_conservation().unwrap();

    assert_eq!(fast.elements, (0..N).collect::<Vec<_>>());
    assert!(fast.notices.is_empty());
    assert_eq!(fast.close.as_ref().unwrap().code, CloseCode::Normal);
    let stats = block.shutdown();
    assert_eq!((stats.sent, stats.lagged), (N, 0), "{stats:?}");

    // Every element published is either received or in a notice, in order,
    // the newest last.
    let missed: u64 = dropped.notices.iter().sum();
    assert!(missed > 0, "the stalled client missed nothing: {dropped:?}");
    assert_eq!(dropped.elements.len() as u64 + missed, N);
    assert!(dropped.elements.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(dropped.elements.last(), Some(&(N - 1)));
    assert_eq!(dropped.close.as_ref().unwrap().code, CloseCode::Normal);
    let stats = drop_oldest.shutdown();
    assert_eq!(
        (stats.sent, stats.lagged, stats.notices),
        (
            dropped.elements.len() as u64,
            missed,
            dropped.notices.len() as u64
        ),
        "{stats:?}"
    );

    let k = disconnected.elements.len() as u64;
    assert_eq!(disconnected.elements, (0..k).collect::<Vec<_>>());
    assert!(k < N);
    let frame = disconnected.close.unwrap();
    assert_eq!(frame.code, CloseCode::Policy, "{frame:?}");
    let stats = disconnect.shutdown();
    assert_eq!((stats.too_slow, stats.sent), (1, k), "{stats:?}");
    // Cut off as soon as it fell behind (while the hub still published): what
    // it got plus what its close announced is what was offered to it by then.
    assert!(stats.lagged > 0 && k + stats.lagged <= N, "{stats:?}");
    assert_eq!(
        frame.reason.as_str(),
        format!("too slow: {} messages dropped", stats.lagged)
    );
}

/// The client sink: connection refused, retried with the policy's backoff
/// until a server listens, then every element once, in order; the server
/// closing an idle connection makes the next batch reconnect.
#[test]
fn the_sink_reconnects_under_supervision_and_delivers_every_element() {
    let rt = rt1();
    let port = std::net::TcpListener::bind(local())
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let policy = SupervisionPolicy::default()
        .max_attempts(1_000)
        .backoff(BackoffConfig::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ));
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    let sink = WsSink::json(format!("ws://{addr}/ws"));
    let stats = sink.stats();
    let sending = flow
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
        .to_websocket(sink)
        .run(&rt)
        .unwrap();
    futures::executor::block_on(async {
        for i in 0..5 {
            ingress.send(i).await.unwrap();
        }
    });
    eventually("a refused connect", || stats.failures() >= 2);
    // The server closes connections idle for 150 ms.
    let (server, flow) = WsSource::<u64>::json()
        .heartbeat(None)
        .idle_timeout(Some(Duration::from_millis(150)))
        .serve(addr)
        .unwrap();
    let received = flow.collect().run(&rt).unwrap();
    eventually("the first burst", || server.stats().accepted == 5);
    eventually("the server's close", || stats.closed_by_peer() == 1);
    futures::executor::block_on(async {
        for i in 5..10 {
            ingress.send(i).await.unwrap();
        }
    });
    drop(ingress);
    let done = sending.wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.delivered(), 10);
    assert_eq!((done.output.sent(), done.output.connects()), (10, 2));
    let server_stats = server.shutdown();
    assert_eq!(
        (server_stats.accepted, server_stats.idle_timeouts),
        (10, 1),
        "{server_stats:?}"
    );
    assert_eq!(received.wait().unwrap().output, (0..10).collect::<Vec<_>>());
}

/// Bad settings are refused when the pipeline is built, naming the stage; an
/// unsupervised sink that cannot connect fails naming the URL; a server
/// refusing the token dead-letters each element with the status.
#[test]
fn the_sink_refuses_bad_settings_fails_clearly_and_dead_letters_a_refused_handshake() {
    let rt = rt1();
    let err = Pipeline::from_iter(0..3_u64)
        .to_websocket(WsSink::json("http://example.com/ws"))
        .name("push")
        .run(&rt)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`push`") && text.contains("not a ws:// or wss:// URL"),
        "{text}"
    );
    let err = Pipeline::from_iter(0..3_u64)
        .to_websocket(
            WsSink::json("ws://127.0.0.1:9/ws")
                .heartbeat(Some(Duration::from_secs(5)))
                .idle_timeout(Some(Duration::from_secs(1))),
        )
        .run(&rt)
        .unwrap_err();
    assert!(err.to_string().contains("idle_timeout"), "{err}");

    let closed = std::net::TcpListener::bind(local())
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("ws://{closed}/ws");
    let err = Pipeline::from_iter(0..3_u64)
        .to_websocket(WsSink::json(url.clone()))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");

    let (server, flow) = WsSource::<u64>::json()
        .bearer_token("s3cret")
        .serve(local())
        .unwrap();
    let received = flow.collect().run(&rt).unwrap();
    let dead = MemoryDlq::new(10);
    let done = Pipeline::from_iter(0..3_u64)
        .supervise(Supervision::new(SupervisionPolicy::default()).dead_letters(dead.clone()))
        .to_websocket(WsSink::json(format!("ws://{}/ws", server.local_addr())).bearer_token("nope"))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    let letters = dead.drain();
    assert_eq!(letters.len(), 3);
    assert!(
        letters
            .iter()
            .all(|l| l.error.contains("HTTP 401 Unauthorized") && l.class == ErrorClass::Permanent),
        "{letters:?}"
    );
    assert_eq!(server.shutdown().unauthorized, 3);
    assert!(received.wait().unwrap().output.is_empty());
}

/// A `wss://` server on a thread of its own: TLS, then the WebSocket
/// handshake, then every text message of every connection into `got`, until
/// the client closes. Returns its port; counts failed TLS handshakes.
fn wss_server(
    tls: tokio_rustls::TlsAcceptor,
    got: Arc<std::sync::Mutex<Vec<String>>>,
    refused: Arc<std::sync::atomic::AtomicUsize>,
) -> u16 {
    let listener = std::net::TcpListener::bind(local()).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (tls, got, refused) = (tls.clone(), Arc::clone(&got), Arc::clone(&refused));
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(socket).await else {
                        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return;
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        if let Message::Text(text) = message {
                            got.lock().unwrap().push(text.to_string());
                        }
                    }
                });
            }
        });
    });
    port
}

/// `wss://`: a server whose certificate a trusted CA signed gets every
/// element once, in order, over TLS; one whose certificate nobody trusts is
/// refused with the reason, and gets nothing.
#[test]
fn a_wss_server_signed_by_a_trusted_ca_gets_every_element_and_an_untrusted_one_nothing() {
    let (ca, tls) = tls_server();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let port = wss_server(tls, Arc::clone(&got), Arc::clone(&refused));
    let url = format!("wss://localhost:{port}/ws");
    let sink = WsSink::json(url.clone())
        .ca_file(&ca_file)
        .without_system_roots();
    let done = Pipeline::from_iter(0..100_u64)
        .to_websocket(sink)
        .name("ws")
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.output.sent(), 100);
    eventually("the server read all 100", || {
        got.lock().unwrap().len() == 100
    });
    let expected: Vec<String> = (0..100).map(|x: u64| x.to_string()).collect();
    assert_eq!(*got.lock().unwrap(), expected);
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Another CA: the server's certificate is not trusted.
    let (other, _) = tls_server();
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, other).unwrap();
    let err = Pipeline::from_iter(0..3_u64)
        .to_websocket(
            WsSink::json(url)
                .ca_file(&other_file)
                .without_system_roots(),
        )
        .name("ws")
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap_err()
        .to_string();
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(got.lock().unwrap().len(), 100, "nothing more got through");
    eventually("the refused handshake", || {
        refused.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    // A CA file that is not there is a build error naming it.
    let err = Pipeline::from_iter(0..1_u64)
        .to_websocket(WsSink::json("wss://localhost:1/ws").ca_file(dir.path().join("none.pem")))
        .name("ws")
        .run(&rt1())
        .unwrap_err()
        .to_string();
    assert!(err.contains("none.pem"), "{err}");
}
