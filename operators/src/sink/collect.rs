//! [`Collect`]: a sink that gathers every element into a `Vec`.

use std::convert::Infallible;
use std::task::Context;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::OutputSender;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Gathers every element, in order, into a `Vec` returned as the pipeline's output.
/// Memory grows with the stream: use it for bounded streams and tests. Created by
/// [`FlowExt::collect`](crate::FlowExt::collect).
#[derive(Debug)]
pub struct Collect<T> {
    items: Vec<T>,
    output: OutputSender<Vec<T>>,
}

impl<T> Collect<T> {
    pub(crate) fn new(output: OutputSender<Vec<T>>) -> Self {
        Collect {
            items: Vec::new(),
            output,
        }
    }
}

/// The version of [`Collect`]'s snapshot.
const STATE_VERSION: u32 = 1;

impl<T: Serialize + DeserializeOwned> Checkpointable for Collect<T> {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(STATE_VERSION, &self.items)
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.items = snapshot.decode(STATE_VERSION, ctx)?;
        Ok(())
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Operator for Collect<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "collect"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, _cx: &mut Context<'_>) -> Step {
        let items = &mut self.items;
        io.consume_all(|x| items.push(x));
        io.finish_when_drained()
    }

    fn on_stop(&mut self) {
        self.output.send(std::mem::take(&mut self.items));
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_restored_collect_keeps_what_it_had_gathered() {
        let input: Vec<String> = (0..40).map(|i| format!("e{i}")).collect();
        crate::test_support::assert_sink_resumes(&super::Collect::new, &input, &[0, 1, 20, 40]);
    }

    use crate::test_support::run_small;
    use weir_runtime::Outcome;

    use crate::test_support::rt;
    use crate::{FlowExt, Pipeline};

    #[test]
    fn gathers_every_element_in_order() {
        let done = run_small(Pipeline::from_iter(0..500_u32).collect());
        assert_eq!(done.output, (0..500).collect::<Vec<_>>());
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let sink = r.stage("collect#1").unwrap();
        assert!(sink.is_sink);
        assert_eq!((sink.input, sink.completed, sink.abandoned), (500, 500, 0));
        assert!(sink.peak_occupancy <= 3);
        assert_eq!(sink.bound_violations, 0);
        let source = r.stage("iter#0").unwrap();
        assert!(source.largest_batch <= 2);
        assert_eq!(r.admitted(), 500);
        assert_eq!(r.delivered(), 500);
    }

    #[test]
    fn gathers_non_copy_elements() {
        let input: Vec<Vec<String>> = (0..20)
            .map(|i| (0..i % 3).map(|j| format!("{i}.{j}")).collect())
            .collect();
        let done = run_small(Pipeline::from_iter(input.clone()).collect());
        assert_eq!(done.output, input);
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn empty_input_gives_an_empty_vec() {
        let done = run_small(Pipeline::from_iter(Vec::<String>::new()).collect());
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.delivered(), 0);
    }

    /// With default settings the whole input crosses in one batch.
    #[test]
    fn default_settings() {
        let rt = rt();
        let done = Pipeline::from_iter(0..100_u32)
            .collect()
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, (0..100).collect::<Vec<_>>());
        done.report.check_conservation().unwrap();
    }
}
