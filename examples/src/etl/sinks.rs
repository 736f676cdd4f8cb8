//! The etl example's own sinks: the SQLite table (batched transactions) and the
//! dead-letter file of rejected rows (JSON lines, with the reason).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use weir::file::Line;
use weir::supervisor::dead_letter::{DeadLetter, DeadLetterSink};

use super::record::{Enriched, Formatted, Raw, SourceId};

/// The `orders` table of a SQLite database file, written in one transaction per
/// batch.
#[derive(Debug)]
pub struct Sqlite {
    conn: rusqlite::Connection,
    path: PathBuf,
}

impl Sqlite {
    /// Creates (or empties) the database file and its `orders` table.
    ///
    /// # Errors
    ///
    /// SQLite's error, with the file's name.
    pub fn create(path: &Path) -> Result<Sqlite, String> {
        let _ = std::fs::remove_file(path);
        let err = |e: rusqlite::Error| format!("SQLite {}: {e}", path.display());
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE orders (
                 id INTEGER PRIMARY KEY,
                 source TEXT NOT NULL,
                 customer TEXT NOT NULL,
                 country TEXT NOT NULL,
                 region TEXT NOT NULL,
                 amount_cents INTEGER NOT NULL,
                 vat_cents INTEGER NOT NULL,
                 total_cents INTEGER NOT NULL
             );",
        )
        .map_err(err)?;
        Ok(Sqlite {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Inserts `rows` in one transaction; returns how many.
    ///
    /// # Errors
    ///
    /// SQLite's error (the transaction is rolled back), with the file's name.
    pub fn write(&mut self, rows: &[Enriched]) -> Result<usize, String> {
        let path = self.path.display().to_string();
        let err = |e: rusqlite::Error| format!("SQLite {path}: {e}");
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO orders (id, source, customer, country, region, amount_cents, \
                     vat_cents, total_cents) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            for r in rows {
                insert
                    .execute(rusqlite::params![
                        r.id as i64,
                        r.source.name(),
                        r.customer,
                        r.country,
                        r.region,
                        r.amount_cents,
                        r.vat_cents,
                        r.total_cents
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(rows.len())
    }
}

/// A rejected row as the dead-letter file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The source.
    pub source: SourceId,
    /// Byte offset in the file, or sequence number.
    pub at: u64,
    /// Why it was rejected.
    pub reason: String,
    /// The stage that rejected it.
    pub stage: String,
    /// The row's text (a sample of it for an over-long line).
    pub text: String,
}

#[derive(Debug)]
struct RejectInner {
    out: Mutex<Option<BufWriter<File>>>,
    per_source: [AtomicU64; 3],
}

/// The dead-letter file: one [`Rejected`] JSON line per invalid row, from every
/// stage that rejects rows, counted per source. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RejectFile {
    inner: Arc<RejectInner>,
    path: PathBuf,
}

impl RejectFile {
    /// Creates (truncates) the file.
    ///
    /// # Errors
    ///
    /// It cannot be created.
    pub fn create(path: &Path) -> Result<RejectFile, String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(RejectFile {
            inner: Arc::new(RejectInner {
                out: Mutex::new(Some(BufWriter::new(file))),
                per_source: Default::default(),
            }),
            path: path.to_path_buf(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows rejected per source ([`SourceId::index`] order).
    pub fn per_source(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.inner.per_source[i].load(Ordering::Relaxed))
    }

    /// Flushes the file.
    ///
    /// # Errors
    ///
    /// The flush failed.
    pub fn finish(&self) -> Result<(), String> {
        let mut out = self.inner.out.lock().map_err(|e| e.to_string())?;
        match out.as_mut() {
            Some(w) => w
                .flush()
                .map_err(|e| format!("{}: {e}", self.path.display())),
            None => Ok(()),
        }
    }

    /// Reads a dead-letter file back.
    ///
    /// # Errors
    ///
    /// It cannot be read or holds a line that is not a [`Rejected`].
    pub fn read(path: &Path) -> Result<Vec<Rejected>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        text.lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{l}: {e}")))
            .collect()
    }

    fn store(&self, rejected: &Rejected) -> Result<(), String> {
        let line = serde_json::to_string(rejected).map_err(|e| e.to_string())?;
        let mut out = self.inner.out.lock().map_err(|e| e.to_string())?;
        let w = out.as_mut().ok_or("dead-letter file closed")?;
        writeln!(w, "{line}").map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.inner.per_source[rejected.source.index()].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The sink for the lines a file source rejects (over-long, not UTF-8).
    pub fn lines_of(&self, source: SourceId) -> LineRejects {
        LineRejects {
            file: self.clone(),
            source,
        }
    }
}

/// A row after the transform: the raw row and its result (the enriched row, or
/// why it is invalid). The `reject` stage dead-letters the invalid ones.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The row as extracted.
    pub raw: Raw,
    /// The enriched row with its output lines, or why the row is invalid
    /// (or cannot be serialized).
    pub row: Result<Formatted, String>,
}

impl DeadLetterSink<Checked> for RejectFile {
    fn offer(&self, letter: DeadLetter<Checked>) -> Result<(), (DeadLetter<Checked>, String)> {
        let rejected = Rejected {
            source: letter.element.raw.source,
            at: letter.element.raw.at,
            reason: letter.error.clone(),
            stage: letter.stage.clone(),
            text: letter.element.raw.text.clone(),
        };
        self.store(&rejected).map_err(|e| (letter, e))
    }
}

impl DeadLetterSink<Raw> for RejectFile {
    fn offer(&self, letter: DeadLetter<Raw>) -> Result<(), (DeadLetter<Raw>, String)> {
        let rejected = Rejected {
            source: letter.element.source,
            at: letter.element.at,
            reason: letter.error.clone(),
            stage: letter.stage.clone(),
            text: letter.element.text.clone(),
        };
        self.store(&rejected).map_err(|e| (letter, e))
    }
}

/// [`RejectFile`] for the lines of one file source.
#[derive(Debug, Clone)]
pub struct LineRejects {
    file: RejectFile,
    source: SourceId,
}

impl DeadLetterSink<Line> for LineRejects {
    fn offer(&self, letter: DeadLetter<Line>) -> Result<(), (DeadLetter<Line>, String)> {
        let rejected = Rejected {
            source: self.source,
            at: letter.element.offset,
            reason: letter.error.clone(),
            stage: letter.stage.clone(),
            text: letter.element.text.clone(),
        };
        self.file.store(&rejected).map_err(|e| (letter, e))
    }
}
