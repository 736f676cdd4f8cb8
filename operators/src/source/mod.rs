//! Sources: where elements enter a pipeline.

mod batches;
mod ingress;
mod iter;
mod replay;
mod stream;

pub use batches::BatchSource;
pub use ingress::{Ingress, IngressSource, SendError, TrySendError};
pub use iter::IterSource;
pub use replay::ReplaySource;
pub use stream::StreamSource;
