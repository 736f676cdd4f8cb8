//! Shared workloads, baselines and helpers for the benches and the `compare`
//! harness.
//!
//! * [`workload`]: the pipeline every variant runs and its reference checksum.
//! * [`baselines`]: the non-weir variants (fused, crossbeam, actix).
//! * [`weir_variant`]: the same workload on weir.
//! * [`join`]: the `join` workload (an event-time interval join), on weir and as a
//!   hand-written `HashMap` join.
//! * [`junctions`]: the `broadcast4` and `merge4` workloads, on weir and on threads.
//! * [`detach`]: the `detach3` workload (a broadcast with one stalled branch under
//!   `LagPolicy::Detach`), against the same graph with nothing stalled.
//! * [`pool`]: the `pool` workload (a CPU-heavy map over replicas), on weir and on
//!   a thread pool.
//! * [`console`]: the workload under a `PipelineManager`, alone and with a console
//!   serving it to an event-stream client (the console's cost).
//! * [`stats`]: median, percentiles and peak RSS.
//! * [`window`]: the `window_agg` workload (a keyed tumbling-window sum), on weir
//!   and as a hand-written `HashMap` loop.

pub mod baselines;
pub mod checkpoint;
pub mod console;
pub mod detach;
pub mod join;
pub mod junctions;
pub mod pool;
pub mod soak;
pub mod stats;
pub mod weir_variant;
pub mod window;
pub mod workload;
