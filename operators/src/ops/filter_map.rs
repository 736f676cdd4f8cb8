//! [`FilterMap`]: maps and drops in one step.

use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Applies a function returning `Option`; `None` counts as filtered. Created by
/// [`FlowExt::filter_map`](crate::FlowExt::filter_map). Order preserved.
pub struct FilterMap<F, In, Out> {
    f: F,
    _types: PhantomData<fn(In) -> Out>,
}

impl<F, In, Out> FilterMap<F, In, Out> {
    /// The operator behind [`FlowExt::filter_map`](crate::FlowExt::filter_map), for [`Flow::via`](weir_runtime::Flow::via) (elements that are not `Clone`).
    pub fn new(f: F) -> Self {
        FilterMap {
            f,
            _types: PhantomData,
        }
    }
}

impl<F, In, Out> std::fmt::Debug for FilterMap<F, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilterMap")
    }
}

impl<F, In, Out> Operator for FilterMap<F, In, Out>
where
    F: FnMut(In) -> Option<Out> + Send + 'static,
    In: Send + 'static,
    Out: Send + 'static,
{
    type In = In;
    type Out = Out;

    fn kind(&self) -> &'static str {
        "filter_map"
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
    fn step(&mut self, io: &mut Io<'_, In, Out>, _cx: &mut Context<'_>) -> Step {
        io.filter_map_batch(&mut self.f);
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {

    use crate::test_support::{Gate, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn maps_somes_in_order_and_counts_nones_as_filtered() {
        let input: Vec<String> = (0..60)
            .map(|i| {
                if i % 4 == 1 {
                    format!("x{i}")
                } else {
                    i.to_string()
                }
            })
            .collect();
        let done = run_small(
            Pipeline::from_iter(input)
                .filter_map(|s| s.parse::<u32>().ok())
                .collect(),
        );
        let expected: Vec<u32> = (0..60).filter(|i| i % 4 != 1).collect();
        assert_eq!(done.output, expected);
        let r = &done.report;
        r.check_conservation().unwrap();
        let fm = r.stage("filter_map#1").unwrap();
        assert_eq!(fm.input, 60);
        assert_eq!(fm.filtered, 15);
        assert_eq!((fm.completed, fm.produced), (45, 45));
        assert!(fm.largest_batch <= 2);
    }

    #[test]
    fn all_none_and_empty_input() {
        let done = run_small(
            Pipeline::from_iter(0..30_u32)
                .filter_map(|_| None::<u8>)
                .collect(),
        );
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.stage("filter_map#1").unwrap().filtered, 30);

        let done = run_small(Pipeline::from_iter(0..0_u32).filter_map(Some).collect());
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn panic_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..50_u32)
                .filter_map(move |x| {
                    if x == 0 {
                        g.boom("filter_map panics on 0")
                    }
                    Some(x)
                })
                .collect()
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "filter_map#1",
        );
        assert_eq!(report.stage("filter_map#1").unwrap().failed, 1);
        assert_eq!(report.failed(), 1);
    }

    /// The whole input arrives in one batch; the `None`s before the panic are
    /// filtered, not failed.
    #[test]
    fn panic_mid_batch_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..10_u32)
                .filter_map(move |x| {
                    if x == 5 {
                        g.boom("filter_map panics on 5")
                    }
                    (x % 2 == 0).then_some(x * 10)
                })
                .collect(),
            &gate,
            "filter_map#1",
        );
        let fm = report.stage("filter_map#1").unwrap();
        assert_eq!(fm.failed, 1);
        assert_eq!(fm.filtered, 2);
        assert_eq!(fm.completed, 3);
        assert_eq!(fm.abandoned, 4);
    }
}
