//! Probes: a source the test scripts element by element, and a sink the test
//! drains element by element, with demand it grants itself (Akka TestKit style).
//!
//! - [`TestSource::probe`] gives a [`SourceProbe`] and a [`Flow`](weir::Flow):
//!   `send_next`, `send_complete`, `send_error` script what the source emits; the
//!   pipeline takes scripted elements only within its credit, so
//!   [`SourceProbe::pending`] shows backpressure at work.
//! - [`TestSink::probe`] (or [`TestSink::attach`] in a graph) gives a
//!   [`SinkProbe`]: the sink takes nothing until the test calls
//!   [`request(n)`](SinkProbe::request), then exactly `n` elements; the test
//!   asserts with `expect_next`, `expect_complete`, `expect_error`,
//!   `expect_no_message`, each bounded by a timeout.
//!
//! The probes' waits are `async`: run the test with
//! [`time::run`](crate::time::run) or [`time::run_paused`](crate::time::run_paused)
//! so that the stages run on the test's thread while it waits. Under the paused
//! clock a timeout costs no real time.

mod sink;
mod source;

pub use sink::{DEFAULT_TIMEOUT, SinkEvent, SinkProbe, TestSink};
pub use source::{SourceProbe, TestSource};
