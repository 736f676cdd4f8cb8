//! The duplex connection (issue 8, "a bidirectional stream over one TCP
//! connection"): both directions under a sliding window, the window bound,
//! backpressure from a slow consumer, heartbeats, the peer timeout, malformed
//! and hostile peers, and the protocol codec.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use proptest::prelude::*;
use weir_net::duplex::{Duplex, DuplexConfig, DuplexHandle, DuplexSink, Message};
use weir_net::frame::{Decoder, Framing};
use weir_operators::{FlowExt, Pipeline};
use weir_runtime::{Flow, PipelineError, Report, Runtime};
use weir_supervisor::ErrorClass;

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

fn fast(window: u32) -> DuplexConfig {
    DuplexConfig::new()
        .window(window)
        .heartbeat(Duration::from_millis(20))
        .peer_timeout(Duration::from_secs(2))
}

/// A connected pair: (A's ends, B's ends).
#[allow(clippy::type_complexity)]
fn pair(
    a: DuplexConfig,
    b: DuplexConfig,
) -> (
    (DuplexSink<Vec<u8>>, Flow<Vec<u8>>, DuplexHandle),
    (DuplexSink<Vec<u8>>, Flow<Vec<u8>>, DuplexHandle),
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = Duplex::connect(listener.local_addr().unwrap(), a).unwrap();
    let b = Duplex::accept(&listener, b).unwrap();
    (a, b)
}

fn numbers(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|i| i.to_be_bytes().to_vec()).collect()
}

/// The stage failure of a pipeline that was expected to fail.
fn stage_failure(err: PipelineError) -> (ErrorClass, String, Report) {
    let PipelineError::StageFailed {
        failure, report, ..
    } = err
    else {
        panic!("expected a stage failure, got {err}");
    };
    (failure.class(), failure.message().to_owned(), *report)
}

/// Both directions at once, a window much smaller than the data: everything
/// arrives once, in order; both pipelines conserve; the window bound held on
/// both sides and the connection closed cleanly.
#[test]
fn both_directions_in_order_under_a_small_window() {
    let rt = rt();
    let n = 2_000;
    let ((a_sink, a_source, a), (b_sink, b_source, b)) = pair(fast(8), fast(5));
    let a_out = DuplexSink::attach(Pipeline::from_iter(numbers(0..n)), a_sink)
        .run(&rt)
        .unwrap();
    let b_out = DuplexSink::attach(Pipeline::from_iter(numbers(n..2 * n)), b_sink)
        .run(&rt)
        .unwrap();
    let a_in = a_source.collect().run(&rt).unwrap();
    let b_in = b_source.collect().run(&rt).unwrap();
    let a_got = a_in.wait().unwrap();
    let b_got = b_in.wait().unwrap();
    assert_eq!(a_got.output, numbers(n..2 * n));
    assert_eq!(b_got.output, numbers(0..n));
    for done in [a_out.wait().unwrap(), b_out.wait().unwrap()] {
        done.report.check_conservation().unwrap();
        assert_eq!(done.report.delivered(), u64::from(n));
        assert_eq!(done.report.abandoned(), 0);
    }
    a_got.report.check_conservation().unwrap();
    b_got.report.check_conservation().unwrap();
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        (sa.sent, sa.acknowledged, sa.received, sa.delivered),
        (2_000, 2_000, 2_000, 2_000)
    );
    assert_eq!(
        (sb.sent, sb.acknowledged, sb.received, sb.delivered),
        (2_000, 2_000, 2_000, 2_000)
    );
    // A sends into B's window of 5, B into A's window of 8.
    assert!(
        sa.max_in_flight <= 5 && sb.max_in_flight <= 8,
        "{sa:?} {sb:?}"
    );
    assert!(
        sa.max_buffered <= 8 && sb.max_buffered <= 5,
        "{sa:?} {sb:?}"
    );
    assert!(a.failure().is_none() && b.failure().is_none());
    assert!(wait_until(|| a.is_closed() && b.is_closed()));
}

fn wait_until(mut ready: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A slow consumer on B: A's sink reaches the window and never goes past it,
/// B never buffers more than its window, and all elements arrive in order.
#[test]
fn a_slow_consumer_backpressures_the_sender() {
    let (fast_rt, slow_rt) = (rt(), rt());
    let n = 300;
    let ((a_sink, a_source, a), (b_sink, b_source, b)) = pair(fast(16), fast(4));
    let a_out = DuplexSink::attach(Pipeline::from_iter(numbers(0..n)), a_sink)
        .run(&fast_rt)
        .unwrap();
    let b_out = DuplexSink::attach(Pipeline::from_iter(Vec::<Vec<u8>>::new()), b_sink)
        .run(&slow_rt)
        .unwrap();
    let a_in = a_source.collect().run(&fast_rt).unwrap();
    let b_in = b_source
        .map(|x| {
            std::thread::sleep(Duration::from_micros(300));
            x
        })
        .collect()
        .run(&slow_rt)
        .unwrap();
    assert_eq!(b_in.wait().unwrap().output, numbers(0..n));
    a_out.wait().unwrap().report.check_conservation().unwrap();
    b_out.wait().unwrap().report.check_conservation().unwrap();
    assert!(a_in.wait().unwrap().output.is_empty());
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        sa.max_in_flight, 4,
        "the window was reached and never exceeded: {sa:?}"
    );
    assert!(sb.max_buffered <= 4, "{sb:?}");
    assert_eq!(sb.delivered, u64::from(n));
}

/// An idle connection stays up on heartbeats for several peer timeouts, then
/// still carries elements.
#[test]
fn heartbeats_keep_an_idle_connection_alive() {
    let rt = rt();
    let config = fast(4).peer_timeout(Duration::from_millis(150));
    let ((a_sink, a_source, a), (b_sink, b_source, b)) = pair(config.clone(), config);
    let a_in = a_source.collect().run(&rt).unwrap();
    let b_in = b_source.collect().run(&rt).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        a.failure().is_none() && b.failure().is_none(),
        "{:?} {:?}",
        a.failure(),
        b.failure()
    );
    assert!(a.stats().pings_sent >= 3 && b.stats().pings_sent >= 3);
    let a_out = DuplexSink::attach(Pipeline::from_iter(numbers(0..3)), a_sink)
        .run(&rt)
        .unwrap();
    let b_out = DuplexSink::attach(Pipeline::from_iter(numbers(3..6)), b_sink)
        .run(&rt)
        .unwrap();
    assert_eq!(b_in.wait().unwrap().output, numbers(0..3));
    assert_eq!(a_in.wait().unwrap().output, numbers(3..6));
    a_out.wait().unwrap().report.check_conservation().unwrap();
    b_out.wait().unwrap().report.check_conservation().unwrap();
}

/// B stops reading after 10 elements (`take`): the connection fails, A's sink
/// fails naming the cause, and only what B acknowledged counts as delivered by
/// A; the rest is abandoned, never silently lost.
#[test]
fn a_receiver_that_stops_early_fails_the_sender_without_losing_counts() {
    let rt = rt();
    let n = 1_000;
    let ((a_sink, a_source, a), (b_sink, b_source, _b)) = pair(fast(4), fast(4));
    drop(b_sink); // nothing in flight: B sends END, A's source ends cleanly
    let a_in = a_source.collect().run(&rt).unwrap();
    let a_out = DuplexSink::attach(Pipeline::from_iter(numbers(0..n)), a_sink)
        .run(&rt)
        .unwrap();
    let b_in = b_source.take(10).collect().run(&rt).unwrap();
    assert_eq!(b_in.wait().unwrap().output, numbers(0..10));
    assert!(a_in.wait().unwrap().output.is_empty());
    let (class, message, report) = stage_failure(a_out.wait().unwrap_err());
    assert_eq!(class, ErrorClass::Transient);
    assert!(
        message.contains("stopped before the peer's END"),
        "{message}"
    );
    report.check_conservation().unwrap();
    let acknowledged = a.stats().acknowledged;
    assert_eq!(report.delivered(), acknowledged);
    // B acknowledged what it handed on (at least the 10) before its ERROR.
    assert!((10..u64::from(n)).contains(&acknowledged), "{acknowledged}");
    assert_eq!(report.delivered() + report.abandoned(), u64::from(n));
}

fn frame(message: &Message) -> Vec<u8> {
    let mut wire = Vec::new();
    message.encode(1024, &mut wire).unwrap();
    wire
}

/// A peer that grants 5 credits and then neither reads nor writes: both stages
/// fail after the peer timeout (class Timeout, naming the peer and the timeout),
/// and nothing is delivered: the 5 elements sent and never acknowledged are
/// abandoned with the 95 still queued.
#[test]
fn a_silent_peer_fails_both_stages_after_the_timeout() {
    let rt = rt();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = listener.local_addr().unwrap();
    let config = fast(4).peer_timeout(Duration::from_millis(150));
    let (sink, source, handle) = Duplex::connect::<Vec<u8>>(peer, config).unwrap();
    let (mut silent, _) = listener.accept().unwrap();
    silent.write_all(&frame(&Message::Credit { n: 5 })).unwrap();
    let out = DuplexSink::attach(Pipeline::from_iter(numbers(0..100)), sink)
        .name("to_peer")
        .run(&rt)
        .unwrap();
    let input = source.name("from_peer").collect().run(&rt).unwrap();
    let started = std::time::Instant::now();
    for (err, taken) in [
        (out.wait().unwrap_err(), 100),
        (input.wait().unwrap_err(), 0),
    ] {
        let (class, message, report) = stage_failure(err);
        assert_eq!(class, ErrorClass::Timeout, "{message}");
        assert!(
            message.contains(&peer.to_string()) && message.contains("150ms"),
            "{message}"
        );
        report.check_conservation().unwrap();
        assert_eq!(report.abandoned(), taken, "{report:?}");
        assert_eq!(report.delivered(), 0, "{report:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(handle.stats().sent, 5);
    assert_eq!(handle.stats().acknowledged, 0);
    drop(silent);
}

/// Hostile or broken peers: each fails the connection with an error naming the
/// peer and what is wrong, never a panic; the peer is told with ERROR.
#[test]
fn malformed_and_hostile_peers_get_a_clear_error() {
    let rt = rt();
    let data = |seq| Message::Data {
        seq,
        payload: vec![1],
    };
    let mut too_many = Vec::new();
    for seq in 0..3 {
        too_many.extend(frame(&data(seq)));
    }
    let cases: Vec<(Vec<u8>, ErrorClass, &str)> = vec![
        (
            vec![0, 0, 0, 1, 0x63],
            ErrorClass::Permanent,
            "unknown message tag 0x63",
        ),
        (
            vec![0, 0, 0, 3, 2, 0, 0],
            ErrorClass::Permanent,
            "ACK frame of 3 bytes, expected 9",
        ),
        (
            vec![0xff, 0xff, 0xff, 0xff],
            ErrorClass::Permanent,
            "frame declares 4294967295 bytes",
        ),
        (
            too_many,
            ErrorClass::Permanent,
            "DATA 2 beyond the granted window (2 granted)",
        ),
        (
            frame(&data(1)),
            ErrorClass::Permanent,
            "DATA seq 1, expected 0",
        ),
        (
            frame(&Message::End { total: 3 }),
            ErrorClass::Permanent,
            "END says 3",
        ),
        (
            frame(&Message::Ack { upto: 1 }),
            ErrorClass::Permanent,
            "ACK up to 1, but 0 were sent",
        ),
        (
            frame(&Message::Error {
                reason: "disk full".into(),
            }),
            ErrorClass::Transient,
            "reported an error: disk full",
        ),
        (
            vec![0, 0, 0, 9, 1],
            ErrorClass::Permanent,
            "stream ended inside a frame",
        ),
    ];
    for (bytes, class, expected) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = listener.local_addr().unwrap();
        let (sink, source, _handle) = Duplex::connect::<Vec<u8>>(peer, fast(2)).unwrap();
        let (mut hostile, _) = listener.accept().unwrap();
        hostile.write_all(&bytes).unwrap();
        hostile.shutdown(std::net::Shutdown::Write).unwrap();
        drop(sink);
        let err = source.collect().run(&rt).unwrap().wait().unwrap_err();
        let (got_class, message, report) = stage_failure(err);
        assert_eq!(got_class, class, "{message}");
        assert!(
            message.contains(expected) && message.contains(&peer.to_string()),
            "{expected:?} in {message}"
        );
        report.check_conservation().unwrap();
        // The hostile peer was sent the initial credit, then END (the sink
        // stopped with nothing in flight) and ERROR.
        let mut told = Vec::new();
        hostile.read_to_end(&mut told).unwrap();
        let mut decoder = Decoder::new(Framing::LengthPrefixed, 4096);
        let mut input = &told[..];
        let mut names = Vec::new();
        while let Some(body) = decoder.decode(&mut input).unwrap() {
            names.push(Message::decode(&body, 1024).unwrap().name());
        }
        assert_eq!(names.first(), Some(&"CREDIT"), "{expected}: {names:?}");
        assert_eq!(names.last(), Some(&"ERROR"), "{expected}: {names:?}");
    }
}

/// Bad settings are build errors naming the stage and the setting; an element
/// above max_payload fails the sink (class Permanent), counted, not sent.
#[test]
fn bad_settings_and_oversized_elements_are_rejected() {
    let rt = rt();
    let ((a_sink, a_source, _a), (_b_sink, _b_source, _b)) = pair(fast(0), fast(2));
    let err = DuplexSink::attach(Pipeline::from_iter(numbers(0..1)), a_sink)
        .name("out")
        .run(&rt)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`out`") && err.contains("window"), "{err}");
    drop(a_source);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (sink, _source, _h) = Duplex::connect::<Vec<u8>>(addr, fast(2).max_payload(3)).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.write_all(&frame(&Message::Credit { n: 10 })).unwrap();
    let err = DuplexSink::attach(Pipeline::from_iter(vec![vec![0; 4]]), sink)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    let (class, message, report) = stage_failure(err);
    assert_eq!(class, ErrorClass::Permanent);
    assert!(
        message.contains("4 bytes is above the max_payload of 3"),
        "{message}"
    );
    report.check_conservation().unwrap();
    assert_eq!(report.failed() + report.abandoned(), 1);
    let _ = TcpStream::peer_addr(&peer);
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(seq, payload)| Message::Data { seq, payload }),
        any::<u64>().prop_map(|upto| Message::Ack { upto }),
        any::<u32>().prop_map(|n| Message::Credit { n }),
        Just(Message::Ping),
        Just(Message::Pong),
        any::<u64>().prop_map(|total| Message::End { total }),
        ".{0,40}".prop_map(|reason| Message::Error { reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Every message survives encode then frame-decode then decode.
    #[test]
    fn messages_round_trip(messages in proptest::collection::vec(message(), 1..8)) {
        let mut wire = Vec::new();
        for m in &messages {
            m.encode(64, &mut wire).unwrap();
        }
        let mut decoder = Decoder::new(Framing::LengthPrefixed, 64 + 1024);
        let mut input = &wire[..];
        let mut back = Vec::new();
        while let Some(body) = decoder.decode(&mut input).unwrap() {
            back.push(Message::decode(&body, 64).unwrap());
        }
        prop_assert_eq!(back, messages);
    }

    /// Arbitrary bytes never panic the decoders; what decodes re-encodes to the
    /// same body.
    #[test]
    fn arbitrary_bytes_decode_without_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        if let Ok(m) = Message::decode(&bytes, 32) {
            let mut wire = Vec::new();
            m.encode(32, &mut wire).unwrap();
            prop_assert_eq!(&wire[4..], &bytes[..]);
        }
        let mut decoder = Decoder::new(Framing::LengthPrefixed, 48);
        let mut input = &bytes[..];
        while let Ok(Some(body)) = decoder.decode(&mut input) {
            let _ = Message::decode(&body, 32);
        }
    }
}
