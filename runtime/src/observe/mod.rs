//! Observing running pipelines: the health verdict, circuit-breaker states, and the
//! metrics weir publishes through the [`metrics`](::metrics) facade (documented, name by
//! name, in `docs/observability.md`).
//!
//! weir only emits: install a recorder (for Prometheus, `metrics-exporter-prometheus`,
//! or the `weir` facade's `prometheus` feature) and every pipeline's counters and
//! gauges appear in it, labelled by `pipeline`, `stage` and `kind`.

mod connector;
mod health;
pub(crate) mod metrics;

pub use connector::{ConnectorLabels, Level, Tally};
pub use health::{BreakerState, Health, HealthPolicy};
pub(crate) use health::{RestartHistory, verdict};
pub use metrics::DEFAULT_METRICS_INTERVAL;
