//! [`Attempts`]: the elements in flight of a supervised async operator, each with a
//! copy of its input so that it can be retried in place or dead-lettered.
//!
//! ```text
//!   slots (input order)      head ─▶ [Ready y0][Pending x1 #2][Settled][Pending x3 #0]
//!   running (any order)      attempt(x1) after backoff, attempt(x3)
//! ```
//!
//! Each slot is one element: `Pending` while an attempt runs or waits out its
//! backoff, `Ready` once it produced its output, `Settled` once the stage
//! dead-lettered or skipped it. In [`Order::Input`] outputs leave from the head
//! only, so a retried element keeps its place in the output order however long its
//! retries take. In [`Order::Completion`] (the `_unordered` operators and the
//! concurrent sink) a finished element leaves its slot at once and its output
//! waits in a queue, so a slow element never holds the others back.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use weir_runtime::operator::{ElementSupervision, Io, Verdict};
use weir_runtime::{ErrorClass, Failure};

/// What one attempt resolves to.
enum Outcome<O> {
    /// The attempt finished: an output or a failure (an error, a panic, a timeout).
    Done(Result<O, Failure>),
    /// A retry's backoff elapsed: start the next attempt.
    Due,
}

type AttemptFuture<O> = Pin<Box<dyn Future<Output = (u64, Outcome<O>)> + Send>>;

/// One element in flight.
enum Slot<T, O> {
    /// An attempt runs, or waits for its backoff. `attempt` counts the failures so
    /// far; `input` is the copy the next attempt (or the dead letter) gets.
    Pending { input: T, index: u64, attempt: u32 },
    /// Finished, waiting for the elements before it.
    Ready(O),
    /// Dead-lettered, skipped, or lost to an escalation: produces nothing.
    Settled,
}

/// In which order a supervised async operator emits its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// In input order: an output waits for the elements before it.
    Input,
    /// As the elements finish.
    Completion,
}

/// The in-flight elements of a supervised `map_async`, `try_map_async`, their
/// `_unordered` forms, or `for_each_async`: slots by sequence number, the attempts
/// running for them, and the stage's element supervision.
pub(crate) struct Attempts<T, O> {
    setup: ElementSupervision<T>,
    order: Order,
    /// The elements in the window by sequence number (input order). In
    /// [`Order::Completion`] only `Pending` slots stay here.
    slots: BTreeMap<u64, Slot<T, O>>,
    /// [`Order::Completion`]: outputs finished and not yet emitted.
    finished: VecDeque<O>,
    running: FuturesUnordered<AttemptFuture<O>>,
    /// Sequence number of the next element started.
    next_seq: u64,
    /// Settled slots still waiting to reach the head ([`Order::Input`]).
    settled: usize,
}

impl<T: Send + 'static, O: Send + 'static> Attempts<T, O> {
    pub(crate) fn with_order(setup: ElementSupervision<T>, order: Order) -> Self {
        Attempts {
            setup,
            order,
            slots: BTreeMap::new(),
            finished: VecDeque::new(),
            running: FuturesUnordered::new(),
            next_seq: 0,
            settled: 0,
        }
    }

    /// Elements in the window (running, waiting, or finished but not yet emitted).
    pub(crate) fn len(&self) -> usize {
        self.slots.len() + self.finished.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Input elements the operator holds: the window less the settled slots, which
    /// the stage has already counted as dead-lettered or failed.
    pub(crate) fn held(&self) -> usize {
        self.len() - self.settled
    }

    /// Starts the first attempt on `x`, the element with stage index `index`.
    pub(crate) fn start<F, Fut, Out>(
        &mut self,
        f: &mut F,
        x: T,
        index: u64,
        io: &mut Io<'_, T, Out>,
    ) where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<O, Failure>> + Send + 'static,
    {
        let seq = self.next_seq;
        self.next_seq += 1;
        let input = self.setup.copy(&x);
        self.slots.insert(
            seq,
            Slot::Pending {
                input,
                index,
                attempt: 0,
            },
        );
        self.launch(f, seq, x, io);
    }

    /// Calls user code for one attempt; a panic in the call itself fails the
    /// attempt at once.
    fn launch<F, Fut, Out>(&mut self, f: &mut F, seq: u64, x: T, io: &mut Io<'_, T, Out>)
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<O, Failure>> + Send + 'static,
    {
        match catch_unwind(AssertUnwindSafe(|| f(x))) {
            Ok(fut) => {
                let timeout = self.setup.timeout();
                self.running.push(Box::pin(async move {
                    let run = AssertUnwindSafe(fut).catch_unwind();
                    let result = match timeout {
                        Some(limit) => match tokio::time::timeout(limit, run).await {
                            Ok(done) => done,
                            Err(_) => Ok(Err(Failure::error(
                                ErrorClass::Timeout,
                                format!("element timed out after {limit:?}"),
                            ))),
                        },
                        None => run.await,
                    };
                    let result = result.unwrap_or_else(|payload| Err(Failure::from_panic(payload)));
                    (seq, Outcome::Done(result))
                }));
            }
            Err(payload) => self.failed(seq, Failure::from_panic(payload), io),
        }
    }

    /// Hands a failed element to the stage's policy and acts on the verdict.
    fn failed<Out>(&mut self, seq: u64, failure: Failure, io: &mut Io<'_, T, Out>) {
        let Some(slot) = self.slot_mut(seq) else {
            return;
        };
        let Slot::Pending {
            input,
            index,
            attempt,
        } = std::mem::replace(slot, Slot::Settled)
        else {
            return;
        };
        let attempt = attempt + 1;
        match io.element_failed(input, index, attempt, failure) {
            Verdict::Retry { element, delay } => {
                // Cannot fail: `seq` is the slot this element was taken from a moment ago.
                *self.slot_mut(seq).expect("slot just taken") = Slot::Pending {
                    input: element,
                    index,
                    attempt,
                };
                // The next attempt starts from `poll`, never from here: a call that
                // panics at once cannot recurse.
                self.running.push(Box::pin(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    (seq, Outcome::Due)
                }));
            }
            Verdict::Settled | Verdict::Escalated => match self.order {
                Order::Input => self.settled += 1,
                // Nothing waits behind it: the slot goes at once.
                Order::Completion => {
                    self.slots.remove(&seq);
                }
            },
        }
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot<T, O>> {
        self.slots.get_mut(&seq)
    }

    /// Drives the running attempts: records outputs, judges failures, starts due
    /// retries. Returns whether anything changed. Registers `cx`'s waker when it
    /// stops because every attempt is pending.
    pub(crate) fn poll<F, Fut, Out>(
        &mut self,
        f: &mut F,
        io: &mut Io<'_, T, Out>,
        cx: &mut Context<'_>,
    ) -> bool
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<O, Failure>> + Send + 'static,
    {
        let mut progress = false;
        while let Poll::Ready(Some((seq, outcome))) = self.running.poll_next_unpin(cx) {
            progress = true;
            match outcome {
                Outcome::Done(Ok(output)) => match self.order {
                    Order::Input => {
                        if let Some(slot) = self.slot_mut(seq) {
                            *slot = Slot::Ready(output);
                        }
                    }
                    Order::Completion => {
                        if self.slots.remove(&seq).is_some() {
                            self.finished.push_back(output);
                        }
                    }
                },
                Outcome::Done(Err(failure)) => self.failed(seq, failure, io),
                Outcome::Due => {
                    let setup = self.setup;
                    let copy = match self.slot_mut(seq) {
                        Some(Slot::Pending { input, .. }) => Some(setup.copy(input)),
                        _ => None,
                    };
                    if let Some(x) = copy {
                        self.launch(f, seq, x, io);
                    }
                }
            }
        }
        progress
    }

    /// The next output, if one is ready: in input order ([`Order::Input`]; settled
    /// elements at the head are passed over) or in completion order.
    pub(crate) fn pop_ready(&mut self) -> Option<O> {
        if self.order == Order::Completion {
            return self.finished.pop_front();
        }
        loop {
            let head = self.slots.first_entry()?;
            match head.get() {
                Slot::Ready(_) => match head.remove() {
                    Slot::Ready(output) => return Some(output),
                    // Cannot happen: the arm above matched `Slot::Ready` on this entry.
                    _ => unreachable!("head was ready"),
                },
                Slot::Settled => {
                    self.settled -= 1;
                    head.remove();
                }
                Slot::Pending { .. } => return None,
            }
        }
    }
}

impl<T, O> std::fmt::Debug for Attempts<T, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempts")
            .field("order", &self.order)
            .field("window", &(self.slots.len() + self.finished.len()))
            .field("settled", &self.settled)
            .field("running", &self.running.len())
            .finish()
    }
}
