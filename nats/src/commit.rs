//! [`Commit`]: the sink that finishes a message's journey and decides its
//! acknowledgement.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use weir_runtime::operator::{Counting, Io, Operator, Step};
use weir_supervisor::dead_letter::{DeadLetter, DeadLetterSink};
use weir_supervisor::{ErrorClass, Failure};

use crate::{Delivery, Received};

/// When a failed message comes back: after `first × 2^(delivered − 1)`, at most
/// `max`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_nats::Redelivery;
///
/// let r = Redelivery::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(r.delay(1), Duration::from_millis(100));
/// assert_eq!(r.delay(3), Duration::from_millis(400));
/// assert_eq!(r.delay(10), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redelivery {
    /// The delay after the first failed delivery.
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Redelivery {
    /// A doubling backoff from `first` up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Redelivery { first, max }
    }

    /// The delay after the `delivered`-th delivery failed.
    pub fn delay(&self, delivered: u64) -> Duration {
        let shift = u32::try_from(delivered.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(30);
        self.first.saturating_mul(1 << shift).min(self.max)
    }
}

impl Default for Redelivery {
    /// 100 ms, doubling, at most 10 s.
    fn default() -> Self {
        Redelivery::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// Where poison messages go, and the stage name their letters carry.
type DeadLetters<T> = (Arc<dyn DeadLetterSink<Received<T>>>, String);

type Running<T> = Pin<Box<dyn Future<Output = (Delivery<T>, Result<(), Failure>)> + Send>>;

/// A sink that runs an async commit (a write, a call) for each delivery, up to
/// `concurrency` at once, and decides its acknowledgement:
///
/// - `Ok(())`: the holder commits (the message is acked once every holder
///   decided);
/// - `Err(failure)` on a delivery that is not the consumer's last
///   (`delivered < max_deliver`): nak, redelivered after the [`Redelivery`]
///   delay — to this process or another;
/// - `Err(failure)` on the last delivery: the message is poison. It is written to
///   the dead-letter queue, if one is set, as a [`Received`] whose
///   `DeadLetter::attempts` is its delivery count, then terminated
///   (`AckKind::Term`). A full queue fails the stage and leaves the message
///   unacknowledged (never dropped silently).
///
/// Every settled element (acked, nakked or terminated) counts as completed in the
/// stage's report; [`Nats::ack_stats`](crate::Nats::ack_stats) splits them. Made by
/// [`NatsFlowExt::commit`](crate::NatsFlowExt::commit).
pub struct Commit<T, F> {
    f: F,
    concurrency: usize,
    redelivery: Redelivery,
    dead_letters: Option<DeadLetters<T>>,
    running: FuturesUnordered<Running<T>>,
}

impl<T: 'static, F> Commit<T, F> {
    /// A sink committing each delivery with `f`, one at a time, with the default
    /// [`Redelivery`] and no dead-letter queue.
    pub fn new(f: F) -> Self {
        Commit {
            f,
            concurrency: 1,
            redelivery: Redelivery::default(),
            dead_letters: None,
            running: FuturesUnordered::new(),
        }
    }

    /// How many commits run at once (default 1). Must be at least 1.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// The delay before a failed message is redelivered.
    pub fn redelivery(mut self, redelivery: Redelivery) -> Self {
        self.redelivery = redelivery;
        self
    }

    /// Where poison messages go; `stage` names the stage in the letters.
    pub fn dead_letters(
        mut self,
        sink: Arc<dyn DeadLetterSink<Received<T>>>,
        stage: impl Into<String>,
    ) -> Self {
        self.dead_letters = Some((sink, stage.into()));
        self
    }

    fn settle_failure(&self, delivery: Delivery<T>, failure: Failure) -> Result<(), Failure> {
        if !delivery.info.is_last_delivery() {
            let delay = self.redelivery.delay(delivery.info.delivered);
            delivery.ack.nak(delay);
            return Ok(());
        }
        let Delivery { payload, info, ack } = delivery;
        if let Some((sink, stage)) = &self.dead_letters {
            let attempts = u32::try_from(info.delivered).unwrap_or(u32::MAX);
            let sequence = info.stream_sequence;
            let letter = DeadLetter::new(
                Received { payload, info },
                stage.clone(),
                "nats",
                &failure,
                attempts,
                sequence,
            );
            if let Err((_, why)) = sink.offer(letter) {
                // `ack` is dropped undecided: the message stays unacknowledged.
                return Err(Failure::error(
                    ErrorClass::ResourceExhausted,
                    format!("poison message {sequence} not dead-lettered: {why}"),
                ));
            }
        }
        ack.term();
        Ok(())
    }
}

impl<T, F> fmt::Debug for Commit<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commit")
            .field("concurrency", &self.concurrency)
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl<T, F, Fut> Operator for Commit<T, F>
where
    T: Send + 'static,
    F: FnMut(&Delivery<T>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Failure>> + Send + 'static,
{
    type In = Delivery<T>;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "nats_commit"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        self.running.len()
    }

    fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        Ok(())
    }

    fn step(&mut self, io: &mut Io<'_, Delivery<T>, Infallible>, cx: &mut Context<'_>) -> Step {
        loop {
            while self.running.len() < self.concurrency {
                let Some(delivery) = io.pop() else { break };
                let fut = (self.f)(&delivery);
                self.running.push(Box::pin(async move {
                    let result = fut.await;
                    (delivery, result)
                }));
            }
            match self.running.poll_next_unpin(cx) {
                Poll::Ready(Some((delivery, Ok(())))) => {
                    delivery.ack.commit();
                    io.complete(1);
                }
                Poll::Ready(Some((delivery, Err(failure)))) => {
                    if let Err(failure) = self.settle_failure(delivery, failure) {
                        return Step::Failed(failure);
                    }
                    io.complete(1);
                }
                Poll::Ready(None) => return io.finish_when_drained(),
                Poll::Pending => return Step::Continue,
            }
        }
    }
}
