//! [`JetStreamSource`]: a durable pull consumer that fetches only what the
//! pipeline has credit for.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;
use weir_runtime::Flow;
use weir_runtime::operator::{Io, Operator, Step};
use weir_supervisor::{ErrorClass, Failure};

use crate::{AckToken, Delivery, DeliveryInfo, Nats, NatsError};

/// The most messages one fetch asks for, by default.
pub const DEFAULT_MAX_FETCH: usize = 256;
/// How long a fetch waits on the broker for its batch to fill, by default.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_millis(200);

type Fetch = JoinHandle<Result<Vec<jetstream::Message>, NatsError>>;

/// A source reading a durable JetStream pull consumer. Several processes (or
/// several pipelines) may read the same consumer: the broker hands each message
/// to one of them (work-queue style) and redelivers what is not acknowledged.
///
/// **Backpressure reaches the broker.** The source asks for a batch only when
/// the pipeline has room, and for at most `min(room, max_fetch)` messages, where
/// the room is the credit its downstream edge granted; it has at most one fetch
/// outstanding and pushes every fetched message within that room. So a process
/// holds at most `max_fetch` messages that no stage has taken, and a slow
/// pipeline fetches nothing until it drains. The consumer's `max_ack_pending`
/// bounds the unacknowledged messages across all processes.
///
/// Each element is a [`Delivery`] whose token acknowledges the message once every
/// holder decided (see [`Delivery`]). The source ends when the pipeline shuts
/// down (messages fetched and not yet emitted are simply not acknowledged), or,
/// with [`end_after_idle`](Self::end_after_idle), when no message came for a
/// while. A failed fetch fails the stage.
///
/// # Examples
///
/// ```no_run
/// use weir_nats::{ConsumerSettings, JetStreamSource, Nats, NatsFlowExt};
///
/// let nats = Nats::connect("127.0.0.1:4222")?;
/// nats.work_queue("jobs", &["jobs.>"])?;
/// let consumer = nats.durable_consumer("jobs", &ConsumerSettings::new("workers"))?;
/// let rt = weir_runtime::Runtime::new()?;
/// JetStreamSource::new(nats.clone(), consumer)
///     .max_fetch(128)
///     .flow()
///     .commit(|d| {
///         let n = d.payload.len();
///         async move { if n > 0 { Ok(()) } else { Err(weir_supervisor::Failure::error(weir_supervisor::ErrorClass::Permanent, "empty")) } }
///     })
///     .run(&rt)?
///     .wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct JetStreamSource {
    nats: Nats,
    consumer: PullConsumer,
    max_deliver: Option<u64>,
    max_fetch: usize,
    fetch_wait: Duration,
    end_after_idle: Option<Duration>,
    fetch: Option<Fetch>,
    ready: VecDeque<jetstream::Message>,
    last_message: Instant,
}

impl JetStreamSource {
    /// A source reading `consumer` over `nats`.
    pub fn new(nats: Nats, consumer: PullConsumer) -> Self {
        let max_deliver = u64::try_from(consumer.cached_info().config.max_deliver)
            .ok()
            .filter(|&m| m > 0);
        JetStreamSource {
            nats,
            consumer,
            max_deliver,
            max_fetch: DEFAULT_MAX_FETCH,
            fetch_wait: DEFAULT_FETCH_WAIT,
            end_after_idle: None,
            fetch: None,
            ready: VecDeque::new(),
            last_message: Instant::now(),
        }
    }

    /// The most messages one fetch asks for (default [`DEFAULT_MAX_FETCH`]); a
    /// fetch asks for less when the pipeline has less room. Must be at least 1.
    pub fn max_fetch(mut self, n: usize) -> Self {
        self.max_fetch = n;
        self
    }

    /// How long a fetch waits for its batch to fill (default
    /// [`DEFAULT_FETCH_WAIT`]); a full batch returns at once. Must not be zero.
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = wait;
        self
    }

    /// Ends the stream once no message arrived for `idle` (for batch jobs and
    /// tests; a worker normally runs until it is shut down).
    pub fn end_after_idle(mut self, idle: Duration) -> Self {
        self.end_after_idle = Some(idle);
        self
    }

    /// The flow starting at this source.
    pub fn flow(self) -> Flow<Delivery<Bytes>> {
        Flow::from_source(self)
    }

    fn delivery(&self, message: jetstream::Message) -> Delivery<Bytes> {
        let (stream_sequence, delivered) = message.info().map_or((0, 1), |i| {
            (i.stream_sequence, u64::try_from(i.delivered).unwrap_or(1))
        });
        let info = DeliveryInfo {
            subject: message.subject.to_string(),
            stream_sequence,
            delivered,
            max_deliver: self.max_deliver,
        };
        let payload = message.payload.clone();
        Delivery {
            payload,
            info,
            ack: AckToken::new(self.nats.clone(), message),
        }
    }

    fn stop_fetching(&mut self) {
        if let Some(fetch) = self.fetch.take() {
            fetch.abort();
        }
        // Never emitted: not acknowledged, so the broker redelivers them.
        self.ready.clear();
    }
}

async fn fetch_batch(
    consumer: PullConsumer,
    n: usize,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, NatsError> {
    let mut batch = consumer
        .batch()
        .max_messages(n)
        .expires(wait)
        .messages()
        .await
        .map_err(NatsError::request("fetch"))?;
    let mut out = Vec::with_capacity(n);
    while let Some(message) = batch.next().await {
        out.push(message.map_err(|source| NatsError::Request {
            operation: "fetch",
            source: source.into(),
        })?);
    }
    Ok(out)
}

impl std::fmt::Debug for JetStreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("max_fetch", &self.max_fetch)
            .field("fetching", &self.fetch.is_some())
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl Operator for JetStreamSource {
    type In = Infallible;
    type Out = Delivery<Bytes>;

    fn kind(&self) -> &'static str {
        "jetstream"
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_fetch == 0 {
            return Err("max_fetch must be at least 1".into());
        }
        if self.fetch_wait.is_zero() {
            return Err("fetch_wait must not be zero".into());
        }
        Ok(())
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, Delivery<Bytes>>, cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            self.stop_fetching();
            return Step::Finished;
        }
        loop {
            while io.has_room() {
                let Some(message) = self.ready.pop_front() else {
                    break;
                };
                let delivery = self.delivery(message);
                io.push(delivery);
            }
            if !self.ready.is_empty() {
                return Step::Continue;
            }
            if let Some(fetch) = &mut self.fetch {
                match Pin::new(fetch).poll(cx) {
                    Poll::Pending => return Step::Continue,
                    Poll::Ready(result) => {
                        self.fetch = None;
                        match result {
                            Ok(Ok(messages)) if messages.is_empty() => {
                                if self
                                    .end_after_idle
                                    .is_some_and(|idle| self.last_message.elapsed() >= idle)
                                {
                                    return Step::Finished;
                                }
                            }
                            Ok(Ok(messages)) => {
                                self.last_message = Instant::now();
                                self.ready.extend(messages);
                            }
                            Ok(Err(e)) => {
                                return Step::Failed(Failure::with_source(
                                    ErrorClass::Transient,
                                    e,
                                ));
                            }
                            Err(e) => {
                                return Step::Failed(Failure::with_source(
                                    ErrorClass::Transient,
                                    NatsError::from(e),
                                ));
                            }
                        }
                        continue;
                    }
                }
            }
            let room = io.room();
            if room == 0 {
                return Step::Continue;
            }
            let n = room.min(self.max_fetch);
            self.fetch = Some(self.nats.spawn(fetch_batch(
                self.consumer.clone(),
                n,
                self.fetch_wait,
            )));
        }
    }

    fn on_stop(&mut self) {
        self.stop_fetching();
    }
}
