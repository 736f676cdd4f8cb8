//! Transformations: one operator per file, each created by a [`FlowExt`](crate::FlowExt)
//! method of the same name. Flow control (`buffer`, `conflate`, `batch`) is
//! described in `docs/operators.md`, "Flow control".

mod batch;
mod buffer;
mod chunks;
mod configured;
mod conflate;
mod filter;
mod filter_map;
mod flat_map;
mod flow_control;
mod inspect;
mod map;
mod map_async;
mod slack;
mod take;
mod try_map;

pub use batch::Batch;
pub use buffer::Buffer;
pub use chunks::Chunks;
pub use configured::{ConfigExt, FilterWithConfig, MapWithConfig};
pub use conflate::Conflate;
pub use filter::Filter;
pub use filter_map::FilterMap;
pub use flat_map::FlatMap;
pub use flow_control::FlowControlExt;
pub use inspect::Inspect;
pub use map::Map;
pub(crate) use map::MapCloning;
pub use map_async::MapAsync;
pub use take::Take;
pub use try_map::TryMap;
