//! weir's operator catalogue.
//!
//! Pipelines start at [`Pipeline`] (a source), go through [`FlowExt`] methods
//! (transformations), and end in a sink method that returns a
//! [`Runnable`](weir_runtime::Runnable). Every operator here is an ordinary
//! [`Operator`](weir_runtime::operator::Operator); your own plug in with
//! [`Flow::via`](weir_runtime::Flow::via).
//!
//! # Examples
//!
//! ```
//! use weir_operators::{FlowExt, Pipeline};
//! use weir_runtime::Runtime;
//!
//! let rt = Runtime::builder().arbiters(1).build()?;
//! let done = Pipeline::from_iter(1..=10_u64)
//!     .map(|x| x * x)
//!     .filter(|x| x % 2 == 1)
//!     .collect()
//!     .run(&rt)?
//!     .wait()?;
//! assert_eq!(done.output, vec![1, 9, 25, 49, 81]);
//! assert_eq!(done.report.filtered(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

mod attempts;
pub mod barrier;
mod checkpoint;
pub mod file;
mod flow_ext;
mod hash;
pub mod hub;
pub mod join;
pub mod keyed;
pub mod limit;
pub mod ops;
mod pipeline;
pub mod reconfig;
pub mod resource_pool;
pub mod sink;
pub mod source;
#[cfg(test)]
mod test_support;
pub mod window;

pub use flow_ext::FlowExt;
pub use pipeline::Pipeline;
