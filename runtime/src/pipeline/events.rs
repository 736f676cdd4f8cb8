//! [`Events`]: a subscription to a pipeline's [`SupervisionEvent`]s.

use tokio::sync::broadcast;
use weir_supervisor::SupervisionEvent;

/// How many events a subscriber may fall behind before it misses some.
pub(crate) const EVENT_BUFFER: usize = 1024;

/// Why [`Events::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The pipeline has ended and every event was received.
    #[error("the pipeline has ended; no more events")]
    Ended,
    /// The subscriber fell behind and this many events were skipped; the next
    /// `recv` returns the oldest event still buffered.
    #[error("fell behind: {0} events skipped")]
    Lagged(u64),
}

/// A subscription to a pipeline's supervision events, from
/// [`Runnable::subscribe`](crate::Runnable::subscribe) (sees every event) or
/// [`PipelineController::subscribe`](crate::PipelineController::subscribe) (sees
/// events from then on).
///
/// Events never slow a pipeline down: a subscriber that falls more than 1024
/// events behind is told how many it missed ([`EventError::Lagged`]).
///
/// # Examples
///
/// ```
/// use weir_runtime::{Flow, Runtime, SupervisionEvent};
/// # use weir_runtime::operator::{Io, Operator, Step};
/// # struct Nothing;
/// # impl Operator for Nothing {
/// #     type In = std::convert::Infallible; type Out = u8;
/// #     fn kind(&self) -> &'static str { "nothing" }
/// #     fn step(&mut self, _: &mut Io<'_, Self::In, u8>, _: &mut std::task::Context<'_>) -> Step { Step::Finished }
/// # }
/// # struct Drop;
/// # impl Operator for Drop {
/// #     type In = u8; type Out = std::convert::Infallible;
/// #     fn kind(&self) -> &'static str { "drop" }
/// #     fn step(&mut self, io: &mut Io<'_, u8, Self::Out>, _: &mut std::task::Context<'_>) -> Step {
/// #         while io.pop().is_some() {} io.finish_when_drained()
/// #     }
/// # }
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let mut runnable = Flow::from_source(Nothing).to(Drop, weir_runtime::OutputReceiver::ready(()));
/// let mut events = runnable.subscribe();
/// runnable.run(&rt)?.wait()?;
/// let first = futures::executor::block_on(events.recv())?;
/// assert!(matches!(first, SupervisionEvent::StageStarted { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<SupervisionEvent>,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<SupervisionEvent>) -> Self {
        Events { rx }
    }

    /// The next event, waiting for one.
    ///
    /// # Errors
    ///
    /// [`EventError::Ended`] once the pipeline has ended and everything was
    /// received; [`EventError::Lagged`] if events were skipped.
    pub async fn recv(&mut self) -> Result<SupervisionEvent, EventError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Closed => EventError::Ended,
            broadcast::error::RecvError::Lagged(n) => EventError::Lagged(n),
        })
    }

    /// The next event if one is buffered now.
    pub fn try_recv(&mut self) -> Option<Result<SupervisionEvent, EventError>> {
        match self.rx.try_recv() {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::TryRecvError::Empty) => None,
            Err(broadcast::error::TryRecvError::Closed) => Some(Err(EventError::Ended)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(EventError::Lagged(n))),
        }
    }
}
