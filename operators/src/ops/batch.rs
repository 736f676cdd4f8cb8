//! [`Batch`]: like conflate, but at most `max` elements per summary, then wait.

use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

use super::slack::Slack;

/// Sends each element on while downstream has room; while it has none, folds the
/// arriving elements into one summary of at most `max` elements (`seed` starts
/// it, `aggregate` adds to it), sent as soon as there is room. Once a summary
/// holds `max` elements the stage takes no more input and upstream waits. Created
/// by [`FlowControlExt::batch`](crate::ops::FlowControlExt::batch) (Akka's `batch`).
///
/// Counting as for [`Conflate`](super::Conflate): a summary completes its seed,
/// the other elements in it are counted as `filtered` (combined). Memory: one
/// summary of at most `max` elements.
pub struct Batch<T, S, Seed, Agg> {
    max: usize,
    seed: Seed,
    aggregate: Agg,
    /// The summary being built and how many elements it holds.
    summary: Option<(S, usize)>,
    slack: Slack,
    _t: PhantomData<fn(T)>,
}

impl<T, S, Seed, Agg> Batch<T, S, Seed, Agg> {
    pub(crate) fn new(max: usize, seed: Seed, aggregate: Agg) -> Self {
        Batch {
            max,
            seed,
            aggregate,
            summary: None,
            slack: Slack::default(),
            _t: PhantomData,
        }
    }
}

impl<T, S, Seed, Agg> Batch<T, S, Seed, Agg> {
    /// Whether a summary is waiting for room.
    pub(super) fn pending(&self) -> bool {
        self.summary.is_some()
    }
}

impl<T, S, Seed, Agg> std::fmt::Debug for Batch<T, S, Seed, Agg> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("max", &self.max)
            .field("pending", &self.summary.as_ref().map(|(_, n)| *n))
            .finish()
    }
}

impl<T, S, Seed, Agg> Operator for Batch<T, S, Seed, Agg>
where
    T: Send + 'static,
    S: Send + 'static,
    Seed: FnMut(T) -> S + Send + 'static,
    Agg: FnMut(S, T) -> S + Send + 'static,
{
    type In = T;
    type Out = S;

    fn kind(&self) -> &'static str {
        "batch"
    }

    fn validate(&self) -> Result<(), String> {
        if self.max == 0 {
            Err("batch with max 0 could never hold an element".into())
        } else {
            Ok(())
        }
    }

    fn held(&self) -> usize {
        usize::from(self.summary.is_some())
    }

    fn step(&mut self, io: &mut Io<'_, T, S>, _cx: &mut Context<'_>) -> Step {
        let keep = self.slack.keep(io);
        loop {
            // A full summary takes no more input: the unit of credit kept back
            // for taking input is of no use then, so it may be spent.
            let full = self.summary.as_ref().is_some_and(|(_, n)| *n >= self.max);
            let keep_now = if full { 0 } else { keep };
            if io.room() > keep_now
                && let Some((summary, _)) = self.summary.take()
            {
                io.push(summary);
            }
            if self.summary.as_ref().is_some_and(|(_, n)| *n >= self.max) {
                break;
            }
            let Some(x) = io.pop() else { break };
            self.summary = Some(match self.summary.take() {
                None => ((self.seed)(x), 1),
                Some((summary, n)) => {
                    let summary = (self.aggregate)(summary, x);
                    io.filter();
                    (summary, n + 1)
                }
            });
        }
        let keep = if io.input_exhausted() { 0 } else { keep };
        if io.room() > keep
            && let Some((summary, _)) = self.summary.take()
        {
            io.push(summary);
        }
        if io.input_exhausted() && self.summary.is_none() {
            Step::Finished
        } else {
            Step::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_runtime::BuildError;

    use crate::ops::FlowControlExt;
    use crate::test_support::{rt, run_small};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn batches_never_exceed_max_and_keep_order() {
        let done = run_small(
            Pipeline::from_iter(0..300_u32)
                .batch(
                    5,
                    |x| vec![x],
                    |mut v, x| {
                        v.push(x);
                        v
                    },
                )
                .collect(),
        );
        assert!(done.output.iter().all(|v| (1..=5).contains(&v.len())));
        assert_eq!(done.output.concat(), (0..300).collect::<Vec<_>>());
        let b = done.report.stage("batch#1").unwrap();
        assert_eq!(b.filtered, 300 - done.output.len() as u64);
    }

    #[test]
    fn max_zero_is_rejected_at_build_time() {
        let err = Pipeline::from_iter(0..3_u32)
            .batch(0, |x| x, |a, x| a + x)
            .collect()
            .run(&rt())
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "batch#1"),
            "{err:?}"
        );
    }
}
