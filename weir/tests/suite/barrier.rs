//! The barrier junction (issue 5, item 5): step alignment on virtual time, the
//! timeout naming the late input, and the completion rules.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{collect, paused, take};
use futures::StreamExt as _;
use tokio::time::Instant;
use weir::prelude::*;

/// `n` elements, one every `every` of virtual time.
fn paced(n: u32, every: Duration) -> Flow<u32> {
    Pipeline::from_stream(futures::stream::iter(0..n).then(move |i| async move {
        tokio::time::sleep(every).await;
        i
    }))
}

/// (input or output, step, when, steps the barrier had released then)
type Seen = Arc<Mutex<Vec<(usize, u32, Instant, u64)>>>;

/// Three inputs at 1, 3 and 7 ms per element: every input's k-th element leaves
/// the barrier only once all three have reached step k, all three together, and
/// no input's k-th element arrives after the barrier released step k.
#[test]
fn no_input_runs_more_than_one_step_ahead() {
    const STEPS: u32 = 60;
    let paces = [1, 3, 7].map(Duration::from_millis);
    let arrived: Seen = Arc::default();
    let released: Seen = Arc::default();
    let barrier = Barrier::new();
    let stats = barrier.stats();
    let (a, r, s) = (Arc::clone(&arrived), Arc::clone(&released), stats.clone());
    let outputs = paused(move |rt| async move {
        let mut g = Graph::new();
        let inputs = [0, 1, 2].map(|i| {
            let (a, s) = (Arc::clone(&a), s.clone());
            let flow = paced(STEPS, paces[i]).inspect(move |k| {
                a.lock().unwrap().push((i, *k, Instant::now(), s.steps()));
            });
            g.source(flow)
        });
        let outs = g.barrier(inputs, barrier);
        let rxs = [0, 1, 2].map(|o| {
            let (r, s) = (Arc::clone(&r), s.clone());
            g.sink(outs[o], move |f| {
                f.inspect(move |k| r.lock().unwrap().push((o, *k, Instant::now(), s.steps())))
                    .collect()
            })
        });
        let done = g.run(&rt).unwrap().await.unwrap();
        done.report.check_conservation().unwrap();
        let mut outputs = Vec::new();
        for rx in rxs {
            outputs.push(rx.await.unwrap());
        }
        outputs
    });
    for out in &outputs {
        assert_eq!(*out, (0..STEPS).collect::<Vec<_>>());
    }
    assert_eq!(stats.steps(), u64::from(STEPS));
    let arrived = arrived.lock().unwrap();
    let released = released.lock().unwrap();
    let when = |log: &[(usize, u32, Instant, u64)], port: usize, k: u32| {
        log.iter()
            .find(|e| e.0 == port && e.1 == k)
            .map(|e| e.2)
            .unwrap()
    };
    for k in 0..STEPS {
        let last_arrival = (0..3).map(|i| when(&arrived, i, k)).max().unwrap();
        // The slowest input sets the pace.
        assert_eq!(last_arrival, when(&arrived, 2, k));
        for o in 0..3 {
            // Released together, once all three were there.
            assert_eq!(
                when(&released, o, k),
                last_arrival,
                "step {k} on output {o}"
            );
        }
    }
    // When input i's k-th element arrived, at most steps 0..k had been released:
    // the barrier never released a step some input had not reached.
    for &(i, k, _, steps) in arrived.iter() {
        assert!(
            steps <= u64::from(k),
            "input {i} step {k}: {steps} released"
        );
    }
    // When output o saw step k, step k was released on every output.
    for &(o, k, _, steps) in released.iter() {
        assert!(
            steps > u64::from(k),
            "output {o} step {k}: {steps} released"
        );
    }
}

/// An input that stops sending: the pipeline fails after the timeout, naming
/// the late input and the ones waiting.
#[test]
fn the_timeout_fails_the_pipeline_naming_the_late_input() {
    let (err, waited) = paused(|rt| async move {
        let mut g = Graph::new();
        let prices = g.source(paced(10, Duration::from_millis(1)));
        let stalled = futures::stream::iter([100_u32, 101]).chain(futures::stream::pending());
        let orders = g.source(Pipeline::from_stream(stalled));
        let outs = g.barrier(
            [prices, orders],
            Barrier::new()
                .timeout(Duration::from_secs(5))
                .input_names(["prices", "orders"]),
        );
        let _a = collect(&mut g, outs[0]);
        let _b = collect(&mut g, outs[1]);
        let started = Instant::now();
        let err = g.run(&rt).unwrap().await.unwrap_err();
        (err, started.elapsed())
    });
    let message = err.to_string();
    assert!(
        message.contains(
            "barrier timed out at step 2 after 5s: input 1 (\"orders\") late; input 0 (\"prices\") waiting"
        ),
        "{message}"
    );
    // The clock started when prices reached step 2 (3 ms in).
    assert!(
        waited >= Duration::from_secs(5) && waited <= Duration::from_millis(5_010),
        "{waited:?}"
    );
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert!(matches!(&report.outcome, Outcome::Failed { stage, .. } if stage == "barrier#2"));
}

/// Inputs of 5, 3 and 8 elements: three complete steps are released, then every
/// output ends; what the longer inputs had beyond step 3 is counted.
#[test]
fn uneven_ends_truncate_to_the_last_complete_step() {
    let rt = common::rt1();
    let mut g = Graph::new();
    let ins = [5_u32, 3, 8].map(|n| g.source(Pipeline::from_iter(0..n)));
    let outs = g.barrier(ins, Barrier::new());
    let rxs = outs.map(|o| collect(&mut g, o));
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.outcome, Outcome::Completed);
    for rx in rxs {
        assert_eq!(take(rx), [0, 1, 2]);
    }
    let barrier = done.report.stage("barrier#3").unwrap();
    assert_eq!(barrier.completed, 9);
    assert!(barrier.filtered <= 7, "{}", barrier.filtered);
}

/// With `UnevenEnd::Fail`, inputs that end at different steps fail the pipeline
/// naming them; inputs that end together complete.
#[test]
fn uneven_ends_can_fail_naming_the_inputs() {
    let rt = common::rt1();
    let run = |lengths: [u32; 2]| {
        let mut g = Graph::new();
        let ins = lengths.map(|n| g.source(Pipeline::from_iter(0..n)));
        let outs = g.barrier(ins, Barrier::new().on_uneven_end(UnevenEnd::Fail));
        let rxs = outs.map(|o| collect(&mut g, o));
        (g.run(&rt).unwrap().wait(), rxs)
    };
    let (err, _) = run([5, 3]);
    let err = err.unwrap_err();
    assert!(
        err.to_string().contains(
            "barrier inputs ended at different steps: input 1 ended after 3 steps, input 0 went on"
        ),
        "{err}"
    );
    err.report().unwrap().check_conservation().unwrap();
    let (done, rxs) = run([4, 4]);
    done.unwrap().report.check_conservation().unwrap();
    for rx in rxs {
        assert_eq!(take(rx), [0, 1, 2, 3]);
    }
}

/// A branch that cancels (take) ends the alignment: the other branches end too,
/// and the inputs are cancelled.
#[test]
fn a_cancelled_branch_ends_every_branch() {
    let rt = common::rt1();
    let mut g = Graph::new();
    let ins = [0, 1].map(|_| g.source(Pipeline::from_iter(0_u64..)));
    let [a, b] = g.barrier(ins, Barrier::new());
    let a = g.sink(a, |f| f.take(5).collect());
    let b = collect(&mut g, b);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(take(a), [0, 1, 2, 3, 4]);
    let b = take(b);
    assert!(
        b.len() >= 5 && b.iter().copied().eq(0..b.len() as u64),
        "{b:?}"
    );
}

/// Wrong settings are build errors naming the barrier.
#[test]
fn bad_barrier_settings_are_build_errors() {
    let rt = common::rt1();
    let mut g = Graph::new();
    let ins = [0, 1].map(|_| g.source(Pipeline::from_iter(0..3_u8)));
    let outs = g.barrier(ins, Barrier::new().input_names(["only one"]));
    for o in outs {
        collect(&mut g, o);
    }
    let err = g.run(&rt).unwrap_err().to_string();
    assert!(
        err.contains("barrier#2") && err.contains("1 names for 2 inputs"),
        "{err}"
    );
}
