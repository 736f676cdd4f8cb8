//! [`Budget`]: `max_elements` and `max_bytes`, a total the stream may not exceed
//! (a limited stream).

use std::task::Context;

use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};

/// What a [`Budget`] stage does with the first element that would take the total
/// past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtLimit {
    /// End the stream before that element: everything within the budget is
    /// delivered, the stream ends downstream, and upstream is cancelled. The
    /// element and whatever is queued behind it are counted as abandoned at this
    /// stage (as for `take`); the pipeline completes.
    End,
    /// Fail the pipeline with [`ErrorClass::ResourceExhausted`], naming the limit,
    /// the element's size and the total it would reach; that element is counted as
    /// failed. What passed before it has been delivered.
    Fail,
}

/// Passes elements while their total size stays within a limit. Created by
/// [`LimitExt::max_elements`](super::LimitExt::max_elements) (every element
/// weighs 1) and [`LimitExt::max_bytes`](super::LimitExt::max_bytes).
///
/// State: one running total (`u64`, saturating), checkpointed. Order is kept. The total is
/// never exceeded: the element that would exceed it is not passed (see
/// [`AtLimit`]).
pub struct Budget<T, S> {
    kind: &'static str,
    limit: u64,
    used: u64,
    size: S,
    at_limit: AtLimit,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T, S> Budget<T, S> {
    pub(crate) fn new(kind: &'static str, limit: u64, size: S, at_limit: AtLimit) -> Self {
        Budget {
            kind,
            limit,
            used: 0,
            size,
            at_limit,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T, S> std::fmt::Debug for Budget<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("kind", &self.kind)
            .field("limit", &self.limit)
            .field("used", &self.used)
            .field("at_limit", &self.at_limit)
            .finish_non_exhaustive()
    }
}

/// The version of [`Budget`]'s snapshot.
const STATE_VERSION: u32 = 1;

impl<T, S> Checkpointable for Budget<T, S> {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(STATE_VERSION, &self.used)
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.used = snapshot.decode(STATE_VERSION, ctx)?;
        Ok(())
    }
}

impl<T, S> Operator for Budget<T, S>
where
    T: Send + 'static,
    S: FnMut(&T) -> u64 + Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn fusable(&self) -> bool {
        true
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some(x) = io.pop() else { break };
            let size = (self.size)(&x);
            let total = self.used.saturating_add(size);
            if total > self.limit {
                return match self.at_limit {
                    AtLimit::End => {
                        io.unpop(x);
                        Step::Finished
                    }
                    AtLimit::Fail => Step::Failed(Failure::error(
                        ErrorClass::ResourceExhausted,
                        format!(
                            "{} limit of {} exceeded: an element of {size} would bring the total to {total}",
                            self.kind, self.limit
                        ),
                    )),
                };
            }
            self.used = total;
            io.push(x);
        }
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_resumes;

    #[test]
    fn a_restored_budget_counts_what_passed_before() {
        let input: Vec<u64> = (0..30).map(|i| i % 4).collect();
        let make = || Budget::new("max_bytes", 25, |x: &u64| *x, AtLimit::End);
        assert_resumes(&make, &input, &[0, 1, 9, 15]);
    }
}
