//! Transformations: one operator per file, each created by a [`FlowExt`](crate::FlowExt)
//! method of the same name.

mod chunks;
mod configured;
mod filter;
mod filter_map;
mod flat_map;
mod inspect;
mod map;
mod map_async;
mod take;
mod try_map;

pub use chunks::Chunks;
pub use configured::{ConfigExt, FilterWithConfig, MapWithConfig};
pub use filter::Filter;
pub use filter_map::FilterMap;
pub use flat_map::FlatMap;
pub use inspect::Inspect;
pub use map::Map;
pub use map_async::MapAsync;
pub use take::Take;
pub use try_map::TryMap;
