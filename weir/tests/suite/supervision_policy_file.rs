//! A policy file applied to a whole pipeline with `policies(&config)`: `[default]`
//! reaches every stage the file does not name, `[stages.NAME]` its stage, the
//! strategy applies over the graph, and what cannot apply is a build error naming
//! the stage.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weir::prelude::*;
use weir::supervisor::policy::PolicyConfig;

use crate::supervision_strategy::Pass;

/// A map that panics on the first attempt of every 100th element.
fn flaky() -> impl FnMut(u64) -> u64 + Send + 'static {
    let tried = Arc::new(Mutex::new(HashSet::new()));
    move |x| {
        if x % 100 == 0 && tried.lock().unwrap().insert(x) {
            panic!("first attempt of {x}");
        }
        x * 2
    }
}

const RETRY_PANICS: &str = r#"
    [default]
    actions = { panic = "retry", permanent = "escalate", on_exhausted = "escalate" }
    backoff = { initial_ms = 0, max_ms = 0 }
"#;

#[test]
fn default_policy_reaches_a_stage_the_code_did_not_supervise() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let config = PolicyConfig::from_toml_str(RETRY_PANICS).unwrap();
    let done = Pipeline::from_iter(0..1_000_u64)
        .map(flaky())
        .name("double")
        .collect()
        .policies(&config)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, (0..1_000).map(|x| x * 2).collect::<Vec<_>>());
    let double = done.report.stage("double").unwrap();
    assert_eq!(double.retries, 10, "one retry per 100th element");
    assert_eq!(double.failed, 0);
    done.report.check_conservation().unwrap();
}

#[test]
fn without_the_file_the_same_pipeline_fails_naming_the_stage() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let err = Pipeline::from_iter(0..1_000_u64)
        .map(flaky())
        .name("double")
        .collect()
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(err.to_string().contains("double"), "{err}");
}

#[test]
fn a_stage_table_overrides_the_default_and_the_file_overrides_the_code() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let config = PolicyConfig::from_toml_str(
        r#"
        [default]
        actions = { panic = "escalate", permanent = "escalate", on_exhausted = "escalate" }

        [stages.double]
        actions = { panic = "dead_letter" }
        "#,
    )
    .unwrap();
    let dlq = MemoryDlq::new(100);
    // The code says retry; the file says dead-letter, into the code's queue.
    let code_policy = SupervisionPolicy::default().on_exhausted(Action::Escalate);
    let done = Pipeline::from_iter(0..1_000_u64)
        .supervise(Supervision::new(code_policy).dead_letters(dlq.clone()))
        .map(flaky())
        .name("double")
        .collect()
        .policies(&config)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    let dead: Vec<u64> = dlq.drain().into_iter().map(|l| l.element).collect();
    assert_eq!(dead, (0..1_000).step_by(100).collect::<Vec<_>>());
    assert_eq!(done.output.len(), 990);
    assert_eq!(done.report.stage("double").unwrap().dead_lettered, 10);
    done.report.check_conservation().unwrap();
}

#[test]
fn a_file_naming_a_stage_that_does_not_exist_is_a_build_error_with_a_suggestion() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let config = PolicyConfig::from_toml_str(
        r#"
        [stages.doubel]
        max_attempts = 2
        "#,
    )
    .unwrap();
    let err = Pipeline::from_iter(0..10_u64)
        .map(|x| x * 2)
        .name("double")
        .collect()
        .policies(&config)
        .run(&rt)
        .unwrap_err();
    assert_eq!(
        err,
        BuildError::UnknownPolicyStage {
            name: "doubel".into(),
            suggestion: Some("double".into()),
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("`doubel`") && message.contains("did you mean `double`"),
        "{message}"
    );
}

#[test]
fn a_dead_lettering_policy_on_a_stage_without_a_queue_is_a_build_error_naming_it() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    // The default `on_exhausted` dead-letters.
    let config = PolicyConfig::from_toml_str("[default]\nmax_attempts = 2\n").unwrap();
    let err = Pipeline::from_iter(0..10_u64)
        .map(|x| x * 2)
        .name("double")
        .collect()
        .name("out")
        .policies(&config)
        .run(&rt)
        .unwrap_err();
    match &err {
        BuildError::PolicyMismatch {
            stage,
            table,
            message,
        } => {
            assert_eq!((stage.as_str(), table.as_str()), ("double", "default"));
            assert!(message.contains("actions.on_exhausted"), "{message}");
            assert!(message.contains("dead-letter queue"), "{message}");
        }
        other => panic!("expected a policy mismatch, got {other:?}"),
    }
}

#[test]
fn a_stage_table_asking_an_unsupervisable_stage_to_retry_is_a_build_error() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let config = PolicyConfig::from_toml_str(
        r#"
        [default]
        actions = { permanent = "escalate", on_exhausted = "escalate" }
        [stages.batches]
        actions = { panic = "retry" }
        "#,
    )
    .unwrap();
    let build = || {
        Pipeline::from_iter(0..10_u64)
            .chunks(3)
            .name("batches")
            .collect()
    };
    let err = build().policies(&config).run(&rt).unwrap_err();
    assert!(
        matches!(&err, BuildError::PolicyMismatch { stage, table, .. } if stage == "batches" && table == "stages.batches"),
        "{err:?}"
    );
    assert!(err.to_string().contains("cannot be supervised"), "{err}");
    // Under `[default]` alone the stage keeps failing the pipeline on a failure,
    // as without a file: the run is fine.
    let config = PolicyConfig::from_toml_str(
        "[default]\nactions = { permanent = \"escalate\", on_exhausted = \"escalate\" }\n",
    )
    .unwrap();
    let done = build().policies(&config).run(&rt).unwrap().wait().unwrap();
    assert_eq!(done.output.len(), 4);
}

#[test]
fn a_custom_operator_needs_cloneable_to_be_supervised_by_a_file() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let config = PolicyConfig::from_toml_str(RETRY_PANICS).unwrap();
    let err = Pipeline::from_iter(0..10_u64)
        .via_factory(|| Pass { fail_on: None })
        .name("pass")
        .collect()
        .policies(&config)
        .run(&rt)
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::PolicyMismatch { stage, .. } if stage == "pass"),
        "{err:?}"
    );
    assert!(err.to_string().contains("Flow::cloneable"), "{err}");
    let done = Pipeline::from_iter(0..10_u64)
        .cloneable()
        .via_factory(|| Pass { fail_on: None })
        .name("pass")
        .collect()
        .policies(&config)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, (0..10).collect::<Vec<_>>());
}

/// A factory of `Pass` that counts its builds in `count`; `fail` makes the stage
/// fail once on element 5.
fn counted(
    count: &Arc<AtomicU64>,
    fail: Option<&Arc<AtomicBool>>,
) -> impl Fn() -> Pass + Send + 'static {
    let count = Arc::clone(count);
    let fail = fail.cloned();
    move || {
        count.fetch_add(1, Ordering::SeqCst);
        Pass {
            fail_on: fail.clone().map(|f| (5, f)),
        }
    }
}

fn strategy_file(strategy: &str) -> PolicyConfig {
    PolicyConfig::from_toml_str(&format!(
        r#"
        strategy = "{strategy}"
        [default]
        actions = {{ panic = "restart", permanent = "escalate", on_exhausted = "escalate" }}
        restart_backoff = {{ initial_ms = 0, max_ms = 0 }}
        "#
    ))
    .unwrap()
}

/// source → a → b (fails once) → c → collect, under the file's strategy: the
/// builds of a, b, c and the restarts the report counts for each.
fn linear(strategy: &str) -> ([u64; 3], [u64; 3]) {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let counts: [Arc<AtomicU64>; 3] = Default::default();
    let failed = Arc::new(AtomicBool::new(false));
    let done = Pipeline::from_iter(0..200_u64)
        .cloneable()
        .via_factory(counted(&counts[0], None))
        .name("a")
        .cloneable()
        .via_factory(counted(&counts[1], Some(&failed)))
        .name("b")
        .cloneable()
        .via_factory(counted(&counts[2], None))
        .name("c")
        .collect()
        .default_capacity(1)
        .policies(&strategy_file(strategy))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output, (0..200).collect::<Vec<_>>());
    done.report.check_conservation().unwrap();
    let restarts = ["a", "b", "c"].map(|s| done.report.stage(s).unwrap().restarts);
    (counts.map(|c| c.load(Ordering::SeqCst)), restarts)
}

#[test]
fn strategies_from_the_file_on_a_linear_pipeline() {
    assert_eq!(linear("one_for_one"), ([1, 2, 1], [0, 1, 0]));
    assert_eq!(linear("rest_for_one"), ([1, 2, 2], [0, 1, 1]));
    assert_eq!(linear("one_for_all"), ([2, 2, 2], [1, 1, 1]));
}

/// source → up → broadcast → [a (fails once) → collect], [b → collect], under the
/// file's strategy: the builds of up, a, b and the restarts the report counts.
fn branched(strategy: &str) -> ([u64; 3], [u64; 3]) {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let counts: [Arc<AtomicU64>; 3] = Default::default();
    let failed = Arc::new(AtomicBool::new(false));
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..100_u64));
    let up = g.flow(src, |f| {
        f.cloneable()
            .via_factory(counted(&counts[0], None))
            .name("up")
    });
    let [left, right] = g.broadcast(up, Broadcast::new(2));
    let a = g.flow(left, |f| {
        f.cloneable()
            .via_factory(counted(&counts[1], Some(&failed)))
            .name("a")
    });
    let b = g.flow(right, |f| {
        f.cloneable()
            .via_factory(counted(&counts[2], None))
            .name("b")
    });
    let out_a = g.sink(a, |f| f.collect().name("out-a"));
    let out_b = g.sink(b, |f| f.collect().name("out-b"));
    g.policies(&strategy_file(strategy)).default_capacity(1);
    let done = g.run(&rt).unwrap().wait().unwrap();
    let block = futures::executor::block_on;
    assert_eq!(block(out_a).unwrap(), (0..100).collect::<Vec<_>>());
    assert_eq!(block(out_b).unwrap(), (0..100).collect::<Vec<_>>());
    done.report.check_conservation().unwrap();
    let restarts = ["up", "a", "b"].map(|s| done.report.stage(s).unwrap().restarts);
    (counts.map(|c| c.load(Ordering::SeqCst)), restarts)
}

#[test]
fn strategies_from_the_file_on_a_graph_follow_its_topology() {
    assert_eq!(branched("one_for_one"), ([1, 2, 1], [0, 1, 0]));
    // `a` and what is downstream of it (its sink): not `up`, not the other branch.
    assert_eq!(branched("rest_for_one"), ([1, 2, 1], [0, 1, 0]));
    assert_eq!(branched("one_for_all"), ([2, 2, 2], [1, 1, 1]));
}

#[test]
fn graph_strategy_set_in_code_follows_the_topology_too() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let counts: [Arc<AtomicU64>; 3] = Default::default();
    let failed = Arc::new(AtomicBool::new(false));
    let policy = || {
        Supervision::new(SupervisionPolicy::default().restart_backoff(BackoffConfig::none()))
            .dead_letters(MemoryDlq::new(1))
    };
    let mut g = Graph::new();
    let src = g.source(Pipeline::from_iter(0..100_u64));
    let up = g.flow(src, |f| {
        f.supervise(policy())
            .via_factory(counted(&counts[0], Some(&failed)))
            .name("up")
    });
    let [left, right] = g.broadcast(up, Broadcast::new(2));
    let a = g.flow(left, |f| {
        f.supervise(policy())
            .via_factory(counted(&counts[1], None))
            .name("a")
    });
    let b = g.flow(right, |f| {
        f.supervise(policy())
            .via_factory(counted(&counts[2], None))
            .name("b")
    });
    let out_a = g.sink(a, |f| f.collect());
    let out_b = g.sink(b, |f| f.collect());
    g.strategy(weir::supervisor::policy::RestartStrategy::RestForOne)
        .default_capacity(1);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let block = futures::executor::block_on;
    assert_eq!(block(out_a).unwrap().len(), 100);
    assert_eq!(block(out_b).unwrap().len(), 100);
    // `up` fails: both branches are downstream of it.
    assert_eq!(counts.map(|c| c.load(Ordering::SeqCst)), [2, 2, 2]);
}

const ESCALATE_PANICS: &str = r#"
    [default]
    actions = { panic = "escalate", permanent = "escalate", on_exhausted = "escalate" }
"#;

#[test]
fn a_reloaded_file_is_checked_like_the_first_and_a_rejected_one_changes_nothing() {
    use weir::reconfig::ConfigHandle;
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let handle = ConfigHandle::<PolicyConfig>::new();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let running = flow
        .map(flaky())
        .name("double")
        .collect()
        .policies(&PolicyConfig::from_toml_str(ESCALATE_PANICS).unwrap())
        .policies_handle(&handle)
        .run(&rt)
        .unwrap();
    let file = |text: &str| PolicyConfig::from_toml_str(text).unwrap();
    // A name the pipeline lacks.
    let err = handle
        .reconfigure_blocking(file("[stages.doubel]\nmax_attempts = 2\n"))
        .unwrap_err();
    assert!(err.to_string().contains("did you mean `double`"), "{err}");
    // Dead letters, but the stage has no queue.
    let err = handle
        .reconfigure_blocking(file("[default]\nmax_attempts = 2\n"))
        .unwrap_err();
    assert!(err.to_string().contains("dead-letter queue"), "{err}");
    // An element timeout on a synchronous stage.
    let err = handle
        .reconfigure_blocking(file(&format!("{RETRY_PANICS}element_timeout_ms = 100\n")))
        .unwrap_err();
    assert!(err.to_string().contains("element_timeout"), "{err}");
    // The check alone, as a watcher runs it before applying anything.
    assert!(
        handle
            .check(&file("[stages.nope]\nmax_attempts = 1\n"))
            .is_err()
    );
    assert!(handle.check(&file(RETRY_PANICS)).is_ok());
    let applied = handle.reconfigure_blocking(file(RETRY_PANICS)).unwrap();
    assert_eq!(applied.generation, 1);
    futures::executor::block_on(async {
        for x in 0..1_000 {
            ingress.send(x).await.unwrap();
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    assert_eq!(done.output, (0..1_000).map(|x| x * 2).collect::<Vec<_>>());
    let double = done.report.stage("double").unwrap();
    assert_eq!((double.retries, double.config_rejected), (10, 0));
    done.report.check_conservation().unwrap();
}

#[test]
fn a_config_watcher_reloads_the_policy_file_into_the_running_pipeline() {
    use weir::reconfig::ConfigHandle;
    use weir::reconfig_file::ConfigWatcher;
    let dir = std::env::temp_dir().join(format!("weir-policy-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, ESCALATE_PANICS).unwrap();
    let handle = ConfigHandle::<PolicyConfig>::new();
    let mut watcher = ConfigWatcher::<PolicyConfig>::new(&path).bind(&handle, Clone::clone);
    let initial = watcher.load().unwrap();
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let (ingress, flow) = Pipeline::ingress::<u64>(64);
    let running = flow
        .map(flaky())
        .name("double")
        .collect()
        .policies(&initial)
        .policies_handle(&handle)
        .run(&rt)
        .unwrap();
    // A typo in a stage name: rejected before anything is applied.
    std::fs::write(&path, "[stages.dubble]\nmax_attempts = 1\n").unwrap();
    let err = watcher.reload_blocking().unwrap_err();
    assert!(err.to_string().contains("did you mean `double`"), "{err}");
    // A value out of range: rejected with its key.
    std::fs::write(&path, "[default.backoff]\nmultiplier = 0.5\n").unwrap();
    let err = watcher.reload_blocking().unwrap_err();
    assert!(err.to_string().contains("multiplier"), "{err}");
    std::fs::write(&path, RETRY_PANICS).unwrap();
    let reload = watcher.reload_blocking().unwrap();
    assert_eq!(reload.applied.len(), 1);
    futures::executor::block_on(async {
        for x in 0..500 {
            ingress.send(x).await.unwrap();
        }
    });
    drop(ingress);
    let done = running.wait().unwrap();
    assert_eq!(done.output.len(), 500);
    assert_eq!(done.report.stage("double").unwrap().retries, 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_code_policy_the_file_replaces_is_checked_against_the_file() {
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    // `Supervision::default()` dead-letters, and this stage has no queue: alone it
    // is a build error naming the stage ...
    let build = || {
        Pipeline::from_iter(0..1_000_u64)
            .supervise(Supervision::default())
            .map(flaky())
            .name("double")
            .collect()
    };
    let err = build().run(&rt).unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidArgument { stage, message } if stage == "double" && message.contains("dead-letter queue")),
        "{err:?}"
    );
    // ... but the file decides the policy, and its policy needs no queue.
    let config = PolicyConfig::from_toml_str(RETRY_PANICS).unwrap();
    let done = build().policies(&config).run(&rt).unwrap().wait().unwrap();
    assert_eq!(done.output.len(), 1_000);
    assert_eq!(done.report.stage("double").unwrap().retries, 10);
}

/// A pool's table reaches every replica; under `restart = "permanent"` a replica
/// whose policy escalates is restarted (fresh from the pool's factory, the element
/// tried again) within the restart intensity, instead of failing the pipeline.
#[test]
fn a_pool_restarts_an_escalating_replica_under_a_permanent_policy() {
    let run = |restart: &str| {
        let rt = Runtime::builder().arbiters(2).build().unwrap();
        let config = PolicyConfig::from_toml_str(&format!(
            r#"
            [default]
            actions = {{ permanent = "escalate", on_exhausted = "escalate" }}
            [stages.square]
            restart = "{restart}"
            actions = {{ panic = "escalate" }}
            intensity = {{ max_restarts = 3, within_ms = 60_000 }}
            restart_backoff = {{ initial_ms = 0, max_ms = 0 }}
            "#
        ))
        .unwrap();
        let builds = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let (count, once) = (Arc::clone(&builds), Arc::clone(&failed));
        let mut g = Graph::new();
        let src = g.source(Pipeline::from_iter(0..200_u64));
        let pool = Pool::new(2).ordered().name("square").cloneable();
        let out = g.pool_map(src, pool, move || {
            count.fetch_add(1, Ordering::SeqCst);
            let once = Arc::clone(&once);
            move |x: u64| {
                if x == 77 && !once.swap(true, Ordering::SeqCst) {
                    panic!("replica crashed on {x}");
                }
                x * x
            }
        });
        let out = g.sink(out, |f| f.collect());
        g.policies(&config);
        let result = g.run(&rt).unwrap().wait();
        (
            result,
            futures::executor::block_on(out),
            builds.load(Ordering::SeqCst),
        )
    };
    let (done, out, builds) = run("permanent");
    let done = done.unwrap();
    assert_eq!(out.unwrap(), (0..200).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(done.report.restarts(), 1);
    assert_eq!(builds, 3, "two replicas, one rebuilt");
    done.report.check_conservation().unwrap();
    let (failed, _, _) = run("transient");
    assert!(failed.unwrap_err().to_string().contains("square-"));
}
