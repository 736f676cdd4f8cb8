//! [`BarrierJunction`]: the junction that releases one step of every input at a
//! time.

use std::sync::atomic::Ordering::Relaxed;

use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::junction::{Junction, Ports, QueueCodec, Routing};
use weir_runtime::{ErrorClass, Failure};

use super::align::{Aligned, Alignment};
use super::{Barrier, UnevenEnd};

/// Releases the k-th element of every input together, each on the output of the
/// same number, once all inputs have their k-th element and every output has
/// room for it. Built by [`BarrierExt::barrier`](super::BarrierExt::barrier).
///
/// It holds no element of its own: waiting elements stay in the input queues, so
/// an input can be ahead of the slowest by at most its edge capacity, queued,
/// and never by more than one step *released*. Built by
/// [`BarrierExt::barrier_checkpointed`](super::BarrierExt::barrier_checkpointed),
/// those queues and its step are kept in checkpoints.
#[derive(Debug)]
pub struct BarrierJunction<T> {
    config: Barrier,
    align: Alignment,
    /// Set for a checkpointed barrier: the queues are part of its snapshot.
    codec: Option<QueueCodec<T>>,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> BarrierJunction<T> {
    pub(crate) fn new(config: Barrier, inputs: usize) -> Self {
        BarrierJunction {
            align: Alignment::new(inputs, config.timeout),
            config,
            codec: None,
            _t: std::marker::PhantomData,
        }
    }

    /// Keeps the elements waiting in its queues (inputs ahead of the slowest)
    /// and its step in checkpoints.
    pub(crate) fn checkpointed(mut self) -> Self
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.codec = Some(QueueCodec::serde());
        self
    }

    /// "input 2 (\"slow\")", or "input 2" without a name.
    fn describe(&self, inputs: &[usize]) -> String {
        let one = |i: &usize| match self.config.names.get(*i) {
            Some(name) => format!("input {i} ({name:?})"),
            None => format!("input {i}"),
        };
        inputs.iter().map(one).collect::<Vec<_>>().join(", ")
    }

    /// Fails the stage with `failure` (the junction actor turns this payload into
    /// the stage's failure; no panic hook runs).
    fn fail(failure: Failure) -> ! {
        std::panic::resume_unwind(Box::new(failure))
    }
}

impl<T: Send + 'static> Junction for BarrierJunction<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "barrier"
    }

    /// A checkpoint barrier can find the inputs at different steps: input 0 has
    /// its k-th element before the checkpoint barrier, input 1 only after. The
    /// step cannot be released before the snapshot (input 1's element is behind
    /// its checkpoint barrier), and the barrier holds no elements of its own: the
    /// waiting ones stay in the input queues, which a snapshot does not hold. So
    /// the alignment would never complete.
    fn not_checkpointable(&self) -> Option<String> {
        if self.codec.is_some() {
            return None;
        }
        Some(
            "a step barrier keeps the elements of inputs ahead of the slowest in its input \
             queues; at a checkpoint barrier they cannot be released (their partners come \
             after it), so they must be in the snapshot: build it with \
             BarrierExt::barrier_checkpointed (serde element types)"
                .into(),
        )
    }

    fn queue_codec(&self) -> Option<QueueCodec<T>> {
        self.codec
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        if self.codec.is_some() {
            Some(self)
        } else {
            None
        }
    }

    fn validate(&self, inputs: usize, outputs: usize) -> Result<(), String> {
        if inputs == 0 {
            return Err("a barrier needs at least one input".into());
        }
        if inputs != outputs {
            return Err(format!(
                "a barrier has one output per input: {inputs} inputs, {outputs} outputs"
            ));
        }
        if !self.config.names.is_empty() && self.config.names.len() != inputs {
            return Err(format!(
                "barrier input names: {} names for {inputs} inputs",
                self.config.names.len()
            ));
        }
        if self.config.timeout.is_some_and(|t| t.is_zero()) {
            return Err("barrier timeout must be longer than zero".into());
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        let n = ports.inputs();
        // A branch that cancelled can take no more steps: the alignment is over.
        if (0..n).any(|o| !ports.is_open(o)) {
            for i in 0..n {
                ports.cancel_input(i);
            }
            return Routing::Finished;
        }
        loop {
            let now = tokio::time::Instant::now().into_std();
            match self.align.observe(|i| ports.queued(i) > 0, now) {
                Aligned::Ready => {
                    if (0..n).any(|o| ports.room(o) == 0) {
                        // Downstream backpressure, not a late input: no timeout.
                        return Routing::Continue;
                    }
                    for i in 0..n {
                        if let Some(x) = ports.pop(i) {
                            ports.push(i, x);
                        }
                    }
                    ports.commit();
                    self.align.released();
                    self.config.stats.0.steps.store(self.align.step(), Relaxed);
                }
                Aligned::TimedOut { late, .. } if late.iter().any(|&i| ports.is_exhausted(i)) => {
                    // An input that ended is not late: the end rule applies.
                    break;
                }
                Aligned::TimedOut { late, waited } => {
                    let arrived: Vec<usize> = (0..n).filter(|i| !late.contains(i)).collect();
                    Self::fail(Failure::error(
                        ErrorClass::Timeout,
                        format!(
                            "barrier timed out at step {} after {waited:?}: {} late; {} waiting",
                            self.align.step(),
                            self.describe(&late),
                            self.describe(&arrived)
                        ),
                    ));
                }
                Aligned::Waiting { deadline } => {
                    if let Some(at) = deadline {
                        ports.wake_at(at);
                    }
                    break;
                }
                Aligned::Idle => break,
            }
        }
        self.on_ended(ports, n)
    }
}

impl<T: Send + 'static> BarrierJunction<T> {
    /// Once an input has ended with every step it reached released, no later
    /// step can complete: applies [`UnevenEnd`].
    fn on_ended(&mut self, ports: &mut Ports<'_, T, T>, n: usize) -> Routing {
        let ended: Vec<usize> = (0..n).filter(|&i| ports.is_exhausted(i)).collect();
        if ended.is_empty() {
            return Routing::Continue;
        }
        if ended.len() == n {
            return Routing::Finished;
        }
        match self.config.on_uneven_end {
            UnevenEnd::Truncate => {
                for i in 0..n {
                    ports.cancel_input(i);
                }
                Routing::Finished
            }
            UnevenEnd::Fail => {
                let ahead: Vec<usize> = (0..n).filter(|&i| ports.queued(i) > 0).collect();
                if ahead.is_empty() {
                    // The others may still end at this same step.
                    return Routing::Continue;
                }
                Self::fail(Failure::error(
                    ErrorClass::Permanent,
                    format!(
                        "barrier inputs ended at different steps: {} ended after {} steps, {} went on",
                        self.describe(&ended),
                        self.align.step(),
                        self.describe(&ahead)
                    ),
                ))
            }
        }
    }
}

/// A checkpointed barrier's own state: the steps it released (its queues are
/// kept by its queue codec).
impl<T: Send + 'static> Checkpointable for BarrierJunction<T> {
    fn snapshot(&mut self, _: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(1, &self.align.step())
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let step: u64 = snapshot.decode(1, ctx)?;
        self.align.restore_step(step);
        self.config.stats.0.steps.store(step, Relaxed);
        Ok(())
    }
}
