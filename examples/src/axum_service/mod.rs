//! The pieces of the `axum_service` example, shared with its tests: a small
//! HTTP service built with [axum](https://docs.rs/axum) that embeds a weir
//! pipeline, both on one tokio runtime.
//!
//! * `POST /events` with `{"key": "..."}` sends the event into the pipeline's
//!   [`Ingress`](weir::prelude::Ingress) (`send().await` under a timeout):
//!   `202` once the pipeline took it, `503` with `Retry-After` when the
//!   pipeline had no room within the timeout (backpressure) or is shutting
//!   down, `4xx` for a bad body.
//! * The pipeline ([`pipeline`](mod@pipeline)) counts the events per key
//!   (`key_by(key).scan`) into shared [`Counts`].
//! * `GET /stats` answers the counts, what was admitted and the pipeline's
//!   live figures; `GET /healthz` its health verdict.
//! * [`serve`] runs it all until a shutdown signal, then stops accepting,
//!   drains the pipeline and returns the [`Summary`].
//!
//! # Threads
//!
//! The binary builds a multi-threaded tokio runtime (what `#[tokio::main]`
//! builds) and wraps it in an actix System
//! ([`System::with_tokio_rt`](actix_rt::System::with_tokio_rt)). weir's stages
//! run on the System's arbiter ([`Runtime::from_current`](weir::Runtime::from_current)),
//! the thread that drives the System; the HTTP server and its connections run
//! on the tokio workers. Backpressure reaches a handler as a future that is
//! not ready yet — never as a blocked thread — so a full pipeline refuses
//! `POST`s while `GET /healthz` and `GET /stats` go on answering at once
//! (tested by `tests/suite/axum_service.rs`).

mod http;
pub mod pipeline;
mod serve;

pub use http::{AdmissionCounts, MAX_BODY_BYTES, Settings};
pub use pipeline::{Built, Counts, Event, Hold, Limits, PIPELINE, build};
pub use serve::{Config, ServiceError, Summary, serve};
