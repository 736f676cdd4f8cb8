//! Fault injection, deterministic from a seed.
//!
//! A [`Fault`] decides, element by element, whether to fail: on the n-th element,
//! or with probability `p` drawn from a seeded generator (the same seed fails the
//! same elements on every run). It fails by panicking or by returning an error of a
//! chosen [`ErrorClass`](weir::ErrorClass). Put it in a pipeline as its own stage
//! ([`inject`](crate::TestkitExt::inject)) or around a user's function
//! ([`Fault::wrap`], [`Fault::wrap_try`]) or around a user's operator
//! ([`Faulty`]).
//!
//! The other faults slow or stop the flow instead of failing it:
//!
//! - [`delay_each`](crate::TestkitExt::delay_each): a stage that passes one
//!   element per period (a slow stage);
//! - [`Slowed`]: wraps a user's [`Operator`](weir::operator::Operator) so that it
//!   rests a while after each step, in proportion to what the step took;
//! - [`stall_after`](crate::TestkitExt::stall_after): passes `n` elements, then
//!   takes nothing until its [`StallHandle`] is released (a stalled sink, when put
//!   just before the sink);
//! - [`failing_source`]: emits the given elements and then fails the pipeline.
//!
//! The operators follow tokio's clock, so under
//! [`run_paused`](crate::time::run_paused) their delays take no real time.

mod delay;
mod faulty;
mod plan;
mod rng;
mod slowed;
mod source;
mod stage;
mod stall;

pub use delay::DelayEach;
pub use faulty::Faulty;
pub use plan::{Fault, FaultKind};
pub use rng::SplitMix64;
pub use slowed::Slowed;
pub use source::failing_source;
pub use stage::Inject;
pub use stall::{Stall, StallHandle};
