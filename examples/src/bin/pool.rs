//! A pool of parsers: CPU-heavy work spread over one replica per core, results in
//! input order, replicas crashing at random and restarted without losing anything.
//!
//! ```text
//!                    ┌─► parse-0 ─┐
//!  lines ──► parse.dispatch ─► parse-1 ─┼──► parse.collect ──► check (in order)
//!                    └─► parse-k ─┘
//! ```
//!
//! Each line is "parsed" with some CPU work. About one line in 500 makes its
//! replica panic the first time it is seen (a stand-in for a parser bug on odd
//! input that a fresh parser gets past): the pool's supervision restarts that
//! replica from the factory and the line is parsed again; the other replicas keep
//! working meanwhile. The program checks that every line came out once, in input
//! order, and prints how the work was spread and how many restarts each replica
//! had.
//!
//! Run it with `cargo run --release -p weir-examples --bin pool`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_examples::outln;

use weir::prelude::*;
use weir_examples::stage;

/// Lines sent through the pool.
const LINES: u64 = 50_000;

/// A parsed line: its number and a digest of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Parsed {
    line: u64,
    digest: u64,
}

/// The "parser": a few hundred rounds of mixing per line.
fn parse(line: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for _ in 0..20 {
        for b in line.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn text(i: u64) -> String {
    format!("{i} GET /items/{} 200", i % 977)
}

/// True for about one line in 500 (bits 55..64 of the product all zero).
fn trips_the_parser(i: u64) -> bool {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 55 == 0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The injected crashes are expected: keep their panic messages off stderr.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("parser tripped"));
        if !injected {
            default_hook(info);
        }
    }));
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let replicas = cores.max(2);
    let rt = Runtime::builder().arbiters(cores).build()?;
    let mut g = Graph::new();

    let lines = g.source(Pipeline::from_iter((0..LINES).map(|i| (i, text(i)))));
    let dead_letters = MemoryDlq::new(100);
    let policy = SupervisionPolicy::default()
        .restart_backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
        .intensity(weir::supervisor::policy::RestartIntensity::new(
            10_000,
            Duration::from_secs(60),
        ));
    let pool = Pool::new(replicas)
        .ordered()
        .name("parse")
        .replica_capacity(256)
        .supervise(Supervision::new(policy).dead_letters(dead_letters.clone()));

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let parsers_built = Arc::new(AtomicU64::new(0));
    let (tripped, built) = (seen.clone(), parsers_built.clone());
    let parsed = g.pool_map(lines, pool, move || {
        built.fetch_add(1, Relaxed);
        let tripped = tripped.clone();
        move |(line, text): (u64, String)| {
            if trips_the_parser(line) && tripped.lock().unwrap().insert(line) {
                panic!("parser tripped on line {line}");
            }
            Parsed {
                line,
                digest: parse(&text),
            }
        }
    });
    let out = g.sink(parsed, |f| f.collect());
    g.named("pool-example");

    outln!("parsing {LINES} lines with {replicas} replicas on {cores} arbiters ...");
    let done = g.run(&rt)?.wait()?;
    done.report.check_conservation()?;
    let out = futures::executor::block_on(out).ok_or("the sink gave no result")?;

    // Every line once, in input order, with the right digest.
    if out.len() as u64 != LINES {
        return Err(format!("{} lines came out, {LINES} went in", out.len()).into());
    }
    for (i, p) in out.iter().enumerate() {
        let i = i as u64;
        if p.line != i || p.digest != parse(&text(i)) {
            return Err(format!("line {i} came out as {p:?}").into());
        }
    }
    let crashes = seen.lock().unwrap().len() as u64;
    outln!("{LINES} lines out, in input order; {crashes} parser crashes injected");
    outln!("  {:<10} {:>8} {:>9}", "replica", "lines", "restarts");
    let mut restarts = 0;
    for k in 0..replicas {
        let r = stage(&done.report, &format!("parse-{k}"))?;
        outln!("  {:<10} {:>8} {:>9}", r.name, r.completed, r.restarts);
        restarts += r.restarts;
    }
    if restarts != crashes || !dead_letters.is_empty() {
        return Err(format!("{restarts} restarts for {crashes} crashes").into());
    }
    outln!(
        "parsers built: {} ({replicas} at start + one per restart)",
        parsers_built.load(Relaxed)
    );
    outln!(
        "took {:.0} ms; all checks passed",
        done.report.elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
