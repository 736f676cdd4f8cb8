//! The contract between a stage and the operator it runs.
//!
//! Every stage of a pipeline is an actix actor that owns one [`Operator`]. The stage
//! does the messaging — batches in, credit out, end-of-stream, cancellation — and
//! calls [`Operator::step`] whenever something changed: new input arrived, downstream
//! granted credit, the input ended, or a future the operator waits on woke it up.
//!
//! An operator never sees a mailbox or a credit count. It sees an [`Io`]: a queue of
//! input elements, an output buffer, and a *room* — how many more outputs it may
//! produce in this step. Producing only what fits is what keeps every edge bounded.
//!
//! Sources are operators whose input type is [`Infallible`](std::convert::Infallible);
//! sinks are operators whose output type is `Infallible`.
//!
//! # Examples
//!
//! An operator that doubles every element:
//!
//! ```
//! use std::task::Context;
//! use weir_runtime::operator::{Io, Operator, Step};
//!
//! struct Double;
//!
//! impl Operator for Double {
//!     type In = u64;
//!     type Out = u64;
//!
//!     fn kind(&self) -> &'static str {
//!         "double"
//!     }
//!
//!     fn step(&mut self, io: &mut Io<'_, u64, u64>, _cx: &mut Context<'_>) -> Step {
//!         while io.has_room() {
//!             match io.pop() {
//!                 Some(x) => io.push(x * 2),
//!                 None => break,
//!             }
//!         }
//!         io.finish_when_drained()
//!     }
//! }
//! ```

pub(crate) mod element;
pub(crate) mod factory;
mod io;

pub use element::{ElementSupervision, Verdict};
pub use io::Io;

use std::task::Context;

use weir_supervisor::Failure;

/// What an operator says after a [`step`](Operator::step).
#[derive(Debug)]
#[must_use]
pub enum Step {
    /// The operator did what it could; call it again when something changes (more
    /// input, more room, end of input, or a waker it registered fires).
    Continue,
    /// The operator has produced all its output and takes no more input. The stage
    /// sends what is left in its output buffer, then end-of-stream downstream, and
    /// cancels its upstream if the input has not ended.
    Finished,
    /// The operator failed. The stage reports the failure with its name; the element
    /// being processed is counted as failed.
    Failed(Failure),
}

/// How an operator's inputs relate to its outputs, for the element accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Each input becomes at most one output: every [`Io::push`] completes one input,
    /// and an input that produces nothing is reported with [`Io::filter`]
    /// (`map`, `filter`, `inspect`, `take`, …).
    OneToOne,
    /// The operator reports completed inputs itself with [`Io::complete`] (`chunks`,
    /// `flat_map`, sinks).
    Custom,
}

/// A unit of stream processing run by a stage actor.
///
/// Implement it to add an operator; the built-in catalogue (map, filter, sources,
/// sinks, …) implements it the same way. The stage guarantees:
///
/// - `step` is only called on the stage's arbiter thread, never concurrently;
/// - a panic inside `step` is caught and reported as a [`Failure`]; the arbiter and
///   the other stages keep running;
/// - outputs pushed beyond [`Io::room`] are kept (never dropped) but make the stage
///   stop taking input until they are sent, so well-behaved operators stop at the
///   room.
pub trait Operator: Send + 'static {
    /// Input element type (`Infallible` for sources).
    type In: Send + 'static;
    /// Output element type (`Infallible` for sinks).
    type Out: Send + 'static;

    /// A short lowercase name of the operator ("map", "filter"), used in default
    /// stage names, stats and errors.
    fn kind(&self) -> &'static str;

    /// Moves input to output.
    ///
    /// Take input with [`Io::pop`], produce output with [`Io::push`] while
    /// [`Io::has_room`] is true, and say [`Step::Finished`] once the input has ended
    /// and nothing is held back (see [`Io::finish_when_drained`]). An operator that
    /// waits on a future registers `cx`'s waker and returns [`Step::Continue`].
    fn step(&mut self, io: &mut Io<'_, Self::In, Self::Out>, cx: &mut Context<'_>) -> Step;

    /// Checks the operator's arguments when the pipeline is built (`chunks(0)` is
    /// rejected here). The message names what is wrong; the build error adds the
    /// stage.
    ///
    /// # Errors
    ///
    /// A message describing the invalid argument.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether a supervised stage may retry (or dead-letter) the element this
    /// operator failed on. True only when a failure destroys just the element
    /// handed to user code: no partial output was pushed for it, no other element
    /// is held in the operator's state, and the state is still usable. The
    /// stateless synchronous built-ins (`map`, `filter`, `filter_map`, `inspect`,
    /// `for_each`) say yes; the default is no, and supervising such a stage is
    /// rejected when the pipeline is built.
    fn retry_safe(&self) -> bool {
        false
    }

    /// Asks the operator to handle its elements' failures itself, for a supervised
    /// stage whose operator is not [`retry_safe`](Self::retry_safe): an async
    /// operator that learns of a failure after the step that took the element.
    ///
    /// An operator that accepts keeps a copy of each element in flight
    /// ([`ElementSupervision::copy`]), bounds each attempt by
    /// [`ElementSupervision::timeout`] if there is one, and reports each failure
    /// with [`Io::element_failed`], which applies the stage's policy and says
    /// whether to retry (in place, so order is kept), forget the element
    /// (dead-lettered or skipped), or stop. Returns false (the default) if the
    /// operator cannot; supervising it is then rejected when the pipeline is
    /// built. `map_async` and `for_each_async` accept.
    fn supervise_elements(&mut self, setup: ElementSupervision<Self::In>) -> bool {
        let _ = setup;
        false
    }

    /// Replaces the operator's state with a fresh one, for a stage restarted by its
    /// supervision. Returns false (the default) if the operator cannot: the stage
    /// then resumes with the state it has. Operators added with
    /// [`Flow::via_factory`](crate::Flow::via_factory) are rebuilt from the factory.
    fn restart(&mut self) -> bool {
        false
    }

    /// How inputs relate to outputs in the accounting; see [`Counting`].
    fn counting(&self) -> Counting {
        Counting::OneToOne
    }

    /// Entries of state the operator keeps beyond elements (keys, open windows,
    /// pending join rows). Default 0. When a supervised restart replaces the
    /// operator with a fresh one from its factory, this many entries are lost: the
    /// stage adds them to its `state_lost` count (report and stats), so a restart
    /// that drops state is never silent.
    fn state_entries(&self) -> usize {
        0
    }

    /// Whether the operator can take an input and produce nothing for it
    /// ([`Io::filter`]): `filter` and `filter_map` say yes. Default no.
    /// [`Graph::when`](crate::Graph::when) rejects such stages in its
    /// sub-pipeline, whose order it keeps by pairing each input with one output.
    fn may_filter(&self) -> bool {
        false
    }

    /// How many input elements the operator currently holds in its own state
    /// (a partial chunk, futures in flight). Counted as in flight, and as abandoned if
    /// the stage stops while holding them.
    fn held(&self) -> usize {
        0
    }

    /// Called once when the stage stops, for whatever reason: a sink hands its
    /// result over here.
    fn on_stop(&mut self) {}

    /// Whether the stage may run *fused*: in the actor of the stage before it, on
    /// the same arbiter, with elements handed over by a method call instead of a
    /// mailbox (see `docs/architecture.md`, "Fusion"). A fused stage keeps its
    /// name, counters, barriers, watchdog and place in the report; only the
    /// transport changes.
    ///
    /// Say yes when the operator does its work inside [`step`](Self::step) without
    /// blocking the thread for long (a blocking operator would hold up every stage
    /// of its group, not just itself): the stateless built-ins (`map`, `filter`,
    /// `filter_map`, `flat_map`, `inspect`, …), `take`, `chunks`, the keyed
    /// `scan`/`fold`, the windows and the in-memory sinks do. An operator that
    /// registers `cx`'s waker (a timer) may fuse: the waker wakes its group. Default no: a
    /// stage whose operator does not fuse starts a new group.
    fn fusable(&self) -> bool {
        false
    }

    /// The operator's checkpointable state, if it keeps state that must survive a
    /// crash: return `Some(self)` and implement
    /// [`Checkpointable`](crate::checkpoint::Checkpointable). Default `None`: the
    /// operator keeps nothing a checkpoint needs (a `map`), or it cannot be
    /// checkpointed. An operator that returns `None` and holds elements
    /// ([`held`](Self::held)) is drained before a barrier passes it.
    fn checkpoint(&mut self) -> Option<&mut dyn crate::checkpoint::Checkpointable> {
        None
    }

    /// Whether the operator keeps state that a checkpoint cannot hold, so that a
    /// checkpointed pipeline with it would be inconsistent after a restore: the
    /// reason, in words. Building a checkpointed pipeline with such a stage is a
    /// [`BuildError::NotCheckpointable`](crate::BuildError::NotCheckpointable).
    /// Default `None`.
    fn not_checkpointable(&self) -> Option<String> {
        None
    }

    /// The largest element the operator lets through, in bytes, when it bounds
    /// it (`max_element_bytes`, a file source's `max_line_bytes`). Under a
    /// runtime [memory budget](crate::memory) smaller than it, building the
    /// pipeline is a [`BuildError::BudgetTooSmall`](crate::BuildError::BudgetTooSmall)
    /// naming the stage. Default `None`.
    fn max_element_bytes(&self) -> Option<u64> {
        None
    }

    /// For a source that buffers elements accepted from outside the pipeline
    /// (an `Ingress` channel): under a runtime [memory budget](crate::memory),
    /// called once before the stage starts with the buffer's
    /// [`BufferCharge`](crate::memory::BufferCharge). Return true if the
    /// operator charges its buffer with it (senders charge each element before
    /// it is accepted, the operator releases it when it takes it out): the
    /// stage then does not wait on the budget itself (taking from a charged
    /// buffer frees as much as it charges), the senders do. Default false: the
    /// stage waits on the budget before producing, like every source.
    fn charge_buffer(&mut self, charge: crate::memory::BufferCharge<Self::Out>) -> bool {
        let _ = charge;
        false
    }

    /// For an operator that keeps input elements in buffers of its own beyond
    /// the step (a broadcast hub's subscriber buffers): under a runtime
    /// [memory budget](crate::memory), called once before the stage starts
    /// with the stage's [`HeldCharge`](crate::memory::HeldCharge). The
    /// operator charges each element when a buffer takes it and releases it
    /// when it leaves; the bytes show in
    /// [`MemoryUsage::held`](crate::memory::MemoryUsage::held) under the
    /// stage. Elements counted in [`held`](Self::held) stay charged to the
    /// input edge instead and need no such charge. Return true if the
    /// operator keeps the charge. Default false: nothing is charged.
    fn charge_held(&mut self, charge: crate::memory::HeldCharge<Self::In>) -> bool {
        let _ = charge;
        false
    }
}
