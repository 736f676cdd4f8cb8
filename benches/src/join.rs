//! The `join` workload of the comparison harness: an event-time interval join of
//! two streams, on weir ([`JoinExt::interval_join`](weir::prelude::JoinExt)) and
//! as a hand-written single-threaded `HashMap` symmetric hash join.
//!
//! `0..n` is split into two streams: the evens (left) and the odds (right). The
//! element `x` has key and event time `x / 2`, so each left row has exactly one
//! partner, with the same timestamp; the join interval is `-5..=5` and both
//! streams are in timestamp order, so rows leave the state by watermark as soon
//! as the other side has moved 5 past them. Each pair makes `left + right`; the
//! sum of the joined elements (plus any unmatched ones, of which there are none)
//! is the sum of `0..n`, checked by the caller.

use std::collections::{HashMap, VecDeque};

use weir::prelude::*;

use crate::junctions::{JunctionPlacement, arbiters};
use crate::workload::sum_step;

/// Half-width of the join interval (in event-time units).
pub const WINDOW: i64 = 5;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn key(x: &u64) -> u64 {
    x / 2
}

fn ts(x: &u64) -> i64 {
    (x / 2) as i64
}

/// `join` on weir: two sources → `interval_join` → a summing sink on each output.
///
/// # Errors
///
/// Fails when the graph cannot be built or does not complete.
pub fn join_weir(n: u64, placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    let rt = Runtime::builder()
        .arbiters(arbiters())
        .build()
        .map_err(err)?;
    let mut g = Graph::new();
    if placement == JunctionPlacement::Spread {
        g.placement(Placement::Spread);
    }
    let left = g.source(Pipeline::from_iter((0..n).step_by(2)));
    let right = g.source(Pipeline::from_iter((1..n).step_by(2)));
    let join = IntervalJoin::inner(key, key, |l: &u64, r: &u64| l.wrapping_add(*r))
        .event_time(ts, ts, -WINDOW, WINDOW);
    let JoinOutlets { joined, unmatched } = g.interval_join(left, right, join);
    let joined = g.sink(joined, |f| f.fold(0_u64, sum_step));
    let unmatched = g.sink(unmatched, |f| {
        f.fold(0_u64, |acc, s| match s {
            Side::Left(x) | Side::Right(x) => acc.wrapping_add(x),
        })
    });
    let done = g.run(&rt).map_err(err)?.wait().map_err(err)?;
    done.report.check_conservation().map_err(err)?;
    let joined = futures::executor::block_on(joined).ok_or("no joined sum")?;
    let unmatched = futures::executor::block_on(unmatched).ok_or("no unmatched sum")?;
    Ok(vec![joined.wrapping_add(unmatched)])
}

/// Rows of one key in the baseline.
#[derive(Default)]
struct KeyRows {
    /// (timestamp, value, matched)
    left: Vec<(i64, u64, bool)>,
    right: Vec<(i64, u64, bool)>,
}

/// The same join by hand on one thread: the two streams alternate element by
/// element, each element probes the other side's rows of its key in a
/// `HashMap`, is kept, and rows leave once the other side's watermark (its
/// largest timestamp) has passed them by more than the interval.
///
/// # Errors
///
/// Never; the signature matches the harness's.
pub fn join_hashmap(n: u64) -> Result<Vec<u64>, String> {
    let mut state: HashMap<u64, KeyRows> = HashMap::new();
    // Rows by arrival (in timestamp order here): (ts, key, is_left).
    let mut by_time: VecDeque<(i64, u64, bool)> = VecDeque::new();
    let (mut max_left, mut max_right) = (i64::MIN, i64::MIN);
    let mut sum = 0_u64;
    let mut lefts = (0..n).step_by(2);
    let mut rights = (1..n).step_by(2);
    loop {
        let (x, is_left) = match (lefts.next(), rights.next()) {
            (Some(l), Some(r)) => {
                for (x, is_left) in [(l, true), (r, false)] {
                    join_one(
                        &mut state,
                        &mut by_time,
                        (x, is_left),
                        (&mut max_left, &mut max_right),
                        &mut sum,
                    );
                }
                continue;
            }
            (Some(l), None) => (l, true),
            (None, Some(r)) => (r, false),
            (None, None) => break,
        };
        join_one(
            &mut state,
            &mut by_time,
            (x, is_left),
            (&mut max_left, &mut max_right),
            &mut sum,
        );
    }
    // Unmatched rows at the end count with their value, as on weir.
    for rows in state.values() {
        for &(_, x, matched) in rows.left.iter().chain(&rows.right) {
            if !matched {
                sum = sum.wrapping_add(x);
            }
        }
    }
    Ok(vec![sum])
}

fn join_one(
    state: &mut HashMap<u64, KeyRows>,
    by_time: &mut VecDeque<(i64, u64, bool)>,
    (x, is_left): (u64, bool),
    (max_left, max_right): (&mut i64, &mut i64),
    sum: &mut u64,
) {
    let (k, t) = (key(&x), ts(&x));
    let rows = state.entry(k).or_default();
    let (mine, others) = if is_left {
        (&mut rows.left, &mut rows.right)
    } else {
        (&mut rows.right, &mut rows.left)
    };
    let mut hit = false;
    for (ot, ov, om) in others.iter_mut() {
        let d = if is_left { *ot - t } else { t - *ot };
        if (-WINDOW..=WINDOW).contains(&d) {
            *sum = sum.wrapping_add(x.wrapping_add(*ov));
            *om = true;
            hit = true;
        }
    }
    mine.push((t, x, hit));
    if is_left {
        *max_left = (*max_left).max(t);
    } else {
        *max_right = (*max_right).max(t);
    }
    by_time.push_back((t, k, is_left));
    // Evict rows no future element of the other side can match; an unmatched
    // one counts with its value (weir's side output).
    while let Some(&(rt, rk, rl)) = by_time.front() {
        let other_max = if rl { *max_right } else { *max_left };
        if other_max == i64::MIN || rt + WINDOW >= other_max {
            break;
        }
        by_time.pop_front();
        if let Some(rows) = state.get_mut(&rk) {
            let side = if rl { &mut rows.left } else { &mut rows.right };
            if let Some(i) = side.iter().position(|&(t, _, _)| t == rt) {
                let (_, x, matched) = side.swap_remove(i);
                if !matched {
                    *sum = sum.wrapping_add(x);
                }
            }
            if rows.left.is_empty() && rows.right.is_empty() {
                state.remove(&rk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::junctions::expected_sum;

    #[test]
    fn both_sides_sum_to_the_input() {
        for n in [0, 1, 2, 11, 1_000] {
            assert_eq!(join_hashmap(n).unwrap(), vec![expected_sum(n)], "n={n}");
            assert_eq!(
                join_weir(n, JunctionPlacement::Together).unwrap(),
                vec![expected_sum(n)],
                "n={n}"
            );
        }
    }
}
