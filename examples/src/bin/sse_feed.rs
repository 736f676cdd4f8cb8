//! Server-Sent Events egress: a pipeline's output streamed to HTTP clients
//! (browsers, `curl -N`), each with its own bounded buffer and lag policy.
//!
//! ```text
//!  ticker ──► summary ──► throttle ──► broadcast hub ──► SSE endpoint ──┬─► client (reads on)
//!             (per 400)                                  GET /events    └─► client (stalls: lags,
//!                                                                                    told how much)
//! ```
//!
//! A ticker produces readings; a count window turns each 400 into a summary
//! (with the readings, as JSON), paced to 1 000 summaries a second; the summaries
//! go to a broadcast hub served by `weir::sse`. The example connects two clients
//! of its own before the first reading: one reads as fast as it can (in a debug
//! build or on a busy machine it may lag too, and is told), the other reads ten and then stops reading until the pipeline is done. The stalled
//! client's socket and its buffer (64 summaries) fill, and its lag policy
//! (`DropOldest`) drops for it alone; when it
//! resumes, the stream tells it exactly how many summaries it missed (`event:
//! lagged`). Neither client slows the pipeline. At the end every stream gets
//! `event: end`, and each client has accounted for every summary: received plus
//! reported lost.
//!
//! Run it with `cargo run --release -p weir-examples --bin sse_feed`; add
//! `-- --serve 60` to keep a live feed (ten summaries a second) up for 60 s and
//! watch it with `curl -N http://127.0.0.1:<port>/events` or a browser's
//! `EventSource`.

use clap::Parser;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use weir_examples::outln;

use weir::prelude::*;
use weir::sse::Sse;

/// Summaries published in the demonstration run, at `DEMO_RATE` a second: some
/// 7 MB of JSON in 2.5 s, more than the kernel's loopback socket buffers hold for a
/// client that stops reading, at a pace a reading client keeps up with.
const SUMMARIES: u64 = 2_500;
const DEMO_RATE: u32 = 1_000;
const TICKS_PER_SUMMARY: u64 = 400;

/// One window's summary, sent to clients as JSON.
#[derive(Debug, Clone, serde::Serialize)]
struct Summary {
    window: u64,
    min: u64,
    max: u64,
    mean: f64,
    readings: Vec<u64>,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    events: u64,
    lagged: u64,
    end: String,
}

/// Opens the stream, says so on `subscribed` once it is, and reads it to its
/// `end` event; after `stall_after` events it waits for `resume` before reading
/// on.
fn client(
    addr: SocketAddr,
    subscribed: mpsc::Sender<()>,
    stall_after: u64,
    resume: Option<mpsc::Receiver<()>>,
) -> std::io::Result<Seen> {
    let mut socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(60)))?;
    socket.write_all(b"GET /events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")?;
    let mut seen = Seen::default();
    let mut event = None;
    for line in BufReader::new(socket).lines() {
        let line = line?;
        if line == ": connected" {
            let _ = subscribed.send(());
        } else if let Some(name) = line.strip_prefix("event: ") {
            event = Some(name.to_owned());
        } else if let Some(data) = line.strip_prefix("data: ") {
            match event.take().as_deref() {
                Some("lagged") => seen.lagged += data.parse::<u64>().unwrap_or(0),
                Some("end") => {
                    seen.end = data.to_owned();
                    break;
                }
                _ => {
                    seen.events += 1;
                    if seen.events == stall_after
                        && let Some(resume) = &resume
                    {
                        let _ = resume.recv();
                    }
                }
            }
        }
    }
    Ok(seen)
}

/// Server-Sent Events egress: window summaries served to two clients of the
/// example's own, one of which stalls and is told how much it missed.
#[derive(Debug, Parser)]
#[command(name = "sse_feed")]
struct Args {
    /// Instead of the demonstration, keeps a live feed (ten summaries a second)
    /// up for SECS seconds, for `curl -N` or a browser's EventSource.
    #[arg(long, value_name = "SECS")]
    serve: Option<u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // --help prints the usage (exit 0), a bad argument clap's error (exit 2).
    let serve_for = Args::parse().serve.map(Duration::from_secs);
    let rt = Runtime::builder().arbiters(2).build()?;
    let live = serve_for.is_some();
    let ticks = match serve_for {
        Some(d) => d.as_secs() * 10 * TICKS_PER_SUMMARY,
        None => SUMMARIES * TICKS_PER_SUMMARY,
    };
    let (runnable, hub) = Pipeline::from_iter(0..ticks)
        .name("ticker")
        .map(|t| (t, (t * 7_919) % 1_000_000))
        .chunks(TICKS_PER_SUMMARY as usize)
        .name("windows")
        .map(|w: Vec<(u64, u64)>| {
            let readings: Vec<u64> = w.iter().map(|&(_, r)| r).collect();
            Summary {
                window: w[0].0 / TICKS_PER_SUMMARY,
                min: readings.iter().copied().min().unwrap_or(0),
                max: readings.iter().copied().max().unwrap_or(0),
                mean: readings.iter().sum::<u64>() as f64 / readings.len() as f64,
                readings,
            }
        })
        // Live: ten summaries a second; the demonstration: DEMO_RATE.
        .throttle(Throttle::shape(Rate::per_second(if live { 10 } else { DEMO_RATE })).burst(100))
        .broadcast_hub(NoSubscriber::Wait);
    let server = Sse::json(hub)
        .event_name("summary")
        .client_buffer(64)
        .lag_policy(LagPolicy::DropOldest { buffer: 0 })
        .heartbeat(Some(Duration::from_secs(5)))
        .serve("127.0.0.1:0".parse()?)?;
    let addr = server.local_addr();
    outln!("serving summaries on http://{addr}/events");
    if let Some(d) = serve_for {
        let running = runnable.run(&rt)?;
        outln!("(open it with `curl -N http://{addr}/events`; serving for {d:?})");
        let report = running.wait()?.report;
        outln!(
            "ended: {} summaries; {:?}",
            report.delivered(),
            server.shutdown()
        );
        return Ok(());
    }
    // Both clients subscribe before the pipeline starts, so each is offered
    // every summary.
    let (subscribed, both) = mpsc::channel();
    let (resume, resumed) = mpsc::channel();
    let s = subscribed.clone();
    let reader = std::thread::spawn(move || client(addr, s, u64::MAX, None));
    let staller = std::thread::spawn(move || client(addr, subscribed, 10, Some(resumed)));
    for _ in 0..2 {
        both.recv_timeout(Duration::from_secs(30))?;
    }
    let done = runnable.run(&rt)?.wait()?;
    let reader = reader.join().map_err(|_| "reader panicked")??;
    let _ = resume.send(());
    let staller = staller.join().map_err(|_| "staller panicked")??;
    let stats = server.shutdown();
    outln!(
        "reader:  {} summaries, {} reported lost, end: {}",
        reader.events,
        reader.lagged,
        reader.end
    );
    outln!(
        "staller: {} summaries, {} reported lost, end: {}",
        staller.events,
        staller.lagged,
        staller.end
    );
    outln!(
        "server:  {} clients, {} events sent, {} reported lost, {} refused",
        stats.subscribed,
        stats.events,
        stats.lagged,
        stats.rejected
    );
    done.report.check_conservation()?;
    for (who, seen) in [("reader", &reader), ("staller", &staller)] {
        if seen.events + seen.lagged != SUMMARIES || seen.end != "completed" {
            return Err(format!("{who}: {seen:?}").into());
        }
    }
    if staller.lagged == 0 {
        return Err("the stalled client should have lagged".into());
    }
    outln!("all checks passed");
    Ok(())
}
