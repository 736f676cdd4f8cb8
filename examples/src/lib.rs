//! Runnable weir scenarios, and the few helpers they share.

use weir::{Report, StageReport};

pub mod axum_service;
pub mod cli;
pub mod etl;
pub mod logproc;

/// The report of stage `name`, or an error naming it.
///
/// # Errors
///
/// No stage of that name is in the report.
pub fn stage<'a>(report: &'a Report, name: &str) -> Result<&'a StageReport, String> {
    report
        .stage(name)
        .ok_or_else(|| format!("no stage `{name}` in the report"))
}

/// Prints a junction's per-port counts as a table.
pub fn print_ports(stage: &StageReport) {
    crate::outln!(
        "  {:>4} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "port",
        "pushed",
        "emitted",
        "dropped",
        "detached",
        "buffered"
    );
    for p in &stage.outputs {
        crate::outln!(
            "  {:>4} {:>8} {:>8} {:>8} {:>8} {:>8}",
            p.port,
            p.pushed,
            p.emitted,
            p.dropped,
            p.detached,
            p.buffered
        );
    }
}
