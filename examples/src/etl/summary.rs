//! [`Summary`]: what an etl run did, per source and per sink, printed and as the
//! `--report` JSON.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::config::EtlConfig;
use super::record::SourceId;

/// The counts of one run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Rows read per source ([`SourceId::index`] order; the CSV header excluded).
    pub rows: [u64; 3],
    /// Valid rows per source.
    pub valid: [u64; 3],
    /// Rows dead-lettered per source.
    pub invalid: [u64; 3],
    /// Rows written to the JSON-lines file.
    pub jsonl_written: u64,
    /// Rows written to the CSV file.
    pub csv_written: u64,
    /// Rows committed to SQLite.
    pub sqlite_written: u64,
    /// Config changes applied while running.
    pub config_changes: u64,
    /// Config files rejected while running.
    pub config_rejected: u64,
    /// The config in force at the end.
    pub config: EtlConfig,
    /// Config generations acknowledged by the `rate_limit` and `transform`
    /// stages.
    pub config_generations: [u64; 2],
    /// The dead-letter file.
    pub rejected_file: PathBuf,
    /// How long the graph ran.
    pub elapsed: Duration,
}

impl Summary {
    /// Rows read from all sources.
    pub fn total_rows(&self) -> u64 {
        self.rows.iter().sum()
    }

    /// Checks that every row is accounted for: each source's rows are valid or
    /// dead-lettered, and each sink has every valid row.
    ///
    /// # Errors
    ///
    /// The first count that does not add up.
    pub fn check(&self) -> Result<(), String> {
        for s in SourceId::ALL {
            let i = s.index();
            if self.rows[i] != self.valid[i] + self.invalid[i] {
                return Err(format!(
                    "source {}: {} rows but {} valid + {} invalid",
                    s.name(),
                    self.rows[i],
                    self.valid[i],
                    self.invalid[i]
                ));
            }
        }
        let valid: u64 = self.valid.iter().sum();
        for (sink, n) in [
            ("jsonl", self.jsonl_written),
            ("csv", self.csv_written),
            ("sqlite", self.sqlite_written),
        ] {
            if n != valid {
                return Err(format!("sink {sink}: {n} rows written, {valid} valid"));
            }
        }
        Ok(())
    }

    /// Writes the summary to `out`.
    ///
    /// # Errors
    ///
    /// Writing to `out` failed.
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            out,
            "etl: {} rows from 3 sources in {:.2} s ({:.0} rows/s)",
            self.total_rows(),
            self.elapsed.as_secs_f64(),
            self.total_rows() as f64 / secs
        )?;
        writeln!(
            out,
            "  {:>10} {:>10} {:>10} {:>10}",
            "source", "rows", "valid", "invalid"
        )?;
        for s in SourceId::ALL {
            let i = s.index();
            writeln!(
                out,
                "  {:>10} {:>10} {:>10} {:>10}",
                s.name(),
                self.rows[i],
                self.valid[i],
                self.invalid[i]
            )?;
        }
        writeln!(
            out,
            "  written: jsonl {}, csv {}, sqlite {}; dead letters in {}",
            self.jsonl_written,
            self.csv_written,
            self.sqlite_written,
            self.rejected_file.display()
        )?;
        writeln!(
            out,
            "  config: {} files applied ({} changes acknowledged by the stages), {} rejected; in force: max_amount_cents {}, rate_limit {}",
            self.config_changes,
            self.config_generations.iter().sum::<u64>(),
            self.config_rejected,
            self.config.max_amount_cents,
            self.config.rate_limit
        )?;
        Ok(())
    }

    /// The summary as the `--report` JSON.
    pub fn json(&self) -> serde_json::Value {
        let sources: serde_json::Map<String, serde_json::Value> = SourceId::ALL
            .iter()
            .map(|s| {
                let i = s.index();
                (
                    s.name().to_owned(),
                    serde_json::json!({
                        "rows": self.rows[i],
                        "valid": self.valid[i],
                        "invalid": self.invalid[i],
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "sources": sources,
            "sinks": {
                "jsonl": self.jsonl_written,
                "csv": self.csv_written,
                "sqlite": self.sqlite_written,
            },
            "rows": self.total_rows(),
            "dead_lettered": self.invalid.iter().sum::<u64>(),
            "rejected_file": self.rejected_file,
            "config": {
                "changes": self.config_changes,
                "rejected": self.config_rejected,
                "max_amount_cents": self.config.max_amount_cents,
                "rate_limit": self.config.rate_limit,
                "rate_limit_generation": self.config_generations[0],
                "transform_generation": self.config_generations[1],
            },
            "elapsed_sec": self.elapsed.as_secs_f64(),
        })
    }
}
