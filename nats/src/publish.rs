//! [`Publish`]: a sink that publishes to JetStream and waits for the server's
//! acknowledgement.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use weir_runtime::observe::Tally;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use tokio::task::JoinHandle;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Counting, ElementSupervision, Io, Operator, Step, Verdict};
use weir_supervisor::{ErrorClass, Failure};

use crate::{Delivery, Nats, NatsError};

/// How many publishes wait for their acknowledgement at once, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The version of the sink's checkpointed state.
const STATE_VERSION: u32 = 1;

/// A publish the server has not confirmed, as a checkpoint keeps it: message id,
/// subject, payload.
type Unconfirmed = (String, String, Vec<u8>);

/// How a [`Publish`] sink sets each message's `Nats-Msg-Id` header, so that the
/// target stream's duplicate window drops the copies a restored pipeline
/// publishes again. Given to [`Publish::msg_id`].
///
/// The id must be the same for an element and for its replay after a restore,
/// and differ between elements:
///
/// - [`from_fn`](Self::from_fn) derives it from the element: with a JetStream
///   source, from the message it came from (`d.info.stream_sequence`, plus an
///   index if one message gives several outputs). Redelivered messages keep
///   their stream sequence whatever order they come back in, so this is the
///   choice behind a JetStream source.
/// - [`sequence`](Self::sequence) numbers the elements at the sink,
///   `{prefix}/{n}` from 0, and checkpoints the number: for sources that replay
///   the same elements in the same order (a file, a replayable iterator), never
///   behind a JetStream source, whose redeliveries may come back in another
///   order or after newer messages (the same number would then name another
///   result, which the stream would drop as a duplicate).
///
/// The prefix (or the function) should name the pipeline and the sink, so that
/// two jobs publishing into one stream do not share ids.
///
/// # Examples
///
/// ```
/// use weir_nats::MsgId;
///
/// let by_source = MsgId::<u64>::from_fn(|d| format!("billing/out/{}", d.info.stream_sequence));
/// let numbered = MsgId::<u64>::sequence("billing/out");
/// # let _ = (by_source, numbered);
/// ```
pub struct MsgId<T> {
    kind: MsgIdKind<T>,
}

type KeyFn<T> = Box<dyn FnMut(&Delivery<T>) -> String + Send>;

enum MsgIdKind<T> {
    Sequence(String),
    Key(KeyFn<T>),
}

impl<T> MsgId<T> {
    /// `{prefix}/{n}`, `n` the element's index at the sink (from 0), kept in the
    /// sink's checkpoint. Only for sources that replay in order; see [`MsgId`].
    pub fn sequence(prefix: impl Into<String>) -> Self {
        MsgId {
            kind: MsgIdKind::Sequence(prefix.into()),
        }
    }

    /// The id `f` gives each element.
    pub fn from_fn(f: impl FnMut(&Delivery<T>) -> String + Send + 'static) -> Self {
        MsgId {
            kind: MsgIdKind::Key(Box::new(f)),
        }
    }

    fn id(&mut self, delivery: &Delivery<T>, index: u64) -> String {
        match &mut self.kind {
            MsgIdKind::Sequence(prefix) => format!("{prefix}/{index}"),
            MsgIdKind::Key(f) => f(delivery),
        }
    }
}

impl<T> fmt::Debug for MsgId<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            MsgIdKind::Sequence(prefix) => f.debug_tuple("Sequence").field(prefix).finish(),
            MsgIdKind::Key(_) => f.write_str("FromFn"),
        }
    }
}

/// What a [`Publish`] sink's publishes came to, shared with its
/// [`stats`](Publish::stats) handle. Also exported through the `metrics` facade
/// as `weir_nats_published_stored_total` and `weir_nats_published_duplicates_total`,
/// labelled `url` (the connection's server).
#[derive(Debug)]
pub struct PublishStats {
    stored: Tally,
    duplicates: Tally,
}

impl Default for PublishStats {
    fn default() -> Self {
        PublishStats::new("")
    }
}

impl PublishStats {
    fn new(url: &str) -> Self {
        let l = [("url", url.to_owned())];
        PublishStats {
            stored: Tally::new("weir_nats_published_stored_total", &l),
            duplicates: Tally::new("weir_nats_published_duplicates_total", &l),
        }
    }

    /// Publishes the stream stored as new messages.
    pub fn stored(&self) -> u64 {
        self.stored.get()
    }

    /// Publishes the stream acknowledged as duplicates (a `Nats-Msg-Id` it had
    /// seen within its duplicate window) and did not store again.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.get()
    }
}

struct Item<T> {
    delivery: Delivery<T>,
    index: u64,
    attempt: u32,
    subject: String,
    payload: Bytes,
    msg_id: Option<String>,
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
/// # Checkpoints
///
/// Without message ids, a checkpointed pipeline's barrier waits at this sink
/// until every publish before it is acknowledged, and a restored pipeline
/// publishes again what it replays: **at least once**. With
/// [`msg_id`](Self::msg_id), every message carries a deterministic
/// `Nats-Msg-Id` and the sink is checkpointable: its snapshot holds the publishes
/// not yet confirmed (and the element number, for [`MsgId::sequence`]), a restore
/// publishes those again before anything else, and the target stream drops every
/// copy whose id it has seen: **exactly once** in the stream, provided
///
/// - the ids are deterministic (see [`MsgId`]), and
/// - the stream's `duplicate_window` (2 minutes by default; set it on the stream
///   with `stream::Config::duplicate_window`) is longer than the time from a
///   checkpoint to the replay after a crash: the checkpoint interval, plus the
///   time to notice the crash and restart, plus the consumer's `ack_wait` when
///   the source is a JetStream consumer (its messages come back only after
///   that). A replay later than the window is stored again.
///
/// [`stats`](Self::stats) counts the duplicates the stream dropped.
///
/// That makes each message id once in the stream, not each result: a result
/// published after the last checkpoint by a run that then crashed stays in the
/// stream, and the restored run's result for the same input, made from the
/// restored state, is dropped as its duplicate. Where a result depends on what
/// came before it (a keyed count, a running total) and the source does not
/// replay in the same order (a JetStream consumer redelivers a crashed run's
/// messages after newer ones), the two differ. With
/// [`on_checkpoint`](Self::on_checkpoint) the sink publishes only what a durable
/// checkpoint covers, and the stream holds exactly the results of the runs that
/// were kept.
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
    msg_id: Option<MsgId<T>>,
    /// The index of the next element at the sink.
    next: u64,
    /// Restored publishes to send again before the first element.
    replay: Vec<Unconfirmed>,
    replaying: Option<JoinHandle<Vec<Result<(), NatsError>>>>,
    stats: Arc<PublishStats>,
    /// With [`on_checkpoint`](Self::on_checkpoint): what waits for its
    /// checkpoint.
    held: Option<Held<T>>,
}

/// The elements an [`on_checkpoint`](Publish::on_checkpoint) sink holds until a
/// checkpoint after them is durable.
struct Held<T> {
    /// Taken and not yet published, oldest first; the front is number
    /// `released`.
    items: VecDeque<Item<T>>,
    /// Elements taken so far, and handed to the publishes.
    taken: u64,
    released: u64,
    /// Elements that may be published: those before a durable checkpoint's
    /// barrier (all of them once the input ended).
    releasable: u64,
    /// `(checkpoint, taken before its barrier)`, oldest first.
    barriers: VecDeque<(u64, u64)>,
    /// The stage, woken when a commit makes elements publishable.
    waker: Option<Waker>,
}

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held {
            items: VecDeque::new(),
            taken: 0,
            released: 0,
            releasable: 0,
            barriers: VecDeque::new(),
            waker: None,
        }
    }
}

impl<T, F> Publish<T, F> {
    /// A sink publishing over `nats` what `f` makes of each delivery: a subject
    /// and a payload.
    pub fn new(nats: Nats, f: F) -> Self {
        let stats = Arc::new(PublishStats::new(nats.url()));
        Publish {
            nats,
            f,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            in_flight: VecDeque::new(),
            in_flight_len: 0,
            stalled: Vec::new(),
            msg_id: None,
            next: 0,
            replay: Vec::new(),
            replaying: None,
            stats,
            held: None,
        }
    }

    /// Sets each message's `Nats-Msg-Id` with `ids`, which makes the sink
    /// checkpointable and exactly-once under the stream's duplicate window; see
    /// "Checkpoints" above.
    pub fn msg_id(mut self, ids: MsgId<T>) -> Self {
        self.msg_id = Some(ids);
        self
    }

    /// Publishes an element only once a checkpoint whose barrier came after it is
    /// durable (and, when the input ends, what is left then): the stream then
    /// holds only results that the checkpoints kept, each once, even where a
    /// result depends on the order of the input (see "Checkpoints" above). The
    /// element's message is acknowledged after that publish is stored. For a
    /// checkpointed pipeline, with [`msg_id`](Self::msg_id) (a build error
    /// otherwise): each checkpoint's snapshot holds what it covers and is not yet
    /// confirmed, which a restore publishes again first.
    ///
    /// Results reach the stream one checkpoint interval later, and the sink
    /// holds what comes in one interval: with a JetStream source, the consumer's
    /// `max_ack_pending` bounds it. A crash in the moment between the end of the
    /// input and the final checkpoint publishes the last stretch the way the
    /// default does.
    pub fn on_checkpoint(mut self) -> Self {
        self.held = Some(Held::default());
        self
    }

    /// What the publishes came to (stored, duplicates), shared: keep it before
    /// the sink goes into the pipeline.
    pub fn stats(&self) -> Arc<PublishStats> {
        Arc::clone(&self.stats)
    }

    /// The most publishes awaiting their acknowledgement (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]). Must be at least 1.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    fn start(&mut self, items: Vec<Item<T>>, delay: Duration) {
        let messages: Vec<Message> = items
            .iter()
            .map(|i| (i.msg_id.clone(), i.subject.clone(), i.payload.clone()))
            .collect();
        let task = self.nats.spawn(publish_in_order(
            self.nats.jetstream().clone(),
            messages,
            delay,
            Arc::clone(&self.stats),
        ));
        self.in_flight_len += items.len();
        self.in_flight.push_back(Batch { items, task });
    }

    /// Publishes the restored unconfirmed messages again, once; `Some(step)`
    /// until the server acknowledged every one.
    fn replay(&mut self, cx: &mut Context<'_>) -> Option<Step> {
        if !self.replay.is_empty() {
            let messages = std::mem::take(&mut self.replay)
                .into_iter()
                .map(|(id, subject, payload)| (Some(id), subject, Bytes::from(payload)))
                .collect();
            self.replaying = Some(self.nats.spawn(publish_in_order(
                self.nats.jetstream().clone(),
                messages,
                Duration::ZERO,
                Arc::clone(&self.stats),
            )));
        }
        let task = self.replaying.as_mut()?;
        let results = match Pin::new(task).poll(cx) {
            Poll::Pending => return Some(Step::Continue),
            Poll::Ready(results) => results,
        };
        self.replaying = None;
        let failed = match results {
            Ok(results) => results.into_iter().find_map(Result::err),
            Err(e) => Some(NatsError::from(e)),
        };
        failed.map(|e| Step::Failed(Failure::with_source(ErrorClass::Transient, e)))
    }

    /// The publishes not yet confirmed, in order.
    fn unconfirmed(&self) -> Vec<Unconfirmed> {
        let items = self.in_flight.iter().flat_map(|b| &b.items);
        let held = self.held.iter().flat_map(|h| &h.items);
        items
            .chain(&self.stalled)
            .chain(held)
            .filter_map(|i| {
                let id = i.msg_id.clone()?;
                Some((id, i.subject.clone(), i.payload.to_vec()))
            })
            .collect()
    }
}

/// The next element of `io` made into a publish, if there is one.
fn take_item<T, F>(
    io: &mut Io<'_, Delivery<T>, Infallible>,
    f: &mut F,
    ids: &mut Option<MsgId<T>>,
    next: &mut u64,
) -> Option<Item<T>>
where
    T: Send + 'static,
    F: FnMut(&Delivery<T>) -> (String, Bytes),
{
    let index = io.next_index();
    let delivery = io.pop()?;
    let (subject, payload) = f(&delivery);
    let msg_id = ids.as_mut().map(|ids| ids.id(&delivery, *next));
    *next += 1;
    Some(Item {
        delivery,
        index,
        attempt: 1,
        subject,
        payload,
        msg_id,
    })
}

/// A message to publish: its id, subject and payload.
type Message = (Option<String>, String, Bytes);

/// Publishes `messages` in order after `delay`, then awaits their
/// acknowledgements, counting what the stream stored and what it dropped as a
/// duplicate.
async fn publish_in_order(
    js: jetstream::Context,
    messages: Vec<Message>,
    delay: Duration,
    stats: Arc<PublishStats>,
) -> Vec<Result<(), NatsError>> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut acks = Vec::with_capacity(messages.len());
    for (id, subject, payload) in messages {
        let mut message = PublishMessage::build().payload(payload);
        if let Some(id) = id {
            message = message.message_id(id);
        }
        acks.push(
            js.send_publish(subject, message)
                .await
                .map_err(NatsError::request("publish")),
        );
    }
    let mut results = Vec::with_capacity(acks.len());
    for ack in acks {
        results.push(match ack {
            Ok(ack) => ack
                .await
                .map(|ack| {
                    let counter = if ack.duplicate {
                        &stats.duplicates
                    } else {
                        &stats.stored
                    };
                    let _ = counter.add(1);
                })
                .map_err(NatsError::request("publish acknowledgement")),
            Err(e) => Err(e),
        });
    }
    results
}

impl<T, F> fmt::Debug for Publish<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("max_in_flight", &self.max_in_flight)
            .field("in_flight", &self.in_flight.len())
            .field("msg_id", &self.msg_id)
            .field("next", &self.next)
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
        self.in_flight_len + self.stalled.len() + self.held.as_ref().map_or(0, |h| h.items.len())
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self.held.is_some() && self.msg_id.is_none() {
            return Err(
                "on_checkpoint needs msg_id: a restore publishes again what a \
                        checkpoint covers"
                    .into(),
            );
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
        if let Some(step) = self.replay(cx) {
            return step;
        }
        loop {
            let mut progress = false;
            let mut batch = Vec::new();
            if let Some(held) = &mut self.held {
                // Everything before the next barrier is taken in (the source's
                // `max_ack_pending` bounds it); what a durable checkpoint covers
                // goes out.
                while let Some(item) = take_item(io, &mut self.f, &mut self.msg_id, &mut self.next)
                {
                    held.items.push_back(item);
                    held.taken += 1;
                }
                if io.input_ended() && io.input_exhausted() {
                    held.releasable = held.taken;
                }
                while self.in_flight_len + batch.len() < self.max_in_flight
                    && held.released < held.releasable
                {
                    let Some(item) = held.items.pop_front() else {
                        break;
                    };
                    held.released += 1;
                    batch.push(item);
                }
                held.waker = Some(cx.waker().clone());
            } else {
                while self.in_flight_len + batch.len() < self.max_in_flight {
                    let Some(item) = take_item(io, &mut self.f, &mut self.msg_id, &mut self.next)
                    else {
                        break;
                    };
                    batch.push(item);
                }
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
                        msg_id,
                    } = item;
                    match io.element_failed(delivery, index, attempt, failure) {
                        Verdict::Retry { element, delay } => {
                            let retry = Item {
                                delivery: element,
                                index,
                                attempt: attempt + 1,
                                subject,
                                payload,
                                msg_id,
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
        if self.in_flight.is_empty() && self.held.as_ref().is_none_or(|h| h.items.is_empty()) {
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

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        if self.msg_id.is_some() {
            Some(self)
        } else {
            None
        }
    }
}

/// With message ids: the element number and the publishes not yet confirmed
/// (with [`on_checkpoint`](Publish::on_checkpoint), those held too).
impl<T, F> Checkpointable for Publish<T, F> {
    fn snapshot(&mut self, checkpoint: u64) -> Result<Snapshot, StateError> {
        if let Some(held) = &mut self.held
            && held.barriers.back().is_none_or(|&(id, _)| id < checkpoint)
        {
            held.barriers.push_back((checkpoint, held.taken));
        }
        Snapshot::of(STATE_VERSION, &(self.next, self.unconfirmed()))
    }

    fn committed(&mut self, checkpoint: u64) {
        let Some(held) = &mut self.held else { return };
        while let Some(&(id, taken)) = held.barriers.front() {
            if id > checkpoint {
                break;
            }
            held.releasable = held.releasable.max(taken);
            held.barriers.pop_front();
        }
        if held.released < held.releasable
            && let Some(waker) = held.waker.take()
        {
            waker.wake();
        }
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let (next, replay): (u64, Vec<Unconfirmed>) = snapshot.decode(STATE_VERSION, ctx)?;
        self.next = next;
        self.replay = replay;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn stored_and_duplicate_publishes_are_exported_with_the_url() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let stats =
            metrics::with_local_recorder(&recorder, || PublishStats::new("nats://127.0.0.1:4222"));
        let _ = stats.stored.add(3);
        let _ = stats.duplicates.add(1);
        assert_eq!((stats.stored(), stats.duplicates()), (3, 1));
        let snapshot = snapshotter.snapshot().into_vec();
        let value = |name: &str| {
            snapshot.iter().find_map(|(key, _, _, value)| {
                let labelled = key
                    .key()
                    .labels()
                    .any(|l| l.key() == "url" && l.value() == "nats://127.0.0.1:4222");
                match value {
                    DebugValue::Counter(n) if labelled && key.key().name() == name => Some(*n),
                    _ => None,
                }
            })
        };
        assert_eq!(value("weir_nats_published_stored_total"), Some(3));
        assert_eq!(value("weir_nats_published_duplicates_total"), Some(1));
    }
}
