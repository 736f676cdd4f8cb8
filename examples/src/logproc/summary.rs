//! [`Summary`]: what `logproc` prints at the end of a run and writes as its
//! JSON report (`--report`), and, with `--follow`, every report interval.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use weir::checkpoint::CheckpointStats;

use super::{Aggregates, DlqTally, Resumed};

/// The figures of a run: what was read, parsed and dead-lettered, the
/// aggregates, and how the run went.
#[derive(Debug, Clone)]
pub struct Summary {
    /// What was read: the input's path, `stdin`, or the generator and its
    /// settings.
    pub source: String,
    /// Lines read.
    pub lines: u64,
    /// The aggregates of the parsed lines.
    pub aggregates: Aggregates,
    /// What the dead-letter branch did.
    pub tally: DlqTally,
    /// Lines of batches the parser pool dead-lettered whole.
    pub lost: u64,
    /// Restarts of the pipeline's stages.
    pub restarts: u64,
    /// Time since the run started.
    pub elapsed: Duration,
    /// The dead-letter file.
    pub dlq_path: PathBuf,
    /// Parser replicas.
    pub workers: usize,
    /// Entries in the top lists.
    pub top: usize,
    /// The checkpointing, with `--checkpoint-dir`.
    pub checkpoint: Option<CheckpointSummary>,
    /// The live report, with `--follow`.
    pub follow: Option<FollowSummary>,
}

/// The checkpointing of a run with `--checkpoint-dir`.
#[derive(Debug, Clone)]
pub struct CheckpointSummary {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// `--checkpoint-interval-ms`.
    pub interval_ms: u64,
    /// Where the source resumed, if it was restored.
    pub resumed: Option<Resumed>,
    /// The pipeline's checkpoint figures.
    pub stats: CheckpointStats,
}

/// The live report of a run with `--follow`: the `follow` object of the JSON
/// report (`null` without `--follow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowSummary {
    /// `--report-interval-ms`.
    pub interval_ms: u64,
    /// Reports written before this one.
    pub reports: u64,
    /// True for the report written after the pipeline drained (Ctrl-C): its
    /// figures are final. False for the live ones, taken while lines may be
    /// between the reader and the aggregates (`in_flight`).
    pub last: bool,
}

impl CheckpointSummary {
    /// Lines read before this run (0 for a fresh start).
    pub fn lines_before(&self) -> u64 {
        self.resumed.map_or(0, |r| r.next_line - 1)
    }

    /// The `checkpoint` object of the JSON report; `lines` is the run's total.
    pub fn json(&self, lines: u64) -> serde_json::Value {
        serde_json::json!({
            "dir": self.dir,
            "interval_ms": self.interval_ms,
            "resumed_from": self.resumed.map(|r| r.checkpoint),
            "resumed_at_offset": self.resumed.map_or(0, |r| r.offset),
            "resumed_at_line": self.resumed.map_or(1, |r| r.next_line),
            "lines_this_run": lines - self.lines_before(),
            "completed": self.stats.completed,
            "failed": self.stats.failed,
            "last_id": self.stats.last_id,
            "last_error": self.stats.last_error,
        })
    }
}

impl Summary {
    /// Lines read by this process (after the checkpoint it resumed from).
    pub fn lines_this_run(&self) -> u64 {
        self.lines
            - self
                .checkpoint
                .as_ref()
                .map_or(0, CheckpointSummary::lines_before)
    }

    /// Lines read by this process per second.
    pub fn lines_per_sec(&self) -> f64 {
        self.lines_this_run() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Lines read but not yet through the parser to the aggregates or the
    /// dead letters (0 once the pipeline has drained).
    pub fn in_flight(&self) -> u64 {
        self.lines
            .saturating_sub(self.aggregates.parsed + self.tally.malformed + self.lost)
    }

    /// Writes the summary to `out`.
    ///
    /// # Errors
    ///
    /// Writing failed.
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let a = &self.aggregates;
        writeln!(
            out,
            "logproc: {} lines from {} in {:.2} s: {:.0} lines/s ({} parser replicas)",
            self.lines,
            self.source,
            self.elapsed.as_secs_f64(),
            self.lines_per_sec(),
            self.workers
        )?;
        if let Some(c) = &self.checkpoint {
            let resumed = match c.resumed {
                Some(r) => format!(
                    "resumed from checkpoint {} at line {} (byte {}), read {} lines in this run",
                    r.checkpoint,
                    r.next_line,
                    r.offset,
                    self.lines_this_run()
                ),
                None => "started from the beginning".to_owned(),
            };
            writeln!(
                out,
                "  checkpoints in {}: {resumed}; {} taken (every {} ms), the last {}",
                c.dir.display(),
                c.stats.completed,
                c.interval_ms,
                c.stats
                    .last_id
                    .map_or_else(|| "none".to_owned(), |id| id.to_string())
            )?;
        }
        if let Some(f) = &self.follow {
            let state = if f.last {
                "the final report (drained)".to_owned()
            } else {
                format!(
                    "live report {} ({} lines in flight)",
                    f.reports + 1,
                    self.in_flight()
                )
            };
            writeln!(
                out,
                "  following the input: {state}; a report every {} ms",
                f.interval_ms
            )?;
        }
        writeln!(
            out,
            "  parsed {}, malformed {}, dead-lettered {} (to {}), restarts {}",
            a.parsed,
            self.tally.malformed,
            self.tally.written + self.lost,
            self.dlq_path.display(),
            self.restarts
        )?;
        if self.lost > 0 {
            writeln!(
                out,
                "  {} lines in batches the parser failed on (dead-lettered whole)",
                self.lost
            )?;
        }
        writeln!(out, "  bytes served {}", a.bytes_total)?;
        writeln!(out, "  {:>6} {:>10} {:>14}", "status", "requests", "bytes")?;
        for (status, (requests, bytes)) in &a.status {
            writeln!(out, "  {status:>6} {requests:>10} {bytes:>14}")?;
        }
        writeln!(out, "  top {} clients:", self.top)?;
        for (ip, n) in a.top_ips(self.top) {
            writeln!(out, "    {n:>8}  {ip}")?;
        }
        writeln!(out, "  top {} paths:", self.top)?;
        for (path, n) in a.top_paths(self.top) {
            writeln!(out, "    {n:>8}  {path}")?;
        }
        let per_minute = a.five_xx_by_minute_text();
        let total_5xx: u64 = per_minute.values().sum();
        let mut worst: Vec<(&String, &u64)> = per_minute.iter().collect();
        worst.sort_by(|x, y| y.1.cmp(x.1).then_with(|| x.0.cmp(y.0)));
        writeln!(
            out,
            "  5xx: {total_5xx} in {} minutes (by the log's timestamps); worst minutes: {}",
            per_minute.len(),
            worst
                .iter()
                .take(3)
                .map(|(m, n)| format!("{m} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        if let Some(rss) = super::peak_rss_bytes() {
            writeln!(out, "  peak RSS {:.1} MiB", rss as f64 / (1024.0 * 1024.0))?;
        }
        Ok(())
    }

    /// The JSON report.
    pub fn json(&self) -> serde_json::Value {
        let a = &self.aggregates;
        let status_counts: serde_json::Map<String, serde_json::Value> = a
            .status
            .iter()
            .map(|(s, (n, _))| (s.to_string(), (*n).into()))
            .collect();
        let status_bytes: serde_json::Map<String, serde_json::Value> = a
            .status
            .iter()
            .map(|(s, (_, b))| (s.to_string(), (*b).into()))
            .collect();
        serde_json::json!({
            "source": self.source,
            "lines": self.lines,
            "parsed": a.parsed,
            "malformed": self.tally.malformed,
            "dead_lettered": self.tally.written + self.lost,
            "lines_in_failed_batches": self.lost,
            "dlq": self.dlq_path,
            "status_counts": status_counts,
            "status_bytes": status_bytes,
            "top_ips": a.top_ips(self.top),
            "top_paths": a.top_paths(self.top),
            "bytes_total": a.bytes_total,
            "five_xx_per_minute": a.five_xx_by_minute_text(),
            "restarts": self.restarts,
            "workers": self.workers,
            "elapsed_sec": self.elapsed.as_secs_f64(),
            "lines_per_sec": self.lines_per_sec(),
            "peak_rss_bytes": super::peak_rss_bytes(),
            "checkpoint": self.checkpoint.as_ref().map(|c| c.json(self.lines)),
            "follow": self.follow.map(|f| serde_json::json!({
                "interval_ms": f.interval_ms,
                "reports": f.reports,
                "last": f.last,
                "in_flight": self.in_flight(),
            })),
        })
    }
}
