//! [`Conflate`]: while downstream is slow, combine what arrives into one summary.

use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

use super::Batch;

/// Sends each element on while downstream has room; while it has none, folds the
/// arriving elements into one summary (`seed` starts it, `aggregate` adds to it)
/// that is sent as soon as there is room. Never makes upstream wait (see below).
/// Created by [`FlowControlExt::conflate`](crate::ops::FlowControlExt::conflate) (Akka's
/// `conflateWithSeed`).
///
/// Counting: a summary completes the element that seeded it; every element folded
/// into a summary after the seed is counted as `filtered` on the stage (combined,
/// not lost: its contribution is in the summary). A summary waiting for room is
/// one element in flight. So `input = completed + filtered + …` holds, and
/// `filtered` is the exact number of combined elements.
///
/// Like a dropping [`Buffer`](super::Buffer), it keeps one unit of the downstream
/// edge's credit back so that its stage is stepped whenever input arrives; that
/// needs room for two elements downstream (capacity and batch limit of at least 2).
pub struct Conflate<T, S, Seed, Agg> {
    /// A batch without a limit: the same loop, the same counting.
    batch: Batch<T, S, Seed, Agg>,
}

impl<T, S, Seed, Agg> Conflate<T, S, Seed, Agg> {
    pub(crate) fn new(seed: Seed, aggregate: Agg) -> Self {
        Conflate {
            batch: Batch::new(usize::MAX, seed, aggregate),
        }
    }
}

impl<T, S, Seed, Agg> std::fmt::Debug for Conflate<T, S, Seed, Agg> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conflate")
            .field("pending", &self.batch.pending())
            .finish()
    }
}

impl<T, S, Seed, Agg> Operator for Conflate<T, S, Seed, Agg>
where
    T: Send + 'static,
    S: Send + 'static,
    Seed: FnMut(T) -> S + Send + 'static,
    Agg: FnMut(S, T) -> S + Send + 'static,
{
    type In = T;
    type Out = S;

    fn kind(&self) -> &'static str {
        "conflate"
    }

    fn held(&self) -> usize {
        self.batch.held()
    }

    fn step(&mut self, io: &mut Io<'_, T, S>, cx: &mut Context<'_>) -> Step {
        self.batch.step(io, cx)
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::FlowControlExt;
    use crate::test_support::run_small;
    use crate::{FlowExt, Pipeline};

    /// Summaries of consecutive runs: nothing lost, order kept, combined counted.
    #[test]
    fn summaries_cover_every_element_once_in_order() {
        let done = run_small(
            Pipeline::from_iter(0..300_u32)
                .conflate(
                    |x| vec![x],
                    |mut v, x| {
                        v.push(x);
                        v
                    },
                )
                .collect(),
        );
        assert_eq!(done.output.concat(), (0..300).collect::<Vec<_>>());
        let c = done.report.stage("conflate#1").unwrap();
        assert_eq!(c.completed, done.output.len() as u64);
        assert_eq!(c.filtered, 300 - done.output.len() as u64);
    }
}
