//! An HTTP client sink (feature `http-client`): each element, or each batch of
//! elements, becomes a request to a webhook or a bulk API, with the answer judged
//! by the stage's supervision.
//!
//! ```text
//!  pipeline ──▶ HttpSink ── POST url (JSON, or NDJSON batches) ──▶ target
//!                  ▲     ◀── 2xx delivered | 5xx 429 408 425, timeout, refused: retried
//!                  │     ◀── other 4xx, 3xx: dead-lettered with status and body excerpt
//!         at most max_in_flight requests outstanding (credit upstream stops)
//! ```
//!
//! # What happens to an element
//!
//! | Answer | Class | Default policy |
//! |---|---|---|
//! | `2xx` | — | delivered (completed) |
//! | `5xx`, a refused or reset connection | [`Transient`](weir_supervisor::ErrorClass::Transient) | retried with backoff |
//! | `429 Too Many Requests` | [`ResourceExhausted`](weir_supervisor::ErrorClass::ResourceExhausted) | retried, not before `Retry-After` |
//! | no answer within [`timeout`](HttpSink::timeout), `408` | [`Timeout`](weir_supervisor::ErrorClass::Timeout) | retried with backoff |
//! | `425 Too Early` | `Transient` | retried with backoff |
//! | any other `4xx`, `1xx`, `3xx` (redirects are not followed) | [`Permanent`](weir_supervisor::ErrorClass::Permanent) | dead-lettered, never retried |
//!
//! Each failure goes to the stage's supervision
//! ([`Flow::supervise`](weir_runtime::Flow::supervise)), which decides as for
//! any async stage: retry after the policy's backoff (or the server's
//! `Retry-After`, whichever is later, capped by
//! [`max_retry_after`](HttpSink::max_retry_after)), dead-letter, skip, or
//! escalate, and a circuit breaker that opens after repeated failures. A
//! permanent failure's message names the status and a bounded excerpt of the
//! response body (`HTTP 400 Bad Request: {"error":"…"}`), so the dead letter says
//! why. An **unsupervised** sink fails the pipeline on its first failed request.
//!
//! In an NDJSON batch every element is judged on its own with the batch's
//! answer (the counts, events and breaker see elements, as for any stage), and
//! the elements the policy retries are sent again as one batch.
//!
//! # Backpressure
//!
//! At most [`max_in_flight`](HttpSink::max_in_flight) requests are outstanding,
//! those waiting out a retry's backoff included. While that many are, the stage
//! takes no more input, so its input queue fills and credit stops upstream: a
//! slow target slows the source, and the sink holds at most `max_in_flight`
//! requests' elements.
//!
//! # Delivery
//!
//! At least once: a request the target processed but whose answer was lost (a
//! timeout, a reset) is sent again. With
//! [`idempotency_key`](HttpSink::idempotency_key) every attempt of an element
//! carries the same key, so a target that deduplicates sees it once.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use weir::http_sink::{HttpSink, HttpSinkExt};
//! use weir::prelude::*;
//!
//! #[derive(Clone, serde::Serialize)]
//! struct Order { id: u64, total: u64 }
//!
//! let rt = Runtime::builder().arbiters(1).build()?;
//! let dead_letters = MemoryDlq::new(1_000);
//! let policy = SupervisionPolicy::default()
//!     .max_attempts(5)
//!     .backoff(BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(5)));
//! let sink = HttpSink::post("http://127.0.0.1:8080/orders")
//!     .bearer_token("secret")
//!     .timeout(Duration::from_secs(2))
//!     .max_in_flight(16)
//!     .idempotency_key_with("Idempotency-Key", |o: &Order| format!("order-{}", o.id));
//! let done = Pipeline::from_iter((0..100).map(|id| Order { id, total: id * 10 }))
//!     .supervise(Supervision::new(policy).dead_letters(dead_letters.clone()))
//!     .to_http(sink)
//!     .run(&rt)?
//!     .wait()?;
//! done.report.check_conservation()?;
//! println!("{} requests, {} dead letters", done.output.requests(), dead_letters.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod request;
mod response;
mod stage;
mod stats;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use weir_runtime::{Flow, OutputReceiver, Runnable};

pub use hyper::Method;
pub use stats::HttpSinkStats;

use request::Keys;

/// How elements become request bodies.
///
/// # Examples
///
/// ```
/// use weir::http_sink::{Encoding, HttpSink};
///
/// let sink = HttpSink::<u64>::post("http://127.0.0.1:9200/_bulk")
///     .encoding(Encoding::Ndjson { max_batch: 500 });
/// # drop(sink);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// One element per request, its body the element as JSON
    /// (`Content-Type: application/json`). The default.
    Json,
    /// Up to `max_batch` elements per request, one JSON line each
    /// (`Content-Type: application/x-ndjson`). A batch takes what is queued
    /// when a request can start, so it grows under load and is one element
    /// when idle; no timer waits for a batch to fill.
    ///
    /// Choose `max_batch` from the target's limit on a request's size (a bulk
    /// API's documented maximum) divided by the size of an element; the sink
    /// holds up to `max_in_flight × max_batch` elements.
    Ndjson {
        /// The most elements in one request (at least 1).
        max_batch: usize,
    },
}

/// An HTTP client sink: build it with [`post`](Self::post), end a flow with it
/// with [`HttpSinkExt::to_http`]. See the [module docs](self) for what it does
/// with each answer.
///
/// Defaults: `POST`, JSON, one element per request, a 10 s timeout per
/// request, 8 requests in flight, no idempotency key, `Retry-After` honoured up
/// to 60 s. Plain `http://` only (no TLS yet).
///
/// # Examples
///
/// ```no_run
/// use weir::http_sink::{HttpSink, HttpSinkExt, Method};
/// use weir::prelude::*;
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let sink = HttpSink::post("http://127.0.0.1:8080/hook")
///     .method(Method::PUT)
///     .header("X-Source", "weir")
///     .ndjson(100);
/// let done = Pipeline::from_iter(0..1_000_u64)
///     .supervise(Supervision::new(SupervisionPolicy::default()).dead_letters(MemoryDlq::new(100)))
///     .to_http(sink)
///     .run(&rt)?
///     .wait()?;
/// assert_eq!(done.report.delivered() + done.report.dead_lettered(), 1_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct HttpSink<T> {
    settings: Settings<T>,
    stats: HttpSinkStats,
}

/// What the stage needs of the builder, shared by its requests.
pub(crate) struct Settings<T> {
    pub(crate) url: String,
    pub(crate) method: Method,
    /// The user's headers, the bearer token's `Authorization` among them.
    pub(crate) headers: HeaderMap,
    pub(crate) timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) encoding: Encoding,
    pub(crate) key: Option<(HeaderName, Keys<T>)>,
    pub(crate) max_retry_after: Duration,
    /// Settings that did not parse: reported when the pipeline is built.
    pub(crate) invalid: Vec<String>,
    /// What an `https://` target is verified against.
    #[cfg(feature = "https")]
    pub(crate) tls: crate::client_tls::TlsSettings,
}

impl<T> std::fmt::Debug for HttpSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.settings;
        f.debug_struct("HttpSink")
            .field("url", &s.url)
            .field("method", &s.method)
            .field("headers", &s.headers.keys().collect::<Vec<_>>())
            .field("timeout", &s.timeout)
            .field("max_in_flight", &s.max_in_flight)
            .field("encoding", &s.encoding)
            .field("idempotency_key", &s.key.as_ref().map(|(name, _)| name))
            .finish_non_exhaustive()
    }
}

impl<T: serde::Serialize + Send + 'static> HttpSink<T> {
    /// A sink posting each element as JSON to `url` (`http://host:port/path`;
    /// checked when the pipeline is built).
    pub fn post(url: impl Into<String>) -> Self {
        let url = url.into();
        HttpSink {
            stats: HttpSinkStats::new(&url),
            settings: Settings {
                url,
                method: Method::POST,
                headers: HeaderMap::new(),
                timeout: Duration::from_secs(10),
                max_in_flight: 8,
                encoding: Encoding::Json,
                key: None,
                max_retry_after: Duration::from_secs(60),
                invalid: Vec::new(),
                #[cfg(feature = "https")]
                tls: crate::client_tls::TlsSettings::default(),
            },
        }
    }

    /// The request method (default `POST`).
    pub fn method(mut self, method: Method) -> Self {
        self.settings.method = method;
        self
    }

    /// Adds a header to every request (a `Content-Type` given here replaces the
    /// encoding's). A name or value that is not valid HTTP is reported when the
    /// pipeline is built.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.settings.headers.append(name, value);
            }
            _ => self
                .settings
                .invalid
                .push(format!("invalid header {name:?}: {value:?}")),
        }
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request (the token is
    /// marked sensitive and never shown in `Debug` output).
    pub fn bearer_token(mut self, token: &str) -> Self {
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(mut value) => {
                value.set_sensitive(true);
                self.settings.headers.insert(header::AUTHORIZATION, value);
            }
            Err(_) => self
                .settings
                .invalid
                .push("the bearer token is not a valid header value".into()),
        }
        self
    }

    /// How long one request may take, from connecting to the end of the answer;
    /// then it fails with class `Timeout` (default 10 s, above zero). A
    /// supervision policy's `element_timeout`, if shorter, applies instead.
    ///
    /// Choose it a few times the target's p99 latency: too short turns slow
    /// answers into retries (and duplicates at the target).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// The most requests outstanding at once, at least 1 (default 8); a request
    /// waiting out a retry's backoff counts. The sink takes no more input while
    /// this many are.
    ///
    /// Choose it from the throughput you need times the target's latency (8
    /// requests of 50 ms carry 160 requests per second), and below what the
    /// target allows one client.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.settings.max_in_flight = requests;
        self
    }

    /// How elements become bodies (default [`Encoding::Json`]).
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.settings.encoding = encoding;
        self
    }

    /// NDJSON batches of up to `max_batch` elements:
    /// `encoding(Encoding::Ndjson { max_batch })`.
    pub fn ndjson(self, max_batch: usize) -> Self {
        self.encoding(Encoding::Ndjson { max_batch })
    }

    /// Sends an idempotency key in header `name` with every request: the key of
    /// an element is the same on each of its retries, and differs between
    /// elements. The keys are made from this sink's run (random) and the
    /// element's position in the stage's input, so they are unique to one run;
    /// for keys that a later run (a replay) repeats, use
    /// [`idempotency_key_with`](Self::idempotency_key_with).
    ///
    /// A batch's key is derived from its elements' keys (one element: its key;
    /// more: `batch-<n>-<hash of the keys>`).
    pub fn idempotency_key(mut self, name: &str) -> Self {
        let keys = Keys::sequence();
        self.set_key(name, keys);
        self
    }

    /// Like [`idempotency_key`](Self::idempotency_key), the key of each element
    /// given by `key` (an order number, an event id). Two elements with the same
    /// key are the same to a target that deduplicates.
    pub fn idempotency_key_with(
        mut self,
        name: &str,
        key: impl Fn(&T) -> String + Send + Sync + 'static,
    ) -> Self {
        self.set_key(name, Keys::With(Arc::new(key)));
        self
    }

    fn set_key(&mut self, name: &str, keys: Keys<T>) {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => self.settings.key = Some((name, keys)),
            Err(_) => self
                .settings
                .invalid
                .push(format!("invalid idempotency key header name {name:?}")),
        }
    }

    /// The longest `Retry-After` honoured (default 60 s): a later one is cut to
    /// this, so a target cannot park the sink for hours.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.settings.max_retry_after = max;
        self
    }

    /// Also trusts the CA certificates in the PEM file at `path` for an
    /// `https://` target (a private CA, or a self-signed server's certificate),
    /// besides the system's roots. Read when the pipeline is built: a file that
    /// is missing or holds no certificate is a `BuildError` naming it.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::http_sink::HttpSink;
    ///
    /// let sink = HttpSink::<u64>::post("https://hooks.internal:8443/events")
    ///     .ca_file("/etc/weir/internal-ca.pem")
    ///     .without_system_roots();
    /// ```
    #[cfg(feature = "https")]
    #[cfg_attr(docsrs, doc(cfg(feature = "https")))]
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.settings.tls.ca_files.push(path.into());
        self
    }

    /// Trusts only the [`ca_file`](Self::ca_file)s, not the system's root
    /// certificates.
    #[cfg(feature = "https")]
    #[cfg_attr(docsrs, doc(cfg(feature = "https")))]
    pub fn without_system_roots(mut self) -> Self {
        self.settings.tls.without_system_roots = true;
        self
    }

    /// Uses this rustls client configuration for `https://` (client
    /// certificates, pinned roots, other protocol versions) instead of the one
    /// built from the system's roots and the CA files. It must name no ALPN
    /// protocols (the sink offers `http/1.1` itself; one that names some is a
    /// `BuildError`).
    #[cfg(feature = "https")]
    #[cfg_attr(docsrs, doc(cfg(feature = "https")))]
    pub fn tls_config(mut self, config: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.settings.tls.config = Some(config);
        self
    }

    /// The sink's live counters (also the pipeline's output).
    pub fn stats(&self) -> HttpSinkStats {
        self.stats.clone()
    }
}

/// Ends a flow in an [`HttpSink`].
///
/// # Examples
///
/// ```no_run
/// use weir::http_sink::{HttpSink, HttpSinkExt};
/// use weir::prelude::*;
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let done = Pipeline::from_iter(["a", "b"].map(String::from))
///     .supervise(Supervision::new(SupervisionPolicy::default()).dead_letters(MemoryDlq::new(10)))
///     .to_http(HttpSink::post("http://127.0.0.1:8080/events"))
///     .run(&rt)?
///     .wait()?;
/// assert_eq!(done.output.ok(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait HttpSinkExt<T> {
    /// Sends every element to `sink`'s target: a stage named `http_sink#N`
    /// (rename it with [`Runnable::name`]); the output is the sink's
    /// [`HttpSinkStats`].
    ///
    /// Supervise it (with a dead-letter queue) to retry transient failures and
    /// keep what the target refused; unsupervised, the first failed request
    /// fails the pipeline.
    ///
    /// # Errors
    ///
    /// The pipeline's build ([`Runnable::run`]) fails with
    /// [`BuildError::InvalidArgument`](weir_runtime::BuildError::InvalidArgument)
    /// for a URL that is not `http://host[:port][/path]`, an invalid header, a
    /// zero timeout, `max_in_flight` or batch size.
    fn to_http(self, sink: HttpSink<T>) -> Runnable<HttpSinkStats>;
}

impl<T> HttpSinkExt<T> for Flow<T>
where
    T: serde::Serialize + Clone + Send + 'static,
{
    fn to_http(self, sink: HttpSink<T>) -> Runnable<HttpSinkStats> {
        let stats = sink.stats.clone();
        let stage = stage::HttpSinkStage::new(sink.settings, sink.stats);
        self.cloneable().to(stage, OutputReceiver::ready(stats))
    }
}
