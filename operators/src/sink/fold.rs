//! [`Fold`]: a sink that folds every element into an accumulator.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::Context;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::OutputSender;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Folds every element into an accumulator returned as the pipeline's output.
/// Created by [`FlowExt::fold`](crate::FlowExt::fold).
pub struct Fold<F, T, A> {
    acc: Option<A>,
    f: F,
    output: OutputSender<A>,
    _type: PhantomData<fn(T)>,
}

impl<F, T, A> Fold<F, T, A> {
    pub(crate) fn new(init: A, f: F, output: OutputSender<A>) -> Self {
        Fold {
            acc: Some(init),
            f,
            output,
            _type: PhantomData,
        }
    }
}

impl<F, T, A> std::fmt::Debug for Fold<F, T, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fold")
    }
}

/// The version of [`Fold`]'s snapshot.
const STATE_VERSION: u32 = 1;

impl<F, T, A: Serialize + DeserializeOwned> Checkpointable for Fold<F, T, A> {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(STATE_VERSION, &self.acc)
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.acc = snapshot.decode(STATE_VERSION, ctx)?;
        Ok(())
    }
}

impl<F, T, A> Operator for Fold<F, T, A>
where
    F: FnMut(A, T) -> A + Send + 'static,
    T: Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
{
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "fold"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    #[inline]
    fn step(&mut self, io: &mut Io<'_, T, Infallible>, _cx: &mut Context<'_>) -> Step {
        // The accumulator is only absent after `on_stop`.
        // The accumulator lives in a local during the loop (a register for small
        // types). If `f` panics it is lost with the element: the stage has failed and
        // its state is gone, as it would be on a restart.
        let mut acc = self.acc.take();
        let f = &mut self.f;
        io.consume_all(|x| acc = acc.take().map(|a| f(a, x)));
        self.acc = acc;
        io.finish_when_drained()
    }

    fn on_stop(&mut self) {
        if let Some(acc) = self.acc.take() {
            self.output.send(acc);
        }
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_restored_fold_goes_on_from_its_accumulator() {
        let input: Vec<u64> = (1..=50).collect();
        let make = |tx| {
            super::Fold::new(
                Vec::new(),
                |mut acc: Vec<u64>, x: u64| {
                    acc.push(x * 2);
                    acc
                },
                tx,
            )
        };
        crate::test_support::assert_sink_resumes(&make, &input, &[0, 1, 33, 50]);
    }

    use crate::test_support::{Gate, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn folds_every_element() {
        let done = run_small(Pipeline::from_iter(1..=100_u64).fold(0, |acc, x| acc + x));
        assert_eq!(done.output, 5050);
        let r = &done.report;
        r.check_conservation().unwrap();
        let fold = r.stage("fold#1").unwrap();
        assert!(fold.is_sink);
        assert_eq!((fold.input, fold.completed), (100, 100));
    }

    #[test]
    fn folds_in_order_with_a_non_copy_accumulator() {
        let done = run_small(Pipeline::from_iter((0..30).map(|i| i.to_string())).fold(
            String::new(),
            |mut acc, s| {
                acc.push_str(&s);
                acc.push(',');
                acc
            },
        ));
        let expected: String = (0..30).map(|i| format!("{i},")).collect();
        assert_eq!(done.output, expected);
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn empty_input_returns_init() {
        let done = run_small(
            Pipeline::from_iter(0..0_u32).fold(vec![7_u32], |mut acc, x| {
                acc.push(x);
                acc
            }),
        );
        assert_eq!(done.output, [7]);
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn panic_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..30_u32)
                .fold(0, move |acc, x| {
                    if x == 0 {
                        g.boom("fold panics on 0")
                    }
                    acc + x
                })
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "fold#1",
        );
        let fold = report.stage("fold#1").unwrap();
        assert_eq!((fold.failed, fold.completed), (1, 0));
    }

    /// The whole input arrives in one batch: the elements folded before the panic
    /// count as completed, not failed.
    #[test]
    fn panic_mid_batch_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..10_u32).fold(0, move |acc, x| {
                if x == 3 {
                    g.boom("fold panics on 3")
                }
                acc + x
            }),
            &gate,
            "fold#1",
        );
        let fold = report.stage("fold#1").unwrap();
        assert_eq!(fold.failed, 1);
        assert_eq!(fold.completed, 3);
        assert_eq!(fold.abandoned, 6);
    }
}
