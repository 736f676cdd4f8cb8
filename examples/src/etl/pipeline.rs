//! The etl graph: three sources merged, rate-limited (`throttle_with_config`),
//! transformed (parse, validate against the threshold of `map_with_config`,
//! enrich), invalid rows dead-lettered with the reason (`reject`), the valid ones
//! broadcast to three sinks.
//!
//! ```text
//! csv ── csv_check, csv_out, csv_header, csv_raw ─┐
//! jsonl ── jsonl_check, jsonl_out, jsonl_raw ─────┼─ merge ─ rate_limit ─ transform ─ reject ─ valid ─ fanout
//! generated ──────────────────────────────────────┘                                (DLQ)
//! fanout ─┬─ json_format ─ json_sink
//!         ├─ csv_format ─ csv_sink
//!         └─ sqlite_batch ─ sqlite ─ sqlite_count
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weir::OutputReceiver;
use weir::file::{FileFlowExt, FileSink, FileSinkStats, FileSource, FileSourceStats, Fsync};
use weir::prelude::*;

use super::config::{EtlConfig, Handles, throttle_config};
use super::generate::{InputFiles, generated_stream};
use super::record::{CSV_HEADER, Enriched, Formatted, Raw, SourceId, parse, validate};
use super::sinks::{Checked, RejectFile, Sqlite};

/// What the graph is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The CSV and JSON-lines input files.
    pub inputs: InputFiles,
    /// Rows of the generated stream.
    pub generated_rows: u64,
    /// The generator's seed.
    pub seed: u64,
    /// Where the outputs go: `orders.out.jsonl`, `orders.out.csv`,
    /// `orders.sqlite`, `rejected.jsonl`.
    pub out_dir: PathBuf,
    /// Rows per SQLite transaction.
    pub sqlite_batch: usize,
    /// Longer input lines are rejected.
    pub max_line_bytes: usize,
    /// The config to start with (the threshold and the rate limit).
    pub config: EtlConfig,
    /// The handles that change it while the graph runs.
    pub handles: Handles,
}

/// Where the outputs are.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// The JSON-lines output.
    pub jsonl: PathBuf,
    /// The CSV output (with a header).
    pub csv: PathBuf,
    /// The SQLite database (table `orders`).
    pub sqlite: PathBuf,
    /// The dead-letter file of rejected rows.
    pub rejected: PathBuf,
}

/// Progress per source while the graph runs.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The CSV source's counters (its header line included).
    pub csv: Arc<FileSourceStats>,
    /// The JSON-lines source's counters.
    pub jsonl: Arc<FileSourceStats>,
    /// Rows the generated stream has emitted.
    pub generated: Arc<AtomicU64>,
    /// Sizes of the input files and rows of the generated stream: the totals.
    pub totals: [u64; 3],
    /// Valid rows per source, as the transform accepted them.
    pub valid: Arc<[AtomicU64; 3]>,
}

impl Progress {
    /// Per source: (done, total) in bytes for the files, rows for the stream.
    pub fn fractions(&self) -> [(u64, u64); 3] {
        [
            (self.csv.offset(), self.totals[0]),
            (self.jsonl.offset(), self.totals[1]),
            (self.generated.load(Ordering::Relaxed), self.totals[2]),
        ]
    }

    /// Rows read per source (the CSV header excluded).
    pub fn rows(&self) -> [u64; 3] {
        [
            self.csv.emitted().saturating_sub(1),
            self.jsonl.emitted(),
            self.generated.load(Ordering::Relaxed),
        ]
    }

    /// Valid rows per source.
    pub fn valid(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.valid[i].load(Ordering::Relaxed))
    }
}

/// The graph and the handles to its results.
#[derive(Debug)]
pub struct Built {
    /// The graph, to run.
    pub graph: Graph,
    /// Progress per source.
    pub progress: Progress,
    /// The dead-letter file.
    pub rejected: RejectFile,
    /// The JSON-lines sink's counters.
    pub jsonl: OutputReceiver<Arc<FileSinkStats>>,
    /// The CSV sink's counters.
    pub csv: OutputReceiver<Arc<FileSinkStats>>,
    /// Rows committed to SQLite.
    pub sqlite: OutputReceiver<u64>,
    /// The output paths.
    pub outputs: Outputs,
}

/// Builds the graph and creates its output files.
///
/// # Errors
///
/// An output file cannot be created, or an input file cannot be read.
pub fn build(settings: &Settings) -> Result<Built, String> {
    let dir = &settings.out_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let outputs = Outputs {
        jsonl: dir.join("orders.out.jsonl"),
        csv: dir.join("orders.out.csv"),
        sqlite: dir.join("orders.sqlite"),
        rejected: dir.join("rejected.jsonl"),
    };
    let rejected = RejectFile::create(&outputs.rejected)?;
    let size = |p: &PathBuf| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| format!("input {}: {e}", p.display()))
    };
    let totals = [
        size(&settings.inputs.csv)?,
        size(&settings.inputs.jsonl)?,
        settings.generated_rows,
    ];

    let mut g = Graph::new();
    g.named("etl")
        .policies(&settings.config.policies)
        .policies_handle(&settings.handles.policies);
    let source = |path: &PathBuf, id: SourceId| {
        FileSource::lines(path)
            .name(id.name())
            .max_line_bytes(settings.max_line_bytes)
            .dead_letters(rejected.lines_of(id))
    };
    let csv_source = source(&settings.inputs.csv, SourceId::Csv);
    let jsonl_source = source(&settings.inputs.jsonl, SourceId::Jsonl);
    let generated = Arc::new(AtomicU64::new(0));
    let valid: Arc<[AtomicU64; 3]> = Arc::default();
    let progress = Progress {
        csv: csv_source.stats(),
        jsonl: jsonl_source.stats(),
        generated: Arc::clone(&generated),
        totals,
        valid: Arc::clone(&valid),
    };

    let csv = g.source(Pipeline::file_lines(csv_source));
    let csv = g.flow(csv, |f| {
        f.filter(|l| l.offset != 0)
            .name("csv_header")
            .map(|l| Raw {
                source: SourceId::Csv,
                at: l.offset,
                text: l.text,
            })
            .name("csv_raw")
    });
    let jsonl = g.source(Pipeline::file_lines(jsonl_source));
    let jsonl = g.flow(jsonl, |f| {
        f.map(|l| Raw {
            source: SourceId::Jsonl,
            at: l.offset,
            text: l.text,
        })
        .name("jsonl_raw")
    });
    let stream = generated_stream(settings.seed, settings.generated_rows).inspect(move |_| {
        generated.fetch_add(1, Ordering::Relaxed);
    });
    let stream = g.source(Pipeline::from_iter(stream).name("generated"));
    let merged = g.merge([csv, jsonl, stream]);
    g.name_stage(merged, "merge");

    let dead = rejected.clone();
    let handles = settings.handles.clone();
    let max_amount_cents = settings.config.max_amount_cents;
    let rate = throttle_config(settings.config.rate_limit);
    let enriched = g.flow(merged, move |f| {
        f.throttle_with_config(Throttle::shape(rate.rate).burst(rate.burst), &handles.rate)
            .name("rate_limit")
            .map_with_config(&handles.threshold, max_amount_cents, |max, raw: Raw| {
                // Formatted here, before the fan-out: a row that cannot be
                // serialized is rejected with the reason, not written empty.
                let row = parse(&raw)
                    .and_then(|order| validate(raw.source, order, *max))
                    .and_then(Enriched::formatted);
                Checked { raw, row }
            })
            .name("transform")
            .supervise(weir::limit::rejections_to(dead))
            .validate(|c: &Checked| c.row.as_ref().map(|_| ()).map_err(Clone::clone))
            .name("reject")
            .filter_map(move |c: Checked| {
                let row = c.row.ok()?;
                valid[row.row.source.index()].fetch_add(1, Ordering::Relaxed);
                Some(row)
            })
            .name("valid")
    });
    let [to_json, to_csv, to_db] = g.broadcast(enriched, Broadcast::new(3));
    g.name_stage(to_json, "fanout");

    let jsonl_out = g.sink(to_json, |f| {
        f.map(|r: Formatted| r.json)
            .name("json_format")
            .to_file(FileSink::new(&outputs.jsonl).fsync(Fsync::OnCompletion))
            .name("json_sink")
    });
    std::fs::write(&outputs.csv, format!("{CSV_HEADER}\n"))
        .map_err(|e| format!("{}: {e}", outputs.csv.display()))?;
    let csv_out = g.sink(to_csv, |f| {
        f.map(|r: Formatted| r.csv)
            .name("csv_format")
            .to_file(FileSink::new(&outputs.csv).append(true))
            .name("csv_sink")
    });
    let mut db = Sqlite::create(&outputs.sqlite)?;
    let sqlite = g.sink(to_db, |f| {
        f.chunks(settings.sqlite_batch.max(1))
            .name("sqlite_batch")
            .try_map(move |rows: Vec<Formatted>| {
                let rows: Vec<Enriched> = rows.into_iter().map(|r| r.row).collect();
                db.write(&rows)
                    .map_err(|e| Failure::error(ErrorClass::Transient, e))
            })
            .name("sqlite")
            .fold(0_u64, |n, k| n + k as u64)
            .name("sqlite_count")
    });
    Ok(Built {
        graph: g,
        progress,
        rejected,
        jsonl: jsonl_out,
        csv: csv_out,
        sqlite,
        outputs,
    })
}
