//! Stage actors and the protocol between them.
//!
//! ```text
//!            Down::Batch / Down::End                Down::Batch / Down::End
//!  [source] ───────────────────────────► [stage] ───────────────────────────► [sink]
//!           ◄─────────────────────────── (queue) ◄───────────────────────────  (queue)
//!                Up::Demand / Up::Cancel                Up::Demand / Up::Cancel
//! ```
//!
//! A stage sends at most as many elements as the credit it was granted; the receiver
//! grants credit back as it takes elements out of its queue. Everything here is
//! crate-private: users see operators, flows and handles.

pub(crate) mod actor;
pub(crate) mod credit;
pub(crate) mod fused;
pub(crate) mod link;
pub(crate) mod message;
pub(crate) mod monitor;
pub(crate) mod neighbours;
pub(crate) mod shared;

use std::sync::Arc;

use actix::dev::channel;
use actix::{Addr, Context};
use actix_rt::ArbiterHandle;

use self::actor::StageActor;
use self::link::{DownLink, UpLink};
use crate::operator::Operator;
use crate::pipeline::shared::PipelineShared;

/// Slack for control messages (end, cancel, shutdown, abort) in a mailbox.
const CONTROL_SLACK: usize = 16;

/// A stage whose address exists (so it can be wired) but whose actor has not started.
pub(crate) struct Unstarted<Op: Operator> {
    pub(crate) addr: Addr<StageActor<Op>>,
    rx: channel::AddressReceiver<StageActor<Op>>,
}

impl<Op: Operator> Unstarted<Op> {
    /// Creates the mailbox. Its capacity in messages covers every message the credit
    /// protocol allows at once: at most one batch per element of input capacity, one
    /// credit grant per element of output capacity, plus control messages. The real
    /// bound on elements is the credit, not this number.
    pub(crate) fn new(input_capacity: usize, output_capacity: usize) -> Self {
        let messages = input_capacity + output_capacity + CONTROL_SLACK;
        let (tx, rx) = channel::channel(messages);
        Unstarted {
            addr: Addr::new(tx),
            rx,
        }
    }

    /// Starts the actor on `arbiter`. Returns false if the arbiter has stopped.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        self,
        arbiter: &ArbiterHandle,
        op: Op,
        shared: Arc<crate::stage::shared::StageShared>,
        pipeline: Arc<PipelineShared>,
        upstream: Option<UpLink>,
        downstream: Option<DownLink<Op::Out>>,
        max_batch: usize,
        sup: Option<crate::supervision::StageSupervisor<Op::In>>,
        tail: Option<fused::FusedOut<Op::Out>>,
    ) -> bool {
        let rx = self.rx;
        // Built here rather than on the arbiter: if the arbiter stops before running
        // the closure, dropping it drops the actor, which still reports to the
        // pipeline (see `StageActor`'s `Drop`).
        let mut actor = StageActor::new(op, shared, pipeline, upstream, downstream, max_batch, sup);
        if let Some(tail) = tail {
            actor.fuse(tail);
        }
        arbiter.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            actix_rt::spawn(ctx.into_future(actor));
        })
    }
}
