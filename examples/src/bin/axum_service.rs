//! axum_service: weir inside a Rust web service.
//!
//! An [axum](https://docs.rs/axum) HTTP service and a weir pipeline on one
//! tokio runtime. `POST /events` with `{"key": "..."}` pushes the event into
//! the pipeline's `Ingress` (`send().await` under `--send-timeout-ms`): `202`
//! when the pipeline took it, `503` with `Retry-After` when it had no room in
//! time. The pipeline counts the events per key (`key_by(..).scan`) into
//! shared state; `GET /stats` answers the counts, what was admitted and the
//! pipeline's live figures (`running.stats()`), `GET /healthz` its health.
//! Ctrl-C stops it gracefully: no new requests, the accepted events drain, and
//! it prints what it did (every accepted event counted once) and the
//! pipeline's report; a second Ctrl-C stops it at once.
//!
//! ```sh
//! cargo run -p weir-examples --bin axum_service -- --addr 127.0.0.1:3000
//! curl -i -XPOST localhost:3000/events -H 'content-type: application/json' -d '{"key":"checkout"}'
//! curl localhost:3000/stats
//! ```
//!
//! # How weir is embedded
//!
//! `main` builds the service's runtime as a service would — a multi-threaded
//! tokio runtime — and wraps it in an actix System
//! (`actix_rt::System::with_tokio_rt`). Inside the System,
//! `Runtime::from_current()` gives weir the System's arbiter (the main
//! thread) for its stages; axum's server is spawned on the tokio workers. See
//! `weir_examples::axum_service`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use weir_examples::axum_service::{Config, Limits, Settings, serve};
use weir_examples::cli::{Fatal, Interrupts, exit, failed, stdout_closed, usage};

/// An axum HTTP service that embeds a weir pipeline: events in, counts per key
/// out, backpressure as 503.
#[derive(Debug, Parser)]
#[command(name = "axum_service", version)]
struct Args {
    /// The address to listen on (port 0 picks a free one; the address is
    /// printed to stderr).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Events the pipeline's ingress holds before `POST /events` waits.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// The input capacity of each stage after the ingress, in events.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    edge_capacity: u32,
    /// How long `POST /events` waits for room before it answers 503 (0: it
    /// refuses at once when the ingress is full).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    send_timeout_ms: u64,
    /// The `Retry-After` of a 503, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    retry_after_secs: u64,
    /// Distinct keys counted; an event with one more is dead-lettered.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_keys: u32,
    /// The longest key accepted, in bytes (a longer one is answered 422).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    max_key_bytes: u32,
    /// How long the shutdown waits for the accepted events to drain.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    drain_deadline_ms: u64,
    /// The tokio worker threads serving HTTP.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    http_threads: u32,
    /// Keys listed in the summary, most counted first.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Writes the summary as JSON at the end.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    exit("axum_service", run(Args::parse()))
}

fn run(args: Args) -> Result<(), Fatal> {
    let config = Config {
        limits: Limits {
            capacity: args.capacity as usize,
            edge_capacity: args.edge_capacity as usize,
            max_keys: args.max_keys as usize,
            max_key_bytes: args.max_key_bytes as usize,
        },
        http: Settings {
            send_timeout: Duration::from_millis(args.send_timeout_ms),
            retry_after_secs: args.retry_after_secs,
            max_key_bytes: args.max_key_bytes as usize,
        },
        drain_deadline: Duration::from_millis(args.drain_deadline_ms),
        hold: None,
    };
    // The service's own runtime, as `#[tokio::main]` would build it...
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http_threads as usize)
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the tokio runtime: {e}")))?;
    // ...wrapped in an actix System, so that weir's actors run on it too.
    let system = actix_rt::System::with_tokio_rt(|| tokio_rt);
    let summary = system.block_on(async {
        // Before the address is printed: a Ctrl-C from then on is seen.
        let mut interrupts =
            Interrupts::register().map_err(|e| failed(format!("cannot handle Ctrl-C: {e}")))?;
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| usage(format!("--addr {}: {e}", args.addr)))?;
        let addr = listener.local_addr().map_err(failed)?;
        eprintln!("axum_service: listening on http://{addr}/");
        let shutdown = async move {
            if !interrupts.next().await {
                // No Ctrl-C can come: serve until killed.
                std::future::pending::<()>().await;
            }
            eprintln!(
                "axum_service: Ctrl-C: stopping; no new requests, draining the accepted \
                 events (Ctrl-C again to stop at once)"
            );
            tokio::spawn(async move {
                if interrupts.next().await {
                    eprintln!("axum_service: stopped at once");
                    std::process::exit(130);
                }
            });
        };
        serve(listener, config, shutdown).await.map_err(failed)
    })?;

    let closed = stdout_closed(summary.print(&mut std::io::stdout().lock(), args.top))?;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&summary.json()).map_err(failed)?;
        std::fs::write(path, json)
            .map_err(|e| failed(format!("report {}: {e}", path.display())))?;
        if !closed {
            let mut out = std::io::stdout().lock();
            stdout_closed(writeln!(out, "report written to {}", path.display()))?;
        }
    }
    summary.check().map_err(failed)
}
