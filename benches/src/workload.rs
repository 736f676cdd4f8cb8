//! The shared comparison workload.
//!
//! A source emits the `u64` values `0..n`; stages 1, 2 and 3 are maps
//! ([`map_step`] with the stage number), stage 4 is a filter ([`keep`]) that
//! keeps roughly half of the mapped values, and the sink sums what is left with
//! wrapping addition. Every variant of the comparison harness computes the same
//! checksum, which is checked against [`reference_checksum`].

/// Number of elements carried by one batch in the batched variants.
pub const BATCH: usize = 1024;

/// Map stage `i` (1, 2 or 3): `x * 31 + i`, both wrapping.
#[inline]
#[must_use]
pub fn map_step(i: u64, x: u64) -> u64 {
    x.wrapping_mul(31).wrapping_add(i)
}

/// The three map stages applied in order to a source value.
#[inline]
#[must_use]
pub fn map_all(x: u64) -> u64 {
    map_step(3, map_step(2, map_step(1, x)))
}

/// Filter stage: keeps a mapped value when its bit 7 is clear, which keeps
/// about half of the mapped values (checked by a unit test).
#[inline]
#[must_use]
pub fn keep(x: u64) -> bool {
    (x >> 7) & 1 == 0
}

/// Sink step: wrapping sum of the kept values.
#[inline]
#[must_use]
pub fn sum_step(acc: u64, x: u64) -> u64 {
    acc.wrapping_add(x)
}

/// The checksum of the workload over `0..n`, computed with a plain loop.
#[must_use]
pub fn reference_checksum(n: u64) -> u64 {
    let mut sum = 0u64;
    let mut x = 0u64;
    while x < n {
        let y = map_step(3, map_step(2, map_step(1, x)));
        if keep(y) {
            sum = sum.wrapping_add(y);
        }
        x += 1;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_retains_about_half() {
        for n in [1_000u64, 100_000, 1_000_000] {
            let kept = (0..n).filter(|&x| keep(map_all(x))).count() as f64;
            let ratio = kept / n as f64;
            assert!((0.45..=0.55).contains(&ratio), "n={n}: kept ratio {ratio}");
        }
    }

    #[test]
    fn reference_matches_iterator_form() {
        for n in [0u64, 1, 2, 1023, 1024, 1025, 10_000] {
            let expected = (0..n)
                .map(map_all)
                .filter(|&x| keep(x))
                .fold(0u64, sum_step);
            assert_eq!(reference_checksum(n), expected, "n={n}");
        }
    }

    #[test]
    fn map_step_wraps() {
        assert_eq!(map_step(1, 0), 1);
        assert_eq!(map_step(2, 1), 33);
        assert_eq!(
            map_step(3, u64::MAX),
            u64::MAX.wrapping_mul(31).wrapping_add(3)
        );
    }
}
