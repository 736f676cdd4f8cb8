//! [`Map`]: one output per input.

use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Applies a function to every element. Created by
/// [`FlowExt::map`](crate::FlowExt::map). Order preserved.
pub struct Map<F, In, Out> {
    f: F,
    _types: PhantomData<fn(In) -> Out>,
}

impl<F, In, Out> Map<F, In, Out> {
    /// The operator behind [`FlowExt::map`](crate::FlowExt::map), for [`Flow::via`](weir_runtime::Flow::via) (elements that are not `Clone`).
    pub fn new(f: F) -> Self {
        Map {
            f,
            _types: PhantomData,
        }
    }
}

impl<F, In, Out> std::fmt::Debug for Map<F, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Map")
    }
}

impl<F, In, Out> Operator for Map<F, In, Out>
where
    F: FnMut(In) -> Out + Send + 'static,
    In: Send + 'static,
    Out: Send + 'static,
{
    type In = In;
    type Out = Out;

    fn kind(&self) -> &'static str {
        "map"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn retry_safe(&self) -> bool {
        true
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, In, Out>, _cx: &mut Context<'_>) -> Step {
        io.map_batch(&mut self.f);
        io.finish_when_drained()
    }
}

/// [`Map`] for elements that are `Clone`, behind [`FlowExt::map`](crate::FlowExt::map):
/// in a supervised stage, it clones each element as it maps it
/// ([`Io::map_batch_cloning`]) instead of the stage copying the batch beforehand.
pub(crate) struct MapCloning<F, In, Out>(Map<F, In, Out>);

impl<F, In, Out> MapCloning<F, In, Out> {
    pub(crate) fn new(f: F) -> Self {
        MapCloning(Map::new(f))
    }
}

impl<F, In, Out> Operator for MapCloning<F, In, Out>
where
    F: FnMut(In) -> Out + Send + 'static,
    In: Clone + Send + 'static,
    Out: Send + 'static,
{
    type In = In;
    type Out = Out;

    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn fusable(&self) -> bool {
        self.0.fusable()
    }

    fn retry_safe(&self) -> bool {
        self.0.retry_safe()
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, In, Out>, _cx: &mut Context<'_>) -> Step {
        io.map_batch_cloning(&mut self.0.f);
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {

    use weir_runtime::Outcome;

    use crate::test_support::{Gate, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn maps_every_element_in_order() {
        let done = run_small(Pipeline::from_iter(0..100_u64).map(|x| x * 3).collect());
        assert_eq!(done.output, (0..100).map(|x| x * 3).collect::<Vec<_>>());
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let map = r.stage("map#1").unwrap();
        assert_eq!(map.kind, "map");
        assert!(map.one_to_one);
        assert_eq!((map.input, map.completed, map.produced), (100, 100, 100));
        assert_eq!((map.filtered, map.failed, map.abandoned), (0, 0, 0));
        assert!(map.largest_batch <= 2);
        assert!(map.peak_occupancy <= 3);
        assert_eq!(map.bound_violations, 0);
        assert_eq!(r.delivered(), 100);
    }

    #[test]
    fn maps_to_another_non_copy_type_with_state() {
        let mut seq = 0;
        let done = run_small(
            Pipeline::from_iter(["a", "b", "c", "d", "e"])
                .map(move |s| {
                    seq += 1;
                    format!("{seq}{s}")
                })
                .map(|s: String| s.repeat(2))
                .collect(),
        );
        assert_eq!(done.output, ["1a1a", "2b2b", "3c3c", "4d4d", "5e5e"]);
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.stage("map#2").unwrap().completed, 5);
    }

    #[test]
    fn empty_input() {
        let done = run_small(
            Pipeline::from_iter(std::iter::empty::<u32>())
                .map(|x| x + 1)
                .collect(),
        );
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
        let map = done.report.stage("map#1").unwrap();
        assert_eq!((map.input, map.completed, map.produced), (0, 0, 0));
    }

    #[test]
    fn panic_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..50_u32)
                .map(move |x| {
                    if x == 20 {
                        g.boom("map panics on 20")
                    }
                    x
                })
                .collect()
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "map#1",
        );
        let map = report.stage("map#1").unwrap();
        assert_eq!(map.failed, 1);
        assert_eq!(map.completed, 20);
        assert_eq!(report.failed(), 1);
    }

    /// The whole input arrives in one batch: the elements behind the panicking one
    /// are abandoned, the ones before it completed.
    #[test]
    fn panic_mid_batch_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter((0..10).map(|i| i.to_string()))
                .map(move |s| {
                    if s == "4" {
                        g.boom("map panics on 4")
                    }
                    s + "!"
                })
                .collect(),
            &gate,
            "map#1",
        );
        let map = report.stage("map#1").unwrap();
        assert_eq!(map.input, 10);
        assert_eq!(map.failed, 1);
        assert_eq!(map.completed, 4);
        assert_eq!(map.abandoned, 5);
    }
}
