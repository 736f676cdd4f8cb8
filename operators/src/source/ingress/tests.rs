//! The tests of `Ingress` and its source.

use std::time::{Duration, Instant};

use futures::executor::block_on;
use weir_runtime::{BuildError, Outcome};

use super::{SendError, TrySendError};
use crate::test_support::{eventually, rt};
use crate::{FlowExt, Pipeline};

/// A sink that took its slot (was ready) before an abort and sends after
/// it is refused, so nothing it was told was accepted goes uncounted; the
/// abort does not wait for it. (Before the admission gate, the source
/// waited up to 200 ms for such a slot, then gave up: an element sent
/// later was accepted and counted nowhere.)
#[test]
fn a_sink_ready_before_an_abort_is_refused_after_it() {
    use futures::Sink;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<u32>(4);
    let running = flow.for_each(|_| {}).run(&rt).unwrap();
    let mut sink = ingress.into_sink();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert_eq!(Pin::new(&mut sink).poll_ready(&mut cx), Poll::Ready(Ok(())));
    let started = Instant::now();
    let report = match block_on(running.abort()) {
        Ok(done) => done.report,
        Err(e) => e.report().unwrap().clone(),
    };
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "the abort waited for the ready sink: {:?}",
        started.elapsed()
    );
    assert_eq!(
        Pin::new(&mut sink).start_send(7),
        Err(super::IngressClosed),
        "refused: the sender keeps the element"
    );
    let source = report.stage("ingress#0").unwrap();
    assert_eq!(source.abandoned, 0, "{source:?}");
    report.check_conservation().unwrap();
}

/// Senders on threads race an abort: every element a sender was told was
/// accepted is in the report (delivered or abandoned at the source).
#[test]
fn every_element_accepted_around_an_abort_is_counted() {
    let rt = rt();
    for round in 0..20_u64 {
        let (ingress, flow) = Pipeline::ingress::<u64>(8);
        let running = flow.for_each(|_| {}).run(&rt).unwrap();
        let senders: Vec<_> = (0..3)
            .map(|_| {
                let ingress = ingress.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0_u64;
                    loop {
                        match ingress.try_send(1) {
                            Ok(()) => accepted += 1,
                            Err(TrySendError::Full(_)) => std::thread::yield_now(),
                            Err(TrySendError::Closed(_)) => break accepted,
                        }
                    }
                })
            })
            .collect();
        drop(ingress);
        std::thread::sleep(Duration::from_micros(200 * round));
        let report = match block_on(running.abort()) {
            Ok(done) => done.report,
            Err(e) => e.report().unwrap().clone(),
        };
        let accepted: u64 = senders.into_iter().map(|t| t.join().unwrap()).sum();
        report.check_conservation().unwrap();
        let source = report.stage("ingress#0").unwrap();
        assert_eq!(source.input, accepted, "round {round}: {source:?}");
    }
}

/// The sink waits while the buffer is full and fails once the pipeline is
/// gone; an element it accepted is in the buffer.
#[test]
fn the_sink_waits_for_room_and_fails_once_the_pipeline_is_gone() {
    use futures::Sink;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    let (ingress, flow) = Pipeline::ingress::<u32>(2);
    let mut sink = ingress.into_sink();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for x in 0..2 {
        assert_eq!(Pin::new(&mut sink).poll_ready(&mut cx), Poll::Ready(Ok(())));
        Pin::new(&mut sink).start_send(x).unwrap();
    }
    assert_eq!(
        Pin::new(&mut sink).poll_ready(&mut cx),
        Poll::Pending,
        "full"
    );
    drop(flow);
    assert_eq!(
        Pin::new(&mut sink).poll_ready(&mut cx),
        Poll::Ready(Err(super::IngressClosed))
    );
    assert_eq!(Pin::new(&mut sink).start_send(9), Err(super::IngressClosed));
}

#[test]
fn delivers_what_is_sent_and_ends_when_every_handle_is_dropped() {
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<String>(4);
    let running = flow
        .map(|s| s + "!")
        .collect()
        .default_capacity(3)
        .max_batch(2)
        .run(&rt)
        .unwrap();
    let other = ingress.clone();
    for i in 0..40 {
        let handle = if i % 2 == 0 { &ingress } else { &other };
        // Waits while the buffer is full; the pipeline drains it meanwhile.
        block_on(handle.send(i.to_string())).unwrap();
    }
    drop(ingress);
    assert!(!running.stats().finished, "a clone is still alive");
    drop(other);
    let done = running.wait().unwrap();
    let expected: Vec<String> = (0..40).map(|i| format!("{i}!")).collect();
    assert_eq!(done.output, expected);
    let r = &done.report;
    r.check_conservation().unwrap();
    assert_eq!(r.outcome, Outcome::Completed);
    let source = r.stage("ingress#0").unwrap();
    assert!(source.is_source);
    assert_eq!(
        (source.input, source.produced, source.abandoned),
        (40, 40, 0)
    );
    assert!(source.largest_batch <= 2);
}

/// With a sink that never finishes an element, the pipeline fills up and the
/// ingress reports `Full`, handing the element back.
#[test]
fn try_send_reports_full_under_backpressure() {
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<u32>(2);
    let running = flow
        .for_each_async(|_| std::future::pending())
        .default_capacity(1)
        .run(&rt)
        .unwrap();
    // Accept until the pipeline stops draining the buffer.
    let mut accepted = 0;
    let mut full_since: Option<Instant> = None;
    let start = Instant::now();
    while full_since.is_none_or(|t| t.elapsed() < Duration::from_millis(30)) {
        assert!(start.elapsed() < Duration::from_secs(1), "never filled up");
        match ingress.try_send(accepted) {
            Ok(()) => {
                accepted += 1;
                full_since = None;
            }
            Err(TrySendError::Full(x)) => {
                assert_eq!(x, accepted, "the element comes back");
                full_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TrySendError::Closed(_)) => panic!("closed while running"),
        }
    }
    // One element in the sink's future, one in its queue (capacity 1), two in
    // the ingress buffer.
    assert_eq!(accepted, 4);
    assert_eq!(ingress.available(), 0);
    assert!(!ingress.is_closed());
    let err = ingress.try_send(99).unwrap_err();
    assert_eq!(err, TrySendError::Full(99));
    assert_eq!(err.into_inner(), 99);

    let done = block_on(running.abort()).unwrap();
    let r = &done.report;
    r.check_conservation().unwrap();
    assert_eq!(r.outcome, Outcome::Aborted);
    let source = r.stage("ingress#0").unwrap();
    assert_eq!(source.input, 4, "accepted elements count as taken in");
    assert_eq!(source.abandoned, 2, "the ingress buffer");
    let sink = r.stage("for_each_async#1").unwrap();
    assert_eq!((sink.input, sink.completed, sink.abandoned), (2, 0, 2));

    // The pipeline has ended: the ingress is closed.
    assert!(ingress.is_closed());
    assert_eq!(ingress.try_send(5), Err(TrySendError::Closed(5)));
    assert_eq!(block_on(ingress.send(6)), Err(SendError(6)));
}

#[test]
fn closed_once_the_pipeline_has_ended() {
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<u32>(4);
    let running = flow
        .take(2)
        .collect()
        .default_capacity(3)
        .max_batch(2)
        .run(&rt)
        .unwrap();
    ingress.try_send(1).unwrap();
    ingress.try_send(2).unwrap();
    // `take` ends the stream although the ingress is still alive.
    let done = running.wait().unwrap();
    assert_eq!(done.output, [1, 2]);
    done.report.check_conservation().unwrap();
    eventually(|| ingress.is_closed());
    assert_eq!(ingress.try_send(3), Err(TrySendError::Closed(3)));
    assert_eq!(block_on(ingress.send(4)), Err(SendError(4)));
}

/// A graceful shutdown stops accepting but still emits what was accepted.
#[test]
fn shutdown_drains_what_was_accepted() {
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<u32>(8);
    let running = flow
        .collect()
        .default_capacity(3)
        .max_batch(2)
        .run(&rt)
        .unwrap();
    for i in 0..6 {
        ingress.try_send(i).unwrap();
    }
    running.controller().shutdown(Duration::from_secs(5));
    let done = running.wait().unwrap();
    assert_eq!(done.output, [0, 1, 2, 3, 4, 5]);
    let r = &done.report;
    r.check_conservation().unwrap();
    assert!(
        matches!(r.outcome, Outcome::Drained { .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.admitted(), 6);
    assert_eq!(ingress.try_send(6), Err(TrySendError::Closed(6)));
}

#[test]
fn dropped_before_sending_gives_an_empty_stream() {
    let rt = rt();
    let (ingress, flow) = Pipeline::ingress::<u32>(1);
    let running = flow.collect().run(&rt).unwrap();
    drop(ingress);
    let done = running.wait().unwrap();
    assert!(done.output.is_empty());
    done.report.check_conservation().unwrap();
}

#[test]
fn zero_capacity_is_rejected_at_build_time() {
    let rt = rt();
    let (_ingress, flow) = Pipeline::ingress::<u32>(0);
    let err = flow.collect().run(&rt).unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidArgument { stage, .. } if stage == "ingress#0"),
        "{err:?}"
    );
}
