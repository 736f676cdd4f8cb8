//! Exactly-once under `kill -9` through NATS JetStream, against a real
//! `nats-server -js` with a store directory (started by the test as
//! [`TestServer`]; the test fails, never skips, when it is missing).
//!
//! A child process runs JetStream source ([`Acks::OnCheckpoint`], a durable
//! consumer) → `take(N)` → a keyed `scan` counting per key → the JetStream
//! publish sink with message ids from the input's stream sequence,
//! checkpointing every 50–100 ms. The test kills it with SIGKILL at 20 random
//! points, starting it again each time, then lets a last run finish, and checks
//! the output stream: one message per input message, and the keyed counts
//! restored exactly once.
//!
//! The child is this test binary, run again with `WEIR_KILL_CHILD` naming the
//! work directory and `WEIR_KILL_URL` the server: [`child`] is a no-op
//! otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use weir_nats::async_nats::jetstream::{consumer, stream};
use weir_nats::{
    Acks, Bytes, ConsumerSettings, Delivery, JetStreamSource, MsgId, Nats, NatsFlowExt, Publish,
    TestServer,
};
use weir_operators::FlowExt;
use weir_operators::keyed::KeyedExt;
use weir_operators::limit::{LimitExt, Rate, Throttle};
use weir_runtime::Runtime;
use weir_runtime::checkpoint::CheckpointConfig;

/// Input messages. The last run, at full speed, handles what the 20 throttled
/// runs left (most of it) in about 10 s of a debug build on 2 busy cores;
/// 200,000 would take a minute there.
const MESSAGES: u64 = 60_000;
const KEYS: u64 = 64;
const KILLS: u32 = 20;
/// How long a killed run lives, in ms (from its start, which takes part of it).
const LIFE_MS: (u64, u64) = (300, 800);
/// The rate of a killed run: 20 runs of the longest life read at most
/// 20 × 0.8 s × 2,000 = 32,000 messages, about half the input, so every kill
/// lands before the job ends.
const KILLED_RATE: u32 = 2_000;
/// The consumer's `ack_wait`: how soon a killed run's unacknowledged messages
/// come back.
const ACK_WAIT: Duration = Duration::from_secs(1);
/// Above what the runs of one `ack_wait` can hold unacknowledged (their
/// throttled intake, the edges, a checkpoint interval of the last run).
const MAX_ACK_PENDING: u64 = 20_000;

const INPUT: &str = "in";
const OUTPUT: &str = "out";
const DURABLE: &str = "count";

fn settings() -> ConsumerSettings {
    let mut settings = ConsumerSettings::new(DURABLE)
        .ack_wait(ACK_WAIT)
        .max_ack_pending(MAX_ACK_PENDING);
    // Kills must never exhaust a message.
    settings.max_deliver = None;
    settings
}

/// The key of input value `v`.
fn key(v: u64) -> u64 {
    v % KEYS
}

/// Every key's last count in this process, written out when the job completed.
static LAST_COUNTS: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());

/// The child: the job until it is killed, or until `take` has passed every
/// message.
///
/// How it knows it is done: `take(MESSAGES)` is checkpointed with the rest, so
/// after a restore it has passed exactly the messages in the restored state (all
/// before the barrier, each once), and the source delivers only the others
/// (those the checkpoint covers are acknowledged again before its first fetch).
/// So it ends exactly when the last message not yet counted has been counted. A
/// message counted twice would end it early (one missing from the output); a
/// message lost would keep it waiting (the test times out). `end_after_idle`
/// would instead have to outwait `ack_wait` for the killed runs' messages.
fn run_child(dir: &Path, url: &str) {
    let rate = match std::env::var("WEIR_KILL_RATE") {
        Ok(r) => Rate::per_second(r.parse().unwrap()),
        Err(_) => Rate::per_second(100_000_000),
    };
    let nats = Nats::connect(url).unwrap();
    let consumer = nats.durable_consumer(INPUT, &settings()).unwrap();
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let sink = Publish::new(nats.clone(), |d: &Delivery<(u64, u64, u64)>| {
        let (v, k, count) = d.payload;
        (
            format!("{OUTPUT}.{k}"),
            Bytes::from(format!("{v} {k} {count}")),
        )
    })
    .msg_id(MsgId::from_fn(|d| {
        format!("kill/count/{}", d.info.stream_sequence)
    }))
    // A count depends on the order the messages came in, which a restore
    // changes (a killed run's messages come back after newer ones): only what a
    // checkpoint kept is published.
    .on_checkpoint();
    let interval = Duration::from_millis(50 + u64::from(std::process::id() % 51));
    let done = JetStreamSource::new(nats.clone(), consumer)
        .acks(Acks::OnCheckpoint)
        .max_fetch(64)
        .flow()
        .name("source")
        // Here whatever the rate: its state is restored either way.
        .throttle(Throttle::shape(rate).burst(64))
        .name("rate")
        // A short queue before the throttle: a barrier waits behind at most
        // 64 elements, so a killed run checkpoints within its life.
        .capacity(64)
        .take(MESSAGES)
        .name("all")
        .key_by(|d: &Delivery<Bytes>| key(value(&d.payload)))
        .scan(0_u64, |count, d: Delivery<Bytes>| {
            *count += 1;
            let v = value(&d.payload);
            LAST_COUNTS.lock().unwrap().insert(key(v), *count);
            d.map(|_| (v, key(v), *count))
        })
        .name("count")
        .publish_with(sink)
        .name("publish")
        .checkpoints(CheckpointConfig::new(dir.join("checkpoints")).interval(interval))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    nats.flush().unwrap();
    let counts: String = LAST_COUNTS
        .lock()
        .unwrap()
        .iter()
        .map(|(k, c)| format!("{k} {c}\n"))
        .collect();
    std::fs::write(dir.join("last-counts"), counts).unwrap();
}

fn value(payload: &[u8]) -> u64 {
    std::str::from_utf8(payload).unwrap().parse().unwrap()
}

/// Runs the job when started as the child; does nothing in a normal run.
#[test]
fn child() {
    if let Some(dir) = std::env::var_os("WEIR_KILL_CHILD") {
        let url = std::env::var("WEIR_KILL_URL").unwrap();
        run_child(Path::new(&dir), &url);
    }
}

/// Starts the child; `slow`: held to [`KILLED_RATE`].
fn spawn(dir: &Path, url: &str, slow: bool) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    if slow {
        command.env("WEIR_KILL_RATE", KILLED_RATE.to_string());
    }
    command
        .args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env("WEIR_KILL_CHILD", dir)
        .env("WEIR_KILL_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs the child to its end; panics with its stderr if it failed or took
/// longer than `limit`.
fn run_to_end(dir: &Path, url: &str, limit: Duration, what: &str) {
    let mut child = spawn(dir, url, false);
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn publish_input(nats: &Nats) {
    let js = nats.jetstream().clone();
    nats.block_on(async move {
        let mut acks = Vec::new();
        for v in 0..MESSAGES {
            acks.push(
                js.publish(format!("{INPUT}.v"), v.to_string().into())
                    .await
                    .unwrap(),
            );
            if acks.len() == 1_000 {
                for a in acks.drain(..) {
                    a.await.unwrap();
                }
            }
        }
        for a in acks {
            a.await.unwrap();
        }
    })
    .unwrap();
}

/// Every message in the output stream: (Nats-Msg-Id, payload).
fn read_output(nats: &Nats) -> Vec<(String, String)> {
    let js = nats.jetstream().clone();
    nats.block_on(async move {
        let mut stream = js.get_stream(OUTPUT).await.unwrap();
        let total = stream.info().await.unwrap().state.messages;
        let reader = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = reader.messages().await.unwrap().take(total as usize);
        let mut out = Vec::with_capacity(total as usize);
        while let Some(m) = messages.next().await {
            let m = m.unwrap();
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push((id, String::from_utf8(m.payload.to_vec()).unwrap()));
        }
        out
    })
    .unwrap()
}

/// (not yet delivered, delivered and not acknowledged) on the input consumer.
fn pending(nats: &Nats) -> (u64, u64) {
    let mut consumer = nats.durable_consumer(INPUT, &settings()).unwrap();
    let info = nats
        .block_on(async move { consumer.info().await.unwrap().clone() })
        .unwrap();
    (info.num_pending, info.num_ack_pending as u64)
}

fn output_len(nats: &Nats) -> u64 {
    let js = nats.jetstream().clone();
    nats.block_on(async move {
        let mut stream = js.get_stream(OUTPUT).await.unwrap();
        stream.info().await.unwrap().state.messages
    })
    .unwrap()
}

/// The id of the newest checkpoint in `dir` (0: none).
fn newest_checkpoint(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir.join("checkpoints")) else {
        return 0;
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("chk-")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// Each key's final count, as the last run wrote it.
fn last_counts(dir: &Path) -> BTreeMap<u64, u64> {
    std::fs::read_to_string(dir.join("last-counts"))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, c) = l.split_once(' ').unwrap();
            (k.parse().unwrap(), c.parse().unwrap())
        })
        .collect()
}

#[test]
fn killed_at_random_points_each_message_is_published_once_and_counted_once() {
    let server = TestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let nats = Nats::connect(&url).unwrap();
    nats.work_queue(INPUT, &["in.>"]).unwrap();
    let js = nats.jetstream().clone();
    nats.block_on(async move {
        js.get_or_create_stream(stream::Config {
            name: OUTPUT.to_owned(),
            subjects: vec![format!("{OUTPUT}.>")],
            // Longer than the whole test: every replay is dropped.
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .unwrap()
    })
    .unwrap();
    nats.durable_consumer(INPUT, &settings()).unwrap();
    let started = Instant::now();
    publish_input(&nats);
    let published_in = started.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let dir = PathBuf::from(dir.path());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut kills = 0;
    let mut at_kills = Vec::new();
    // Killed runs that completed a checkpoint, and the newest checkpoint.
    let (mut advanced, mut checkpointed) = (0, 0);
    let killing = Instant::now();
    while kills < KILLS {
        let mut child = spawn(&dir, &url, true);
        let after = Duration::from_millis(LIFE_MS.0 + next() % (LIFE_MS.1 - LIFE_MS.0));
        std::thread::sleep(after);
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "seed {seed}: a run failed: {err}");
            panic!("seed {seed}: the job finished after {kills} kills, before {KILLS}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        at_kills.push(output_len(&nats));
        let newest = newest_checkpoint(&dir);
        if newest > checkpointed {
            advanced += 1;
            checkpointed = newest;
        }
    }
    let killed_for = killing.elapsed();
    assert!(
        advanced >= KILLS / 2,
        "seed {seed}: only {advanced} of {KILLS} killed runs completed a checkpoint"
    );
    let before_last = output_len(&nats);
    let last = Instant::now();
    run_to_end(&dir, &url, Duration::from_secs(120), "the last run");
    let last_took = last.elapsed();

    // The output: one message per input message, by id and by value.
    let out = read_output(&nats);
    assert_eq!(
        out.len() as u64,
        MESSAGES,
        "seed {seed}: one output per input"
    );
    let mut by_value = vec![None; MESSAGES as usize];
    for (id, payload) in &out {
        let fields: Vec<u64> = payload.split(' ').map(|f| f.parse().unwrap()).collect();
        let [v, k, count] = fields[..] else {
            panic!("seed {seed}: a stray output {payload:?}")
        };
        assert_eq!(id, &format!("kill/count/{}", v + 1), "seed {seed}");
        assert_eq!(k, key(v), "seed {seed}");
        let slot = &mut by_value[v as usize];
        assert!(slot.is_none(), "seed {seed}: value {v} published twice");
        *slot = Some(count);
    }
    // Every key's state: restored exactly once, so the last run ends with each
    // key counted as a fold over the input counts it.
    let mut per_key = BTreeMap::new();
    for v in 0..MESSAGES {
        *per_key.entry(key(v)).or_insert(0_u64) += 1;
    }
    assert_eq!(last_counts(&dir), per_key, "seed {seed}: final counts");
    // Each output carries its key's running count in the one order the kept
    // runs counted in: per key, the counts are 1..=n, each once, as a fold over
    // the input in that order gives. (Without `on_checkpoint`, a killed run's
    // results past its last checkpoint stay and the restored run's are
    // dropped as duplicates: about one in ten counts repeated another.)
    let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (v, count) in by_value.iter().enumerate() {
        counts
            .entry(key(v as u64))
            .or_default()
            .push(count.unwrap());
    }
    for (k, mut c) in counts {
        c.sort_unstable();
        let want: Vec<u64> = (1..=per_key[&k]).collect();
        if c != want {
            let repeated = c.windows(2).filter(|w| w[0] == w[1]).count();
            panic!(
                "seed {seed}, key {k}: the published counts are not 1..={}: {repeated} repeated, \
                 the first difference at {:?}",
                per_key[&k],
                c.iter().zip(&want).position(|(a, b)| a != b)
            );
        }
    }

    // Started once more after the end: it does nothing, and the messages of the
    // last run's final stretch (covered only by its final checkpoint) are
    // acknowledged by the restore.
    run_to_end(&dir, &url, Duration::from_secs(30), "the run after the end");
    assert_eq!(output_len(&nats), MESSAGES, "seed {seed}");
    nats.flush().unwrap();
    // Every message was delivered and acknowledged: the last stretch by the
    // run past the end, whose source is cancelled at once (its `take` is done)
    // and acknowledges what it restored as it stops. (Before it did, about one
    // run in three left ~100 unacknowledged here.)
    let (not_delivered, unacked) = pending(&nats);
    assert_eq!(not_delivered, 0, "seed {seed}: input not delivered");
    assert_eq!(unacked, 0, "seed {seed}: input left unacknowledged");

    eprintln!(
        "seed {seed}: {MESSAGES} messages published in {published_in:?}; {kills} kills in \
         {killed_for:?}, {advanced} of them after a checkpoint (outputs at each kill: {at_kills:?}); the last run from {before_last} \
         took {last_took:?}; {unacked} unacknowledged at the end; total {:?}",
        started.elapsed()
    );
}
