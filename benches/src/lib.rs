//! Shared workloads, baselines and helpers for the benches and the `compare`
//! harness.
//!
//! * [`workload`]: the pipeline every variant runs and its reference checksum.
//! * [`baselines`]: the non-weir variants (fused, crossbeam, actix).
//! * [`weir_variant`]: the same workload on weir.
//! * [`join`]: the `join` workload (an event-time interval join), on weir and as a
//!   hand-written `HashMap` join.
//! * [`junctions`]: the `broadcast4` and `merge4` workloads, on weir and on threads.
//! * [`pool`]: the `pool` workload (a CPU-heavy map over replicas), on weir and on
//!   a thread pool.
//! * [`stats`]: median, percentiles and peak RSS.

pub mod baselines;
pub mod join;
pub mod junctions;
pub mod pool;
pub mod stats;
pub mod weir_variant;
pub mod workload;
