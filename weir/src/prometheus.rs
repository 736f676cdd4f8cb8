//! A Prometheus endpoint for every pipeline's metrics (feature `prometheus`).
//!
//! [`serve`] installs `metrics-exporter-prometheus` as the process's `metrics`
//! recorder, with its HTTP listener on the given address: `GET /metrics` (any
//! path) answers the Prometheus text format with every weir metric (see
//! `docs/observability.md`) and whatever else the application records through the
//! `metrics` facade.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! weir::prometheus::serve("127.0.0.1:9898".parse()?)?;
//! // … run pipelines; scrape http://127.0.0.1:9898/metrics
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve Prometheus metrics on {addr}: {reason}")]
pub struct ServeError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What went wrong (the address is taken, a recorder is already installed, …).
    pub reason: String,
}

/// Serves the process's metrics in the Prometheus text format on `addr`, and
/// installs the exporter as the global `metrics` recorder. Call it once, before
/// running pipelines (handles created before a recorder exists are no-ops).
///
/// # Errors
///
/// The address cannot be bound, or a global recorder is already installed.
pub fn serve(addr: SocketAddr) -> Result<(), ServeError> {
    // Binding first gives a clear error for a taken address; the exporter binds
    // again once this probe is dropped.
    drop(std::net::TcpListener::bind(addr).map_err(|e| ServeError {
        addr,
        reason: e.to_string(),
    })?);
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| ServeError {
            addr,
            reason: e.to_string(),
        })
}
