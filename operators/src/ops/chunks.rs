//! [`Chunks`]: groups of `n` elements.

use std::task::Context;

use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Groups elements into vectors of `n`; the last one may be shorter. Created by
/// [`FlowExt::chunks`](crate::FlowExt::chunks). A partial chunk waits for more input
/// (there is no timer; a size-or-time variant is `grouped_within`).
#[derive(Debug)]
pub struct Chunks<T> {
    size: usize,
    buf: Vec<T>,
}

impl<T> Chunks<T> {
    pub(crate) fn new(size: usize) -> Self {
        Chunks {
            size,
            buf: Vec::with_capacity(size.min(4096)),
        }
    }
}

impl<T: Send + 'static> Operator for Chunks<T> {
    type In = T;
    type Out = Vec<T>;

    fn kind(&self) -> &'static str {
        "chunks"
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
