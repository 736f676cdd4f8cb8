//! Assertions over what a pipeline did.
//!
//! - [`assert_conserved`]: no element lost or invented, naming the stage whose
//!   equation breaks; [`assert_bounded`]: no edge ever held more than its
//!   capacity; [`expect_failure`]: the pipeline failed at the stage the test
//!   expects.
//! - [`SequenceChecker`] and [`check_sequences`]: per-key sequence numbers arrive
//!   with no gap and no repeat (the idea of Flink's `SemanticsCheckMapper`), over
//!   collected output or inside the pipeline as a stage
//!   ([`check_sequence`](crate::TestkitExt::check_sequence)).
//! - [`DepthProbe`]: samples the stages' depth while the pipeline runs and asserts
//!   it never exceeded a bound.

mod conservation;
mod depth;
mod sequence;

pub use conservation::{assert_bounded, assert_conserved, expect_failure};
pub use depth::{DepthProbe, DepthReport};
pub use sequence::{CheckSequence, SequenceChecker, SequenceError, check_sequences};
