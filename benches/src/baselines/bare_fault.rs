//! The bare cost of a caught panic and its retry: the workload's maps in a plain
//! loop, each element's call inside `catch_unwind`, the first call on every
//! `every`-th element panicking and retried. The baseline of the harness's
//! `fault_cost` figure (what weir's supervision adds to a fault).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::workload::{keep, map_all, sum_step};

/// One pass over `0..elements`; with `faulty`, one panic per `every` elements.
fn pass(elements: u64, every: u64, faulty: bool) -> (u64, Duration) {
    let start = Instant::now();
    let mut sum = 0_u64;
    for x in 0..elements {
        let mut retried = false;
        loop {
            let first = !retried;
            let attempt = catch_unwind(AssertUnwindSafe(|| {
                if faulty && first && x % every == every - 1 {
                    std::panic::resume_unwind(Box::new("injected fault"));
                }
                map_all(std::hint::black_box(x))
            }));
            match attempt {
                Ok(y) => {
                    if keep(y) {
                        sum = sum_step(sum, y);
                    }
                    break;
                }
                Err(_) => retried = true,
            }
        }
    }
    (std::hint::black_box(sum), start.elapsed())
}

/// Microseconds each fault adds to the loop: (faulty pass − clean pass) / faults,
/// the median of `runs` pairs of passes. `resume_unwind` skips the panic hook, as
/// weir's benchmark silences it.
#[must_use]
pub fn us_per_fault(elements: u64, every: u64, runs: usize) -> f64 {
    let faults = (elements / every).max(1) as f64;
    let mut samples: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let (clean_sum, clean) = pass(elements, every, false);
            let (faulty_sum, faulty) = pass(elements, every, true);
            assert_eq!(clean_sum, faulty_sum, "a retried element counted twice");
            (faulty.as_secs_f64() - clean.as_secs_f64()) * 1e6 / faults
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::reference_checksum;

    #[test]
    fn a_faulty_pass_sums_like_the_reference() {
        let (sum, _) = pass(50_000, 1_000, true);
        assert_eq!(sum, reference_checksum(50_000));
    }
}
