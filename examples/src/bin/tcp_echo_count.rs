//! TCP in, TCP out: a listener takes lines from several clients (one of them
//! misbehaving), the pipeline upper-cases them, and a TCP sink writes them to a
//! collector. Prints what each side counted.
//!
//! ```text
//! cargo run -p weir-examples --bin tcp_echo_count
//! ```

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::Duration;
use weir_examples::outln;

use weir::net::frame::Framing;
use weir::net::tcp::{BadInput, TcpSink, TcpSinkConfig, TcpSourceConfig, listen_with_dead_letters};
use weir::prelude::*;

const CLIENTS: usize = 4;
const LINES: usize = 1_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::new()?;

    // Where the sink writes: a collector counting lines.
    let collector = std::net::TcpListener::bind("127.0.0.1:0")?;
    let collector_addr = collector.local_addr()?;
    let collected = std::thread::spawn(move || -> std::io::Result<usize> {
        let (conn, _) = collector.accept()?;
        Ok(BufReader::new(conn).lines().count())
    });

    let bad_input = MemoryDlq::<BadInput>::new(16);
    let config = TcpSourceConfig::new(Framing::Lines)
        .max_frame(256)
        .max_connections(16)
        .idle_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(1));
    let (handle, frames) =
        listen_with_dead_letters("127.0.0.1:0", config, Arc::new(bad_input.clone()))?;
    let (sink, sink_stats) = TcpSink::new(
        collector_addr.to_string(),
        TcpSinkConfig::new(Framing::Lines),
    );
    let policy = SupervisionPolicy::default()
        .max_attempts(10)
        .backoff(BackoffConfig::new(
            Duration::from_millis(20),
            Duration::from_secs(1),
        ));
    let flow = frames
        .map(|frame| String::from_utf8_lossy(&frame.bytes).to_uppercase())
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(16)));
    let running = TcpSink::attach(flow, sink).name("out").run(&rt)?;

    let addr = handle.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut conn = std::net::TcpStream::connect(addr)?;
                for i in 0..LINES {
                    writeln!(conn, "client {c} line {i}")?;
                }
                Ok(())
            })
        })
        .collect();
    // A misbehaving client: a line far above the 256-byte maximum.
    let mut evil = std::net::TcpStream::connect(addr)?;
    evil.write_all(&[b'x'; 10_000])?;
    for client in clients {
        client.join().expect("client thread")?;
    }
    drop(evil);

    // Stop accepting once every client was accepted (a connection still in the
    // kernel's backlog would be closed with the listener); the stream ends when
    // the open connections have ended.
    while handle.stats().accepted < CLIENTS as u64 + 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.close();
    let done = running.wait()?;
    done.report.check_conservation()?;
    let lines = collected.join().expect("collector thread")?;

    let stats = handle.stats();
    outln!(
        "source: {} connections, {} frames, {} bad frames, {} refused",
        stats.accepted,
        stats.frames,
        stats.bad_frames,
        stats.refused
    );
    for letter in bad_input.drain() {
        outln!("  dead letter: {}", letter.element);
    }
    outln!(
        "sink: {} lines written on {} connection(s); collector read {lines}",
        sink_stats.written(),
        sink_stats.connects()
    );
    assert_eq!(lines, CLIENTS * LINES);
    Ok(())
}
