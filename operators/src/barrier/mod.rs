//! [`Barrier`]: align N streams step by step (a synchronization barrier).
//!
//! A barrier has N inputs and N outputs. Input `i`'s k-th element (its *step* k)
//! leaves on output `i` only once **every** input has its k-th element; the N
//! elements of a step are released together, in one routing pass. So no output
//! is ever more than one step ahead of another (while a step is being pushed,
//! some outputs have it and others are about to), and a fast input waits for the
//! slowest.
//!
//! ```text
//!  in[0] ─ a0 a1 a2 ─┐                   ┌─► a0 a1 ─ out[0]
//!  in[1] ─ b0 b1 ────┼─► step k released ┼─► b0 b1 ─ out[1]
//!  in[2] ─ c0 c1 ────┘   when all have k └─► c0 c1 ─ out[2]   (a2 waits for b2, c2)
//! ```
//!
//! - **State**: the step number and when the current step started waiting. The
//!   barrier holds no element: waiting ones stay in the input queues, so memory
//!   is bounded by the input edges' capacities.
//! - **Backpressure**: a step is released only when every output has room; one
//!   slow branch holds all of them (that is the point of a barrier).
//! - **Time**: the timeout runs on tokio's clock of the barrier's arbiter (virtual
//!   under paused time), from the moment the first input reaches a step that
//!   some other input has not; waiting for downstream room does not count.
//! - **Failure**: a timeout fails the pipeline with [`ErrorClass::Timeout`]
//!   (`weir_runtime::ErrorClass`), naming the step, the late inputs and the ones
//!   waiting (by number and by the names given with [`Barrier::input_names`]).
//! - **Completion**: when every input has ended, the barrier ends every output.
//!   When inputs end at different steps, [`UnevenEnd`] decides: truncate to the
//!   last complete step (the default, like `zip`; the elements beyond it are
//!   counted as filtered at the barrier) or fail naming the inputs. A branch that
//!   cancels ends the alignment: every input is cancelled and every output ends.
//!
//! # Checkpoint barriers
//!
//! The alignment is kept apart from the routing (`align.rs`) so that the same
//! mechanism can carry Flink-style checkpoint barriers later. A checkpoint
//! barrier is a marker a source injects in-band; a stage with several inputs
//! *aligns* on marker k exactly as this barrier aligns on step k: an input whose
//! marker k has arrived is blocked (its later elements stay queued, bounded by
//! its edge), the others flow on until their marker k arrives, and when all have
//! it the stage snapshots its state and forwards marker k on every output before
//! releasing anything behind it. What changes is only what counts as reaching
//! the step: here every element is a step; there only markers are, and elements
//! between markers pass freely. The timeout and its error naming the late input
//! carry over unchanged (a checkpoint that cannot align is aborted, not the
//! pipeline).
//!
//! A pipeline with a step barrier cannot be checkpointed (building it with
//! checkpoints is a `BuildError::NotCheckpointable`): the elements of the inputs
//! ahead of the slowest wait in the input queues, and at a checkpoint barrier
//! they can neither be released (their partners come after it) nor be part of a
//! snapshot. Making it checkpointable needs the junction to be told that a
//! checkpoint is pending, so that it takes those elements into its own state.
//!
//! [`ErrorClass::Timeout`]: weir_runtime::ErrorClass::Timeout

mod align;
mod junction;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use weir_runtime::{Graph, Outlet};

pub use junction::BarrierJunction;

/// What a barrier does when its inputs end at different steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnevenEnd {
    /// Release every step all inputs reached, then end: the other inputs are
    /// cancelled and what they had queued beyond the last complete step is
    /// counted as filtered at the barrier.
    #[default]
    Truncate,
    /// Fail the pipeline, naming the inputs that ended and those that went on.
    Fail,
}

/// A barrier's settings, for [`BarrierExt::barrier`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::barrier::{Barrier, UnevenEnd};
///
/// let barrier = Barrier::new()
///     .timeout(Duration::from_secs(5))
///     .input_names(["prices", "orders"])
///     .on_uneven_end(UnevenEnd::Fail);
/// let stats = barrier.stats();
/// assert_eq!(stats.steps(), 0);
/// # drop(barrier);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Barrier {
    pub(crate) timeout: Option<Duration>,
    pub(crate) names: Vec<String>,
    pub(crate) on_uneven_end: UnevenEnd,
    pub(crate) stats: BarrierStats,
}

impl Barrier {
    /// A barrier with no timeout that truncates to the last complete step.
    pub fn new() -> Self {
        Barrier::default()
    }

    /// Fails the pipeline when some input has not reached a step `timeout` after
    /// the first input did.
    ///
    /// Choosing it: above the slowest input's longest legitimate gap between two
    /// elements (a slow page fetch, a retry with backoff upstream).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Names the inputs, in port order, for error messages (one name per input).
    #[must_use]
    pub fn input_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.names = names.into_iter().map(Into::into).collect();
        self
    }

    /// What happens when the inputs end at different steps (see [`UnevenEnd`]).
    #[must_use]
    pub fn on_uneven_end(mut self, rule: UnevenEnd) -> Self {
        self.on_uneven_end = rule;
        self
    }

    /// A handle on the barrier's progress, readable while it runs.
    pub fn stats(&self) -> BarrierStats {
        self.stats.clone()
    }
}

/// Progress of a barrier (see [`Barrier::stats`]).
#[derive(Debug, Clone, Default)]
pub struct BarrierStats(Arc<StatsInner>);

#[derive(Debug, Default)]
struct StatsInner {
    steps: AtomicU64,
}

impl BarrierStats {
    /// Steps released so far: every output has been given exactly this many
    /// elements.
    pub fn steps(&self) -> u64 {
        self.0.steps.load(Relaxed)
    }
}

/// The barrier as a method on [`Graph`]. In the prelude.
pub trait BarrierExt {
    /// Aligns `inputs` step by step: output `i` carries input `i`'s elements, the
    /// k-th released only once every input has its k-th (see the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::barrier::{Barrier, BarrierExt};
    /// use weir_operators::{FlowExt, Pipeline};
    /// use weir_runtime::Graph;
    ///
    /// let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let mut g = Graph::new();
    /// let fast = g.source(Pipeline::from_iter(0..5_u32));
    /// let slow = g.source(Pipeline::from_iter(10..13_u32));
    /// let [a, b] = g.barrier([fast, slow], Barrier::new());
    /// let a = g.sink(a, |f| f.collect());
    /// let b = g.sink(b, |f| f.collect());
    /// let done = g.run(&rt)?.wait()?;
    /// done.report.check_conservation()?;
    /// // Three complete steps; 3 and 4 of the fast input had no partner.
    /// assert_eq!(futures::executor::block_on(a), Some(vec![0, 1, 2]));
    /// assert_eq!(futures::executor::block_on(b), Some(vec![10, 11, 12]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn barrier<T: Send + 'static, const N: usize>(
        &mut self,
        inputs: [Outlet<T>; N],
        barrier: Barrier,
    ) -> [Outlet<T>; N];

    /// [`barrier`](Self::barrier) for a checkpointed pipeline: the elements of
    /// inputs ahead of the slowest, waiting in its queues at a checkpoint
    /// barrier, are kept in the checkpoint with the steps released (so they need
    /// serde types), and a restore goes on from that step with them. A plain
    /// `barrier` in a checkpointed pipeline is a `BuildError::NotCheckpointable`.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::barrier::{Barrier, BarrierExt};
    /// use weir_runtime::{Graph, Outlet};
    ///
    /// fn in_step(g: &mut Graph, a: Outlet<u64>, b: Outlet<u64>) -> [Outlet<u64>; 2] {
    ///     g.barrier_checkpointed([a, b], Barrier::new())
    /// }
    /// ```
    fn barrier_checkpointed<T, const N: usize>(
        &mut self,
        inputs: [Outlet<T>; N],
        barrier: Barrier,
    ) -> [Outlet<T>; N]
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static;
}

impl BarrierExt for Graph {
    fn barrier<T: Send + 'static, const N: usize>(
        &mut self,
        inputs: [Outlet<T>; N],
        barrier: Barrier,
    ) -> [Outlet<T>; N] {
        step_barrier(self, inputs, BarrierJunction::<T>::new(barrier, N))
    }

    fn barrier_checkpointed<T, const N: usize>(
        &mut self,
        inputs: [Outlet<T>; N],
        barrier: Barrier,
    ) -> [Outlet<T>; N]
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        step_barrier(
            self,
            inputs,
            BarrierJunction::<T>::new(barrier, N).checkpointed(),
        )
    }
}

fn step_barrier<T: Send + 'static, const N: usize>(
    g: &mut Graph,
    inputs: [Outlet<T>; N],
    junction: BarrierJunction<T>,
) -> [Outlet<T>; N] {
    let ports = g.junction(junction, N, N);
    for (from, to) in inputs.into_iter().zip(ports.inlets) {
        g.connect(from, to);
    }
    match <[Outlet<T>; N]>::try_from(ports.outlets) {
        Ok(outlets) => outlets,
        // Cannot happen: `g.junction(.., N, N)` returns exactly N outlets.
        Err(_) => unreachable!("the junction was built with {N} outputs"),
    }
}
