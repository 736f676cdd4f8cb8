//! [`CountWindows`]: tumbling and sliding windows by element count.

use std::collections::VecDeque;
use std::task::Context;

use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Windows of `size` consecutive elements, one every `slide` elements (the seed's
/// SlidingWindow; `slide == size` is a tumbling window). Created by
/// [`WindowExt::count_windows`](super::WindowExt::count_windows).
///
/// A window is emitted as soon as its last element arrives; the elements that
/// belong to no later window are then completed. At the end of the input, the
/// elements that arrived since the last window (if any) are emitted as a last,
/// shorter window. The operator holds at most `size` elements (counted as held,
/// abandoned if the stage is cancelled); it is not restartable.
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

impl<T: Clone + Send + 'static> Operator for CountWindows<T> {
    type In = T;
    type Out = Vec<T>;

    fn kind(&self) -> &'static str {
        "count_windows"
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
