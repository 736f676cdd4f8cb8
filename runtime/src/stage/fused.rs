//! Fusion: stages that run in the actor of the stage before them.
//!
//! A fused group is a chain of stages on one arbiter whose first stage (the head) is
//! an actor and whose other stages (the members) are plain [`StageActor`] values
//! owned by the stage before them, as that stage's output port. Elements move from
//! one member to the next by a method call instead of a mailbox:
//!
//! ```text
//!            mailbox                      method calls                   mailbox
//! upstream ──────────► [ head ─ Output::Fused ─► member ─► member ] ──────────► next
//!          ◄──────────  actor  ◄─ room() ────────        ◄── Up ───  ◄──────────
//!                         ▲ Up::Demand / Cancel from `next`, routed to the last member
//! ```
//!
//! Every member keeps its own counters, name, barrier handling, stall watchdog and
//! stop reason, exactly as unfused; only the transport changes. The credit a stage
//! has towards a member is the room left in the member's input queue, read when it
//! sends (what a grant would have said), so each member's queue stays within its
//! capacity as an edge's would.
//!
//! [`StageActor`]: super::actor::StageActor

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::task;

use actix::Message;
use actix::dev::SendError;

use super::link::DownTx;
use super::message::{Control, Down, Up};

/// A member of a fused group, seen from the stage before it.
pub(crate) trait Tail<T: Send + 'static>: Send {
    /// Elements the member's input can take now (its capacity less what it
    /// queues); its capacity once it has stopped, so that a send finds it closed.
    fn room(&self) -> usize;
    /// Hands a batch, the end of the stream or a barrier to the member. A stopped
    /// member hands it back.
    fn deliver(&mut self, down: Down<T>) -> Result<(), Down<T>>;
    /// Runs the member (and the members after it) until none can progress or
    /// one used its time slice; true in that case (the group's task is woken
    /// again after the arbiter's other tasks ran).
    fn drive(&mut self, cx: &mut task::Context<'_>) -> bool;
    /// Credit or a cancellation from the edge after the group: for the last member.
    fn up(&mut self, up: Up);
    /// A control message for the member that is stage `index`.
    fn control(&mut self, index: usize, control: Control);
    /// The group's actor started: the members start too.
    fn started(&mut self);
    /// A new supervision policy for the member that is stage `index`.
    fn set_policy(&mut self, index: usize, msg: crate::stage::actor::reconfig::SetPolicy);
    /// Whether this member and every member after it have stopped.
    fn all_stopped(&self) -> bool;
}

/// What a stage's upstream link says to the stage before it when both are in one
/// fused group: only cancellation matters (credit is read from [`Tail::room`]).
#[derive(Debug, Default)]
pub(crate) struct FusedUp {
    cancelled: AtomicBool,
}

impl FusedUp {
    pub(crate) fn send(&self, up: Up) {
        if let Up::Cancel = up {
            self.cancelled.store(true, Relaxed);
        }
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancelled.load(Relaxed)
    }
}

/// The member a stage feeds, with the link its cancellation comes back on.
pub(crate) struct FusedOut<T: Send + 'static> {
    pub(crate) tail: Box<dyn Tail<T>>,
    pub(crate) up: Arc<FusedUp>,
}

/// Where a stage's output goes: an edge to another actor, or a fused member.
pub(crate) enum Output<T: Send + 'static> {
    Tx(DownTx<T>),
    Fused(FusedOut<T>),
}

impl<T: Send + 'static> Output<T> {
    /// Sends without waiting; a full or closed receiver hands the message back.
    pub(crate) fn try_send(&mut self, down: Down<T>) -> Result<(), SendError<Down<T>>> {
        match self {
            Output::Tx(tx) => tx.try_send(down),
            Output::Fused(f) => f.tail.deliver(down).map_err(SendError::Closed),
        }
    }
}

/// A [`Control`] message for a fused member, sent to its group's actor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberControl {
    pub(crate) index: usize,
    pub(crate) control: Control,
}

impl Message for MemberControl {
    type Result = ();
}

/// Where a stage's control messages go: its own actor, or its fused group's.
#[derive(Debug, Clone)]
pub(crate) enum ControlTx {
    Actor(actix::Recipient<Control>),
    /// Stage `.1`, a member of the group whose actor this is.
    Member(actix::Recipient<MemberControl>, usize),
}

impl ControlTx {
    /// Sends a control message. Control messages are few and must not be refused:
    /// `do_send` is right here (it never carries elements). A closed mailbox belongs
    /// to a stage that already stopped.
    pub(crate) fn do_send(&self, control: Control) {
        match self {
            ControlTx::Actor(r) => r.do_send(control),
            ControlTx::Member(r, index) => r.do_send(MemberControl {
                index: *index,
                control,
            }),
        }
    }
}
