//! [`Logs`]: what a test's code logged through `tracing` (events and spans,
//! their fields as text), to assert that something was logged — a refused
//! connection named with its peer — and that something never was — a token.
//!
//! [`Logs::capture`] installs a global subscriber once per process: every test
//! of a binary sees every event of every thread, its own and those of the
//! tests running beside it, so a test looks for what is its own (a port, a
//! name) rather than counting all events.
//!
//! # Examples
//!
//! ```
//! use weir_testkit::logs::Logs;
//!
//! let logs = Logs::capture();
//! tracing::warn!(peer = "127.0.0.1:40000", "request refused (401)");
//! assert!(logs.warned(&["request refused", "peer=\"127.0.0.1:40000\""]));
//! assert!(!logs.shows("s3cret"));
//! tracing::trace!(token = "s3cret", "a library tracing what it sends");
//! assert!(logs.shows("s3cret") && !logs.shows_at(tracing::Level::DEBUG, "s3cret"));
//! ```

use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

pub use tracing::Level;

/// An event as it was logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Its target (the module path, or the `target:` given).
    pub target: String,
    /// Its level.
    pub level: Level,
    /// Its fields as `name=value ` text (values in their `Debug` form, so
    /// strings are quoted), the message included (`message=…`).
    pub fields: String,
}

/// A span as it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedSpan {
    /// Its name.
    pub name: String,
    /// Its fields as text, as in [`LoggedEvent::fields`].
    pub fields: String,
    /// Its level.
    pub level: Level,
}

/// What the process logged since [`capture`](Self::capture) was first called.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    events: Arc<Mutex<Vec<LoggedEvent>>>,
    spans: Arc<Mutex<Vec<LoggedSpan>>>,
}

impl Logs {
    /// Starts capturing (the first call installs the process's global
    /// subscriber, recording every level) and returns the log.
    ///
    /// # Panics
    ///
    /// Another global subscriber was installed before the first call.
    pub fn capture() -> Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            tracing::subscriber::set_global_default(Registry::default().with(logs.clone()))
                .expect("no other global tracing subscriber");
            logs
        })
        .clone()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<LoggedEvent> {
        lock(&self.events).clone()
    }

    /// Every span opened so far.
    pub fn spans(&self) -> Vec<LoggedSpan> {
        lock(&self.spans).clone()
    }

    /// Whether an event at `warn` holds every one of `needles` in its fields.
    pub fn warned(&self, needles: &[&str]) -> bool {
        lock(&self.events).iter().any(|event| {
            event.level == Level::WARN && needles.iter().all(|n| event.fields.contains(n))
        })
    }

    /// Whether `text` appears in any event's or span's fields (for a secret:
    /// it must not).
    pub fn shows(&self, text: &str) -> bool {
        self.shows_at(Level::TRACE, text)
    }

    /// Whether `text` appears in the fields of an event or span at `level` or
    /// more severe (`Level::DEBUG`: everything but `trace`), for code whose
    /// libraries trace more than it logs.
    pub fn shows_at(&self, level: Level, text: &str) -> bool {
        lock(&self.events)
            .iter()
            .any(|e| e.level <= level && e.fields.contains(text))
            || lock(&self.spans)
                .iter()
                .any(|s| s.level <= level && s.fields.contains(text))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding it leaves the log as it was.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Logs {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        attrs.record(&mut text);
        let meta = attrs.metadata();
        lock(&self.spans).push(LoggedSpan {
            name: meta.name().to_owned(),
            fields: text.0,
            level: *meta.level(),
        });
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        let meta = event.metadata();
        lock(&self.events).push(LoggedEvent {
            target: meta.target().to_owned(),
            level: *meta.level(),
            fields: text.0,
        });
    }
}
