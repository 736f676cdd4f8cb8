//! The JetStream connectors against a real `nats-server -js` on loopback (one
//! per test, on a free port, with a temporary store; killed at the end). A test
//! fails, never skips, when `nats-server` is missing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use weir_nats::async_nats::jetstream::consumer::PullConsumer;
use weir_nats::{
    Bytes, Commit, ConsumerSettings, Delivery, JetStreamSource, Nats, NatsFlowExt, Publish,
    Received, Redelivery, TestServer,
};
use weir_operators::{FlowExt, Pipeline};
use weir_runtime::{Outcome, Runtime, Supervision};
use weir_supervisor::dead_letter::MemoryDlq;
use weir_supervisor::policy::{Action, BackoffConfig, SupervisionPolicy};
use weir_supervisor::{ErrorClass, Failure};

fn server() -> (TestServer, Nats) {
    let server = TestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let nats = Nats::connect(&server.url()).unwrap();
    (server, nats)
}

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// Publishes `payloads` on `subject`, each acknowledged by the stream.
fn publish_all(nats: &Nats, subject: &str, payloads: Vec<String>) {
    let js = nats.jetstream().clone();
    let subject = subject.to_owned();
    nats.block_on(async move {
        for p in payloads {
            js.publish(subject.clone(), Bytes::from(p))
                .await
                .unwrap()
                .await
                .unwrap();
        }
    })
    .unwrap();
}

/// (messages not yet delivered, delivered and not acknowledged).
fn pending(nats: &Nats, consumer: &PullConsumer) -> (u64, u64) {
    let mut consumer = consumer.clone();
    let info = nats
        .block_on(async move { consumer.info().await.unwrap().clone() })
        .unwrap();
    (info.num_pending, info.num_ack_pending as u64)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn decode(d: Delivery<Bytes>) -> Delivery<u64> {
    d.map(|b| std::str::from_utf8(&b).unwrap().parse().unwrap_or(u64::MAX))
}

#[test]
fn the_source_fetches_no_more_than_the_pipeline_has_credit_for() {
    let (_server, nats) = server();
    nats.work_queue("bp", &["bp.>"]).unwrap();
    publish_all(&nats, "bp.x", (0..2_000).map(|i| i.to_string()).collect());
    let consumer = nats
        .durable_consumer("bp", &ConsumerSettings::new("w"))
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let g = Arc::clone(&gate);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let rt = rt();
    let running = JetStreamSource::new(nats.clone(), consumer.clone())
        .max_fetch(1_000)
        .end_after_idle(Duration::from_millis(300))
        .flow()
        .map(decode)
        .capacity(8)
        .commit(move |d| {
            log.lock().unwrap().push(d.payload);
            let g = Arc::clone(&g);
            async move {
                g.acquire().await.unwrap().forget();
                Ok(())
            }
        })
        .capacity(16)
        .run(&rt)
        .unwrap();
    // The sink is blocked: the broker must have handed out exactly what fits in
    // the edges (8 into `map`, 16 into the sink) plus the one element the sink
    // holds, whatever max_fetch is.
    wait_until("the edges to fill", || pending(&nats, &consumer).1 >= 25);
    std::thread::sleep(Duration::from_millis(500)); // two more fetch waits
    assert_eq!(pending(&nats, &consumer), (2_000 - 25, 25));
    assert_eq!(seen.lock().unwrap().len(), 1);

    gate.add_permits(2_000);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.delivered(), 2_000);
    assert_eq!(
        *seen.lock().unwrap(),
        (0..2_000).collect::<Vec<u64>>(),
        "stream order"
    );
    nats.flush().unwrap();
    wait_until("all acks", || pending(&nats, &consumer) == (0, 0));
    assert_eq!(nats.ack_stats().acked, 2_000);
}

#[test]
fn a_message_is_acked_only_when_every_copy_was_committed() {
    let (_server, nats) = server();
    nats.work_queue("two", &["two.>"]).unwrap();
    publish_all(&nats, "two.x", (0..100).map(|i| i.to_string()).collect());
    let settings = ConsumerSettings::new("w").ack_wait(Duration::from_millis(800));
    let consumer = nats.durable_consumer("two", &settings).unwrap();
    let committed = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&committed);
    // Each message becomes two holders; the second copy of every tenth message is
    // dropped by a plain filter, undecided: those ten must not be acked.
    let done = JetStreamSource::new(nats.clone(), consumer.clone())
        .end_after_idle(Duration::from_millis(300))
        .flow()
        .map(decode)
        .flat_map(|d: Delivery<u64>| {
            let first = d.clone().map(|x| (x, true));
            [first, d.map(|x| (x, false))]
        })
        .filter(|d| d.payload.1 || d.payload.0 % 10 != 0)
        .commit(move |d| {
            log.lock().unwrap().push(d.payload);
            async { Ok(()) }
        })
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(committed.lock().unwrap().len(), 190);
    let firsts: Vec<u64> = committed
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.1)
        .map(|p| p.0)
        .collect();
    assert_eq!(firsts, (0..100).collect::<Vec<_>>());
    let stats = nats.ack_stats();
    assert_eq!((stats.acked, stats.unacked), (90, 10));
    nats.flush().unwrap();
    wait_until("90 acks", || pending(&nats, &consumer) == (0, 10));

    // After ack_wait the broker redelivers exactly the ten vetoed messages.
    let again = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&again);
    let done = JetStreamSource::new(nats.clone(), consumer.clone())
        .end_after_idle(Duration::from_millis(1_500))
        .flow()
        .map(decode)
        .commit(move |d| {
            log.lock()
                .unwrap()
                .push((d.payload, d.info.delivered, d.info.redelivered()));
            async { Ok(()) }
        })
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    let mut again = again.lock().unwrap().clone();
    again.sort_unstable();
    assert_eq!(
        again,
        (0..10).map(|i| (i * 10, 2, true)).collect::<Vec<_>>()
    );
    nats.flush().unwrap();
    wait_until("all acked", || pending(&nats, &consumer) == (0, 0));
}

#[test]
fn a_poison_message_is_delivered_max_deliver_times_then_terminated_and_dead_lettered() {
    let (_server, nats) = server();
    nats.work_queue("poison", &["poison.>"]).unwrap();
    let payloads = (0..20).map(|i| {
        if i == 7 {
            "bad".to_owned()
        } else {
            i.to_string()
        }
    });
    publish_all(&nats, "poison.x", payloads.collect());
    let settings = ConsumerSettings::new("w")
        .max_deliver(3)
        .ack_wait(Duration::from_secs(20));
    let consumer = nats.durable_consumer("poison", &settings).unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&attempts);
    let dlq = MemoryDlq::<Received<u64>>::new(10);
    let sink = Commit::new(move |d: &Delivery<u64>| {
        let poison = d.payload == u64::MAX;
        if poison {
            log.lock().unwrap().push(d.info.delivered);
        }
        std::future::ready(if poison {
            Err(Failure::error(ErrorClass::Permanent, "not a number"))
        } else {
            Ok(())
        })
    })
    .redelivery(Redelivery::new(
        Duration::from_millis(50),
        Duration::from_millis(200),
    ))
    .dead_letters(Arc::new(dlq.clone()), "commit");
    let done = JetStreamSource::new(nats.clone(), consumer.clone())
        .end_after_idle(Duration::from_millis(800))
        .flow()
        .map(decode)
        .commit_with(sink)
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
    let letters = dlq.drain();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.element.info.delivered, 3);
    assert_eq!(letter.element.info.stream_sequence, 8);
    assert_eq!(letter.element.payload, u64::MAX);
    assert_eq!(letter.error, "not a number");
    let stats = nats.ack_stats();
    assert_eq!(
        (stats.acked, stats.naked, stats.termed, stats.unacked),
        (19, 2, 1, 0)
    );
    nats.flush().unwrap();
    // Terminated: nothing left to deliver, nothing waiting for an ack.
    wait_until("settled", || pending(&nats, &consumer) == (0, 0));
}

#[test]
fn the_publish_sink_acks_the_source_only_after_the_server_stored_the_copy() {
    let (_server, nats) = server();
    nats.work_queue("in", &["in.>"]).unwrap();
    let out = nats.work_queue("out", &["out.>"]).unwrap();
    publish_all(&nats, "in.x", (0..500).map(|i| i.to_string()).collect());
    let consumer = nats
        .durable_consumer("in", &ConsumerSettings::new("w"))
        .unwrap();
    let done = JetStreamSource::new(nats.clone(), consumer.clone())
        .end_after_idle(Duration::from_millis(300))
        .flow()
        .map(decode)
        .publish_with(
            Publish::new(nats.clone(), |d: &Delivery<u64>| {
                ("out.x".to_owned(), Bytes::from((d.payload * 2).to_string()))
            })
            .max_in_flight(32),
        )
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.delivered(), 500);
    assert_eq!(nats.ack_stats().acked, 500);
    let mut out = out;
    let stored = nats
        .block_on(async move { out.info().await.unwrap().state.messages })
        .unwrap();
    assert_eq!(stored, 500);
    nats.flush().unwrap();
    wait_until("source acked", || pending(&nats, &consumer) == (0, 0));
}

#[test]
fn a_failed_publish_follows_the_stage_supervision() {
    let (_server, nats) = server();
    let to_nowhere =
        |d: &Delivery<u64>| ("nowhere.x".to_owned(), Bytes::from(d.payload.to_string()));

    // Unsupervised: the stage fails, naming the publish error.
    let done = Pipeline::from_iter(0..5_u64)
        .map(Delivery::detached)
        .publish(nats.clone(), to_nowhere)
        .name("out")
        .run(&rt())
        .unwrap()
        .wait();
    let err = done.expect_err("publishing where no stream listens must fail");
    assert!(err.to_string().contains("out"), "{err}");

    // Supervised: retried twice with backoff, then dead-lettered, each of the 5.
    let dlq = MemoryDlq::new(10);
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Transient, Action::Retry)
        .max_attempts(3)
        .backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(4),
        ))
        .on_exhausted(Action::DeadLetter);
    let done = Pipeline::from_iter(0..5_u64)
        .map(Delivery::detached)
        .supervise(Supervision::new(policy).dead_letters(dlq.clone()))
        .publish(nats.clone(), to_nowhere)
        .name("out")
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.report.outcome, Outcome::Completed);
    done.report.check_conservation().unwrap();
    let letters = dlq.drain();
    assert_eq!(
        letters
            .iter()
            .map(|l| l.element.payload)
            .collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(letters.iter().all(|l| l.attempts == 3), "{letters:?}");
    assert_eq!(done.report.stage("out").unwrap().dead_lettered, 5);
}
