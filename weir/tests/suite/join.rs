//! Stream-stream joins (`IntervalJoin`): results against a nested-loop reference
//! (proptest over keys, timestamps and interleavings), TTL expiry on a paused
//! clock, left-outer emission, side-output counts, the row bound, and the state a
//! supervised restart loses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use weir::prelude::*;

/// A row: (key, event time, id). Ids make rows distinct.
type Row = (u8, i64, u32);

fn rt1() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

fn paused_system() -> actix_rt::SystemRunner {
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    })
}

async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

/// What a join of `lefts` and `rights` must give, by nested loops: an element is
/// late if its time is below the largest earlier time of its side minus `bound`;
/// on-time pairs with equal keys and `lower <= r.ts - l.ts <= upper` join; on-time
/// rows without a pair, and late rows, are unmatched.
struct Expected {
    joined: Vec<(u32, Option<u32>)>,
    side: Vec<Side<u32, u32>>,
    late: u64,
}

fn on_time(rows: &[Row], bound: i64) -> Vec<bool> {
    let mut max = None::<i64>;
    rows.iter()
        .map(|&(_, ts, _)| {
            let ok = max.is_none_or(|m| ts >= m - bound);
            if ok {
                max = Some(max.map_or(ts, |m| m.max(ts)));
            }
            ok
        })
        .collect()
}

fn nested_loop(
    lefts: &[Row],
    rights: &[Row],
    (lower, upper, bound): (i64, i64, i64),
    outer: bool,
) -> Expected {
    let (lok, rok) = (on_time(lefts, bound), on_time(rights, bound));
    let mut joined = Vec::new();
    let mut side = Vec::new();
    let mut right_hit = vec![false; rights.len()];
    for (i, l) in lefts.iter().enumerate().filter(|(i, _)| lok[*i]) {
        let mut hit = false;
        for (j, r) in rights.iter().enumerate().filter(|(j, _)| rok[*j]) {
            if l.0 == r.0 && (lower..=upper).contains(&(r.1 - l.1)) {
                joined.push((l.2, Some(r.2)));
                hit = true;
                right_hit[j] = true;
            }
        }
        if !hit {
            if outer {
                joined.push((l.2, None));
            } else {
                side.push(Side::Left(l.2));
            }
        }
        let _ = i;
    }
    for (j, r) in rights.iter().enumerate() {
        if !rok[j] || !right_hit[j] {
            side.push(Side::Right(r.2));
        }
    }
    for (i, l) in lefts.iter().enumerate() {
        if !lok[i] {
            side.push(Side::Left(l.2));
        }
    }
    let late = (lok.iter().chain(&rok).filter(|ok| !**ok).count()) as u64;
    Expected { joined, side, late }
}

fn key(s: &Side<u32, u32>) -> (u8, u32) {
    match s {
        Side::Left(x) => (0, *x),
        Side::Right(x) => (1, *x),
    }
}

fn rows(n: usize) -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((0_u8..4, 0_i64..60), 0..n).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (k, ts))| (k, ts, i as u32))
            .collect()
    })
}

fn join_of(
    interval: (i64, i64, i64),
    outer: bool,
    counters: &JoinCounters,
) -> IntervalJoin<u8, Row, Row, (u32, Option<u32>)> {
    let (lower, upper, bound) = interval;
    let join = if outer {
        IntervalJoin::left_outer(
            |l: &Row| l.0,
            |r: &Row| r.0,
            |l, r: Option<&Row>| (l.2, r.map(|r| r.2)),
        )
    } else {
        IntervalJoin::inner(|l: &Row| l.0, |r: &Row| r.0, |l, r| (l.2, Some(r.2)))
    };
    join.event_time(|l| l.1, |r| r.1, lower, upper)
        .out_of_orderness(bound)
        .counters(counters)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// The join stage fed one random interleaving of the two inputs gives exactly
    /// the nested-loop result (as multisets), inner and left-outer, and counts
    /// what went unmatched and late.
    #[test]
    fn join_matches_a_nested_loop_reference(
        lefts in rows(40),
        rights in rows(40),
        picks in prop::collection::vec(any::<bool>(), 80),
        lower in -10_i64..10,
        width in 0_i64..20,
        bound in 0_i64..30,
        outer in any::<bool>(),
        capacity in 1_usize..6,
    ) {
        let interval = (lower, lower + width, bound);
        // One interleaving that keeps each side's order.
        let (mut li, mut ri) = (lefts.iter(), rights.iter());
        let mut tagged = Vec::new();
        let mut picks = picks.into_iter();
        loop {
            let pick_left = match (li.len(), ri.len()) {
                (0, 0) => break,
                (_, 0) => true,
                (0, _) => false,
                _ => picks.next().unwrap_or(true),
            };
            if pick_left {
                tagged.extend(li.next().map(|l| Side::Left(*l)));
            } else {
                tagged.extend(ri.next().map(|r| Side::Right(*r)));
            }
        }
        let counters = JoinCounters::new();
        let done = join_of(interval, outer, &counters)
            .on(Pipeline::from_iter(tagged))
            .collect()
            .default_capacity(capacity)
            .run(&rt1()).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        let mut joined = Vec::new();
        let mut side = Vec::new();
        for x in done.output {
            match x {
                JoinOut::Joined(j) => joined.push(j),
                JoinOut::Unmatched(Side::Left(l)) => side.push(Side::Left(l.2)),
                JoinOut::Unmatched(Side::Right(r)) => side.push(Side::Right(r.2)),
            }
        }
        let mut want = nested_loop(&lefts, &rights, interval, outer);
        joined.sort_unstable();
        want.joined.sort_unstable();
        side.sort_unstable_by_key(key);
        want.side.sort_unstable_by_key(key);
        prop_assert_eq!(joined, want.joined);
        prop_assert_eq!(side, want.side);
        prop_assert_eq!(counters.late(), want.late);
        prop_assert_eq!(counters.rows(), 0);
    }

    /// The graph form (two sources, tagged, merged, joined, split) gives the same
    /// result whatever the merge's interleaving, for in-order inputs.
    #[test]
    fn graph_join_matches_the_reference(
        lefts in rows(30),
        rights in rows(30),
        outer in any::<bool>(),
    ) {
        let sorted = |mut v: Vec<Row>| { v.sort_by_key(|r| r.1); v };
        let (lefts, rights) = (sorted(lefts), sorted(rights));
        let interval = (-5, 5, 0);
        let counters = JoinCounters::new();
        let mut g = Graph::new();
        let l = g.source(Pipeline::from_iter(lefts.clone()));
        let r = g.source(Pipeline::from_iter(rights.clone()));
        let JoinOutlets { joined, unmatched } =
            g.interval_join(l, r, join_of(interval, outer, &counters).name("j"));
        let joined = g.sink(joined, |f| f.collect());
        let unmatched = g.sink(unmatched, |f| f.collect());
        g.default_capacity(3);
        let done = g.run(&rt1()).unwrap().wait().unwrap();
        done.report.check_conservation().unwrap();
        let mut joined = futures::executor::block_on(joined).unwrap();
        let mut side: Vec<Side<u32, u32>> = futures::executor::block_on(unmatched).unwrap()
            .into_iter()
            .map(|s| match s { Side::Left(l) => Side::Left(l.2), Side::Right(r) => Side::Right(r.2) })
            .collect();
        let mut want = nested_loop(&lefts, &rights, interval, outer);
        joined.sort_unstable();
        want.joined.sort_unstable();
        side.sort_unstable_by_key(key);
        want.side.sort_unstable_by_key(key);
        prop_assert_eq!(&joined, &want.joined);
        prop_assert_eq!(side.len() as u64, counters.unmatched_right() + if outer { 0 } else { counters.unmatched_left() });
        prop_assert_eq!(side, want.side);
        prop_assert_eq!(done.report.stage("j").unwrap().completed, (lefts.len() + rights.len()) as u64);
    }
}

/// Processing-time join under a paused clock: a row waits exactly its TTL. A
/// partner 1 ms before the TTL joins; at the TTL the row leaves by the timer
/// (no input needed) to the side output, and a partner after that finds nothing.
/// Left-outer: the expired left row is emitted once, combined with `None`.
#[test]
fn ttl_expiry_is_exact_on_a_paused_clock() {
    paused_system().block_on(async {
        let rt = Runtime::from_current().unwrap();
        let counters = JoinCounters::new();
        let (ingress, tagged) = Pipeline::ingress::<Side<char, char>>(16);
        let join = IntervalJoin::left_outer(
            |l: &char| *l,
            |r: &char| *r,
            |l, r: Option<&char>| (*l, r.is_some()),
        )
        .ttl(Duration::from_secs(10))
        .counters(&counters);
        let (runnable, mut egress) = join.on(tagged).egress(16);
        let running = runnable.run(&rt).unwrap();
        let t0 = tokio::time::Instant::now();

        ingress.send(Side::Left('a')).await.unwrap();
        ingress.send(Side::Left('b')).await.unwrap();
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        ingress.send(Side::Right('a')).await.unwrap();
        assert_eq!(egress.recv().await, Some(JoinOut::Joined(('a', true))));
        settle().await;
        assert_eq!((counters.rows(), counters.expired()), (3, 0));

        // 'a' and 'b' (left) expire at exactly 10 s: 'a' was matched (nothing
        // to emit), 'b' was not (emitted once with None).
        assert_eq!(egress.recv().await, Some(JoinOut::Joined(('b', false))));
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        settle().await;
        assert_eq!((counters.rows(), counters.expired()), (1, 2));

        ingress.send(Side::Right('b')).await.unwrap(); // too late for 'b'
        // The right 'a' leaves 10 s after it arrived, silently: it was matched.
        tokio::time::sleep(Duration::from_millis(9_998)).await;
        settle().await;
        assert_eq!((counters.rows(), counters.expired()), (2, 2));
        tokio::time::sleep(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(t0.elapsed(), Duration::from_millis(19_999));
        assert_eq!((counters.rows(), counters.expired()), (1, 3));
        assert_eq!(egress.try_recv(), None);
        drop(ingress);
        assert_eq!(
            egress.recv().await,
            Some(JoinOut::Unmatched(Side::Right('b')))
        );
        assert_eq!(egress.recv().await, None);
        let done = running.await.unwrap();
        done.report.check_conservation().unwrap();
        assert_eq!(counters.joined(), 1);
        assert_eq!(
            (counters.unmatched_left(), counters.unmatched_right()),
            (1, 1)
        );
        assert_eq!(done.report.stage("interval_join#1").unwrap().completed, 4);
    });
}

/// Unbounded keys through a join bounded to 500 rows: the state never holds
/// more, every eviction is counted, every evicted unmatched row reaches the side
/// output once, and matches within the bound are still found.
#[test]
fn row_bound_keeps_state_bounded_and_counts_evictions() {
    let counters = JoinCounters::new();
    let n = 50_000_u32;
    // Each key's right row comes 100 rows after its left row: within the bound.
    let tagged = (0..n + 100).flat_map(move |i| {
        let l = (i < n).then_some(Side::Left(i));
        let r = i.checked_sub(100).map(Side::Right);
        l.into_iter().chain(r)
    });
    let done = IntervalJoin::inner(|l: &u32| *l, |r: &u32| *r, |l, _| *l)
        .max_rows(500, OnFull::EvictLru)
        .counters(&counters)
        .on(Pipeline::from_iter(tagged))
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert!(counters.peak_rows() <= 500, "{}", counters.peak_rows());
    assert_eq!(counters.joined(), u64::from(n));
    // Matched left rows are evicted later, silently (they were matched).
    assert_eq!(counters.unmatched_left() + counters.unmatched_right(), 0);
    assert!(counters.evicted() > 0);
    assert_eq!(done.output.len() as u64, u64::from(n));

    let err = IntervalJoin::inner(|l: &u32| *l, |r: &u32| *r, |l, _| *l)
        .max_rows(3, OnFull::Fail)
        .on(Pipeline::from_iter((0..10).map(Side::Left)))
        .name("small")
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        err.to_string().contains("small") && err.to_string().contains("OnFull::Fail"),
        "{err}"
    );
    err.report().unwrap().check_conservation().unwrap();
}

/// Arguments that cannot work are build errors naming the stage.
#[test]
fn invalid_joins_are_rejected_when_built() {
    let err = IntervalJoin::inner(|l: &u32| *l, |r: &u32| *r, |l, _| *l)
        .event_time(|l| i64::from(*l), |r| i64::from(*r), 5, 1)
        .on(Pipeline::from_iter([Side::Left(1)]))
        .name("backwards")
        .collect()
        .run(&rt1())
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidArgument { stage, message }
        if stage == "backwards" && message.contains("lower > upper")),
        "{err:?}"
    );
    let err = IntervalJoin::inner(|l: &u32| *l, |r: &u32| *r, |l, _| *l)
        .on(Pipeline::from_iter([Side::Left(1)]))
        .collect()
        .run(&rt1())
        .unwrap_err();
    assert!(err.to_string().contains("ttl or max_rows"), "{err}");
}

/// A join stage that panics restarts under its supervision with no rows; the
/// rows it held are reported as `state_lost`, the failed element is retried on
/// the fresh stage, conservation holds.
#[test]
fn a_supervised_join_restart_loses_its_rows_visibly() {
    let tripped = Arc::new(AtomicBool::new(false));
    let trip = Arc::clone(&tripped);
    let policy = SupervisionPolicy::default().restart_backoff(BackoffConfig::none());
    // Lefts 0..10 wait; the right row 5 panics in `combine` once.
    let tagged = (0..10).map(Side::Left).chain((0..10).map(Side::Right));
    let done = IntervalJoin::inner(
        |l: &u32| *l,
        |r: &u32| *r,
        move |l, _| {
            if *l == 5 && !trip.swap(true, Ordering::SeqCst) {
                panic!("combine fails on {l}");
            }
            *l
        },
    )
    .max_rows(1_000, OnFull::EvictLru)
    .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
    .name("join")
    .on(Pipeline::from_iter(tagged))
    .collect()
    .run(&rt1())
    .unwrap()
    .wait()
    .unwrap();
    done.report.check_conservation().unwrap();
    let stage = done.report.stage("join").unwrap();
    assert_eq!(stage.restarts, 1);
    // 10 lefts + rights 0..5 were held when right 5 failed.
    assert_eq!(stage.state_lost, 15);
    let joined: Vec<u32> = done
        .output
        .iter()
        .filter_map(|x| match x {
            JoinOut::Joined(j) => Some(*j),
            JoinOut::Unmatched(_) => None,
        })
        .collect();
    assert_eq!(
        joined,
        [0, 1, 2, 3, 4],
        "after the restart no left row is left to match"
    );
    let unmatched = done.output.len() - joined.len();
    assert_eq!(unmatched, 5, "rights 5..10 leave unmatched at the end");
}
