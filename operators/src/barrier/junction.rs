//! [`BarrierJunction`]: the junction that releases one step of every input at a
//! time.

use std::sync::atomic::Ordering::Relaxed;

use weir_runtime::junction::{Junction, Ports, Routing};
use weir_runtime::{ErrorClass, Failure};

use super::align::{Aligned, Alignment};
use super::{Barrier, UnevenEnd};

/// Releases the k-th element of every input together, each on the output of the
/// same number, once all inputs have their k-th element and every output has
/// room for it. Built by [`BarrierExt::barrier`](super::BarrierExt::barrier).
///
/// It holds no element of its own: waiting elements stay in the input queues, so
/// an input can be ahead of the slowest by at most its edge capacity, queued,
/// and never by more than one step *released*.
#[derive(Debug)]
pub struct BarrierJunction<T> {
    config: Barrier,
    align: Alignment,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> BarrierJunction<T> {
    pub(crate) fn new(config: Barrier, inputs: usize) -> Self {
        BarrierJunction {
            align: Alignment::new(inputs, config.timeout),
            config,
            _t: std::marker::PhantomData,
        }
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
        Some(
            "a step barrier keeps the elements of inputs ahead of the slowest in its input \
             queues; at a checkpoint barrier they can neither be released (their partners \
             come after it) nor be part of the snapshot"
                .into(),
        )
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
