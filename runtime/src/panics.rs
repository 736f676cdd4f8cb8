//! A panic hook for services whose supervised stages panic as a matter of course.
//!
//! Rust's default panic hook prints every panic to stderr, with a backtrace when
//! `RUST_BACKTRACE` is set: for a supervised stage that retries a panicking
//! element thousands of times a second, that printing costs more than the retry
//! itself (a locked write per fault, and a backtrace captured and symbolised).
//! [`quiet_supervised_panics`] installs a hook that does nothing for a panic
//! raised inside the step of a *supervised* stage — the stage catches it, keeps
//! its message in the [`Failure`](crate::Failure) it hands to its policy, counts
//! it and publishes a `SupervisionEvent` — and hands every other panic to the
//! hook that was there before, so a panic elsewhere (or in an unsupervised stage,
//! which fails the pipeline) is reported as it always was.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    /// Set while this thread runs the step of a supervised stage.
    static IN_SUPERVISED_STEP: Cell<bool> = const { Cell::new(false) };
}

static INSTALL: Once = Once::new();

/// Installs the quiet hook once per process (later calls do nothing); the hook it
/// replaces still handles every panic outside a supervised stage's step.
///
/// # Examples
///
/// ```
/// weir_runtime::panics::quiet_supervised_panics();
/// // A panic outside a supervised stage still reaches the previous hook:
/// assert!(std::panic::catch_unwind(|| panic!("reported as before")).is_err());
/// ```
pub fn quiet_supervised_panics() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_SUPERVISED_STEP.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Marks the current thread as running a supervised stage's step until dropped.
pub(crate) struct SupervisedStep {
    was: bool,
}

impl SupervisedStep {
    pub(crate) fn enter(supervised: bool) -> Self {
        SupervisedStep {
            was: IN_SUPERVISED_STEP.with(|s| s.replace(supervised)),
        }
    }
}

impl Drop for SupervisedStep {
    fn drop(&mut self) {
        IN_SUPERVISED_STEP.with(|s| s.set(self.was));
    }
}
