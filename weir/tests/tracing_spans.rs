//! `tracing`: a span per stage (with pipeline, stage and kind), a span per batch
//! at debug level, supervision events as structured events, nothing per element
//! at info.

use std::sync::{Arc, Mutex};

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

#[test]
fn stages_have_spans_and_supervision_events_are_structured() {
    let seen = Seen::default();
    tracing::subscriber::set_global_default(Registry::default().with(seen.clone())).unwrap();

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
