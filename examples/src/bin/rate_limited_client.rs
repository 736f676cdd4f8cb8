//! A resilient, rate-limited API client: stream the pages
//! of a paginated API, retry failed calls with backoff, stay within the API's
//! rate limit, turn malformed records away, and report health at the end.
//!
//! ```text
//!  page numbers ──► throttle ──► fetch_page ──► flat_map ──► validate ──► collect
//!   (0..PAGES)    (40 pages/s,   (supervised:   (records)   (malformed ──► dead
//!                  burst 4)       transient →                 letters)
//!                                 retry, backoff)
//! ```
//!
//! The fake API resets the connection on the first call for every fourth page;
//! the supervision policy retries it after an exponential backoff, in place, so
//! records keep the page order. The throttle shapes the calls (it delays, it
//! never drops), so the run takes at least `(PAGES - burst) / rate`. Malformed
//! records go to a dead-letter queue with their reason, counted in the report.
//!
//! Run it with `cargo run --release -p weir-examples --bin rate_limited_client`.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use weir_examples::outln;

use weir::prelude::*;
use weir_examples::stage;

/// Pages the API serves.
const PAGES: u32 = 24;
/// Records per page.
const PER_PAGE: u32 = 25;
/// The API's rate limit, in calls per second, and the burst it tolerates.
const RATE: u32 = 40;
const BURST: u32 = 4;

/// One record of the API.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    id: u32,
    email: String,
}

/// The fake API: page `n` of the records; the first call for every fourth page
/// fails with a reset connection.
async fn fetch_page(page: u32, attempt: u32) -> Result<Vec<Record>, Failure> {
    tokio::time::sleep(Duration::from_millis(2)).await; // network latency
    if page % 4 == 3 && attempt == 1 {
        return Err(Failure::error(
            ErrorClass::Transient,
            format!("page {page}: connection reset"),
        ));
    }
    let first = page * PER_PAGE;
    Ok((first..first + PER_PAGE)
        .map(|id| Record {
            id,
            // Every 37th record is malformed.
            email: if id % 37 == 0 {
                format!("user{id}")
            } else {
                format!("user{id}@example.com")
            },
        })
        .collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().arbiters(1).build()?;
    let malformed = MemoryDlq::new(1_000);
    let failed_pages = MemoryDlq::new(PAGES as usize);
    let throttle = Throttle::shape(Rate::per_second(RATE)).burst(BURST);
    let calls = throttle.stats();
    let retry = SupervisionPolicy::default()
        .max_attempts(4)
        .backoff(BackoffConfig::new(
            Duration::from_millis(5),
            Duration::from_millis(100),
        ));

    let mut attempts: HashMap<u32, u32> = HashMap::new();
    let started = Instant::now();
    let mut runnable = Pipeline::from_iter(0..PAGES)
        .name("pages")
        .throttle(throttle)
        .name("rate_limit")
        .supervise(Supervision::new(retry).dead_letters(failed_pages.clone()))
        .try_map_async(2, move |page| {
            let attempt = attempts.entry(page).or_default();
            *attempt += 1;
            fetch_page(page, *attempt)
        })
        .name("fetch_page")
        .flat_map(|records| records)
        .name("records")
        .supervise(rejections_to(malformed.clone()))
        .validate(|r: &Record| {
            if r.email.contains('@') {
                Ok(())
            } else {
                Err(format!("record {}: email {:?} has no @", r.id, r.email))
            }
        })
        .name("validate")
        .collect()
        .named("rate_limited_client");
    let mut events = runnable.subscribe();
    let done = runnable.run(&rt)?.wait()?;
    let elapsed = started.elapsed();

    let report = &done.report;
    report.check_conservation()?;
    let fetch = stage(report, "fetch_page")?;
    let validate = stage(report, "validate")?;
    let mut retried = Vec::new();
    while let Some(Ok(event)) = events.try_recv() {
        if let SupervisionEvent::ElementRetried {
            element_index,
            delay,
            ..
        } = event
        {
            retried.push((element_index, delay));
        }
    }
    let letters = malformed.drain();
    let min_time = Duration::from_secs_f64(f64::from(PAGES - BURST) / f64::from(RATE));

    outln!(
        "rate-limited client: {PAGES} pages of {PER_PAGE} records, limit {RATE} calls/s (burst {BURST})"
    );
    outln!("  records received:   {}", done.output.len());
    outln!(
        "  pages fetched:      {} ({} retried after a reset)",
        fetch.completed,
        fetch.retries
    );
    for (index, delay) in &retried {
        outln!("    page {index} retried after {delay:?}");
    }
    outln!(
        "  calls delayed:      {} (waited {:?} in all for the rate)",
        calls.delayed(),
        calls.waited()
    );
    outln!(
        "  elapsed:            {elapsed:?} (the rate allows no less than {min_time:?}); {:.1} calls/s",
        f64::from(PAGES) / elapsed.as_secs_f64()
    );
    outln!(
        "  malformed records:  {} dead-lettered",
        validate.dead_lettered
    );
    for l in letters.iter().take(3) {
        outln!("    {} [{}]: {}", l.stage, l.class, l.error);
    }
    let healthy = failed_pages.is_empty() && report.failed() == 0;
    outln!(
        "health: {} — {} delivered, {} dead-lettered, {} failed, conservation exact",
        if healthy { "OK" } else { "DEGRADED" },
        report.delivered(),
        report.dead_lettered(),
        report.failed()
    );

    let expected_malformed = (0..PAGES * PER_PAGE).filter(|id| id % 37 == 0).count();
    check(fetch.completed == u64::from(PAGES), "every page fetched")?;
    check(
        fetch.retries == u64::from(PAGES / 4),
        "one retry per fourth page",
    )?;
    check(
        letters.len() == expected_malformed,
        "every malformed record dead-lettered",
    )?;
    check(
        done.output.len() + expected_malformed == (PAGES * PER_PAGE) as usize,
        "every record delivered or dead-lettered",
    )?;
    check(
        done.output.windows(2).all(|w| w[0].id < w[1].id),
        "records in page order",
    )?;
    check(elapsed >= min_time, "the rate limit was respected")?;
    check(
        calls.admitted() == u64::from(PAGES),
        "every call admitted once",
    )?;
    check(healthy, "healthy")?;
    outln!("all checks passed");
    Ok(())
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}
