//! The `window_agg` workload of the comparison harness: a keyed tumbling-window
//! sum on event time, on weir
//! (`weir::window::WindowExt::event_time_windows`)
//! and as a hand-written single-threaded `HashMap` loop.
//!
//! Element `x` of `0..n` has key `x % KEYS` and timestamp `x / 100` ms; windows
//! are 1 s (100 000 elements, 10 per key). Every window's sum goes to one sink
//! that adds them up: the total is the sum of `0..n`, checked by the caller.

use std::collections::HashMap;
use std::time::Duration;

use weir::prelude::*;

use crate::junctions::JunctionPlacement;
use crate::workload::sum_step;

/// Distinct keys.
pub const KEYS: u64 = 10_000;
/// Window size, in ms of event time.
pub const WINDOW_MS: u64 = 1_000;

/// The element's event time, in ms.
#[inline]
fn timestamp(x: u64) -> u64 {
    x / 100
}

/// `window_agg` on weir: one source, the window stage, a folding sink, all on one
/// arbiter (the window stage is single-threaded, like the baseline).
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn window_agg_weir(n: u64, _placement: JunctionPlacement) -> Result<Vec<u64>, String> {
    let rt = Runtime::builder()
        .arbiters(2)
        .build()
        .map_err(|e| e.to_string())?;
    let done = Pipeline::from_iter(0..n)
        .event_time_windows(
            Windows::tumbling(Duration::from_millis(WINDOW_MS)),
            EventTime::new(|x: &u64| timestamp(*x)),
            |x| x % KEYS,
            Aggregate::new(
                || 0_u64,
                |s: &mut u64, x: &u64| *s = s.wrapping_add(*x),
                |s| *s,
            ),
        )
        .fold(0_u64, |acc, r| sum_step(acc, r.value))
        .run(&rt)
        .map_err(|e| e.to_string())?
        .wait()
        .map_err(|e| e.to_string())?;
    done.report
        .check_conservation()
        .map_err(|e| e.to_string())?;
    Ok(vec![done.output])
}

/// The same computation by hand: a `HashMap` from key to sum for the current
/// window, emptied into the total when a window ends.
///
/// # Errors
///
/// Never; the signature matches the harness's.
pub fn window_agg_hashmap(n: u64) -> Result<Vec<u64>, String> {
    let mut open: HashMap<u64, u64> = HashMap::new();
    let mut current = None;
    let mut total = 0_u64;
    for x in 0..std::hint::black_box(n) {
        let window = timestamp(x) / WINDOW_MS;
        if current != Some(window) {
            for (_, sum) in open.drain() {
                total = sum_step(total, std::hint::black_box(sum));
            }
            current = Some(window);
        }
        let sum = open.entry(x % KEYS).or_insert(0);
        *sum = sum.wrapping_add(x);
    }
    for (_, sum) in open.drain() {
        total = sum_step(total, sum);
    }
    Ok(vec![total])
}
