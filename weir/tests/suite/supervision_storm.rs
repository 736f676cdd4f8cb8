//! Restart storms and open breakers on virtual time (a paused tokio clock): exact
//! restart counts within the intensity window, backoff delays on the schedule, and
//! no calls into the failing stage while it waits. The tests run on the test kit's
//! paused-clock runner; failures are checked with `expect_failure`, which asserts
//! conservation on the failed pipeline's report too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir::prelude::*;
use weir::supervisor::policy::{BreakerConfig, RestartIntensity, Trip};
use weir::{EventError, Failure};
use weir_testkit::prelude::*;

async fn drain(events: &mut weir::Events) -> Vec<SupervisionEvent> {
    let mut all = Vec::new();
    loop {
        match events.recv().await {
            Ok(event) => all.push(event),
            Err(EventError::Ended) => return all,
            Err(other) => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_restart_storm_escalates_after_exactly_the_intensity_with_backoff_on_schedule() {
    run_paused(|rt| async move {
        let restart_backoff =
            BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(10));
        let policy = SupervisionPolicy::default()
            .max_attempts(1_000)
            .intensity(RestartIntensity::new(5, Duration::from_secs(60)))
            .restart_backoff(restart_backoff);
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let mut runnable = Pipeline::from_iter(0..10_u64)
            .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
            .map(move |x| -> u64 {
                counter.fetch_add(1, Ordering::SeqCst);
                panic!("always failing on {x}")
            })
            .name("storm")
            .collect();
        let mut events = runnable.subscribe();
        let started = tokio::time::Instant::now();
        let (err, report) = expect_failure(runnable.run(&rt).unwrap(), "storm").await;
        let elapsed = started.elapsed();
        assert!(err.contains("restart intensity exceeded"), "{err}");
        assert_eq!(report.stage("storm").unwrap().restarts, 5);
        // One first try, then one call per restart: nothing in between.
        assert_eq!(calls.load(Ordering::SeqCst), 6);

        let all = drain(&mut events).await;
        let delays: Vec<(u32, Duration)> = all
            .iter()
            .filter_map(|e| match e {
                SupervisionEvent::StageRestarted {
                    restarts, delay, ..
                } => Some((*restarts, *delay)),
                _ => None,
            })
            .collect();
        assert_eq!(delays.len(), 5, "{all:#?}");
        let mut total = Duration::ZERO;
        for (n, (restarts, delay)) in delays.iter().enumerate() {
            assert_eq!(*restarts as usize, n + 1);
            // The first restart in a quiet window is immediate; then 100, 200, 400,
            // 800 ms, shortened by at most the 10 % jitter.
            let nominal = restart_backoff.nominal(n as u32);
            assert!(
                *delay <= nominal && delay.as_secs_f64() >= nominal.as_secs_f64() * 0.9 - 1e-9,
                "restart {restarts}: {delay:?} vs nominal {nominal:?}"
            );
            total += *delay;
        }
        assert!(
            all.iter()
                .any(|e| matches!(e, SupervisionEvent::Escalated { .. }))
        );
        // Virtual time advanced by the backoff delays, not more.
        assert!(
            elapsed >= total && elapsed < total + Duration::from_millis(50),
            "{elapsed:?} vs {total:?}"
        );
    });
}

#[test]
fn an_open_breaker_probes_once_per_cooldown_and_stays_idle_between() {
    run_paused(|rt| async move {
        let policy = SupervisionPolicy::default()
            .action(ErrorClass::Transient, Action::Retry)
            .max_attempts(u32::MAX)
            .backoff(BackoffConfig::new(
                Duration::from_millis(1),
                Duration::from_millis(1),
            ))
            .breaker(BreakerConfig::new(
                Trip::Consecutive(3),
                Duration::from_secs(10),
            ));
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let running = Pipeline::from_iter(0..5_u64)
            .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(10)))
            .try_map(move |x| -> Result<u64, Failure> {
                counter.fetch_add(1, Ordering::SeqCst);
                Err(Failure::error(
                    ErrorClass::Transient,
                    format!("down for {x}"),
                ))
            })
            .name("lookup")
            .collect()
            .run(&rt)
            .unwrap();
        // 100 virtual seconds with the service down.
        tokio::time::sleep(Duration::from_secs(100)).await;
        let calls_now = calls.load(Ordering::SeqCst);
        // 3 calls trip the breaker (1 ms apart); then one probe per 10 s cooldown,
        // each failing and re-opening: 3 + 10 calls, give or take the last one.
        assert!((12..=14).contains(&calls_now), "{calls_now} calls in 100 s");
        let done = running.abort().await.unwrap();
        assert_conserved(&done.report);
    });
}

#[test]
fn the_watchdog_names_the_stalled_stage_not_the_backpressured_ones() {
    run_paused(|rt| async move {
        let mut runnable = Pipeline::from_iter(0..10_000_u64)
            .name("numbers")
            .map(|x| x + 1)
            .name("inc")
            .capacity(16)
            .for_each_async(|x| async move {
                if x == 6 {
                    // A call that never returns.
                    std::future::pending::<()>().await;
                }
            })
            .name("slow-sink")
            .capacity(16)
            .stall_timeout(Duration::from_secs(1));
        let mut events = runnable.subscribe();
        let running = runnable.run(&rt).unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(
            running.stats().stages.iter().all(|s| !s.stalled),
            "stalled too early"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = running.stats();
        let stalled: Vec<&str> = stats
            .stages
            .iter()
            .filter(|s| s.stalled)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(stalled, ["slow-sink"]);
        let done = running.abort().await.unwrap();
        assert_conserved(&done.report);
        let all = drain(&mut events).await;
        let reported: Vec<(&str, Duration)> = all
            .iter()
            .filter_map(|e| match e {
                SupervisionEvent::StageStalled {
                    stage, idle_for, ..
                } => Some((stage.as_str(), *idle_for)),
                _ => None,
            })
            .collect();
        assert_eq!(reported.len(), 1, "{all:#?}");
        assert_eq!(reported[0].0, "slow-sink");
        assert!(reported[0].1 >= Duration::from_secs(1));
    });
}
