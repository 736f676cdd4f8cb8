//! The pieces of the `logproc` example, shared with its tests and its bench.
//!
//! * [`parse`](mod@parse): the Common/Combined Log Format parser ([`parse_line`]).
//! * [`generate`](mod@generate): the deterministic line [`Generator`].
//! * [`lines`](mod@lines): batches of lines, read in constant memory
//!   ([`LineReader`]) or generated ([`GeneratedBatches`]).
//! * [`aggregate`](mod@aggregate): parsing a batch ([`parse_batch`]) and the
//!   keyed [`Aggregates`].
//! * [`source`](mod@source): the source with a checkpointed position
//!   ([`ReadSource`]).
//! * [`follow`](mod@follow): the source of `--follow`, a growing (and
//!   rotated) file tailed by weir's file source ([`follow_lines`]).
//! * [`pipeline`](mod@pipeline): the weir graph ([`build`], and
//!   [`build_resumable`] for a checkpointed run).
//! * [`summary`](mod@summary): the figures of a run, printed and as the JSON
//!   report ([`Summary`]).

pub mod aggregate;
pub mod follow;
pub mod generate;
pub mod lines;
pub mod parse;
pub mod pipeline;
pub mod source;
pub mod summary;

pub use aggregate::{Aggregates, MalformedLine, ParsedBatch, Records, parse_batch, top};
pub use follow::follow_lines;
pub use generate::{DEFAULT_SEED, Generator};
pub use lines::{
    FileIdentity, GeneratedBatches, GeneratedPosition, InputError, Line, LineBatch, LineReader,
    ReadPosition, ReadProgress, Reject, Rejected, Resumed,
};
pub use parse::{LogLine, ParseError, format_minute, parse_line};
pub use pipeline::{
    AggregateSink, Built, DeadLetterWriter, DlqTally, Live, PoolOrder, Settings, build,
    build_following, build_resumable,
};
pub use source::ReadSource;
pub use summary::{CheckpointSummary, FollowSummary, Summary};

/// The default supervision policies of `logproc` (`examples/config/logproc.toml`,
/// compiled into the binary: an installed `logproc` needs no file).
pub const DEFAULT_POLICIES: &str = include_str!("../../config/logproc.toml");

/// [`DEFAULT_POLICIES`], parsed: what `logproc` runs with unless `--config`
/// names a policy file.
///
/// # Panics
///
/// Never: a unit test parses the embedded file.
pub fn default_policies() -> weir::supervisor::policy::PolicyConfig {
    weir::supervisor::policy::PolicyConfig::from_toml_str(DEFAULT_POLICIES)
        .expect("examples/config/logproc.toml is valid (tested)")
}

/// This process's peak resident set size (`VmHWM` from `/proc/self/status`), in
/// bytes; `None` where that file does not exist.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_default_policies_parse() {
        let policies = super::default_policies();
        assert_eq!(policies.for_stage("parse").max_attempts, 2);
    }
}
