//! [`Chunks`]: groups of `n` elements.

use std::task::Context;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Groups elements into vectors of `n`; the last one may be shorter. Created by
/// [`FlowExt::chunks`](crate::FlowExt::chunks). A partial chunk waits for more input
/// (there is no timer; a size-or-time variant is `grouped_within`).
///
/// Checkpointable: the partial chunk is its state (`T` is a serde type).
#[derive(Debug)]
pub struct Chunks<T> {
    size: usize,
    buf: Vec<T>,
}

impl<T> Chunks<T> {
    /// The operator behind [`FlowExt::chunks`](crate::FlowExt::chunks), for [`Flow::via`](weir_runtime::Flow::via) (elements that are not `Clone`).
    pub fn new(size: usize) -> Self {
        Chunks {
            size,
            buf: Vec::with_capacity(size.min(4096)),
        }
    }
}

/// The version of [`Chunks`]' snapshot.
const STATE_VERSION: u32 = 1;

impl<T: Serialize + DeserializeOwned> Checkpointable for Chunks<T> {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(STATE_VERSION, &self.buf)
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.buf = snapshot.decode(STATE_VERSION, ctx)?;
        Ok(())
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Operator for Chunks<T> {
    type In = T;
    type Out = Vec<T>;

    fn kind(&self) -> &'static str {
        "chunks"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<(), String> {
        if self.size == 0 {
            Err("chunks(0): a chunk holds at least one element".into())
        } else {
            Ok(())
        }
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        self.buf.len()
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }

    fn step(&mut self, io: &mut Io<'_, T, Vec<T>>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            while self.buf.len() < self.size {
                match io.pop() {
                    Some(x) => self.buf.push(x),
                    None => break,
                }
            }
            let full = self.buf.len() == self.size;
            let last = io.input_exhausted() && !self.buf.is_empty();
            if !(full || last) {
                break;
            }
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.size.min(4096)));
            io.complete(chunk.len());
            io.push(chunk);
        }
        if io.input_exhausted() && self.buf.is_empty() {
            Step::Finished
        } else {
            Step::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_restored_chunks_completes_its_partial_chunk() {
        let input: Vec<u32> = (0..23).collect();
        crate::test_support::assert_resumes(
            &|| super::Chunks::new(4),
            &input,
            &[0, 1, 4, 6, 22, 23],
        );
    }

    use crate::test_support::run_small;
    use weir_runtime::{BuildError, Outcome};

    use crate::test_support::rt;
    use crate::{FlowExt, Pipeline};

    #[test]
    fn groups_in_order_with_a_partial_last_chunk() {
        let done = run_small(Pipeline::from_iter(1..=11_u32).chunks(3).collect());
        assert_eq!(
            done.output,
            [vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10, 11]]
        );
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let chunks = r.stage("chunks#1").unwrap();
        assert!(!chunks.one_to_one);
        assert_eq!(chunks.input, 11);
        assert_eq!(chunks.completed, 11, "completed counts input elements");
        assert_eq!(chunks.produced, 4, "produced counts chunks");
        assert!(chunks.largest_batch <= 2);
        assert_eq!(r.stage("collect#2").unwrap().completed, 4);
    }

    #[test]
    fn exact_multiple_has_no_trailing_empty_chunk() {
        let done = run_small(
            Pipeline::from_iter((0..6).map(|i| i.to_string()))
                .chunks(2)
                .collect(),
        );
        assert_eq!(done.output, [["0", "1"], ["2", "3"], ["4", "5"]]);
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn chunk_larger_than_the_input() {
        let done = run_small(Pipeline::from_iter(0..5_u32).chunks(100).collect());
        assert_eq!(done.output, [vec![0, 1, 2, 3, 4]]);
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn chunks_of_one() {
        let done = run_small(Pipeline::from_iter(0..4_u32).chunks(1).collect());
        assert_eq!(done.output, [[0], [1], [2], [3]]);
        done.report.check_conservation().unwrap();
    }

    #[test]
    fn empty_input_makes_no_chunk() {
        let done = run_small(Pipeline::from_iter(0..0_u32).chunks(3).collect());
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.stage("chunks#1").unwrap().produced, 0);
    }

    /// Many chunks with little room downstream: chunks are emitted only as credit
    /// allows, none is lost.
    #[test]
    fn many_chunks_with_tiny_room() {
        let rt = rt();
        let done = Pipeline::from_iter(0..1000_u32)
            .chunks(3)
            .collect()
            .default_capacity(2)
            .max_batch(1)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output.len(), 334);
        assert_eq!(done.output.concat(), (0..1000).collect::<Vec<_>>());
        assert!(done.output[..333].iter().all(|c| c.len() == 3));
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.stage("chunks#1").unwrap().largest_batch, 1);
    }

    /// A partial chunk the operator holds when the stream is cut short is counted
    /// as abandoned at the chunks stage.
    #[test]
    fn partial_chunk_held_when_cancelled_is_abandoned() {
        let done = run_small(Pipeline::from_iter(0_u32..).chunks(2).take(3).collect());
        assert_eq!(done.output, [[0, 1], [2, 3], [4, 5]]);
        let r = &done.report;
        r.check_conservation().unwrap();
        let chunks = r.stage("chunks#1").unwrap();
        assert_eq!(chunks.input, chunks.completed + chunks.abandoned);
    }

    #[test]
    fn zero_size_is_rejected_at_build_time() {
        let rt = rt();
        let err = Pipeline::from_iter(0..3_u32)
            .chunks(0)
            .collect()
            .run(&rt)
            .unwrap_err();
        match err {
            BuildError::InvalidArgument { stage, message } => {
                assert_eq!(stage, "chunks#1");
                assert!(message.contains("chunks(0)"), "{message}");
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn zero_size_error_names_a_renamed_stage() {
        let rt = rt();
        let err = Pipeline::from_iter(0..3_u32)
            .map(|x| x)
            .chunks(0)
            .name("batcher")
            .collect()
            .run(&rt)
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "batcher"),
            "{err:?}"
        );
    }
}
