//! [`GroupedWithin`]: batches of up to `n` elements or whatever came within a
//! duration, whichever is first.

use std::task::Context;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};

use super::operator::Timer;
use crate::checkpoint::age;

/// The version of [`GroupedWithin`]'s snapshot.
const STATE_VERSION: u32 = 1;

/// Emits a batch when it holds `n` elements, or when `within` has passed since
/// its first element (on the tokio clock, so paused time drives it), whichever
/// comes first; at the end of the input, the partial batch. Created by
/// [`WindowExt::grouped_within`](super::WindowExt::grouped_within).
///
/// The batch being filled is held (at most `n` elements; abandoned if the stage
/// is cancelled). A batch that is due waits for room downstream, and no input is
/// taken meanwhile.
///
/// Checkpointable: the batch being filled and the time left until its deadline,
/// which counts again from the restore (the time the pipeline was down does not
/// count).
#[derive(Debug)]
pub struct GroupedWithin<T> {
    n: usize,
    within: Duration,
    buf: Vec<T>,
    deadline: Option<Instant>,
    timer: Timer,
}

impl<T> GroupedWithin<T> {
    pub(crate) fn new(n: usize, within: Duration) -> Self {
        GroupedWithin {
            n,
            within,
            buf: Vec::new(),
            deadline: None,
            timer: Timer::default(),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Checkpointable for GroupedWithin<T> {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        let now = Instant::now();
        let left = self.deadline.map(|d| age(d.into_std(), now.into_std()));
        Snapshot::of(STATE_VERSION, &(&self.buf, left))
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let (buf, left): (Vec<T>, Option<Duration>) = snapshot.decode(STATE_VERSION, ctx)?;
        self.buf = buf;
        self.deadline = left.map(|left| Instant::now() + left);
        self.timer.disarm();
        Ok(())
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Operator for GroupedWithin<T> {
    type In = T;
    type Out = Vec<T>;

    fn kind(&self) -> &'static str {
        "grouped_within"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<(), String> {
        if self.n == 0 {
            return Err("grouped_within(0, _): a batch holds at least one element".into());
        }
        if self.within.is_zero() {
            return Err("grouped_within(_, 0s): the duration must be positive".into());
        }
        Ok(())
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

    fn step(&mut self, io: &mut Io<'_, T, Vec<T>>, cx: &mut Context<'_>) -> Step {
        loop {
            while io.has_room() {
                while self.buf.len() < self.n {
                    let Some(x) = io.pop() else { break };
                    if self.buf.is_empty() {
                        self.deadline = Some(Instant::now() + self.within);
                    }
                    self.buf.push(x);
                }
                let expired = self.deadline.is_some_and(|d| Instant::now() >= d);
                let last = io.input_exhausted() && !self.buf.is_empty();
                if !(self.buf.len() == self.n || expired || last) {
                    break;
                }
                let batch = std::mem::take(&mut self.buf);
                self.deadline = None;
                io.complete(batch.len());
                io.push(batch);
            }
            if io.input_exhausted() && self.buf.is_empty() {
                return Step::Finished;
            }
            match self.deadline {
                // The deadline passed while there was no room: wait for credit.
                Some(d) if self.timer.arm(d, cx) && io.has_room() => continue,
                Some(_) => return Step::Continue,
                None => {
                    self.timer.disarm();
                    return Step::Continue;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_resumes;

    #[test]
    fn a_restored_grouped_within_completes_its_batch() {
        let input: Vec<u32> = (0..25).collect();
        let make = || GroupedWithin::new(4, Duration::from_secs(3600));
        assert_resumes(&make, &input, &[0, 1, 6, 24, 25]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_counts_from_the_restore() {
        let mut g = GroupedWithin::new(10, Duration::from_secs(10));
        g.buf = vec![1_u32, 2];
        g.deadline = Some(Instant::now() + Duration::from_secs(4));
        let snapshot = g.snapshot(1).unwrap();
        tokio::time::advance(Duration::from_secs(100)).await;
        let mut r = GroupedWithin::<u32>::new(10, Duration::from_secs(10));
        r.restore(&snapshot, &RestoreContext::default()).unwrap();
        assert_eq!(r.buf, [1, 2]);
        assert_eq!(r.deadline, Some(Instant::now() + Duration::from_secs(4)));
    }
}
