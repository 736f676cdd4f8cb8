//! The pieces of the `etl` example, shared with its tests.
//!
//! * [`record`](mod@record): rows, parsing, validation and enrichment.
//! * [`generate`](mod@generate): deterministic input files and stream, and the
//!   [`Reference`] counts.
//! * [`config`](mod@config): the reloadable [`EtlConfig`], the stages'
//!   [`Handles`] and the [`Reloader`].
//! * [`sinks`](mod@sinks): the SQLite table and the dead-letter file.
//! * [`pipeline`](mod@pipeline): the weir graph ([`build`]).
//! * [`summary`](mod@summary): counts per source and per sink ([`Summary`]).

pub mod config;
pub mod generate;
pub mod pipeline;
pub mod record;
pub mod sinks;
pub mod summary;

pub use config::{
    DEFAULT_POLICIES, EtlConfig, Handles, ReloadCounts, Reloader, default_policies,
    throttle_config, watcher,
};
pub use generate::{InputFiles, Reference, RowGenerator, generated_stream, write_inputs};
pub use pipeline::{Built, Outputs, Progress, Settings, build};
pub use record::{Enriched, Formatted, Raw, SourceId};
pub use sinks::{Checked, RejectFile, Rejected, Sqlite};
pub use summary::Summary;
