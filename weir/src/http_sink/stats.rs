//! [`HttpSinkStats`]: what an HTTP sink's requests got, counted per request.

use std::sync::Arc;

use weir_runtime::observe::Tally as Count;

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
///
/// The same counts are exported through the `metrics` facade as
/// `weir_http_sink_{requests,ok,retryable,timed_out,rejected}_total`, labelled
/// `url` (the target), registered when the sink is created.
#[derive(Debug, Clone, Default)]
pub struct HttpSinkStats(Arc<Counters>);

#[derive(Debug)]
pub(crate) struct Counters {
    sent: Count,
    ok: Count,
    retryable: Count,
    timed_out: Count,
    rejected: Count,
}

impl Default for Counters {
    fn default() -> Self {
        Counters::new("")
    }
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
    fn new(url: &str) -> Self {
        let l = [("url", url.to_owned())];
        Counters {
            sent: Count::new("weir_http_sink_requests_total", &l),
            ok: Count::new("weir_http_sink_ok_total", &l),
            retryable: Count::new("weir_http_sink_retryable_total", &l),
            timed_out: Count::new("weir_http_sink_timed_out_total", &l),
            rejected: Count::new("weir_http_sink_rejected_total", &l),
        }
    }

    pub(crate) fn count(&self, tally: Tally) {
        let counter = match tally {
            Tally::Sent => &self.sent,
            Tally::Ok => &self.ok,
            Tally::Retryable => &self.retryable,
            Tally::TimedOut => &self.timed_out,
            Tally::Rejected => &self.rejected,
        };
        let _ = counter.add(1);
    }
}

impl HttpSinkStats {
    /// The counters of a sink posting to `url`.
    pub(crate) fn new(url: &str) -> Self {
        HttpSinkStats(Arc::new(Counters::new(url)))
    }

    pub(crate) fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.0)
    }

    /// Requests sent, retries included.
    pub fn requests(&self) -> u64 {
        self.0.sent.get()
    }

    /// Requests answered `2xx`: their elements were delivered.
    pub fn ok(&self) -> u64 {
        self.0.ok.get()
    }

    /// Requests that failed in a way worth retrying: `5xx`, `429`, `425`, a
    /// refused or broken connection.
    pub fn retryable(&self) -> u64 {
        self.0.retryable.get()
    }

    /// Requests that got no answer within the timeout, or `408`.
    pub fn timed_out(&self) -> u64 {
        self.0.timed_out.get()
    }

    /// Requests the target refused for good (other `4xx`, `3xx`).
    pub fn rejected(&self) -> u64 {
        self.0.rejected.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    #[test]
    fn request_counts_are_exported_with_the_target_url() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let stats = metrics::with_local_recorder(&recorder, || {
            HttpSinkStats::new("http://127.0.0.1:9/hook")
        });
        let counters = stats.counters();
        for tally in [Tally::Sent, Tally::Sent, Tally::Retryable, Tally::Ok] {
            counters.count(tally);
        }
        assert_eq!((stats.requests(), stats.ok(), stats.retryable()), (2, 1, 1));
        let snapshot = snapshotter.snapshot().into_vec();
        let value = |name: &str| {
            snapshot.iter().find_map(|(key, _, _, value)| {
                let labelled = key
                    .key()
                    .labels()
                    .any(|l| l.key() == "url" && l.value() == "http://127.0.0.1:9/hook");
                match value {
                    DebugValue::Counter(n) if labelled && key.key().name() == name => Some(*n),
                    _ => None,
                }
            })
        };
        assert_eq!(value("weir_http_sink_requests_total"), Some(2));
        assert_eq!(value("weir_http_sink_ok_total"), Some(1));
        assert_eq!(value("weir_http_sink_retryable_total"), Some(1));
        assert_eq!(value("weir_http_sink_rejected_total"), Some(0));
    }
}
