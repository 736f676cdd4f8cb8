//! The stage's part in the runtime's memory budget (`crate::memory`): the
//! charge of its output edge, the buffer of a source that charges its own, a
//! source's admission, the release of what it took, and the share of what
//! its operator keeps in buffers of its own. A child of `actor`, so
//! it sees the stage's fields.

use std::sync::Arc;
use std::task;

use super::StageActor;
use crate::memory::{BufferCharge, OutCharge};
use crate::operator::Operator;
use crate::pipeline::shared::PipelineShared;
use crate::stage::shared::StageShared;
use crate::supervision::StageSupervisor;

/// A stage's own buffer's charge and its output edge's (see [`charges`]).
type Charges<T> = (Option<BufferCharge<T>>, Option<OutCharge<T>>);

/// The budget's charges of a new stage (none without a budget): its own
/// buffer's, if its operator charges one (a source whose senders then wait on
/// the budget, not the stage), and its output edge's. Also gives an in-memory
/// dead-letter queue its share.
pub(super) fn charges<Op: Operator>(
    op: &mut Op,
    shared: &Arc<StageShared>,
    pipeline: &Arc<PipelineShared>,
    has_output: bool,
    sup: Option<&StageSupervisor<Op::In>>,
) -> Charges<Op::Out> {
    let Some(memory) = &pipeline.memory else {
        return (None, None);
    };
    let buffer = if shared.is_source {
        let buffer = memory.buffer_charge::<Op::Out>();
        op.charge_buffer(buffer.clone()).then_some(buffer)
    } else {
        None
    };
    // Elements the operator keeps in buffers of its own (a broadcast hub's
    // subscribers), named after the stage.
    let kind = op.kind();
    let _ = op.charge_held(memory.held_charge::<Op::In>(&pipeline.name, &shared.name, kind));
    if let Some(dead) = sup.and_then(|s| s.dead_letters.as_ref()) {
        dead.charge_memory(Arc::new(memory.buffer_charge::<Op::In>()));
    }
    let charge = has_output
        .then(|| memory.charge_for::<Op::Out>(&pipeline.name, &shared.name, None, &shared.charge));
    (buffer, charge)
}

impl<Op: Operator> StageActor<Op> {
    /// The output charge of a stage that feeds a fused member (its output is
    /// set after it was built).
    pub(super) fn charge_fused_output(&mut self) {
        if let (None, Some(memory)) = (&self.charge, &self.pipeline.memory) {
            self.charge = Some(memory.charge_for::<Op::Out>(
                &self.pipeline.name,
                &self.shared.name,
                None,
                &self.shared.charge,
            ));
        }
    }

    /// How many elements the stage may produce in its next step, at most
    /// `limit`: a source under a budget only what fits (0: it waits, woken by a
    /// release), every other stage `limit`.
    pub(super) fn admit(&mut self, limit: usize, cx: &task::Context<'_>) -> usize {
        let admits = self.is_source() && !self.shutdown && self.buffer.is_none();
        match &mut self.charge {
            Some(charge) if admits => charge.admit(limit, cx.waker()),
            _ => limit,
        }
    }

    /// After a step: charges what is new in the outbox (what a source took from
    /// its charged buffer is charged already, and changes hands).
    pub(super) fn charge_outbox(&mut self) {
        if let Some(buffer) = &self.buffer {
            let handed = buffer.take_handover();
            match &mut self.charge {
                Some(charge) => charge.add_reserved(handed),
                None => buffer.release(handed),
            }
        }
        if let Some(charge) = &mut self.charge {
            charge.sync(&self.outbox);
        }
    }

    /// Under a memory budget: releases what the stage took from its queue,
    /// except the elements its operator still holds (a partial chunk, futures
    /// in flight, a window's pending elements), which stay charged until they
    /// leave it.
    pub(super) fn release_taken(&mut self) {
        let Some(up) = &self.upstream else { return };
        let held = self.op_held();
        let total = self.owed.get() + self.held_charged;
        let release = total.saturating_sub(held);
        self.held_charged = total - release;
        up.source.release(release);
    }
}
