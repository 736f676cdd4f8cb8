//! The two directions of an edge, as seen by the actor at each end.
//!
//! A stage with one input and one output sends plain [`Down`] and [`Up`] messages. A
//! junction (broadcast, merge, zip, …) has several ports, so what is sent *to* it is
//! tagged with the port it arrives on ([`PortDown`], [`PortUp`]). The sender does not
//! know which kind of actor it talks to: [`DownTx`] and [`UpTx`] hide the tagging.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use actix::dev::SendError;
use actix::{Message, Recipient};

use super::fused::FusedUp;
use super::message::{Down, Up};
use super::shared::StageShared;

/// A [`Down`] message for input `port` of a junction.
pub(crate) struct PortDown<T> {
    pub(crate) port: usize,
    pub(crate) down: Down<T>,
}

impl<T: Send + 'static> Message for PortDown<T> {
    type Result = ();
}

/// An [`Up`] message from the stage on output `port` of a junction.
#[derive(Debug)]
pub(crate) struct PortUp {
    pub(crate) port: usize,
    pub(crate) up: Up,
}

impl Message for PortUp {
    type Result = ();
}

/// Converts what one input port of a junction receives into the junction's element
/// type, and back (to hand a refused batch back to its sender).
pub(crate) struct Lift<A, T> {
    pub(crate) into: fn(A) -> T,
    pub(crate) back: fn(T) -> Option<A>,
}

impl<A, T> Clone for Lift<A, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A, T> Copy for Lift<A, T> {}

/// Sends elements of type `A` into a junction whose elements are `T`.
type LiftedSend<A> = Arc<dyn Fn(Down<A>) -> Result<(), SendError<Down<A>>> + Send + Sync>;

/// The sending end of an edge, downstream.
pub(crate) enum DownTx<T: Send + 'static> {
    /// To a stage with one input.
    Stage(Recipient<Down<T>>),
    /// To input `port` of a junction whose elements are `T`.
    Port(Recipient<PortDown<T>>, usize),
    /// To a junction whose elements are another type (a zip's inputs).
    Lifted(LiftedSend<T>),
}

impl<T: Send + 'static> Clone for DownTx<T> {
    fn clone(&self) -> Self {
        match self {
            DownTx::Stage(r) => DownTx::Stage(r.clone()),
            DownTx::Port(r, p) => DownTx::Port(r.clone(), *p),
            DownTx::Lifted(f) => DownTx::Lifted(Arc::clone(f)),
        }
    }
}

impl<A: Send + 'static> DownTx<A> {
    /// To input `port` of a junction of `T`, converting with `lift`.
    pub(crate) fn lifted<T: Send + 'static>(
        recipient: Recipient<PortDown<T>>,
        port: usize,
        lift: Lift<A, T>,
    ) -> Self {
        DownTx::Lifted(Arc::new(move |down: Down<A>| {
            let down = match down {
                Down::Batch(batch) => Down::Batch(batch.into_iter().map(lift.into).collect()),
                Down::End => Down::End,
                Down::Barrier(n) => Down::Barrier(n),
            };
            recipient.try_send(PortDown { port, down }).map_err(|err| {
                let unlift = |msg: PortDown<T>| match msg.down {
                    Down::Batch(batch) => {
                        Down::Batch(batch.into_iter().filter_map(lift.back).collect())
                    }
                    Down::End => Down::End,
                    Down::Barrier(n) => Down::Barrier(n),
                };
                match err {
                    SendError::Full(msg) => SendError::Full(unlift(msg)),
                    SendError::Closed(msg) => SendError::Closed(unlift(msg)),
                }
            })
        }))
    }

    /// Sends without waiting; a full or closed mailbox hands the message back.
    pub(crate) fn try_send(&self, down: Down<A>) -> Result<(), SendError<Down<A>>> {
        match self {
            DownTx::Stage(r) => r.try_send(down),
            DownTx::Port(r, port) => {
                r.try_send(PortDown { port: *port, down })
                    .map_err(|err| match err {
                        SendError::Full(msg) => SendError::Full(msg.down),
                        SendError::Closed(msg) => SendError::Closed(msg.down),
                    })
            }
            DownTx::Lifted(send) => send(down),
        }
    }
}

/// The sending end of an edge, upstream (credit and cancellation).
#[derive(Clone)]
pub(crate) enum UpTx {
    /// To a stage with one output.
    Stage(Recipient<Up>),
    /// To output `port` of a junction.
    Port(Recipient<PortUp>, usize),
    /// To the stage before, in the same fused group.
    Fused(Arc<FusedUp>),
}

impl UpTx {
    /// Sends without waiting. A closed upstream has stopped already; the message is
    /// moot then, so the error is not reported.
    pub(crate) fn send(&self, up: Up) {
        let _ = match self {
            UpTx::Stage(r) => r.try_send(up).map_err(drop),
            UpTx::Port(r, port) => r.try_send(PortUp { port: *port, up }).map_err(drop),
            UpTx::Fused(link) => {
                link.send(up);
                Ok(())
            }
        };
    }
}

/// The sender's counters for one edge: the stage's own for a stage with one output,
/// one port's for a junction.
#[derive(Debug, Clone)]
pub(crate) struct EdgeSource {
    pub(crate) stage: Arc<StageShared>,
    pub(crate) port: Option<usize>,
}

impl EdgeSource {
    /// Elements the sender put on this edge (created for it and not dropped).
    pub(crate) fn produced(&self) -> u64 {
        match self.port {
            None => self.stage.produced.load(Relaxed),
            Some(p) => {
                let port = &self.stage.out_ports[p];
                port.pushed
                    .load(Relaxed)
                    .saturating_sub(port.dropped.load(Relaxed))
            }
        }
    }

    /// Elements sent on this edge (in batches).
    pub(crate) fn emitted(&self, order: std::sync::atomic::Ordering) -> u64 {
        match self.port {
            None => self.stage.emitted.load(order),
            Some(p) => self.stage.out_ports[p].emitted.load(order),
        }
    }

    /// The edge's charge to the memory budget, if there is one.
    fn charge(&self) -> Option<&Arc<crate::memory::EdgeLog>> {
        match self.port {
            None => self.stage.charge.get(),
            Some(p) => self.stage.out_ports[p].charge.get(),
        }
    }

    /// The receiver took `n` elements out of its queue: their bytes are
    /// released from the memory budget.
    pub(crate) fn release(&self, n: usize) {
        if let Some(log) = self.charge() {
            log.release_front(n);
        }
    }

    /// The receiver stopped: nothing more on the edge will be taken.
    pub(crate) fn release_all(&self) {
        if let Some(log) = self.charge() {
            log.release_all();
        }
    }

    /// Elements the sender still held for this edge when it stopped.
    pub(crate) fn final_outbox(&self) -> u64 {
        let Some(state) = self.stage.final_state() else {
            return 0;
        };
        match self.port {
            None => state.outbox as u64,
            Some(p) => self.stage.out_ports[p].final_outbox.load(Relaxed) as u64,
        }
    }
}

/// The link from an actor to the one after it on one output.
pub(crate) struct DownLink<T: Send + 'static> {
    pub(crate) tx: DownTx<T>,
    /// Input capacity of the next stage on this edge: the credit this one starts with.
    pub(crate) initial_credit: usize,
}

/// The link from an actor to the one before it on one input.
#[derive(Clone)]
pub(crate) struct UpLink {
    pub(crate) tx: UpTx,
    pub(crate) source: EdgeSource,
}
