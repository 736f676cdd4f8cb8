//! Flow control: `buffer` with each overflow policy on a plain edge (exact drop
//! counts), `conflate` and `batch` behind a stalled consumer, and properties:
//! conservation and the buffer's bound.
//!
//! Every test stalls the consumer deterministically: the sink's future waits on a
//! semaphore the test fills. With one arbiter, capacity `C` on every edge and the
//! sink stalled on element 0, a dropping buffer sends `C - 1` more elements (it
//! keeps one place of the sink's edge free so that it keeps taking input), holds
//! `N` and drops the rest; at the end of input it sends one more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use weir::prelude::*;
use weir::sink::Egress;
use weir::{PipelineError, StageReport, StageStats};

use crate::common::rt1;

/// Edge capacity of every stage in these tests.
const C: usize = 4;
/// Buffer capacity.
const N: usize = 3;
/// Elements sent.
const TOTAL: usize = 40;

/// A sink whose deliveries wait for permits, recording what it delivered.
struct Stalled {
    permits: Arc<tokio::sync::Semaphore>,
    started: Arc<AtomicUsize>,
    delivered: Arc<Mutex<Vec<usize>>>,
}

impl Stalled {
    fn new() -> Self {
        Stalled {
            permits: Arc::new(tokio::sync::Semaphore::new(0)),
            started: Arc::new(AtomicUsize::new(0)),
            delivered: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn sink(&self, flow: Flow<usize>) -> Runnable<()> {
        let (p, s, d) = (
            Arc::clone(&self.permits),
            Arc::clone(&self.started),
            Arc::clone(&self.delivered),
        );
        flow.for_each_async(move |x| {
            let (p, s, d) = (Arc::clone(&p), Arc::clone(&s), Arc::clone(&d));
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                p.acquire().await.unwrap().forget();
                d.lock().unwrap().push(x);
            }
        })
        .default_capacity(C)
    }

    fn release(&self) {
        self.permits.add_permits(1 << 20);
    }
}

fn eventually(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out");
        std::thread::yield_now();
    }
}

/// Runs ingress → `middle` → stalled sink: element 0 first, and once the sink
/// waits on it, the rest, then the end of input; returns what was delivered
/// once the sink is released, with the report.
fn run_stalled(
    middle: impl FnOnce(Flow<usize>) -> Flow<usize>,
    settled: Option<fn(&StageStats) -> bool>,
) -> (Vec<usize>, Result<Report, PipelineError>, Stalled) {
    let rt = rt1();
    let stalled = Stalled::new();
    let (ingress, flow) = Pipeline::ingress::<usize>(TOTAL);
    let running = stalled.sink(middle(flow)).run(&rt).unwrap();
    ingress.try_send(0).unwrap();
    eventually(|| stalled.started.load(Ordering::SeqCst) == 1);
    for x in 1..TOTAL {
        // A failing stage closes the ingress: what is refused is not admitted.
        let _ = ingress.try_send(x);
    }
    drop(ingress);
    if let Some(settled) = settled {
        // The middle stage takes everything while the sink is still stalled on
        // element 0: that is what a non-blocking stage is for.
        eventually(|| settled(&running.stats().stages[1]));
        assert_eq!(stalled.started.load(Ordering::SeqCst), 1, "still stalled");
    }
    stalled.release();
    let result = running.wait().map(|done| done.report);
    let delivered = stalled.delivered.lock().unwrap().clone();
    (delivered, result, stalled)
}

/// A dropping buffer has taken all `TOTAL`: sent `C + 1`, holds `N - 1`, dropped
/// the rest.
fn dropped_the_rest(s: &StageStats) -> bool {
    s.completed + s.filtered + s.dead_lettered == (TOTAL - N + 1) as u64
}

fn buffer_stage(report: &Report) -> &StageReport {
    report.stage("buffer#1").expect("a buffer stage")
}

#[test]
fn drop_newest_keeps_the_first_elements_and_counts_every_drop() {
    let (delivered, report, _) = run_stalled(
        |f| f.buffer(N, Overflow::DropNewest),
        Some(dropped_the_rest),
    );
    let report = report.unwrap();
    report.check_conservation().unwrap();
    // 0, then C - 1 sent before the sink's edge kept its last place, then N held.
    let kept = C + N;
    assert_eq!(delivered, (0..kept).collect::<Vec<_>>());
    let b = buffer_stage(&report);
    assert_eq!(b.filtered, (TOTAL - kept) as u64, "every drop counted");
    assert_eq!(b.completed, kept as u64);
    assert_eq!(report.delivered(), kept as u64);
}

#[test]
fn drop_oldest_keeps_the_newest_elements_and_counts_every_drop() {
    let (delivered, report, _) = run_stalled(
        |f| f.buffer(N, Overflow::DropOldest),
        Some(dropped_the_rest),
    );
    let report = report.unwrap();
    report.check_conservation().unwrap();
    let mut expected: Vec<usize> = (0..C).collect();
    expected.extend(TOTAL - N..TOTAL);
    assert_eq!(delivered, expected);
    let b = buffer_stage(&report);
    assert_eq!(b.filtered, (TOTAL - C - N) as u64);
    assert_eq!(report.delivered(), (C + N) as u64);
}

#[test]
fn backpressure_drops_nothing() {
    let (delivered, report, _) = run_stalled(|f| f.buffer(N, Overflow::Backpressure), None);
    let report = report.unwrap();
    report.check_conservation().unwrap();
    assert_eq!(delivered, (0..TOTAL).collect::<Vec<_>>());
    assert_eq!(buffer_stage(&report).filtered, 0);
}

#[test]
fn fail_names_the_stage_and_the_limit() {
    // Released only once the buffer has failed: released earlier, the sink could
    // drain the buffer before it overflows and deliver more than `C + N`.
    let (delivered, result, _) = run_stalled(
        |f| f.buffer(N, Overflow::Fail).name("slack"),
        Some(|s: &StageStats| s.failed == 1),
    );
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("slack"), "{text}");
    assert!(text.contains("buffer full (3 elements"), "{text}");
    match &err {
        PipelineError::StageFailed { stage, failure, .. } => {
            assert_eq!(stage, "slack");
            assert_eq!(failure.class(), ErrorClass::ResourceExhausted);
        }
        other => panic!("expected StageFailed, got {other:?}"),
    }
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert_eq!(
        report.stage("slack").unwrap().failed,
        1,
        "the element that did not fit"
    );
    assert!(delivered.len() <= C + N);
}

#[test]
fn dead_lettered_drops_are_in_the_queue_and_counted_as_dead_letters() {
    let dlq = MemoryDlq::new(100);
    let d = dlq.clone();
    let (delivered, report, _) = run_stalled(
        move |f| f.buffer_dead_lettering(N, Overflow::DropNewest, d),
        Some(dropped_the_rest),
    );
    let report = report.unwrap();
    report.check_conservation().unwrap();
    let kept = C + N;
    assert_eq!(delivered, (0..kept).collect::<Vec<_>>());
    let b = buffer_stage(&report);
    assert_eq!((b.filtered, b.dead_lettered), (0, (TOTAL - kept) as u64));
    let letters = dlq.drain();
    let dropped: Vec<usize> = letters.iter().map(|l| l.element).collect();
    assert_eq!(dropped, (kept..TOTAL).collect::<Vec<_>>());
    assert!(letters.iter().all(|l| l.stage == "buffer#1"));
}

#[test]
fn conflate_never_blocks_and_combines_into_one_summary() {
    let rt = rt1();
    let stalled = Stalled::new();
    let (ingress, flow) = Pipeline::ingress::<usize>(TOTAL);
    let (p, s, d) = (
        Arc::clone(&stalled.permits),
        Arc::clone(&stalled.started),
        Arc::clone(&stalled.delivered),
    );
    let running = flow
        .conflate(
            |x| vec![x],
            |mut v, x| {
                v.push(x);
                v
            },
        )
        .for_each_async(move |v: Vec<usize>| {
            let (p, s, d) = (Arc::clone(&p), Arc::clone(&s), Arc::clone(&d));
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                p.acquire().await.unwrap().forget();
                d.lock().unwrap().push(v.len());
            }
        })
        .default_capacity(C)
        .run(&rt)
        .unwrap();
    ingress.try_send(0).unwrap();
    eventually(|| stalled.started.load(Ordering::SeqCst) == 1);
    for x in 1..TOTAL {
        ingress.try_send(x).unwrap();
    }
    drop(ingress);
    eventually(|| {
        let s = &running.stats().stages[1];
        s.completed == (C + 1) as u64 && s.completed + s.filtered == TOTAL as u64
    });
    assert_eq!(stalled.started.load(Ordering::SeqCst), 1, "still stalled");
    stalled.release();
    let report = running.wait().unwrap().report;
    report.check_conservation().unwrap();
    // [0], then C - 1 singles, then everything else in one summary.
    let sizes = stalled.delivered.lock().unwrap().clone();
    let mut expected = vec![1; C];
    expected.push(TOTAL - C);
    assert_eq!(sizes, expected);
    let c = report.stage("conflate#1").unwrap();
    assert_eq!(
        c.filtered,
        (TOTAL - C - 1) as u64,
        "combined elements counted"
    );
    assert_eq!(c.completed, (C + 1) as u64);
}

#[test]
fn batch_bounds_each_summary_and_keeps_order() {
    let rt = rt1();
    let (runnable, mut egress): (_, Egress<Vec<u32>>) = Pipeline::from_iter(0..500_u32)
        .batch(
            7,
            |x| vec![x],
            |mut v, x| {
                v.push(x);
                v
            },
        )
        .egress(2);
    let running = runnable.default_capacity(2).run(&rt).unwrap();
    let mut got = Vec::new();
    while let Some(v) = futures::executor::block_on(egress.recv()) {
        assert!(!v.is_empty() && v.len() <= 7, "{v:?}");
        got.push(v);
    }
    let report = running.wait().unwrap().report;
    report.check_conservation().unwrap();
    assert_eq!(got.concat(), (0..500).collect::<Vec<_>>());
    let b = report.stage("batch#1").unwrap();
    assert_eq!(b.completed, got.len() as u64);
    assert_eq!(b.filtered, 500 - got.len() as u64);
}

#[test]
fn map_async_unordered_conserves_with_a_stalled_sink() {
    let (delivered, report, _) = run_stalled(
        |f| {
            f.map_async_unordered(3, |x| async move {
                tokio::task::yield_now().await;
                x
            })
        },
        None,
    );
    let report = report.unwrap();
    report.check_conservation().unwrap();
    let mut sorted = delivered;
    sorted.sort_unstable();
    assert_eq!(sorted, (0..TOTAL).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the policy, capacity and edge sizes: the report conserves, the
    /// drops are exactly what did not arrive, the output keeps the input order,
    /// and the buffer never held more than its capacity.
    #[test]
    fn buffers_conserve_and_keep_order(
        total in 0_usize..300,
        capacity in 1_usize..8,
        edge in 1_usize..6,
        policy in prop_oneof![
            Just(Overflow::Backpressure),
            Just(Overflow::DropNewest),
            Just(Overflow::DropOldest),
        ],
    ) {
        let rt = rt1();
        let done = Pipeline::from_iter(0..total)
            .buffer(capacity, policy)
            .map_async(2, |x| async move {
                tokio::task::yield_now().await;
                x
            })
            .collect()
            .default_capacity(edge)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        done.report.check_conservation().unwrap();
        let b = done.report.stage("buffer#1").unwrap();
        prop_assert_eq!(b.filtered as usize + done.output.len(), total);
        prop_assert!(done.output.windows(2).all(|w| w[0] < w[1]));
        if policy == Overflow::Backpressure {
            prop_assert_eq!(done.output.len(), total);
        }
        prop_assert_eq!(b.abandoned, 0);
    }
}
