//! The file-system operations a checkpoint write is made of, behind a trait so that
//! tests can fail or "crash" at any one of them.
//!
//! The seam is `weir_supervisor::fs`, shared with the file dead-letter queue and
//! the file sink (weir-supervisor is the crate the others depend on); its
//! `FaultFs` (the `fault-injection` feature, on for this crate's tests) is the
//! fault-injecting side.

pub(super) use weir_supervisor::fs::{Fs, RealFs};
