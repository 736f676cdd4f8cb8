//! [`Filter`]: keeps the elements a predicate accepts.

use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Keeps elements for which the predicate returns true; the others are counted as
/// filtered. Created by [`FlowExt::filter`](crate::FlowExt::filter). Order preserved.
pub struct Filter<F, T> {
    predicate: F,
    _type: std::marker::PhantomData<fn(T) -> T>,
}

impl<F, T> Filter<F, T> {
    /// The operator behind [`FlowExt::filter`](crate::FlowExt::filter), for [`Flow::via`](weir_runtime::Flow::via) (elements that are not `Clone`).
    pub fn new(predicate: F) -> Self {
        Filter {
            predicate,
            _type: std::marker::PhantomData,
        }
    }
}

impl<F, T> std::fmt::Debug for Filter<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Filter")
    }
}

impl<F, T> Operator for Filter<F, T>
where
    F: FnMut(&T) -> bool + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "filter"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn may_filter(&self) -> bool {
        true
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        io.filter_batch(&mut self.predicate);
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {

    use weir_runtime::Outcome;

    use crate::test_support::{Gate, rt, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn keeps_accepted_elements_in_order_and_counts_the_rest() {
        let done = run_small(
            Pipeline::from_iter(0..100_u32)
                .filter(|x| x % 3 == 0)
                .collect(),
        );
        assert_eq!(done.output, (0..100).step_by(3).collect::<Vec<_>>());
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let filter = r.stage("filter#1").unwrap();
        assert_eq!(filter.input, 100);
        assert_eq!(filter.completed, 34);
        assert_eq!(filter.produced, 34);
        assert_eq!(filter.filtered, 66);
        assert!(filter.largest_batch <= 2);
        assert!(filter.peak_occupancy <= 3);
        assert_eq!(r.filtered(), 66);
        assert_eq!(r.delivered(), 34);
    }

    #[test]
    fn rejecting_everything_ends_the_stream() {
        let done = run_small(Pipeline::from_iter(0..50_u32).filter(|_| false).collect());
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
        let filter = done.report.stage("filter#1").unwrap();
        assert_eq!((filter.filtered, filter.completed), (50, 0));
    }

    #[test]
    fn accepting_everything_passes_non_copy_elements_through() {
        let words: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
        let done = run_small(
            Pipeline::from_iter(words.clone())
                .filter(|s| !s.is_empty())
                .collect(),
        );
        assert_eq!(done.output, words);
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.stage("filter#1").unwrap().filtered, 0);
    }

    #[test]
    fn empty_input() {
        let done = run_small(
            Pipeline::from_iter(Vec::<u32>::new())
                .filter(|_| true)
                .collect(),
        );
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
    }

    /// A filter with little room downstream stops at the room with input left over:
    /// it must not finish early (a limit-stopped filter once looked drained).
    #[test]
    fn sparse_output_with_tiny_room_loses_nothing() {
        let rt = rt();
        let done = Pipeline::from_iter(0..1000_u32)
            .filter(|x| x % 2 == 0)
            .collect()
            .default_capacity(1)
            .max_batch(1)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, (0..1000).step_by(2).collect::<Vec<_>>());
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.stage("filter#1").unwrap().filtered, 500);
    }

    #[test]
    fn panic_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..50_u32)
                .filter(move |&x| {
                    if x == 0 {
                        g.boom("filter panics on 0")
                    }
                    true
                })
                .collect()
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "filter#1",
        );
        assert_eq!(report.stage("filter#1").unwrap().failed, 1);
        assert_eq!(report.failed(), 1);
    }

    /// The whole input arrives in one batch; the elements the predicate rejected
    /// before it panicked are filtered, not failed.
    #[test]
    fn panic_mid_batch_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..10_u32)
                .filter(move |&x| {
                    if x == 5 {
                        g.boom("filter panics on 5")
                    }
                    x % 2 == 0
                })
                .collect(),
            &gate,
            "filter#1",
        );
        let filter = report.stage("filter#1").unwrap();
        assert_eq!(filter.failed, 1);
        assert_eq!(filter.filtered, 2); // 1, 3
        assert_eq!(filter.completed, 3); // 0, 2, 4
        assert_eq!(filter.abandoned, 4); // 6..10
    }
}
