//! weir-net against bad input and hostile peers (issue 8, "Hardened against bad
//! input"), and the TCP sink's reconnects.
//!
//! The tests read process-wide figures (RSS, descriptors), so they take one lock
//! and run one at a time.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use weir_net::frame::{Decoder, FrameError, Framing, encode};
use weir_net::tcp::{
    BadInput, ConnectionQuota, OverQuota, TcpSink, TcpSinkConfig, TcpSourceConfig, listen,
    listen_with_dead_letters,
};
use weir_operators::{FlowExt, Pipeline};
use weir_runtime::{PipelineError, Runtime, Supervision};
use weir_supervisor::dead_letter::{DeadLetter, FileDlqReader, FileDlqWriter, MemoryDlq};
use weir_supervisor::policy::{BackoffConfig, PolicyConfig, SupervisionPolicy};
use weir_supervisor::{ErrorClass, Failure};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// A `/proc/self/status` figure, in KiB.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Descriptors of this process that are connected TCP sockets whose local port is
/// `port` (the server's side of its connections; the listener is not counted).
fn server_connection_fds(port: u16) -> usize {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *state != "0A" {
                inodes.insert((*inode).to_owned());
            }
        }
    }
    let mut count = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                && inodes.contains(inode)
            {
                count += 1;
            }
        }
    }
    count
}

/// Waits until `done` holds, for at most `limit`.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    done()
}

/// (1) A frame declaring 4 GiB is rejected from its header: the connection is
/// closed, the bad input is dead-lettered with the peer, RSS grows by less than
/// 1 MiB and the address space by far less than 4 GiB.
#[test]
fn a_frame_declaring_4_gib_is_rejected_before_allocating() {
    let _serial = serial();
    let rt = rt();
    let dlq = MemoryDlq::<BadInput>::new(16);
    let config = TcpSourceConfig::new(Framing::LengthPrefixed).max_frame(64 * 1024);
    let (handle, flow) =
        listen_with_dead_letters("127.0.0.1:0", config, Arc::new(dlq.clone())).unwrap();
    let running = flow.map(|frame| frame.bytes).collect().run(&rt).unwrap();

    // Warm up: one good frame through the whole path, so that the runtime's and the
    // connection's buffers exist before measuring.
    let mut good = TcpStream::connect(handle.local_addr()).unwrap();
    let mut wire = Vec::new();
    encode(Framing::LengthPrefixed, 1024, b"warm", &mut wire).unwrap();
    good.write_all(&wire).unwrap();
    assert!(wait_until(Duration::from_secs(5), || handle.stats().frames == 1));

    let rss_before = status_kib("VmRSS:");
    let size_before = status_kib("VmSize:");
    let mut evil = TcpStream::connect(handle.local_addr()).unwrap();
    let evil_addr = evil.local_addr().unwrap();
    evil.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    // Then bytes that would be the frame's start: they are never read into a frame.
    let _ = evil.write_all(&[0x41; 4096]);
    evil.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    // The server closes the connection: end of file (or a reset), not a timeout.
    match evil.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(error) => assert_ne!(error.kind(), std::io::ErrorKind::WouldBlock),
    }
    assert!(wait_until(Duration::from_secs(5), || handle
        .stats()
        .bad_frames
        == 1));
    let rss_growth = status_kib("VmRSS:").saturating_sub(rss_before);
    let size_growth = status_kib("VmSize:").saturating_sub(size_before);
    assert!(rss_growth < 1024, "RSS grew by {rss_growth} KiB");
    assert!(
        size_growth < 256 * 1024,
        "address space grew by {size_growth} KiB"
    );

    let letters = dlq.drain();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].element.peer, evil_addr);
    assert_eq!(
        letters[0].element.error,
        FrameError::DeclaredTooLong {
            declared: u64::from(u32::MAX),
            max: 64 * 1024
        }
    );
    assert_eq!(letters[0].class, ErrorClass::Permanent);

    // The good connection was not disturbed.
    wire.clear();
    encode(Framing::LengthPrefixed, 1024, b"still here", &mut wire).unwrap();
    good.write_all(&wire).unwrap();
    drop(good);
    drop(evil);
    handle.close();
    let done = running.wait().unwrap();
    assert_eq!(done.output, [b"warm".to_vec(), b"still here".to_vec()]);
    done.report.check_conservation().unwrap();
    let stats = handle.stats();
    assert_eq!((stats.accepted, stats.open, stats.bad_frames), (2, 0, 1));
}

/// (2) 1,000 connections that send nothing or trickle one byte at a time are
/// closed by the idle and read timeouts or refused at the connection limit; the
/// server never holds more connection descriptors than the limit (+1 for a
/// connection being refused), and a well-behaved client connected before the
/// attack has every frame delivered, in order.
#[test]
fn a_thousand_trickling_connections_are_closed_and_a_good_client_keeps_working() {
    let _serial = serial();
    const MAX: usize = 32;
    let rt = rt();
    let config = TcpSourceConfig::new(Framing::Lines)
        .max_frame(1024)
        .max_connections(MAX)
        .idle_timeout(Duration::from_millis(300))
        .read_timeout(Duration::from_millis(500));
    let (handle, flow) = listen("127.0.0.1:0", config).unwrap();
    let port = handle.local_addr().port();
    let running = flow.collect().run(&rt).unwrap();

    // The good client, on its own thread: a line every 20 ms until told to stop.
    let mut good = TcpStream::connect(handle.local_addr()).unwrap();
    let good_addr = good.local_addr().unwrap();
    good.write_all(b"good 0\n").unwrap();
    assert!(wait_until(Duration::from_secs(5), || handle.stats().frames == 1));
    let good_stop = Arc::new(AtomicBool::new(false));
    let good_client = {
        let stop = Arc::clone(&good_stop);
        std::thread::spawn(move || {
            let mut sent = 1;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                if let Err(error) = good.write_all(format!("good {sent}\n").as_bytes()) {
                    return Err(format!("good client cut off after {sent} lines: {error}"));
                }
                sent += 1;
            }
            Ok(sent)
        })
    };

    // Sample the server's connection descriptors while the attack runs.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        std::thread::spawn(move || {
            let mut samples = 0;
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(server_connection_fds(port), Ordering::Relaxed);
                samples += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            samples
        })
    };

    // Four waves of 250 attackers, one every 200 ms; every other attacker sends
    // one byte every 20 ms, never a newline, the others stay silent. The good
    // client sends a line every 20 ms throughout, until every attacker is gone.
    let mut attackers = Vec::new();
    let attack = Instant::now();
    for round in 0.. {
        if round % 10 == 0 && attackers.len() < 1000 {
            for _ in 0..250 {
                let stream = TcpStream::connect(handle.local_addr()).unwrap();
                stream.set_nonblocking(true).unwrap();
                attackers.push(stream);
            }
        }
        for attacker in attackers.iter_mut().step_by(2) {
            let _ = attacker.write(b"x");
        }
        std::thread::sleep(Duration::from_millis(20));
        if attackers.len() == 1000 && handle.stats().open == 1 {
            break;
        }
        assert!(
            attack.elapsed() < Duration::from_secs(10),
            "{:?}",
            handle.stats()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let stats = handle.stats();
    assert_eq!(stats.accepted + stats.refused, 1001, "{stats:?}");
    assert_eq!(
        stats.idle_timeouts + stats.read_timeouts,
        stats.accepted - 1,
        "{stats:?}"
    );
    assert!(
        stats.read_timeouts > 0 && stats.idle_timeouts > 0,
        "{stats:?}"
    );
    assert!(stats.peak_open <= MAX as u64, "{stats:?}");
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak <= MAX + 1,
        "{peak} server connection descriptors at once ({samples} samples)"
    );
    assert!(samples >= 10, "only {samples} samples");
    println!(
        "attack: {stats:?}; peak server descriptors {peak} over {samples} samples; fds now {}",
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    );

    drop(attackers);
    good_stop.store(true, Ordering::Relaxed);
    let sent_good = good_client.join().unwrap().unwrap();
    handle.close();
    let done = running.wait().unwrap();
    let got: Vec<String> = done
        .output
        .iter()
        .filter(|frame| frame.peer == good_addr)
        .map(|frame| String::from_utf8(frame.bytes.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..sent_good).map(|i| format!("good {i}")).collect();
    assert_eq!(got, expected);
    assert_eq!(done.output.len(), got.len(), "no attacker sent a frame");
    done.report.check_conservation().unwrap();
}

/// (3) A client sending 100x its quota (frames over it dropped) has the quota's
/// worth admitted, within 5 %.
#[test]
fn a_client_sending_100x_its_quota_is_admitted_within_5_percent() {
    let _serial = serial();
    const RATE: u32 = 200;
    const BURST: u32 = 20;
    let rt = rt();
    let config = TcpSourceConfig::new(Framing::Lines).max_frame(64).quota(
        ConnectionQuota::per_second(RATE)
            .burst(BURST)
            .over_quota(OverQuota::Drop),
    );
    let (handle, flow) = listen("127.0.0.1:0", config).unwrap();
    let running = flow
        .map(|frame| frame.bytes.len())
        .collect()
        .run(&rt)
        .unwrap();

    let mut client = TcpStream::connect(handle.local_addr()).unwrap();
    // 100x the rate for one second, paced in slices of 10 ms.
    let per_slice = (RATE as usize * 100) / 100;
    let start = Instant::now();
    let mut sent = 0_u64;
    let line = b"0123456789\n".repeat(per_slice);
    for slice in 1..=100_u32 {
        client.write_all(&line).unwrap();
        sent += per_slice as u64;
        let next = start + Duration::from_millis(10) * slice;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(client);
    assert!(wait_until(Duration::from_secs(10), || {
        let s = handle.stats();
        s.frames + s.over_quota_dropped == sent
    }));
    handle.close();
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    let admitted = done.output.len() as f64;
    let expected = f64::from(BURST) + f64::from(RATE) * elapsed;
    let ratio = admitted / expected;
    println!("quota: sent {sent} in {elapsed:.3} s, admitted {admitted}, expected {expected:.1}");
    assert!(
        (0.95..=1.05).contains(&ratio),
        "admitted {admitted}, expected {expected:.1}"
    );
    assert_eq!(handle.stats().over_quota_dropped, sent - admitted as u64);
}

/// A tiny deterministic generator (xorshift64*), so the fuzz cases are the same
/// on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Random bytes, skewed towards the bytes that matter to the decoders
    /// (newlines and small length prefixes).
    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| match self.below(8) {
                0 => b'\n',
                1 | 2 => 0,
                3 => 0xff,
                _ => self.next() as u8,
            })
            .collect()
    }

    /// `input` with a few random bytes flipped, inserted or removed.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(3) {
            let at = self.below(out.len() + 1);
            match self.below(3) {
                0 if at < out.len() => out[at] = self.next() as u8,
                1 => out.insert(at, self.next() as u8),
                _ if at < out.len() => {
                    out.remove(at);
                }
                _ => out.truncate(at),
            }
        }
        out
    }
}

/// Decodes `input` in the pieces `cuts` says, checking the bounds after every
/// call: frames at most `max`, buffer capacity at most `max`.
fn decode_in_pieces(
    framing: Framing,
    max: usize,
    input: &[u8],
    rng: &mut Rng,
) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut decoder = Decoder::new(framing, max);
    let mut frames = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let take = 1 + rng.below(rest.len());
        let mut piece = &rest[..take];
        rest = &rest[take..];
        loop {
            match decoder.decode(&mut piece) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
            assert!(decoder.capacity() <= max && decoder.buffered() <= max + 4);
        }
        assert!(piece.is_empty());
        assert!(decoder.capacity() <= max && decoder.buffered() <= max + 4);
    }
    (frames, decoder.finish().err())
}

/// (4) Arbitrary and mutated bytes into every decoder: frames (both framings),
/// dead-letter files and the policy configuration. 10^6 cases in all; no panic,
/// every frame decoder's buffer bounded by its maximum, the same frames whatever
/// the pieces the bytes arrive in, and the peak RSS of the whole run bounded.
#[test]
fn a_million_arbitrary_inputs_into_every_decoder() {
    let _serial = serial();
    let hwm_before = status_kib("VmHWM:");
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let started = Instant::now();
    let mut cases = 0_u64;

    // Frames: 999 400 cases, half random bytes, half mutated valid streams.
    for case in 0..999_400_u32 {
        let framing = if case % 2 == 0 {
            Framing::Lines
        } else {
            Framing::LengthPrefixed
        };
        let max = 1 + rng.below(24);
        let input = if case % 4 < 2 {
            rng.bytes(40)
        } else {
            let mut valid = Vec::new();
            for _ in 0..rng.below(4) {
                let frame: Vec<u8> = rng.bytes(max).into_iter().filter(|&b| b != b'\n').collect();
                encode(framing, max, &frame, &mut valid).unwrap();
            }
            rng.mutate(&valid)
        };
        let (frames, error) = decode_in_pieces(framing, max, &input, &mut rng);
        // Differential: one piece gives the same frames and the same verdict.
        let mut whole = Decoder::new(framing, max);
        let mut all = &input[..];
        let mut whole_frames = Vec::new();
        let whole_error = loop {
            match whole.decode(&mut all) {
                Ok(Some(frame)) => whole_frames.push(frame),
                Ok(None) => break whole.finish().err(),
                Err(error) => break Some(error),
            }
        };
        assert_eq!(
            frames, whole_frames,
            "{framing:?} max {max} input {input:?}"
        );
        assert_eq!(error.is_some(), whole_error.is_some(), "{input:?}");
        cases += 1;
    }

    println!("fuzz: frames done after {:?}", started.elapsed());
    // Dead-letter files: a valid file of three letters, mutated and read back.
    let dir = tempfile::tempdir().unwrap();
    let valid_path = dir.path().join("valid.dlq");
    let mut writer = FileDlqWriter::<String>::create(&valid_path).unwrap();
    let failure = Failure::error(ErrorClass::Transient, "boom");
    for i in 0..3_u64 {
        let letter = DeadLetter::new(format!("element {i}"), "stage", "pipe", &failure, 2, i);
        writer.append(&letter).unwrap();
    }
    drop(writer);
    let valid = std::fs::read(&valid_path).unwrap();
    let path = dir.path().join("fuzz.dlq");
    for case in 0..100_u32 {
        let bytes = if case % 8 == 0 {
            rng.bytes(64)
        } else {
            rng.mutate(&valid)
        };
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(reader) = FileDlqReader::<String>::open(&path) {
            for letter in reader.take(16).flatten() {
                assert!(letter.element.len() < valid.len());
            }
        }
        cases += 1;
    }

    println!("fuzz: dead-letter files done after {:?}", started.elapsed());
    // Configuration: mutations of the logproc example's policy file.
    let config = include_str!("../../examples/config/logproc.toml");
    assert!(PolicyConfig::from_toml_str(config).is_ok());
    for case in 0..500_u32 {
        let bytes = if case % 8 == 0 {
            rng.bytes(64)
        } else {
            rng.mutate(config.as_bytes())
        };
        let text = String::from_utf8_lossy(&bytes);
        let _ = PolicyConfig::from_toml_str(&text);
        cases += 1;
    }

    assert!(cases >= 1_000_000);
    let hwm_growth = status_kib("VmHWM:").saturating_sub(hwm_before);
    println!(
        "fuzz: {cases} cases in {:?}, peak RSS grew by {hwm_growth} KiB",
        started.elapsed()
    );
    assert!(hwm_growth < 16 * 1024, "peak RSS grew by {hwm_growth} KiB");
}

proptest::proptest! {
    /// Any frames within the maximum survive encode then decode, in any pieces.
    #[test]
    fn frames_round_trip(
        frames in proptest::collection::vec(proptest::collection::vec(0_u8..255, 0..40), 0..8),
        lines in proptest::bool::ANY,
        seed in 1_u64..u64::MAX,
    ) {
        let framing = if lines { Framing::Lines } else { Framing::LengthPrefixed };
        let frames: Vec<Vec<u8>> = frames
            .into_iter()
            .map(|f| if lines { f.into_iter().filter(|&b| b != b'\n').collect() } else { f })
            .collect();
        let mut wire = Vec::new();
        for frame in &frames {
            encode(framing, 40, frame, &mut wire).unwrap();
        }
        let (decoded, error) = decode_in_pieces(framing, 40, &wire, &mut Rng(seed));
        proptest::prop_assert_eq!(decoded, frames);
        proptest::prop_assert!(error.is_none());
    }
}

fn fast_retries() -> Supervision<String> {
    let policy = SupervisionPolicy::default()
        .max_attempts(1_000)
        .backoff(BackoffConfig::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ));
    Supervision::new(policy).dead_letters(MemoryDlq::new(16))
}

/// Reads lines from the first `connections` connections of `server` until each
/// ends, in a thread.
fn read_lines(
    server: std::net::TcpListener,
    connections: usize,
) -> std::thread::JoinHandle<Vec<Vec<String>>> {
    std::thread::spawn(move || {
        (0..connections)
            .map(|_| {
                let (conn, _) = server.accept().unwrap();
                BufReader::new(conn).lines().map(Result::unwrap).collect()
            })
            .collect()
    })
}

/// The sink's peer is down when the pipeline starts: connecting fails, the
/// supervised sink retries with backoff, and once the peer listens every element
/// is written, in order, on one connection.
#[test]
fn the_sink_reconnects_with_backoff_until_the_peer_listens() {
    let _serial = serial();
    let rt = rt();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = probe.local_addr().unwrap();
    drop(probe);
    let (sink, stats) = TcpSink::new(addr.to_string(), TcpSinkConfig::new(Framing::Lines));
    let elements: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    let flow = Pipeline::from_iter(elements.clone()).supervise(fast_retries());
    let running = TcpSink::attach(flow, sink).run(&rt).unwrap();
    assert!(wait_until(Duration::from_secs(5), || stats
        .write_failures()
        >= 3));
    let server = std::net::TcpListener::bind(addr).unwrap();
    let reader = read_lines(server, 1);
    let done = running.wait().unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got, [elements]);
    assert_eq!(stats.connects(), 1);
    assert_eq!(stats.written(), 500);
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.dead_lettered(), 0);
}

/// The peer closes the connection between two bursts: the sink notices before
/// writing, reconnects, and the second burst arrives whole on the new connection.
#[test]
fn the_sink_reconnects_after_the_peer_closes() {
    let _serial = serial();
    let rt = rt();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (ingress, flow) = Pipeline::ingress::<String>(64);
    let (sink, stats) = TcpSink::new(addr.to_string(), TcpSinkConfig::new(Framing::Lines));
    let running = TcpSink::attach(flow.supervise(fast_retries()), sink)
        .run(&rt)
        .unwrap();
    for i in 0..10 {
        ingress.try_send(format!("first {i}")).unwrap();
    }
    let (conn, _) = server.accept().unwrap();
    let mut first = BufReader::new(conn);
    let mut line = String::new();
    for i in 0..10 {
        line.clear();
        first.read_line(&mut line).unwrap();
        assert_eq!(line, format!("first {i}\n"));
    }
    drop(first); // the peer closes, having read everything
    std::thread::sleep(Duration::from_millis(20));
    let reader = read_lines(server, 1);
    for i in 0..10 {
        ingress.try_send(format!("second {i}")).unwrap();
    }
    drop(ingress);
    let done = running.wait().unwrap();
    let got = reader.join().unwrap();
    let expected: Vec<String> = (0..10).map(|i| format!("second {i}")).collect();
    assert_eq!(got, [expected]);
    assert_eq!(stats.connects(), 2);
    done.report.check_conservation().unwrap();
}

/// Unsupervised, a sink that cannot connect fails the stage, and with it the
/// pipeline, naming the stage and the address.
#[test]
fn an_unsupervised_sink_that_cannot_connect_fails_the_pipeline() {
    let _serial = serial();
    let rt = rt();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let (sink, _stats) = TcpSink::new(addr.to_string(), TcpSinkConfig::new(Framing::Lines));
    let flow = Pipeline::from_iter(["a".to_owned()]);
    let err = TcpSink::attach(flow, sink)
        .name("out")
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap_err();
    let PipelineError::StageFailed {
        stage,
        failure,
        report,
        ..
    } = err
    else {
        panic!("expected a stage failure, got {err}");
    };
    assert_eq!(stage, "out");
    assert_eq!(failure.class(), ErrorClass::Transient);
    assert!(
        failure.message().contains(&addr.to_string()),
        "{}",
        failure.message()
    );
    report.check_conservation().unwrap();
}

/// An element that cannot be framed is dead-lettered alone (class Permanent);
/// the elements around it are written. Bad settings are build errors naming the
/// stage.
#[test]
fn unframeable_elements_are_dead_lettered_and_bad_settings_rejected() {
    let _serial = serial();
    let rt = rt();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let reader = read_lines(server, 1);
    let dlq = MemoryDlq::new(4);
    let config = TcpSinkConfig::new(Framing::Lines).max_frame(8);
    let (sink, _stats) = TcpSink::new(addr.to_string(), config);
    let flow =
        Pipeline::from_iter(["a", "two\nlines", "b", "much too long", "c"].map(String::from))
            .supervise(Supervision::new(SupervisionPolicy::default()).dead_letters(dlq.clone()));
    let done = TcpSink::attach(flow, sink)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(reader.join().unwrap(), [["a", "b", "c"]]);
    let letters: Vec<String> = dlq.drain().into_iter().map(|l| l.element).collect();
    assert_eq!(letters, ["two\nlines", "much too long"]);
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.dead_lettered(), 2);

    let (sink, _) = TcpSink::<String>::new(
        "127.0.0.1:1",
        TcpSinkConfig::new(Framing::Lines).max_batch(0),
    );
    let err = TcpSink::attach(Pipeline::from_iter(Vec::<String>::new()), sink)
        .name("out")
        .run(&rt)
        .unwrap_err();
    assert!(
        err.to_string().contains("`out`") && err.to_string().contains("max_batch"),
        "{err}"
    );
    let (_, flow) = listen(
        "127.0.0.1:0",
        TcpSourceConfig::new(Framing::Lines).max_connections(0),
    )
    .unwrap();
    let err = flow.name("in").collect().run(&rt).unwrap_err();
    assert!(
        err.to_string().contains("`in`") && err.to_string().contains("max_connections"),
        "{err}"
    );
}
