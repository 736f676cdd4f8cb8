//! [`JetStreamSource`]: a durable pull consumer that fetches only what the
//! pipeline has credit for.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::client::RequestErrorKind;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;
use weir_runtime::Flow;
use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot, StateError};
use weir_runtime::operator::{Io, Operator, Step};
use weir_supervisor::{ErrorClass, Failure};

use crate::hold::{Covered, Holds};
use crate::{AckToken, Delivery, DeliveryInfo, Nats, NatsError};

/// The most messages one fetch asks for, by default.
pub const DEFAULT_MAX_FETCH: usize = 256;
/// How long a fetch waits on the broker for its batch to fill, by default.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_millis(200);

/// How many acknowledgements of restored messages are awaited at once.
const REACKS_AT_ONCE: usize = 64;

/// How long a source that stops with restored messages not yet acknowledged
/// again waits for those acknowledgements (see `on_stop`).
const REACK_AT_STOP: Duration = Duration::from_secs(2);

/// The version of the source's checkpointed state.
const STATE_VERSION: u32 = 1;

type Fetch = JoinHandle<Result<Vec<jetstream::Message>, NatsError>>;

/// When a [`JetStreamSource`] acknowledges a message: a typed choice, given to
/// [`JetStreamSource::acks`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use weir_nats::{Acks, ConsumerSettings, JetStreamSource, Nats};
///
/// let nats = Nats::connect("127.0.0.1:4222")?;
/// let consumer = nats.durable_consumer("orders", &ConsumerSettings::new("billing"))?;
/// // For a pipeline run with `.checkpoints(..)`.
/// let source = JetStreamSource::new(nats, consumer).acks(Acks::OnCheckpoint);
/// # Ok::<(), weir_nats::NatsError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Acks {
    /// As soon as every holder of the message's [`Delivery`] decided (committed
    /// or filtered it): at least once, for a pipeline without checkpoints. A
    /// checkpointed pipeline with a source acking this way is refused when it is
    /// built ([`BuildError::NotCheckpointable`](weir_runtime::BuildError)): what
    /// it acked after the last checkpoint would be missing from the state
    /// restored after a crash, and never redelivered.
    #[default]
    OnCommit,
    /// When every holder decided **and** a checkpoint whose barrier came after
    /// the message is durable: the source holds one more share of each delivery,
    /// which [`Checkpointable::committed`] releases. For a pipeline run with
    /// checkpoints; without them nothing is ever acknowledged (the consumer
    /// stops delivering at its `max_ack_pending`). See [`JetStreamSource`],
    /// "Checkpoints".
    OnCheckpoint,
}

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
/// # Checkpoints
///
/// In a pipeline run with checkpoints, the source must be told
/// [`acks(Acks::OnCheckpoint)`](Acks::OnCheckpoint) (a checkpointed pipeline
/// with the default is a build error). It then holds one share of every
/// message's token itself, and releases the shares of the messages emitted
/// before barrier *n* when checkpoint *n* is durable
/// ([`Checkpointable::committed`]; every checkpoint up to *n* is covered, so a
/// failed checkpoint only delays the acks). A message is acknowledged when its
/// holders in the pipeline decided and a checkpoint that holds its effects is
/// durable; so:
///
/// - **a crash** (or an abort) loses nothing and counts nothing twice: what the
///   source emitted after the last durable checkpoint is not acknowledged, and the
///   broker redelivers it once the consumer's `ack_wait` has run out since its
///   delivery (choose `ack_wait` for how soon a restarted pipeline should get it
///   back: it waits that long after a crash). The state restored holds exactly
///   the messages before the barrier.
/// - **a restore** acknowledges again, and waits for the server to confirm,
///   before its first fetch, the messages the checkpoint covers that might not
///   have been acknowledged yet (its snapshot lists their stream sequences and
///   reply subjects): a crash after the checkpoint was durable and before its
///   acks reached the broker, or a pipeline that completed (its final checkpoint
///   is written after the source stopped, and nothing acks the messages of that
///   last stretch until the next start restores it). A message a holder had
///   nakked, terminated or dropped undecided before the barrier is left out and
///   keeps its fate.
/// - **while the source lives**, every half `ack_wait` it tells the broker that
///   the messages it holds are in progress (`+WPI`, which restarts their
///   `ack_wait`), so a message waiting for its checkpoint is not redelivered,
///   however long the interval; `ack_wait` only says how soon a crashed
///   process's messages come back. A redelivery that comes anyway (the stage was
///   not stepped in time) of a message the source holds is dropped: its first
///   copy is already in the pipeline.
///
/// Sizing: the messages delivered and not acknowledged are those of one
/// checkpoint interval plus what the pipeline holds, so the consumer's
/// `max_ack_pending` must exceed `rate × (interval + checkpoint duration)` plus the
/// edges' capacities, or the broker stops delivering until the next checkpoint
/// (throughput ≤ `max_ack_pending / interval`; a pipeline whose only checkpoint
/// is the final one stops at `max_ack_pending` messages). With
/// several processes on one consumer, each has its own state and checkpoints; a
/// message redelivered to another process after a crash is in that process's
/// state instead (its effect is counted once over all of them) — unless the crash
/// came after a checkpoint was durable and before its acks reached the broker,
/// and the other process got the message before the crashed one restarted.
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
    acks: Acks,
    max_ack_pending: usize,
    /// The consumer's `ack_wait`: held messages are told "in progress" every half.
    ack_wait: Duration,
    progress: Option<JoinHandle<()>>,
    fetch: Option<Fetch>,
    ready: VecDeque<jetstream::Message>,
    /// Since when no message was emitted and the fetches brought none (`None`:
    /// not idle).
    idle_since: Option<Instant>,
    /// When the outstanding fetch was asked for.
    fetch_started: Instant,
    /// With [`Acks::OnCheckpoint`]: the shares the source holds.
    holds: Holds,
    /// Restored messages to acknowledge again before the first fetch; listed in
    /// every snapshot until the server confirmed those acknowledgements.
    restored: Vec<Covered>,
    reacking: Option<JoinHandle<Result<(), NatsError>>>,
    /// Redeliveries of held messages, dropped.
    redeliveries_dropped: u64,
}

impl JetStreamSource {
    /// A source reading `consumer` over `nats`.
    pub fn new(nats: Nats, consumer: PullConsumer) -> Self {
        let max_deliver = u64::try_from(consumer.cached_info().config.max_deliver)
            .ok()
            .filter(|&m| m > 0);
        let max_ack_pending = usize::try_from(consumer.cached_info().config.max_ack_pending)
            .ok()
            .filter(|&m| m > 0)
            .unwrap_or(usize::MAX);
        let ack_wait = consumer.cached_info().config.ack_wait;
        JetStreamSource {
            nats,
            consumer,
            max_deliver,
            max_fetch: DEFAULT_MAX_FETCH,
            fetch_wait: DEFAULT_FETCH_WAIT,
            end_after_idle: None,
            acks: Acks::default(),
            max_ack_pending,
            ack_wait,
            progress: None,
            fetch: None,
            ready: VecDeque::new(),
            idle_since: Some(Instant::now()),
            fetch_started: Instant::now(),
            holds: Holds::default(),
            restored: Vec::new(),
            reacking: None,
            redeliveries_dropped: 0,
        }
    }

    /// When messages are acknowledged (default [`Acks::OnCommit`]); a pipeline
    /// with checkpoints needs [`Acks::OnCheckpoint`]. See "Checkpoints" above.
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
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
    /// tests; a worker normally runs until it is shut down). With
    /// [`Acks::OnCheckpoint`], a wait while the source holds `max_ack_pending`
    /// messages (the broker delivers nothing until a checkpoint acknowledges
    /// them) does not count as idle.
    pub fn end_after_idle(mut self, idle: Duration) -> Self {
        self.end_after_idle = Some(idle);
        self
    }

    /// The flow starting at this source.
    pub fn flow(self) -> Flow<Delivery<Bytes>> {
        Flow::from_source(self)
    }

    /// Whether `message` is a redelivery of a message the source still holds.
    fn held_already(&self, message: &jetstream::Message) -> bool {
        self.acks == Acks::OnCheckpoint
            && message
                .info()
                .is_ok_and(|i| self.holds.is_held(i.stream_sequence))
    }

    /// The element for `message`.
    fn delivery(&mut self, message: jetstream::Message) -> Delivery<Bytes> {
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
        let reply = message.reply.as_ref().map(ToString::to_string);
        let ack = AckToken::new(self.nats.clone(), message);
        if self.acks == Acks::OnCheckpoint
            && let Some(reply) = reply
        {
            self.holds.hold(ack.clone(), stream_sequence, reply);
        }
        Delivery { payload, info, ack }
    }

    /// Every half `ack_wait` while messages are held, tells the broker they are
    /// in progress (`+WPI`), which restarts their `ack_wait`: a message waiting
    /// for its checkpoint is not redelivered while this process lives, and
    /// `ack_wait` only says how soon a crashed process's messages come back.
    fn keep_alive(&mut self, cx: &mut Context<'_>) {
        if self.holds.len() == 0 || self.ack_wait.is_zero() {
            if let Some(timer) = self.progress.take() {
                timer.abort();
            }
            return;
        }
        loop {
            let timer = self.progress.get_or_insert_with(|| {
                let half = self.ack_wait / 2;
                self.nats.spawn(tokio::time::sleep(half))
            });
            if Pin::new(timer).poll(cx).is_pending() {
                return;
            }
            self.progress = None;
            for reply in self.holds.replies() {
                self.nats.send_ack_to(reply, AckKind::Progress);
            }
        }
    }

    /// Whether the broker has stopped delivering because the source holds
    /// `max_ack_pending` messages for their checkpoint.
    fn capped(&self) -> bool {
        self.acks == Acks::OnCheckpoint && self.holds.len() >= self.max_ack_pending
    }

    /// A source stopped before it could acknowledge its restored messages again
    /// (a job started after its end is cancelled before its first step: the
    /// final stretch of the last run, covered only by its final checkpoint,
    /// would stay unacknowledged): does it now, waiting at most
    /// [`REACK_AT_STOP`] for the server. Should that fail or take longer, the
    /// final snapshot still lists them for the next start.
    fn reack_at_stop(&mut self) {
        if self.restored.is_empty() {
            return;
        }
        let task = self.reacking.take().unwrap_or_else(|| {
            let client = self.nats.client().clone();
            self.nats.spawn(ack_again(client, self.restored.clone()))
        });
        // The connection's own runtime runs the acknowledgements (not this
        // stage's arbiter), so waiting here cannot hold them up.
        let bounded = self
            .nats
            .spawn(async move { tokio::time::timeout(REACK_AT_STOP, task).await });
        match futures::executor::block_on(bounded) {
            Ok(Ok(Ok(Ok(())))) => self.restored.clear(),
            outcome => tracing::warn!(
                restored = self.restored.len(),
                outcome = ?outcome.map(|r| r.map(|r| r.map(|r| r.map_err(|e| e.to_string())))),
                "nats: restored messages not acknowledged again at stop; the next start will"
            ),
        }
    }

    /// Acknowledges the restored messages again; `Some(step)` until the server
    /// confirmed every acknowledgement. They stay in the snapshots until then: a
    /// checkpoint taken meanwhile still covers them.
    fn reack(&mut self, cx: &mut Context<'_>) -> Option<Step> {
        if self.restored.is_empty() {
            return None;
        }
        let task = self.reacking.get_or_insert_with(|| {
            let client = self.nats.client().clone();
            self.nats.spawn(ack_again(client, self.restored.clone()))
        });
        let result = match Pin::new(task).poll(cx) {
            Poll::Pending => return Some(Step::Continue),
            Poll::Ready(result) => result,
        };
        self.reacking = None;
        match result {
            Ok(Ok(())) => {
                self.restored.clear();
                None
            }
            Ok(Err(e)) => Some(Step::Failed(Failure::with_source(ErrorClass::Transient, e))),
            Err(e) => Some(Step::Failed(Failure::with_source(
                ErrorClass::Transient,
                NatsError::from(e),
            ))),
        }
    }

    fn stop_fetching(&mut self) {
        if let Some(fetch) = self.fetch.take() {
            fetch.abort();
        }
        if let Some(timer) = self.progress.take() {
            timer.abort();
        }
        // Never emitted: not acknowledged, so the broker redelivers them.
        self.ready.clear();
    }
}

/// Acknowledges each covered message again with a double ack (a request the
/// server answers once it has processed the ack), at most [`REACKS_AT_ONCE`] at
/// once. An ack nobody answers (the consumer was deleted) has nothing to settle.
async fn ack_again(client: async_nats::Client, covered: Vec<Covered>) -> Result<(), NatsError> {
    let mut requests = futures::stream::iter(covered.into_iter().map(|(_, reply)| {
        let client = client.clone();
        async move {
            match client.request(reply, AckKind::Ack.into()).await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
                Err(e) => Err(NatsError::Request {
                    operation: "acknowledging a restored message",
                    source: std::sync::Arc::new(e),
                }),
            }
        }
    }))
    .buffer_unordered(REACKS_AT_ONCE);
    while let Some(result) = requests.next().await {
        result?;
    }
    Ok(())
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
            .field("acks", &self.acks)
            .field("held", &self.holds.len())
            .field("redeliveries_dropped", &self.redeliveries_dropped)
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
            // Cancelled at once after a restore (a restart after the end): the
            // restored messages are acknowledged first. If that fails, the
            // final snapshot still lists them for the next start.
            if let Some(Step::Continue) = self.reack(cx) {
                return Step::Continue;
            }
            return Step::Finished;
        }
        if let Some(step) = self.reack(cx) {
            return step;
        }
        self.keep_alive(cx);
        loop {
            while io.has_room() {
                let Some(message) = self.ready.pop_front() else {
                    break;
                };
                let delivery = self.delivery(message);
                self.idle_since = None;
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
                            Ok(Ok(mut messages)) => {
                                // Nothing is sent for a copy of a held message:
                                // the held one's ack settles it (the server
                                // settles acks by stream sequence).
                                let fetched = messages.len();
                                messages.retain(|m| !self.held_already(m));
                                self.redeliveries_dropped += (fetched - messages.len()) as u64;
                                if messages.is_empty() {
                                    let since = *self.idle_since.get_or_insert(self.fetch_started);
                                    if self.capped() {
                                        // Not idle: waiting for a checkpoint.
                                        self.idle_since = None;
                                    } else if self
                                        .end_after_idle
                                        .is_some_and(|idle| since.elapsed() >= idle)
                                    {
                                        return Step::Finished;
                                    }
                                }
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
            self.fetch_started = Instant::now();
            self.fetch = Some(self.nats.spawn(fetch_batch(
                self.consumer.clone(),
                n,
                self.fetch_wait,
            )));
        }
    }

    fn on_stop(&mut self) {
        // The holds stay: the final checkpoint (its snapshot taken just before
        // this) lists them.
        self.stop_fetching();
        self.reack_at_stop();
    }

    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        match self.acks {
            Acks::OnCheckpoint => Some(self),
            Acks::OnCommit => None,
        }
    }

    fn not_checkpointable(&self) -> Option<String> {
        match self.acks {
            Acks::OnCheckpoint => None,
            Acks::OnCommit => Some(
                "the JetStream source acknowledges a message as soon as the pipeline \
                 committed it, so a state restored after a crash would miss what was \
                 acknowledged after its checkpoint: use `.acks(Acks::OnCheckpoint)`"
                    .into(),
            ),
        }
    }
}

/// The state is the list of messages the checkpoint covers that may not be
/// acknowledged yet; the position itself is kept by the broker.
impl Checkpointable for JetStreamSource {
    fn snapshot(&mut self, checkpoint: u64) -> Result<Snapshot, StateError> {
        let mut covered = self.holds.barrier(checkpoint);
        // Nothing is fetched before they are confirmed: none is held.
        covered.extend(self.restored.iter().cloned());
        Snapshot::of(STATE_VERSION, &covered)
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.restored = snapshot.decode(STATE_VERSION, ctx)?;
        Ok(())
    }

    fn committed(&mut self, checkpoint: u64) {
        self.holds.committed(checkpoint);
    }
}
