//! [`TestSource`]: a source whose elements, end and failure the test scripts.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

use weir::operator::{Io, Operator, Step};
use weir::{ErrorClass, Failure, Flow};

/// One scripted instruction.
#[derive(Debug)]
enum Cmd<T> {
    Next(T),
    Complete,
    Error(String),
}

#[derive(Debug)]
struct State<T> {
    script: VecDeque<Cmd<T>>,
    waker: Option<Waker>,
    taken: u64,
    /// The probe was dropped: the source ends after the script.
    dropped: bool,
}

type Shared<T> = Arc<Mutex<State<T>>>;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    // A test that panicked while holding the lock has failed already; the state
    // itself stays consistent (every update is a single step).
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Constructors of scripted sources.
#[derive(Debug, Clone, Copy)]
pub struct TestSource;

impl TestSource {
    /// A source the returned [`SourceProbe`] scripts, and the flow that starts
    /// with it (name it, add stages, end it with a sink as usual).
    ///
    /// The source emits scripted elements in order, only as many as downstream
    /// has credit for; the rest wait in the probe. It ends after
    /// [`send_complete`](SourceProbe::send_complete) (or once the probe is dropped
    /// and the script is used up) and fails the pipeline at
    /// [`send_error`](SourceProbe::send_error).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::prelude::*;
    /// use weir_testkit::prelude::*;
    ///
    /// run(|rt| async move {
    ///     let (source, flow) = TestSource::probe::<u32>();
    ///     let (runnable, mut sink) = flow.map(|x| x * 10).test_sink();
    ///     let running = runnable.run(&rt).unwrap();
    ///     sink.request(2);
    ///     source.send_next(1);
    ///     source.send_next(2);
    ///     sink.expect_next(10).await;
    ///     sink.expect_next(20).await;
    ///     source.send_complete();
    ///     sink.expect_complete().await;
    ///     assert_conserved(&running.await.unwrap().report);
    /// });
    /// ```
    pub fn probe<T: Send + 'static>() -> (SourceProbe<T>, Flow<T>) {
        let shared = Arc::new(Mutex::new(State {
            script: VecDeque::new(),
            waker: None,
            taken: 0,
            dropped: false,
        }));
        let flow = Flow::from_source(ProbeSource {
            shared: Arc::clone(&shared),
        });
        (SourceProbe { shared }, flow)
    }
}

/// The test's side of a [`TestSource`]: scripts what the source emits.
///
/// Dropping the probe ends the source once the scripted elements are emitted.
#[derive(Debug)]
pub struct SourceProbe<T> {
    shared: Shared<T>,
}

impl<T> SourceProbe<T> {
    fn script(&self, cmd: Cmd<T>) {
        let waker = {
            let mut state = lock(&self.shared);
            state.script.push_back(cmd);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Scripts the next element. The source emits it as soon as downstream has
    /// credit for it.
    pub fn send_next(&self, element: T) {
        self.script(Cmd::Next(element));
    }

    /// Scripts several elements, in order.
    pub fn send_all(&self, elements: impl IntoIterator<Item = T>) {
        for x in elements {
            self.send_next(x);
        }
    }

    /// Scripts the end of the stream, after the elements scripted before it.
    pub fn send_complete(&self) {
        self.script(Cmd::Complete);
    }

    /// Scripts a failure of the source, after the elements scripted before it: the
    /// pipeline fails with `message` (class [`ErrorClass::Permanent`]) at this
    /// source's stage.
    pub fn send_error(&self, message: impl Into<String>) {
        self.script(Cmd::Error(message.into()));
    }

    /// Elements the pipeline has taken from the script so far.
    pub fn taken(&self) -> u64 {
        lock(&self.shared).taken
    }

    /// Scripted elements the pipeline has not taken yet: what backpressure holds
    /// back.
    pub fn pending(&self) -> usize {
        lock(&self.shared)
            .script
            .iter()
            .filter(|c| matches!(c, Cmd::Next(_)))
            .count()
    }
}

impl<T> Drop for SourceProbe<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.shared);
            state.dropped = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The source operator behind a [`SourceProbe`].
struct ProbeSource<T> {
    shared: Shared<T>,
}

impl<T: Send + 'static> Operator for ProbeSource<T> {
    type In = Infallible;
    type Out = T;

    fn kind(&self) -> &'static str {
        "test_source"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, T>, cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            // The pipeline is shutting down: a source finishes.
            return Step::Finished;
        }
        let mut state = lock(&self.shared);
        let mut pushed = false;
        while io.has_room() {
            match state.script.pop_front() {
                Some(Cmd::Next(x)) => {
                    io.push(x);
                    state.taken += 1;
                    pushed = true;
                }
                Some(Cmd::Complete) => return Step::Finished,
                Some(Cmd::Error(message)) if pushed => {
                    // Fail in a step of its own, once the elements before the
                    // error have left the source.
                    state.script.push_front(Cmd::Error(message));
                    cx.waker().wake_by_ref();
                    return Step::Continue;
                }
                Some(Cmd::Error(message)) => {
                    return Step::Failed(Failure::error(ErrorClass::Permanent, message));
                }
                None if state.dropped => return Step::Finished,
                None => {
                    state.waker = Some(cx.waker().clone());
                    return Step::Continue;
                }
            }
        }
        // No room: the stage steps again when downstream grants credit.
        Step::Continue
    }
}
