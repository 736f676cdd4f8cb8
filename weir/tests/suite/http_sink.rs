//! The HTTP client sink against local hyper servers that fail on purpose: `503`
//! then success, `429` with `Retry-After`, answers too slow for the timeout,
//! `400` for some elements, a target that is down, and a slow target that
//! counts the requests it serves at once.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use weir::http_sink::{HttpSink, HttpSinkExt};
use weir::prelude::*;
use weir::supervisor::policy::{BreakerConfig, OpenBehavior, Trip};

use crate::common::{rt1, tls_server};

/// A request as the target saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    key: Option<String>,
    auth: Option<String>,
    content_type: Option<String>,
    at: Instant,
}

/// What the target answers: a status, a `Retry-After`, a body, after a delay.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Reply {
            status,
            retry_after: None,
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    fn ok() -> Self {
        Self::status(200)
    }
}

/// Decides the answer from the request and how many times its body was seen
/// (1 for the first).
type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct Log {
    seen: Mutex<Vec<Seen>>,
    /// Bodies answered 2xx, in order.
    accepted: Mutex<Vec<String>>,
    current: AtomicUsize,
    most: AtomicUsize,
    /// TLS handshakes that failed (an HTTPS target).
    refused_handshakes: AtomicUsize,
}

/// A hyper server on 127.0.0.1, on a thread of its own; stopped when dropped.
struct Target {
    addr: SocketAddr,
    log: Arc<Log>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Target {
    fn serve(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve_with(None, handler)
    }

    /// The same server speaking HTTPS with `tls` (only).
    fn serve_tls(
        tls: tokio_rustls::TlsAcceptor,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::serve_with(Some(tls), handler)
    }

    fn serve_with(
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let handler: Handler = Arc::new(handler);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Log::default());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let l = Arc::clone(&log);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            let (l, h) = (Arc::clone(&l), Arc::clone(&handler));
                            let (tls, handshakes) = (tls.clone(), Arc::clone(&l));
                            tokio::spawn(async move {
                                let service = service_fn(move |req| {
                                    answer(req, Arc::clone(&l), Arc::clone(&h))
                                });
                                match tls {
                                    None => {
                                        let _ = http1::Builder::new()
                                            .serve_connection(TokioIo::new(socket), service)
                                            .await;
                                    }
                                    Some(tls) => {
                                        let Ok(socket) = tls.accept(socket).await else {
                                            handshakes.refused_handshakes.fetch_add(1, Ordering::SeqCst);
                                            return;
                                        };
                                        let _ = http1::Builder::new()
                                            .serve_connection(TokioIo::new(socket), service)
                                            .await;
                                    }
                                }
                            });
                        }
                    }
                }
            });
        });
        Target {
            addr,
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The HTTPS URL, by the name its certificate carries.
    fn https_url(&self) -> String {
        format!("https://localhost:{}/hook", self.addr.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.seen.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<String> {
        self.log.accepted.lock().unwrap().clone()
    }

    /// The most requests the target was serving at once.
    fn most_at_once(&self) -> usize {
        self.log.most.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts a request being served until dropped.
struct Serving<'a>(&'a AtomicUsize);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(
    req: Request<Incoming>,
    log: Arc<Log>,
    handler: Handler,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (key, auth, content_type) = (
        header("idempotency-key"),
        header("authorization"),
        header("content-type"),
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let seen = Seen {
        body: String::from_utf8(body.to_vec()).unwrap(),
        key,
        auth,
        content_type,
        at: Instant::now(),
    };
    let attempt = {
        let mut all = log.seen.lock().unwrap();
        all.push(seen.clone());
        all.iter().filter(|s| s.body == seen.body).count()
    };
    let now = log.current.fetch_add(1, Ordering::SeqCst) + 1;
    log.most.fetch_max(now, Ordering::SeqCst);
    let serving = Serving(&log.current);
    let reply = handler(&seen, attempt);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    drop(serving);
    if (200..300).contains(&reply.status) {
        log.accepted.lock().unwrap().push(seen.body.clone());
    }
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    if let Some(after) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    Ok(response)
}

/// Retries at once, almost: 1 ms doubling to 4 ms.
fn fast(max_attempts: u32) -> SupervisionPolicy {
    SupervisionPolicy::default()
        .max_attempts(max_attempts)
        .backoff(BackoffConfig::new(
            Duration::from_millis(1),
            Duration::from_millis(4),
        ))
}

/// The elements of a body: one JSON number per line.
fn elements(body: &str) -> Vec<u64> {
    body.lines().map(|l| l.parse().unwrap()).collect()
}

fn drain(events: &mut weir::Events) -> Vec<SupervisionEvent> {
    let mut all = Vec::new();
    while let Ok(event) = futures::executor::block_on(events.recv()) {
        all.push(event);
    }
    all
}

/// Every third element gets `503` twice, then `200`: each is retried twice with
/// the same idempotency key, delivered once, and the counts say so.
#[test]
fn retries_after_503_deliver_every_element_once_with_a_stable_key() {
    let target = Target::serve(|seen, attempt| {
        let x: u64 = seen.body.parse().unwrap();
        if x.is_multiple_of(3) && attempt <= 2 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let dlq = MemoryDlq::new(10);
    let sink = HttpSink::post(target.url())
        .bearer_token("t0ken")
        .idempotency_key("Idempotency-Key");
    let done = Pipeline::from_iter(0..30_u64)
        .supervise(Supervision::new(fast(4)).dead_letters(dlq.clone()))
        .to_http(sink)
        .name("hook")
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    let r = &done.report;
    r.check_conservation().unwrap();
    let stage = r.stage("hook").unwrap();
    assert_eq!((stage.completed, stage.dead_lettered), (30, 0));
    assert_eq!(r.retries(), 20, "10 elements, 2 retries each");
    assert!(dlq.is_empty());

    let mut accepted: Vec<u64> = target.accepted().iter().flat_map(|b| elements(b)).collect();
    accepted.sort_unstable();
    assert_eq!(accepted, (0..30).collect::<Vec<_>>(), "each delivered once");

    let mut keys: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for seen in target.seen() {
        assert_eq!(seen.auth.as_deref(), Some("Bearer t0ken"));
        assert_eq!(seen.content_type.as_deref(), Some("application/json"));
        let x = seen.body.parse().unwrap();
        keys.entry(x).or_default().insert(seen.key.unwrap());
    }
    assert!(
        keys.values().all(|k| k.len() == 1),
        "one key per element: {keys:?}"
    );
    let distinct: BTreeSet<_> = keys.values().flatten().collect();
    assert_eq!(distinct.len(), 30, "a different key for each element");

    let stats = &done.output;
    assert_eq!(
        (stats.requests(), stats.ok(), stats.retryable()),
        (50, 30, 20)
    );
}

/// NDJSON: batches of up to 8, each refused once with `503` and sent again
/// whole, with its key: every element reaches the target once.
#[test]
fn ndjson_batches_are_retried_whole_with_the_same_key() {
    let target = Target::serve(|_, attempt| {
        if attempt == 1 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let sink = HttpSink::post(target.url())
        .ndjson(8)
        .max_in_flight(2)
        .idempotency_key_with("Idempotency-Key", |x: &u64| format!("order-{x}"));
    let done = Pipeline::from_iter(0..50_u64)
        .supervise(Supervision::new(fast(3)).dead_letters(MemoryDlq::new(10)))
        .to_http(sink)
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.delivered(), 50);
    assert_eq!(
        done.report.retries(),
        50,
        "each element's batch failed once"
    );

    let mut accepted: Vec<u64> = target.accepted().iter().flat_map(|b| elements(b)).collect();
    accepted.sort_unstable();
    assert_eq!(accepted, (0..50).collect::<Vec<_>>());
    let seen = target.seen();
    assert_eq!(seen.len(), 2 * target.accepted().len());
    for s in &seen {
        let batch = elements(&s.body);
        assert!((1..=8).contains(&batch.len()), "{}", s.body);
        assert_eq!(s.content_type.as_deref(), Some("application/x-ndjson"));
        let key = s.key.as_deref().unwrap();
        if let [one] = batch[..] {
            assert_eq!(key, format!("order-{one}"));
        } else {
            assert!(key.starts_with(&format!("batch-{}-", batch.len())), "{key}");
        }
        let same_body: Vec<_> = seen.iter().filter(|o| o.body == s.body).collect();
        assert!(
            same_body.iter().all(|o| o.key == s.key),
            "key kept across the retry"
        );
    }
}

/// `429` with `Retry-After: 1`: the retry waits the second, whatever the
/// policy's millisecond backoff says.
#[test]
fn retry_after_of_a_429_is_honoured() {
    let target = Target::serve(|_, attempt| {
        if attempt == 1 {
            Reply {
                retry_after: Some("1"),
                ..Reply::status(429)
            }
        } else {
            Reply::ok()
        }
    });
    let done = Pipeline::from_iter([7_u64])
        .supervise(Supervision::new(fast(3)).dead_letters(MemoryDlq::new(1)))
        .to_http(HttpSink::post(target.url()))
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!((done.report.delivered(), done.report.retries()), (1, 1));
    let seen = target.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(990),
        "retried after {waited:?}"
    );
}

/// The first answer to each element comes after the 100 ms timeout: each
/// request fails with class `Timeout` and is retried once.
#[test]
fn a_request_without_an_answer_in_time_is_retried() {
    let target = Target::serve(|_, attempt| Reply {
        delay: if attempt == 1 {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        },
        ..Reply::ok()
    });
    let sink = HttpSink::post(target.url())
        .timeout(Duration::from_millis(100))
        .max_in_flight(6);
    let mut runnable = Pipeline::from_iter(0..6_u64)
        .supervise(Supervision::new(fast(3)).dead_letters(MemoryDlq::new(10)))
        .to_http(sink)
        .name("hook");
    let mut events = runnable.subscribe();
    let started = Instant::now();
    let done = runnable.run(&rt1()).unwrap().wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "nothing waited for the slow answers"
    );
    done.report.check_conservation().unwrap();
    assert_eq!((done.report.delivered(), done.report.retries()), (6, 6));
    assert_eq!(done.output.timed_out(), 6);
    let timeouts = drain(&mut events)
        .into_iter()
        .filter(|e| {
            matches!(e, SupervisionEvent::StageFailed { class: ErrorClass::Timeout, error, .. }
                if error.contains("no answer within 100ms"))
        })
        .count();
    assert_eq!(timeouts, 6);
}

/// `400` (and `422`) for some elements: exactly those are dead-lettered, once
/// each, their letters naming the status and the target's reason.
#[test]
fn permanent_4xx_are_dead_lettered_and_never_retried() {
    let target = Target::serve(|seen, _| {
        let x: u64 = seen.body.parse().unwrap();
        match x {
            _ if x.is_multiple_of(7) => Reply {
                body: format!("{{\"error\":\"element {x} is invalid\"}}"),
                ..Reply::status(400)
            },
            10 => Reply::status(422),
            _ => Reply::ok(),
        }
    });
    let dlq = MemoryDlq::new(100);
    let done = Pipeline::from_iter(0..30_u64)
        .supervise(Supervision::new(fast(5)).dead_letters(dlq.clone()))
        .to_http(HttpSink::post(target.url()))
        .name("hook")
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    let r = &done.report;
    r.check_conservation().unwrap();
    assert_eq!((r.delivered(), r.dead_lettered(), r.retries()), (24, 6, 0));
    let mut letters = dlq.drain();
    letters.sort_by_key(|l| l.element);
    let dead: Vec<u64> = letters.iter().map(|l| l.element).collect();
    assert_eq!(dead, [0, 7, 10, 14, 21, 28]);
    for letter in &letters {
        assert_eq!((letter.class, letter.attempts), (ErrorClass::Permanent, 1));
        assert_eq!(letter.stage, "hook");
        if letter.element == 10 {
            assert_eq!(letter.error, "HTTP 422 Unprocessable Entity");
        } else {
            let why = format!(
                "HTTP 400 Bad Request: {{\"error\":\"element {} is invalid\"}}",
                letter.element
            );
            assert_eq!(letter.error, why);
        }
    }
    assert_eq!(target.seen().len(), 30, "nothing was sent twice");
    assert_eq!(done.output.rejected(), 6);
}

/// Nothing listens: every connect is refused, the breaker opens after three
/// failures in a row, and while it is open the queue goes to the dead letters
/// (the letters naming the last failure); what was sent had its two attempts.
#[test]
fn a_target_that_is_down_opens_the_breaker() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let breaker = BreakerConfig::new(Trip::Consecutive(3), Duration::from_secs(5))
        .when_open(OpenBehavior::DeadLetter);
    let dlq = MemoryDlq::new(100);
    let sink = HttpSink::post(format!("http://{addr}/hook")).max_in_flight(2);
    let mut runnable = Pipeline::from_iter(0..20_u64)
        .supervise(Supervision::new(fast(2).breaker(breaker)).dead_letters(dlq.clone()))
        .to_http(sink)
        .name("hook");
    let mut events = runnable.subscribe();
    let done = runnable.run(&rt1()).unwrap().wait().unwrap();
    let r = &done.report;
    r.check_conservation().unwrap();
    assert_eq!((r.delivered(), r.dead_lettered()), (0, 20));
    let events = drain(&mut events);
    let opened = events
        .iter()
        .filter(|e| matches!(e, SupervisionEvent::BreakerOpened { stage, .. } if stage == "hook"))
        .count();
    assert!(opened >= 1, "{events:?}");
    let letters = dlq.drain();
    let refused = letters
        .iter()
        .filter(|l| l.error.contains("connect failed") && l.attempts == 2)
        .count();
    let diverted = letters
        .iter()
        .filter(|l| l.error.starts_with("circuit open") && l.error.contains("connect failed"))
        .count();
    assert!(
        refused >= 2,
        "the first requests failed to connect: {letters:?}"
    );
    assert!(diverted > 0, "the rest was diverted by the open breaker");
    assert_eq!(refused + diverted, 20);
}

/// A target that takes 40 ms per request serves at most two at once with
/// `max_in_flight(2)`, and exactly two while the sink has input.
#[test]
fn a_slow_target_sees_at_most_max_in_flight_requests() {
    let target = Target::serve(|_, _| Reply {
        delay: Duration::from_millis(40),
        ..Reply::ok()
    });
    let done = Pipeline::from_iter(0..12_u64)
        .to_http(HttpSink::post(target.url()).max_in_flight(2))
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.delivered(), 12);
    assert_eq!(target.most_at_once(), 2, "reached, never exceeded");
    assert_eq!(target.accepted().len(), 12);
}

/// Backpressure, exactly: while the target holds the first three requests, the
/// source has emitted the sink's capacity (5) plus the three elements in flight,
/// and no more; released, everything is delivered.
#[test]
fn a_full_sink_takes_no_more_than_its_capacity_plus_max_in_flight() {
    let target = Target::serve(|seen, _| {
        let x: u64 = seen.body.parse().unwrap();
        Reply {
            delay: if x < 3 {
                Duration::from_millis(400)
            } else {
                Duration::ZERO
            },
            ..Reply::ok()
        }
    });
    let rt = rt1();
    let running = Pipeline::from_iter(0..100_u64)
        .name("source")
        .to_http(HttpSink::post(target.url()).max_in_flight(3))
        .name("hook")
        .capacity(5)
        .run(&rt)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while target.log.current.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the target never held three requests"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(50));
    let stats = running.stats();
    let (source, sink) = (stats.stage("source").unwrap(), stats.stage("hook").unwrap());
    assert_eq!(source.emitted, 5 + 3, "{stats:#?}");
    assert_eq!(sink.in_flight, 5 + 3, "{stats:#?}");
    assert_eq!(target.seen().len(), 3);
    let done = running.wait().unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.delivered(), 100);
    assert_eq!(target.most_at_once(), 3);
}

/// HTTPS: a target whose certificate a private CA signed is reached when the
/// sink trusts that CA (`ca_file`): every element once, with its headers, over
/// TLS, retries included.
#[test]
fn an_https_target_signed_by_a_trusted_ca_gets_every_element_once() {
    let (ca, tls) = tls_server();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let target = Target::serve_tls(tls, |seen, attempt| {
        let x: u64 = seen.body.parse().unwrap();
        if x.is_multiple_of(5) && attempt == 1 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let sink = HttpSink::post(target.https_url())
        .ca_file(&ca_file)
        .without_system_roots()
        .bearer_token("t0ken");
    let done = Pipeline::from_iter(0..40_u64)
        .supervise(Supervision::new(fast(3)).dead_letters(MemoryDlq::new(10)))
        .to_http(sink)
        .name("hook")
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(done.report.stage("hook").unwrap().completed, 40);
    let mut accepted: Vec<u64> = target.accepted().iter().flat_map(|b| elements(b)).collect();
    accepted.sort_unstable();
    assert_eq!(accepted, (0..40).collect::<Vec<_>>());
    assert!(
        target
            .seen()
            .iter()
            .all(|s| s.auth.as_deref() == Some("Bearer t0ken"))
    );
    assert_eq!(target.log.refused_handshakes.load(Ordering::SeqCst), 0);
    assert_eq!((done.output.ok(), done.output.retryable()), (40, 8));
}

/// A target whose certificate nobody trusts: the handshake fails, nothing is
/// delivered, and the failure names the certificate; unsupervised, the
/// pipeline fails with it.
#[test]
fn an_https_target_with_an_untrusted_certificate_is_refused_naming_it() {
    let (_ca, tls) = tls_server();
    let (other_ca, _) = tls_server();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, other_ca).unwrap();
    let target = Target::serve_tls(tls, |_, _| Reply::ok());
    let sink = HttpSink::post(target.https_url())
        .ca_file(&ca_file)
        .without_system_roots();
    let err = Pipeline::from_iter(0..3_u64)
        .to_http(sink)
        .name("hook")
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap_err()
        .to_string();
    assert!(err.contains("hook"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(target.seen().is_empty(), "nothing got through");
    // The server learns of the refusal a moment after the client gave up.
    let start = Instant::now();
    while target.log.refused_handshakes.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the server saw no refused handshake"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Bad TLS settings are build errors naming the file and the reason.
#[test]
fn a_missing_or_empty_ca_file_is_a_build_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = Pipeline::from_iter(0..1_u64)
        .to_http(HttpSink::post("https://localhost:1/hook").ca_file(&missing))
        .name("hook")
        .run(&rt1())
        .unwrap_err()
        .to_string();
    assert!(err.contains("hook") && err.contains("missing.pem"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = Pipeline::from_iter(0..1_u64)
        .to_http(
            HttpSink::post("https://localhost:1/hook")
                .ca_file(&empty)
                .without_system_roots(),
        )
        .name("hook")
        .run(&rt1())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("empty.pem") && err.contains("no certificate"),
        "{err}"
    );
    // A whole configuration must leave ALPN to the sink.
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let err = Pipeline::from_iter(0..1_u64)
        .to_http(HttpSink::post("https://localhost:1/hook").tls_config(Arc::new(config)))
        .name("hook")
        .run(&rt1())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ALPN"), "{err}");
    // A CA file is not read for a plain http:// target.
    let plain = Pipeline::from_iter(0..1_u64)
        .to_http(HttpSink::post("http://127.0.0.1:1/hook").ca_file(&missing))
        .name("hook")
        .run(&rt1());
    assert!(plain.is_ok());
}
