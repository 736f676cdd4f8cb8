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
//!
//! Or, to serve the metrics from another server (the console's `/metrics`:
//! `weir::console`, feature `console`; or your own), [`install`] the recorder
//! without a listener and [`render`] the text when asked.

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The recorder [`install`] installed, for [`render`].
static INSTALLED: OnceLock<PrometheusHandle> = OnceLock::new();

/// The exporter's error, the source of [`ServeError::Install`].
pub use metrics_exporter_prometheus::BuildError;

/// Why the endpoint could not start; the cause is kept as the error's
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address cannot be bound (taken, not local, not permitted).
    #[error("cannot serve Prometheus metrics on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error of the bind.
        #[source]
        source: std::io::Error,
    },
    /// The exporter could not be installed: most often a global `metrics` recorder
    /// is already installed (by an earlier `serve` or by the application).
    #[error("cannot serve Prometheus metrics on {addr}: {source}")]
    Install {
        /// The address asked for.
        addr: SocketAddr,
        /// The exporter's error.
        #[source]
        source: BuildError,
    },
    /// [`install`] could not install the recorder: most often a global `metrics`
    /// recorder is already installed.
    #[error("cannot install the Prometheus recorder: {source}")]
    Recorder {
        /// The exporter's error.
        #[source]
        source: BuildError,
    },
}

/// Bucket bounds of the `_seconds` histograms: 10 µs to 1 min.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0,
];

/// Bucket bounds of `weir_stage_batch_size`: powers of two, 1 to 4096 elements.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Bucket bounds of the `_bytes` histograms: 1 KiB to 1 GiB, by fours.
pub const BYTES_BUCKETS: &[f64] = &[
    1024.0,
    4096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
];

/// The exporter, with buckets for weir's histograms: they render as Prometheus
/// histograms (`_bucket{le=..}`, `_sum`, `_count`), which aggregate across
/// processes, instead of summaries.
fn builder() -> PrometheusBuilder {
    let with = |b: PrometheusBuilder, m: Matcher, v: &[f64]| {
        // Cannot fail: the bucket lists are not empty.
        b.set_buckets_for_metric(m, v).expect("non-empty buckets")
    };
    let b = PrometheusBuilder::new();
    let b = with(b, Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS);
    let b = with(
        b,
        Matcher::Full("weir_stage_batch_size".into()),
        BATCH_BUCKETS,
    );
    with(b, Matcher::Suffix("_bytes".into()), BYTES_BUCKETS)
}

/// Installs the Prometheus exporter as the global `metrics` recorder, without an
/// HTTP listener: [`render`] gives its text. Call it once, before running
/// pipelines; a second call returns `Ok` and changes nothing.
///
/// # Errors
///
/// [`ServeError::Recorder`] if another global recorder is already installed.
///
/// # Examples
///
/// ```
/// weir::prometheus::install()?;
/// // … run pipelines; answer a scrape with:
/// let text = weir::prometheus::render().expect("installed");
/// # let _ = text;
/// # Ok::<(), weir::prometheus::ServeError>(())
/// ```
pub fn install() -> Result<(), ServeError> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let handle = builder()
        .install_recorder()
        .map_err(|source| ServeError::Recorder { source })?;
    let _ = INSTALLED.set(handle);
    Ok(())
}

/// The metrics in the Prometheus text format, once [`install`] has installed the
/// recorder (`None` before; [`serve`]'s recorder answers on its own listener).
pub fn render() -> Option<String> {
    INSTALLED.get().map(PrometheusHandle::render)
}

/// Serves the process's metrics in the Prometheus text format on `addr`, and
/// installs the exporter as the global `metrics` recorder. Call it once, before
/// running pipelines (handles created before a recorder exists are no-ops).
///
/// # Errors
///
/// [`ServeError::Bind`] if the address cannot be bound, [`ServeError::Install`] if
/// a global recorder is already installed.
pub fn serve(addr: SocketAddr) -> Result<(), ServeError> {
    // Binding first gives a clear error for a taken address; the exporter binds
    // again once this probe is dropped.
    drop(std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?);
    builder()
        .with_http_listener(addr)
        .install()
        .map_err(|source| ServeError::Install { addr, source })
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn histograms_render_with_buckets() {
        install().unwrap();
        metrics::histogram!("weir_stage_step_seconds", "pipeline" => "p", "stage" => "s")
            .record(0.002);
        metrics::histogram!("weir_stage_batch_size", "pipeline" => "p", "stage" => "s")
            .record(100.0);
        let text = render().unwrap();
        for want in [
            "# TYPE weir_stage_step_seconds histogram",
            r#"weir_stage_step_seconds_bucket{pipeline="p",stage="s",le="0.005"} 1"#,
            r#"weir_stage_step_seconds_bucket{pipeline="p",stage="s",le="0.001"} 0"#,
            r#"weir_stage_batch_size_bucket{pipeline="p",stage="s",le="128"} 1"#,
            r#"weir_stage_batch_size_count{pipeline="p",stage="s"} 1"#,
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
    }

    #[test]
    fn a_taken_address_is_a_bind_error_with_the_io_error_as_source() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr).unwrap_err();
        assert!(matches!(err, ServeError::Bind { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        let source = err.source().expect("the bind error");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }
}
