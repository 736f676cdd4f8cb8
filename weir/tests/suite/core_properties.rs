//! Properties over random pipelines: random operators, capacities, batch limits,
//! element counts and placements. The output equals the sequential computation, no
//! edge ever holds more than its capacity (observed from inside each stage), and
//! conservation holds — also when the pipeline is aborted mid-flight.

use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use weir::prelude::*;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::builder().arbiters(2).build().unwrap())
}

#[derive(Debug, Clone)]
enum Op {
    Map(u64, u64),
    Filter(u64),
    Repeat(usize),
    Regroup(usize),
    Take(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..1000_u64, 0..1000_u64).prop_map(|(a, b)| Op::Map(a, b)),
        2 => (2..7_u64).prop_map(Op::Filter),
        1 => (0..4_usize).prop_map(Op::Repeat),
        1 => (1..9_usize).prop_map(Op::Regroup),
        1 => (0..3000_u64).prop_map(Op::Take),
    ]
}

fn reference(input: &[u64], ops: &[Op]) -> Vec<u64> {
    let mut xs = input.to_vec();
    for op in ops {
        xs = match *op {
            Op::Map(a, b) => xs
                .into_iter()
                .map(|x| x.wrapping_mul(a).wrapping_add(b))
                .collect(),
            Op::Filter(m) => xs.into_iter().filter(|x| x % m != 0).collect(),
            Op::Repeat(k) => xs
                .into_iter()
                .flat_map(|x| std::iter::repeat_n(x, k))
                .collect(),
            Op::Regroup(_) => xs,
            Op::Take(n) => xs.into_iter().take(n as usize).collect(),
        };
    }
    xs
}

fn build(input: Vec<u64>, ops: &[Op], capacities: &[usize]) -> Flow<u64> {
    let mut flow = Pipeline::from_iter(input);
    for (op, &cap) in ops.iter().zip(capacities.iter().cycle()) {
        flow = match *op {
            Op::Map(a, b) => flow
                .map(move |x| x.wrapping_mul(a).wrapping_add(b))
                .capacity(cap),
            Op::Filter(m) => flow.filter(move |x| x % m != 0).capacity(cap),
            Op::Repeat(k) => flow
                .flat_map(move |x| std::iter::repeat_n(x, k))
                .capacity(cap),
            Op::Regroup(n) => flow.chunks(n).capacity(cap).flat_map(|c| c).capacity(cap),
            Op::Take(n) => flow.take(n).capacity(cap),
        };
    }
    flow
}

fn placement() -> impl Strategy<Value = Placement> {
    prop_oneof![Just(Placement::Together), Just(Placement::Spread)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn output_equals_the_sequential_computation(
        input in prop::collection::vec(any::<u64>(), 0..2500),
        ops in prop::collection::vec(op(), 0..6),
        capacities in prop::collection::vec(1..48_usize, 1..8),
        sink_capacity in 1..48_usize,
        max_batch in 1..40_usize,
        placement in placement(),
    ) {
        let expected = reference(&input, &ops);
        let done = build(input, &ops, &capacities)
            .collect()
            .capacity(sink_capacity)
            .max_batch(max_batch)
            .placement(placement)
            .run(runtime())
            .unwrap()
            .wait()
            .unwrap();
        prop_assert_eq!(&done.output, &expected);
        prop_assert_eq!(&done.report.outcome, &Outcome::Completed);
        prop_assert!(done.report.check_conservation().is_ok(), "{}", done.report);
        for stage in &done.report.stages {
            prop_assert_eq!(stage.bound_violations, 0, "{:?}", stage);
            if !stage.is_source {
                prop_assert!(stage.peak_occupancy <= stage.capacity, "{:?}", stage);
            }
            prop_assert!(stage.largest_batch <= max_batch, "{:?}", stage);
        }
        if !ops.iter().any(|op| matches!(op, Op::Take(_))) {
            prop_assert_eq!(done.report.abandoned(), 0);
        }
    }

    #[test]
    fn abort_at_any_moment_conserves_every_element(
        ops in prop::collection::vec(op(), 1..5),
        capacities in prop::collection::vec(1..32_usize, 1..6),
        max_batch in 1..16_usize,
        placement in placement(),
        after_us in 0..3000_u64,
    ) {
        let running = build((0..200_000).collect(), &ops, &capacities)
            .fold(0_u64, |a, x| a.wrapping_add(x))
            .max_batch(max_batch)
            .placement(placement)
            .run(runtime())
            .unwrap();
        std::thread::sleep(Duration::from_micros(after_us));
        let done = futures::executor::block_on(running.abort()).unwrap();
        prop_assert!(done.report.check_conservation().is_ok(), "{}", done.report);
        for stage in &done.report.stages {
            prop_assert_eq!(stage.bound_violations, 0, "{:?}", stage);
        }
    }
}
