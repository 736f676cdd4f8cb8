//! Pipelines: the typed builder ([`Flow`], [`Runnable`]), the running handle
//! ([`Running`], [`PipelineController`]), live [`PipelineStats`] and the final
//! [`Report`].

mod checkpointing;
pub(crate) mod control;
pub(crate) mod events;
pub(crate) mod feedback;
pub(crate) mod flow;
pub(crate) mod graph;
pub(crate) mod mux;
pub(crate) mod node;
pub(crate) mod output;
pub(crate) mod parts;
pub(crate) mod policies;
pub(crate) mod pool;
pub(crate) mod reconfig_graph;
pub(crate) mod report;
pub(crate) mod running;
pub(crate) mod shared;
pub(crate) mod stats;
pub(crate) mod topology;
pub(crate) mod when;

pub use control::{ControlError, Controllable};
pub use events::{EventError, Events};
pub use flow::{DEFAULT_CAPACITY, Flow, Runnable};
pub use graph::{Graph, Inlet, JunctionPorts, Outlet};
pub use mux::{DEFAULT_SUB_CAPACITY, Muxed};
pub use output::{OutputReceiver, OutputSender, output};
pub use parts::FUSION_ENV;
pub use pool::{Pool, PoolOrder};
pub use report::{ConservationError, ContainedFailure, Outcome, PortCounts, Report, StageReport};
pub use running::{Completion, PipelineController, Running};
pub use stats::{PipelineStats, StageStats};
pub use topology::{EdgeLoad, NodeRole, SupervisionSummary, Topology, TopologyEdge, TopologyNode};
