//! Sinks: where elements leave a pipeline.

mod collect;
mod egress;
mod fold;
mod for_each;
mod for_each_async;

pub use collect::Collect;
pub use egress::{Egress, EgressSink};
pub use fold::Fold;
pub use for_each::ForEach;
pub use for_each_async::ForEachAsync;
