//! nats_worker: one of several weir processes sharing a JetStream work queue.
//!
//! Start a broker (`nats-server -js`), fill the queue with `nats_producer`, and
//! start as many workers as you like, on as many machines as you like: they
//! share the durable consumer `--durable`, so the broker hands each message to
//! one of them. Each worker fetches only what its pipeline has room for, commits
//! each message (here: appends `sequence delivered` to `--out`, if given), and
//! acknowledges it only then. Kill a worker at any moment: what it had not
//! acknowledged comes back to the others after `--ack-wait-ms`. A payload that is
//! not a number is poison: nakked with backoff, then terminated and counted as a
//! dead letter after `--max-deliver` deliveries.
//!
//! ```sh
//! nats-server -js &
//! cargo run -p weir-examples --features nats --bin nats_producer -- --count 100000
//! cargo run -p weir-examples --features nats --bin nats_worker -- --idle-exit-ms 2000
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weir_examples::outln;

use clap::Parser;
use weir::nats::{
    Commit, ConsumerSettings, Delivery, JetStreamSource, Nats, NatsFlowExt, Received, Redelivery,
};
use weir::prelude::*;

/// A weir worker on a shared JetStream durable consumer.
#[derive(Debug, Parser)]
#[command(name = "nats_worker")]
struct Args {
    /// The broker.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// The stream (created as a work queue on `<stream>.>` if missing).
    #[arg(long, default_value = "jobs")]
    stream: String,
    /// The durable consumer the workers share.
    #[arg(long, default_value = "workers")]
    durable: String,
    /// Appends `sequence delivered` for each committed message to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The consumer's ack wait (used when this worker creates the consumer).
    #[arg(long, default_value_t = 30_000)]
    ack_wait_ms: u64,
    /// The consumer's max_ack_pending (used when this worker creates it).
    #[arg(long, default_value_t = 1_000)]
    max_ack_pending: u64,
    /// The consumer's max_deliver (used when this worker creates it).
    #[arg(long, default_value_t = 5)]
    max_deliver: u64,
    /// The most messages one fetch asks for.
    #[arg(long, default_value_t = 256)]
    max_fetch: usize,
    /// Exits once no message came for this long (default: run until killed).
    #[arg(long)]
    idle_exit_ms: Option<u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let nats = Nats::connect(&args.url)?;
    let subjects = format!("{}.>", args.stream);
    nats.work_queue(&args.stream, &[&subjects])?;
    let settings = ConsumerSettings::new(&args.durable)
        .ack_wait(Duration::from_millis(args.ack_wait_ms))
        .max_ack_pending(args.max_ack_pending)
        .max_deliver(args.max_deliver);
    let consumer = nats.durable_consumer(&args.stream, &settings)?;

    let mut out: Option<File> = match &args.out {
        Some(path) => Some(OpenOptions::new().create(true).append(true).open(path)?),
        None => None,
    };
    let committed = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&committed);
    let dead = MemoryDlq::<Received<u64>>::new(10_000);

    let mut source = JetStreamSource::new(nats.clone(), consumer).max_fetch(args.max_fetch);
    if let Some(ms) = args.idle_exit_ms {
        source = source.end_after_idle(Duration::from_millis(ms));
    }
    let sink = Commit::new(move |d: &Delivery<u64>| {
        // The commit: written (one `write`, no buffering) before the ack is sent,
        // so a line that is in the file survives a SIGKILL of this process.
        let result = if d.payload == u64::MAX {
            Err(Failure::error(
                ErrorClass::Permanent,
                "not a sequence number",
            ))
        } else {
            match &mut out {
                Some(file) => file
                    .write_all(format!("{} {}\n", d.payload, d.info.delivered).as_bytes())
                    .map_err(|e| Failure::error(ErrorClass::Transient, e.to_string())),
                None => Ok(()),
            }
        };
        if result.is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
        std::future::ready(result)
    })
    .redelivery(Redelivery::new(
        Duration::from_millis(100),
        Duration::from_secs(5),
    ))
    .dead_letters(Arc::new(dead.clone()), "commit");

    let rt = Runtime::builder().arbiters(1).build()?;
    let started = Instant::now();
    let done = source
        .flow()
        .name("jetstream")
        .map(|d| {
            d.map(|bytes| {
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(u64::MAX)
            })
        })
        .name("decode")
        .commit_with(sink)
        .run(&rt)?
        .wait()?;
    nats.flush()?;
    done.report.check_conservation()?;
    let elapsed = started.elapsed().as_secs_f64();
    let n = committed.load(Ordering::Relaxed);
    let acks = nats.ack_stats();
    outln!(
        "committed {n} messages in {elapsed:.2} s ({:.0}/s); acked {}, nakked {}, terminated {}, dead letters {}",
        n as f64 / elapsed.max(1e-9),
        acks.acked,
        acks.naked,
        acks.termed,
        dead.len()
    );
    Ok(())
}
