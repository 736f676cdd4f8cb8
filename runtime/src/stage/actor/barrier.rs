//! Checkpoint barriers through a stage: alignment, the snapshot, and the commit.
//! A child of `actor`, so it sees the stage's fields.
//!
//! A barrier that arrives (or is injected at a source) becomes the stage's pending
//! barrier. Everything that arrives after it is held in `behind`, neither queued
//! for the operator nor granted as credit, until the barrier passes: once every
//! element before it has left the queue and the outbox (and an operator that is not
//! checkpointable holds nothing in flight), the stage snapshots its operator, sends
//! the barrier downstream, acknowledges it to the pipeline's coordinator, and
//! moves what was behind it into the queue.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::Ctl;
use actix::dev::SendError;
use weir_supervisor::{ErrorClass, Failure};

use super::StageActor;
use crate::checkpoint::Snapshot;
use crate::operator::Operator;
use crate::stage::message::Down;

/// A barrier waiting to pass the stage.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    pub(super) id: u64,
    /// When it arrived: the alignment time is measured from here.
    pub(super) since: Instant,
}

/// What a stage hands the coordinator for one checkpoint: its operator's state
/// (`None`: it keeps none), or why it could not be taken.
pub(crate) type StageSnapshot = Result<Option<Snapshot>, String>;

impl<Op: Operator> StageActor<Op> {
    /// Barrier `id` arrived with nothing pending.
    pub(super) fn begin_barrier(&mut self, id: u64) {
        if id <= self.last_barrier {
            // Already passed (injected and also received from upstream).
            return;
        }
        self.barrier = Some(Pending {
            id,
            since: Instant::now(),
        });
    }

    /// Keeps `msg` until the pending barrier has passed.
    pub(super) fn hold_behind(&mut self, msg: Down<Op::In>) {
        if let Down::Batch(batch) = &msg {
            let n = batch.len();
            self.received += n as u64;
            self.shared.received.fetch_add(n as u64, Relaxed);
            self.behind_len += n;
            self.observe_occupancy();
        }
        self.behind.push_back(msg);
    }

    /// Whether every element before the pending barrier has been processed and
    /// sent.
    pub(super) fn barrier_due(&self) -> bool {
        if !self.outbox.is_empty() {
            return false;
        }
        if self.is_source() {
            // Its position is what it produced, all of it sent.
            return true;
        }
        if !self.inq.is_empty() || !self.spill.is_empty() {
            return false;
        }
        // A checkpointable operator keeps what it holds in its snapshot; any other
        // finishes its elements in flight first.
        self.stateful || self.op_held() == 0
    }

    /// Snapshots the operator, sends the barrier on, acknowledges it, and releases
    /// what was held behind it (up to the next barrier).
    pub(super) fn pass_barrier(&mut self, ctx: &mut Ctl) {
        let Some(pending) = self.barrier.take() else {
            return;
        };
        let snapshot_started = Instant::now();
        let snapshot = self.take_deferred(pending.id);
        let timing = crate::checkpoint::AckTiming {
            alignment: pending.since.elapsed(),
            snapshot: snapshot_started.elapsed(),
        };
        if let Some(downstream) = &mut self.downstream {
            match downstream.try_send(Down::Barrier(pending.id)) {
                // A closed downstream has stopped: the coordinator counts it.
                Ok(()) | Err(SendError::Closed(_)) => {}
                Err(SendError::Full(_)) => {
                    let msg = "mailbox full despite credit (weir flow-control bug)";
                    self.fail(
                        Failure::error(ErrorClass::ResourceExhausted, msg),
                        ctx,
                        true,
                    );
                    return;
                }
            }
        }
        self.last_barrier = pending.id;
        self.pipeline
            .checkpoint_ack(self.shared.index, pending.id, snapshot, timing);
        while let Some(msg) = self.behind.pop_front() {
            match msg {
                Down::Batch(batch) => {
                    self.behind_len -= batch.len();
                    if self.inq.is_empty() {
                        self.inq = batch.into();
                    } else {
                        self.inq.extend(batch);
                    }
                }
                Down::End => self.input_ended = true,
                Down::Barrier(n) => {
                    self.begin_barrier(n);
                    if self.barrier.is_some() {
                        break;
                    }
                }
            }
        }
    }

    /// The operator's state for checkpoint `id`, or why it could not be taken.
    fn take_snapshot(&mut self, id: u64) -> StageSnapshot {
        if !self.stateful {
            return Ok(None);
        }
        let op = &mut self.op;
        crate::checkpoint::guarded_snapshot(|| op.checkpoint().map(|state| state.snapshot(id)))
    }

    /// The operator's state for checkpoint `id`, maybe still to encode (on the
    /// writer thread), or why it could not be taken.
    fn take_deferred(&mut self, id: u64) -> crate::checkpoint::StageAck {
        if !self.stateful {
            return Ok(None);
        }
        let op = &mut self.op;
        crate::checkpoint::guarded_snapshot(|| {
            op.checkpoint().map(|state| state.snapshot_deferred(id))
        })
    }

    /// Checkpoint `id` is durable: the operator commits.
    pub(super) fn committed(&mut self, id: u64) {
        if !self.stateful {
            return;
        }
        let op = &mut self.op;
        let result = catch_unwind(AssertUnwindSafe(|| {
            if let Some(state) = op.checkpoint() {
                state.committed(id);
            }
        }));
        if result.is_err() {
            tracing::error!(
                pipeline = %self.pipeline.name,
                stage = %self.shared.name,
                checkpoint = id,
                "operator panicked committing a checkpoint"
            );
        }
    }

    /// The stage is stopping: the state it ends with stands for every checkpoint
    /// whose barrier had not reached it (its input ended first).
    pub(super) fn final_snapshot(&mut self) {
        if !self.pipeline.checkpointed() {
            return;
        }
        let snapshot = self.take_snapshot(self.last_barrier + 1);
        self.shared.set_final_snapshot(snapshot);
    }
}
