//! Feedback edges: cycles that complete (with nothing abandoned), overflow that
//! drops and counts exactly (or fails naming the stage), the shapes the builder
//! rejects, and a property over random inputs, capacities and placements.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::common;

use common::*;
use weir::junction::{Merge, MergePrioritized, Overflow};
use weir::prelude::*;

/// An element on the Collatz cycle: (id, value, steps taken).
type Item = (u32, u64, u32);

fn collatz(x: u64) -> u64 {
    if x.is_multiple_of(2) {
        x / 2
    } else {
        3 * x + 1
    }
}

/// Steps from `n` (> 1) to 1.
fn stopping_time(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = collatz(n);
        steps += 1;
    }
    steps
}

/// The head of the cycle: input 0 takes the feedback, input 1 the numbers.
#[derive(Debug, Clone, Copy)]
enum Head {
    /// `MergePrioritized` with `Priority::Strict`: the feedback first.
    Strict,
    /// A fair `Merge`.
    Fair,
}

/// numbers → head → step → split(done → results, again → loop → head).
fn collatz_graph(
    g: &mut Graph,
    numbers: Outlet<Item>,
    head: Head,
    feedback: Feedback<Item>,
) -> weir::OutputReceiver<Vec<Item>> {
    let ports = match head {
        Head::Strict => g.junction(MergePrioritized::new(Priority::Strict), 2, 1),
        Head::Fair => g.junction(Merge::new(), 2, 1),
    };
    g.name_stage(ports.outlets[0], "head");
    g.connect(numbers, ports.inlets[1]);
    let stepped = g.flow(ports.outlets[0], |f| {
        f.map(|(id, x, k): Item| (id, collatz(x), k + 1))
            .name("step")
    });
    let [done, again] = g.partition(stepped, |&(_, x, _): &Item| usize::from(x != 1));
    g.name_stage(done, "split");
    g.feedback(again, ports.inlets[0], feedback.name("loop"));
    g.sink(done, |f| f.collect().name("results"))
}

fn items(values: &[u64]) -> Vec<Item> {
    (0..).zip(values).map(|(id, &x)| (id, x, 0)).collect()
}

fn expected(values: &[u64]) -> Vec<Item> {
    (0..)
        .zip(values)
        .map(|(id, &x)| (id, 1, stopping_time(x)))
        .collect()
}

fn sorted(mut v: Vec<Item>) -> Vec<Item> {
    v.sort_unstable();
    v
}

#[test]
fn an_iterate_graph_completes_with_exact_results_and_nothing_abandoned() {
    let values: Vec<u64> = (2..=200).collect();
    let fed_back: u64 = values
        .iter()
        .map(|&x| u64::from(stopping_time(x)) - 1)
        .sum();
    for (head, arbiters, placement) in [
        (Head::Strict, 1, Placement::Together),
        (Head::Fair, 1, Placement::Together),
        (Head::Strict, 3, Placement::Spread),
        (Head::Fair, 3, Placement::Spread),
    ] {
        let rt = Runtime::builder().arbiters(arbiters).build().unwrap();
        let mut g = Graph::new();
        g.placement(placement).default_capacity(16);
        let numbers = g.source(Pipeline::from_iter(items(&values)).name("numbers"));
        // As many places as elements: nothing can overflow.
        let out = collatz_graph(&mut g, numbers, head, Feedback::buffer(values.len()));
        let done = g.run(&rt).unwrap().wait().unwrap();
        let case = format!("{head:?} on {arbiters} arbiter(s)");
        assert_eq!(done.report.outcome, Outcome::Completed, "{case}");
        assert_eq!(sorted(take(out)), expected(&values), "{case}");
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.abandoned(), 0, "{case}\n{}", done.report);
        let lp = done.report.stage("loop").unwrap();
        assert_eq!((lp.input, lp.completed), (fed_back, fed_back), "{case}");
        let port = &lp.outputs[0];
        assert_eq!(
            (port.pushed, port.emitted, port.dropped),
            (fed_back, fed_back, 0),
            "{case}"
        );
        let head = done.report.stage("head").unwrap();
        assert_eq!(head.input, values.len() as u64 + fed_back, "{case}");
    }
}

/// A step that holds each element for 3 ms (an async call): the cycle's edges are
/// quiet for longer than the two reads of a check are apart, so only the step's
/// own `held` count shows the elements in it. The cycle must not end early.
#[test]
fn elements_held_by_an_async_step_keep_the_cycle_open() {
    let rt = rt1();
    let values = [3, 6, 7, 9];
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(items(&values)));
    let head = g.junction(MergePrioritized::new(Priority::Strict), 2, 1);
    g.connect(numbers, head.inlets[1]);
    let stepped = g.flow(head.outlets[0], |f| {
        f.map_async(2, |(id, x, k): Item| async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            (id, collatz(x), k + 1)
        })
        .name("slow-step")
    });
    let [done, again] = g.partition(stepped, |&(_, x, _): &Item| usize::from(x != 1));
    g.feedback(again, head.inlets[0], Feedback::buffer(8).name("loop"));
    let out = collect(&mut g, done);
    let done = g.run(&rt).unwrap().wait().unwrap();
    assert_eq!(sorted(take(out)), expected(&values));
    assert_eq!(done.report.abandoned(), 0, "{}", done.report);
    done.report.check_conservation().unwrap();
}

#[test]
fn a_cycle_with_no_input_at_all_completes() {
    let rt = rt1();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(Vec::<Item>::new()));
    let out = collatz_graph(&mut g, numbers, Head::Strict, Feedback::buffer(4));
    let done = g.run(&rt).unwrap().wait().unwrap();
    assert_eq!(take(out), Vec::<Item>::new());
    assert_eq!(done.report.outcome, Outcome::Completed);
    done.report.check_conservation().unwrap();
}

#[test]
fn an_empty_cycle_waits_while_its_outside_input_is_open() {
    let rt = rt1();
    let (ingress, flow) = Pipeline::ingress::<Item>(4);
    let mut g = Graph::new();
    let numbers = g.source(flow.name("numbers"));
    let out = collatz_graph(&mut g, numbers, Head::Strict, Feedback::buffer(4));
    let running = g.run(&rt).unwrap();
    let control = running.controller();
    futures::executor::block_on(ingress.send((0, 27, 0))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while control.stats().stage("results").unwrap().completed < 1 {
        assert!(Instant::now() < deadline, "27 never reached 1");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The cycle is empty; the edge checks every 1-20 ms and must keep waiting.
    std::thread::sleep(Duration::from_millis(80));
    assert!(
        !control.is_finished(),
        "the cycle ended with its input open"
    );
    futures::executor::block_on(ingress.send((1, 97, 0))).unwrap();
    drop(ingress);
    let done = running.wait().unwrap();
    assert_eq!(
        sorted(take(out)),
        vec![(0, 1, stopping_time(27)), (1, 1, stopping_time(97))]
    );
    assert_eq!(done.report.outcome, Outcome::Completed);
    assert_eq!(done.report.abandoned(), 0);
    done.report.check_conservation().unwrap();
}

#[test]
fn a_cycle_cut_inside_ends_through_the_feedback_input() {
    let rt = rt1();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..1_000_u64));
    let head = g.junction(MergePrioritized::new(Priority::Strict), 2, 1);
    g.connect(numbers, head.inlets[1]);
    // Each element goes round until it is a multiple of 3; `take` cuts the cycle.
    let stepped = g.flow(head.outlets[0], |f| f.map(|x| x + 1).take(50).name("cut"));
    let [done, again] = g.partition(stepped, |x: &u64| usize::from(!x.is_multiple_of(3)));
    g.feedback(again, head.inlets[0], Feedback::buffer(64).name("loop"));
    let out = collect(&mut g, done);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let cut = done.report.stage("cut").unwrap();
    assert_eq!(cut.produced, 50);
    let out = take(out);
    assert!(!out.is_empty() && out.len() <= 50, "{}", out.len());
    assert!(out.iter().all(|x| x.is_multiple_of(3)));
}

const DEPTH: u32 = 10;

/// One root element; every element below `DEPTH` comes back as two children, so
/// a full run delivers 2^DEPTH leaves. The cycle is one FIFO ring (the head
/// prefers the feedback), so it works breadth first: 2^(DEPTH-1) elements would
/// have to circulate at once, far more than the ring's capacities (1 each) and
/// the feedback buffer (1) hold. Drops are certain, and each dropped element at
/// depth k costs exactly 2^(DEPTH-k) leaves.
fn doubling_graph(g: &mut Graph, feedback: Feedback<u32>) -> weir::OutputReceiver<Vec<u32>> {
    g.default_capacity(1);
    let root = g.source(Pipeline::from_iter([0_u32]));
    let head = g.junction(MergePrioritized::new(Priority::Strict), 2, 1);
    g.connect(root, head.inlets[1]);
    let grown = g.flow(head.outlets[0], |f| f.flat_map(|k: u32| [k + 1, k + 1]));
    let [leaves, again] = g.partition(grown, |&k: &u32| usize::from(k < DEPTH));
    g.feedback(again, head.inlets[0], feedback.name("loop"));
    collect(g, leaves)
}

#[test]
fn a_full_feedback_buffer_drops_and_counts_exactly() {
    for overflow in [Overflow::DropOldest, Overflow::DropNewest] {
        let rt = rt1();
        let dlq = MemoryDlq::<u32>::new(100_000);
        let mut g = Graph::new();
        let feedback = Feedback::buffer(1)
            .overflow(overflow)
            .dead_letters(dlq.clone());
        let leaves = doubling_graph(&mut g, feedback);
        let done = g.run(&rt).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.outcome, Outcome::Completed, "{overflow:?}");
        assert_eq!(done.report.abandoned(), 0, "{overflow:?}");
        let leaves = take(leaves);
        assert!(leaves.iter().all(|&k| k == DEPTH));
        let letters = dlq.drain();
        let lp = done.report.stage("loop").unwrap();
        let port = &lp.outputs[0];
        assert!(
            port.dropped > 0,
            "{overflow:?}: the ring cannot hold the tree"
        );
        assert_eq!(letters.len() as u64, port.dropped, "{overflow:?}");
        assert_eq!(port.pushed, lp.input, "{overflow:?}");
        assert_eq!(port.emitted + port.dropped, lp.input, "{overflow:?}");
        // Every leaf is delivered or accounted for by exactly one dropped ancestor.
        let lost: u64 = letters.iter().map(|l| 1_u64 << (DEPTH - l.element)).sum();
        assert_eq!(leaves.len() as u64 + lost, 1 << DEPTH, "{overflow:?}");
        let mut positions: Vec<u64> = letters.iter().map(|l| l.element_index).collect();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(
            positions.len(),
            letters.len(),
            "{overflow:?}: one letter per position"
        );
        assert!(positions.iter().all(|&p| p < lp.input));
        assert!(letters.iter().all(|l| l.stage == "loop"
            && l.class == ErrorClass::ResourceExhausted
            && l.error.contains("feedback buffer full")));
    }
}

#[test]
fn overflow_fail_fails_the_pipeline_naming_the_feedback_stage() {
    let rt = rt1();
    let mut g = Graph::new();
    // `Fail` is the default.
    let _leaves = doubling_graph(&mut g, Feedback::buffer(1));
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    let PipelineError::StageFailed {
        stage,
        failure,
        report,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(stage, "loop");
    assert_eq!(failure.class(), ErrorClass::ResourceExhausted);
    assert!(
        err.to_string().starts_with(
            "stage `loop` failed: resource exhausted: feedback buffer full: 1 elements wait"
        ),
        "{err}"
    );
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            stage: "loop".into(),
            error: failure.to_string()
        }
    );
    report.check_conservation().unwrap();
    let lp = report.stage("loop").unwrap();
    assert_eq!((lp.failed, lp.outputs[0].dropped), (1, 0));
}

fn build_error(g: Graph) -> String {
    g.run(&rt1()).unwrap_err().to_string()
}

#[test]
fn a_cycle_without_a_feedback_edge_is_rejected_beside_one_with() {
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(items(&[5, 6])));
    let head = g.junction(MergePrioritized::new(Priority::Strict), 2, 1);
    g.name_stage(head.outlets[0], "head");
    g.connect(numbers, head.inlets[1]);
    let [done, again] = g.partition(head.outlets[0], |&(_, x, _): &Item| usize::from(x != 1));
    g.feedback(again, head.inlets[0], Feedback::buffer(4).name("loop"));
    // A second cycle, closed with a plain connect.
    let merge = g.junction(Merge::<Item>::new(), 2, 1);
    g.name_stage(merge.outlets[0], "loop-merge");
    g.connect(done, merge.inlets[0]);
    let inc = g.flow(merge.outlets[0], |f| f.map(|x| x).name("same"));
    let [back, out] = g.broadcast(inc, Broadcast::new(2));
    g.name_stage(back, "loop-split");
    g.connect(back, merge.inlets[1]);
    g.sink(out, |f| f.collect());
    assert_eq!(
        build_error(g),
        "the graph has a cycle through `loop-merge` → `same` → `loop-split` → `loop-merge`"
    );
}

#[test]
fn a_feedback_buffer_of_zero_is_rejected_naming_the_stage() {
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(items(&[5])));
    let _out = collatz_graph(&mut g, numbers, Head::Strict, Feedback::buffer(0));
    assert_eq!(
        build_error(g),
        "stage `loop`: a feedback buffer needs a capacity of at least 1 (it holds what the \
         cycle's head cannot take yet)"
    );
}

#[test]
fn a_feedback_edge_that_closes_no_cycle_is_rejected() {
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..3_u64));
    let b = g.source(Pipeline::from_iter(0..3_u64));
    let head = g.junction(Merge::<u64>::new(), 2, 1);
    g.name_stage(head.outlets[0], "head");
    g.connect(a, head.inlets[1]);
    g.feedback(b, head.inlets[0], Feedback::buffer(4).name("loop"));
    g.sink(head.outlets[0], |f| f.collect());
    assert_eq!(
        build_error(g),
        "stage `loop`: the feedback edge into `head` closes no cycle: nothing leads from \
         `head` back to it; connect the ports directly"
    );
}

#[test]
fn a_feedback_edge_into_another_graph_is_rejected() {
    let mut other = Graph::new();
    let foreign = other.junction(Merge::<u64>::new(), 1, 1);
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..3_u64));
    g.feedback(a, foreign.inlets[0], Feedback::buffer(4));
    assert!(build_error(g).ends_with("belongs to another graph"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    /// Whatever the inputs, capacities, head, drop policy and placement: the cycle
    /// completes, nothing is abandoned, every number is delivered with its exact
    /// stopping time or dead-lettered (once), and the drop counts match.
    #[test]
    fn random_cycles_complete_and_conserve(
        values in proptest::collection::vec(2_u64..300, 0..30),
        buffer in 1_usize..40,
        edge_capacity in 1_usize..16,
        strict in any::<bool>(),
        drop_oldest in any::<bool>(),
        spread in any::<bool>(),
    ) {
        let rt = Runtime::builder().arbiters(if spread { 2 } else { 1 }).build().unwrap();
        let dlq = MemoryDlq::<Item>::new(100_000);
        let mut g = Graph::new();
        g.default_capacity(edge_capacity);
        if spread {
            g.placement(Placement::Spread);
        }
        let overflow = if drop_oldest { Overflow::DropOldest } else { Overflow::DropNewest };
        let numbers = g.source(Pipeline::from_iter(items(&values)));
        let head = if strict { Head::Strict } else { Head::Fair };
        let feedback = Feedback::buffer(buffer).overflow(overflow).dead_letters(dlq.clone());
        let out = collatz_graph(&mut g, numbers, head, feedback);
        let done = g.run(&rt).unwrap().wait().unwrap();
        prop_assert_eq!(&done.report.outcome, &Outcome::Completed);
        prop_assert!(done.report.check_conservation().is_ok(), "{}", done.report);
        prop_assert_eq!(done.report.abandoned(), 0);
        let delivered = sorted(take(out));
        let letters = dlq.drain();
        let lp = done.report.stage("loop").unwrap();
        prop_assert_eq!(letters.len() as u64, lp.outputs[0].dropped);
        let want = expected(&values);
        for item in &delivered {
            prop_assert_eq!(item, &want[item.0 as usize]);
        }
        let mut ids: Vec<u32> = delivered.iter().map(|i| i.0).collect();
        ids.extend(letters.iter().map(|l| l.element.0));
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..values.len() as u32).collect::<Vec<_>>());
    }
}
