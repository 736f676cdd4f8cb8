//! The fair merge's whole-queue turns, end to end: for any number of inputs, input
//! lengths and capacities, every element arrives once, each input keeps its order,
//! conservation is exact, every input stays within its capacity, and a short input
//! is served while long ones run.

use crate::common;

use common::*;
use proptest::prelude::*;
use weir::prelude::*;

/// Input `i` sends `(i << 32) + 0 .. (i << 32) + len`.
fn base(i: usize) -> u64 {
    (i as u64) << 32
}

fn merge_run(lengths: &[u64], merge_capacity: usize, sink_capacity: usize) {
    let rt = rt1();
    let mut g = Graph::new();
    let outlets: Vec<Outlet<u64>> = lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| g.source(Pipeline::from_iter(base(i)..base(i) + len)))
        .collect();
    let merged = g.merge(outlets);
    g.name_stage(merged, "merge")
        .capacity_of(merged, merge_capacity);
    let out = g.sink(merged, |f| f.collect().capacity(sink_capacity));
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let out = take(out);
    let total: u64 = lengths.iter().sum();
    assert_eq!(out.len() as u64, total, "every element once");
    for (i, &len) in lengths.iter().enumerate() {
        let mine: Vec<u64> = out
            .iter()
            .copied()
            .filter(|&x| x >> 32 == i as u64)
            .collect();
        assert_eq!(
            mine,
            (base(i)..base(i) + len).collect::<Vec<_>>(),
            "input {i}"
        );
    }
    let merge = done.report.stage("merge").unwrap();
    assert_eq!((merge.input, merge.completed), (total, total));
    assert!(merge.peak_occupancy <= merge_capacity, "{merge:?}");
    assert_eq!(merge.bound_violations, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn merge_turns_deliver_everything_in_order_within_bounds(
        lengths in prop::collection::vec(0_u64..3_000, 1..6),
        merge_capacity in 1_usize..80,
        sink_capacity in 1_usize..80,
    ) {
        merge_run(&lengths, merge_capacity, sink_capacity);
    }
}

#[test]
fn a_short_input_is_served_within_a_turn_of_each_long_one() {
    // Three long inputs and a short one, small capacities: each turn hands over at
    // most one queue (16), so the short input's 10 elements come out within the
    // first few turns, long before the long inputs end.
    let rt = rt1();
    let mut g = Graph::new();
    let mut outlets: Vec<Outlet<u64>> = (0..3)
        .map(|i| g.source(Pipeline::from_iter(base(i)..base(i) + 200_000)))
        .collect();
    outlets.push(g.source(Pipeline::from_iter(base(3)..base(3) + 10)));
    let merged = g.merge(outlets);
    g.capacity_of(merged, 16);
    let out = g.sink(merged, |f| f.take(2_000).collect().capacity(16));
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let out = take(out);
    let short = out.iter().filter(|&&x| x >> 32 == 3).count();
    assert_eq!(
        short, 10,
        "the short input was served among the first 2 000"
    );
    for i in 0..3 {
        assert!(
            out.iter().any(|&x| x >> 32 == i),
            "long input {i} had turns too"
        );
    }
}
