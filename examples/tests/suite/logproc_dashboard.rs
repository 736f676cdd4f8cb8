//! `logproc --follow --console ADDR --console-controls` with `WEIR_CONSOLE_TOKEN`:
//! a live access-log dashboard. While lines are appended to the followed file
//! the console's `/api/stats` shows the source's count growing; every request
//! needs the token; the source is paused and resumed through the console's
//! controls (and while paused, appended lines wait); Ctrl-C ends it with the
//! report over every line. Controls without a token are a usage error.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_examples::logproc::Generator;

fn lines(seed: u64, n: u64) -> Vec<u8> {
    let mut generator = Generator::new(seed, n);
    let (mut out, mut line) = (Vec::new(), String::new());
    while generator.next_line(&mut line).is_some() {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        line.clear();
    }
    out
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// One HTTP/1.0 request with the token (if any): status and body.
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        socket,
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// What the console says the followed source (`tail`) has emitted: lines.
fn read_count(addr: SocketAddr) -> Option<u64> {
    let (status, body) = request(addr, "GET", "/api/stats", Some("s3cret"));
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).unwrap();
    stats["pipelines"][0]["stats"]["stages"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "tail")?["emitted"]
        .as_u64()
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_followed_log_is_a_live_dashboard_with_controls() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let report = dir.path().join("report.json");
    append(&log, &lines(1, 300));
    let mut child = Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(["--input", log.to_str().unwrap(), "--follow"])
        .args(["--follow-poll-ms", "20", "--workers", "2"])
        .args(["--console", "127.0.0.1:0", "--console-controls"])
        .args(["--report", report.to_str().unwrap()])
        .args(["--dlq", dir.path().join("dlq").to_str().unwrap()])
        .env("WEIR_CONSOLE_TOKEN", "s3cret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = crate::console_client::printed_addr(&mut stderr, "logproc: console on ");
    // Keep reading stderr so logproc never blocks on it.
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        rest
    });

    // Every request needs the token.
    assert_eq!(request(addr, "GET", "/api/stats", None).0, 401);
    assert_eq!(request(addr, "GET", "/api/stats", Some("wrong")).0, 401);
    until("the first 300 lines", || read_count(addr) == Some(300));

    // Live: appended lines show up.
    append(&log, &lines(2, 200));
    until("500 lines", || read_count(addr) == Some(500));

    // Paused from the console: appended lines wait until resumed.
    let (status, body) = request(
        addr,
        "POST",
        "/api/control/logproc/tail/pause",
        Some("s3cret"),
    );
    assert_eq!(status, 200, "{body}");
    append(&log, &lines(3, 100));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_count(addr), Some(500), "a paused source reads nothing");
    let (status, body) = request(
        addr,
        "POST",
        "/api/control/logproc/tail/resume",
        Some("s3cret"),
    );
    assert_eq!(status, 200, "{body}");
    until("600 lines after the resume", || {
        read_count(addr) == Some(600)
    });

    // Ctrl-C: the final report covers every line.
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let rest = rest.join().unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["lines"], 600, "{report}");
}

#[test]
fn console_controls_need_a_token_and_a_console() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines(1, 10));
    for (args, what) in [
        (
            vec!["--console", "127.0.0.1:0", "--console-controls"],
            "needs a bearer token in WEIR_CONSOLE_TOKEN",
        ),
        (
            vec!["--console-controls"],
            "--console-controls needs --console ADDR",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_logproc"))
            .args(["--input", log.to_str().unwrap()])
            .args(&args)
            .env_remove("WEIR_CONSOLE_TOKEN")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
}
