//! Sources: where elements enter a pipeline.

mod ingress;
mod iter;
mod stream;

pub use ingress::{Ingress, IngressSource, SendError, TrySendError};
pub use iter::IterSource;
pub use stream::StreamSource;
