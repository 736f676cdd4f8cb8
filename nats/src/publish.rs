//! [`Publish`]: a sink that publishes to JetStream and waits for the server's
//! acknowledgement.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use weir_runtime::operator::{Counting, ElementSupervision, Io, Operator, Step, Verdict};
use weir_supervisor::{ErrorClass, Failure};

use crate::{Delivery, Nats, NatsError};

/// How many publishes wait for their acknowledgement at once, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

struct Item<T> {
    delivery: Delivery<T>,
    index: u64,
    attempt: u32,
    subject: String,
    payload: Bytes,
}

/// The elements one step handed to the connection, published in order by one
/// task, which then awaits their acknowledgements.
struct Batch<T> {
    items: Vec<Item<T>>,
    task: JoinHandle<Vec<Result<(), NatsError>>>,
}

/// A sink that publishes each delivery to JetStream (`subject`, `payload` from the
/// element) and waits for the stream's acknowledgement, with at most
/// `max_in_flight` publishes unacknowledged. Once the server acknowledged it, the
/// element's holder commits: a delivery that came from a
/// [`JetStreamSource`](crate::JetStreamSource) is acked only after its copy is
/// stored in the target stream.
///
/// Acknowledgements are handled in publish order. A publish that fails (no
/// stream, a timeout, the connection lost) follows the stage's supervision: with
/// [`Flow::supervise`](weir_runtime::Flow::supervise) it is retried after the
/// policy's backoff, dead-lettered or skipped per the policy; without it the stage
/// fails. Made by [`NatsFlowExt::publish`](crate::NatsFlowExt::publish).
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Publish<T, F> {
    nats: Nats,
    f: F,
    max_in_flight: usize,
    in_flight: VecDeque<Batch<T>>,
    /// Elements in `in_flight`.
    in_flight_len: usize,
    /// Elements whose publish failed after the stage escalated a failure: held
    /// (abandoned when the stage stops), never acknowledged.
    stalled: Vec<Item<T>>,
}

impl<T, F> Publish<T, F> {
    /// A sink publishing over `nats` what `f` makes of each delivery: a subject
    /// and a payload.
    pub fn new(nats: Nats, f: F) -> Self {
        Publish {
            nats,
            f,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            in_flight: VecDeque::new(),
            in_flight_len: 0,
            stalled: Vec::new(),
        }
    }

    /// The most publishes awaiting their acknowledgement (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]). Must be at least 1.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    fn start(&mut self, items: Vec<Item<T>>, delay: Duration) {
        let js = self.nats.jetstream().clone();
        let messages: Vec<(String, Bytes)> = items
            .iter()
            .map(|i| (i.subject.clone(), i.payload.clone()))
            .collect();
        let task = self.nats.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut acks = Vec::with_capacity(messages.len());
            for (subject, payload) in messages {
                acks.push(
                    js.publish(subject, payload)
                        .await
                        .map_err(NatsError::request("publish")),
                );
            }
            let mut results = Vec::with_capacity(acks.len());
            for ack in acks {
                results.push(match ack {
                    Ok(ack) => ack
                        .await
                        .map(drop)
                        .map_err(NatsError::request("publish acknowledgement")),
                    Err(e) => Err(e),
                });
            }
            results
        });
        self.in_flight_len += items.len();
        self.in_flight.push_back(Batch { items, task });
    }
}

impl<T, F> fmt::Debug for Publish<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("max_in_flight", &self.max_in_flight)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl<T, F> Operator for Publish<T, F>
where
    T: Send + 'static,
    F: FnMut(&Delivery<T>) -> (String, Bytes) + Send + 'static,
{
    type In = Delivery<T>;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "nats_publish"
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        self.in_flight_len + self.stalled.len()
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        Ok(())
    }

    /// The sink keeps each element until it is acknowledged and hands that same
    /// element to the policy when its publish fails: no copy is made.
    fn supervise_elements(&mut self, _setup: ElementSupervision<Delivery<T>>) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, Delivery<T>, Infallible>, cx: &mut Context<'_>) -> Step {
        if !self.stalled.is_empty() {
            return Step::Continue;
        }
        loop {
            let mut progress = false;
            let mut batch = Vec::new();
            while self.in_flight_len + batch.len() < self.max_in_flight {
                let index = io.next_index();
                let Some(delivery) = io.pop() else { break };
                let (subject, payload) = (self.f)(&delivery);
                batch.push(Item {
                    delivery,
                    index,
                    attempt: 1,
                    subject,
                    payload,
                });
            }
            if !batch.is_empty() {
                self.start(batch, Duration::ZERO);
                progress = true;
            }
            while let Some(head) = self.in_flight.front_mut() {
                let results = match Pin::new(&mut head.task).poll(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Ok(results)) => results,
                    Poll::Ready(Err(e)) => {
                        vec![Err(NatsError::from(e)); head.items.len()]
                    }
                };
                progress = true;
                let Some(done) = self.in_flight.pop_front() else {
                    break;
                };
                self.in_flight_len -= done.items.len();
                let mut items = done.items.into_iter().zip(results);
                while let Some((item, result)) = items.next() {
                    let Err(e) = result else {
                        item.delivery.ack.commit();
                        io.complete(1);
                        continue;
                    };
                    let failure = Failure::with_source(ErrorClass::Transient, e);
                    let Item {
                        delivery,
                        index,
                        attempt,
                        subject,
                        payload,
                    } = item;
                    match io.element_failed(delivery, index, attempt, failure) {
                        Verdict::Retry { element, delay } => {
                            let retry = Item {
                                delivery: element,
                                index,
                                attempt: attempt + 1,
                                subject,
                                payload,
                            };
                            self.start(vec![retry], delay);
                        }
                        Verdict::Settled => {}
                        Verdict::Escalated => {
                            // The stage fails when this step returns; the rest of
                            // the batch stays held, unacknowledged.
                            for (item, result) in items {
                                if result.is_ok() {
                                    item.delivery.ack.commit();
                                    io.complete(1);
                                } else {
                                    self.stalled.push(item);
                                }
                            }
                            return Step::Continue;
                        }
                    }
                }
            }
            if !progress {
                break;
            }
        }
        if self.in_flight.is_empty() {
            io.finish_when_drained()
        } else {
            Step::Continue
        }
    }

    fn on_stop(&mut self) {
        // The elements stay held (counted as abandoned) and are dropped with the
        // operator, undecided: their messages are not acknowledged.
        for batch in &self.in_flight {
            batch.task.abort();
        }
    }
}
