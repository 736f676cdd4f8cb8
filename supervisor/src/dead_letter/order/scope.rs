//! [`StageScope`]: which stage of which checkpointed pipeline run the current
//! thread is running.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// One run of a checkpointed pipeline: what a [`DlqOrder`](super::DlqOrder) is
/// attached to, and what a [`StageScope`] names. Every [`RunId::new`] is
/// different from every other in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(u64);

impl RunId {
    /// A new id, never handed out before in this process.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        RunId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

thread_local! {
    static CURRENT: Cell<Option<(RunId, usize)>> = const { Cell::new(None) };
}

/// Marks the current thread as running stage `stage` of pipeline run `run`,
/// until it is dropped (then the previous mark is back).
///
/// weir's runtime enters one around every run of a stage of a checkpointed
/// pipeline, so that a file dead-letter queue attached to that run knows which
/// stage a letter comes from, and so on which side of each checkpoint barrier it
/// lies (see the [module](super)). Not `Send`: it marks the thread that made it.
///
/// # Examples
///
/// ```
/// use weir_supervisor::dead_letter::{RunId, StageScope};
///
/// let run = RunId::new();
/// {
///     let _scope = StageScope::enter(run, 3);
///     // Letters offered here come from stage 3 of `run`.
/// }
/// ```
#[derive(Debug)]
#[must_use = "the scope ends when it is dropped"]
pub struct StageScope {
    previous: Option<(RunId, usize)>,
    _this_thread: PhantomData<*const ()>,
}

impl StageScope {
    /// Enters stage `stage` of `run` on this thread.
    pub fn enter(run: RunId, stage: usize) -> Self {
        let previous = CURRENT.with(|c| c.replace(Some((run, stage))));
        StageScope {
            previous,
            _this_thread: PhantomData,
        }
    }
}

impl Drop for StageScope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// The stage of `run` this thread is running, if it is in a scope of `run`.
pub(crate) fn current_stage(run: RunId) -> Option<usize> {
    CURRENT.with(|c| c.get().and_then(|(r, s)| (r == run).then_some(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_name_their_run() {
        let (a, b) = (RunId::new(), RunId::new());
        assert_ne!(a, b);
        assert_eq!(current_stage(a), None);
        {
            let _outer = StageScope::enter(a, 1);
            assert_eq!(current_stage(a), Some(1));
            assert_eq!(current_stage(b), None);
            {
                let _inner = StageScope::enter(b, 4);
                assert_eq!(current_stage(a), None);
                assert_eq!(current_stage(b), Some(4));
            }
            assert_eq!(current_stage(a), Some(1));
            // Another thread is in no scope.
            std::thread::spawn(move || assert_eq!(current_stage(a), None))
                .join()
                .unwrap();
        }
        assert_eq!(current_stage(a), None);
    }
}
