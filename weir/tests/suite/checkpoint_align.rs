//! Barrier alignment over any interleaving of barriers and elements: for random
//! sources (how many, how long, how bursty, slowed or not), edge capacities,
//! checkpoint intervals and graph shapes (a merge, nested merges, a
//! partition-merge diamond), every checkpoint written holds, at the sink, exactly
//! the fold of the elements before the barrier at each source — recomputed from
//! the sources' positions in the same checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use weir::checkpoint::{CheckpointConfig, CheckpointStore, RestoreContext, StoreOptions};
use weir::{Flow, Graph, Outlet};

use super::checkpoint::{Counter, Slow, Totals, expected, rt, sum};

/// One source: its tag, how many elements, how many per step, and whether a slow
/// stage follows it.
#[derive(Debug, Clone)]
struct Source {
    end: u64,
    burst: usize,
    slowed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Every source into one merge.
    Merge,
    /// The first two sources merged, that merge merged with the rest.
    Nested,
    /// Every source merged, split by value parity into two branches (the odd one
    /// slowed), merged again.
    Diamond,
    /// Every source over one mux edge, split by the demux, sub-stream 0 slowed
    /// after it, merged again.
    Mux,
}

fn source(g: &mut Graph, tag: u64, s: &Source) -> Outlet<(u64, u64)> {
    let flow = Flow::from_source(Counter::new(tag, s.end, s.burst)).name(format!("src-{tag}"));
    let flow = if s.slowed {
        flow.via(Slow).name(format!("slow-{tag}"))
    } else {
        flow
    };
    g.source(flow)
}

fn build(
    dir: &std::path::Path,
    sources: &[Source],
    shape: Shape,
    capacity: usize,
    interval: Duration,
    out: Totals,
) -> Graph {
    let mut g = Graph::new();
    g.default_capacity(capacity);
    let outlets: Vec<Outlet<(u64, u64)>> = sources
        .iter()
        .enumerate()
        .map(|(t, s)| source(&mut g, t as u64, s))
        .collect();
    let merged = match shape {
        Shape::Merge => g.merge(outlets),
        Shape::Nested => {
            let mut rest = outlets.into_iter();
            let first: Vec<_> = rest.by_ref().take(2).collect();
            let inner = g.merge(first);
            g.merge(std::iter::once(inner).chain(rest))
        }
        Shape::Diamond => {
            let all = g.merge(outlets);
            let [even, odd] = g.partition_by_key(all, |x: &(u64, u64)| x.1 % 2);
            let odd = g.flow(odd, |f| f.via(Slow).name("odd"));
            g.merge([even, odd])
        }
        Shape::Mux => {
            let n = outlets.len();
            let muxed = g.mux_with(outlets, 16);
            let split: Vec<Outlet<(u64, u64)>> = match n {
                2 => g.demux::<_, 2>(muxed).into(),
                3 => g.demux::<_, 3>(muxed).into(),
                _ => g.demux::<_, 4>(muxed).into(),
            };
            let mut split = split.into_iter();
            let first = split.next().unwrap();
            let first = g.flow(first, |f| f.via(Slow).name("sub-0"));
            g.merge(std::iter::once(first).chain(split))
        }
    };
    drop(g.sink(merged, |f| {
        let (sink, rx) = sum(out);
        f.to(sink, rx).name("sum")
    }));
    g.checkpoints(
        CheckpointConfig::new(dir)
            .without_fsync()
            .retain(10_000)
            .interval(interval),
    );
    g
}

fn sources() -> impl Strategy<Value = Vec<Source>> {
    prop::collection::vec(
        (1u64..20_000, 1usize..64, any::<bool>()).prop_map(|(end, burst, slowed)| Source {
            end,
            burst,
            slowed,
        }),
        2..=4,
    )
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Merge),
        Just(Shape::Nested),
        Just(Shape::Diamond),
        Just(Shape::Mux)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn every_checkpoint_is_a_consistent_cut_for_any_interleaving(
        sources in sources(),
        shape in shape(),
        capacity in 1usize..256,
        interval_us in 200u64..3_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let out: Totals = Arc::default();
        let interval = Duration::from_micros(interval_us);
        let done = build(dir.path(), &sources, shape, capacity, interval, Arc::clone(&out))
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        let ends: Vec<(u64, u64)> = sources.iter().enumerate().map(|(t, s)| (t as u64, s.end)).collect();
        prop_assert_eq!(out.lock().unwrap().clone().unwrap(), expected(&ends));
        let ck = done.report.checkpoint.clone().unwrap();
        prop_assert_eq!(ck.failed, 0, "{:?}", ck);

        let store = CheckpointStore::open(dir.path(), StoreOptions::default()).unwrap();
        let manifests = store.list().unwrap();
        prop_assert!(!manifests.is_empty());
        let ctx = RestoreContext::default();
        for m in &manifests {
            let (_, data) = store.load(m.id).unwrap();
            let state = |name: &str| {
                data.stages
                    .iter()
                    .find(|s| s.stage == name)
                    .unwrap_or_else(|| panic!("checkpoint {} has no state for {name}", m.id))
                    .snapshot
                    .clone()
            };
            let at: Vec<(u64, u64)> = (0..sources.len() as u64)
                .map(|t| (t, state(&format!("src-{t}")).decode(1, &ctx).unwrap()))
                .collect();
            let got: BTreeMap<u64, (u64, u64)> = state("sum").decode(1, &ctx).unwrap();
            let mut want = expected(&at);
            want.retain(|_, v| v.0 > 0);
            prop_assert_eq!(got, want, "checkpoint {}: sources at {:?}", m.id, at);
        }
    }
}
