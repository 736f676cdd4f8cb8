//! Dynamic hubs: an event bus that services publish to and consumers subscribe to
//! while it runs (`MergeHub` and `BroadcastHub`, with bounded buffers).
//!
//! ```text
//!  service 0 ─┐                                    ┌─► audit      (Block, 256)
//!  service 1 ─┼─► merge hub ──► stamp ──► bus ─────┼─► dashboard  (DropOldest{8}, 8; slow)
//!  service 2 ─┘   (attach at    (seq no.)  (broadcast└─► monitor    (Block, 64; joins late,
//!                  run time)                hub)                    leaves after 500)
//! ```
//!
//! Three services attach to the merge hub from their own threads after the
//! pipeline has started; each one's events keep their order. The bus publishes
//! every stamped event to every subscriber. The audit log blocks: the bus waits for
//! it, so it sees every event. The dashboard is slow (1 ms per event) and keeps
//! only the newest 16 waiting, dropping older ones for itself alone, counted. A
//! monitor subscribes halfway through, sees only what is published from then on,
//! and unsubscribes after 500 events. Closing the merge hub once the services are
//! done ends the stream; every subscriber drains its buffer and sees the end.
//!
//! Run it with `cargo run --release -p weir-examples --bin hubs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;
use weir_examples::outln;

use futures::executor::block_on;
use weir::prelude::*;
use weir_examples::stage;

/// Events each service publishes.
const PER_SERVICE: u64 = 2_000;
const SERVICES: u64 = 3;

/// A file-operation event, as a service publishes it.
#[derive(Debug, Clone)]
struct Event {
    service: u64,
    n: u64,
}

/// An event stamped with its position in the bus.
#[derive(Debug, Clone)]
struct Stamped {
    seq: u64,
    event: Event,
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::builder().arbiters(2).build()?;
    let (services, events) = MergeHub::<Event>::source(64);
    let mut next = 0;
    let (runnable, bus) = events
        .map(move |event| {
            next += 1;
            Stamped {
                seq: next - 1,
                event,
            }
        })
        .name("stamp")
        .broadcast_hub(NoSubscriber::Wait);
    let running = runnable.named("event_bus").name("bus").run(&rt)?;

    // Subscribers before any event: they see everything (minus the dashboard's drops).
    let mut audit = bus.subscribe(256, LagPolicy::Block)?;
    let mut dashboard = bus.subscribe(8, LagPolicy::DropOldest { buffer: 8 })?;
    let audited = Arc::new(AtomicU64::new(0));
    let audit_seen = Arc::clone(&audited);
    let audit = thread::spawn(move || {
        let mut log = Vec::new();
        while let Some(e) = block_on(audit.recv()) {
            log.push(e);
            audit_seen.fetch_add(1, Ordering::Relaxed);
        }
        (log, audit.stats())
    });
    let dashboard = thread::spawn(move || {
        let mut shown = Vec::new();
        while let Some(e) = block_on(dashboard.recv()) {
            shown.push(e.seq);
            thread::sleep(Duration::from_millis(1));
        }
        (shown, dashboard.stats())
    });

    // The services attach from their own threads, after the pipeline started.
    let producers: Vec<_> = (0..SERVICES)
        .map(|service| {
            let hub = services.clone();
            thread::spawn(move || -> Result<u64, String> {
                let producer = hub.attach().map_err(|e| e.to_string())?;
                for n in 0..PER_SERVICE {
                    block_on(producer.send(Event { service, n })).map_err(|e| e.to_string())?;
                    if n % 100 == 99 {
                        thread::sleep(Duration::from_millis(2));
                    }
                }
                Ok(producer.sent())
            })
        })
        .collect();

    // A monitor joins halfway through and leaves after 500 events.
    while audited.load(Ordering::Relaxed) < SERVICES * PER_SERVICE / 2 {
        thread::sleep(Duration::from_millis(1));
    }
    let joined_at = audited.load(Ordering::Relaxed);
    let mut monitor = bus.subscribe(64, LagPolicy::Block)?;
    outln!("monitor subscribed after the audit log had read {joined_at} events");
    let watched: Vec<u64> = (0..500)
        .filter_map(|_| block_on(monitor.recv()).map(|e| e.seq))
        .collect();
    let monitor = monitor.unsubscribe();

    let mut sent = 0;
    for p in producers {
        sent += p.join().map_err(|_| "a service panicked")??;
    }
    services.close(); // no more services: the stream ends
    let (log, audit) = audit.join().map_err(|_| "audit panicked")?;
    let (shown, dashboard) = dashboard.join().map_err(|_| "dashboard panicked")?;
    let done = running.wait()?;

    outln!(
        "services sent {sent} events, the merge hub accepted {}",
        services.accepted()
    );
    outln!("bus ended: {:?}", bus.end());
    outln!(
        "{:>10} {:>8} {:>8} {:>8} {:>8}",
        "subscriber",
        "offered",
        "received",
        "dropped",
        "left"
    );
    for (name, s) in [
        ("audit", audit),
        ("dashboard", dashboard),
        ("monitor", monitor),
    ] {
        outln!(
            "{name:>10} {:>8} {:>8} {:>8} {:>8}",
            s.offered,
            s.received,
            s.dropped,
            s.buffered
        );
    }
    let report = &done.report;
    let source = stage(report, "merge_hub#0")?;
    let sink = stage(report, "bus")?;
    outln!(
        "report: merge hub input {}, bus completed {} filtered {}",
        source.input,
        sink.completed,
        sink.filtered
    );

    let total = SERVICES * PER_SERVICE;
    report.check_conservation()?;
    check(
        sent == total && services.accepted() == total,
        "every send accepted",
    )?;
    check(
        source.input == total && sink.completed == total,
        "the report counts all",
    )?;
    check(bus.end() == Some(HubEnd::Completed), "the bus completed")?;
    // The audit log blocks: it has every event, each service's in order.
    check(log.len() as u64 == total, "the audit log has every event")?;
    check(
        log.iter().enumerate().all(|(i, e)| e.seq == i as u64),
        "audit in bus order",
    )?;
    for service in 0..SERVICES {
        let mine: Vec<u64> = log
            .iter()
            .filter(|e| e.event.service == service)
            .map(|e| e.event.n)
            .collect();
        check(
            mine == (0..PER_SERVICE).collect::<Vec<_>>(),
            "each service's order kept",
        )?;
    }
    // The dashboard lost only its own events, and counted each one.
    check(
        dashboard.offered == total,
        "the dashboard was offered every event",
    )?;
    check(
        dashboard.received + dashboard.dropped == total,
        "dashboard: received + dropped",
    )?;
    check(
        shown.windows(2).all(|w| w[0] < w[1]),
        "the dashboard's events in order",
    )?;
    check(
        shown.last() == Some(&(total - 1)),
        "DropOldest keeps the newest event",
    )?;
    // The monitor saw only what came after it joined, without a gap.
    check(
        watched.len() == 500 && watched[0] >= joined_at,
        "the monitor joined late",
    )?;
    check(
        watched.windows(2).all(|w| w[1] == w[0] + 1),
        "the monitor missed nothing",
    )?;
    check(
        monitor.received == 500 && monitor.dropped == 0,
        "monitor counts",
    )?;
    outln!("all checks passed");
    Ok(())
}
