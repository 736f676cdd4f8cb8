//! Per-key sequence checking: no gap, no repeat.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::task::Context;

use weir::operator::{Io, Operator, Step};
use weir::{ErrorClass, Failure};

/// A sequence number that is not the one expected for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceError<K> {
    /// Numbers were skipped: an element was lost (or reordered ahead).
    Gap {
        /// The key.
        key: K,
        /// The number expected next.
        expected: u64,
        /// The number seen.
        got: u64,
    },
    /// A number came again (or late): an element was duplicated (or reordered
    /// behind).
    Repeat {
        /// The key.
        key: K,
        /// The number expected next.
        expected: u64,
        /// The number seen.
        got: u64,
    },
}

impl<K: Debug> std::fmt::Display for SequenceError<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SequenceError::Gap { key, expected, got } => {
                write!(f, "key {key:?}: gap, expected {expected}, got {got}")
            }
            SequenceError::Repeat { key, expected, got } => {
                write!(f, "key {key:?}: repeat, expected {expected}, got {got}")
            }
        }
    }
}

impl<K: Debug> std::error::Error for SequenceError<K> {}

/// Checks that, for every key, sequence numbers arrive as `first, first + 1, …`:
/// no gap (an element lost), no repeat (an element duplicated), nothing out of
/// order.
///
/// # Examples
///
/// ```
/// use weir_testkit::check::{SequenceChecker, SequenceError};
///
/// let mut check = SequenceChecker::new();
/// check.observe("a", 0).unwrap();
/// check.observe("b", 0).unwrap();
/// check.observe("a", 1).unwrap();
/// assert_eq!(
///     check.observe("a", 3),
///     Err(SequenceError::Gap { key: "a", expected: 2, got: 3 })
/// );
/// assert_eq!(check.next_expected(&"b"), 1);
/// ```
#[derive(Debug, Clone)]
pub struct SequenceChecker<K> {
    first: u64,
    next: HashMap<K, u64>,
    seen: u64,
}

impl<K: Hash + Eq + Clone> Default for SequenceChecker<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone> SequenceChecker<K> {
    /// A checker whose sequences start at 0 for every key.
    pub fn new() -> Self {
        Self::starting_at(0)
    }

    /// A checker whose sequences start at `first` for every key.
    pub fn starting_at(first: u64) -> Self {
        SequenceChecker {
            first,
            next: HashMap::new(),
            seen: 0,
        }
    }

    /// Checks the next number seen for `key`. A wrong number does not move the
    /// expectation on.
    ///
    /// # Errors
    ///
    /// [`SequenceError::Gap`] or [`SequenceError::Repeat`], with the key and both
    /// numbers.
    pub fn observe(&mut self, key: K, seq: u64) -> Result<(), SequenceError<K>> {
        let expected = self.next_expected(&key);
        if seq == expected {
            self.next.insert(key, expected + 1);
            self.seen += 1;
            Ok(())
        } else if seq > expected {
            Err(SequenceError::Gap {
                key,
                expected,
                got: seq,
            })
        } else {
            Err(SequenceError::Repeat {
                key,
                expected,
                got: seq,
            })
        }
    }

    /// The number expected next for `key`.
    pub fn next_expected(&self, key: &K) -> u64 {
        self.next.get(key).copied().unwrap_or(self.first)
    }

    /// Keys seen so far.
    pub fn keys(&self) -> usize {
        self.next.len()
    }

    /// Numbers accepted so far, over all keys.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Checks that every key of `expected` reached its count (the number of
    /// elements it had), so that a loss at the tail, which leaves no gap, is
    /// caught too.
    ///
    /// # Errors
    ///
    /// A [`SequenceError::Gap`] for the first key that stopped short, with the
    /// number it expected next and the count it should have reached.
    pub fn expect_counts(
        &self,
        expected: impl IntoIterator<Item = (K, u64)>,
    ) -> Result<(), SequenceError<K>> {
        for (key, count) in expected {
            let next = self.next_expected(&key);
            if next != self.first + count {
                return Err(SequenceError::Gap {
                    key,
                    expected: next,
                    got: self.first + count,
                });
            }
        }
        Ok(())
    }
}

/// Checks collected `(key, sequence number)` pairs with a fresh
/// [`SequenceChecker`] (sequences from 0), and returns it for further checks.
///
/// # Examples
///
/// ```
/// use weir_testkit::check::check_sequences;
///
/// let out = [('x', 0), ('y', 0), ('x', 1), ('y', 1), ('x', 2)];
/// let check = check_sequences(out).unwrap();
/// check.expect_counts([('x', 3), ('y', 2)]).unwrap();
/// assert!(check_sequences([('x', 0), ('x', 0)]).is_err());
/// ```
///
/// # Errors
///
/// The first [`SequenceError`].
pub fn check_sequences<K: Hash + Eq + Clone>(
    pairs: impl IntoIterator<Item = (K, u64)>,
) -> Result<SequenceChecker<K>, SequenceError<K>> {
    let mut check = SequenceChecker::new();
    for (key, seq) in pairs {
        check.observe(key, seq)?;
    }
    Ok(check)
}

/// A one-to-one pass-through stage that checks each element's `(key, sequence
/// number)` and fails the pipeline (class [`ErrorClass::Permanent`]) at the first
/// gap or repeat, with the key and numbers in the error.
///
/// Added with [`check_sequence`](crate::TestkitExt::check_sequence).
pub struct CheckSequence<T, K, F> {
    seq: F,
    check: SequenceChecker<K>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T, K, F> std::fmt::Debug for CheckSequence<T, K, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckSequence")
            .field("seen", &self.check.seen)
            .finish_non_exhaustive()
    }
}

impl<T, K: Hash + Eq + Clone, F> CheckSequence<T, K, F> {
    /// A stage reading `(key, number)` from each element with `seq`, sequences
    /// from `first`.
    pub fn new(first: u64, seq: F) -> Self {
        CheckSequence {
            seq,
            check: SequenceChecker::starting_at(first),
            _t: PhantomData,
        }
    }
}

impl<T, K, F> Operator for CheckSequence<T, K, F>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Debug + Send + 'static,
    F: FnMut(&T) -> (K, u64) + Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "check_sequence"
    }

    fn state_entries(&self) -> usize {
        self.check.keys()
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            let (key, seq) = (self.seq)(&x);
            if let Err(e) = self.check.observe(key, seq) {
                return Step::Failed(Failure::error(
                    ErrorClass::Permanent,
                    format!("sequence check failed: {e}"),
                ));
            }
            io.push(x);
        }
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_number_does_not_move_the_expectation() {
        let mut c = SequenceChecker::starting_at(1);
        c.observe("k", 1).unwrap();
        assert!(c.observe("k", 5).is_err());
        assert_eq!(c.next_expected(&"k"), 2);
        c.observe("k", 2).unwrap();
        assert_eq!((c.keys(), c.seen()), (1, 2));
    }

    #[test]
    fn errors_read_well() {
        let gap = SequenceError::Gap {
            key: 7,
            expected: 3,
            got: 9,
        };
        assert_eq!(gap.to_string(), "key 7: gap, expected 3, got 9");
    }

    #[test]
    fn a_lost_tail_is_a_gap_in_the_counts() {
        let c = check_sequences([(0, 0), (0, 1)]).unwrap();
        assert_eq!(
            c.expect_counts([(0, 3)]),
            Err(SequenceError::Gap {
                key: 0,
                expected: 2,
                got: 3
            })
        );
    }
}
