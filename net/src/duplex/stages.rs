//! The two stages of a duplex connection: [`DuplexSink`] (elements to the peer)
//! and [`DuplexSource`] (elements from the peer).

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Context;

use weir_runtime::operator::{Counting, Io, Operator, Step, Verdict};
use weir_runtime::{Flow, OutputReceiver, Runnable};
use weir_supervisor::{ErrorClass, Failure};

use super::driver::ensure_started;
use super::shared::Shared;

/// The sending side of a duplex connection: a sink whose elements go to the
/// peer as DATA frames, only while the peer has granted credit (at most the
/// peer's window in flight). An element counts as delivered when the peer
/// acknowledges it (it entered the peer's pipeline). Made by
/// [`Duplex`](super::Duplex); see the [module docs](super) for the protocol.
///
/// If the connection fails, the elements taken and not yet acknowledged are
/// counted as abandoned by the stage, which fails with the connection's error.
pub struct DuplexSink<T> {
    shared: Arc<Shared>,
    /// Elements taken from the input.
    taken: u64,
    /// Elements reported complete (acknowledged).
    completed: u64,
    finished: bool,
    _element: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for DuplexSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuplexSink")
            .field("peer", &self.shared.peer)
            .field("taken", &self.taken)
            .field("completed", &self.completed)
            .finish_non_exhaustive()
    }
}

impl<T: AsRef<[u8]> + Send + 'static> DuplexSink<T> {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        DuplexSink {
            shared,
            taken: 0,
            completed: 0,
            finished: false,
            _element: PhantomData,
        }
    }

    /// Ends `flow` in `sink`: `flow.to(sink, OutputReceiver::ready(()))`.
    pub fn attach(flow: Flow<T>, sink: Self) -> Runnable<()> {
        flow.to(sink, OutputReceiver::ready(()))
    }
}

impl<T> DuplexSink<T> {
    /// The sink stopped before its end: with nothing in flight the peer is told
    /// END (its source ends); otherwise the connection fails.
    fn stopped(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut state = self.shared.lock();
        if state.failure.is_some() || state.closed {
            return;
        }
        let unacked = state.assigned - state.acked;
        if unacked == 0 {
            state.sink_done = true;
            drop(state);
            self.shared.writer.notify_one();
        } else {
            drop(state);
            let message = format!(
                "duplex peer {}: the sending stage stopped with {unacked} elements unacknowledged",
                self.shared.peer
            );
            self.shared.fail(ErrorClass::Transient, message);
        }
    }
}

impl<T> Drop for DuplexSink<T> {
    fn drop(&mut self) {
        self.stopped();
    }
}

impl<T: AsRef<[u8]> + Send + 'static> Operator for DuplexSink<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "duplex_sink"
    }

    fn validate(&self) -> Result<(), String> {
        self.shared.config.check()
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        usize::try_from(self.taken - self.completed).unwrap_or(usize::MAX)
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, cx: &mut Context<'_>) -> Step {
        ensure_started(&self.shared);
        let max = self.shared.config.max_payload;
        let mut state = self.shared.lock();
        if state.acked > self.completed {
            let n = state.acked - self.completed;
            io.complete(usize::try_from(n).unwrap_or(usize::MAX));
            self.completed = state.acked;
        }
        if state.sink_done && state.acked == state.assigned {
            // Everything taken was acknowledged: a later failure is not ours.
            self.finished = true;
            return Step::Finished;
        }
        if let Some(failure) = state.failure() {
            return Step::Failed(failure);
        }
        let mut wake_writer = false;
        while state.credit > 0 && !state.sink_done {
            let index = io.next_index();
            let Some(element) = io.pop() else { break };
            let len = element.as_ref().len();
            if len > max {
                drop(state);
                let message = format!(
                    "duplex sink to {}: element of {len} bytes is above the max_payload of {max}",
                    self.shared.peer
                );
                let failure = Failure::error(ErrorClass::Permanent, message);
                match io.element_failed(element, index, 1, failure) {
                    // Dead-lettered or skipped by the stage's supervision.
                    Verdict::Settled => {
                        state = self.shared.lock();
                        continue;
                    }
                    // Without supervision: the stage fails when the step returns.
                    _ => return Step::Continue,
                }
            }
            state.queue.push_back(element.as_ref().to_vec());
            state.credit -= 1;
            state.assigned += 1;
            self.taken += 1;
            state.max_in_flight = state.max_in_flight.max(state.assigned - state.acked);
            wake_writer = true;
        }
        if io.input_exhausted() && !state.sink_done {
            state.sink_done = true;
            wake_writer = true;
        }
        let step = if state.sink_done && state.acked == state.assigned {
            self.finished = true;
            Step::Finished
        } else {
            state.sink_waker = Some(cx.waker().clone());
            Step::Continue
        };
        drop(state);
        if wake_writer {
            self.shared.writer.notify_one();
        }
        step
    }

    fn on_stop(&mut self) {
        self.stopped();
    }
}

/// The receiving side of a duplex connection: a source of the elements the peer
/// sends, in the peer's order. It grants the peer credit as the pipeline takes
/// elements, so at most the window is buffered here. It ends when the peer sent
/// END and everything before it was taken; it fails with the connection.
///
/// Cancelled from downstream before the peer's END, it fails the connection
/// (the peer is told with ERROR): the peer's unacknowledged elements are not
/// delivered and the peer counts them abandoned.
pub struct DuplexSource {
    shared: Arc<Shared>,
    finished: bool,
}

impl std::fmt::Debug for DuplexSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuplexSource")
            .field("peer", &self.shared.peer)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl DuplexSource {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        DuplexSource {
            shared,
            finished: false,
        }
    }

    fn cancel(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.shared.lock().source_cancelled = true;
        self.shared.writer.notify_one();
    }
}

impl Drop for DuplexSource {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl Operator for DuplexSource {
    type In = Infallible;
    type Out = Vec<u8>;

    fn kind(&self) -> &'static str {
        "duplex_source"
    }

    fn validate(&self) -> Result<(), String> {
        self.shared.config.check()
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, Vec<u8>>, cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            self.cancel();
            return Step::Finished;
        }
        ensure_started(&self.shared);
        let mut state = self.shared.lock();
        if state.peer_ended && state.inbox.is_empty() {
            // The peer's direction ended and all of it was handed on: a later
            // failure is not ours.
            self.finished = true;
            return Step::Finished;
        }
        if let Some(failure) = state.failure() {
            // Received, never acknowledged: the peer counts them abandoned.
            state.inbox.clear();
            self.finished = true;
            return Step::Failed(failure);
        }
        let mut taken = 0;
        while io.has_room() {
            let Some(payload) = state.inbox.pop_front() else {
                break;
            };
            io.push(payload);
            taken += 1;
        }
        state.delivered += taken;
        let step = if state.peer_ended && state.inbox.is_empty() {
            self.finished = true;
            Step::Finished
        } else {
            state.source_waker = Some(cx.waker().clone());
            Step::Continue
        };
        drop(state);
        if taken > 0 || self.finished {
            self.shared.writer.notify_one();
        }
        step
    }

    fn on_stop(&mut self) {
        self.cancel();
    }
}
