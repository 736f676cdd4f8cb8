//! The supervision event stream: typed events per stage, a failure published before
//! any stage stops, and a subscription that ends with the pipeline.

use weir::prelude::*;
use weir::{EventError, StopReason, SupervisionEvent};

fn drain(events: &mut weir::Events) -> Vec<SupervisionEvent> {
    let mut all = Vec::new();
    loop {
        match futures::executor::block_on(events.recv()) {
            Ok(event) => all.push(event),
            Err(EventError::Ended) => return all,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_completed_pipeline_reports_start_and_stop_of_every_stage() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let mut runnable = Pipeline::from_iter(0_u64..)
        .name("numbers")
        .map(|x| x * 2)
        .name("double")
        .take(10)
        .name("first-ten")
        .collect()
        .name("out");
    let mut events = runnable.subscribe();
    runnable.run(&rt).unwrap().wait().unwrap();
    let all = drain(&mut events);
    let started: Vec<&str> = all
        .iter()
        .filter(|e| matches!(e, SupervisionEvent::StageStarted { .. }))
        .map(SupervisionEvent::stage)
        .collect();
    assert_eq!(started.len(), 4);
    let stopped = |name: &str| {
        all.iter().find_map(|e| match e {
            SupervisionEvent::StageStopped { stage, reason, .. } if stage == name => Some(*reason),
            _ => None,
        })
    };
    assert_eq!(stopped("first-ten"), Some(StopReason::Completed));
    assert_eq!(stopped("out"), Some(StopReason::Completed));
    // `take` finished early: the stages before it were cancelled.
    assert_eq!(stopped("double"), Some(StopReason::Cancelled));
    assert_eq!(stopped("numbers"), Some(StopReason::Cancelled));
}

#[test]
fn a_failure_is_published_with_its_element_before_any_stage_stops() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let mut runnable = Pipeline::from_iter(0..1_000_u64)
        .map(|x| {
            if x == 42 {
                panic!("cannot handle {x}")
            } else {
                x
            }
        })
        .name("boom")
        .for_each(drop);
    let mut events = runnable.subscribe();
    let err = runnable.run(&rt).unwrap().wait().unwrap_err();
    assert!(matches!(err, PipelineError::StageFailed { .. }));
    let all = drain(&mut events);
    let failed = all
        .iter()
        .position(|e| matches!(e, SupervisionEvent::StageFailed { .. }))
        .expect("a StageFailed event");
    // The failure comes before the failing stage stops and before any stage is
    // aborted because of it (the source may have completed normally earlier).
    let first_consequence = all
        .iter()
        .position(|e| {
            matches!(e, SupervisionEvent::StageStopped { stage, reason, .. }
                if stage == "boom" || *reason == StopReason::Aborted)
        })
        .expect("StageStopped events");
    assert!(failed < first_consequence, "{all:#?}");
    match &all[failed] {
        SupervisionEvent::StageFailed {
            stage,
            class,
            error,
            element_index,
            attempt,
            ..
        } => {
            assert_eq!(stage, "boom");
            assert_eq!(*class, weir::ErrorClass::Panic);
            assert!(error.contains("cannot handle 42"));
            assert_eq!(*element_index, Some(42));
            assert_eq!(*attempt, 1);
        }
        other => unreachable!("{other:?}"),
    }
    let reasons: Vec<(String, StopReason)> = all
        .iter()
        .filter_map(|e| match e {
            SupervisionEvent::StageStopped { stage, reason, .. } => Some((stage.clone(), *reason)),
            _ => None,
        })
        .collect();
    assert!(
        reasons.contains(&("boom".to_owned(), StopReason::Failed)),
        "{reasons:?}"
    );
    assert_eq!(reasons.len(), 3);
}

#[test]
fn subscribing_after_the_end_yields_ended() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let running = Pipeline::from_iter(0..3_u64).collect().run(&rt).unwrap();
    let controller = running.controller();
    running.wait().unwrap();
    let mut late = controller.subscribe();
    assert_eq!(
        futures::executor::block_on(late.recv()),
        Err(EventError::Ended)
    );
}

#[test]
fn events_serialise_for_logs() {
    let event = SupervisionEvent::StageStopped {
        pipeline: "p".into(),
        stage: "s".into(),
        reason: StopReason::Completed,
        ran_for: std::time::Duration::from_millis(5),
    };
    let json = serde_json::to_string(&event).unwrap();
    assert!(json.contains(r#""event":"stage_stopped""#), "{json}");
    assert!(json.contains(r#""reason":"completed""#), "{json}");
}
