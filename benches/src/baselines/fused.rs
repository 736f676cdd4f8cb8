//! Fused baseline: the whole pipeline as one iterator chain on one thread.

use crate::workload::{keep, map_step, sum_step};

/// Runs the workload over `0..n` as a fused iterator and returns the checksum.
///
/// # Errors
///
/// Never fails; the `Result` matches the other variants' signature.
pub fn run(n: u64) -> Result<u64, String> {
    Ok((0..n)
        .map(|x| map_step(1, x))
        .map(|x| map_step(2, x))
        .map(|x| map_step(3, x))
        .filter(|&x| keep(x))
        .fold(0u64, sum_step))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::reference_checksum;

    #[test]
    fn matches_reference() {
        for n in [0, 1, 10_000] {
            assert_eq!(run(n), Ok(reference_checksum(n)));
        }
    }
}
