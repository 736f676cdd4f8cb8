//! weir's engine: stage actors on bounded, credit-based edges.
//!
//! Most users depend on the `weir` facade and `use weir::prelude::*`; this crate is
//! what it is built on, and what an operator author implements against.
//!
//! - [`Runtime`]: the arbiters (threads) stages run on, owned or borrowed from a
//!   running actix `System`.
//! - [`Flow`] → [`Runnable`] → [`Running`]: build a typed pipeline, run it, await its
//!   [`Completion`] with a [`Report`].
//! - [`operator::Operator`]: what every stage runs.
//!
//! The guarantees (bounded edges, backpressure, batching without latency,
//! conservation, ordering, completion and shutdown) are stated in `docs/semantics.md`
//! with the tests that prove them.
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

pub mod checkpoint;
mod error;
pub mod junction;
pub mod manager;
pub mod memory;
pub mod observe;
pub mod operator;
pub mod panics;
mod pipeline;
pub mod reconfig;
mod runtime;
mod stage;
mod supervision;

pub use error::{BuildError, PipelineError, RuntimeError};
pub use pipeline::{
    Completion, ConservationError, ContainedFailure, ControlError, Controllable, DEFAULT_CAPACITY,
    DEFAULT_SUB_CAPACITY, EventError, Events, FUSION_ENV, Flow, Graph, Inlet, JunctionPorts, Muxed,
    Outcome, Outlet, OutputReceiver, OutputSender, PipelineController, PipelineStats, Pool,
    PoolOrder, PortCounts, Report, Runnable, Running, StageReport, StageStats, output,
};
pub use pipeline::{EdgeLoad, NodeRole, SupervisionSummary, Topology, TopologyEdge, TopologyNode};
pub use runtime::{Placement, Runtime, RuntimeBuilder};
pub use supervision::Supervision;
pub use weir_supervisor::{ErrorClass, Failure, StopReason, SupervisionEvent};

#[cfg(test)]
mod do_send_audit;
