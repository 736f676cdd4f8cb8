//! nats_bench: consumer throughput of 1, 2 and 3 `nats_worker` processes sharing
//! one durable consumer on one broker.
//!
//! For each worker count it starts a fresh `nats-server -js` (a
//! [`TestServer`]), fills the stream with `--messages` sequence numbers using
//! `nats_producer`, then starts the workers and measures the time until the
//! broker has nothing pending and nothing unacknowledged. The workers and the
//! producer are the sibling binaries of this one, so build them together:
//!
//! ```sh
//! cargo build --release -p weir-examples --features nats --bins
//! target/release/nats_bench --messages 200000
//! ```

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_examples::outln;

use clap::Parser;
use weir::nats::{ConsumerSettings, Nats, TestServer};

/// Messages/s with 1..=N worker processes on one broker.
#[derive(Debug, Parser)]
#[command(name = "nats_bench")]
struct Args {
    /// Messages per run.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// The largest number of workers (runs 1, 2, .., this many).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// The consumer's max_ack_pending.
    #[arg(long, default_value_t = 1_000)]
    max_ack_pending: u64,
}

fn sibling(name: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.is_file() {
        return Err(format!(
            "{} not found: build the examples' bins together",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (worker_bin, producer_bin) = (sibling("nats_worker")?, sibling("nats_producer")?);
    outln!("workers  messages  seconds  messages/s  scaling");
    let mut single = None;
    for k in 1..=args.workers {
        let server = TestServer::start()?;
        let url = server.url();
        let nats = Nats::connect(&url)?;
        nats.work_queue("bench", &["bench.>"])?;
        let settings = ConsumerSettings::new("bench").max_ack_pending(args.max_ack_pending);
        let consumer = nats.durable_consumer("bench", &settings)?;
        let status = Command::new(&producer_bin)
            .args([
                "--url",
                &url,
                "--stream",
                "bench",
                "--count",
                &args.messages.to_string(),
            ])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("nats_producer failed: {status}").into());
        }
        let started = Instant::now();
        let mut workers = (0..k)
            .map(|_| {
                Command::new(&worker_bin)
                    .args(["--url", &url, "--stream", "bench", "--durable", "bench"])
                    .stdout(Stdio::null())
                    .spawn()
            })
            .collect::<Result<Vec<_>, _>>()?;
        loop {
            let mut c = consumer.clone();
            let info = nats.block_on(async move { c.info().await.cloned() })??;
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let seconds = started.elapsed().as_secs_f64();
        for w in &mut workers {
            w.kill()?;
            w.wait()?;
        }
        let rate = args.messages as f64 / seconds;
        let base = *single.get_or_insert(rate);
        outln!(
            "{k:>7}  {:>8}  {seconds:>7.2}  {rate:>10.0}  {:>6.2}x",
            args.messages,
            rate / base
        );
        drop(server);
    }
    Ok(())
}
