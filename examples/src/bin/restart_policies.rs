//! Supervision policies from a TOML file, applied to a whole pipeline with flaky
//! stages by one call (`policies(&config)`): the file's `strategy`, `[default]` for
//! every stage it does not name and `[stages.NAME]` for the stages it does. The
//! code only says where each stage's dead letters go. A file naming a stage the
//! pipeline lacks fails the run, with the nearest name as a suggestion.
//!
//! Records flow through `parse` (some records are malformed: a permanent error,
//! dead-lettered per the file's `[stages.parse]`), `enrich` (a flaky async lookup
//! with 8 calls in flight: a few transient errors, retried with backoff; one call
//! that hangs until the file's `element_timeout_ms` fails it; one panic, which
//! restarts the stage) and a sink. Supervision events are printed as they happen; the final report shows
//! delivered / retried / dead-lettered / restarts, and `--report PATH` writes it as
//! JSON.
//!
//! ```sh
//! cargo run -p weir-examples --bin restart_policies -- --report target/restart-report.json
//! ```

use clap::Parser;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use weir_examples::outln;

use weir::prelude::*;
use weir::supervisor::policy::PolicyConfig;
use weir::{EventError, Failure};

/// The reference policy file, compiled in: the default without `--config`.
const DEFAULT_POLICIES: &str = include_str!("../../config/restart-policy.toml");

/// Supervision policies from a TOML file applied to a pipeline with flaky
/// stages: malformed records dead-lettered, a flaky lookup retried, a hung
/// call timed out, a panic restarting its stage.
#[derive(Debug, Parser)]
#[command(name = "restart_policies")]
struct Args {
    /// The supervision policy file. Default: the built-in reference policies
    /// (the text of examples/config/restart-policy.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Writes the report as JSON.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Records sent through the pipeline.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    elements: u64,
}

#[derive(Debug, Clone)]
struct Record {
    id: u64,
    raw: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // --help prints the usage (exit 0), a bad argument clap's error (exit 2).
    let Args {
        config: config_path,
        report: report_path,
        elements,
    } = Args::parse();
    let config = match &config_path {
        Some(path) => PolicyConfig::from_file(path)?,
        None => PolicyConfig::from_toml_str(DEFAULT_POLICIES)?,
    };
    outln!(
        "policy: {} ({:?})",
        config_path.as_ref().map_or_else(
            || "built in (config/restart-policy.toml)".into(),
            |path| path.display().to_string()
        ),
        config.strategy()
    );

    let parse_dlq = MemoryDlq::new(1_000);
    let enrich_dlq = MemoryDlq::new(1_000);
    let rt = Runtime::new()?;
    let flaky_seen = Arc::new(Mutex::new(HashSet::new()));
    let mut runnable = Pipeline::from_iter((0..elements).map(|id| Record {
        id,
        raw: if id % 97 == 13 {
            format!("garbage-{id}")
        } else {
            format!("{id},{}", id % 10)
        },
    }))
    .name("records")
    // The file decides the policies; the code decides where dead letters go.
    .supervise(Supervision::default().dead_letters(parse_dlq.clone()))
    .try_map(|record: Record| {
        let (id, category) = record
            .raw
            .split_once(',')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u8>().ok()?)))
            .ok_or_else(|| {
                Failure::error(
                    ErrorClass::Permanent,
                    format!("malformed record {}", record.id),
                )
            })?;
        Ok((id, category))
    })
    .name("parse")
    .supervise(Supervision::default().dead_letters(enrich_dlq.clone()))
    .try_map_async(8, move |(id, category): (u64, u8)| {
        // A flaky remote lookup, 8 calls in flight: the first call for a few ids
        // fails transiently, one id's first call hangs (the file's
        // `element_timeout_ms` fails it as a timeout), and one id's first call
        // panics (a bug in the client), which restarts the stage. Every failed
        // call is retried in place, so the output keeps the input order.
        let first_call = flaky_seen.lock().expect("lock").insert(id);
        async move {
            if first_call && id == 500 {
                panic!("lookup client crashed on {id}");
            }
            if first_call && id == 777 {
                std::future::pending::<()>().await;
            }
            if first_call && id % 331 == 7 {
                return Err(Failure::error(
                    ErrorClass::Transient,
                    format!("lookup refused for {id}"),
                ));
            }
            Ok(format!(
                "{id}:{}",
                ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][category as usize]
            ))
        }
    })
    .name("enrich")
    .fold(0_u64, |n, _enriched: String| n + 1)
    .name("sink")
    .named("restart-policies")
    .policies(&config);

    let mut events = runnable.subscribe();
    let printer = std::thread::spawn(move || {
        loop {
            match futures::executor::block_on(events.recv()) {
                Ok(event) => match &event {
                    SupervisionEvent::StageStarted { .. }
                    | SupervisionEvent::StageStopped { .. } => {}
                    other => outln!("event: {}", serde_json::to_string(other).expect("json")),
                },
                Err(EventError::Ended) => break,
                Err(EventError::Lagged(n)) => outln!("event: ({n} events skipped)"),
                Err(other) => outln!("event error: {other}"),
            }
        }
    });

    let done = runnable.run(&rt)?.wait()?;
    printer.join().expect("event printer");
    let report = &done.report;
    outln!("\n{report}");
    outln!(
        "delivered {} of {} records; retries {}, restarts {}, dead-lettered {} (parse {}, enrich {})",
        done.output,
        report.emitted_by_sources(),
        report.retries(),
        report.restarts(),
        report.dead_lettered(),
        parse_dlq.len(),
        enrich_dlq.len()
    );
    for letter in parse_dlq.snapshot().iter().take(3) {
        outln!(
            "dead letter: stage {} element {} after {} attempt(s): {}",
            letter.stage,
            letter.element.id,
            letter.attempts,
            letter.error
        );
    }
    report.check_conservation()?;

    if let Some(path) = report_path {
        let json = serde_json::json!({
            "emitted": report.emitted_by_sources(),
            "delivered": report.delivered(),
            "filtered": report.filtered(),
            "dead_lettered": report.dead_lettered(),
            "retries": report.retries(),
            "restarts": report.restarts(),
            "failed": report.failed(),
            "abandoned": report.abandoned(),
            "report": report,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
        outln!("report written to {}", path.display());
    }
    Ok(())
}
