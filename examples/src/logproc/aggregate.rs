//! Parsing a batch ([`parse_batch`]) and the keyed aggregates ([`Aggregates`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::lines::{Line, LineBatch};
use super::parse::{LogLine, format_minute, parse_line};

/// A line that could not be used: its 1-based number, why, and its text (a sample
/// of at most 256 bytes for a line the reader rejected). This is the element of
/// logproc's dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedLine {
    /// The line's number in the input, from 1.
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
    /// Its text.
    pub text: String,
}

/// The fields the aggregates need from a parsed line; text fields are byte
/// ranges into the batch's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    ip: (u32, u32),
    path: (u32, u32),
    /// The status code.
    pub status: u16,
    /// The response size.
    pub bytes: u64,
    /// The UTC minute of the timestamp.
    pub minute: i64,
}

/// The parsed lines of a batch (sharing its text) and its malformed ones.
#[derive(Debug, Clone)]
pub struct ParsedBatch {
    /// The number of the batch's first line.
    pub first_line: u64,
    /// Lines in the batch.
    pub lines: u64,
    /// Parsed, valid lines.
    pub records: Records,
    /// Lines rejected by the reader or the parser, in line order.
    pub malformed: Vec<MalformedLine>,
}

/// Parsed records and the text of their client addresses and paths.
#[derive(Debug, Default, Clone)]
pub struct Records {
    text: String,
    records: Vec<Record>,
}

impl Records {
    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Each record with its client address and path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Record)> + '_ {
        let text = &self.text;
        self.records.iter().map(move |r| {
            (
                &text[r.ip.0 as usize..r.ip.1 as usize],
                &text[r.path.0 as usize..r.path.1 as usize],
                r,
            )
        })
    }
}

/// Parses (and so validates) every line of `batch`. Lines the reader rejected,
/// lines longer than `max_line_bytes`, lines that are not UTF-8 and lines the
/// parser rejects become [`MalformedLine`]s.
///
/// # Examples
///
/// ```
/// use weir_examples::logproc::{Generator, GeneratedBatches, parse_batch};
///
/// let mut batches = GeneratedBatches::new(Generator::new(1, 3_000), Default::default());
/// let parsed = parse_batch(batches.next().unwrap(), 64 * 1024);
/// assert_eq!(parsed.first_line, 1);
/// assert_eq!(parsed.records.len() + parsed.malformed.len(), parsed.lines as usize);
/// ```
pub fn parse_batch(batch: LineBatch, max_line_bytes: usize) -> ParsedBatch {
    let mut records = Records {
        text: String::with_capacity(batch.data.text.len() / 4),
        records: Vec::with_capacity(batch.data.text.len() / 150),
    };
    let mut malformed = Vec::new();
    let mut lines = 0;
    for (number, line) in batch.lines(max_line_bytes) {
        lines += 1;
        let line = match line {
            Line::Text(line) => line,
            Line::Rejected(reject, sample) => {
                malformed.push(MalformedLine {
                    line: number,
                    reason: reject.to_string(),
                    text: sample.into_owned(),
                });
                continue;
            }
        };
        match parse_line(line) {
            Ok(l) => {
                let mut range = |s: &str| {
                    let at = records.text.len() as u32;
                    records.text.push_str(s);
                    (at, at + s.len() as u32)
                };
                let record = Record {
                    ip: range(l.ip),
                    path: range(l.path),
                    status: l.status,
                    bytes: l.bytes,
                    minute: l.minute,
                };
                records.records.push(record);
            }
            Err(e) => malformed.push(MalformedLine {
                line: number,
                reason: e.to_string(),
                text: truncate(line, 256).to_owned(),
            }),
        }
    }
    ParsedBatch {
        first_line: batch.first_line,
        lines,
        records,
        malformed,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Requests and bytes per status code, requests per client and per path, and 5xx
/// responses per minute of the log's own timestamps.
///
/// The per-minute counts are a fold keyed by the minute (event time, from each
/// line's timestamp), not a windowing operator: weir's windows are not on this
/// branch. Exact: memory grows with the number of distinct clients, paths and
/// minutes, not with the number of lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregates {
    /// Valid lines counted.
    pub parsed: u64,
    /// Sum of the response sizes.
    pub bytes_total: u64,
    /// `(requests, bytes)` per status code.
    pub status: BTreeMap<u16, (u64, u64)>,
    /// Requests per client address.
    pub ips: HashMap<String, u64>,
    /// Requests per path.
    pub paths: HashMap<String, u64>,
    /// 5xx responses per UTC minute (minutes since the epoch).
    pub five_xx_per_minute: BTreeMap<i64, u64>,
}

impl Aggregates {
    /// Counts one valid line.
    pub fn add(&mut self, ip: &str, path: &str, status: u16, bytes: u64, minute: i64) {
        self.parsed += 1;
        self.bytes_total += bytes;
        let s = self.status.entry(status).or_default();
        s.0 += 1;
        s.1 += bytes;
        bump(&mut self.ips, ip);
        bump(&mut self.paths, path);
        if (500..600).contains(&status) {
            *self.five_xx_per_minute.entry(minute).or_default() += 1;
        }
    }

    /// Counts one parsed line.
    pub fn add_line(&mut self, l: &LogLine<'_>) {
        self.add(l.ip, l.path, l.status, l.bytes, l.minute);
    }

    /// Counts a batch's records.
    pub fn add_records(&mut self, records: &Records) {
        for (ip, path, r) in records.iter() {
            self.add(ip, path, r.status, r.bytes, r.minute);
        }
    }

    /// The `n` most requested client addresses (ties by address).
    pub fn top_ips(&self, n: usize) -> Vec<(String, u64)> {
        top(&self.ips, n)
    }

    /// The `n` most requested paths (ties by path).
    pub fn top_paths(&self, n: usize) -> Vec<(String, u64)> {
        top(&self.paths, n)
    }

    /// 5xx per minute, keyed `YYYY-MM-DDTHH:MMZ`.
    pub fn five_xx_by_minute_text(&self) -> BTreeMap<String, u64> {
        self.five_xx_per_minute
            .iter()
            .map(|(m, n)| (format_minute(*m), *n))
            .collect()
    }
}

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// The `n` largest counts, by count descending then key ascending.
pub fn top(map: &HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut all: Vec<(&String, &u64)> = map.iter().collect();
    all.sort_unstable_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    all.into_iter()
        .take(n)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_line: u64, lines: &[&str]) -> LineBatch {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        LineBatch::new(first_line, text.into_bytes(), Vec::new())
    }

    #[test]
    fn a_batch_splits_into_records_and_numbered_malformed_lines() {
        let good = r#"1.2.3.4 - - [14/Mar/2025:10:00:00 +0000] "GET /a HTTP/1.1" 503 10"#;
        let parsed = parse_batch(batch(41, &[good, "nonsense", good, ""]), 1_000);
        assert_eq!((parsed.first_line, parsed.lines), (41, 4));
        let lines: Vec<u64> = parsed.malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, [42, 44]);
        assert_eq!(parsed.malformed[1].reason, "empty line");
        let mut agg = Aggregates::default();
        agg.add_records(&parsed.records);
        assert_eq!(agg.parsed, 2);
        assert_eq!(agg.status[&503], (2, 20));
        assert_eq!(agg.top_ips(10), [("1.2.3.4".to_owned(), 2)]);
        assert_eq!(
            agg.five_xx_by_minute_text().into_iter().collect::<Vec<_>>(),
            [("2025-03-14T10:00Z".to_owned(), 2)]
        );
    }

    #[test]
    fn top_breaks_ties_by_key() {
        let map: HashMap<String, u64> = [("b", 2), ("a", 2), ("c", 5), ("d", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let got: Vec<String> = top(&map, 3).into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, ["c", "a", "b"]);
    }
}
