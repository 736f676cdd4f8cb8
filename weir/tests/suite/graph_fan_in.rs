//! Fan-in junctions: merge, merge_prioritized, concat, interleave, zip, zip_with.
//! Order per input, exact counts, completion, backpressure per input.

use crate::common;

use common::*;
use weir::prelude::*;

#[test]
fn merge_delivers_everything_keeps_each_inputs_order_and_completes_when_all_end() {
    let rt = rt1();
    let mut g = Graph::new();
    // Inputs of very different lengths: the merge ends only after the longest.
    let inputs = [(0_u64, 10_u64), (1_000, 5_000), (100_000, 100_001)];
    let outlets = inputs.map(|(from, to)| g.source(Pipeline::from_iter(from..to)));
    let merged = g.merge(outlets);
    g.name_stage(merged, "merge");
    let out = collect(&mut g, merged);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    let out = take(out);
    assert_eq!(out.len(), 10 + 4_000 + 1);
    for (from, to) in inputs {
        let part: Vec<u64> = out
            .iter()
            .copied()
            .filter(|x| (from..to).contains(x))
            .collect();
        assert_eq!(
            part,
            (from..to).collect::<Vec<_>>(),
            "input {from}..{to} in order"
        );
    }
    let merge = done.report.stage("merge").unwrap();
    assert_eq!((merge.input, merge.completed), (4_011, 4_011));
}

#[test]
fn merge_is_fair_a_busy_input_does_not_starve_a_slow_one() {
    let rt = rt1();
    let mut g = Graph::new();
    let busy = g.source(Pipeline::from_iter(0..1_000_000_u64));
    let other = g.source(Pipeline::from_iter(2_000_000..2_000_100_u64));
    let merged = g.merge([busy, other]);
    // The first 10 000 out already hold all 100 elements of the small input.
    let out = g.sink(merged, |f| f.take(10_000).collect());
    g.run(&rt).unwrap().wait().unwrap();
    let out = take(out);
    let small = out.iter().filter(|&&x| x >= 2_000_000).count();
    assert_eq!(
        small, 100,
        "the small input was served while the busy one ran"
    );
}

#[test]
fn weighted_merge_shares_the_output_by_weight_under_contention() {
    let rt = rt1();
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..1_000_000_u64));
    let b = g.source(Pipeline::from_iter(10_000_000..11_000_000_u64));
    let merged = g.merge_prioritized([a, b], Priority::Weighted(vec![3, 1]));
    let out = g.sink(merged, |f| f.take(40_000).collect());
    g.default_capacity(64);
    g.run(&rt).unwrap().wait().unwrap();
    let out = take(out);
    let from_a = out.iter().filter(|&&x| x < 10_000_000).count() as f64;
    let from_b = out.len() as f64 - from_a;
    let ratio = from_a / from_b;
    assert!(
        (2.5..=3.5).contains(&ratio),
        "3:1 weights gave {from_a}:{from_b}"
    );
}

#[test]
fn strict_priority_serves_the_first_input_first() {
    let rt = rt1();
    let mut g = Graph::new();
    let high = g.source(Pipeline::from_iter(0..100_000_u64));
    let low = g.source(Pipeline::from_iter(1_000_000..1_100_000_u64));
    let merged = g.merge_prioritized([high, low], Priority::Strict);
    let out = g.sink(merged, |f| f.take(20_000).collect());
    g.default_capacity(64);
    g.run(&rt).unwrap().wait().unwrap();
    let out = take(out);
    let low_count = out.iter().filter(|&&x| x >= 1_000_000).count();
    // Low only gets room high left unused: a sliver while high is busy.
    assert!(
        low_count * 10 < out.len(),
        "low got {low_count} of {}",
        out.len()
    );
}

#[test]
fn concat_and_interleave_give_an_exact_order() {
    let rt = rt1();
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..5_u64));
    let b = g.source(Pipeline::from_iter(100..103_u64));
    let c = g.source(Pipeline::from_iter(200..202_u64));
    let concat = g.concat([a, b, c]);
    let concat = collect(&mut g, concat);
    let x = g.source(Pipeline::from_iter(0..5_u64));
    let y = g.source(Pipeline::from_iter(100..103_u64));
    let interleaved = g.interleave([x, y], 2);
    let interleaved = collect(&mut g, interleaved);
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(take(concat), [0, 1, 2, 3, 4, 100, 101, 102, 200, 201]);
    assert_eq!(take(interleaved), [0, 1, 100, 101, 2, 3, 102, 4]);
}

#[test]
fn zip_pairs_in_order_and_ends_with_the_shorter_input() {
    let rt = rt1();
    let mut g = Graph::new();
    let numbers = g.source(Pipeline::from_iter(0..1_000_u64));
    let words = g.source(Pipeline::from_iter((0..10).map(|i| format!("w{i}"))));
    let zipped = g.zip(numbers, words);
    g.name_stage(zipped, "zip");
    let out = collect(&mut g, zipped);
    let done = g.run(&rt).unwrap().wait().unwrap();
    let out = take(out);
    assert_eq!(out.len(), 10);
    for (i, (n, w)) in out.iter().enumerate() {
        assert_eq!((*n, w.as_str()), (i as u64, format!("w{i}").as_str()));
    }
    // Unpaired elements the zip had queued are counted, not lost.
    done.report.check_conservation().unwrap();
    let zip = done.report.stage("zip").unwrap();
    assert_eq!(zip.completed, 20);
    assert_eq!(zip.input, zip.completed + zip.filtered + zip.abandoned);
}

#[test]
fn zip_with_combines_and_a_panic_in_it_fails_the_pipeline_naming_the_stage() {
    let rt = rt1();
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..100_u64));
    let b = g.source(Pipeline::from_iter(0..100_u64));
    let sums = g.zip_with(a, b, |x, y| x + y);
    let sums = collect(&mut g, sums);
    g.run(&rt).unwrap().wait().unwrap();
    assert_eq!(take(sums), (0..100).map(|x| 2 * x).collect::<Vec<_>>());

    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..100_u64));
    let b = g.source(Pipeline::from_iter(0..100_u64));
    let sums = g.zip_with(a, b, |x, y| {
        assert!(x != 50, "bad pair {x}");
        x + y
    });
    g.name_stage(sums, "adder");
    let _sums = collect(&mut g, sums);
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("`adder`"), "{err}");
    let report = err.report().unwrap();
    assert_eq!(report.stage("adder").unwrap().failed, 2, "the pair in hand");
    report.check_conservation().unwrap();
}

#[test]
fn each_merge_input_is_bounded_by_its_own_capacity() {
    actix_rt::System::new().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let mut g = Graph::new();
        let a = g.source(Pipeline::from_iter(0_u64..).name("a"));
        let b = g.source(Pipeline::from_iter(0_u64..).name("b"));
        let merged = g.merge([a, b]);
        g.name_stage(merged, "merge").capacity_of(merged, 7);
        let mut egress = None;
        g.sink(merged, |f| {
            let (r, e) = f.egress(3);
            egress = Some(e);
            r.name("sink").capacity(5)
        });
        let running = g.run(&rt).unwrap();
        for _ in 0..500 {
            tokio::task::yield_now().await;
        }
        let stats = running.stats();
        let emitted = |s: &str| stats.stage(s).unwrap().emitted;
        // 7 per merge input, 5 + 3 after the merge, shared by the two inputs.
        assert_eq!(emitted("a") + emitted("b"), 7 + 7 + 5 + 3, "{stats:#?}");
        assert!(emitted("a") >= 7 && emitted("b") >= 7);
        assert_eq!(stats.stage("merge").unwrap().peak_occupancy, 7);
        drop(egress);
        let _ = running.abort().await;
    });
}

/// Three feeds into a merge; the first one's `parse` stage panics on 500.
fn three_feeds(
    g: &mut Graph,
    policy: weir::junction::InputFailure,
) -> weir::OutputReceiver<Vec<u64>> {
    let flaky = g.source(
        Pipeline::from_iter(0..1_000_u64)
            .map(|x| {
                assert!(x != 500, "cannot parse {x}");
                x
            })
            .name("parse"),
    );
    let b = g.source(Pipeline::from_iter(10_000..20_000_u64));
    let c = g.source(Pipeline::from_iter(20_000..30_000_u64));
    let merged = g.merge_with(
        [flaky, b, c],
        weir::junction::Merge::new().on_input_failure(policy),
    );
    collect(g, merged)
}

#[test]
fn with_end_input_a_failed_branch_ends_only_its_input() {
    let rt = rt1();
    let mut g = Graph::new();
    let out = three_feeds(&mut g, weir::junction::InputFailure::EndInput);
    let mut events = g.subscribe();
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.outcome, Outcome::Completed);
    let out = take(out);
    // Everything of the healthy inputs, and the flaky one's elements before 500.
    let healthy: Vec<u64> = out.iter().copied().filter(|&x| x >= 10_000).collect();
    assert_eq!(healthy.len(), 20_000);
    let flaky: Vec<u64> = out.iter().copied().filter(|&x| x < 10_000).collect();
    assert_eq!(flaky, (0..500).collect::<Vec<_>>());
    assert_eq!(done.report.contained.len(), 1);
    assert_eq!(done.report.contained[0].stage, "parse");
    assert!(done.report.contained[0].error.contains("cannot parse 500"));
    let parse = done.report.stage("parse").unwrap();
    assert_eq!((parse.completed, parse.failed), (500, 1));
    let mut failed_events = 0;
    while let Ok(event) = futures::executor::block_on(events.recv()) {
        if let SupervisionEvent::StageFailed { stage, .. } = event {
            assert_eq!(stage, "parse");
            failed_events += 1;
        }
    }
    assert_eq!(failed_events, 1);
}

#[test]
fn by_default_a_failed_branch_fails_the_pipeline() {
    let rt = rt1();
    let mut g = Graph::new();
    let _out = three_feeds(&mut g, weir::junction::InputFailure::default());
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("`parse`"), "{err}");
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert!(report.contained.is_empty());
}

#[test]
fn end_input_does_not_contain_failures_after_the_merge_or_behind_a_junction() {
    let rt = rt1();
    // After the merge: the pipeline fails.
    let mut g = Graph::new();
    let a = g.source(Pipeline::from_iter(0..100_u64));
    let b = g.source(Pipeline::from_iter(100..200_u64));
    let merged = g.merge_with(
        [a, b],
        weir::junction::Merge::new().on_input_failure(weir::junction::InputFailure::EndInput),
    );
    let after = g.flow(merged, |f| {
        f.map(|x| {
            assert!(x != 150, "late failure");
            x
        })
        .name("after")
    });
    let _out = collect(&mut g, after);
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("`after`"), "{err}");

    // Behind a broadcast: the branch ends at the junction, so the failure is not
    // contained (the broadcast's other branch would lose its input too).
    let mut g = Graph::new();
    let source = g.source(Pipeline::from_iter(0..100_u64).map(|x| {
        assert!(x != 50, "early failure");
        x
    }));
    let [x, y] = g.broadcast(source, Broadcast::new(2));
    let merged = g.merge_with(
        [x, y],
        weir::junction::Merge::new().on_input_failure(weir::junction::InputFailure::EndInput),
    );
    let _out = collect(&mut g, merged);
    let err = g.run(&rt).unwrap().wait().unwrap_err();
    assert!(err.to_string().contains("early failure"), "{err}");
    err.report().unwrap().check_conservation().unwrap();
}
