//! [`Take`]: the first `n` elements, then end the stream.

use std::task::Context;

use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Io, Operator, Step};

/// Passes the first `n` elements, then ends the stream downstream and cancels
/// upstream. Elements already in flight behind the `n`-th are counted as abandoned
/// at this stage. Created by [`FlowExt::take`](crate::FlowExt::take).
///
/// Checkpointable: the number passed so far. A take restored with `n` elements
/// passed or more finishes at once.
#[derive(Debug)]
pub struct Take<T> {
    limit: u64,
    remaining: u64,
    _type: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> Take<T> {
    /// The operator behind [`FlowExt::take`](crate::FlowExt::take), for [`Flow::via`](weir_runtime::Flow::via) (elements that are not `Clone`).
    pub fn new(n: u64) -> Self {
        Take {
            limit: n,
            remaining: n,
            _type: std::marker::PhantomData,
        }
    }
}

/// The version of [`Take`]'s snapshot.
const STATE_VERSION: u32 = 1;

impl<T> Checkpointable for Take<T> {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(STATE_VERSION, &(self.limit - self.remaining))
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let passed: u64 = snapshot.decode(STATE_VERSION, ctx)?;
        self.remaining = self.limit.saturating_sub(passed);
        Ok(())
    }
}

impl<T: Send + 'static> Operator for Take<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "take"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        while self.remaining > 0 && io.has_room() {
            let Some(x) = io.pop() else { break };
            io.push(x);
            self.remaining -= 1;
        }
        if self.remaining == 0 {
            Step::Finished
        } else {
            io.finish_when_drained()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_restored_take_counts_what_passed_and_ends_at_its_limit() {
        let input: Vec<u32> = (0..30).collect();
        // 10 is the limit: the restored take finishes at once.
        crate::test_support::assert_resumes(&|| super::Take::new(10), &input, &[0, 1, 7, 10]);
    }

    use crate::test_support::run_small;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use weir_runtime::Outcome;

    use crate::{FlowExt, Pipeline};

    #[test]
    fn passes_the_first_n_then_ends() {
        let done = run_small(Pipeline::from_iter(0..100_u32).take(10).collect());
        assert_eq!(done.output, (0..10).collect::<Vec<_>>());
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let take = r.stage("take#1").unwrap();
        assert_eq!((take.completed, take.produced), (10, 10));
        // What reached take behind the tenth element is abandoned there.
        assert_eq!(take.input, 10 + take.abandoned);
        assert!(
            take.abandoned <= 3,
            "at most its capacity: {}",
            take.abandoned
        );
        assert!(take.largest_batch <= 2);
    }

    #[test]
    fn take_zero_passes_nothing() {
        let done = run_small(Pipeline::from_iter(0..100_u32).take(0).collect());
        assert!(done.output.is_empty());
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let take = r.stage("take#1").unwrap();
        assert_eq!((take.completed, take.produced), (0, 0));
        assert_eq!(take.input, take.abandoned);
        assert_eq!(r.delivered(), 0);
    }

    #[test]
    fn take_more_than_the_input_passes_everything() {
        let done = run_small(
            Pipeline::from_iter((0..5).map(|i| i.to_string()))
                .take(1_000)
                .collect(),
        );
        assert_eq!(done.output, ["0", "1", "2", "3", "4"]);
        let r = &done.report;
        r.check_conservation().unwrap();
        let take = r.stage("take#1").unwrap();
        assert_eq!((take.input, take.completed, take.abandoned), (5, 5, 0));
    }

    #[test]
    fn take_exactly_the_input() {
        let done = run_small(Pipeline::from_iter(0..6_u32).take(6).collect());
        assert_eq!(done.output, [0, 1, 2, 3, 4, 5]);
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn take_on_empty_input() {
        let done = run_small(Pipeline::from_iter(0..0_u32).take(3).collect());
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
    }

    /// An endless source stops: take cancels it, and it pulled only what credit
    /// allowed.
    #[test]
    fn take_stops_an_infinite_source() {
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&pulled);
        let done = run_small(
            Pipeline::from_iter((0_u64..).inspect(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            }))
            .take(25)
            .collect(),
        );
        assert_eq!(done.output, (0..25).collect::<Vec<_>>());
        let r = &done.report;
        r.check_conservation().unwrap();
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(pulled <= 25 + 3, "pulled {pulled}");
        assert_eq!(r.stage("iter#0").unwrap().produced, pulled);
        assert_eq!(r.admitted(), pulled);
    }

    #[test]
    fn take_zero_on_an_infinite_source() {
        let done = run_small(Pipeline::from_iter(0_u64..).take(0).collect());
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn chained_takes_keep_the_smaller() {
        let done = run_small(
            Pipeline::from_iter(0_u64..)
                .take(9)
                .map(|x| x + 1)
                .take(4)
                .collect(),
        );
        assert_eq!(done.output, [1, 2, 3, 4]);
        done.report.check_conservation().unwrap();
    }
}
