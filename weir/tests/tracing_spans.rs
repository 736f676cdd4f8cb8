//! `tracing`: a span per stage (with pipeline, stage and kind), a span per batch
//! at debug level, supervision events as structured events, nothing per element
//! at info; the HTTP servers' refused TLS handshakes and tokens as warnings that
//! never show the token.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use weir::prelude::*;

#[derive(Default, Clone)]
struct Seen {
    /// (span name, its fields as text, level)
    spans: Arc<Mutex<Vec<(String, String, Level)>>>,
    /// (target, level, fields as text)
    events: Arc<Mutex<Vec<(String, Level, String)>>>,
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        attrs.record(&mut text);
        let meta = attrs.metadata();
        self.spans
            .lock()
            .unwrap()
            .push((meta.name().to_owned(), text.0, *meta.level()));
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        let meta = event.metadata();
        self.events
            .lock()
            .unwrap()
            .push((meta.target().to_owned(), *meta.level(), text.0));
    }
}

/// What the process's subscriber saw; installed once for every test here.
fn seen() -> Seen {
    static SEEN: OnceLock<Seen> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Seen::default();
        tracing::subscriber::set_global_default(Registry::default().with(seen.clone())).unwrap();
        seen
    })
    .clone()
}

#[test]
fn stages_have_spans_and_supervision_events_are_structured() {
    let seen = seen();

    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let tripped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let policy = SupervisionPolicy::default().restart_backoff(BackoffConfig::new(
        std::time::Duration::from_millis(1),
        std::time::Duration::from_millis(1),
    ));
    let done = Pipeline::from_iter(0..5_000_u64)
        .supervise(Supervision::new(policy).dead_letters(MemoryDlq::new(4)))
        .map(move |x| {
            if x == 100 && !tripped.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("trip on {x}");
            }
            x
        })
        .name("traced")
        .collect()
        .named("spans")
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.output.len(), 5_000);

    let spans = seen.spans.lock().unwrap().clone();
    let stage = spans
        .iter()
        .find(|(name, fields, _)| name == "stage" && fields.contains("stage=traced"))
        .expect("a span for the stage");
    assert_eq!(stage.2, Level::INFO);
    assert!(
        stage.1.contains("pipeline=spans") && stage.1.contains("kind=\"map\""),
        "{stage:?}"
    );
    assert!(
        spans
            .iter()
            .any(|(name, _, level)| name == "batch" && *level == Level::DEBUG),
        "a debug span per batch"
    );

    let events = seen.events.lock().unwrap().clone();
    let supervision: Vec<_> = events
        .iter()
        .filter(|(target, _, _)| target == "weir::supervision")
        .collect();
    assert!(
        supervision
            .iter()
            .any(|(_, level, text)| *level == Level::WARN
                && text.contains("stage=traced")
                && text.contains("trip on 100")),
        "the failure as a structured warning: {supervision:?}"
    );
    assert!(
        supervision
            .iter()
            .any(|(_, _, text)| text.contains("StageRestarted")),
        "{supervision:?}"
    );
    // Nothing per element at info or above: far fewer events than elements.
    let loud = events
        .iter()
        .filter(|(_, level, _)| *level <= Level::INFO)
        .count();
    assert!(
        loud < 50,
        "{loud} events at info or above for 5 000 elements"
    );
}

#[test]
fn refused_tls_handshakes_and_tokens_are_warnings_that_never_show_the_token() {
    use weir::server_tls::{Pem, TlsServerConfig};
    let seen = seen();
    let (server, _) = common::pki();
    let rt = common::rt1();
    let (_ingress, flow) = Pipeline::ingress::<u64>(4);
    let (runnable, hub) = flow.broadcast_hub(weir::hub::NoSubscriber::Drop);
    let _running = runnable.run(&rt).unwrap();
    let tls = TlsServerConfig::new(Pem::memory(server.cert), Pem::memory(server.key));
    let sse = weir::sse::Sse::json(hub)
        .tls(tls)
        .bearer_token("s3cret-token")
        .serve("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = sse.local_addr();

    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    let mut client = common::tls_client(addr, &server.ca, None);
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer guessed-token\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 401"));
    common::eventually("both refusals counted", || {
        let stats = sse.stats();
        (stats.tls_handshake_failures, stats.unauthorized) == (1, 1)
    });

    let events = seen.events.lock().unwrap().clone();
    let warned = |needle: &str| {
        events.iter().any(|(_, level, text)| {
            *level == Level::WARN && text.contains("server=\"sse\"") && text.contains(needle)
        })
    };
    assert!(warned("TLS handshake failed"), "{events:?}");
    assert!(
        warned("request refused (401)") && warned("wrong bearer token"),
        "{events:?}"
    );
    assert!(warned("path=\"/events\""), "{events:?}");
    for secret in ["s3cret-token", "guessed-token"] {
        assert!(
            !events.iter().any(|(.., text)| text.contains(secret)),
            "{secret} logged: {events:?}"
        );
    }
}
