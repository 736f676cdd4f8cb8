//! nats_producer: fills a JetStream work queue with sequence numbers, through a
//! weir pipeline ending in the publishing sink (each publish acknowledged by the
//! server, at most `--in-flight` unacknowledged).
//!
//! ```sh
//! nats-server -js &
//! cargo run -p weir-examples --features nats --bin nats_producer -- --count 100000
//! ```
//!
//! Messages are `<stream>.work` with the decimal sequence number as payload,
//! from `--start` to `--start + --count - 1`; `--poison N` adds N payloads that
//! are not numbers, which workers dead-letter.

use std::time::Instant;
use weir_examples::outln;

use clap::Parser;
use weir::nats::{Bytes, Delivery, Nats, NatsFlowExt, Publish};
use weir::prelude::*;

/// Publishes sequence numbers to a JetStream work queue.
#[derive(Debug, Parser)]
#[command(name = "nats_producer")]
struct Args {
    /// The broker.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// The stream (created as a work queue on `<stream>.>` if missing).
    #[arg(long, default_value = "jobs")]
    stream: String,
    /// How many sequence numbers.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// The first sequence number.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Poison messages to add after the numbers.
    #[arg(long, default_value_t = 0)]
    poison: u64,
    /// Publishes awaiting their acknowledgement at most.
    #[arg(long, default_value_t = 512)]
    in_flight: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let nats = Nats::connect(&args.url)?;
    let subjects = format!("{}.>", args.stream);
    nats.work_queue(&args.stream, &[&subjects])?;
    let subject = format!("{}.work", args.stream);
    let numbers = (args.start..args.start + args.count).map(|n| n.to_string());
    let poison = (0..args.poison).map(|i| format!("poison-{i}"));
    let rt = Runtime::builder().arbiters(1).build()?;
    let started = Instant::now();
    let sink = Publish::new(nats.clone(), move |d: &Delivery<String>| {
        (subject.clone(), Bytes::from(d.payload.clone()))
    })
    .max_in_flight(args.in_flight);
    let done = Pipeline::from_iter(numbers.chain(poison))
        .map(Delivery::detached)
        .publish_with(sink)
        .run(&rt)?
        .wait()?;
    done.report.check_conservation()?;
    let n = done.report.delivered();
    let elapsed = started.elapsed().as_secs_f64();
    outln!(
        "published {n} messages in {elapsed:.2} s ({:.0}/s)",
        n as f64 / elapsed.max(1e-9)
    );
    Ok(())
}
