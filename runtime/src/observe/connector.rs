//! Counters of connectors (a TCP source, an SSE server, HTTP endpoints), kept
//! for their handles' stats and mirrored into the [`metrics`] facade.
//!
//! A stage's counters are sampled from its shared state by the pipeline's
//! sampler. A connector's are bumped where the work happens (a connection's
//! task, an accept loop), outside any stage: a [`Tally`] or [`Level`] keeps the
//! value for the connector's `stats()` and adds the same amount to a `metrics`
//! handle registered once, when the connector is created — so the recorder (the
//! Prometheus exporter) must be installed before that, as for pipelines. Without
//! a recorder the handle is a no-op and only the local value is kept.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use metrics::{Counter, Gauge, Label};

/// The labels of one connector: `(name, value)` pairs, such as
/// `("addr", "127.0.0.1:9000")`.
pub type ConnectorLabels = [(&'static str, String)];

fn labels(labels: &ConnectorLabels) -> Vec<Label> {
    labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone()))
        .collect()
}

/// A monotonic count (frames read, connections refused), exported as the
/// counter `name`.
///
/// # Examples
///
/// ```
/// use weir_runtime::observe::Tally;
///
/// let frames = Tally::new("weir_tcp_source_frames_total", &[("addr", "127.0.0.1:9000".into())]);
/// frames.add(3);
/// assert_eq!(frames.get(), 3);
/// ```
#[derive(Debug)]
pub struct Tally {
    value: AtomicU64,
    exported: Counter,
}

impl Tally {
    /// A count at zero, registered as the counter `name` with `labels`.
    pub fn new(name: &'static str, labels_: &ConnectorLabels) -> Self {
        Tally {
            value: AtomicU64::new(0),
            exported: metrics::counter!(name, labels(labels_)),
        }
    }

    /// Adds `n`; returns the count before (the index of the first one added).
    pub fn add(&self, n: u64) -> u64 {
        let before = self.value.fetch_add(n, Relaxed);
        self.exported.increment(n);
        before
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

/// A level that goes up and down (connections open), with the highest it
/// reached, exported as the gauge `name`.
///
/// # Examples
///
/// ```
/// use weir_runtime::observe::Level;
///
/// let open = Level::new("weir_tcp_source_open_connections", &[]);
/// open.up();
/// open.up();
/// open.down();
/// assert_eq!((open.get(), open.peak()), (1, 2));
/// ```
#[derive(Debug)]
pub struct Level {
    value: AtomicU64,
    peak: AtomicU64,
    exported: Gauge,
}

impl Level {
    /// A level at zero, registered as the gauge `name` with `labels`.
    pub fn new(name: &'static str, labels_: &ConnectorLabels) -> Self {
        Level {
            value: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            exported: metrics::gauge!(name, labels(labels_)),
        }
    }

    /// One more; returns the new level.
    pub fn up(&self) -> u64 {
        let now = self.value.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(now, Relaxed);
        self.exported.increment(1.0);
        now
    }

    /// One fewer (never below zero).
    pub fn down(&self) {
        let dropped = self
            .value
            .fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1))
            .is_ok();
        if dropped {
            self.exported.decrement(1.0);
        }
    }

    /// The level now.
    pub fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }

    /// The highest level so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn counts_are_kept_and_exported() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let frames = Tally::new("t_frames_total", &[("addr", "a".into())]);
            frames.add(2);
            frames.add(5);
            let open = Level::new("t_open", &[("addr", "a".into())]);
            open.up();
            open.up();
            open.down();
            open.down();
            open.down();
            assert_eq!((frames.get(), open.get(), open.peak()), (7, 0, 2));
        });
        let values: Vec<(String, DebugValue)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
            .collect();
        assert!(values.contains(&("t_frames_total".into(), DebugValue::Counter(7))));
        assert!(
            values
                .iter()
                .any(|(k, v)| k == "t_open" && *v == DebugValue::Gauge(0.0.into()))
        );
    }
}
