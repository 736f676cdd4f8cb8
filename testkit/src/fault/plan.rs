//! [`Fault`]: which elements fail, and how.

use std::fmt;

use weir::{ErrorClass, Failure};

use super::rng::SplitMix64;

/// How an injected fault fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The user code panics (the stage catches it: class
    /// [`ErrorClass::Panic`]).
    Panic,
    /// The user code returns an error of this class.
    Error(ErrorClass),
}

#[derive(Debug, Clone)]
enum Trigger {
    /// The n-th element (from 1).
    At(u64),
    /// Each element with probability `p`.
    Probability(f64, SplitMix64),
}

/// A deterministic fault: decides for each element handed to it, in order,
/// whether it fails.
///
/// Elements are counted from 1 as they are *attempted*: a retried element counts
/// again, so `panic_at(3)` fails the third attempt once, and a supervised retry of
/// it succeeds. Probabilistic faults draw one number per attempt from a generator
/// seeded with the given seed: the same seed fails the same attempts on every run.
///
/// # Examples
///
/// ```
/// use weir_testkit::fault::{Fault, FaultKind};
///
/// let mut fault = Fault::error_at(2);
/// assert_eq!(fault.next_attempt(), None);
/// assert!(matches!(fault.next_attempt(), Some(FaultKind::Error(_))));
/// assert_eq!(fault.next_attempt(), None);
///
/// // Same seed, same failures.
/// let fails = |seed| {
///     let mut f = Fault::panic_with_probability(0.3, seed);
///     (0..100).filter(|_| f.next_attempt().is_some()).count()
/// };
/// assert_eq!(fails(42), fails(42));
/// ```
#[derive(Debug, Clone)]
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Fault {
    trigger: Trigger,
    kind: FaultKind,
    attempts: u64,
}

impl Fault {
    fn new(trigger: Trigger, kind: FaultKind) -> Self {
        Fault {
            trigger,
            kind,
            attempts: 0,
        }
    }

    /// Panics on the `n`-th attempt (from 1).
    pub fn panic_at(n: u64) -> Self {
        Self::new(Trigger::At(n), FaultKind::Panic)
    }

    /// Returns an error ([`ErrorClass::Transient`], change it with
    /// [`class`](Self::class)) on the `n`-th attempt (from 1).
    pub fn error_at(n: u64) -> Self {
        Self::new(Trigger::At(n), FaultKind::Error(ErrorClass::Transient))
    }

    /// Panics on each attempt with probability `p`, drawn from a generator
    /// seeded with `seed`.
    pub fn panic_with_probability(p: f64, seed: u64) -> Self {
        Self::new(
            Trigger::Probability(p, SplitMix64::new(seed)),
            FaultKind::Panic,
        )
    }

    /// Returns an error ([`ErrorClass::Transient`]) on each attempt with
    /// probability `p`, drawn from a generator seeded with `seed`.
    pub fn error_with_probability(p: f64, seed: u64) -> Self {
        Self::new(
            Trigger::Probability(p, SplitMix64::new(seed)),
            FaultKind::Error(ErrorClass::Transient),
        )
    }

    /// Sets the class of the injected errors (no effect on panics).
    pub fn class(mut self, class: ErrorClass) -> Self {
        if let FaultKind::Error(c) = &mut self.kind {
            *c = class;
        }
        self
    }

    /// Counts one more attempt and says whether (and how) it fails.
    pub fn next_attempt(&mut self) -> Option<FaultKind> {
        self.attempts += 1;
        let fires = match &mut self.trigger {
            Trigger::At(n) => self.attempts == *n,
            Trigger::Probability(p, rng) => rng.next_f64() < *p,
        };
        fires.then_some(self.kind)
    }

    /// Attempts counted so far.
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Checks the arguments: a probability in `[0, 1]`, an element number from 1.
    ///
    /// # Errors
    ///
    /// What is wrong, as text.
    pub fn validate(&self) -> Result<(), String> {
        match &self.trigger {
            Trigger::At(0) => Err("fault at element 0: elements are counted from 1".into()),
            Trigger::Probability(p, _) if !(0.0..=1.0).contains(p) => {
                Err(format!("fault probability {p} is outside [0, 1]"))
            }
            _ => Ok(()),
        }
    }

    /// Counts an attempt and fails it if the fault fires: panics, or returns the
    /// error.
    ///
    /// # Errors
    ///
    /// The injected [`Failure`] when an error fault fires.
    ///
    /// # Panics
    ///
    /// When a panic fault fires (that is the point).
    pub fn strike(&mut self) -> Result<(), Failure> {
        match self.next_attempt() {
            None => Ok(()),
            Some(FaultKind::Panic) => panic!("{}", self.message()),
            Some(FaultKind::Error(class)) => Err(Failure::error(class, self.message())),
        }
    }

    fn message(&self) -> String {
        format!("injected fault at attempt {}", self.attempts)
    }

    /// Wraps a function for [`map`](weir::FlowExt::map): the fault fires as a panic
    /// inside it (an error fault panics too: a map cannot return an error; use
    /// [`wrap_try`](Self::wrap_try) with `try_map`).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::prelude::*;
    /// use weir_testkit::fault::Fault;
    ///
    /// let rt = Runtime::builder().arbiters(1).build()?;
    /// let err = Pipeline::from_iter(0..10_u32)
    ///     .map(Fault::panic_at(4).wrap(|x| x + 1))
    ///     .name("user")
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("`user`"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wrap<T, U>(mut self, mut f: impl FnMut(T) -> U) -> impl FnMut(T) -> U {
        move |x| {
            if self.next_attempt().is_some() {
                panic!("{}", self.message());
            }
            f(x)
        }
    }

    /// Wraps a fallible function for [`try_map`](weir::FlowExt::try_map): an
    /// error fault returns its error, a panic fault panics.
    pub fn wrap_try<T, U>(
        mut self,
        mut f: impl FnMut(T) -> Result<U, Failure>,
    ) -> impl FnMut(T) -> Result<U, Failure> {
        move |x| {
            self.strike()?;
            f(x)
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Panic => f.write_str("panic"),
            FaultKind::Error(class) => write!(f, "{class}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_fires_once_on_exactly_the_nth_attempt() {
        let mut f = Fault::panic_at(3);
        let fired: Vec<u64> = (1..=10).filter(|_| f.next_attempt().is_some()).collect();
        assert_eq!(fired, [3]);
        assert_eq!(f.attempts(), 10);
    }

    #[test]
    fn probability_zero_and_one_are_never_and_always() {
        let mut never = Fault::error_with_probability(0.0, 1);
        let mut always = Fault::error_with_probability(1.0, 1);
        assert!((0..1000).all(|_| never.next_attempt().is_none()));
        assert!((0..1000).all(|_| always.next_attempt().is_some()));
    }

    #[test]
    fn class_applies_to_errors_only() {
        let mut f = Fault::error_at(1).class(ErrorClass::Permanent);
        let err = f.strike().unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(err.message(), "injected fault at attempt 1");
        let f = Fault::panic_at(1).class(ErrorClass::Permanent);
        assert_eq!(f.kind, FaultKind::Panic);
    }

    #[test]
    fn validate_names_the_bad_argument() {
        assert!(
            Fault::panic_at(0)
                .validate()
                .unwrap_err()
                .contains("from 1")
        );
        assert!(
            Fault::panic_with_probability(-0.1, 0)
                .validate()
                .unwrap_err()
                .contains("outside [0, 1]")
        );
        assert!(Fault::error_with_probability(0.5, 0).validate().is_ok());
    }

    #[test]
    fn wrapped_functions_count_every_call() {
        let mut f = Fault::error_at(2).wrap_try(|x: u32| Ok(x + 1));
        assert_eq!(f(1).unwrap(), 2);
        assert!(f(2).is_err());
        assert_eq!(f(3).unwrap(), 4);
        let mut g = Fault::panic_at(1).wrap(|x: u32| x);
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g(0))).is_err());
        assert_eq!(g(5), 5);
    }
}
