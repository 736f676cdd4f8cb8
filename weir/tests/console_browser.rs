//! The console in a real browser: headless Chromium (Debian's `chromium`
//! package, installed by `.ci/install-deps.sh`) opens the console of a running
//! graph with a broadcast, a pool and a deliberately slow sink, and the test reads
//! the page's DOM through the Chrome DevTools protocol: every stage and every
//! edge is drawn, the figures change between two reads, the slow sink is named
//! the bottleneck, and the page logs no error. It saves a screenshot; with
//! `WEIR_CONSOLE_SCREENSHOT=<path>` it also copies it there
//! (`scripts/console-screenshot.sh` regenerates `docs/img/console.png` so).
//!
//! Why the DevTools protocol and not `chromium --dump-dom`: `--dump-dom` and
//! `--screenshot` act when the page has loaded, before its first `fetch` and
//! event-stream frame have drawn anything, and `--virtual-time-budget` never
//! expires while an `EventSource` is open (virtual time waits for pending
//! network fetches). So the test talks to Chromium over
//! `--remote-debugging-pipe` — plain JSON messages on two FIFOs, no WebSocket, no
//! extra crate — and reads `document.documentElement.outerHTML` when it wants.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use weir::console::Console;
use weir::manager::PipelineManager;
use weir::prelude::*;

/// How long one DevTools call may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The screenshot's window, as `--window-size`.
const WINDOW: (u32, u32) = (1400, 900);

/// `chromium` or `chromium-browser` on `PATH`; panics, saying how to install it,
/// if neither is there (the test never skips).
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium is needed for this test, and neither `chromium` nor \
         `chromium-browser` is on PATH: run .ci/install-deps.sh (it installs Debian's \
         `chromium` package)"
    );
}

/// A headless Chromium driven over `--remote-debugging-pipe`: messages are JSON
/// objects, each ended by a NUL byte, written to its fd 3 and read from its fd 4
/// (two FIFOs here, wired by `sh`).
struct Browser {
    child: Child,
    commands: File,
    messages: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    /// Errors the page logged or threw, in order.
    errors: Vec<String>,
}

impl Browser {
    fn launch(dir: &Path) -> Browser {
        let binary = chromium();
        let (to_browser, from_browser) = (dir.join("cdp-in"), dir.join("cdp-out"));
        for fifo in [&to_browser, &from_browser] {
            let made = Command::new("mkfifo").arg(fifo).status().unwrap();
            assert!(made.success(), "mkfifo {}", fifo.display());
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<"$CDP_IN" 4>"$CDP_OUT""#)
            .arg(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--hide-scrollbars",
                &format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                &format!("--user-data-dir={}", dir.join("profile").display()),
                "about:blank",
            ])
            .env("CDP_IN", &to_browser)
            .env("CDP_OUT", &from_browser)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // The shell opens fd 3 (its end of cdp-in) first, then fd 4: open ours in
        // the same order, or both block.
        let commands = File::create(&to_browser).unwrap();
        let from = File::open(&from_browser).unwrap();
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop();
                let Ok(value) = serde_json::from_slice(&message) else {
                    break;
                };
                message.clear();
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Browser {
            child,
            commands,
            messages,
            next_id: 0,
            session: None,
            errors: Vec::new(),
        }
    }

    /// Calls `method` (in the attached page's session once there is one) and
    /// waits for its result, noting the page's errors among the events meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("Chromium did not answer {method}: {e}"));
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.note(&message);
        }
    }

    /// Keeps the page's uncaught exceptions, `console.error`s and error log
    /// entries (a resource that failed to load, for one).
    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                self.errors.push(format!(
                    "exception: {} {}",
                    details["text"], details["exception"]["description"]
                ));
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.errors
                    .push(format!("console.error: {}", params["args"]));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                let entry = &params["entry"];
                self.errors
                    .push(format!("log: {} ({})", entry["text"], entry["url"]));
            }
            _ => {}
        }
    }

    /// Opens `url` in a new page and attaches to it, with its errors reported.
    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        self.call("Runtime.enable", json!({}));
        self.call("Log.enable", json!({}));
        self.call("Page.enable", json!({}));
        // The window's size exactly (a headless window's viewport is smaller
        // than its `--window-size`).
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WINDOW.0, "height": WINDOW.1, "deviceScaleFactor": 1, "mobile": false}),
        );
        let navigated = self.call("Page.navigate", json!({"url": url}));
        assert!(navigated.get("errorText").is_none(), "{navigated}");
    }

    /// Evaluates `expression` in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(result.get("exceptionDetails").is_none(), "{result}");
        result["result"]["value"].clone()
    }

    /// The page's DOM as it is now, serialized (what `--dump-dom` prints); empty
    /// while a navigation has none yet.
    fn dom(&mut self) -> String {
        let dom = self.eval("document.documentElement ? document.documentElement.outerHTML : ''");
        dom.as_str().unwrap().to_owned()
    }

    /// A PNG of the window.
    fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }

    /// Polls `done` on the DOM every 100 ms until it holds or `limit` passes;
    /// returns the last DOM and whether it held.
    fn dom_until(&mut self, limit: Duration, done: impl Fn(&str) -> bool) -> (String, bool) {
        let start = Instant::now();
        loop {
            let dom = self.dom();
            if done(&dom) {
                return (dom, true);
            }
            if start.elapsed() > limit {
                return (dom, false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `sh` exec'd Chromium: this is the browser's process; its helpers go
        // with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over a plain connection: the body.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(socket, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_owned()
}

/// The text of the first element whose opening tag contains `marker`, tags
/// stripped (enough for the page's flat elements).
fn text_of(dom: &str, marker: &str) -> Option<String> {
    let start = dom.find(marker)?;
    let open_end = start + dom[start..].find('>')? + 1;
    let mut text = String::new();
    let mut depth = 0usize;
    let mut in_tag = false;
    let rest = &dom[open_end..];
    for (i, c) in rest.char_indices() {
        if c == '<' {
            in_tag = true;
            if rest[i..].starts_with("</") {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else {
                depth += 1;
            }
        } else if c == '>' {
            in_tag = false;
            if rest[..i].ends_with('/') {
                depth = depth.saturating_sub(1);
            }
        } else if !in_tag {
            text.push(c);
        }
    }
    Some(text)
}

/// The figures drawn in a node: its text lines after the name and kind.
fn node_figures(dom: &str, name: &str) -> String {
    text_of(dom, &format!("data-node=\"{name}\""))
        .unwrap_or_else(|| panic!("no node {name} in the DOM"))
}

/// The graph: numbers → fan (broadcast) → a pool of 3 squaring replicas → quick;
/// fan → slow, a sink that sleeps 2 ms per element behind an 8-element edge.
fn jammed_graph() -> Graph {
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..10_000_000_u64).name("numbers"));
    let [fast, slow] = g.broadcast(numbers, Broadcast::new(2));
    g.name_stage(fast, "fan");
    let squares = g.pool_map(fast, Pool::new(3).name("square"), || |x: u64| x * x);
    g.sink(squares, |f| f.for_each(|_| ()).name("quick"));
    g.sink(slow, |f| {
        f.for_each(|_| std::thread::sleep(Duration::from_millis(2)))
            .name("slow")
            .capacity(8)
    });
    g.default_capacity(16);
    g
}

#[test]
fn chromium_draws_every_stage_and_edge_live_and_names_the_slow_sink() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let manager = PipelineManager::new();
    manager.start_graph("jammed", jammed_graph(), &rt).unwrap();
    let server = Console::new(&manager)
        .interval(Duration::from_millis(250))
        .serve("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = server.local_addr();
    let graph: Value = serde_json::from_str(&get(addr, "/api/graph")).unwrap();
    let topology = &graph["pipelines"][0];
    let names: Vec<&str> = topology["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    let edges = topology["edges"].as_array().unwrap();
    assert!(names.contains(&"slow") && names.iter().any(|n| n.starts_with("square")));

    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::launch(dir.path());
    browser.open(&format!("http://{addr}/"));

    // Drawn, live and with the verdict: wait for a frame that names the slow sink
    // (one sample may catch it between two batches).
    let (first, named) = browser.dom_until(Duration::from_secs(20), |dom| {
        dom.contains(r#"data-stage="slow""#) && dom.contains(">live<")
    });
    assert!(
        named,
        "the page never named `slow` the bottleneck:\n{first}"
    );
    for name in &names {
        assert_eq!(
            first.matches(&format!("data-node=\"{name}\"")).count(),
            1,
            "node {name} drawn once"
        );
    }
    assert_eq!(first.matches("data-node=").count(), names.len());
    for (i, edge) in edges.iter().enumerate() {
        let from = names[edge["from"].as_u64().unwrap() as usize];
        let to = names[edge["to"].as_u64().unwrap() as usize];
        let drawn = format!(r#"data-edge="{i}" data-from="{from}" data-to="{to}""#);
        assert!(first.contains(&drawn), "edge {i} {from} → {to} not drawn");
    }
    assert_eq!(first.matches("data-edge=").count(), edges.len());
    let verdict = text_of(&first, r#"class="bottleneck found""#).unwrap();
    assert!(verdict.starts_with("Bottleneck: slow"), "{verdict}");
    assert!(
        first.contains(r#"class="node sink bottleneck""#),
        "the slow sink's box is not marked"
    );

    // Read-only: no control is drawn.
    assert!(
        !first.contains("data-control="),
        "buttons on a read-only page"
    );
    // A box shows the load of its input edges, the figure its edge is drawn
    // with: the slow sink's box and its edge agree in the same frame.
    let into_slow = edges
        .iter()
        .position(|e| names[e["to"].as_u64().unwrap() as usize] == "slow")
        .unwrap();
    let label = text_of(&first, &format!(r#"data-edge-label="{into_slow}""#)).unwrap();
    let load = label.as_str();
    assert!(load.ends_with("/8"), "{label}");
    // Out of the broadcast, the edge carries its port's own credit under it
    // (at most the edge's capacity).
    let credit = text_of(&first, &format!(r#"data-edge-credit="{into_slow}""#)).unwrap();
    assert!(
        credit
            .strip_prefix("c ")
            .and_then(|c| c.parse::<usize>().ok())
            .is_some_and(|c| c <= 8),
        "{credit:?}"
    );
    let slow = node_figures(&first, "slow");
    assert!(
        slow.contains(&format!("input {load}")),
        "box {slow:?}, edge {label:?}"
    );
    assert!(!slow.contains("credit"), "a sink sends nothing: {slow:?}");

    // The figures move: a second read a moment later differs in the totals and
    // in the nodes' live lines.
    std::thread::sleep(Duration::from_millis(1_200));
    let second = browser.dom();
    let totals = |dom: &str| text_of(dom, r#"class="totals muted""#).unwrap();
    assert_ne!(totals(&first), totals(&second), "the totals did not change");
    assert!(totals(&second).contains("delivered"), "{}", totals(&second));
    assert_ne!(
        node_figures(&first, "numbers"),
        node_figures(&second, "numbers"),
        "the source's figures did not change"
    );

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let shot = dir.path().join("console.png");
    std::fs::write(&shot, &png).unwrap();
    if let Some(path) = std::env::var_os("WEIR_CONSOLE_SCREENSHOT") {
        std::fs::copy(&shot, &path).unwrap();
        eprintln!("screenshot written to {}", Path::new(&path).display());
    }
    assert!(
        browser.errors.is_empty(),
        "the page logged errors: {:#?}",
        browser.errors
    );
    drop(browser);
    manager.stop("jammed", Duration::from_millis(200)).unwrap();
}

#[test]
fn with_controls_enabled_the_page_pauses_resizes_and_resumes() {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let manager = PipelineManager::new();
    let size = ConfigHandle::<usize>::new();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..u64::MAX).name("numbers"));
    let squares = g.pool_map(
        numbers,
        Pool::new(1).name("square").resizable(4, &size),
        || |x: u64| x.wrapping_mul(x),
    );
    g.sink(squares, |f| f.for_each(|_| ()).name("out"));
    manager.start_graph("controlled", g, &rt).unwrap();
    let server = Console::new(&manager)
        .bearer_token("t")
        .enable_controls()
        .interval(Duration::from_millis(250))
        .serve("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = server.local_addr();
    let controller = manager.controller("controlled").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::launch(dir.path());
    browser.open(&format!("http://{addr}/?token=t"));
    let (dom, drawn) = browser.dom_until(Duration::from_secs(20), |dom| {
        dom.contains(r#"data-control="pause" data-stage="numbers""#) && dom.contains(">live<")
    });
    assert!(drawn, "no pause button:\n{dom}");
    assert!(dom.contains(r#"data-control="resize" data-stage="square.dispatch""#));
    assert!(
        !dom.contains(r#"data-control="checkpoint""#),
        "the pipeline does not checkpoint"
    );

    browser
        .eval(r#"document.querySelector('[data-control="pause"][data-stage="numbers"]').click()"#);
    let (dom, paused) = browser.dom_until(Duration::from_secs(10), |dom| {
        dom.contains("pause numbers: source paused")
            && dom.contains(r#"data-control="resume" data-stage="numbers""#)
            && dom.contains("PAUSED")
    });
    assert!(paused, "the page did not pause the source:\n{dom}");
    assert!(controller.stats().stages[0].paused);

    browser.eval(
        r#"document.querySelector('[data-replicas="square.dispatch"]').value = "3";
           document.querySelector('[data-control="resize"]').click()"#,
    );
    let (dom, resized) = browser.dom_until(Duration::from_secs(10), |dom| {
        dom.contains("resize square.dispatch: pool resized to 3 replicas (generation 1)")
    });
    assert!(resized, "the page did not resize the pool:\n{dom}");
    assert_eq!(size.current(), Some(3));

    browser
        .eval(r#"document.querySelector('[data-control="resume"][data-stage="numbers"]').click()"#);
    let (dom, resumed) = browser.dom_until(Duration::from_secs(10), |dom| {
        dom.contains("resume numbers: source resumed")
            && dom.contains(r#"data-control="pause" data-stage="numbers""#)
    });
    assert!(resumed, "the page did not resume the source:\n{dom}");
    assert!(!controller.stats().stages[0].paused);
    // The event list shows the three controls.
    let (dom, listed) = browser.dom_until(Duration::from_secs(5), |dom| {
        dom.matches(r#"<li class="control">"#).count() == 3
    });
    assert!(listed, "{dom}");
    assert!(
        browser.errors.is_empty(),
        "the page logged errors: {:#?}",
        browser.errors
    );
    drop(browser);
    manager
        .stop("controlled", Duration::from_millis(500))
        .unwrap();
}
