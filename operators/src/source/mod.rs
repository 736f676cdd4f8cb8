//! Sources: where elements enter a pipeline.
//!
//! In a checkpointed pipeline, only [`ReplayableSource`]
//! ([`Pipeline::replayable`](crate::Pipeline::replayable)) and the file sources
//! ([`Pipeline::file_lines`](crate::Pipeline::file_lines)) record a position and
//! resume from it. [`IterSource`], [`BatchSource`], [`StreamSource`],
//! [`IngressSource`] and [`ReplaySource`] are allowed but cannot replay: restored
//! from a checkpoint they start again from their beginning (a new iterator,
//! stream or channel), and what they had emitted after the last checkpoint
//! before a crash is lost — at most once.

pub(crate) mod admission;
mod batches;
mod ingress;
mod iter;
mod replay;
mod replayable;
mod stream;

pub use batches::BatchSource;
pub use ingress::{Ingress, IngressClosed, IngressSink, IngressSource, SendError, TrySendError};
pub(crate) use ingress::{push, try_push};
pub use iter::IterSource;
pub use replay::ReplaySource;
pub use replayable::ReplayableSource;
pub use stream::StreamSource;

/// The synchronisation types `admission` is written against (loom's in its
/// model, `models/tests/ingress_admission.rs`).
mod sync {
    pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
    pub(crate) use std::thread::yield_now;
}
