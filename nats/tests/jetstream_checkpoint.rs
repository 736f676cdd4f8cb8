//! Exactly-once through NATS JetStream with checkpoints, against a real
//! `nats-server -js` (started per test, fails — never skips — when missing): a
//! JetStream source acking with the checkpoints, a checkpointable keyed count,
//! and a publish sink with deterministic message ids; a run aborted after a
//! checkpoint (a simulated crash) and restarted from it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use weir_nats::async_nats::jetstream::consumer::PullConsumer;
use weir_nats::async_nats::jetstream::stream;
use weir_nats::{
    Acks, Bytes, ConsumerSettings, Delivery, JetStreamSource, MsgId, Nats, NatsFlowExt, Publish,
    PublishStats, TestServer,
};
use weir_operators::{FlowExt, Pipeline};
use weir_runtime::checkpoint::{
    CheckpointConfig, CheckpointStore, Checkpointable, RestoreContext, Snapshot, StateError,
    StoreOptions,
};
use weir_runtime::operator::{Io, Operator, Step};
use weir_runtime::{BuildError, Runnable, Runtime};

const KEYS: u64 = 7;
/// Per key: (messages, sum of their values).
type Counts = BTreeMap<u64, (u64, u64)>;

/// How far the counting stage may go; the test raises it and wakes the stage.
#[derive(Default)]
struct Gate {
    allowed: AtomicU64,
    processed: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn open_to(&self, n: u64) {
        self.allowed.store(n, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }
}

/// A keyed count over `value % KEYS`, checkpointable; each input becomes one
/// output `(key, value)` carrying the input's token; it hands its counts over on
/// stop.
struct Count {
    per: Counts,
    gate: Arc<Gate>,
    out: Arc<Mutex<Option<Counts>>>,
}

impl Checkpointable for Count {
    fn snapshot(&mut self, _: u64) -> Result<Snapshot, StateError> {
        Snapshot::keyed(1, self.per.iter())
    }
    fn restore(&mut self, s: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.per = s.decode_keyed(1, ctx)?.into_iter().collect();
        Ok(())
    }
}

impl Operator for Count {
    type In = Delivery<Bytes>;
    type Out = Delivery<(u64, u64)>;
    fn kind(&self) -> &'static str {
        "count"
    }
    fn step(&mut self, io: &mut Io<'_, Self::In, Self::Out>, cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            if self.gate.processed.load(Ordering::SeqCst)
                >= self.gate.allowed.load(Ordering::SeqCst)
            {
                *self.gate.waker.lock().unwrap() = Some(cx.waker().clone());
                // Opened between the check and storing the waker: go on.
                if self.gate.processed.load(Ordering::SeqCst)
                    >= self.gate.allowed.load(Ordering::SeqCst)
                {
                    return Step::Continue;
                }
            }
            let Some(d) = io.pop() else { break };
            let value: u64 = std::str::from_utf8(&d.payload).unwrap().parse().unwrap();
            let e = self.per.entry(value % KEYS).or_default();
            e.0 += 1;
            e.1 += value;
            self.gate.processed.fetch_add(1, Ordering::SeqCst);
            io.push(d.map(|_| (value % KEYS, value)));
        }
        io.finish_when_drained()
    }
    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
    fn on_stop(&mut self) {
        *self.out.lock().unwrap() = Some(self.per.clone());
    }
}

fn rt() -> Runtime {
    Runtime::builder().arbiters(2).build().unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn publish_values(nats: &Nats, subject: &str, values: std::ops::Range<u64>) {
    let js = nats.jetstream().clone();
    let subject = subject.to_owned();
    nats.block_on(async move {
        let mut acks = Vec::new();
        for v in values {
            acks.push(
                js.publish(subject.clone(), v.to_string().into())
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
    })
    .unwrap();
}

/// A stream that keeps what is published to `subjects` (limits retention, the
/// default 2-minute duplicate window).
fn output_stream(nats: &Nats, name: &str, subjects: &str) {
    let js = nats.jetstream().clone();
    let config = stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    nats.block_on(async move { js.get_or_create_stream(config).await.unwrap() })
        .unwrap();
}

/// Every message in stream `name`: (Nats-Msg-Id, payload).
fn read_stream(nats: &Nats, name: &str) -> Vec<(String, String)> {
    let js = nats.jetstream().clone();
    let name = name.to_owned();
    nats.block_on(async move {
        let mut stream = js.get_stream(&name).await.unwrap();
        let info = stream.info().await.unwrap();
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let mut out = Vec::new();
        for seq in first..=last {
            let m = stream.get_raw_message(seq).await.unwrap();
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push((id, String::from_utf8(m.payload.to_vec()).unwrap()));
        }
        out
    })
    .unwrap()
}

fn stream_len(nats: &Nats, name: &str) -> u64 {
    let js = nats.jetstream().clone();
    let name = name.to_owned();
    nats.block_on(async move {
        js.get_stream(&name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    })
    .unwrap()
}

/// (not yet delivered, delivered and not acknowledged).
fn pending(nats: &Nats, consumer: &PullConsumer) -> (u64, u64) {
    let mut consumer = consumer.clone();
    let info = nats
        .block_on(async move { consumer.info().await.unwrap().clone() })
        .unwrap();
    (info.num_pending, info.num_ack_pending as u64)
}

struct Job {
    nats: Nats,
    consumer: PullConsumer,
    dir: std::path::PathBuf,
}

impl Job {
    /// The pipeline: source → count → publish (`out.{key}`, payload = value,
    /// message id from the input's stream sequence), checkpointed every
    /// `interval` (`None`: on demand and at the end only).
    fn pipeline(
        &self,
        gate: Arc<Gate>,
        out: Arc<Mutex<Option<Counts>>>,
        interval: Option<Duration>,
    ) -> (Runnable<()>, Arc<PublishStats>) {
        let mut config = CheckpointConfig::new(&self.dir).without_fsync();
        if let Some(interval) = interval {
            config = config.interval(interval);
        }
        let sink = Publish::new(self.nats.clone(), |d: &Delivery<(u64, u64)>| {
            let (key, value) = d.payload;
            (format!("out.{key}"), Bytes::from(value.to_string()))
        })
        .msg_id(MsgId::from_fn(|d| {
            format!("job/count/{}", d.info.stream_sequence)
        }));
        let stats = sink.stats();
        let runnable = JetStreamSource::new(self.nats.clone(), self.consumer.clone())
            .acks(Acks::OnCheckpoint)
            .max_fetch(64)
            .end_after_idle(Duration::from_millis(1_500))
            .flow()
            .name("source")
            .via(Count {
                per: Counts::new(),
                gate,
                out,
            })
            .name("count")
            .publish_with(sink)
            .name("publish")
            .checkpoints(config);
        (runnable, stats)
    }
}

fn expected(values: std::ops::Range<u64>) -> Counts {
    let mut c = Counts::new();
    for v in values {
        let e = c.entry(v % KEYS).or_default();
        e.0 += 1;
        e.1 += v;
    }
    c
}

/// Aborted after a checkpoint with outputs published past it, restarted with the
/// same directory: the output stream holds one result per input message, and
/// the count equals that of an uninterrupted run over the input. Started once
/// more after the end (past `ack_wait`): the final checkpoint's messages were
/// re-acknowledged by the restore, nothing is counted twice.
#[test]
fn a_crash_and_restart_publishes_each_result_once_and_counts_each_message_once() {
    const N: u64 = 2_000;
    const ACK_WAIT: Duration = Duration::from_millis(400);
    let server = TestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let nats = Nats::connect(&server.url()).unwrap();
    nats.work_queue("in", &["in.>"]).unwrap();
    output_stream(&nats, "out", "out.>");
    let mut settings = ConsumerSettings::new("count")
        .ack_wait(ACK_WAIT)
        .max_ack_pending(10_000);
    settings.max_deliver = None;
    let consumer = nats.durable_consumer("in", &settings).unwrap();
    publish_values(&nats, "in.v", 0..N);
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        nats: nats.clone(),
        consumer: consumer.clone(),
        dir: dir.path().to_owned(),
    };
    let rt = rt();

    // Run 1: counts 600, checkpoints while going on to 1 200, publishes those,
    // and is aborted (no final checkpoint).
    let gate = Arc::new(Gate::default());
    gate.open_to(600);
    let every = Some(Duration::from_millis(50));
    let (runnable, stats1) = job.pipeline(Arc::clone(&gate), Arc::default(), every);
    let running = runnable.run(&rt).unwrap();
    wait_until("600 counted", || {
        gate.processed.load(Ordering::SeqCst) == 600
    });
    let checkpoint = running.checkpoint();
    gate.open_to(1_200);
    let info = futures::executor::block_on(checkpoint).unwrap();
    wait_until("1 200 counted", || {
        gate.processed.load(Ordering::SeqCst) == 1_200
    });
    wait_until("1 200 published", || stream_len(&nats, "out") == 1_200);
    let _ = futures::executor::block_on(running.abort());
    assert_eq!(stats1.duplicates(), 0);
    // Something past the checkpoint was delivered and not acknowledged.
    let (_, unacked) = pending(&nats, &consumer);
    assert!(unacked > 0, "nothing to redeliver");

    // Run 2: restored; the unacknowledged messages come back after ack_wait. It
    // takes no checkpoint but the final one, so it holds every message it
    // delivers (those redelivered while held are dropped), and none is
    // acknowledged when it ends.
    let gate = Arc::new(Gate::default());
    gate.open_to(u64::MAX);
    let out = Arc::new(Mutex::new(None));
    let (runnable, stats2) = job.pipeline(Arc::clone(&gate), Arc::clone(&out), None);
    let done = runnable.run(&rt).unwrap().wait().unwrap();
    let ck = done.report.checkpoint.clone().unwrap();
    assert!(ck.restored_from.is_some_and(|id| id >= info.id), "{ck:?}");
    let counted = gate.processed.load(Ordering::SeqCst);
    assert!(
        counted < N,
        "run 2 counted {counted}: it did not resume from the checkpoint"
    );
    assert!(
        stats2.duplicates() > 0,
        "no replayed result reached the duplicate window"
    );
    assert_eq!(out.lock().unwrap().clone().unwrap(), expected(0..N));

    let published = read_stream(&nats, "out");
    assert_eq!(published.len() as u64, N, "one result per input");
    let ids: BTreeSet<&str> = published.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len() as u64, N, "no id twice");
    let values: BTreeSet<u64> = published.iter().map(|(_, v)| v.parse().unwrap()).collect();
    assert_eq!(values, (0..N).collect(), "every value once");
    let (_, unacked) = pending(&nats, &consumer);
    assert_eq!(unacked, counted, "run 2's messages wait for the next start");

    // Run 3, after ack_wait: the messages of run 2's last stretch (covered only
    // by its final checkpoint) are acknowledged by the restore before the first
    // fetch, so they are not redelivered and counted again.
    std::thread::sleep(ACK_WAIT * 2);
    let out = Arc::new(Mutex::new(None));
    let gate = Arc::new(Gate::default());
    gate.open_to(u64::MAX);
    let (runnable, _) = job.pipeline(Arc::clone(&gate), Arc::clone(&out), every);
    runnable.run(&rt).unwrap().wait().unwrap();
    assert_eq!(
        gate.processed.load(Ordering::SeqCst),
        0,
        "nothing redelivered"
    );
    assert_eq!(out.lock().unwrap().clone().unwrap(), expected(0..N));
    assert_eq!(stream_len(&nats, "out"), N);
    nats.flush().unwrap();
    assert_eq!(pending(&nats, &consumer), (0, 0));
}

/// A source that acks on commit in a checkpointed pipeline is refused, naming it.
#[test]
fn a_source_acking_on_commit_in_a_checkpointed_pipeline_is_a_build_error() {
    let server = TestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let nats = Nats::connect(&server.url()).unwrap();
    nats.work_queue("q", &["q.>"]).unwrap();
    let consumer = nats
        .durable_consumer("q", &ConsumerSettings::new("w"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = JetStreamSource::new(nats, consumer)
        .flow()
        .name("orders")
        .commit(|_| async { Ok(()) })
        .checkpoints(CheckpointConfig::new(dir.path()).without_fsync())
        .run(&rt())
        .unwrap_err();
    match &err {
        BuildError::NotCheckpointable { stage, reason } => {
            assert_eq!(stage, "orders");
            assert!(reason.contains("Acks::OnCheckpoint"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

/// Numbered message ids behind a source that replays in order: aborted after a
/// checkpoint, restarted, the stream holds each element once.
#[test]
fn sequence_ids_survive_a_restore_behind_a_replayable_source() {
    const N: u64 = 5_000;
    let server = TestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let nats = Nats::connect(&server.url()).unwrap();
    output_stream(&nats, "seq", "seq.>");
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let run = |gate: Arc<Gate>| {
        let sink = Publish::new(nats.clone(), |d: &Delivery<u64>| {
            ("seq.x".to_owned(), Bytes::from(d.payload.to_string()))
        })
        .max_in_flight(32)
        .msg_id(MsgId::sequence("job/seq"));
        let stats = sink.stats();
        let runnable = Pipeline::replayable(|from| from..N)
            .name("numbers")
            .map(move |x| {
                gate.processed.fetch_add(1, Ordering::SeqCst);
                Delivery::detached(x)
            })
            .capacity(64)
            .publish_with(sink)
            .capacity(64)
            .name("publish")
            .checkpoints(CheckpointConfig::new(dir.path()).without_fsync());
        (runnable.run(&rt).unwrap(), stats)
    };
    let gate = Arc::new(Gate::default());
    let (running, _) = run(Arc::clone(&gate));
    wait_until("some published", || stream_len(&nats, "seq") >= 500);
    let info = futures::executor::block_on(running.checkpoint()).unwrap();
    // The edges and the sink's in-flight publishes are small: the barrier was at
    // most a few hundred elements ahead of what the stream held.
    let then = stream_len(&nats, "seq");
    wait_until("published past the checkpoint", || {
        stream_len(&nats, "seq") >= then + 600
    });
    let _ = futures::executor::block_on(running.abort());
    let before = stream_len(&nats, "seq");
    // Where the checkpoint has the sink: its element number and what it had not
    // seen confirmed.
    let store = CheckpointStore::open(dir.path(), StoreOptions::default()).unwrap();
    let (_, data) = store.load(info.id).unwrap();
    let state = &data
        .stages
        .iter()
        .find(|s| s.stage == "publish")
        .unwrap()
        .snapshot;
    let (at, unconfirmed): (u64, Vec<(String, String, Vec<u8>)>) =
        state.decode(1, &RestoreContext::default()).unwrap();
    drop(store);
    assert!(
        at < before,
        "the checkpoint ({at}) came too late to test anything"
    );

    let (running, stats) = run(Arc::new(Gate::default()));
    running.wait().unwrap();
    let published = read_stream(&nats, "seq");
    assert_eq!(published.len() as u64, N, "each element once");
    for (i, (id, payload)) in published.iter().enumerate() {
        assert_eq!(id, &format!("job/seq/{i}"));
        assert_eq!(payload, &i.to_string());
    }
    // Replayed: what the checkpoint had unconfirmed, and everything after it
    // that the aborted run had published — all dropped by the stream.
    assert_eq!(
        stats.duplicates(),
        unconfirmed.len() as u64 + (before - at),
        "at {at}, {} unconfirmed, {before} before the restart",
        unconfirmed.len()
    );
    assert_eq!(stats.stored(), N - before);
}
