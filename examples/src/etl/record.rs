//! The rows of the etl example: raw text as extracted ([`Raw`]), parsed and
//! validated ([`parse`], [`validate`]), enriched from a lookup table
//! ([`Enriched`]), and formatted as a CSV and a JSON line ([`Formatted`]).
//!
//! CSV is read and written with the `csv` crate (RFC 4180): a field may be
//! quoted (`7,"Smith, Ann",DE,10.00`, `""` for a quote inside it), and the CSV
//! output quotes the fields that need it. A record is one line: the file source
//! reads lines, so a quoted field holding a newline is not supported (its two
//! halves are rejected as rows with the wrong number of fields).

use serde::{Deserialize, Serialize};

/// Where a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceId {
    /// The CSV file: `id,customer,country,amount` with a header line.
    Csv,
    /// The JSON-lines file: `{"id":…,"customer":…,"country":…,"amount_cents":…}`.
    Jsonl,
    /// The generated stream, in the CSV format without header.
    Generated,
}

impl SourceId {
    /// Every source, in report order.
    pub const ALL: [SourceId; 3] = [SourceId::Csv, SourceId::Jsonl, SourceId::Generated];

    /// The source's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            SourceId::Csv => "csv",
            SourceId::Jsonl => "jsonl",
            SourceId::Generated => "generated",
        }
    }

    /// Its index in [`SourceId::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A row as extracted: its source, where it was (byte offset in the file, or
/// sequence number of the generated stream) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raw {
    /// The source.
    pub source: SourceId,
    /// Byte offset of the line in its file, or sequence number.
    pub at: u64,
    /// The row's text.
    pub text: String,
}

/// A parsed row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id (unique across the sources).
    pub id: u64,
    /// Customer name (not empty).
    pub customer: String,
    /// ISO country code, looked up in [`COUNTRIES`].
    pub country: String,
    /// Amount in cents.
    pub amount_cents: i64,
}

/// A valid row with what the lookup table adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enriched {
    /// The source.
    pub source: SourceId,
    /// The order's id.
    pub id: u64,
    /// Customer name.
    pub customer: String,
    /// ISO country code.
    pub country: String,
    /// The country's sales region.
    pub region: String,
    /// Amount in cents, before VAT.
    pub amount_cents: i64,
    /// VAT in cents (rounded down).
    pub vat_cents: i64,
    /// Amount plus VAT.
    pub total_cents: i64,
}

/// The lookup table: country, region, VAT percent.
pub const COUNTRIES: [(&str, &str, i64); 8] = [
    ("DE", "emea", 19),
    ("FR", "emea", 20),
    ("GB", "emea", 20),
    ("US", "amer", 0),
    ("CA", "amer", 5),
    ("BR", "amer", 17),
    ("JP", "apac", 10),
    ("AU", "apac", 10),
];

/// `"123.45"` as 12345 cents.
fn parse_amount(s: &str) -> Result<i64, String> {
    let (whole, cents) = s.split_once('.').unwrap_or((s, "0"));
    let bad = || format!("amount {s:?} is not a number with at most 2 decimals");
    if cents.is_empty() || cents.len() > 2 {
        return Err(bad());
    }
    let negative = whole.starts_with('-');
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let cents: i64 = cents.parse::<u8>().map_err(|_| bad())?.into();
    let cents = if s.split_once('.').is_some_and(|(_, c)| c.len() == 1) {
        cents * 10
    } else {
        cents
    };
    let magnitude = whole
        .abs()
        .checked_mul(100)
        .and_then(|w| w.checked_add(cents));
    let magnitude = magnitude.ok_or_else(bad)?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// `12345` cents as `"123.45"`.
pub fn format_amount(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    id: u64,
    customer: String,
    country: String,
    amount_cents: i64,
}

/// Parses a row of its source's format.
///
/// # Errors
///
/// Why the text is not a row.
pub fn parse(raw: &Raw) -> Result<Order, String> {
    match raw.source {
        SourceId::Jsonl => {
            let row: JsonRow =
                serde_json::from_str(&raw.text).map_err(|e| format!("invalid JSON: {e}"))?;
            Ok(Order {
                id: row.id,
                customer: row.customer,
                country: row.country,
                amount_cents: row.amount_cents,
            })
        }
        SourceId::Csv | SourceId::Generated => {
            let record = csv_record(&raw.text)?;
            let fields: Vec<&str> = record.iter().collect();
            let [id, customer, country, amount] = fields[..] else {
                return Err(format!(
                    "expected 4 CSV fields (id,customer,country,amount), found {}",
                    fields.len()
                ));
            };
            Ok(Order {
                id: id
                    .parse()
                    .map_err(|_| format!("id {id:?} is not a number"))?,
                customer: customer.to_owned(),
                country: country.to_owned(),
                amount_cents: parse_amount(amount)?,
            })
        }
    }
}

/// The fields of one CSV line (quotes removed, `""` unescaped).
fn csv_record(line: &str) -> Result<csv::StringRecord, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(line.len().clamp(64, 8 * 1024))
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record),
        Ok(false) => Err("expected 4 CSV fields (id,customer,country,amount), found 0".into()),
        Err(e) => Err(format!("invalid CSV: {e}")),
    }
}

/// Checks a parsed row against the rules and the threshold, and enriches it from
/// [`COUNTRIES`].
///
/// # Errors
///
/// Why the row is invalid.
pub fn validate(source: SourceId, order: Order, max_amount_cents: u64) -> Result<Enriched, String> {
    if order.customer.trim().is_empty() {
        return Err("customer is empty".into());
    }
    if order.amount_cents < 0 {
        return Err(format!(
            "amount {} is negative",
            format_amount(order.amount_cents)
        ));
    }
    if order.amount_cents as u64 > max_amount_cents {
        return Err(format!(
            "amount {} is over the threshold {}",
            format_amount(order.amount_cents),
            format_amount(max_amount_cents as i64)
        ));
    }
    let Some(&(_, region, vat)) = COUNTRIES.iter().find(|(c, _, _)| *c == order.country) else {
        return Err(format!("unknown country {:?}", order.country));
    };
    let vat_cents = order.amount_cents * vat / 100;
    Ok(Enriched {
        source,
        id: order.id,
        customer: order.customer,
        country: order.country,
        region: region.to_owned(),
        amount_cents: order.amount_cents,
        vat_cents,
        total_cents: order.amount_cents + vat_cents,
    })
}

/// The header of the CSV output.
pub const CSV_HEADER: &str = "source,id,customer,country,region,amount,vat,total";

impl Enriched {
    /// The row as a line of the CSV output (no newline); fields that hold a
    /// comma, a quote or a line break are quoted.
    ///
    /// # Errors
    ///
    /// The row cannot be written as CSV (the reason).
    pub fn to_csv(&self) -> Result<String, String> {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::with_capacity(96));
        let (amount, vat, total) = (
            format_amount(self.amount_cents),
            format_amount(self.vat_cents),
            format_amount(self.total_cents),
        );
        let id = self.id.to_string();
        writer
            .write_record([
                self.source.name(),
                &id,
                &self.customer,
                &self.country,
                &self.region,
                &amount,
                &vat,
                &total,
            ])
            .map_err(|e| format!("cannot write the row as CSV: {e}"))?;
        let mut bytes = writer
            .into_inner()
            .map_err(|e| format!("cannot write the row as CSV: {}", e.error()))?;
        bytes.pop(); // the terminator
        String::from_utf8(bytes).map_err(|e| format!("cannot write the row as CSV: {e}"))
    }

    /// The row as a JSON line (no newline).
    ///
    /// # Errors
    ///
    /// The row cannot be serialized as JSON (the reason).
    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| format!("cannot write the row as JSON: {e}"))
    }

    /// The row with its two output lines, formatted once, before the fan-out
    /// to the sinks.
    ///
    /// # Errors
    ///
    /// The row cannot be serialized ([`to_json`](Self::to_json),
    /// [`to_csv`](Self::to_csv)): the `reject` stage dead-letters it with
    /// this reason, and no sink writes it.
    pub fn formatted(self) -> Result<Formatted, String> {
        Formatted::with(self, Enriched::to_json, Enriched::to_csv)
    }
}

/// A valid row and its output lines. A row that cannot be serialized never
/// becomes one: it is rejected with the reason instead of reaching a sink as an
/// empty line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formatted {
    /// The row (for the SQLite sink).
    pub row: Enriched,
    /// Its JSON line (no newline).
    pub json: String,
    /// Its CSV line (no newline).
    pub csv: String,
}

impl Formatted {
    fn with(
        row: Enriched,
        json: impl FnOnce(&Enriched) -> Result<String, String>,
        csv: impl FnOnce(&Enriched) -> Result<String, String>,
    ) -> Result<Formatted, String> {
        Ok(Formatted {
            json: json(&row)?,
            csv: csv(&row)?,
            row,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(source: SourceId, text: &str) -> Raw {
        Raw {
            source,
            at: 0,
            text: text.into(),
        }
    }

    #[test]
    fn amounts_round_trip() {
        for (text, cents) in [("1.5", 150), ("12.34", 1234), ("7", 700), ("-0.05", -5)] {
            assert_eq!(parse_amount(text), Ok(cents), "{text}");
        }
        assert_eq!(format_amount(1234), "12.34");
        assert_eq!(format_amount(-5), "-0.05");
        for bad in ["1.234", "x", "1.", "", "1.x"] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn both_formats_parse_to_the_same_order() {
        let csv = parse(&raw(SourceId::Csv, "7,ann,DE,10.00")).unwrap();
        let json = r#"{"id":7,"customer":"ann","country":"DE","amount_cents":1000}"#;
        assert_eq!(parse(&raw(SourceId::Jsonl, json)).unwrap(), csv);
        let e = validate(SourceId::Csv, csv, 1000).unwrap();
        assert_eq!(
            (e.region.as_str(), e.vat_cents, e.total_cents),
            ("emea", 190, 1190)
        );
        assert_eq!(e.to_csv().unwrap(), "csv,7,ann,DE,emea,10.00,1.90,11.90");
    }

    #[test]
    fn quoted_csv_fields_are_read_and_written() {
        let order = parse(&raw(SourceId::Csv, r#"7,"Smith, Ann",DE,"10.00""#)).unwrap();
        assert_eq!((order.id, order.customer.as_str()), (7, "Smith, Ann"));
        assert_eq!(order.amount_cents, 1000);
        let quoted = parse(&raw(SourceId::Csv, r#"8,"say ""hi""",FR,1"#)).unwrap();
        assert_eq!(quoted.customer, r#"say "hi""#);
        // The output quotes what needs it, and reads back to the same fields.
        let e = validate(SourceId::Csv, order, 100_000).unwrap();
        let line = e.to_csv().unwrap();
        assert_eq!(line, r#"csv,7,"Smith, Ann",DE,emea,10.00,1.90,11.90"#);
        let back = csv_record(&line).unwrap();
        assert_eq!(back.len(), 8);
        assert_eq!(&back[2], "Smith, Ann");
        let e = validate(SourceId::Jsonl, quoted, 100_000).unwrap();
        let back = csv_record(&e.to_csv().unwrap()).unwrap();
        assert_eq!(&back[2], r#"say "hi""#);
        // Still four fields, or the row is rejected.
        assert!(
            parse(&raw(SourceId::Csv, r#"9,"a,b",DE"#))
                .unwrap_err()
                .contains("found 3")
        );
    }

    #[test]
    fn a_row_that_cannot_be_serialized_is_an_error_not_an_empty_line() {
        let e = validate(
            SourceId::Csv,
            parse(&raw(SourceId::Csv, "7,ann,DE,10.00")).unwrap(),
            1000,
        )
        .unwrap();
        let formatted = e.clone().formatted().unwrap();
        assert_eq!(formatted.json, e.to_json().unwrap());
        assert_eq!(formatted.csv, e.to_csv().unwrap());
        let failing = |_: &Enriched| Err::<String, _>("cannot write the row as JSON: boom".into());
        assert_eq!(
            Formatted::with(e.clone(), failing, Enriched::to_csv),
            Err("cannot write the row as JSON: boom".into())
        );
        assert_eq!(
            Formatted::with(e, Enriched::to_json, failing),
            Err("cannot write the row as JSON: boom".into())
        );
    }

    #[test]
    fn invalid_rows_say_why() {
        let order = |c: &str, a| Order {
            id: 1,
            customer: c.into(),
            country: "XX".into(),
            amount_cents: a,
        };
        assert!(
            validate(SourceId::Csv, order("a", 5), 10)
                .unwrap_err()
                .contains("unknown country")
        );
        assert!(
            validate(SourceId::Csv, order("a", 11), 10)
                .unwrap_err()
                .contains("over the threshold 0.10")
        );
        assert!(
            validate(SourceId::Csv, order(" ", 1), 10)
                .unwrap_err()
                .contains("customer")
        );
        assert!(
            parse(&raw(SourceId::Csv, "1,a,DE"))
                .unwrap_err()
                .contains("4 CSV fields")
        );
        assert!(
            parse(&raw(SourceId::Jsonl, "{"))
                .unwrap_err()
                .contains("invalid JSON")
        );
    }
}
