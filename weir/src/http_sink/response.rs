//! One exchange with the target, and what its answer means: delivered, or a
//! [`Rejection`] classified for the stage's supervision.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use weir_supervisor::{ErrorClass, Failure};

use super::stats::{Counters, Tally};

/// The connection pool every request of one sink goes through.
#[cfg(not(feature = "https"))]
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;
/// The connection pool every request of one sink goes through (`http://` and
/// `https://`).
#[cfg(feature = "https")]
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The most bytes of an error answer kept for the failure's message.
pub(crate) const EXCERPT_BYTES: usize = 256;

/// The most bytes of a successful answer read (so that its connection can be
/// used again); a longer answer's connection is closed instead.
const DRAIN_BYTES: usize = 64 * 1024;

/// Why a request did not deliver its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) class: ErrorClass,
    pub(crate) message: String,
    /// The server's `Retry-After`, if it sent one.
    pub(crate) retry_after: Option<Duration>,
}

impl Rejection {
    /// The failure reported for each element of the request.
    pub(crate) fn failure(&self) -> Failure {
        Failure::error(self.class, self.message.clone())
    }

    fn tally(&self) -> Tally {
        match self.class {
            ErrorClass::Permanent => Tally::Rejected,
            ErrorClass::Timeout => Tally::TimedOut,
            _ => Tally::Retryable,
        }
    }
}

/// Sends `request`, within `timeout` from connecting to the end of the answer.
pub(crate) async fn exchange(
    client: HttpClient,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
    counters: &Counters,
) -> Result<(), Rejection> {
    let target = request.uri().to_string();
    counters.count(Tally::Sent);
    let result = match tokio::time::timeout(timeout, answer(&client, request)).await {
        Ok(result) => result,
        Err(_) => Err(Rejection {
            class: ErrorClass::Timeout,
            message: format!("{target}: no answer within {timeout:?}"),
            retry_after: None,
        }),
    };
    match &result {
        Ok(()) => counters.count(Tally::Ok),
        Err(rejection) => {
            counters.count(rejection.tally());
            tracing::debug!(target = %target, error = %rejection.message, "http sink: request failed");
        }
    }
    result
}

async fn answer(
    client: &HttpClient,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(), Rejection> {
    let target = request.uri().to_string();
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(error) => {
            let what = if error.is_connect() {
                "connect"
            } else {
                "send"
            };
            return Err(Rejection {
                class: ErrorClass::Transient,
                message: format!("{target}: {what} failed: {}", chain(&error)),
                retry_after: None,
            });
        }
    };
    let status = response.status();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let mut body = response.into_body();
    if status.is_success() {
        // Read (a bounded amount), so that the connection goes back to the pool.
        let _ = read_up_to(&mut body, DRAIN_BYTES).await;
        return Ok(());
    }
    let (excerpt, _) = read_up_to(&mut body, EXCERPT_BYTES).await;
    Err(classify(status, retry_after, &excerpt))
}

/// Reads `body` until its end or `max` bytes (at most `max` kept); returns what
/// was kept and whether there was more.
async fn read_up_to(body: &mut Incoming, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            let room = max - kept.len();
            if data.len() > room {
                kept.extend_from_slice(&data[..room]);
                return (kept, true);
            }
            kept.extend_from_slice(&data);
        }
    }
    (kept, false)
}

/// What an answer other than `2xx` means, its message naming the status and
/// the start of the body.
pub(crate) fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Rejection {
    let class = match status.as_u16() {
        429 => ErrorClass::ResourceExhausted,
        408 => ErrorClass::Timeout,
        425 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    };
    let mut message = format!("HTTP {status}");
    let excerpt = excerpt(body);
    if !excerpt.is_empty() {
        message.push_str(": ");
        message.push_str(&excerpt);
    }
    Rejection {
        class,
        message,
        retry_after,
    }
}

/// The start of a body as one line of text: at most [`EXCERPT_BYTES`] bytes,
/// invalid UTF-8 replaced, control characters as spaces, `…` when cut.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let cut = body.len() > EXCERPT_BYTES;
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // A multi-byte character split at the cut shows as a replacement character.
    if cut {
        line = line.trim_end_matches('\u{fffd}').to_owned();
    }
    let mut line = line.trim().to_owned();
    if cut {
        line.push('…');
    }
    line
}

/// The delay a `Retry-After` header asks for: seconds, or an HTTP date
/// (measured from `now`; a date past is no delay).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An error and its sources, joined with `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
