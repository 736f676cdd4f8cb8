//! Errors of building, starting and running pipelines.

use weir_supervisor::Failure;

use crate::pipeline::report::Report;

/// A pipeline that cannot be built. Every variant names what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A stage's input capacity is zero: nothing could ever flow into it.
    #[error("stage `{stage}` has capacity 0; an edge needs room for at least one element")]
    ZeroCapacity {
        /// The stage.
        stage: String,
    },
    /// A capacity was set on a source, which has no input edge.
    #[error(
        "stage `{stage}` is a source and has no input edge to size; set the capacity of the stage after it"
    )]
    CapacityOnSource {
        /// The source.
        stage: String,
    },
    /// An operator argument is out of range (`chunks(0)`, `map_async(0, …)`).
    #[error("stage `{stage}`: {message}")]
    InvalidArgument {
        /// The stage.
        stage: String,
        /// What is wrong.
        message: String,
    },
    /// Two stages have the same name; names identify stages in stats and errors.
    #[error("stage name `{name}` is used by stages {first} and {second}")]
    DuplicateStageName {
        /// The name.
        name: String,
        /// Index of the first stage with it.
        first: usize,
        /// Index of the second.
        second: usize,
    },
    /// A stage name is empty.
    #[error("stage {index} has an empty name")]
    EmptyStageName {
        /// Index of the stage.
        index: usize,
    },
    /// The pipeline's batch limit is zero.
    #[error("pipeline `{pipeline}` has max_batch 0; a batch carries at least one element")]
    ZeroBatchLimit {
        /// The pipeline.
        pipeline: String,
    },
    /// A stage was pinned to an arbiter the runtime does not have.
    #[error("stage `{stage}` is pinned to arbiter {arbiter}, but the runtime has {available}")]
    NoSuchArbiter {
        /// The stage.
        stage: String,
        /// The arbiter index asked for.
        arbiter: usize,
        /// How many the runtime has.
        available: usize,
    },
    /// A port of a graph stage is not connected: every input and output of every
    /// stage must be, exactly once.
    #[error("port `{port}` of stage `{stage}` is not connected")]
    UnconnectedPort {
        /// The stage.
        stage: String,
        /// The port: `in`, `out`, `in[1]`, `out[2]`, …
        port: String,
    },
    /// A port of a graph stage is connected more than once. To send one output to
    /// several stages, broadcast it; to feed one input from several, merge them.
    #[error(
        "port `{port}` of stage `{stage}` is connected {count} times; connect it once (use broadcast or merge to fan out or in)"
    )]
    PortConnectedTwice {
        /// The stage.
        stage: String,
        /// The port.
        port: String,
        /// How many edges use it.
        count: usize,
    },
    /// The graph has a cycle that goes through no feedback edge. Such a cycle of
    /// bounded edges can deadlock; close a cycle with `Graph::feedback` instead.
    #[error("the graph has a cycle through {}", stages.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" → "))]
    Cycle {
        /// The stages on the cycle, in order.
        stages: Vec<String>,
    },
    /// A port handle of another graph was used.
    #[error("{what} belongs to another graph")]
    ForeignPort {
        /// Which port.
        what: String,
    },
    /// The runtime's arbiters have stopped.
    #[error("the runtime has stopped; stage `{stage}` could not be started")]
    RuntimeStopped {
        /// The stage that could not start.
        stage: String,
    },
    /// A policy file has a `[stages.<name>]` table for a stage the pipeline does
    /// not have (see `Runnable::policies`).
    #[error(
        "the policy file has [stages.{name}], but the pipeline has no stage named `{name}`{}",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnknownPolicyStage {
        /// The name in the file.
        name: String,
        /// The pipeline's stage name nearest to it, if one is near.
        suggestion: Option<String>,
    },
    /// A policy from a policy file cannot apply to a stage.
    #[error("stage `{stage}`: the policy file's [{table}] {message}")]
    PolicyMismatch {
        /// The stage.
        stage: String,
        /// The table that gave the policy: `default` or `stages.<name>`.
        table: String,
        /// What does not fit.
        message: String,
    },
    /// A stage admits elements larger than the runtime's whole memory budget
    /// ([`Operator::max_element_bytes`](crate::operator::Operator::max_element_bytes)):
    /// one such element could never be admitted.
    #[error(
        "stage `{stage}` admits elements of up to {element} bytes, more than the runtime's memory budget of {budget} bytes"
    )]
    BudgetTooSmall {
        /// The stage.
        stage: String,
        /// The largest element it admits, in bytes.
        element: u64,
        /// The budget, in bytes.
        budget: u64,
    },
    /// A checkpointed pipeline has a stage whose state or routing a checkpoint
    /// cannot make consistent (a feedback edge, a dynamic hub, a junction that
    /// waits on one input while another holds elements).
    #[error("stage `{stage}` cannot take part in a checkpoint: {reason}")]
    NotCheckpointable {
        /// The stage.
        stage: String,
        /// Why.
        reason: String,
    },
    /// The checkpoint to restore from does not fit the pipeline: a stateful stage
    /// was added, removed or renamed, or a state does not decode.
    #[error("checkpoint {checkpoint} does not fit the pipeline: stage `{stage}`: {reason}")]
    CheckpointMismatch {
        /// The checkpoint's id.
        checkpoint: u64,
        /// The stage.
        stage: String,
        /// What does not fit.
        reason: String,
    },
    /// The checkpoint directory cannot be used (not writable, unreadable).
    #[error("checkpoint directory `{dir}`: {reason}")]
    CheckpointDir {
        /// The directory.
        dir: String,
        /// What is wrong.
        reason: String,
    },
}

/// A pipeline that failed while running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// User code in a stage panicked or returned an error; every stage was stopped.
    /// The report says where each element ended.
    #[error("stage `{stage}` failed: {failure}")]
    StageFailed {
        /// The stage that failed first.
        stage: String,
        /// What went wrong.
        #[source]
        failure: Failure,
        /// The final counts.
        report: Box<Report>,
    },
    /// The runtime stopped (or its arbiter died) before the pipeline could report.
    #[error("pipeline `{pipeline}` lost its runtime before completing")]
    RuntimeStopped {
        /// The pipeline.
        pipeline: String,
    },
}

impl PipelineError {
    /// The final report, where the pipeline got to produce one.
    pub fn report(&self) -> Option<&Report> {
        match self {
            PipelineError::StageFailed { report, .. } => Some(report),
            PipelineError::RuntimeStopped { .. } => None,
        }
    }
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// Zero arbiters were asked for.
    #[error("a runtime needs at least one arbiter")]
    NoArbiters,
    /// The system thread could not be spawned or died while starting.
    #[error("could not start the actix system thread: {0}")]
    Start(#[source] std::io::Error),
    /// `Runtime::from_current` was called outside a running actix System.
    #[error("no actix System is running on this thread")]
    NoSystem,
    /// The memory budget is smaller than one element of the largest size it was
    /// told of ([`MemoryBudget::max_element_bytes`](crate::memory::MemoryBudget::max_element_bytes)).
    #[error(
        "memory budget of {budget} bytes is smaller than one element of the largest configured size ({element} bytes)"
    )]
    BudgetTooSmall {
        /// The budget, in bytes.
        budget: u64,
        /// The largest element, in bytes.
        element: u64,
    },
}
