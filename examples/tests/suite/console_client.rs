//! A client for the console of a running example (`--console 127.0.0.1:0`):
//! plain HTTP/1.0 requests, and the wait for its first pipeline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `GET path` over a plain connection: status and body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(socket, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// `/api/graph` once it lists a pipeline (the address is printed just before
/// the pipeline starts): the first pipeline's graph, and its node names.
pub(crate) fn first_pipeline(addr: SocketAddr) -> (Value, Vec<String>) {
    let start = Instant::now();
    let graph = loop {
        let (status, graph) = get(addr, "/api/graph");
        assert_eq!(status, 200, "{graph}");
        let graph: Value = serde_json::from_str(&graph).unwrap();
        if !graph["pipelines"].as_array().unwrap().is_empty() {
            break graph;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no pipeline: {graph}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let pipeline = graph["pipelines"][0].clone();
    let names = pipeline["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    (pipeline, names)
}

/// The address an example prints as its first stderr line,
/// `<prefix>http://ADDR/` (e.g. `logproc: console on `), read from `stderr`.
pub(crate) fn printed_addr(stderr: &mut impl std::io::BufRead, prefix: &str) -> SocketAddr {
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("http://"))
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("no address after {prefix:?}: {line:?}"))
        .parse()
        .unwrap()
}
