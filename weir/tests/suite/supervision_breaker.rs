//! The circuit breaker in a supervised stage: it opens after the trip threshold,
//! keeps the stage idle (or diverts input to the dead letters) for the cooldown,
//! lets one probe through, and closes when the probe succeeds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::prelude::*;
use weir::supervisor::policy::{BreakerConfig, OpenBehavior, Trip};
use weir::{EventError, Failure};

fn drain(events: &mut weir::Events) -> Vec<(Instant, SupervisionEvent)> {
    let mut all = Vec::new();
    loop {
        match futures::executor::block_on(events.recv()) {
            Ok(event) => all.push((Instant::now(), event)),
            Err(EventError::Ended) => return all,
            Err(other) => panic!("{other:?}"),
        }
    }
}

/// A "service" that is down until told otherwise; counts the calls it gets.
#[derive(Clone, Default)]
struct Service {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    calls_while_down: Arc<AtomicU64>,
    failed_at: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl Service {
    fn call(&self, x: u64) -> Result<u64, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            self.calls_while_down.fetch_add(1, Ordering::SeqCst);
            self.failed_at.lock().unwrap().push(Instant::now());
            Err(Failure::error(
                ErrorClass::Transient,
                format!("service down for {x}"),
            ))
        } else {
            Ok(x)
        }
    }
}

#[test]
fn an_open_breaker_backpressures_then_probes_and_closes() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let service = Service::default();
    service.down.store(true, Ordering::SeqCst);
    let cooldown = Duration::from_millis(40);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Transient, Action::Retry)
        .max_attempts(1_000)
        .backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
        ))
        .breaker(BreakerConfig::new(Trip::Consecutive(3), cooldown));
    let svc = service.clone();
    let mut runnable = Pipeline::from_iter(0..300_u64)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
        .try_map(move |x| svc.call(x))
        .name("lookup")
        .collect();
    let mut events = runnable.subscribe();
    let running = runnable.run(&rt).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    service.down.store(false, Ordering::SeqCst);
    let done = running.wait().unwrap();

    assert_eq!(done.output, (0..300).collect::<Vec<_>>());
    done.report.check_conservation().unwrap();
    // Open for ~250 ms with a 40 ms cooldown: 3 failures to trip, then about one
    // probe per cooldown. Without the breaker a 1 ms retry would call ~250 times.
    let while_down = service.calls_while_down.load(Ordering::SeqCst);
    assert!(
        (3..=15).contains(&while_down),
        "{while_down} calls while the service was down"
    );

    // The breaker tripped on the 3rd failure; the next call was the probe, a full
    // cooldown later (no call in between: the stage stayed idle).
    let failed_at = service.failed_at.lock().unwrap().clone();
    assert!(failed_at.len() >= 4, "{} failures", failed_at.len());
    let gap = failed_at[3] - failed_at[2];
    assert!(
        gap >= cooldown - Duration::from_millis(2),
        "probe after {gap:?}, cooldown {cooldown:?}"
    );

    let kinds: Vec<&'static str> = drain(&mut events)
        .iter()
        .filter_map(|(_, e)| match e {
            SupervisionEvent::BreakerOpened { .. } => Some("opened"),
            SupervisionEvent::BreakerHalfOpened { .. } => Some("half-opened"),
            SupervisionEvent::BreakerClosed { .. } => Some("closed"),
            _ => None,
        })
        .collect();
    // opened → (half-opened → opened)* → half-opened → closed
    assert_eq!(kinds.first(), Some(&"opened"), "{kinds:?}");
    assert_eq!(
        &kinds[kinds.len() - 2..],
        ["half-opened", "closed"],
        "{kinds:?}"
    );
    for pair in kinds.windows(2) {
        assert_ne!(pair[0], pair[1], "{kinds:?}");
    }
}

#[test]
fn an_open_breaker_can_divert_to_the_dead_letters() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let service = Service::default();
    service.down.store(true, Ordering::SeqCst);
    let dlq = MemoryDlq::new(10_000);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Transient, Action::DeadLetter)
        .breaker(
            BreakerConfig::new(Trip::Consecutive(2), Duration::from_secs(60))
                .when_open(OpenBehavior::DeadLetter),
        );
    let svc = service.clone();
    let done = Pipeline::from_iter(0..500_u64)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .try_map(move |x| svc.call(x))
        .name("lookup")
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert!(done.output.is_empty());
    assert_eq!(done.report.dead_lettered(), 500);
    done.report.check_conservation().unwrap();
    // Two calls tripped the breaker; everything after was diverted without a call.
    assert_eq!(service.calls.load(Ordering::SeqCst), 2);
    let letters = dlq.drain();
    assert_eq!(letters.len(), 500);
    assert!(
        letters[2].error.contains("circuit open"),
        "{}",
        letters[2].error
    );
    let mut elements: Vec<u64> = letters.iter().map(|l| l.element).collect();
    elements.sort_unstable();
    assert_eq!(elements, (0..500).collect::<Vec<_>>());
}
