//! The console's answers: JSON and text bodies with their headers, and
//! `/metrics`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http_server::Body;

const JSON: &str = "application/json";

/// `value` as JSON (or an error object if it cannot be encoded).
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| error_json(&e.to_string()))
}

/// `{"error": message}`.
pub(super) fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// A whole body of `content_type`, never cached, never sniffed.
pub(super) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()).boxed_unsync());
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// A JSON body.
pub(super) fn json(status: StatusCode, body: String) -> Response<Body> {
    text(status, JSON, body)
}

/// `GET /metrics`: the Prometheus recorder's text, when there is one.
pub(super) fn metrics() -> Response<Body> {
    #[cfg(feature = "prometheus")]
    {
        match crate::prometheus::render() {
            Some(body) => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            ),
            None => json(
                StatusCode::NOT_FOUND,
                error_json(
                    "no Prometheus recorder: call weir::prometheus::install() before running \
                     pipelines",
                ),
            ),
        }
    }
    #[cfg(not(feature = "prometheus"))]
    {
        json(
            StatusCode::NOT_FOUND,
            error_json(
                "metrics are not built in: enable weir's `prometheus` feature and call \
                 weir::prometheus::install() before running pipelines",
            ),
        )
    }
}
