//! [`Inspect`]: looks at each element and passes it on.

use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Calls a function with a reference to each element, then passes the element on.
/// Created by [`FlowExt::inspect`](crate::FlowExt::inspect).
pub struct Inspect<F, T> {
    f: F,
    _type: std::marker::PhantomData<fn(T) -> T>,
}

impl<F, T> Inspect<F, T> {
    /// The operator behind [`FlowExt::inspect`](crate::FlowExt::inspect), for [`Flow::via`](weir_runtime::Flow::via) (elements that are not `Clone`).
    pub fn new(f: F) -> Self {
        Inspect {
            f,
            _type: std::marker::PhantomData,
        }
    }
}

impl<F, T> std::fmt::Debug for Inspect<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inspect")
    }
}

impl<F, T> Operator for Inspect<F, T>
where
    F: FnMut(&T) + Send + 'static,
    T: Send + 'static,
{
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "inspect"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn retry_safe(&self) -> bool {
        true
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, T, T>, _cx: &mut Context<'_>) -> Step {
        let f = &mut self.f;
        io.map_batch(|x| {
            f(&x);
            x
        });
        io.finish_when_drained()
    }
}

#[cfg(test)]
mod tests {

    use std::sync::{Arc, Mutex};

    use crate::test_support::{Gate, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn sees_every_element_in_order_and_passes_it_on_unchanged() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let input: Vec<String> = (0..40).map(|i| format!("e{i}")).collect();
        let done = run_small(
            Pipeline::from_iter(input.clone())
                .inspect(move |s: &String| log.lock().unwrap().push(s.clone()))
                .collect(),
        );
        assert_eq!(done.output, input);
        assert_eq!(*seen.lock().unwrap(), input);
        let r = &done.report;
        r.check_conservation().unwrap();
        let inspect = r.stage("inspect#1").unwrap();
        assert_eq!(
            (inspect.input, inspect.completed, inspect.produced),
            (40, 40, 40)
        );
        assert_eq!(inspect.filtered, 0);
        assert!(inspect.largest_batch <= 2);
    }

    #[test]
    fn empty_input_calls_nothing() {
        let done = run_small(
            Pipeline::from_iter(Vec::<u8>::new())
                .inspect(|_| panic!("no element to inspect"))
                .collect(),
        );
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn panic_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..10_u32)
                .inspect(move |&x| {
                    if x == 6 {
                        g.boom("inspect panics on 6")
                    }
                })
                .collect(),
            &gate,
            "inspect#1",
        );
        let inspect = report.stage("inspect#1").unwrap();
        assert_eq!(inspect.failed, 1);
        assert_eq!(inspect.completed, 6);
        assert_eq!(inspect.abandoned, 3);
    }
}
