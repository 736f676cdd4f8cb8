//! Checkpoints and the replicas of a pool: a keyed pool restored into another
//! replica count, and a supervised restart of a stateful stage rolled back to the
//! last checkpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::Graph;
use weir::checkpoint::CheckpointConfig;
use weir::prelude::FlowExt;

use super::checkpoint::rt;

/// Per key: (elements, sum of values).
type KeyTotals = BTreeMap<u64, (u64, u64)>;

/// The [`KeyTotals`] of `(i % keys, i)` for `i` in `0..n`.
fn keyed_totals(n: u64, keys: u64) -> KeyTotals {
    let mut t = BTreeMap::new();
    for i in 0..n {
        let e: &mut (u64, u64) = t.entry(i % keys).or_default();
        e.0 += 1;
        e.1 += i;
    }
    t
}

/// A keyed pool of `replicas` running a per-key count and sum (keyed fold: every
/// key it holds is emitted at the end) into a sink that fails on a key emitted
/// twice (a replica that held keys it does not own).
fn keyed_pool_graph(
    dir: &std::path::Path,
    n: u64,
    replicas: usize,
) -> (Graph, weir::OutputReceiver<KeyTotals>) {
    use weir::Pipeline;
    use weir::prelude::KeyedExt;
    let mut g = Graph::new();
    let src = g.source(
        Pipeline::replayable(|from| from..)
            .take(n)
            .map(|i| (i % 64, i))
            .name("numbers"),
    );
    let pool = weir::Pool::new(replicas)
        .by_key(|x: &(u64, u64)| x.0)
        .name("count");
    let counted = g.pool_flow(src, pool, |f| {
        f.key_by(|x: &(u64, u64)| x.0)
            .fold((0u64, 0u64), |s: &mut (u64, u64), (_, v)| {
                s.0 += 1;
                s.1 += v;
            })
    });
    let out = g.sink(counted, |f| {
        f.fold(BTreeMap::new(), |mut m, (k, s)| {
            assert!(m.insert(k, s).is_none(), "key {k} emitted twice");
            m
        })
        .name("totals")
    });
    g.checkpoints(CheckpointConfig::new(dir).without_fsync());
    (g, out)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else if e.file_name() != "chk.lock" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Checkpointed with a keyed pool of 4 and aborted; restored once with 2 replicas
/// and once with 8: each run's per-key totals are exact (no key's state lost,
/// none counted twice).
#[test]
fn a_keyed_pool_checkpointed_with_4_replicas_restores_into_2_and_8_exactly() {
    let n = 3_000_000;
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a");
    let rt = rt();
    let (g, _) = keyed_pool_graph(&first, n, 4);
    let running = g.run(&rt).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let info = futures::executor::block_on(running.checkpoint()).unwrap();
    for k in 0..4 {
        let name = format!("count-{k}");
        assert!(info.stages.iter().any(|(s, _)| *s == name), "{info:?}");
    }
    let aborted = futures::executor::block_on(running.abort());
    drop(aborted);
    let second = dir.path().join("b");
    copy_dir(&first, &second);

    for (dir, replicas) in [(&first, 2), (&second, 8)] {
        let (g, out) = keyed_pool_graph(dir, n, replicas);
        let done = g.run(&rt).unwrap().wait().unwrap();
        let ck = done.report.checkpoint.clone().unwrap();
        assert_eq!(
            ck.restored_from,
            Some(info.id),
            "{replicas} replicas: {ck:?}"
        );
        let numbers = done.report.stages.iter().find(|s| s.name == "numbers");
        assert!(
            numbers.is_some_and(|s| s.produced < n),
            "{replicas} replicas: the source resumed from the start, the test proves nothing"
        );
        let totals = futures::executor::block_on(out).unwrap();
        assert_eq!(totals, keyed_totals(n, 64), "{replicas} replicas");
    }
}

/// A job whose keyed count panics once, on element `fault`, under a policy that
/// restarts the stage: `(key, count)` of `i % 16` for `i` in `0..n`, each key
/// emitted at the end into `out`.
fn restarting_job(
    dir: &std::path::Path,
    n: u64,
    fault: u64,
    fired: &Arc<std::sync::atomic::AtomicBool>,
    on_loss: weir::checkpoint::OnStateLoss,
    out: &Arc<Mutex<BTreeMap<u64, u64>>>,
) -> weir::Runnable<()> {
    use std::sync::atomic::Ordering::SeqCst;
    use weir::Pipeline;
    use weir::prelude::KeyedExt;
    use weir::supervisor::ErrorClass;
    use weir::supervisor::policy::{Action, BackoffConfig, SupervisionPolicy};
    let fired = Arc::clone(fired);
    let out = Arc::clone(out);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Panic, Action::Restart)
        .action(ErrorClass::Permanent, Action::Escalate)
        .on_exhausted(Action::Escalate)
        .restart_backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
        ));
    Pipeline::replayable(|from| from..)
        .take(n)
        .supervise(weir::Supervision::new(policy))
        .key_by(|i: &u64| i % 16)
        .fold(0u64, move |c: &mut u64, i| {
            if i == fault && !fired.swap(true, SeqCst) {
                panic!("injected fault on {i}");
            }
            *c += 1;
        })
        .name("count")
        .for_each(move |(k, c)| {
            out.lock().unwrap().insert(k, c);
        })
        .checkpoints(
            CheckpointConfig::new(dir)
                .without_fsync()
                .interval(Duration::from_millis(2))
                .on_state_loss(on_loss),
        )
}

/// A supervised restart of a stateful stage in a checkpointed pipeline rolls the
/// pipeline back (the default): it stops without a final checkpoint, and the
/// manager's restart restores the last checkpoint — every key's count is exact.
/// With `OnStateLoss::StartEmpty` the stage goes on empty: the loss is counted
/// and the counts fall short.
#[test]
fn a_restarted_stateful_stage_rolls_the_pipeline_back_to_its_checkpoint() {
    use weir::checkpoint::OnStateLoss;
    use weir::manager::{PipelineManager, RestartPolicy};
    let n = 400_000;
    let fault = 300_000;
    let expected: BTreeMap<u64, u64> = (0..16).map(|k| (k, n / 16)).collect();
    let rt = rt();

    let dir = tempfile::tempdir().unwrap();
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let manager = PipelineManager::new();
    let (path, f, o) = (
        dir.path().to_path_buf(),
        Arc::clone(&fired),
        Arc::clone(&out),
    );
    manager
        .supervise(
            "counts",
            RestartPolicy::transient(),
            move || {
                Ok(restarting_job(
                    &path,
                    n,
                    fault,
                    &f,
                    OnStateLoss::RollBack,
                    &o,
                ))
            },
            &rt,
        )
        .unwrap();
    let ended = futures::executor::block_on(manager.join("counts")).unwrap();
    assert!(
        fired.load(std::sync::atomic::Ordering::SeqCst),
        "the fault never fired"
    );
    assert_eq!(ended.error, None, "{ended:?}");
    assert_eq!(ended.restarts, 1, "one roll-back: {ended:?}");
    let report = ended.report.unwrap();
    let ck = report.checkpoint.clone().unwrap();
    assert!(ck.restored_from.is_some(), "the restart restored: {ck:?}");
    assert_eq!(*out.lock().unwrap(), expected);

    let dir = tempfile::tempdir().unwrap();
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let done = restarting_job(dir.path(), n, fault, &fired, OnStateLoss::StartEmpty, &out)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    let count = done
        .report
        .stages
        .iter()
        .find(|s| s.name == "count")
        .unwrap();
    assert_eq!(count.restarts, 1);
    assert!(count.state_lost > 0, "{count:?}");
    let total: u64 = out.lock().unwrap().values().sum();
    assert!(total < n, "the restarted stage went on empty: {total}");
}
