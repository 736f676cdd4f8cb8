//! Time slices: a stage whose steps are slow hands its arbiter back between
//! slices, so that the other actors on that arbiter keep running (see
//! `docs/architecture.md`, "Time slices").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir::prelude::*;

/// About `d` of CPU work, without sleeping (a sleep would hand the thread back).
fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A slow map (2 ms per element, 300 queued: 600 ms of work in one step without
/// slices) and a second pipeline on the same, single arbiter: each ping through
/// the second comes back within a few slices, not after the slow stage's queue.
/// Before slices the first ping waited for the rest of the slow step (about
/// 0.6 s).
#[test]
fn a_slow_stage_does_not_hold_its_arbiter_for_its_whole_queue() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let busy = Arc::new(AtomicBool::new(false));
    let started = Arc::clone(&busy);
    let slow = Pipeline::from_iter(0..300_u64)
        .map(move |x| {
            started.store(true, Ordering::Relaxed);
            spin(Duration::from_millis(2));
            x
        })
        .fold(0_u64, |a, x| a + x)
        .run(&rt)
        .unwrap();

    let (ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, mut egress) = flow.map(|x| x + 1).egress(4);
    let pings = runnable.run(&rt).unwrap();
    while !busy.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let start = Instant::now();
        futures::executor::block_on(ingress.send(i)).unwrap();
        assert_eq!(futures::executor::block_on(egress.recv()), Some(i + 1));
        slowest = slowest.max(start.elapsed());
    }
    drop(ingress);
    pings.wait().unwrap().report.check_conservation().unwrap();
    let done = slow.wait().unwrap();
    assert_eq!(done.output, (0..300).sum::<u64>());
    done.report.check_conservation().unwrap();
    // A slice is 200 µs and a step of the slow map then takes one element (2 ms):
    // a ping waits for at most one or two of them; 150 ms leaves room for a
    // loaded machine and is still a quarter of the slow stage's queue.
    let map = done.report.stage("map#1").unwrap();
    eprintln!(
        "slowest ping {slowest:?}; the slow map: {} steps of up to {} elements",
        map.batches, map.largest_batch
    );
    assert!(
        slowest < Duration::from_millis(150),
        "a ping took {slowest:?} while the slow stage ran ({} steps of up to {} elements)",
        map.batches,
        map.largest_batch
    );
    assert!(
        map.batches > 100,
        "the slow map took its queue in {} steps of up to {} elements",
        map.batches,
        map.largest_batch
    );
}
