//! The HTTP side: the axum [`Router`] and its handlers.
//!
//! Every handler is async and waits on nothing but the ingress (with a timeout)
//! and short, uncontended locks: a stalled pipeline makes `POST /events`
//! answer `503` after [`Settings::send_timeout`], and never holds up a tokio
//! worker or the other routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use weir::observe::Health;
use weir::prelude::*;

use super::pipeline::{Counts, Event};

/// The largest request body `POST /events` reads; a larger one is answered
/// `413` without being read further.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How the handlers admit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long `POST /events` waits for room in the ingress before it answers
    /// `503`.
    ///
    /// Choosing it: the latency a client accepts for one request when the
    /// pipeline is busy. Longer absorbs longer bursts without refusals but holds
    /// a connection (never a thread) for that long; 0 refuses as soon as the
    /// ingress is full.
    pub send_timeout: Duration,
    /// The `Retry-After` of a `503`, in whole seconds.
    pub retry_after_secs: u64,
    /// The longest key accepted, in bytes.
    pub max_key_bytes: usize,
}

/// What `POST /events` answered, counted.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    accepted: AtomicU64,
    refused_full: AtomicU64,
    refused_closing: AtomicU64,
    invalid: AtomicU64,
}

/// `Admission`'s counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AdmissionCounts {
    /// Answered `202`: the pipeline took the event (it is counted once, see
    /// [`Counts`]).
    pub accepted: u64,
    /// Answered `503`: the pipeline had no room within the send timeout
    /// (backpressure). The event was not taken.
    pub refused_full: u64,
    /// Answered `503`: the pipeline was shutting down. The event was not taken.
    pub refused_closing: u64,
    /// Answered `4xx`: not a JSON event, or a key that is empty or too long.
    pub invalid: u64,
}

impl Admission {
    /// The counts now.
    pub(crate) fn counts(&self) -> AdmissionCounts {
        AdmissionCounts {
            accepted: self.accepted.load(Ordering::Acquire),
            refused_full: self.refused_full.load(Ordering::Relaxed),
            refused_closing: self.refused_closing.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) ingress: Ingress<Event>,
    pub(crate) controller: PipelineController,
    pub(crate) counts: Arc<Counts>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) settings: Settings,
}

/// The service's routes: `POST /events`, `GET /stats`, `GET /healthz`.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/events", post(post_event))
        .route("/stats", get(stats))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A JSON `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, Json(body)).into_response()
}

/// `503` with `Retry-After`.
fn unavailable(retry_after_secs: u64, message: String) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// `POST /events` with `{"key": "..."}`: `202` once the pipeline took the
/// event; `503` + `Retry-After` when it had no room within the send timeout,
/// or is shutting down; `400`/`415`/`422` for a body that is not such an
/// event; `413` for one over [`MAX_BODY_BYTES`].
async fn post_event(
    State(state): State<Arc<AppState>>,
    body: Result<Json<Event>, JsonRejection>,
) -> Response {
    let admission = &state.admission;
    let event = match body {
        Ok(Json(event)) => event,
        Err(rejection) => {
            admission.invalid.fetch_add(1, Ordering::Relaxed);
            return error(rejection.status(), rejection.body_text());
        }
    };
    let max = state.settings.max_key_bytes;
    if event.key.is_empty() || event.key.len() > max {
        admission.invalid.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`key` must be 1 to {max} bytes long, not {} bytes",
                event.key.len()
            ),
        );
    }
    let retry_after = state.settings.retry_after_secs;
    // `send` is cancel-safe: when the timeout drops it, the event was not
    // taken, so a refused event is never counted.
    match tokio::time::timeout(state.settings.send_timeout, state.ingress.send(event)).await {
        Ok(Ok(())) => {
            admission.accepted.fetch_add(1, Ordering::Release);
            let body = serde_json::json!({ "accepted": true });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Ok(Err(_closed)) => {
            admission.refused_closing.fetch_add(1, Ordering::Relaxed);
            unavailable(retry_after, "the service is shutting down".into())
        }
        Err(_elapsed) => {
            admission.refused_full.fetch_add(1, Ordering::Relaxed);
            let waited = state.settings.send_timeout.as_millis();
            unavailable(
                retry_after,
                format!("the pipeline had no room for {waited} ms (backpressure): retry later"),
            )
        }
    }
}

/// `GET /stats`: what was admitted, what was counted (in all and per key), the
/// ingress's free places and the pipeline's live figures
/// ([`PipelineController::stats`]).
///
/// The figures are read one after the other, not at one instant: `counted`
/// can run a request or two ahead of `accepted` (a handler counts its `202`
/// just after the pipeline took the event). Once the requests have stopped and
/// the pipeline has caught up, `accepted == counted + over_key_limit`.
async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let counted = state.counts.total();
    let body = serde_json::json!({
        "admission": state.admission.counts(),
        "counted": counted,
        "over_key_limit": state.counts.over_key_limit(),
        "keys": state.counts.snapshot(),
        "ingress_free": state.ingress.available(),
        "pipeline": state.controller.stats(),
    });
    Json(body).into_response()
}

/// `GET /healthz`: the pipeline's health verdict; `200` unless it is failing
/// (`503`). A full pipeline is healthy: backpressure is not a fault.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let health = state.controller.health();
    let status = match health {
        Health::Failing(_) => StatusCode::SERVICE_UNAVAILABLE,
        Health::Healthy | Health::Degraded(_) => StatusCode::OK,
    };
    (status, Json(health)).into_response()
}
