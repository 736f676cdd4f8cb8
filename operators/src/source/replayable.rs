//! [`ReplayableSource`]: an iterator source that a checkpoint can resume.

use std::convert::Infallible;
use std::iter::Fuse;
use std::task::Context;

use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Io, Operator, Step};

/// The state version of a replayable source's snapshot.
const VERSION: u32 = 1;

/// Emits the items of an iterator that it can rebuild at any position, so that a
/// pipeline restored from a checkpoint resumes exactly after the last element the
/// checkpoint covers. Created by
/// [`Pipeline::replayable`](crate::Pipeline::replayable).
///
/// Its position is the number of elements it has emitted; `make(position)` must
/// give the iterator from that element on — the same elements, in the same order,
/// that an iterator started at 0 gives after skipping `position` of them. The
/// source calls `make(0)` on its first step, or `make(n)` after a restore to
/// position `n`; it pulls only as many items as downstream has credit for.
///
/// # Examples
///
/// See [`Pipeline::replayable`](crate::Pipeline::replayable).
pub struct ReplayableSource<F, I: IntoIterator> {
    make: F,
    iter: Option<Fuse<I::IntoIter>>,
    /// Elements emitted, counted from the start of the stream.
    position: u64,
    done: bool,
}

impl<F, I: IntoIterator> std::fmt::Debug for ReplayableSource<F, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayableSource")
            .field("position", &self.position)
            .field("started", &self.iter.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<F, I> ReplayableSource<F, I>
where
    F: FnMut(u64) -> I,
    I: IntoIterator,
{
    pub(crate) fn new(make: F) -> Self {
        ReplayableSource {
            make,
            iter: None,
            position: 0,
            done: false,
        }
    }

    /// Pulls up to `room` items into `out`; true once the iterator has ended.
    fn pull(&mut self, room: usize, out: &mut Vec<I::Item>) -> bool {
        if self.done {
            return true;
        }
        let position = self.position;
        let iter = self
            .iter
            .get_or_insert_with(|| (self.make)(position).into_iter().fuse());
        let before = out.len();
        out.extend(iter.by_ref().take(room));
        let pulled = out.len() - before;
        self.position += pulled as u64;
        self.done = pulled < room;
        self.done
    }
}

impl<F, I> Operator for ReplayableSource<F, I>
where
    F: FnMut(u64) -> I + Send + 'static,
    I: IntoIterator + 'static,
    I::IntoIter: Send + 'static,
    I::Item: Send + 'static,
{
    type In = Infallible;
    type Out = I::Item;

    fn kind(&self) -> &'static str {
        "replayable"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, I::Item>, _cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            return Step::Finished;
        }
        let room = io.room();
        if self.pull(room, io.output()) {
            Step::Finished
        } else {
            Step::Continue
        }
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

/// The state is the number of elements emitted.
impl<F, I> Checkpointable for ReplayableSource<F, I>
where
    F: FnMut(u64) -> I,
    I: IntoIterator,
{
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(VERSION, &self.position)
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.position = snapshot.decode(VERSION, ctx)?;
        self.iter = None;
        self.done = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::run_small;
    use crate::{FlowExt, Pipeline};

    fn source() -> ReplayableSource<impl FnMut(u64) -> std::ops::Range<u64>, std::ops::Range<u64>> {
        ReplayableSource::new(|from| from..10)
    }

    #[test]
    fn a_restored_source_emits_exactly_the_rest() {
        for room in [1, 3, 10] {
            for k in 0..=10_usize {
                let mut first = source();
                let mut before = Vec::new();
                while before.len() < k {
                    let want = room.min(k - before.len());
                    first.pull(want, &mut before);
                }
                let snapshot = first.snapshot(1).unwrap();
                // Past the barrier: not in the snapshot.
                first.pull(2, &mut Vec::new());
                let mut second = source();
                second
                    .restore(&snapshot, &RestoreContext::default())
                    .unwrap();
                let mut after = Vec::new();
                while !second.pull(room, &mut after) {}
                before.extend(after);
                assert_eq!(before, (0..10).collect::<Vec<_>>(), "room {room}, k {k}");
                assert_eq!(second.position, 10);
            }
        }
    }

    #[test]
    fn the_factory_is_called_once_at_the_position() {
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&calls);
        let mut s = ReplayableSource::new(move |from: u64| {
            seen.lock().unwrap().push(from);
            (from..5).map(|x| x * 10)
        });
        s.restore(
            &Snapshot::of(VERSION, &3_u64).unwrap(),
            &RestoreContext::default(),
        )
        .unwrap();
        let mut out = Vec::new();
        while !s.pull(1, &mut out) {}
        assert_eq!(out, [30, 40]);
        assert_eq!(*calls.lock().unwrap(), [3]);
        assert_eq!(
            s.snapshot(2).unwrap(),
            Snapshot::of(VERSION, &5_u64).unwrap()
        );
    }

    #[test]
    fn runs_from_the_start_without_a_checkpoint() {
        let done = run_small(Pipeline::replayable(|from| from..7).collect());
        assert_eq!(done.output, (0..7).collect::<Vec<u64>>());
        assert_eq!(done.report.admitted(), 7);
    }
}
