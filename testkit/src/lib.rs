//! weir-testkit: testing weir pipelines.
//!
//! - [`probe`]: a scripted source ([`TestSource`]) and a sink that takes only
//!   what the test requests ([`TestSink`]), with `expect_*` assertions bounded by
//!   timeouts (Akka TestKit style);
//! - [`fault`]: deterministic fault injection — a panic or an error on the n-th
//!   element or with probability `p` from a seed, a slow stage, a stalled stage, a
//!   source that closes with an error;
//! - [`time`]: running a test on a paused clock, moving it with
//!   [`advance`](time::advance), so windows, backoff and timeouts are tested
//!   without sleeping;
//! - [`check`]: conservation, bounded edges, per-key sequences (no gap, no
//!   repeat), and depth sampled during the run;
//! - [`logs`]: what was logged through `tracing`, to assert that a refusal was
//!   logged and that a secret never was.
//!
//! `docs/testing.md` walks through testing a pipeline with it.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir::prelude::*;
//! use weir_testkit::prelude::*;
//!
//! run_paused(|rt| async move {
//!     let (source, flow) = TestSource::probe::<u64>();
//!     let (runnable, mut sink) = flow.map(|x| x * 2).capacity(4).test_sink();
//!     let running = runnable.capacity(4).run(&rt).unwrap();
//!
//!     // Backpressure: with no demand, the pipeline takes only what its edges hold.
//!     source.send_all(0..100);
//!     settle().await;
//!     assert_eq!(source.taken(), 8);
//!     sink.expect_no_message(Duration::from_secs(1)).await;
//!
//!     sink.request(3);
//!     assert_eq!(sink.expect_next_n(3).await, [0, 2, 4]);
//!     source.send_complete();
//!     sink.request_all();
//!     assert_eq!(sink.expect_elements_until_complete().await.len(), 97);
//!     assert_conserved(&running.await.unwrap().report);
//! });
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

pub mod check;
mod ext;
pub mod fault;
pub mod logs;
pub mod probe;
pub mod time;

pub use ext::TestkitExt;
pub use probe::{SinkEvent, SinkProbe, SourceProbe, TestSink, TestSource};

/// Everything a test needs: `use weir_testkit::prelude::*;`.
pub mod prelude {
    pub use crate::TestkitExt;
    pub use crate::check::{
        DepthProbe, SequenceChecker, assert_bounded, assert_conserved, check_sequences,
        expect_failure,
    };
    pub use crate::fault::{Fault, FaultKind, Faulty, Slowed, StallHandle, failing_source};
    pub use crate::probe::{SinkEvent, SinkProbe, SourceProbe, TestSink, TestSource};
    pub use crate::time::{advance, run, run_paused, settle};
}

/// The testing guide's Rust examples (docs/testing.md), compiled and run as
/// doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/testing.md")]
pub struct TestingDoctests;
