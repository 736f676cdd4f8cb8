//! Invalid pipelines are rejected at build time with an error naming the stage;
//! nothing panics on bad input.

use weir::prelude::*;

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

fn err<R: Send + 'static>(runnable: Runnable<R>) -> BuildError {
    runnable.run(&rt()).map(drop).unwrap_err()
}

#[test]
fn zero_capacity_names_the_stage() {
    let e = err(Pipeline::from_iter(0..3)
        .map(|x| x)
        .name("double")
        .capacity(0)
        .for_each(drop));
    assert_eq!(
        e,
        BuildError::ZeroCapacity {
            stage: "double".into()
        }
    );
    assert!(e.to_string().contains("`double`"));
    let e = err(Pipeline::from_iter(0..3)
        .for_each(drop)
        .name("sink")
        .capacity(0));
    assert_eq!(
        e,
        BuildError::ZeroCapacity {
            stage: "sink".into()
        }
    );
    let e = err(Pipeline::from_iter(0..3)
        .map(|x| x)
        .for_each(drop)
        .default_capacity(0));
    assert_eq!(
        e,
        BuildError::ZeroCapacity {
            stage: "map#1".into()
        }
    );
}

#[test]
fn capacity_on_a_source_is_rejected() {
    let e = err(Pipeline::from_iter(0..3)
        .name("src")
        .capacity(5)
        .for_each(drop));
    assert_eq!(
        e,
        BuildError::CapacityOnSource {
            stage: "src".into()
        }
    );
}

#[test]
fn duplicate_and_empty_names_are_rejected() {
    let e = err(Pipeline::from_iter(0..3)
        .map(|x| x)
        .name("x")
        .map(|x| x)
        .name("x")
        .for_each(drop));
    assert_eq!(
        e,
        BuildError::DuplicateStageName {
            name: "x".into(),
            first: 1,
            second: 2
        }
    );
    let e = err(Pipeline::from_iter(0..3).map(|x| x).name("").for_each(drop));
    assert_eq!(e, BuildError::EmptyStageName { index: 1 });
}

#[test]
fn invalid_operator_arguments_name_the_stage() {
    let e = err(Pipeline::from_iter(0..3)
        .chunks(0)
        .name("batcher")
        .for_each(drop));
    assert!(
        matches!(&e, BuildError::InvalidArgument { stage, message } if stage == "batcher" && message.contains("chunks(0)")),
        "{e:?}"
    );
    let e = err(Pipeline::from_iter(0..3)
        .map_async(0, |x| async move { x })
        .for_each(drop));
    assert!(
        matches!(&e, BuildError::InvalidArgument { stage, .. } if stage == "map_async#1"),
        "{e:?}"
    );
    let (_ingress, flow) = Pipeline::ingress::<u8>(0);
    let e = err(flow.for_each(drop));
    assert!(
        matches!(&e, BuildError::InvalidArgument { stage, .. } if stage == "ingress#0"),
        "{e:?}"
    );
    let (runnable, _egress) = Pipeline::from_iter(0..3).egress(0);
    assert!(matches!(err(runnable), BuildError::InvalidArgument { .. }));
}

#[test]
fn batch_limit_and_placement_are_checked() {
    let e = err(Pipeline::from_iter(0..3)
        .for_each(drop)
        .named("p")
        .max_batch(0));
    assert_eq!(
        e,
        BuildError::ZeroBatchLimit {
            pipeline: "p".into()
        }
    );
    let e = err(Pipeline::from_iter(0..3)
        .map(|x| x)
        .name("pinned")
        .on_arbiter(3)
        .for_each(drop));
    assert_eq!(
        e,
        BuildError::NoSuchArbiter {
            stage: "pinned".into(),
            arbiter: 3,
            available: 1
        }
    );
}

#[test]
fn a_valid_pipeline_still_runs_after_rejected_ones() {
    let rt = rt();
    assert!(
        Pipeline::from_iter(0..3)
            .chunks(0)
            .collect()
            .run(&rt)
            .is_err()
    );
    let done = Pipeline::from_iter(0..3)
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, [0, 1, 2]);
}
