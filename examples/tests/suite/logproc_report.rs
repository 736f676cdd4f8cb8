//! `logproc --input FILE --report PATH`: the report equals a plain sequential
//! computation over the same file, exactly, and every malformed line is in the
//! dead-letter file with its number and reason.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use weir::supervisor::dead_letter::FileDlqReader;
use weir_examples::logproc::{Generator, MalformedLine, format_minute, parse_line};

fn logproc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(args)
        .output()
        .expect("run logproc")
}

/// The reference: one loop over the file's lines, the parser, maps.
struct Reference {
    lines: u64,
    parsed: u64,
    malformed: Vec<u64>,
    bytes_total: u64,
    status: BTreeMap<String, u64>,
    ips: HashMap<String, u64>,
    paths: HashMap<String, u64>,
    five_xx: BTreeMap<String, u64>,
}

fn reference(path: &Path) -> Reference {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut r = Reference {
        lines: 0,
        parsed: 0,
        malformed: Vec::new(),
        bytes_total: 0,
        status: BTreeMap::new(),
        ips: HashMap::new(),
        paths: HashMap::new(),
        five_xx: BTreeMap::new(),
    };
    for line in file.lines() {
        let line = line.unwrap();
        r.lines += 1;
        match parse_line(&line) {
            Ok(l) => {
                r.parsed += 1;
                r.bytes_total += l.bytes;
                *r.status.entry(l.status.to_string()).or_default() += 1;
                *r.ips.entry(l.ip.to_owned()).or_default() += 1;
                *r.paths.entry(l.path.to_owned()).or_default() += 1;
                if l.status >= 500 {
                    *r.five_xx.entry(format_minute(l.minute)).or_default() += 1;
                }
            }
            Err(_) => r.malformed.push(r.lines),
        }
    }
    r
}

/// The 10 largest counts, by count then key: as `[[key, count], …]`.
fn top10(map: &HashMap<String, u64>) -> Value {
    let mut all: Vec<(&String, &u64)> = map.iter().collect();
    all.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    all.truncate(10);
    serde_json::to_value(all).unwrap()
}

#[test]
fn the_report_equals_a_sequential_reference_and_the_dlq_holds_every_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("access.log");
    let generated_bad = Generator::write_file(42, 20_000, &input).unwrap();
    let report = dir.path().join("report.json");
    let dlq = dir.path().join("dead.dlq");
    let out = logproc(&[
        "--input",
        input.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--dlq",
        dlq.to_str().unwrap(),
        "--workers",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("lines/s"), "{stdout}");

    let r = reference(&input);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["lines"], r.lines);
    assert_eq!(r.lines, 20_000);
    assert_eq!(json["parsed"], r.parsed);
    assert_eq!(json["malformed"], r.malformed.len() as u64);
    assert_eq!(json["dead_lettered"], r.malformed.len() as u64);
    assert_eq!(json["bytes_total"], r.bytes_total);
    assert_eq!(
        json["status_counts"],
        serde_json::to_value(&r.status).unwrap()
    );
    assert_eq!(json["top_ips"], top10(&r.ips));
    assert_eq!(json["top_paths"], top10(&r.paths));
    assert_eq!(
        json["five_xx_per_minute"],
        serde_json::to_value(&r.five_xx).unwrap()
    );
    assert_eq!(json["restarts"], 0);
    assert!(json["elapsed_sec"].as_f64().unwrap() > 0.0);
    assert!(json["lines_per_sec"].as_f64().unwrap() > 0.0);

    // The generator knows which lines it broke: the parser found exactly those.
    assert_eq!(r.malformed, generated_bad);
    assert!(!generated_bad.is_empty());

    // Every malformed line is in the DLQ, in line order, with its reason and text.
    let letters = FileDlqReader::<MalformedLine>::open(&dlq)
        .unwrap()
        .read_all()
        .unwrap();
    assert!(letters.tail.is_clean());
    let numbers: Vec<u64> = letters.letters.iter().map(|l| l.element.line).collect();
    assert_eq!(numbers, r.malformed);
    let lines: Vec<String> = std::io::BufReader::new(std::fs::File::open(&input).unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    for letter in &letters.letters {
        let m = &letter.element;
        let original = &lines[m.line as usize - 1];
        assert_eq!(parse_line(original).unwrap_err().to_string(), m.reason);
        assert_eq!(letter.error, m.reason);
        assert_eq!(letter.element_index, m.line - 1);
        assert!(
            original.starts_with(&m.text),
            "{original:?} vs {:?}",
            m.text
        );
    }
}

#[test]
fn a_parser_panic_restarts_its_replica_per_the_policy_file_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("access.log");
    Generator::write_file(7, 5_000, &input).unwrap();
    let report = dir.path().join("report.json");
    let dlq = dir.path().join("dead.dlq");
    let out = logproc(&[
        "--input",
        input.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--dlq",
        dlq.to_str().unwrap(),
        "--panic-once-on-line",
        "2500",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let r = reference(&input);
    // examples/config/logproc.toml: a panic in `parse` restarts the replica, which
    // tries the batch again: one restart, every line still counted once.
    assert_eq!(json["restarts"], 1);
    assert_eq!(json["lines"], 5_000);
    assert_eq!(json["parsed"], r.parsed);
    assert_eq!(json["malformed"], r.malformed.len() as u64);
    assert_eq!(json["lines_in_failed_batches"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("restarts 1"), "{stdout}");
}
