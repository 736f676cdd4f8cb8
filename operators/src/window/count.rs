//! [`CountWindows`]: tumbling and sliding windows by element count.

use std::collections::VecDeque;
use std::task::Context;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Windows of `size` consecutive elements, one every `slide` elements (a sliding
/// count window; `slide == size` is a tumbling window). Created by
/// [`WindowExt::count_windows`](super::WindowExt::count_windows).
///
/// A window is emitted as soon as its last element arrives; the elements that
/// belong to no later window are then completed. At the end of the input, the
/// elements that arrived since the last window (if any) are emitted as a last,
/// shorter window. The operator holds at most `size` elements (counted as held,
/// abandoned if the stage is cancelled); it is not restartable. Checkpointable:
/// the elements held and the count since the last window.
#[derive(Debug)]
pub struct CountWindows<T> {
    size: usize,
    slide: usize,
    buf: VecDeque<T>,
    /// Elements taken since the last window was emitted.
    since: usize,
}

impl<T> CountWindows<T> {
    pub(crate) fn new(size: usize, slide: usize) -> Self {
        CountWindows {
            size,
            slide,
            buf: VecDeque::with_capacity(size.min(4096)),
            since: 0,
        }
    }
}

/// The version of [`CountWindows`]' snapshot.
const STATE_VERSION: u32 = 1;

impl<T: Serialize + DeserializeOwned> Checkpointable for CountWindows<T> {
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(STATE_VERSION, &(&self.buf, self.since))
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        (self.buf, self.since) = snapshot.decode(STATE_VERSION, ctx)?;
        Ok(())
    }
}

impl<T: Clone + Serialize + DeserializeOwned + Send + 'static> Operator for CountWindows<T> {
    type In = T;
    type Out = Vec<T>;

    fn kind(&self) -> &'static str {
        "count_windows"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn validate(&self) -> Result<(), String> {
        if self.size == 0 || self.slide == 0 {
            return Err(format!(
                "count_windows({}, {}): size and slide must be at least 1",
                self.size, self.slide
            ));
        }
        if self.slide > self.size {
            return Err(format!(
                "count_windows({}, {}): slide larger than size",
                self.size, self.slide
            ));
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

    fn step(&mut self, io: &mut Io<'_, T, Vec<T>>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            while self.buf.len() < self.size {
                match io.pop() {
                    Some(x) => {
                        self.buf.push_back(x);
                        self.since += 1;
                    }
                    None => break,
                }
            }
            if self.buf.len() == self.size {
                io.push(self.buf.iter().cloned().collect());
                self.since = 0;
                self.buf.drain(..self.slide);
                io.complete(self.slide);
            } else {
                break;
            }
        }
        if io.input_exhausted() && self.buf.len() < self.size {
            if self.since > 0 {
                if !io.has_room() {
                    return Step::Continue;
                }
                io.push(self.buf.iter().cloned().collect());
            }
            io.complete(self.buf.len());
            self.buf.clear();
            self.since = 0;
            return Step::Finished;
        }
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::assert_resumes;

    #[test]
    fn a_restored_count_window_completes_its_windows() {
        let input: Vec<u32> = (0..29).collect();
        for (size, slide) in [(4, 4), (5, 2), (3, 1)] {
            let make = || super::CountWindows::new(size, slide);
            assert_resumes(&make, &input, &[0, 1, 3, 4, 17, 28, 29]);
        }
    }
}
