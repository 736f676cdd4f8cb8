//! [`Slack`]: how the non-blocking flow-control operators (`buffer` with a drop or
//! fail policy, `conflate`, `batch`) keep taking input while downstream is stalled.
//!
//! A stage steps its operator only while downstream has granted it credit (the
//! room of a step is the credit, capped by the batch limit). An operator that
//! spent all of it would not be stepped again until downstream grants more, and
//! its upstream would wait meanwhile, which is what these operators exist to
//! avoid. So they keep one unit of credit back: they emit while more than one
//! output fits, which leaves the stage able to step (take input, drop or combine
//! it, grant credit upstream) whenever input arrives. Once the input is exhausted
//! (after the last element was taken) the unit is spent too, so what an element
//! meets does not depend on whether the end of input came with it or later. The
//! price is one place of the downstream edge.
//!
//! Keeping a unit back needs room for at least two outputs (a downstream capacity
//! and a batch limit of 2 or more): with room for only one, the operator emits
//! into it, and while downstream grants nothing its upstream waits once the
//! stage's input edge is full; the overflow policy then applies when credit
//! comes back.

use weir_runtime::operator::Io;

/// Whether the operator has seen room for two outputs, so it may keep one back.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Slack {
    wide: bool,
}

impl Slack {
    /// How many units of room to leave unused while taking input (1 or 0);
    /// records what the room says about the edge. Emit while `io.room()` is
    /// greater; once the input is exhausted, emit into all of it.
    pub(crate) fn keep<I, O>(&mut self, io: &Io<'_, I, O>) -> usize {
        self.wide |= io.room() >= 2;
        usize::from(self.wide)
    }
}
