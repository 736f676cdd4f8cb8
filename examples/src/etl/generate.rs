//! Deterministic input for the etl example: rows with known defects, written as
//! a CSV file and a JSON-lines file, or streamed; and the reference counts the
//! pipeline must reproduce ([`Reference`]).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::record::{COUNTRIES, Raw, SourceId, format_amount};

/// What is wrong with a generated row, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// The amount is not a number.
    BadAmount,
    /// A field is missing (CSV) or the JSON is cut short.
    Truncated,
    /// The country is not in the lookup table.
    UnknownCountry,
    /// The customer is empty.
    NoCustomer,
    /// The amount is negative.
    Negative,
}

/// One generated row, as the generator made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenRow {
    /// The source it is for.
    pub source: SourceId,
    /// Its id: unique across sources (csv from 1, jsonl from 1 000 000 001,
    /// generated from 2 000 000 001).
    pub id: u64,
    /// Customer.
    pub customer: String,
    /// Country.
    pub country: String,
    /// Amount in cents (0 to 1 000 000: about 1 in 20 over the default threshold).
    pub amount_cents: i64,
    /// The defect written into its text (about 1 row in 25).
    pub defect: Option<Defect>,
}

impl GenRow {
    /// Whether the pipeline must accept it under threshold `max_amount_cents`:
    /// the reference the tests compare with.
    pub fn valid_under(&self, max_amount_cents: u64) -> bool {
        self.defect.is_none() && self.amount_cents as u64 <= max_amount_cents
    }

    /// The row's text in its source's format.
    pub fn text(&self) -> String {
        let amount = match self.defect {
            Some(Defect::BadAmount) => "12x.5".to_owned(),
            Some(Defect::Negative) => format_amount(-self.amount_cents.max(1)),
            _ => format_amount(self.amount_cents),
        };
        let customer = if self.defect == Some(Defect::NoCustomer) {
            ""
        } else {
            &self.customer
        };
        let country = if self.defect == Some(Defect::UnknownCountry) {
            "ZZ"
        } else {
            &self.country
        };
        match self.source {
            SourceId::Jsonl => {
                let cents = match self.defect {
                    Some(Defect::BadAmount) => "\"12x\"".to_owned(),
                    Some(Defect::Negative) => (-self.amount_cents.max(1)).to_string(),
                    _ => self.amount_cents.to_string(),
                };
                let json = format!(
                    r#"{{"id":{},"customer":"{customer}","country":"{country}","amount_cents":{cents}}}"#,
                    self.id
                );
                if self.defect == Some(Defect::Truncated) {
                    json[..json.len() / 2].to_owned()
                } else {
                    json
                }
            }
            SourceId::Csv | SourceId::Generated => {
                if self.defect == Some(Defect::Truncated) {
                    format!("{},{customer},{country}", self.id)
                } else {
                    format!("{},{customer},{country},{amount}", self.id)
                }
            }
        }
    }
}

/// Deterministic rows for one source (splitmix64 from the seed).
#[derive(Debug, Clone)]
pub struct RowGenerator {
    source: SourceId,
    state: u64,
    next: u64,
    rows: u64,
}

impl RowGenerator {
    /// `rows` rows for `source`, from `seed`.
    pub fn new(source: SourceId, seed: u64, rows: u64) -> Self {
        let mut generator = RowGenerator {
            source,
            state: seed ^ ((source.index() as u64 + 1) << 56),
            next: 0,
            rows,
        };
        // The sources' streams must not be shifted copies of one another.
        generator.state = generator.random();
        generator
    }

    fn random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Iterator for RowGenerator {
    type Item = GenRow;

    fn next(&mut self) -> Option<GenRow> {
        if self.next == self.rows {
            return None;
        }
        self.next += 1;
        let base = self.source.index() as u64 * 1_000_000_000;
        let r = self.random();
        let defect = match r % 100 {
            0 => Some(Defect::BadAmount),
            1 => Some(Defect::Truncated),
            2 => Some(Defect::UnknownCountry),
            3 if r % 200 == 3 => Some(Defect::NoCustomer),
            3 => Some(Defect::Negative),
            _ => None,
        };
        let country = COUNTRIES[(r >> 8) as usize % COUNTRIES.len()].0.to_owned();
        let amount = if (r >> 20).is_multiple_of(20) {
            500_001 + (r >> 32) as i64 % 500_000
        } else {
            (r >> 32) as i64 % 500_001
        };
        Some(GenRow {
            source: self.source,
            id: base + self.next,
            customer: format!("customer-{}", (r >> 40) % 5_000),
            country,
            amount_cents: amount,
            defect,
        })
    }
}

/// The generated stream as raw rows (`at` is the sequence number from 0).
pub fn generated_stream(seed: u64, rows: u64) -> impl Iterator<Item = Raw> + Send {
    RowGenerator::new(SourceId::Generated, seed, rows)
        .enumerate()
        .map(|(i, row)| Raw {
            source: SourceId::Generated,
            at: i as u64,
            text: row.text(),
        })
}

/// The input files written by [`write_inputs`].
#[derive(Debug, Clone)]
pub struct InputFiles {
    /// The CSV file (with a header line).
    pub csv: PathBuf,
    /// The JSON-lines file.
    pub jsonl: PathBuf,
}

/// Writes `rows` rows as `orders.csv` and `rows` as `orders.jsonl` into `dir`.
///
/// # Errors
///
/// The files cannot be written.
pub fn write_inputs(dir: &Path, seed: u64, rows: u64) -> std::io::Result<InputFiles> {
    let files = InputFiles {
        csv: dir.join("orders.csv"),
        jsonl: dir.join("orders.jsonl"),
    };
    let mut csv = BufWriter::new(std::fs::File::create(&files.csv)?);
    writeln!(csv, "id,customer,country,amount")?;
    for row in RowGenerator::new(SourceId::Csv, seed, rows) {
        writeln!(csv, "{}", row.text())?;
    }
    csv.flush()?;
    let mut jsonl = BufWriter::new(std::fs::File::create(&files.jsonl)?);
    for row in RowGenerator::new(SourceId::Jsonl, seed, rows) {
        writeln!(jsonl, "{}", row.text())?;
    }
    jsonl.flush()?;
    Ok(files)
}

/// What the pipeline must find in generated input, computed from the generator's
/// own rows (not by parsing their text): per source, rows, valid and invalid,
/// and the ids of the valid rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reference {
    /// Rows per source ([`SourceId::index`] order).
    pub rows: [u64; 3],
    /// Valid rows per source.
    pub valid: [u64; 3],
    /// Invalid rows per source.
    pub invalid: [u64; 3],
    /// The ids of the valid rows, ascending.
    pub valid_ids: Vec<u64>,
    /// The sum of the valid rows' totals (amount plus VAT) per source, in cents.
    pub total_cents: [i64; 3],
}

impl Reference {
    /// The reference for `rows` rows per source from `seed` under threshold
    /// `max_amount_cents`.
    pub fn compute(seed: u64, rows: u64, max_amount_cents: u64) -> Reference {
        let mut r = Reference::default();
        for source in SourceId::ALL {
            for row in RowGenerator::new(source, seed, rows) {
                let i = source.index();
                r.rows[i] += 1;
                if row.valid_under(max_amount_cents) {
                    r.valid[i] += 1;
                    r.valid_ids.push(row.id);
                    let vat = COUNTRIES
                        .iter()
                        .find(|(c, _, _)| *c == row.country)
                        .map_or(0, |&(_, _, v)| v);
                    r.total_cents[i] += row.amount_cents + row.amount_cents * vat / 100;
                } else {
                    r.invalid[i] += 1;
                }
            }
        }
        r.valid_ids.sort_unstable();
        r
    }
}
