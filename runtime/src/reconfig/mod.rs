//! Hot reconfiguration: typed configuration applied to running stages.
//!
//! An operator that declares a config type implements [`Reconfigurable`]. Adding it
//! with [`Flow::via_reconfigurable`](crate::Flow::via_reconfigurable) binds a
//! [`ConfigHandle`] to its stage; [`ConfigHandle::reconfigure`] sends the config to
//! the stage actor as a control message and resolves once the stage applied (or
//! rejected) it.
//!
//! Guarantees (see `docs/semantics.md`, "Reconfiguration"):
//!
//! - a config is applied **between two steps** of the operator, never during one:
//!   every element is processed entirely under one config, and each element taken
//!   after the acknowledgement is processed under the new one;
//! - nothing is lost, duplicated or reordered: the queues, outbox and credit of the
//!   stage are not touched;
//! - the acknowledgement ([`Applied`]) carries the stage's config *generation*
//!   (1 for the first applied config, +1 for each), also shown in
//!   [`StageStats`](crate::StageStats) and [`StageReport`](crate::StageReport);
//! - a config the operator rejects leaves the previous one in force and returns
//!   [`ReconfigError::Rejected`] with the operator's reason;
//! - a stage restarted by its supervision re-applies the last applied config to the
//!   fresh operator its factory built.
//!
//! # Examples
//!
//! ```
//! use std::task::Context;
//! use weir_runtime::operator::{Io, Operator, Step};
//! use weir_runtime::reconfig::{ConfigHandle, Reconfigurable};
//!
//! /// Keeps elements at or above a threshold that can change at run time.
//! struct AtLeast(u64);
//!
//! impl Operator for AtLeast {
//!     type In = u64;
//!     type Out = u64;
//!     fn kind(&self) -> &'static str {
//!         "at_least"
//!     }
//!     fn may_filter(&self) -> bool {
//!         true
//!     }
//!     fn step(&mut self, io: &mut Io<'_, u64, u64>, _cx: &mut Context<'_>) -> Step {
//!         let min = self.0;
//!         io.filter_batch(|x| *x >= min);
//!         io.finish_when_drained()
//!     }
//! }
//!
//! impl Reconfigurable for AtLeast {
//!     type Config = u64;
//!     fn reconfigure(&mut self, min: &u64) -> Result<(), String> {
//!         if *min > 1_000 {
//!             return Err(format!("threshold {min} is above 1000"));
//!         }
//!         self.0 = *min;
//!         Ok(())
//!     }
//! }
//!
//! let handle = ConfigHandle::<u64>::new();
//! // `Flow::via_reconfigurable(AtLeast(0), &handle)` binds it when the pipeline runs.
//! assert!(!handle.is_bound());
//! ```

mod handle;

pub use handle::{Applied, ConfigHandle, ReconfigError};
pub(crate) use handle::{Reconfig, Reply};

use crate::operator::Operator;

/// An operator whose parameters can change while its stage runs.
///
/// The stage calls [`reconfigure`](Self::reconfigure) between two steps, on its own
/// arbiter thread, never during a step. Returning an error rejects the config: the
/// operator must then keep the config it had (validate before changing anything).
pub trait Reconfigurable: Operator {
    /// The configuration the operator accepts. `Debug` is what stats and reports
    /// show of the applied config.
    type Config: Clone + Send + std::fmt::Debug + 'static;

    /// Applies `config`, or rejects it with the reason (the previous config stays in
    /// force).
    ///
    /// # Errors
    ///
    /// A message saying which parameter is invalid and why.
    fn reconfigure(&mut self, config: &Self::Config) -> Result<(), String>;
}
