//! The sink's operator: takes batches while fewer than `max_in_flight` requests
//! are outstanding, sends them, and hands failed ones to the stage's
//! supervision, element by element.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::Full;
use hyper::Uri;
use hyper::header;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use weir_runtime::operator::{Counting, ElementSupervision, Io, Operator, Step, Verdict};
use weir_supervisor::{ErrorClass, Failure};

use super::request::{Batch, Builder, content_type};
use super::response::{HttpClient, Rejection, exchange};
use super::stats::Counters;
use super::{Encoding, HttpSinkStats, Settings};

/// What a request's future resolves to.
enum Event {
    /// The answer: delivered, or why not.
    Answered(Result<(), Rejection>),
    /// A retry's backoff elapsed: send the batch again.
    Due,
}

type Running = Pin<Box<dyn Future<Output = (u64, Event)> + Send>>;

/// The `http_sink` operator.
pub(crate) struct HttpSinkStage<T> {
    settings: Arc<Settings<T>>,
    /// The URL, parsed when the pipeline is built.
    uri: Result<Uri, String>,
    /// Made on the first step, on the stage's own thread and runtime.
    client: Option<HttpClient>,
    /// The TLS client configuration of an `https://` target, built with the
    /// pipeline (`None` for `http://`).
    #[cfg(feature = "https")]
    tls: Result<Option<Arc<tokio_rustls::rustls::ClientConfig>>, String>,
    /// The outstanding requests (sent, or waiting to be sent again) by id.
    batches: HashMap<u64, Batch<T>>,
    running: FuturesUnordered<Running>,
    next_id: u64,
    /// The supervision policy's `element_timeout`, if the stage has one.
    element_timeout: Option<Duration>,
    /// A failure escalated: take nothing more (the stage is failing).
    escalated: bool,
    counters: Arc<Counters>,
}

impl<T> std::fmt::Debug for HttpSinkStage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSinkStage")
            .field("url", &self.settings.url)
            .field("outstanding", &self.batches.len())
            .field("held", &self.held_elements())
            .finish_non_exhaustive()
    }
}

impl<T> HttpSinkStage<T> {
    pub(crate) fn new(settings: Settings<T>, stats: HttpSinkStats) -> Self {
        let uri = parse_url(&settings.url);
        #[cfg(feature = "https")]
        let tls = match &uri {
            Ok(uri) if uri.scheme_str() == Some("https") => {
                settings.tls.client_config("http sink").map(Some)
            }
            _ => Ok(None),
        };
        HttpSinkStage {
            settings: Arc::new(settings),
            uri,
            client: None,
            #[cfg(feature = "https")]
            tls,
            batches: HashMap::new(),
            running: FuturesUnordered::new(),
            next_id: 0,
            element_timeout: None,
            escalated: false,
            counters: stats.counters(),
        }
    }

    fn held_elements(&self) -> usize {
        self.batches.values().map(|b| b.elements.len()).sum()
    }

    fn max_batch(&self) -> usize {
        match self.settings.encoding {
            Encoding::Json => 1,
            Encoding::Ndjson { max_batch } => max_batch,
        }
    }
}

/// `url` as an `http://` URI with a host.
pub(crate) fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("http sink: invalid URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        #[cfg(feature = "https")]
        Some("https") => {}
        #[cfg(not(feature = "https"))]
        Some("https") => {
            return Err(format!(
                "http sink: {url:?}: https needs weir's `https` feature (plain http only without it)"
            ));
        }
        _ => {
            return Err(format!(
                "http sink: {url:?} is not an http:// or https:// URL"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("http sink: {url:?} has no host"));
    }
    Ok(uri)
}

impl<T: serde::Serialize + Send + 'static> HttpSinkStage<T> {
    fn client(&mut self) -> HttpClient {
        let max_in_flight = self.settings.max_in_flight;
        let timeout = self.settings.timeout;
        self.client
            .get_or_insert_with(|| {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(timeout));
                #[cfg(feature = "https")]
                let connector = {
                    connector.enforce_http(false);
                    let builder = hyper_rustls::HttpsConnectorBuilder::new();
                    let builder = match &self.tls {
                        Ok(Some(config)) => builder.with_tls_config((**config).clone()),
                        // `validate` refused a configuration that did not build;
                        // an `http://` target never uses this one.
                        _ => builder.with_tls_config(
                            tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                                tokio_rustls::rustls::crypto::ring::default_provider(),
                            ))
                            .with_safe_default_protocol_versions()
                            .expect("ring supports the default protocol versions")
                            .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                        ),
                    };
                    builder
                        .https_or_http()
                        .enable_http1()
                        .wrap_connector(connector)
                };
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(max_in_flight)
                    .build(connector)
            })
            .clone()
    }

    /// Takes the next batch from the queue: as many elements as are queued, up
    /// to the batch size. One that cannot be sent is judged alone. Returns false
    /// if nothing was taken.
    fn take(&mut self, io: &mut Io<'_, T, Infallible>) -> bool {
        let settings = Arc::clone(&self.settings);
        let keys = settings.key.as_ref().map(|(_, keys)| keys);
        let mut builder = Builder::new(settings.encoding, keys);
        let mut took = false;
        while builder.len() < self.max_batch() && !self.escalated {
            let index = io.next_index();
            let Some(element) = io.pop() else { break };
            took = true;
            if let Err((element, why)) = builder.push(element, index) {
                self.unsendable(element, index, why, io);
            }
        }
        if builder.len() > 0 {
            let id = self.next_id;
            self.next_id += 1;
            self.batches.insert(id, builder.finish());
            self.send(id);
        }
        took
    }

    /// An element that cannot be sent fails (class `Permanent`) until the
    /// policy gives up on it: trying again cannot help, so no backoff is waited.
    fn unsendable(&mut self, element: T, index: u64, why: String, io: &mut Io<'_, T, Infallible>) {
        let mut element = element;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = Failure::error(ErrorClass::Permanent, why.clone());
            match io.element_failed(element, index, attempt, failure) {
                Verdict::Retry { element: again, .. } => element = again,
                Verdict::Settled => return,
                Verdict::Escalated => {
                    self.escalated = true;
                    return;
                }
            }
        }
    }

    /// Sends batch `id` (again).
    fn send(&mut self, id: u64) {
        let Some(batch) = self.batches.get(&id) else {
            return;
        };
        let Ok(uri) = &self.uri else {
            return;
        };
        let settings = &self.settings;
        let mut request = hyper::Request::new(Full::new(batch.body.clone()));
        *request.method_mut() = settings.method.clone();
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.clone_from(&settings.headers);
        if !headers.contains_key(header::CONTENT_TYPE) {
            // The user's own content type, if set, wins.
            headers.insert(header::CONTENT_TYPE, content_type(settings.encoding));
        }
        if let (Some((name, _)), Some(key)) = (&settings.key, &batch.key) {
            headers.insert(name, key.clone());
        }
        let timeout = self
            .element_timeout
            .map_or(settings.timeout, |t| t.min(settings.timeout));
        let client = self.client();
        let counters = Arc::clone(&self.counters);
        self.running.push(Box::pin(async move {
            let answer = exchange(client, request, timeout, &counters).await;
            (id, Event::Answered(answer))
        }));
    }

    /// Batch `id` failed: each element goes to the stage's policy; those it
    /// retries are sent again, as one batch, after the longest backoff asked
    /// (and not before the server's `Retry-After`).
    fn failed(&mut self, id: u64, rejection: &Rejection, io: &mut Io<'_, T, Infallible>) {
        let Some(mut batch) = self.batches.remove(&id) else {
            return;
        };
        let attempt = batch.attempt + 1;
        let taken = batch.elements.len();
        let mut delay = Duration::ZERO;
        let mut kept = Vec::with_capacity(taken);
        for (element, index) in batch.elements.drain(..) {
            match io.element_failed(element, index, attempt, rejection.failure()) {
                Verdict::Retry { element, delay: d } => {
                    delay = delay.max(d);
                    kept.push((element, index));
                }
                Verdict::Settled => {}
                Verdict::Escalated => self.escalated = true,
            }
        }
        if kept.is_empty() {
            return;
        }
        if let Some(after) = rejection.retry_after {
            delay = delay.max(after.min(self.settings.max_retry_after));
        }
        batch.elements = kept;
        batch.attempt = attempt;
        if batch.elements.len() != taken {
            let keys = self.settings.key.as_ref().map(|(_, keys)| keys);
            batch = batch.rebuild(self.settings.encoding, keys);
        }
        self.batches.insert(id, batch);
        self.running.push(Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            (id, Event::Due)
        }));
    }
}

impl<T: serde::Serialize + Send + 'static> Operator for HttpSinkStage<T> {
    type In = T;
    type Out = Infallible;

    fn kind(&self) -> &'static str {
        "http_sink"
    }

    fn validate(&self) -> Result<(), String> {
        let s = &self.settings;
        if let Err(why) = &self.uri {
            return Err(why.clone());
        }
        #[cfg(feature = "https")]
        if let Err(why) = &self.tls {
            return Err(why.clone());
        }
        if let Some(why) = s.invalid.first() {
            return Err(format!("http sink: {why}"));
        }
        if s.timeout.is_zero() {
            return Err("http sink: the timeout must be above zero".into());
        }
        if s.max_in_flight == 0 {
            return Err("http sink: max_in_flight must be at least 1, got 0".into());
        }
        if self.max_batch() == 0 {
            return Err("http sink: an NDJSON max_batch must be at least 1, got 0".into());
        }
        Ok(())
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        self.held_elements()
    }

    fn supervise_elements(&mut self, setup: ElementSupervision<T>) -> bool {
        // The sink keeps each element until its request is done, so it needs
        // no copies; the policy's element timeout bounds each request.
        self.element_timeout = setup.timeout();
        true
    }

    fn step(&mut self, io: &mut Io<'_, T, Infallible>, cx: &mut Context<'_>) -> Step {
        loop {
            let mut progress = false;
            while self.batches.len() < self.settings.max_in_flight
                && !self.escalated
                && self.take(io)
            {
                progress = true;
            }
            while let Poll::Ready(Some((id, event))) = self.running.poll_next_unpin(cx) {
                progress = true;
                match event {
                    Event::Due => self.send(id),
                    Event::Answered(Ok(())) => {
                        if let Some(batch) = self.batches.remove(&id) {
                            io.complete(batch.elements.len());
                        }
                    }
                    Event::Answered(Err(rejection)) => self.failed(id, &rejection, io),
                }
            }
            if !progress {
                break;
            }
        }
        if self.batches.is_empty() {
            io.finish_when_drained()
        } else {
            Step::Continue
        }
    }
}
