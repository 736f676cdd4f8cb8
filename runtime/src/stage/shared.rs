//! Counters a stage shares with its pipeline's handle: written by the stage actor,
//! read by `stats()` and by the final report.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use super::link::EdgeSource;
use crate::operator::Counting;

/// What a stage held when it stopped; the pipeline turns it into abandoned counts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FinalState {
    /// Elements in the input queue.
    pub(crate) queued: usize,
    /// Elements held by the operator.
    pub(crate) held: usize,
    /// Outputs created but not sent (belong to the edge to the next stage).
    pub(crate) outbox: usize,
}

/// Live counters of one stage.
#[derive(Debug)]
pub(crate) struct StageShared {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    /// Input capacity (0 for sources).
    pub(crate) capacity: usize,
    pub(crate) counting: Counting,
    pub(crate) is_source: bool,
    pub(crate) is_sink: bool,
    /// A failure of this stage only ends the merge input its branch feeds (see
    /// `InputFailure::EndInput`) instead of failing the pipeline.
    pub(crate) contained: bool,
    /// The edges feeding this stage, one per input port, for mailbox depth
    /// (`emitted on the edge - received from it`) and the final report.
    pub(crate) inputs: OnceLock<Vec<EdgeSource>>,
    /// Per input port of a junction: elements received on it (empty for a stage with
    /// one input, which counts in `received`).
    pub(crate) in_received: Vec<AtomicU64>,
    /// Per output port of a junction (empty for a stage with one output, which counts
    /// in `produced` and `emitted`).
    pub(crate) out_ports: Vec<PortShared>,

    /// Elements that reached the input queue (sources: elements taken in).
    pub(crate) received: AtomicU64,
    /// `received` at the end of the last pass that left the stage holding nothing
    /// (queues, operator state, outbox): equal to `received` exactly when the stage
    /// has settled everything it received. Monotone; read by feedback edges to see
    /// that their cycle is empty.
    pub(crate) settled: AtomicU64,
    /// Inputs fully processed (sinks: delivered).
    pub(crate) completed: AtomicU64,
    pub(crate) filtered: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Inputs sent to the dead letters by the stage's supervision.
    pub(crate) dead_lettered: AtomicU64,
    /// Failed attempts that were tried again (retries and restarts).
    pub(crate) retries: AtomicU64,
    /// Restarts of the stage.
    pub(crate) restarts: AtomicU64,
    /// State entries (keys, windows) discarded by restarts from the factory.
    pub(crate) state_lost: AtomicU64,
    /// The circuit breaker's state (see `BreakerState`), kept from the events.
    pub(crate) breaker: std::sync::atomic::AtomicU8,
    /// The last failure of user code in the stage, as text.
    pub(crate) last_error: std::sync::Mutex<Option<String>>,
    /// Time spent with output waiting and no credit (backpressure), in nanoseconds.
    pub(crate) blocked_nanos: AtomicU64,
    /// Outputs created.
    pub(crate) produced: AtomicU64,
    /// Outputs sent downstream. Incremented before a batch is sent, so that the
    /// receiver's view of its mailbox depth never underestimates.
    pub(crate) emitted: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) largest_batch: AtomicUsize,
    pub(crate) queued: AtomicUsize,
    pub(crate) held: AtomicUsize,
    pub(crate) outbox: AtomicUsize,
    pub(crate) credit: AtomicUsize,
    /// Largest input-edge occupancy (queue + mailbox) the stage observed.
    pub(crate) peak_occupancy: AtomicUsize,
    /// Times the stage observed its input edge above capacity (a protocol bug).
    pub(crate) bound_violations: AtomicU64,
    /// Set while the stage is stalled (see `Runnable::stall_timeout`).
    pub(crate) stalled: std::sync::atomic::AtomicBool,
    /// The stall timeout a policy file gave the stage, in nanoseconds (0: none,
    /// the stage's supervision or the pipeline's decides).
    pub(crate) stall_override: AtomicU64,
    /// The stall action a policy file gave the stage (`NO_ACTION`: none).
    pub(crate) on_stall_override: std::sync::atomic::AtomicU8,
    /// The stage's busy mark, which the stall monitor watches.
    pub(crate) busy: crate::stage::monitor::Busy,
    /// The operator's state when the stage stopped (checkpointed pipelines only):
    /// it stands for every checkpoint whose barrier had not reached the stage.
    pub(crate) final_snapshot: Mutex<Option<crate::stage::actor::StageSnapshot>>,
    pub(crate) final_state: Mutex<Option<FinalState>>,
    /// Configs applied at run time (see `reconfig`): the generation of the one in
    /// force (0: the one it was built with).
    pub(crate) config_generation: AtomicU64,
    /// The config in force, as `Debug` shows it, once one was applied.
    pub(crate) config: Mutex<Option<String>>,
    /// Configs the stage rejected.
    pub(crate) config_rejected: AtomicU64,
    /// Set while a source is paused by `PipelineController::pause_source`: it
    /// takes nothing in until resumed (a shutdown still ends it).
    pub(crate) paused: std::sync::atomic::AtomicBool,
    /// A resizable pool's dispatch: sets how many replicas take elements (see
    /// `PipelineController::resize_pool`).
    pub(crate) resizer: OnceLock<Resizer>,
    /// What the stage's output edge holds, charged to the runtime's memory
    /// budget (set by the stage when there is one; a junction's are per port).
    pub(crate) charge: OnceLock<Arc<crate::memory::EdgeLog>>,
}

/// The future a [`Resizer`] returns.
pub(crate) type Resized = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<crate::reconfig::Applied, crate::reconfig::ReconfigError>,
            > + Send,
    >,
>;

/// Sets a resizable pool's size through its `ConfigHandle` (so that the handle's
/// `current()` and generation follow).
pub(crate) struct Resizer(pub(crate) Box<dyn Fn(usize) -> Resized + Send + Sync>);

impl std::fmt::Debug for Resizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resizer")
    }
}

/// `on_stall_override` when no policy file set it.
const NO_ACTION: u8 = u8::MAX;

/// Counters of one output port of a junction.
#[derive(Debug, Default)]
pub(crate) struct PortShared {
    /// Elements the junction put in the port's buffer.
    pub(crate) pushed: AtomicU64,
    /// Elements the port's lag policy dropped (or a cancelled branch discarded).
    pub(crate) dropped: AtomicU64,
    /// Elements sent on the port.
    pub(crate) emitted: AtomicU64,
    /// Elements in the port's buffer when the junction stopped.
    pub(crate) final_outbox: AtomicUsize,
    /// Times the port was detached by its lag policy.
    pub(crate) detached: AtomicU64,
    /// Elements in the port's buffer now.
    pub(crate) buffered: AtomicUsize,
    /// Elements the port's branch will take now (its credit).
    pub(crate) credit: AtomicUsize,
    /// What the port's edge holds, charged to the runtime's memory budget.
    pub(crate) charge: OnceLock<Arc<crate::memory::EdgeLog>>,
}

/// Static description of a stage, resolved at build time.
#[derive(Debug, Clone)]
pub(crate) struct StageSpec {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) capacity: usize,
    pub(crate) counting: Counting,
    pub(crate) is_source: bool,
    pub(crate) is_sink: bool,
    /// A failure of this stage only ends the merge input its branch feeds (see
    /// `InputFailure::EndInput`) instead of failing the pipeline.
    pub(crate) contained: bool,
    /// Input ports of a junction (0 for a stage).
    pub(crate) junction_inputs: usize,
    /// Output ports of a junction (0 for a stage).
    pub(crate) junction_outputs: usize,
}

impl StageShared {
    /// Records the state the stage stopped with.
    pub(crate) fn set_final_snapshot(&self, snapshot: crate::stage::actor::StageSnapshot) {
        *self
            .final_snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(snapshot);
    }

    /// The state the stage stopped with, if it has stopped in a checkpointed
    /// pipeline.
    pub(crate) fn final_snapshot(&self) -> Option<crate::stage::actor::StageSnapshot> {
        self.final_snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Time spent blocked on backpressure, in milliseconds (for the
    /// `weir_stage_blocked_milliseconds_total` counter).
    pub(crate) fn blocked_millis(&self) -> u64 {
        self.blocked_nanos.load(Relaxed) / 1_000_000
    }

    /// The stall timeout a policy file gave the stage, if any.
    pub(crate) fn stall_override(&self) -> Option<std::time::Duration> {
        match self.stall_override.load(Relaxed) {
            0 => None,
            nanos => Some(std::time::Duration::from_nanos(nanos)),
        }
    }

    /// Sets the stall timeout from a policy file (`None`: the file sets none).
    pub(crate) fn set_stall_override(&self, timeout: Option<std::time::Duration>) {
        let nanos = timeout.map_or(0, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        self.stall_override.store(nanos, Relaxed);
    }

    /// The stall action a policy file gave the stage, if any.
    pub(crate) fn on_stall_override(&self) -> Option<weir_supervisor::policy::StallAction> {
        use weir_supervisor::policy::StallAction;
        match self.on_stall_override.load(Relaxed) {
            NO_ACTION => None,
            code => Some(match code {
                1 => StallAction::Restart,
                2 => StallAction::Fail,
                _ => StallAction::Report,
            }),
        }
    }

    /// Sets the stall action from a policy file.
    pub(crate) fn set_on_stall_override(&self, action: weir_supervisor::policy::StallAction) {
        self.on_stall_override
            .store(crate::stage::monitor::encode(action), Relaxed);
    }

    /// The last failure recorded for the stage.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn new(index: usize, spec: StageSpec) -> Self {
        StageShared {
            final_snapshot: Mutex::new(None),
            index,
            name: spec.name,
            kind: spec.kind,
            capacity: spec.capacity,
            counting: spec.counting,
            is_source: spec.is_source,
            is_sink: spec.is_sink,
            contained: spec.contained,
            inputs: OnceLock::new(),
            in_received: (0..spec.junction_inputs)
                .map(|_| AtomicU64::new(0))
                .collect(),
            out_ports: (0..spec.junction_outputs)
                .map(|_| PortShared::default())
                .collect(),
            received: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            stall_override: AtomicU64::new(0),
            on_stall_override: std::sync::atomic::AtomicU8::new(NO_ACTION),
            busy: crate::stage::monitor::Busy::default(),
            state_lost: AtomicU64::new(0),
            breaker: std::sync::atomic::AtomicU8::new(0),
            last_error: std::sync::Mutex::new(None),
            blocked_nanos: AtomicU64::new(0),
            produced: AtomicU64::new(0),
            emitted: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            largest_batch: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            outbox: AtomicUsize::new(0),
            credit: AtomicUsize::new(0),
            peak_occupancy: AtomicUsize::new(0),
            bound_violations: AtomicU64::new(0),
            stalled: std::sync::atomic::AtomicBool::new(false),
            final_state: Mutex::new(None),
            config_generation: AtomicU64::new(0),
            config: Mutex::new(None),
            config_rejected: AtomicU64::new(0),
            paused: std::sync::atomic::AtomicBool::new(false),
            resizer: OnceLock::new(),
            charge: OnceLock::new(),
        }
    }

    /// The config in force, as text, once one was applied at run time.
    pub(crate) fn config(&self) -> Option<String> {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Elements sent to this stage that it has not handled yet.
    pub(crate) fn in_mailbox(&self) -> u64 {
        let Some(inputs) = self.inputs.get() else {
            return 0;
        };
        inputs
            .iter()
            .enumerate()
            .map(|(port, edge)| edge.emitted(Relaxed).saturating_sub(self.received_on(port)))
            .sum()
    }

    /// Elements received on input `port`.
    pub(crate) fn received_on(&self, port: usize) -> u64 {
        match self.in_received.get(port) {
            Some(count) => count.load(Relaxed),
            None => self.received.load(Relaxed),
        }
    }

    /// Records that the stage holds nothing after receiving `received` elements.
    pub(crate) fn mark_settled(&self, received: u64) {
        self.settled.store(received, SeqCst);
    }

    pub(crate) fn final_state(&self) -> Option<FinalState> {
        *self.final_state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
