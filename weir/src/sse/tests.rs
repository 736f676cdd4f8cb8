//! Tests of the SSE endpoint over real loopback connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use weir_operators::hub::NoSubscriber;
use weir_operators::{FlowExt, Pipeline};
use weir_runtime::Runtime;
use weir_runtime::junction::LagPolicy;

use super::{Sse, SseError};

/// One SSE event (or comment block) as a client reads it.
#[derive(Debug, Default, PartialEq)]
struct Event {
    event: Option<String>,
    data: Vec<String>,
    comments: Vec<String>,
    retry: Option<String>,
    id: Option<u64>,
}

struct Client {
    reader: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
}

impl Client {
    /// Sends `request` and reads the status line and headers.
    fn open(addr: SocketAddr, request: &str) -> Client {
        let mut socket = TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        socket.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        Client {
            reader,
            status,
            headers,
        }
    }

    /// `GET path` as HTTP/1.0, whose body ends with the connection: no chunks.
    fn get(addr: SocketAddr, path: &str) -> Client {
        Client::open(addr, &format!("GET {path} HTTP/1.0\r\n\r\n"))
    }

    /// Opens the stream and waits until it is subscribed.
    fn subscribe(addr: SocketAddr) -> Client {
        let mut c = Client::get(addr, "/events");
        assert_eq!(c.status, 200);
        let first = c.next().expect("the opening block");
        assert_eq!(first.comments, vec!["connected".to_owned()]);
        assert!(first.retry.is_some());
        c
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next block up to a blank line; `None` at the end of the stream.
    fn next(&mut self) -> Option<Event> {
        let mut ev = Event::default();
        let mut any = false;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return any.then_some(ev);
            }
            let l = line.trim_end_matches('\n');
            if l.is_empty() {
                if any {
                    return Some(ev);
                }
                continue;
            }
            any = true;
            if let Some(c) = l.strip_prefix(": ") {
                ev.comments.push(c.to_owned());
            } else if let Some(d) = l.strip_prefix("data: ") {
                ev.data.push(d.to_owned());
            } else if let Some(e) = l.strip_prefix("event: ") {
                ev.event = Some(e.to_owned());
            } else if let Some(i) = l.strip_prefix("id: ") {
                ev.id = Some(i.parse().unwrap());
            } else if let Some(r) = l.strip_prefix("retry: ") {
                ev.retry = Some(r.to_owned());
            } else {
                panic!("not an SSE line: {l:?}");
            }
        }
    }

    fn rest(&mut self) -> String {
        let mut s = String::new();
        self.reader.read_to_string(&mut s).unwrap();
        s
    }
}

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Waits for `cond`, failing after 10 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a client's stream to its `end` event: the elements must come in order
/// with every gap announced by a `lagged` event of exactly its size. Returns
/// (received, lagged, the end event's data).
fn read_to_end(c: &mut Client, n: u64) -> (u64, u64, String) {
    let value = |ev: &Event| -> u64 { ev.data[0].split(' ').next().unwrap().parse().unwrap() };
    let (mut received, mut lagged, mut next) = (0, 0, 0);
    loop {
        let ev = c.next().expect("an end event");
        match ev.event.as_deref() {
            Some("lagged") => {
                let k: u64 = ev.data[0].parse().unwrap();
                assert!(k > 0);
                lagged += k;
                next += k;
            }
            Some("end") => {
                assert!(c.next().is_none(), "nothing after the end event");
                assert_eq!(
                    received + lagged,
                    n,
                    "every element received or reported lost"
                );
                return (received, lagged, ev.data[0].clone());
            }
            None => {
                assert_eq!(value(&ev), next, "elements in order, gaps announced");
                assert_eq!(ev.id, Some(next), "the id is the index among those offered");
                next += 1;
                received += 1;
            }
            Some(other) => panic!("unexpected event {other}"),
        }
    }
}

#[test]
fn a_stalled_client_neither_holds_back_the_pipeline_nor_loses_track_of_what_it_missed() {
    const N: u64 = 20_000;
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let running = runnable.run(&rt).unwrap();
    // 1 KiB per event, so the stalled client's socket buffers fill long before
    // the end and its subscriber has to drop.
    let pad = "x".repeat(1000);
    let server = Sse::new(hub, move |x: &u64| format!("{x} {pad}"))
        .client_buffer(16)
        .lag_policy(LagPolicy::DropOldest { buffer: 0 })
        .serve(local())
        .unwrap();
    let mut reading = Client::subscribe(server.local_addr());
    let mut stalled = Client::subscribe(server.local_addr());
    let feeder = std::thread::spawn(move || {
        for x in 0..N {
            block_on(ingress.send(x)).unwrap();
        }
    });
    let (r_received, r_lagged, r_end) = read_to_end(&mut reading, N);
    assert_eq!(r_end, "completed");
    feeder.join().unwrap();
    // The pipeline finished while the stalled client had read nothing.
    running.wait().unwrap().report.check_conservation().unwrap();
    let (s_received, s_lagged, s_end) = read_to_end(&mut stalled, N);
    assert_eq!(s_end, "completed");
    assert!(s_lagged > 0, "the stalled client must have lagged");
    // What it received is its buffer plus what the kernel's socket buffers took
    // (a few MiB on loopback), the rest was dropped and announced.
    let stats = server.shutdown();
    assert_eq!(stats.events, r_received + s_received);
    assert_eq!(stats.lagged, r_lagged + s_lagged);
    assert_eq!((stats.subscribed, stats.clients), (2, 0));
}

#[test]
fn under_block_a_client_gets_every_element() {
    const N: u64 = 5_000;
    let rt = rt();
    let (runnable, hub) = Pipeline::from_iter(0..N).broadcast_hub(NoSubscriber::Wait);
    let server = Sse::new(hub, |x: &u64| x.to_string())
        .client_buffer(4)
        .lag_policy(LagPolicy::Block)
        .serve(local())
        .unwrap();
    let running = runnable.run(&rt).unwrap();
    // The hub waits for its first subscriber, so nothing is published before.
    let mut c = Client::subscribe(server.local_addr());
    assert_eq!(read_to_end(&mut c, N), (N, 0, "completed".to_owned()));
    running.wait().unwrap().report.check_conservation().unwrap();
}

#[test]
fn one_connection_over_max_clients_gets_503_and_is_counted() {
    let rt = rt();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let _running = runnable.run(&rt).unwrap();
    let server = Sse::new(hub, |x: &u64| x.to_string())
        .max_clients(1)
        .serve(local())
        .unwrap();
    let _first = Client::subscribe(server.local_addr());
    let mut second = Client::get(server.local_addr(), "/events");
    assert_eq!(second.status, 503);
    assert_eq!(second.header("retry-after"), Some("1"));
    assert!(second.rest().contains("too many SSE clients"));
    eventually("the refused connection is closed", || {
        server.stats().connections == 1
    });
    let stats = server.stats();
    assert_eq!((stats.rejected, stats.clients), (1, 1));
}

#[test]
fn another_path_is_404_and_another_method_405() {
    let rt = rt();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let _running = runnable.run(&rt).unwrap();
    let server = Sse::new(hub, |x: &u64| x.to_string())
        .path("/feed")
        .serve(local())
        .unwrap();
    assert_eq!(Client::get(server.local_addr(), "/events").status, 404);
    let post = Client::open(
        server.local_addr(),
        "POST /feed HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((post.status, post.header("allow")), (405, Some("GET")));
    // A query string does not change the path.
    assert_eq!(
        Client::get(server.local_addr(), "/feed?since=1").status,
        200
    );
    assert_eq!(server.stats().bad_requests, 2);
}

#[test]
fn multi_line_elements_become_several_data_lines_under_the_event_name() {
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let running = runnable.run(&rt).unwrap();
    let server = Sse::new(hub, |x: &u64| format!("first {x}\nsecond {x}\n"))
        .event_name("tick")
        .serve(local())
        .unwrap();
    let mut c = Client::subscribe(server.local_addr());
    block_on(ingress.send(5)).unwrap();
    drop(ingress);
    let ev = c.next().unwrap();
    assert_eq!(ev.event.as_deref(), Some("tick"));
    assert_eq!(ev.data, vec!["first 5".to_owned(), "second 5".to_owned()]);
    assert_eq!(c.next().unwrap().event.as_deref(), Some("end"));
    running.wait().unwrap();
}

#[test]
fn json_encoding_and_chunked_http_1_1() {
    #[derive(Debug, Clone, serde::Serialize)]
    struct Reading {
        sensor: u32,
        value: f64,
    }
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<Reading>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let running = runnable.run(&rt).unwrap();
    let server = Sse::json(hub).serve(local()).unwrap();
    let mut c = Client::open(
        server.local_addr(),
        "GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
    );
    assert_eq!(c.status, 200);
    assert_eq!(c.header("content-type"), Some("text/event-stream"));
    assert_eq!(c.header("cache-control"), Some("no-cache"));
    assert_eq!(c.header("transfer-encoding"), Some("chunked"));
    // Wait for the opening block (inside the first chunk) before sending.
    let mut seen = String::new();
    let mut line = String::new();
    while !seen.contains(": connected") {
        line.clear();
        c.reader.read_line(&mut line).unwrap();
        seen.push_str(&line);
    }
    block_on(ingress.send(Reading {
        sensor: 3,
        value: 1.5,
    }))
    .unwrap();
    drop(ingress);
    running.wait().unwrap();
    let rest = c.rest();
    assert!(
        rest.contains("data: {\"sensor\":3,\"value\":1.5}\n\n"),
        "{rest:?}"
    );
    assert!(rest.contains("event: end\ndata: completed\n\n"), "{rest:?}");
    // The chunked body ends with its zero-size chunk.
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");
}

#[test]
fn shutdown_ends_every_stream_and_a_leaving_client_unsubscribes() {
    let rt = rt();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let _running = runnable.run(&rt).unwrap();
    let server = Sse::new(hub.clone(), |x: &u64| x.to_string())
        .serve(local())
        .unwrap();
    let leaving = Client::subscribe(server.local_addr());
    let mut staying = Client::subscribe(server.local_addr());
    assert_eq!(hub.subscribers(), 2);
    drop(leaving);
    // The server notices the closed socket when it next writes or reads; the
    // heartbeat is 15 s, so what is checked here is the count of open streams
    // after shutdown.
    let stats = server.shutdown();
    let end = staying.next().unwrap();
    assert_eq!(
        (end.event.as_deref(), end.data[0].as_str()),
        (Some("end"), "shutdown")
    );
    assert!(staying.next().is_none());
    assert_eq!((stats.clients, stats.connections), (0, 0));
    eventually("both subscriptions are gone", || hub.subscribers() == 0);
}

#[test]
fn an_idle_stream_gets_heartbeats() {
    let rt = rt();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let _running = runnable.run(&rt).unwrap();
    let server = Sse::new(hub, |x: &u64| x.to_string())
        .heartbeat(Some(Duration::from_millis(20)))
        .serve(local())
        .unwrap();
    let mut c = Client::subscribe(server.local_addr());
    for _ in 0..3 {
        assert_eq!(c.next().unwrap().comments, vec!["keep-alive".to_owned()]);
    }
}

#[test]
fn a_client_that_never_sends_its_headers_is_closed() {
    let rt = rt();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let _running = runnable.run(&rt).unwrap();
    let server = Sse::new(hub, |x: &u64| x.to_string())
        .header_timeout(Duration::from_millis(50))
        .serve(local())
        .unwrap();
    let mut slow = TcpStream::connect(server.local_addr()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /ev").unwrap();
    let mut rest = Vec::new();
    // The server closes the connection (possibly after a 408); no hang.
    let _ = slow.read_to_end(&mut rest);
    eventually("the connection is closed", || {
        server.stats().connections == 0
    });
    assert_eq!(server.stats().subscribed, 0);
}

#[test]
fn invalid_options_and_a_taken_address_are_named() {
    let rt = rt();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let _running = runnable.run(&rt).unwrap();
    let sse = || Sse::new(hub.clone(), |x: &u64| x.to_string());
    let option = |r: Result<super::SseServer, SseError>| match r {
        Err(SseError::Invalid { option, .. }) => option,
        other => panic!("expected an invalid option, got {other:?}"),
    };
    assert_eq!(option(sse().path("events").serve(local())), "path");
    assert_eq!(
        option(sse().client_buffer(0).serve(local())),
        "client_buffer"
    );
    assert_eq!(option(sse().max_clients(0).serve(local())), "max_clients");
    assert_eq!(
        option(sse().heartbeat(Some(Duration::ZERO)).serve(local())),
        "heartbeat"
    );
    assert_eq!(option(sse().event_name("end").serve(local())), "event_name");
    assert_eq!(
        option(sse().event_name("a\nb").serve(local())),
        "event_name"
    );
    let first = sse().serve(local()).unwrap();
    let err = sse().serve(first.local_addr()).unwrap_err();
    assert!(matches!(err, SseError::Bind { .. }), "{err:?}");
    let source = std::error::Error::source(&err).expect("the bind error");
    assert!(source.downcast_ref::<std::io::Error>().is_some());
    assert!(
        err.to_string().contains(&first.local_addr().to_string()),
        "{err}"
    );
}

#[test]
fn open_connections_and_streaming_clients_are_exported_as_gauges() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let rt = rt();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(NoSubscriber::Wait);
    let _running = runnable.run(&rt).unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The gauges are registered when the server is created.
    let server = metrics::with_local_recorder(&recorder, || {
        Sse::new(hub, |x: &u64| x.to_string())
            .serve(local())
            .unwrap()
    });
    // A snapshot swaps every value to 0, and the gauges move by increments and
    // decrements: the level is the sum of what the snapshots saw.
    let levels = std::cell::RefCell::new(std::collections::HashMap::<String, f64>::new());
    let level = |name: &str| {
        let mut levels = levels.borrow_mut();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if let DebugValue::Gauge(delta) = value
                && key.key().labels().any(|l| l.key() == "addr")
            {
                *levels.entry(key.key().name().to_owned()).or_default() += delta.into_inner();
            }
        }
        levels.get(name).copied()
    };
    assert_eq!(level("weir_sse_open_connections"), Some(0.0));
    assert_eq!(level("weir_sse_clients"), Some(0.0));
    let first = Client::subscribe(server.local_addr());
    let second = Client::subscribe(server.local_addr());
    assert_eq!(level("weir_sse_open_connections"), Some(2.0));
    assert_eq!(level("weir_sse_clients"), Some(2.0));
    drop(first);
    eventually("a leaving client is no longer counted", || {
        level("weir_sse_open_connections") == Some(1.0) && level("weir_sse_clients") == Some(1.0)
    });
    assert_eq!(server.stats().connections, 1);
    drop(second);
    eventually("every client has left", || {
        level("weir_sse_open_connections") == Some(0.0) && level("weir_sse_clients") == Some(0.0)
    });
}
