//! `axum_service`: with its pipeline held (a stall), `POST /events` is refused
//! with `503` + `Retry-After` while `GET /healthz` and `GET /stats` go on
//! answering within a bound — backpressure never holds up the HTTP server's
//! threads — and once released, every accepted event is counted exactly once
//! and no refused one is. Then the binary itself: Ctrl-C drains and prints the
//! same accounting.
//!
//! The stall test runs the service in-process (`weir_examples::axum_service::serve`
//! on an actix System over a two-worker tokio runtime, as the binary's `main`
//! builds it): the test then holds the pipeline with a [`Hold`] it releases
//! itself, a typed handle instead of a test-only flag or endpoint in the
//! binary, and gets the final [`Summary`] back as a value. The binary's own
//! parts (flags, Ctrl-C, the printed summary) are tested by starting it, as the
//! other example tests do.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_examples::axum_service::{Config, Hold, Limits, ServiceError, Settings, Summary, serve};

/// An HTTP answer: status, head (lower-cased), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request on its own connection (`Connection: close`).
fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Answer {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    Answer {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn post(addr: SocketAddr, key: &str) -> Answer {
    request(
        addr,
        "POST",
        "/events",
        Some(&format!(r#"{{"key":"{key}"}}"#)),
    )
}

/// A GET, and how long it took.
fn timed_get(addr: SocketAddr, path: &str) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = request(addr, "GET", path, None);
    (answer, started.elapsed())
}

/// The service, running on a thread of its own.
struct InProcess {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<Summary, ServiceError>>,
}

impl InProcess {
    /// Starts `serve` the way the binary does: a multi-threaded tokio runtime
    /// wrapped in an actix System.
    fn start(config: Config) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let tokio_rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            actix_rt::System::with_tokio_rt(|| tokio_rt).block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                serve(listener, config, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the service listens");
        InProcess { addr, stop, thread }
    }

    /// Shuts it down (as Ctrl-C does) and returns its summary.
    fn stop(self) -> Summary {
        self.stop.send(()).unwrap();
        self.thread.join().unwrap().unwrap()
    }
}

/// What a GET may take while the pipeline is stalled.
const PROMPT: Duration = Duration::from_millis(200);
/// How long a POST waits for room before its 503.
const SEND_TIMEOUT: Duration = Duration::from_millis(300);

#[test]
fn a_stalled_pipeline_refuses_posts_while_health_and_stats_answer_and_counts_each_accepted_event_once()
 {
    let hold = Hold::new();
    let service = InProcess::start(Config {
        limits: Limits {
            capacity: 2,
            edge_capacity: 4,
            ..Limits::default()
        },
        http: Settings {
            send_timeout: SEND_TIMEOUT,
            retry_after_secs: 2,
            max_key_bytes: 16,
        },
        hold: Some(hold.clone()),
        ..Config::default()
    });
    let addr = service.addr;
    let keys = ["red", "green", "blue"];
    let mut accepted: BTreeMap<String, u64> = BTreeMap::new();
    let mut refused = 0_u64;

    // Held, the pipeline takes what its ingress and edges hold, then the
    // first POST without room waits SEND_TIMEOUT and is refused.
    for i in 0..1_000 {
        let key = keys[i % keys.len()];
        let answer = post(addr, key);
        match answer.status {
            202 => *accepted.entry(key.to_owned()).or_default() += 1,
            503 => {
                assert!(answer.head.contains("retry-after: 2"), "{}", answer.head);
                assert!(answer.body.contains("backpressure"), "{}", answer.body);
                refused += 1;
                break;
            }
            other => panic!("POST answered {other}: {}", answer.body),
        }
    }
    assert_eq!(refused, 1, "the held pipeline never ran out of room");
    // Exactly what the path to the hold holds: the ingress (2), the hold
    // stage's input (4), and the one event waiting in the hold.
    let taken: u64 = accepted.values().sum();
    assert_eq!(taken, 2 + 4 + 1, "the events a held pipeline takes");

    // Still held: three clients POST at once, each request waiting for room
    // until it is refused; meanwhile GETs answer promptly.
    let posting = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let posting = Arc::clone(&posting);
            std::thread::spawn(move || {
                (0..2)
                    .map(|_| {
                        posting.fetch_add(1, Ordering::SeqCst);
                        let answer = post(addr, &format!("late-{c}"));
                        posting.fetch_sub(1, Ordering::SeqCst);
                        answer.status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    // Until the clients have started.
    let started = Instant::now();
    while posting.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no client started"
        );
        std::thread::yield_now();
    }
    let mut gets_while_posting = 0;
    while clients.iter().any(|c| !c.is_finished()) {
        let before = posting.load(Ordering::SeqCst);
        let (health, took) = timed_get(addr, "/healthz");
        assert_eq!(health.status, 200, "{}", health.body);
        assert!(took < PROMPT, "GET /healthz took {took:?} while stalled");
        let (stats, took) = timed_get(addr, "/stats");
        assert_eq!(stats.status, 200, "{}", stats.body);
        assert!(took < PROMPT, "GET /stats took {took:?} while stalled");
        let stats = stats.json();
        assert_eq!(stats["counted"], 0, "nothing passes the hold: {stats}");
        assert_eq!(stats["admission"]["accepted"], taken, "{stats}");
        if before > 0 && posting.load(Ordering::SeqCst) > 0 {
            gets_while_posting += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for client in clients {
        let statuses = client.join().unwrap();
        assert_eq!(statuses, [503, 503], "still held: every POST is refused");
        refused += 2;
    }
    assert!(
        gets_while_posting >= 3,
        "only {gets_while_posting} GET pairs ran while POSTs were waiting"
    );

    // Released: everything accepted is counted, once; the refused "late-*"
    // events never are.
    hold.release();
    let started = Instant::now();
    let stats = loop {
        let stats = request(addr, "GET", "/stats", None).json();
        if stats["counted"] == taken {
            break stats;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not all accepted events were counted: {stats}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let counted: BTreeMap<String, u64> = serde_json::from_value(stats["keys"].clone()).unwrap();
    assert_eq!(counted, accepted);
    assert_eq!(stats["admission"]["refused_full"], refused, "{stats}");

    // Flowing again: a POST is taken at once.
    assert_eq!(post(addr, "red").status, 202);
    *accepted.get_mut("red").unwrap() += 1;
    // A bad body is answered 4xx and counted as invalid, not taken.
    assert_eq!(post(addr, "a-key-longer-than-16-bytes").status, 422);
    assert_eq!(
        request(addr, "POST", "/events", Some("not json")).status,
        400
    );

    let summary = service.stop();
    summary.check().unwrap();
    assert_eq!(summary.admission.accepted, taken + 1);
    assert_eq!(summary.admission.refused_full, refused);
    assert_eq!(summary.admission.invalid, 2);
    assert_eq!(summary.counted, taken + 1);
    assert_eq!(summary.keys, accepted);
    assert_eq!(summary.report.abandoned(), 0);
}

#[cfg(unix)]
#[test]
fn the_binary_serves_until_ctrl_c_then_drains_and_prints_what_it_counted() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("summary.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_axum_service"))
        .args(["--addr", "127.0.0.1:0", "--report"])
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("axum_service: listening on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("no address: {line:?}"))
        .parse()
        .unwrap();

    for key in ["a", "b", "a", "a", "c"] {
        let answer = post(addr, key);
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    assert_eq!(request(addr, "POST", "/events", Some("{}")).status, 422);
    let health = request(addr, "GET", "/healthz", None);
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, "healthy".into())
    );

    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "it did not stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = line;
    stderr.read_to_string(&mut err).unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(err.contains("Ctrl-C: stopping"), "{err}");
    assert!(
        out.contains("accepted 5 events, refused 0") && out.contains("invalid 1"),
        "{out}"
    );
    assert!(out.contains("counted 5 in 3 keys"), "{out}");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(summary["counted"], 5);
    assert_eq!(summary["keys"], serde_json::json!({"a": 3, "b": 1, "c": 1}));
    assert_eq!(summary["abandoned"], 0);
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    for (args, flag) in [
        (["--capacity", "0"], "--capacity"),
        (["--addr", "nowhere"], "--addr"),
        (["--max-keys", "0"], "--max-keys"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_axum_service"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(flag), "{err}");
    }
}
