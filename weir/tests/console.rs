//! The console over real loopback connections: every endpoint's status and
//! content type, the SSE framing, the bearer token, the client limit, readiness
//! following a circuit breaker, the bottleneck of a graph with a slow sink, and
//! `/metrics` before and after the Prometheus recorder is installed.
//!
//! Its own binary: the metrics test installs the process's global recorder.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir::console::{Console, ConsoleError, ConsoleServer};
use weir::manager::PipelineManager;
use weir::observe::BreakerState;
use weir::prelude::ConfigHandle;
use weir::prelude::*;
use weir::supervisor::policy::{BreakerConfig, Trip};

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

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket
}

/// Reads a status line and headers.
fn head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
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
    (status, headers)
}

fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Answer {
    let mut socket = connect(addr);
    write!(socket, "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
    let mut reader = BufReader::new(socket);
    let (status, headers) = head(&mut reader);
    let mut body = String::new();
    reader.read_to_string(&mut body).unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, "")
}

/// A control request with bearer token `token`.
fn post(addr: SocketAddr, path: &str, token: &str) -> Answer {
    request(
        addr,
        "POST",
        path,
        &format!("Authorization: Bearer {token}\r\nContent-Length: 0\r\n"),
    )
}

/// An open event stream, after its headers.
struct Events {
    status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(addr: SocketAddr, path: &str) -> Events {
        let mut socket = connect(addr);
        write!(socket, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reader = BufReader::new(socket);
        let (status, headers) = head(&mut reader);
        Events {
            status,
            headers,
            reader,
        }
    }

    /// The next block of lines up to a blank line, without the chunked
    /// encoding's size lines.
    fn block(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "stream ended"
            );
            let l = line.trim_end_matches(['\r', '\n']).to_owned();
            let chunk_size =
                !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit()) && !l.contains(':');
            if chunk_size && lines.is_empty() {
                continue;
            }
            if l.is_empty() {
                if lines.is_empty() {
                    continue;
                }
                return lines;
            }
            lines.push(l);
        }
    }

    /// The next `stats` event: its id and its data.
    fn stats(&mut self) -> (u64, serde_json::Value) {
        loop {
            let block = self.block();
            if block.first().map(String::as_str) != Some("event: stats") {
                continue;
            }
            let id = block[1].strip_prefix("id: ").unwrap().parse().unwrap();
            let data = block[2].strip_prefix("data: ").unwrap();
            return (id, serde_json::from_str(data).unwrap());
        }
    }
}

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// A manager running one pipeline that waits for input (so it stays running).
fn running_manager(rt: &Runtime) -> (PipelineManager, weir::source::Ingress<u64>) {
    let manager = PipelineManager::new();
    let (ingress, flow) = Pipeline::ingress::<u64>(16);
    let runnable = flow
        .map(|x| x + 1)
        .name("inc")
        .for_each(|_| ())
        .name("sink");
    manager.start("ingest", runnable, rt).unwrap();
    (manager, ingress)
}

fn serve(console: Console) -> ConsoleServer {
    console.serve("127.0.0.1:0".parse().unwrap()).unwrap()
}

fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn every_endpoint_answers_with_its_status_and_content_type() {
    let rt = rt();
    let (manager, ingress) = running_manager(&rt);
    let server = serve(Console::new(&manager));
    let addr = server.local_addr();

    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(page.body.contains("<script src=\"console.js\"></script>"));
    let js = get(addr, "/console.js");
    assert_eq!(
        (js.status, js.header("content-type")),
        (200, Some("text/javascript; charset=utf-8"))
    );
    assert!(js.body.contains("EventSource"));
    let css = get(addr, "/console.css");
    assert_eq!(
        (css.status, css.header("content-type")),
        (200, Some("text/css; charset=utf-8"))
    );

    let graph = get(addr, "/api/graph");
    assert_eq!(
        (graph.status, graph.header("content-type")),
        (200, Some("application/json"))
    );
    let graph = graph.json();
    let p = &graph["pipelines"][0];
    assert_eq!(p["pipeline"], "ingest");
    let names: Vec<_> = p["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ingress#0", "inc", "sink"]);
    assert_eq!(p["edges"].as_array().unwrap().len(), 2);
    let dot = get(addr, "/api/graph?format=dot");
    assert_eq!(
        (dot.status, dot.header("content-type")),
        (200, Some("text/vnd.graphviz; charset=utf-8"))
    );
    assert!(dot.body.starts_with("digraph \"ingest\""), "{}", dot.body);
    let mermaid = get(addr, "/api/graph?format=mermaid");
    assert_eq!(mermaid.status, 200);
    assert!(mermaid.body.starts_with("flowchart LR"));
    assert_eq!(get(addr, "/api/graph?format=png").status, 400);

    let stats = get(addr, "/api/stats");
    assert_eq!(
        (stats.status, stats.header("content-type")),
        (200, Some("application/json"))
    );
    let stats = stats.json();
    let p = &stats["pipelines"][0];
    assert_eq!(p["name"], "ingest");
    assert_eq!(p["status"]["state"], "Running");
    assert_eq!(p["stats"]["stages"].as_array().unwrap().len(), 3);
    assert_eq!(p["edges"].as_array().unwrap().len(), 2);
    assert_eq!(p["conservation"]["state"], "running");
    assert!(p["bottleneck"].is_null());
    assert_eq!(stats["ready"]["ready"], true);

    let health = get(addr, "/healthz");
    assert_eq!(
        (health.status, health.header("content-type")),
        (200, Some("application/json"))
    );
    assert_eq!(health.json()["status"], "alive");
    let ready = get(addr, "/readyz");
    assert_eq!(
        (ready.status, ready.header("content-type")),
        (200, Some("application/json"))
    );
    assert_eq!(ready.json()["ready"], true);

    let missing = get(addr, "/nothing");
    assert_eq!(
        (missing.status, missing.header("content-type")),
        (404, Some("application/json"))
    );
    let post = request(addr, "POST", "/api/stats", "Content-Length: 0\r\n");
    assert_eq!(
        (post.status, post.header("allow")),
        (405, Some("GET, HEAD"))
    );

    // A pipeline that ended: not ready, and its report's conservation shown.
    drop(ingress);
    assert!(until(Duration::from_secs(5), || get(addr, "/readyz")
        .status
        == 503));
    let ready = get(addr, "/readyz").json();
    assert_eq!(ready["problems"][0]["pipeline"], "ingest");
    assert_eq!(ready["problems"][0]["reason"], "completed");
    let stats = get(addr, "/api/stats").json();
    assert_eq!(stats["pipelines"][0]["conservation"]["state"], "balanced");
    server.shutdown();
}

#[test]
fn the_event_stream_pushes_stats_every_interval() {
    let rt = rt();
    let (manager, ingress) = running_manager(&rt);
    let server = serve(Console::new(&manager).interval(Duration::from_millis(250)));
    let mut events = Events::open(server.local_addr(), "/api/events");
    assert_eq!(events.status, 200);
    let header = |k: &str| {
        events
            .headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(events.block(), ["retry: 2000", ": connected"]);
    let (first, data) = events.stats();
    assert_eq!(first, 0);
    assert_eq!(data["pipelines"][0]["name"], "ingest");
    futures::executor::block_on(ingress.send(1)).unwrap();
    let start = Instant::now();
    let (second, _) = events.stats();
    assert!(second > first);
    let (third, data) = events.stats();
    assert_eq!(third, second + 1);
    // Two frames one interval apart (with slack for a loaded machine).
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(data["uptime_ms"].as_u64().unwrap() > 0);
    assert_eq!(server.clients(), 1);
    drop(events);
    assert!(until(Duration::from_secs(5), || server.clients() == 0));
    // A reconnecting client gets the figures at once.
    let mut again = Events::open(server.local_addr(), "/api/events");
    assert_eq!(again.block(), ["retry: 2000", ": connected"]);
    assert_eq!(again.stats().0, 0);
    drop(ingress);
    server.shutdown();
}

#[test]
fn a_missing_or_wrong_token_gets_401_and_no_data() {
    let rt = rt();
    let (manager, _ingress) = running_manager(&rt);
    let server = serve(Console::new(&manager).bearer_token("s3cret"));
    let addr = server.local_addr();
    for path in [
        "/",
        "/api/graph",
        "/api/stats",
        "/api/events",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        for extra in [
            "",
            "Authorization: Bearer wrong\r\n",
            "Authorization: s3cret\r\n",
        ] {
            let a = request(addr, "GET", path, extra);
            assert_eq!(a.status, 401, "{path} {extra:?}");
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
            assert!(!a.body.contains("ingest"), "{}", a.body);
        }
        let a = get(addr, &format!("{path}?token=wrong"));
        assert_eq!(a.status, 401, "{path}");
    }
    assert_eq!(server.unauthorized(), 7 * 4);
    // The page's script and style sheet (embedded, the same in every console,
    // no data) load without the token, as a browser asks for them.
    for asset in ["/console.js", "/console.css"] {
        let a = get(addr, asset);
        assert_eq!(a.status, 200, "{asset}");
        assert!(!a.body.contains("ingest"));
    }
    let ok = request(
        addr,
        "GET",
        "/api/graph",
        "Authorization: Bearer s3cret\r\n",
    );
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("ingest"));
    assert_eq!(get(addr, "/api/stats?token=s3cret").status, 200);
    let mut events = Events::open(addr, "/api/events?token=s3cret");
    assert_eq!(events.status, 200);
    assert_eq!(events.stats().0, 0);
}

#[test]
fn one_event_stream_over_the_limit_gets_503() {
    let rt = rt();
    let (manager, _ingress) = running_manager(&rt);
    let server = serve(Console::new(&manager).max_clients(2));
    let addr = server.local_addr();
    let mut a = Events::open(addr, "/api/events");
    let mut b = Events::open(addr, "/api/events");
    a.stats();
    b.stats();
    let refused = Events::open(addr, "/api/events");
    assert_eq!(refused.status, 503);
    assert!(
        refused
            .headers
            .contains(&("retry-after".into(), "1".into()))
    );
    assert_eq!(server.rejected(), 1);
    // The other endpoints still answer.
    assert_eq!(get(addr, "/api/stats").status, 200);
    drop(a);
    assert!(until(Duration::from_secs(5), || server.clients() == 1));
    let mut c = Events::open(addr, "/api/events");
    assert_eq!(c.status, 200);
    c.stats();
    drop(b);
}

#[test]
fn options_out_of_range_are_refused() {
    let manager = PipelineManager::new();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let invalid = |c: Console| match c.serve(addr) {
        Err(ConsoleError::Invalid { option, .. }) => option,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        invalid(Console::new(&manager).interval(Duration::from_millis(100))),
        "interval"
    );
    assert_eq!(
        invalid(Console::new(&manager).interval(Duration::from_secs(2))),
        "interval"
    );
    assert_eq!(
        invalid(Console::new(&manager).max_clients(0)),
        "max_clients"
    );
    assert_eq!(
        invalid(Console::new(&manager).bearer_token("")),
        "bearer_token"
    );
    assert_eq!(
        invalid(Console::new(&manager).slow_client_timeout(Duration::from_millis(600))),
        "slow_client_timeout"
    );
    let taken = std::net::TcpListener::bind(addr).unwrap();
    let err = Console::new(&manager)
        .serve(taken.local_addr().unwrap())
        .unwrap_err();
    assert!(matches!(err, ConsoleError::Bind { .. }), "{err:?}");
}

#[test]
fn readyz_is_503_while_a_breaker_is_open_and_200_once_it_closes() {
    let rt = rt();
    let down = Arc::new(AtomicBool::new(true));
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Transient, Action::Retry)
        .max_attempts(100_000)
        .backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .breaker(BreakerConfig::new(
            Trip::Consecutive(3),
            Duration::from_millis(30),
        ));
    let service = Arc::clone(&down);
    let (ingress, flow) = Pipeline::ingress::<u64>(4);
    let runnable = flow
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
        .try_map(move |x| {
            if service.load(Ordering::SeqCst) {
                Err(Failure::error(ErrorClass::Transient, "service down"))
            } else {
                Ok(x)
            }
        })
        .name("lookup")
        .for_each(|_| ());
    let manager = PipelineManager::new();
    manager.start("calls", runnable, &rt).unwrap();
    let server = serve(Console::new(&manager).interval(Duration::from_millis(250)));
    let addr = server.local_addr();
    assert_eq!(get(addr, "/readyz").status, 200);

    futures::executor::block_on(ingress.send(1)).unwrap();
    assert!(until(Duration::from_secs(10), || get(addr, "/readyz")
        .status
        == 503));
    let body = get(addr, "/readyz").json();
    assert_eq!(body["ready"], false);
    let problem = &body["problems"][0];
    assert_eq!(
        (problem["pipeline"].as_str(), problem["stage"].as_str()),
        (Some("calls"), Some("lookup"))
    );
    assert!(
        problem["reason"]
            .as_str()
            .unwrap()
            .starts_with("circuit breaker"),
        "{problem}"
    );
    // The topology shows the breaker's state too.
    let graph = get(addr, "/api/graph").json();
    let lookup = &graph["pipelines"][0]["nodes"][1];
    assert_eq!(lookup["name"], "lookup");
    assert_ne!(lookup["breaker"], "closed");

    down.store(false, Ordering::SeqCst);
    assert!(until(Duration::from_secs(10), || get(addr, "/readyz")
        .status
        == 200));
    assert_eq!(
        get(addr, "/readyz").json()["problems"],
        serde_json::json!([])
    );
    // The page's event list saw the breaker open and close.
    assert!(until(Duration::from_secs(5), || {
        let stats = get(addr, "/api/stats").json();
        let texts: Vec<String> = stats["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "breaker")
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect();
        texts.first().map(String::as_str) == Some("breaker opened")
            && texts.last().map(String::as_str) == Some("breaker closed")
    }));
    drop(ingress);
    manager.shutdown_all(Duration::from_secs(5));
}

#[test]
fn a_deliberately_slow_sink_is_named_the_bottleneck() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..1_000_000_u64).name("numbers"));
    let [fast, slow] = g.broadcast(numbers, Broadcast::new(2));
    g.name_stage(fast, "fan");
    let fast = g.flow(fast, |f| f.map(|x| x + 1).name("inc"));
    g.sink(fast, |f| f.for_each(|_| ()).name("quick"));
    g.sink(slow, |f| {
        f.for_each(|_| std::thread::sleep(Duration::from_millis(2)))
            .name("slow")
            .capacity(8)
    });
    g.default_capacity(16);
    let manager = PipelineManager::new();
    manager.start_graph("jammed", g, &rt).unwrap();
    let server = serve(Console::new(&manager));
    let addr = server.local_addr();
    let mut last = serde_json::Value::Null;
    let named = until(Duration::from_secs(10), || {
        last = get(addr, "/api/stats").json()["pipelines"][0]["bottleneck"].clone();
        last["stage"] == "slow"
    });
    assert!(named, "{last}");
    assert_eq!(last["reason"], "backpressure");
    assert!(last["input_fill"].as_f64().unwrap() >= weir::console::FULL);
    assert!(last["output_fill"].is_null());
    assert_eq!(last["blocked"], serde_json::json!(["fan"]));
    // The event stream carries it too (one sample may catch the sink between
    // two batches: a few frames name it).
    let mut events = Events::open(addr, "/api/events");
    let named = (0..40).any(|_| {
        let (_, data) = events.stats();
        data["pipelines"][0]["bottleneck"]["stage"] == "slow"
    });
    assert!(named);
    drop(events);
    manager.stop("jammed", Duration::from_millis(200)).unwrap();
}

#[test]
fn metrics_are_404_without_a_recorder_and_the_prometheus_text_with_one() {
    let manager = PipelineManager::new();
    let server = serve(Console::new(&manager));
    let addr = server.local_addr();
    let none = get(addr, "/metrics");
    assert_eq!(
        (none.status, none.header("content-type")),
        (404, Some("application/json"))
    );
    assert!(
        none.json()["error"]
            .as_str()
            .unwrap()
            .contains("weir::prometheus::install()")
    );

    weir::prometheus::install().unwrap();
    let rt = rt();
    Pipeline::from_iter(0..100_u64)
        .collect()
        .named("counted")
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    let text = get(addr, "/metrics");
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.body.contains("pipeline=\"counted\""), "{}", text.body);
}

#[test]
fn only_stages_marked_required_decide_readiness_once_any_is_marked() {
    let rt = rt();
    let down = Arc::new(AtomicBool::new(true));
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Transient, Action::Retry)
        .max_attempts(100_000)
        .backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .breaker(BreakerConfig::new(
            Trip::Consecutive(3),
            Duration::from_millis(30),
        ));
    let service = Arc::clone(&down);
    let (ingress, flow) = Pipeline::ingress::<u64>(4);
    let runnable = flow
        .map(|x| x)
        .name("parse")
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
        .try_map(move |x| {
            if service.load(Ordering::SeqCst) {
                Err(Failure::error(ErrorClass::Transient, "audit service down"))
            } else {
                Ok(x)
            }
        })
        .name("audit")
        .for_each(|_| ());
    let manager = PipelineManager::new();
    manager.start("calls", runnable, &rt).unwrap();
    let quick = |c: Console| serve(c.interval(Duration::from_millis(250)));
    let all = quick(Console::new(&manager));
    let parse_only = quick(Console::new(&manager).required("calls", "parse"));
    let audit = quick(Console::new(&manager).required("calls", "audit"));
    let typo = quick(Console::new(&manager).required("calls", "parsee"));
    for s in [&all, &parse_only, &audit] {
        assert_eq!(get(s.local_addr(), "/readyz").status, 200);
    }
    let body = get(typo.local_addr(), "/readyz");
    assert_eq!(body.status, 503);
    assert!(
        body.json()["problems"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no stage of that name"),
        "{:?}",
        body.json()
    );

    futures::executor::block_on(ingress.send(1)).unwrap();
    assert!(until(Duration::from_secs(10), || get(
        audit.local_addr(),
        "/readyz"
    )
    .status
        == 503));
    // The breaker is open on `audit`: unready for the consoles that count it,
    // ready for the one that requires only `parse`.
    assert_eq!(get(all.local_addr(), "/readyz").status, 503);
    assert_eq!(get(parse_only.local_addr(), "/readyz").status, 200);
    let problem = &get(audit.local_addr(), "/readyz").json()["problems"][0];
    assert_eq!(problem["stage"], "audit");

    down.store(false, Ordering::SeqCst);
    assert!(until(Duration::from_secs(10), || get(
        audit.local_addr(),
        "/readyz"
    )
    .status
        == 200));
    drop(ingress);
    manager.shutdown_all(Duration::from_secs(5));
}

#[test]
fn reconfigurations_applied_and_rejected_appear_in_the_event_list() {
    let rt = rt();
    let check = |k: &u64| {
        if *k > 100 {
            Err(format!("factor {k} is above 100"))
        } else {
            Ok(())
        }
    };
    let factor = ConfigHandle::<u64>::with_check(check);
    let (ingress, flow) = Pipeline::ingress::<u64>(4);
    let runnable = flow
        .map_with_config(&factor, 1, |k, x| x * k)
        .name("scale")
        .for_each(|_| ());
    let manager = PipelineManager::new();
    manager.start("scaled", runnable, &rt).unwrap();
    let server = serve(Console::new(&manager).interval(Duration::from_millis(250)));
    let addr = server.local_addr();
    futures::executor::block_on(async {
        factor.reconfigure(7).await.unwrap();
        factor.reconfigure(500).await.unwrap_err();
    });
    let texts = || -> Vec<(String, String)> {
        get(addr, "/api/stats").json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "reconfig")
            .map(|e| {
                (
                    e["stage"].as_str().unwrap_or("").to_owned(),
                    e["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert!(
        until(Duration::from_secs(5), || texts().len() == 2),
        "{:?}",
        texts()
    );
    assert_eq!(
        texts(),
        [
            (
                "scale".to_owned(),
                "config applied (generation 1): 7".to_owned()
            ),
            (
                "scale".to_owned(),
                "1 config rejected, generation 1 kept".to_owned()
            ),
        ]
    );
    drop(ingress);
    manager.shutdown_all(Duration::from_secs(5));
}

/// The `control` entries of the page's event list, as `stage: text`.
fn control_events(addr: SocketAddr, token: &str) -> Vec<String> {
    let stats = get(addr, &format!("/api/stats?token={token}")).json();
    stats["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "control")
        .map(|e| {
            format!(
                "{}: {}",
                e["stage"].as_str().unwrap_or("-"),
                e["text"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn controls_are_off_by_default_and_need_a_token() {
    let rt = rt();
    let (manager, ingress) = running_manager(&rt);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    match Console::new(&manager).enable_controls().serve(addr) {
        Err(ConsoleError::Invalid { option, reason }) => {
            assert_eq!(option, "enable_controls");
            assert!(reason.contains("bearer token"), "{reason}");
        }
        other => panic!("controls without a token were served: {other:?}"),
    }

    // Read-only (the default): the control paths answer 403, and change nothing.
    let server = serve(Console::new(&manager).bearer_token("t"));
    let addr = server.local_addr();
    let answer = post(addr, "/api/control/ingest/ingress/pause", "t");
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    assert_eq!(
        post(addr, "/api/control/ingest/ingress/pause", "wrong").status,
        401
    );
    let controller = manager.controller("ingest").unwrap();
    assert!(!controller.stats().stages[0].paused);
    let stats = get(addr, "/api/stats?token=t").json();
    assert_eq!(stats["controls"], false);
    assert!(stats["pipelines"][0].get("controllable").is_none());
    assert!(control_events(addr, "t").is_empty());
    // Any other POST is still 405.
    assert_eq!(post(addr, "/api/stats", "t").status, 405);
    server.shutdown();
    drop(ingress);
    manager.shutdown_all(Duration::from_secs(5));
}

#[test]
fn a_source_is_paused_and_resumed_and_every_refusal_has_its_status() {
    let rt = rt();
    let manager = PipelineManager::new();
    let runnable = Pipeline::from_iter(0..u64::MAX)
        .name("numbers")
        .map(|x| x + 1)
        .name("inc")
        .for_each(|_| ())
        .name("sink");
    manager.start("count", runnable, &rt).unwrap();
    let server = serve(Console::new(&manager).bearer_token("t").enable_controls());
    let addr = server.local_addr();
    let controller = manager.controller("count").unwrap();
    let taken = || controller.stats().stages[0].received;

    let stats = get(addr, "/api/stats?token=t").json();
    assert_eq!(stats["controls"], true);
    assert_eq!(
        stats["pipelines"][0]["controllable"],
        serde_json::json!({"sources": ["numbers"], "breakers": [], "pools": [], "checkpoints": false})
    );

    let before = taken();
    let answer = post(addr, "/api/control/count/numbers/pause", "t");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(
        (
            &body["applied"],
            &body["pipeline"],
            &body["stage"],
            &body["action"],
            &body["paused"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!("count"),
            &serde_json::json!("numbers"),
            &serde_json::json!("pause"),
            &serde_json::json!(true)
        )
    );
    assert!(controller.stats().stages[0].paused);
    // Paused: after what it had produced drains, it takes nothing more in.
    std::thread::sleep(Duration::from_millis(100));
    let paused_at = taken();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(taken(), paused_at, "a paused source took elements in");
    assert!(paused_at >= before);
    // A second pause says so.
    assert_eq!(
        post(addr, "/api/control/count/numbers/pause", "t").json()["text"],
        "source was paused already"
    );

    let answer = post(addr, "/api/control/count/numbers/resume", "t");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(until(Duration::from_secs(5), || taken() > paused_at + 1000));
    assert!(!controller.stats().stages[0].paused);

    // Refusals: each status with a JSON body naming what is wrong.
    let refused = |path: &str, token: &str, status: u16, says: &str| {
        let answer = post(addr, path, token);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "{path}: {error}");
    };
    let unauthorized = post(addr, "/api/control/count/numbers/pause", "wrong");
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.header("www-authenticate"), Some("Bearer"));
    let anonymous = request(addr, "POST", "/api/control/count/numbers/pause", "");
    assert_eq!(anonymous.status, 401);
    refused(
        "/api/control/nope/numbers/pause",
        "t",
        404,
        "no pipeline `nope`",
    );
    refused("/api/control/count/nope/pause", "t", 404, "no stage `nope`");
    refused(
        "/api/control/count/numbers/explode",
        "t",
        404,
        "no such control",
    );
    refused("/api/control/count/inc/pause", "t", 409, "not a source");
    refused(
        "/api/control/count/sink/reset-breaker",
        "t",
        409,
        "no circuit breaker",
    );
    refused(
        "/api/control/count/inc/resize?replicas=2",
        "t",
        409,
        "not a resizable pool",
    );
    refused("/api/control/count/inc/resize", "t", 400, "replicas");
    refused(
        "/api/control/count/checkpoint",
        "t",
        409,
        "does not checkpoint",
    );
    let wrong_method = get(addr, "/api/control/count/numbers/pause?token=t");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));

    // Every control applied or refused is in the event list.
    let events = control_events(addr, "t");
    let expected = [
        "numbers: pause: source paused",
        "numbers: pause: source was paused already",
        "numbers: resume: source resumed",
        "numbers: pause refused: no pipeline `nope`",
        "nope: pause refused: pipeline `count` has no stage `nope`",
        "inc: pause refused: stage `inc` is not a source: only sources can be paused",
    ];
    for want in expected {
        assert!(
            events.iter().any(|e| e == want),
            "{want:?} not in {events:#?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("-: checkpoint refused")),
        "{events:#?}"
    );
    // Requests that name no control (a bad path) are logged by `tracing` only.
    assert_eq!(events.len(), 9, "{events:#?}");

    // A paused source still ends on shutdown.
    post(addr, "/api/control/count/numbers/pause", "t");
    server.shutdown();
    manager.shutdown_all(Duration::from_secs(5));
    let report = manager.ended("count").unwrap().report.unwrap();
    report.check_conservation().unwrap();
    assert!(
        matches!(report.outcome, Outcome::Drained { .. }),
        "{report:?}"
    );
}

#[test]
fn a_breaker_is_reset_a_pool_resized_and_a_checkpoint_taken() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let manager = PipelineManager::new();

    // A call whose breaker opens after 3 failures and would stay open a minute.
    let down = Arc::new(AtomicBool::new(true));
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Transient, Action::Retry)
        .max_attempts(100_000)
        .backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .breaker(BreakerConfig::new(
            Trip::Consecutive(3),
            Duration::from_secs(60),
        ));
    let service = Arc::clone(&down);
    let (ingress, flow) = Pipeline::ingress::<u64>(4);
    let calls = flow
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
        .try_map(move |x| {
            if service.load(Ordering::SeqCst) {
                Err(Failure::error(ErrorClass::Transient, "service down"))
            } else {
                Ok(x)
            }
        })
        .name("lookup")
        .for_each(|_| ())
        .name("sink");
    manager.start("calls", calls, &rt).unwrap();

    // A checkpointed graph with a resizable pool.
    let dir = tempfile::tempdir().unwrap();
    let size = ConfigHandle::<usize>::new();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::replayable(|from| from..u64::MAX).name("numbers"));
    let squares = g.pool_map(
        numbers,
        Pool::new(1).name("square").resizable(4, &size),
        || |x: u64| x.wrapping_mul(x),
    );
    g.sink(squares, |f| f.for_each(|_| ()).name("out"));
    g.checkpoints(weir::checkpoint::CheckpointConfig::new(dir.path()).without_fsync());
    manager.start_graph("pooled", g, &rt).unwrap();

    let server = serve(Console::new(&manager).bearer_token("t").enable_controls());
    let addr = server.local_addr();
    let stats = get(addr, "/api/stats?token=t").json();
    let controllable = |name: &str| {
        stats["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["controllable"]
            .clone()
    };
    assert_eq!(
        controllable("calls")["breakers"],
        serde_json::json!(["lookup"])
    );
    assert_eq!(
        controllable("pooled")["pools"],
        serde_json::json!(["square.dispatch"])
    );
    assert_eq!(controllable("pooled")["checkpoints"], true);

    // The breaker: opened by the failures, closed by hand long before its cooldown.
    let calls = manager.controller("calls").unwrap();
    futures::executor::block_on(ingress.send(1)).unwrap();
    assert!(until(Duration::from_secs(10), || calls.stats().stages[1]
        .breaker
        == BreakerState::Open));
    down.store(false, Ordering::SeqCst);
    let answer = post(addr, "/api/control/calls/lookup/reset-breaker", "t");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["was"], "open");
    assert!(until(Duration::from_secs(5), || {
        let s = calls.stats();
        s.stages[1].breaker == BreakerState::Closed && s.stages[2].completed == 1
    }));
    assert_eq!(
        post(addr, "/api/control/calls/lookup/reset-breaker", "t").json()["text"],
        "breaker was closed already"
    );

    // The pool, by its name or its dispatch stage; sizes out of range refused.
    let answer = post(addr, "/api/control/pooled/square/resize?replicas=3", "t");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["generation"], 1);
    assert_eq!(size.current(), Some(3));
    let answer = post(
        addr,
        "/api/control/pooled/square.dispatch/resize?replicas=2",
        "t",
    );
    assert_eq!(
        (answer.status, answer.json()["generation"].as_u64()),
        (200, Some(2))
    );
    for bad in [0, 5] {
        let answer = post(
            addr,
            &format!("/api/control/pooled/square/resize?replicas={bad}"),
            "t",
        );
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("outside 1..=4")
        );
    }
    assert_eq!(size.current(), Some(2));

    // A checkpoint, durable when the answer comes.
    let answer = post(addr, "/api/control/pooled/checkpoint", "t");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.json()["checkpoint"].as_u64().unwrap();
    assert!(id >= 1);
    let pooled = manager.controller("pooled").unwrap();
    assert!(pooled.stats().checkpoint.unwrap().completed >= 1);

    assert!(
        until(Duration::from_secs(5), || {
            let events = control_events(addr, "t");
            let has = |want: &str| events.iter().any(|e| e == want);
            has("lookup: reset-breaker: breaker reset (open before)")
                && has("square: resize: pool resized to 3 replicas (generation 1)")
                && has("square.dispatch: resize: pool resized to 2 replicas (generation 2)")
                && events
                    .iter()
                    .any(|e| e.starts_with("square: resize refused: config rejected"))
                && has(&format!(
                    "-: checkpoint: checkpoint {id} written ({} bytes)",
                    answer.json()["bytes"]
                ))
        }),
        "{:#?}",
        control_events(addr, "t")
    );
    // The manual close is a breaker event like any other.
    assert!(until(Duration::from_secs(5), || {
        let stats = get(addr, "/api/stats?token=t").json();
        let breaker: Vec<_> = stats["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "breaker")
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect();
        breaker.first().map(String::as_str) == Some("breaker opened")
            && breaker.last().map(String::as_str) == Some("breaker closed")
    }));

    server.shutdown();
    drop(ingress);
    manager.shutdown_all(Duration::from_secs(5));
}

#[test]
fn open_connections_and_event_streams_are_exported_as_gauges() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let manager = PipelineManager::new();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The gauges are registered when the console is served.
    let server = metrics::with_local_recorder(&recorder, || {
        serve(Console::new(&manager).interval(Duration::from_millis(250)))
    });
    let addr = server.local_addr();
    // A snapshot swaps every value to 0 and the gauges move by increments: the
    // level is the sum of what the snapshots saw.
    let levels = std::cell::RefCell::new(std::collections::HashMap::<String, f64>::new());
    let level = |name: &str| {
        let mut levels = levels.borrow_mut();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            if let DebugValue::Gauge(delta) = value {
                *levels.entry(key.key().name().to_owned()).or_default() += delta.into_inner();
            }
        }
        levels.get(name).copied()
    };
    assert_eq!(level("weir_console_open_connections"), Some(0.0));
    let mut events = Events::open(addr, "/api/events");
    assert_eq!(events.stats().0, 0);
    assert_eq!(level("weir_console_clients"), Some(1.0));
    assert_eq!(level("weir_console_open_connections"), Some(1.0));
    drop(events);
    assert!(until(Duration::from_secs(5), || {
        level("weir_console_clients") == Some(0.0)
            && level("weir_console_open_connections") == Some(0.0)
    }));
    assert_eq!(server.clients(), 0);
}
