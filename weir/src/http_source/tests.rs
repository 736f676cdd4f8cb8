//! Tests of the HTTP ingest endpoint over real loopback connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use weir_operators::FlowExt;
use weir_runtime::Runtime;

use super::HttpSource;

/// An answer: status, headers (lower-cased names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (closing the connection after it) and reads the answer.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> Answer {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).unwrap();
    socket.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    socket.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

const NDJSON: &str = "Content-Type: application/x-ndjson";
const JSON: &str = "Content-Type: application/json";

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn ndjson_and_json_bodies_are_admitted_whole_and_reach_the_pipeline() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (server, flow) = HttpSource::<u64>::json().serve(local()).unwrap();
    let running = flow.collect().run(&rt).unwrap();
    let addr = server.local_addr();

    let a = request(addr, "POST", "/events", &[NDJSON], "1\n2\r\n\n3\n");
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.body.trim(), r#"{"accepted":3}"#);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let a = request(addr, "POST", "/events", &[JSON], "4");
    assert_eq!(a.status, 202, "{a:?}");

    let stats = server.shutdown();
    assert_eq!((stats.admitted, stats.elements), (2, 4));
    let done = running.wait().unwrap();
    assert_eq!(done.output, [1, 2, 3, 4]);
    done.report.check_conservation().unwrap();
}

#[test]
fn bad_requests_are_refused_naming_what_is_wrong_and_admit_nothing() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (server, flow) = HttpSource::<u64>::json()
        .capacity(3)
        .max_body_bytes(64)
        .serve(local())
        .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    let addr = server.local_addr();

    let a = request(
        addr,
        "POST",
        "/events",
        &[NDJSON],
        "1\n2\nnot-a-number\n4\n",
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.body.starts_with("line 3: "), "{a:?}");
    let a = request(addr, "POST", "/events", &["Content-Type: text/plain"], "1");
    assert_eq!(a.status, 415, "{a:?}");
    assert!(a.body.contains("text/plain"), "{a:?}");
    let a = request(addr, "POST", "/events", &[], "1");
    assert_eq!(a.status, 415, "{a:?}");
    let a = request(addr, "POST", "/elsewhere", &[NDJSON], "1");
    assert_eq!(a.status, 404, "{a:?}");
    let a = request(addr, "GET", "/events", &[], "");
    assert_eq!(a.status, 405, "{a:?}");
    assert_eq!(a.header("allow"), Some("POST"));
    let big = "1\n".repeat(40);
    let a = request(addr, "POST", "/events", &[NDJSON], &big);
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body.contains("max_body_bytes (64)"), "{a:?}");
    let a = request(addr, "POST", "/events", &[NDJSON], "1\n2\n3\n4\n");
    assert_eq!(a.status, 413, "{a:?}");
    assert!(
        a.body
            .contains("4 elements, more than the ingress capacity (3)"),
        "{a:?}"
    );
    let a = request(addr, "POST", "/events", &[NDJSON], "\n\n");
    assert_eq!(a.status, 400, "{a:?}");

    let stats = server.shutdown();
    assert_eq!((stats.elements, stats.bad), (0, 8), "{stats:?}");
    assert!(running.wait().unwrap().output.is_empty());
}

#[test]
fn a_bearer_token_is_required_when_set() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (server, flow) = HttpSource::<u64>::json()
        .bearer_token("s3cret")
        .serve(local())
        .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    let addr = server.local_addr();
    let a = request(addr, "POST", "/events", &[JSON], "1");
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    let a = request(
        addr,
        "POST",
        "/events",
        &[JSON, "Authorization: Bearer wrong!"],
        "1",
    );
    assert_eq!(a.status, 401, "{a:?}");
    let a = request(
        addr,
        "POST",
        "/events",
        &[JSON, "Authorization: Bearer s3cret"],
        "7",
    );
    assert_eq!(a.status, 202, "{a:?}");
    let stats = server.shutdown();
    assert_eq!(stats.unauthorized, 2);
    assert_eq!(running.wait().unwrap().output, [7]);
}

/// While the pipeline has no room a request waits, then gets 503 with
/// Retry-After and admits nothing; once the pipeline moves again requests are
/// admitted, and everything admitted is delivered.
#[test]
fn a_full_pipeline_answers_503_with_retry_after_and_loses_nothing_admitted() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (server, flow) = HttpSource::<u64>::json()
        .capacity(2)
        .wait(Duration::from_millis(100))
        .serve(local())
        .unwrap();
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    // The sink blocks its arbiter on the gate: nothing moves until it opens.
    let running = flow
        .for_each(move |x| {
            let _ = gate.lock().unwrap().recv();
            log.lock().unwrap().push(x);
        })
        .run(&rt)
        .unwrap();
    let addr = server.local_addr();
    let first = request(addr, "POST", "/events", &[NDJSON], "1\n2\n");
    assert_eq!(first.status, 202, "{first:?}");
    // Give the source time to take those two and the sink to block on the first.
    let mut refused = None;
    for _ in 0..50 {
        let a = request(addr, "POST", "/events", &[NDJSON], "3\n4\n");
        if a.status == 503 {
            refused = Some(a);
            break;
        }
        assert_eq!(a.status, 202, "{a:?}");
    }
    let refused = refused.expect("the ingress never filled");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.body.contains("no room"), "{refused:?}");
    let admitted = server.stats().elements;
    // Open the gate for good: every admitted element is delivered.
    for _ in 0..admitted {
        release.send(()).unwrap();
    }
    let stats = server.shutdown();
    assert!(stats.busy >= 1, "{stats:?}");
    let done = running.wait().unwrap();
    assert_eq!(seen.lock().unwrap().len() as u64, stats.elements);
    done.report.check_conservation().unwrap();
}

#[test]
fn open_connections_are_exported_as_a_gauge() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The gauge is registered when the endpoint is created.
    let (server, flow) =
        metrics::with_local_recorder(&recorder, || HttpSource::<u64>::json().serve(local()))
            .unwrap();
    let running = flow.collect().run(&rt).unwrap();
    // A snapshot swaps the value to 0, and the gauge moves by increments and
    // decrements: the level is the sum of what the snapshots saw.
    let seen = std::cell::Cell::new(None::<f64>);
    let open = || {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if let DebugValue::Gauge(delta) = value
                && key.key().name() == "weir_http_source_open_connections"
            {
                seen.set(Some(seen.get().unwrap_or(0.0) + delta.into_inner()));
            }
        }
        seen.get()
    };
    let wait_for = |n: f64| {
        let start = std::time::Instant::now();
        while open() != Some(n) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "gauge {:?}, not {n}",
                open()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(open(), Some(0.0));
    // Two connections that have not sent their request yet.
    let a = TcpStream::connect(server.local_addr()).unwrap();
    let b = TcpStream::connect(server.local_addr()).unwrap();
    wait_for(2.0);
    drop(a);
    wait_for(1.0);
    drop(b);
    wait_for(0.0);
    // A request is counted while it is answered, and not after.
    let answer = request(server.local_addr(), "POST", "/events", &[NDJSON], "1\n");
    assert_eq!(answer.status, 202, "{}", answer.body);
    wait_for(0.0);
    server.shutdown();
    assert_eq!(running.wait().unwrap().output, [1]);
}
