//! Failure handling for weir stages.
//!
//! This crate holds the types that describe *why* a stage failed. weir's runtime
//! catches every panic and every error a user operator returns, turns it into a
//! [`Failure`] and reports it with the name of the stage it happened in.
//!
//! On them build the [`policy`] (what a failure of each class does: retry the
//! element with backoff, restart the stage, dead-letter or skip the element, or
//! escalate and fail the pipeline; restart intensity and circuit breakers), the
//! [`dead_letter`] queues (in memory and durable files) and the
//! [`SupervisionEvent`] stream the runtime publishes (see the supervision guide). A
//! failure that its policy escalates fails the pipeline with a report that names the
//! stage.
//!
//! # Examples
//!
//! ```
//! use weir_supervisor::{ErrorClass, Failure};
//!
//! let failure = Failure::error(ErrorClass::Transient, "connection reset");
//! assert_eq!(failure.class(), ErrorClass::Transient);
//! assert_eq!(failure.to_string(), "transient error: connection reset");
//!
//! let panic = Failure::from_panic(Box::new("index out of bounds"));
//! assert_eq!(panic.class(), ErrorClass::Panic);
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

pub mod dead_letter;
mod event;
mod failure;
#[doc(hidden)]
pub mod fs;
pub mod policy;

pub use event::{StopReason, SupervisionEvent};
pub use failure::{ErrorClass, Failure};
