//! [`HttpSinkStats`]: what an HTTP sink's requests got, counted per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An HTTP sink's request counters, live while it runs (from
/// [`HttpSink::stats`](super::HttpSink::stats)) and the pipeline's output when
/// it ends. Elements are counted by the stage's report (delivered, dead-lettered,
/// retries); these count requests, every attempt of a batch being one.
///
/// # Examples
///
/// ```
/// use weir::http_sink::HttpSink;
///
/// let sink = HttpSink::<u64>::post("http://127.0.0.1:8080/hook");
/// let stats = sink.stats();
/// assert_eq!((stats.requests(), stats.ok(), stats.rejected()), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpSinkStats(Arc<Counters>);

#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    retryable: AtomicU64,
    timed_out: AtomicU64,
    rejected: AtomicU64,
}

/// What one request counts as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tally {
    Sent,
    Ok,
    Retryable,
    TimedOut,
    Rejected,
}

impl Counters {
    pub(crate) fn count(&self, tally: Tally) {
        let counter = match tally {
            Tally::Sent => &self.sent,
            Tally::Ok => &self.ok,
            Tally::Retryable => &self.retryable,
            Tally::TimedOut => &self.timed_out,
            Tally::Rejected => &self.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl HttpSinkStats {
    pub(crate) fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.0)
    }

    /// Requests sent, retries included.
    pub fn requests(&self) -> u64 {
        self.0.sent.load(Ordering::Relaxed)
    }

    /// Requests answered `2xx`: their elements were delivered.
    pub fn ok(&self) -> u64 {
        self.0.ok.load(Ordering::Relaxed)
    }

    /// Requests that failed in a way worth retrying: `5xx`, `429`, `425`, a
    /// refused or broken connection.
    pub fn retryable(&self) -> u64 {
        self.0.retryable.load(Ordering::Relaxed)
    }

    /// Requests that got no answer within the timeout, or `408`.
    pub fn timed_out(&self) -> u64 {
        self.0.timed_out.load(Ordering::Relaxed)
    }

    /// Requests the target refused for good (other `4xx`, `3xx`).
    pub fn rejected(&self) -> u64 {
        self.0.rejected.load(Ordering::Relaxed)
    }
}
