//! [`Runtime`]: the arbiters pipelines run on, and where each stage goes.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use actix_rt::{Arbiter, ArbiterHandle, System};

use crate::error::RuntimeError;

/// Where a pipeline's stages run.
///
/// A hop between actors on the same arbiter costs a fraction of a microsecond; a hop
/// across arbiters costs a thread wake-up (tens of microseconds on a small machine).
/// So a linear chain is best kept together, and parallelism comes from running many
/// pipelines (or partitions) on different arbiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Placement {
    /// All stages on one arbiter; successive pipelines take the runtime's arbiters in
    /// turn. The default.
    #[default]
    Together,
    /// Each stage on the next arbiter in turn: a pipelined chain across threads. Only
    /// worth it when stages are CPU-heavy enough to pay for the wake-ups.
    Spread,
}

/// The set of arbiters (one thread each) weir places stages on.
///
/// Either weir starts its own actix `System` on background threads
/// ([`Runtime::new`], [`Runtime::builder`]) or it runs inside one the service already
/// has ([`Runtime::from_current`], [`Runtime::from_arbiters`]). Cloning is cheap; the
/// owned system stops when the last clone is dropped.
///
/// # Examples
///
/// ```
/// let rt = weir_runtime::Runtime::builder().arbiters(2).build()?;
/// assert_eq!(rt.arbiters(), 2);
/// # Ok::<(), weir_runtime::RuntimeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
    owned: Option<OwnedSystem>,
    /// The memory budget every pipeline of the runtime charges, if any.
    budget: Option<Arc<crate::memory::Budget>>,
}

#[derive(Debug)]
struct OwnedSystem {
    system: System,
    thread: Mutex<Option<JoinHandle<()>>>,
    arbiter_threads: Vec<Arbiter>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(owned) = self.owned.take() {
            for arbiter in &owned.arbiter_threads {
                arbiter.stop();
            }
            owned.system.stop();
            let thread = owned
                .thread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            // Joining from one of our own threads would wait for ourselves.
            if System::try_current().is_none()
                && let Some(thread) = thread
            {
                let _ = thread.join();
            }
            for arbiter in owned.arbiter_threads {
                if System::try_current().is_none() {
                    let _ = arbiter.join();
                }
            }
        }
    }
}

/// Configures a [`Runtime`] that owns its threads.
#[derive(Debug, Clone, Default)]
#[must_use = "a RuntimeBuilder does nothing until build is called"]
pub struct RuntimeBuilder {
    arbiters: Option<usize>,
    budget: Option<crate::memory::MemoryBudget>,
}

impl RuntimeBuilder {
    /// Number of arbiters (threads). Default: the available parallelism.
    ///
    /// Choose more than one only if you run several pipelines (or partitions) at
    /// once: a single linear pipeline runs on one arbiter.
    pub fn arbiters(mut self, n: usize) -> Self {
        self.arbiters = Some(n);
        self
    }

    /// Bounds the bytes of the elements every pipeline of the runtime holds on
    /// its edges together: when they reach `budget`, sources stop admitting
    /// until the pipelines have handed enough on (see [`memory`](crate::memory)).
    /// A plain number is a budget in bytes. Default: none (each edge is bounded
    /// by its capacity in elements only).
    pub fn memory_budget(mut self, budget: impl Into<crate::memory::MemoryBudget>) -> Self {
        self.budget = Some(budget.into());
        self
    }

    /// Starts the system thread and the arbiters.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NoArbiters`] for zero arbiters, [`RuntimeError::Start`] if a
    /// thread cannot be spawned.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let n = match self.arbiters {
            Some(0) => return Err(RuntimeError::NoArbiters),
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if let Some(budget) = &self.budget {
            budget.check()?;
        }
        let budget = self.budget.map(crate::memory::MemoryBudget::start);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = thread::Builder::new()
            .name("weir-system".to_owned())
            .spawn(move || {
                let sys = System::new();
                let arbiters: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
                let _ = tx.send((System::current(), arbiters));
                let _ = sys.run();
            })
            .map_err(RuntimeError::Start)?;
        let (system, arbiter_threads) = rx.recv().map_err(|_| {
            RuntimeError::Start(std::io::Error::other(
                "the system thread died while starting",
            ))
        })?;
        let arbiters = arbiter_threads.iter().map(Arbiter::handle).collect();
        Ok(Runtime {
            inner: Arc::new(Inner {
                arbiters,
                next: AtomicUsize::new(0),
                budget,
                owned: Some(OwnedSystem {
                    system,
                    thread: Mutex::new(Some(thread)),
                    arbiter_threads,
                }),
            }),
        })
    }
}

impl Runtime {
    /// A runtime with one arbiter per available core, on its own threads.
    ///
    /// # Errors
    ///
    /// See [`RuntimeBuilder::build`].
    pub fn new() -> Result<Self, RuntimeError> {
        Self::builder().build()
    }

    /// What the runtime's memory budget holds now, and who holds it; `None`
    /// without a budget ([`RuntimeBuilder::memory_budget`]).
    pub fn memory(&self) -> Option<crate::memory::MemoryUsage> {
        self.inner.budget.as_ref().map(|b| b.usage())
    }

    pub(crate) fn budget(&self) -> Option<&Arc<crate::memory::Budget>> {
        self.inner.budget.as_ref()
    }

    /// Configures a runtime that owns its threads.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Runs pipelines on the current thread's arbiter, inside the actix `System` the
    /// service already runs (for example under `#[actix::main]` or in an
    /// `actix-web` worker).
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NoSystem`] outside a running actix System.
    pub fn from_current() -> Result<Self, RuntimeError> {
        if System::try_current().is_none() {
            return Err(RuntimeError::NoSystem);
        }
        Self::from_arbiters(vec![Arbiter::current()])
    }

    /// Runs pipelines on arbiters the service started itself.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::NoArbiters`] if `arbiters` is empty: a runtime with no
    /// arbiter could place no stage.
    pub fn from_arbiters(arbiters: Vec<ArbiterHandle>) -> Result<Self, RuntimeError> {
        if arbiters.is_empty() {
            return Err(RuntimeError::NoArbiters);
        }
        Ok(Runtime {
            inner: Arc::new(Inner {
                arbiters,
                next: AtomicUsize::new(0),
                budget: None,
                owned: None,
            }),
        })
    }

    /// Number of arbiters.
    pub fn arbiters(&self) -> usize {
        self.inner.arbiters.len()
    }

    /// The arbiter with this index, for placing work of your own next to a pipeline.
    pub fn arbiter(&self, index: usize) -> Option<&ArbiterHandle> {
        self.inner.arbiters.get(index)
    }

    /// Picks arbiter indices for `stages` stages; `pinned[i]` overrides stage `i`.
    pub(crate) fn place(&self, placement: Placement, pinned: &[Option<usize>]) -> Vec<usize> {
        // At least 1: every constructor refuses zero arbiters (`NoArbiters`), so the
        // `% n` below cannot divide by zero.
        let n = self.inner.arbiters.len();
        match placement {
            Placement::Together => {
                let base = self.inner.next.fetch_add(1, Relaxed) % n;
                pinned.iter().map(|p| p.unwrap_or(base)).collect()
            }
            Placement::Spread => {
                let base = self.inner.next.fetch_add(pinned.len(), Relaxed);
                pinned
                    .iter()
                    .enumerate()
                    .map(|(i, p)| p.unwrap_or((base + i) % n))
                    .collect()
            }
        }
    }

    pub(crate) fn handle(&self, index: usize) -> &ArbiterHandle {
        // In range: indices come from `place` (taken modulo the count) or from a pin
        // that the build checked against the count (`BuildError` otherwise).
        &self.inner.arbiters[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_arbiters_without_arbiters_is_an_error() {
        assert!(matches!(
            Runtime::from_arbiters(Vec::new()),
            Err(RuntimeError::NoArbiters)
        ));
    }

    #[test]
    fn from_arbiters_uses_the_given_arbiters() {
        let system = System::new();
        let rt = system
            .block_on(async { Runtime::from_arbiters(vec![Arbiter::current()]) })
            .unwrap();
        assert_eq!(rt.arbiters(), 1);
        assert!(rt.arbiter(0).is_some() && rt.arbiter(1).is_none());
    }
}
