//! The supervision tree above pipelines: `PipelineManager::supervise` rebuilds a
//! pipeline from its factory under a restart policy (type, intensity, backoff on
//! tokio's clock), and escalates past the intensity. Paused time throughout.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use weir::manager::{
    ManagerEvent, ManagerEvents, OnEscalation, PipelineManager, PipelineState, RestartPolicy,
};
use weir::prelude::*;
use weir::supervisor::policy::RestartIntensity;

use crate::common::paused;

const ELEMENTS: u64 = 10;

/// A pipeline of `ELEMENTS` elements whose map panics on element 5 while `fail`
/// says so for this run (runs numbered from 1).
fn factory(
    runs: &Arc<AtomicU32>,
    fail: impl Fn(u32) -> bool + Send + Sync + 'static,
) -> impl Fn() -> Result<Runnable<()>, BuildError> + Send + Sync + 'static {
    let runs = Arc::clone(runs);
    move || {
        let run = runs.fetch_add(1, SeqCst) + 1;
        let failing = fail(run);
        Ok(Pipeline::from_iter(0..ELEMENTS)
            .map(move |x| {
                if failing && x == 5 {
                    panic!("run {run} cannot take {x}")
                }
                x
            })
            .name("parse")
            .for_each(|_| {}))
    }
}

/// 100 ms doubling, no jitter: the delays are exact.
fn policy(restart: RestartPolicy, max_restarts: u32) -> RestartPolicy {
    restart
        .intensity(RestartIntensity::new(max_restarts, Duration::from_secs(60)))
        .backoff(
            BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(10)).jitter(0.0),
        )
}

fn buffered(events: &mut ManagerEvents) -> Vec<ManagerEvent> {
    std::iter::from_fn(|| events.try_recv().map(Result::unwrap)).collect()
}

#[test]
fn a_pipeline_failing_every_run_is_restarted_3_times_then_escalated() {
    paused(|rt| async move {
        let manager = PipelineManager::new();
        let mut events = manager.subscribe();
        let runs = Arc::new(AtomicU32::new(0));
        let start = tokio::time::Instant::now();
        manager
            .supervise(
                "flaky",
                policy(RestartPolicy::transient(), 3),
                factory(&runs, |_| true),
                &rt,
            )
            .unwrap();
        let ended = manager.join("flaky").await.unwrap();

        assert_eq!(runs.load(SeqCst), 4, "the first run and 3 restarts");
        // Restart 1 is immediate, then 100 ms, then 200 ms: on the tokio clock.
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        let error = ended.error.as_deref().unwrap();
        assert!(error.contains("run 4 cannot take 5"), "{error}");
        assert_eq!(ended.restarts, 3);

        let status = &manager.status()["flaky"];
        assert_eq!(status.state, PipelineState::Escalated);
        assert_eq!(status.restarts, 3);
        assert_eq!(manager.restarts("flaky"), Some(3));
        assert!(status.last_error.as_deref().unwrap().contains("run 4"));

        let all = buffered(&mut events);
        assert_eq!(all.len(), 4, "{all:#?}");
        for (k, event) in all[..3].iter().enumerate() {
            let ManagerEvent::PipelineRestarted {
                pipeline,
                restarts,
                after,
                delay,
            } = event
            else {
                panic!("{event:?}")
            };
            assert_eq!(pipeline, "flaky");
            assert_eq!(*restarts, k as u32 + 1);
            assert_eq!(*delay, Duration::from_millis(100 * ((1 << k) >> 1)));
            assert_eq!(after.restarts, k as u32);
            let error = after.error.as_deref().unwrap();
            assert!(error.contains(&format!("run {} cannot", k + 1)), "{error}");
            // Each run balances on its own.
            let report = after.report.as_ref().unwrap();
            report.check_conservation().unwrap();
            assert!(report.delivered() <= 5, "{report:?}");
        }
        let ManagerEvent::Escalated {
            pipeline,
            restarts,
            last_error,
            last,
        } = &all[3]
        else {
            panic!("{:?}", all[3])
        };
        assert_eq!((pipeline.as_str(), *restarts), ("flaky", 3));
        assert_eq!(last_error, &ended.error);
        assert_eq!(last, &ended);
        last.report.as_ref().unwrap().check_conservation().unwrap();
    });
}

#[test]
fn a_pipeline_failing_3_times_within_its_intensity_completes() {
    paused(|rt| async move {
        let manager = PipelineManager::new();
        let mut events = manager.subscribe();
        let runs = Arc::new(AtomicU32::new(0));
        manager
            .supervise(
                "recovers",
                policy(RestartPolicy::transient(), 5),
                factory(&runs, |run| run <= 3),
                &rt,
            )
            .unwrap();
        let ended = manager.join("recovers").await.unwrap();
        assert_eq!(runs.load(SeqCst), 4);
        assert_eq!(ended.error, None);
        let report = ended.report.as_ref().unwrap();
        report.check_conservation().unwrap();
        assert_eq!(report.delivered(), ELEMENTS);
        assert_eq!(ended.restarts, 3);
        let status = &manager.status()["recovers"];
        assert_eq!(
            (status.state, status.restarts),
            (PipelineState::Completed, 3)
        );
        // The last failure stays visible.
        assert!(status.last_error.as_deref().unwrap().contains("run 3"));

        let all = buffered(&mut events);
        let restarted = all
            .iter()
            .filter(|e| matches!(e, ManagerEvent::PipelineRestarted { .. }))
            .count();
        assert_eq!(restarted, 3);
        assert!(matches!(
            all.last(),
            Some(ManagerEvent::PipelineEnded { pipeline, ended: e }) if pipeline == "recovers" && e == &ended
        ));
    });
}

#[test]
fn permanent_restarts_after_a_normal_end_and_temporary_never_restarts() {
    paused(|rt| async move {
        let manager = PipelineManager::new();
        let runs = Arc::new(AtomicU32::new(0));
        manager
            .supervise(
                "always",
                policy(RestartPolicy::permanent(), 2),
                factory(&runs, |_| false),
                &rt,
            )
            .unwrap();
        let ended = manager.join("always").await.unwrap();
        assert_eq!(runs.load(SeqCst), 3, "ended on its own 3 times: 2 restarts");
        assert_eq!(ended.error, None);
        assert_eq!(manager.status()["always"].state, PipelineState::Escalated);

        let once = Arc::new(AtomicU32::new(0));
        manager
            .supervise(
                "once",
                policy(RestartPolicy::temporary(), 5),
                factory(&once, |_| true),
                &rt,
            )
            .unwrap();
        let ended = manager.join("once").await.unwrap();
        assert_eq!(once.load(SeqCst), 1);
        assert!(ended.error.is_some());
        let status = &manager.status()["once"];
        assert_eq!((status.state, status.restarts), (PipelineState::Failed, 0));
    });
}

#[test]
fn a_stop_during_the_backoff_ends_the_pipeline_for_good() {
    paused(|rt| async move {
        let manager = PipelineManager::new();
        let runs = Arc::new(AtomicU32::new(0));
        let slow = RestartPolicy::transient()
            .intensity(RestartIntensity::new(5, Duration::from_secs(600)))
            .backoff(
                BackoffConfig::new(Duration::from_secs(60), Duration::from_secs(60)).jitter(0.0),
            );
        manager
            .supervise("slow", slow, factory(&runs, |_| true), &rt)
            .unwrap();
        // Run 1 fails, restart 1 is immediate, run 2 fails: a 60 s backoff.
        let start = tokio::time::Instant::now();
        while runs.load(SeqCst) < 2 || manager.status()["slow"].state != PipelineState::Restarting {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(manager.ended("slow").is_none(), "waiting to restart");
        manager
            .request_stop("slow", Duration::from_secs(1))
            .unwrap();
        let ended = manager.join("slow").await.unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the backoff was cut short"
        );
        assert_eq!(runs.load(SeqCst), 2, "no restart after the stop");
        assert!(ended.error.is_some());
        let status = &manager.status()["slow"];
        assert_eq!((status.state, status.restarts), (PipelineState::Stopped, 1));
        assert!(manager.remove("slow").is_some());
    });
}

#[test]
fn an_escalation_under_stop_all_stops_the_other_pipelines() {
    paused(|rt| async move {
        let manager = PipelineManager::new().on_escalation(OnEscalation::StopAll {
            deadline: Duration::from_secs(1),
        });
        let (ingress, flow) = Pipeline::ingress::<u64>(8);
        let delivered = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&delivered);
        manager
            .start(
                "steady",
                flow.for_each(move |_| {
                    seen.fetch_add(1, SeqCst);
                }),
                &rt,
            )
            .unwrap();
        for x in 0..3 {
            ingress.try_send(x).unwrap();
        }
        let runs = Arc::new(AtomicU32::new(0));
        manager
            .supervise(
                "doomed",
                policy(RestartPolicy::transient(), 0),
                factory(&runs, |_| true),
                &rt,
            )
            .unwrap();
        let doomed = manager.join("doomed").await.unwrap();
        assert!(doomed.error.is_some());
        let steady = manager.join("steady").await.unwrap();
        assert_eq!(steady.error, None);
        assert_eq!(steady.report.as_ref().unwrap().delivered(), 3);
        assert_eq!(delivered.load(SeqCst), 3);
        let status = manager.status();
        assert_eq!(status["doomed"].state, PipelineState::Escalated);
        assert_eq!(status["steady"].state, PipelineState::Stopped);
    });
}

#[test]
fn a_graph_is_managed_too_and_a_bad_policy_is_refused() {
    paused(|rt| async move {
        let manager = PipelineManager::new();
        let runs = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&runs);
        manager
            .supervise(
                "graph",
                policy(RestartPolicy::transient(), 2),
                move || {
                    let run = counter.fetch_add(1, SeqCst) + 1;
                    let mut g = Graph::new();
                    let numbers = g.source(Pipeline::from_iter(0..ELEMENTS));
                    let checked = g.flow(numbers, move |f| {
                        f.map(move |x| {
                            assert!(run > 1 || x != 3, "the first run fails");
                            x
                        })
                    });
                    g.sink(checked, |f| f.for_each(|_| {}));
                    Ok(g)
                },
                &rt,
            )
            .unwrap();
        let ended = manager.join("graph").await.unwrap();
        assert_eq!(ended.error, None);
        assert_eq!(ended.report.as_ref().unwrap().delivered(), ELEMENTS);
        assert_eq!(manager.restarts("graph"), Some(1));

        let bad = RestartPolicy::transient().intensity(RestartIntensity::new(1, Duration::ZERO));
        let err = manager
            .supervise("bad", bad, factory(&runs, |_| false), &rt)
            .unwrap_err();
        assert!(err.to_string().contains("within_ms"), "{err}");
        assert!(!manager.names().contains(&"bad".to_owned()));
    });
}
