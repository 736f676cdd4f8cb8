//! [`ForEach`]: a sink that calls a function per element.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::Context;

use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Calls a function with each element; an element is delivered when the call
/// returns. Created by [`FlowExt::for_each`](crate::FlowExt::for_each).
pub struct ForEach<F, T> {
    f: F,
    _type: PhantomData<fn(T)>,
}

impl<F, T> ForEach<F, T> {
    pub(crate) fn new(f: F) -> Self {
        ForEach {
            f,
            _type: PhantomData,
        }
    }
}

impl<F, T> std::fmt::Debug for ForEach<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForEach")
    }
}

impl<F, T> Operator for ForEach<F, T>
where
    F: FnMut(T) + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "for_each"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, T, Infallible>, _cx: &mut Context<'_>) -> Step {
        io.consume_all(&mut self.f);
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {

    use std::sync::{Arc, Mutex};

    use weir_runtime::Outcome;

    use crate::test_support::{Gate, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn calls_the_function_for_every_element_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let input: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
        let done = run_small(
            Pipeline::from_iter(input.clone()).for_each(move |s| log.lock().unwrap().push(s)),
        );
        assert_eq!(*seen.lock().unwrap(), input);
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let sink = r.stage("for_each#1").unwrap();
        assert!(sink.is_sink);
        assert_eq!((sink.input, sink.completed), (50, 50));
        assert!(sink.peak_occupancy <= 3);
        assert_eq!(r.delivered(), 50);
    }

    #[test]
    fn empty_input() {
        let done =
            run_small(Pipeline::from_iter(0..0_u32).for_each(|_| panic!("nothing to consume")));
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.delivered(), 0);
    }

    #[test]
    fn panic_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..30_u32)
                .for_each(move |x| {
                    if x == 0 {
                        g.boom("sink panics on 0")
                    }
                })
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "for_each#1",
        );
        let sink = report.stage("for_each#1").unwrap();
        assert_eq!((sink.failed, sink.completed), (1, 0));
    }

    /// The whole input arrives in one batch: the elements delivered before the
    /// panic count as delivered, not failed.
    #[test]
    fn panic_mid_batch_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..10_u32).for_each(move |x| {
                if x == 5 {
                    g.boom("sink panics on 5")
                }
            }),
            &gate,
            "for_each#1",
        );
        let sink = report.stage("for_each#1").unwrap();
        assert_eq!(sink.failed, 1);
        assert_eq!(sink.completed, 5);
        assert_eq!(sink.abandoned, 4);
        assert_eq!(report.delivered(), 5);
    }
}
