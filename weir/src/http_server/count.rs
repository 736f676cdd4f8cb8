//! [`OpenCount`] and [`Counted`]: what a server has open now (connections,
//! streaming clients), for its `stats()` and its gauges.

use std::sync::atomic::{AtomicUsize, Ordering};

/// What is open now (connections, streaming clients): kept for the server's
/// `stats()` and, for a count made with [`exported`](Self::exported), also
/// published as a `metrics` gauge (`weir_runtime::observe::Level`).
#[derive(Debug, Default)]
pub(crate) struct OpenCount {
    now: AtomicUsize,
    gauge: Option<weir_runtime::observe::Level>,
}

impl OpenCount {
    /// A count at zero, exported as the gauge `name` with `labels`.
    #[cfg(any(feature = "sse", feature = "http", feature = "console"))]
    pub(crate) fn exported(
        name: &'static str,
        labels: &weir_runtime::observe::ConnectorLabels,
    ) -> Self {
        OpenCount {
            now: AtomicUsize::new(0),
            gauge: Some(weir_runtime::observe::Level::new(name, labels)),
        }
    }

    /// One more; returns how many there were before.
    pub(crate) fn up(&self) -> usize {
        let before = self.now.fetch_add(1, Ordering::AcqRel);
        if let Some(gauge) = &self.gauge {
            gauge.up();
        }
        before
    }

    /// One fewer.
    pub(crate) fn down(&self) {
        self.now.fetch_sub(1, Ordering::AcqRel);
        if let Some(gauge) = &self.gauge {
            gauge.down();
        }
    }

    /// How many are open now.
    pub(crate) fn get(&self) -> usize {
        self.now.load(Ordering::Acquire)
    }
}

/// One more in a count (connections, clients) for as long as it lives.
pub(crate) struct Counted<C: 'static>(std::sync::Arc<C>, fn(&C) -> &OpenCount);

impl<C: 'static> Counted<C> {
    /// Counts one more in `field` of `counters`; returns how many there were before.
    pub(crate) fn enter(
        counters: &std::sync::Arc<C>,
        field: fn(&C) -> &OpenCount,
    ) -> (usize, Self) {
        let before = field(counters).up();
        (before, Counted(std::sync::Arc::clone(counters), field))
    }
}

impl<C: 'static> Drop for Counted<C> {
    fn drop(&mut self) {
        (self.1)(&self.0).down();
    }
}
