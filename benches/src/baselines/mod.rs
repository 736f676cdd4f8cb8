//! Baseline implementations of the [`crate::workload`] pipeline.
//!
//! Every variant exposes `run(n) -> Result<u64, String>`, which pushes the
//! source values `0..n` through the pipeline and returns the sink's checksum.

pub mod actix_batched;
pub mod actix_per_element;
pub mod bare_fault;
pub mod crossbeam_batched;
pub mod fused;

/// Signature shared by every variant's `run` function.
pub type RunFn = fn(u64) -> Result<u64, String>;
