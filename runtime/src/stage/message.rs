//! The messages stage actors exchange. None of them is public: users see operators,
//! flows and handles, never the protocol.

use actix::Message;

/// Travels downstream on an edge: a batch of elements, or the end of the stream.
///
/// A batch is only sent against credit the receiver granted, so the receiver's queue
/// plus the batches in its mailbox never exceed its input capacity.
pub(crate) enum Down<T> {
    /// Elements, in order. Never empty.
    Batch(Vec<T>),
    /// No element follows on this edge.
    End,
    /// Checkpoint barrier `n`: every element before it belongs to checkpoint `n`,
    /// every element after it to the next. Control: it needs no credit, and it keeps
    /// its place among the batches.
    Barrier(u64),
}

impl<T: Send + 'static> Message for Down<T> {
    type Result = ();
}

/// Travels upstream on an edge.
#[derive(Debug)]
pub(crate) enum Up {
    /// The receiver freed this many places in its input queue: the sender may send
    /// this many more elements.
    Demand(usize),
    /// The receiver wants nothing more (it finished early, like `take`).
    Cancel,
}

impl Message for Up {
    type Result = ();
}

/// Sent by the pipeline's controller to its stages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    /// Sources stop producing and end their stream; everything in flight drains.
    Shutdown,
    /// Every stage stops now; what it holds is counted as abandoned.
    Abort,
    /// A sibling restarted and the pipeline's strategy restarts this stage too:
    /// rebuild the operator from its factory, if it has one and holds nothing.
    Restart,
    /// Checkpoint `n` starts here: a source (or a stage whose upstream stages have
    /// all stopped) takes barrier `n` as if it arrived after everything it has.
    Checkpoint(u64),
    /// Checkpoint `n` is durable: checkpointable operators commit
    /// (`Checkpointable::committed`).
    Committed(u64),
    /// A source takes nothing in until [`Resume`](Self::Resume); what it already
    /// produced still flows, and a shutdown still ends it.
    Pause,
    /// A paused source takes input again.
    Resume,
    /// The stage's circuit breaker closes now, its counts cleared, and the stage
    /// takes input again at once (a cooldown in progress is cut short).
    ResetBreaker,
}

impl Message for Control {
    type Result = ();
}
