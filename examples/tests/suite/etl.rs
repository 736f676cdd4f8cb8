//! The etl example: its report equals the reference computed from the generator's
//! own rows, every invalid row is in the dead-letter file with its reason, the
//! SQLite table holds exactly the valid rows, and a config change made while it
//! runs is applied.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::prelude::*;
use weir_examples::etl::{
    self, EtlConfig, Handles, Reference, RejectFile, Reloader, Settings, SourceId,
};

const ROWS: u64 = 2_000;
const SEED: u64 = 7;

fn ids_in_sqlite(path: &Path) -> Vec<u64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT id FROM orders ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|id| id.unwrap() as u64)
        .collect()
}

#[test]
fn the_report_the_dead_letters_and_the_database_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etl.toml");
    std::fs::write(&config, "max_amount_cents = 400_000\n").unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["--rows", &ROWS.to_string(), "--generated-rows", "1500"])
        .args(["--seed", &SEED.to_string(), "--sqlite-batch", "128"])
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--config")
        .arg(&config)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();

    // The reference, from the generator's rows (the files have ROWS each, the
    // stream 1 500: compute each part with its own count).
    let files = Reference::compute(SEED, ROWS, 400_000);
    let stream = Reference::compute(SEED, 1_500, 400_000);
    for s in SourceId::ALL {
        let r = if s == SourceId::Generated {
            &stream
        } else {
            &files
        };
        let i = s.index();
        let got = &json["sources"][s.name()];
        assert_eq!(got["rows"], r.rows[i], "{}", s.name());
        assert_eq!(got["valid"], r.valid[i], "{}", s.name());
        assert_eq!(got["invalid"], r.invalid[i], "{}", s.name());
        assert!(
            r.invalid[i] > 50 && r.valid[i] > 1_000,
            "the input has both kinds"
        );
    }
    let mut valid_ids: Vec<u64> = files
        .valid_ids
        .iter()
        .copied()
        .filter(|id| *id < 2_000_000_000)
        .chain(
            stream
                .valid_ids
                .iter()
                .copied()
                .filter(|id| *id > 2_000_000_000),
        )
        .collect();
    valid_ids.sort_unstable();
    let valid = valid_ids.len() as u64;
    for sink in ["jsonl", "csv", "sqlite"] {
        assert_eq!(json["sinks"][sink], valid, "{sink}");
    }

    // SQLite has exactly the valid rows, and their totals.
    let db = dir.path().join("out/orders.sqlite");
    assert_eq!(ids_in_sqlite(&db), valid_ids);
    let conn = rusqlite::Connection::open(&db).unwrap();
    for s in SourceId::ALL {
        let r = if s == SourceId::Generated {
            &stream
        } else {
            &files
        };
        let total: i64 = conn
            .query_row(
                "SELECT SUM(total_cents) FROM orders WHERE source = ?1",
                [s.name()],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(total, r.total_cents[s.index()], "{}", s.name());
    }

    // The dead-letter file has every invalid row once, with a reason.
    let rejected = RejectFile::read(&dir.path().join("out/rejected.jsonl")).unwrap();
    let invalid: u64 = SourceId::ALL
        .iter()
        .map(|s| json["sources"][s.name()]["invalid"].as_u64().unwrap())
        .sum();
    assert_eq!(rejected.len() as u64, invalid);
    let places: BTreeSet<(SourceId, u64)> = rejected.iter().map(|r| (r.source, r.at)).collect();
    assert_eq!(places.len(), rejected.len(), "each invalid row once");
    for r in &rejected {
        assert!(!r.reason.is_empty() && r.stage == "reject", "{r:?}");
    }
    let over = rejected
        .iter()
        .filter(|r| r.reason.contains("over the threshold 4000.00"));
    assert!(over.count() > 10);
    // The CSV and JSON outputs hold the same rows.
    let csv = std::fs::read_to_string(dir.path().join("out/orders.out.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, valid + 1);
    let jsonl = std::fs::read_to_string(dir.path().join("out/orders.out.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count() as u64, valid);
}

/// The threshold is lowered in the config file while rows flow (held to a rate by
/// the config's rate limit): weir's config watcher applies it to the running
/// stages, rows before the change pass, rows after it are rejected with the new
/// threshold in the reason, and nothing is lost.
#[test]
fn a_config_change_while_running_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = etl::write_inputs(dir.path(), SEED, 300).unwrap();
    let config = dir.path().join("etl.toml");
    std::fs::write(
        &config,
        "max_amount_cents = 1_000_000\nrate_limit = 1_000\n",
    )
    .unwrap();
    let handles = Handles::default();
    let mut watcher = etl::watcher(&config, &handles);
    let initial = watcher.load().unwrap();
    let built = etl::build(&Settings {
        inputs,
        generated_rows: 300,
        seed: SEED,
        out_dir: dir.path().join("out"),
        sqlite_batch: 64,
        max_line_bytes: 4096,
        config: initial,
        handles,
    })
    .unwrap();
    let rt = Runtime::builder().arbiters(1).build().unwrap();
    let running = built.graph.run(&rt).unwrap();
    let reloader = Reloader::start(watcher, Duration::from_millis(5), |_| ());
    let counts = reloader.counts();
    let progress = built.progress.clone();
    let started = Instant::now();
    while progress.valid().iter().sum::<u64>() < 100 {
        assert!(started.elapsed() < Duration::from_secs(20), "rows flow");
        std::thread::sleep(Duration::from_millis(1));
    }
    replace(&config, "max_amount_cents = 0\n"); // rejected
    while counts.rejected() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the bad file is seen"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    replace(&config, "max_amount_cents = 100\nrate_limit = 0\n");
    while counts.applied() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the change is seen"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let done = running.wait().unwrap();
    drop(reloader);
    done.report.check_conservation().unwrap();
    built.rejected.finish().unwrap();
    assert!(counts.last_error().unwrap().contains("at least 1"));
    assert_eq!(
        counts.in_force(),
        Some(EtlConfig {
            max_amount_cents: 100,
            rate_limit: 0,
            policies: weir_examples::etl::default_policies(),
        })
    );
    for stage in ["rate_limit", "transform"] {
        assert_eq!(
            done.report.stage(stage).unwrap().config_generation,
            1,
            "{stage}"
        );
    }
    let rows: u64 = built.progress.rows().iter().sum();
    assert_eq!(rows, 900);
    let valid: u64 = built.progress.valid().iter().sum();
    let invalid: u64 = built.rejected.per_source().iter().sum();
    assert_eq!(valid + invalid, rows);
    let reference = Reference::compute(SEED, 300, 1_000_000);
    let before: u64 = reference.valid.iter().sum();
    assert!(
        valid >= 100 && valid < before,
        "{valid} valid of {before} under the old threshold"
    );
    let rejected = RejectFile::read(built.rejected.path()).unwrap();
    assert!(
        rejected
            .iter()
            .any(|r| r.reason.contains("over the threshold 1.00")),
        "the new threshold is applied"
    );
    assert_eq!(ids_in_sqlite(&built.outputs.sqlite).len() as u64, valid);
}

/// An installed binary needs no source tree: without --config the settings are
/// built in (no path into the tree is compiled in), from any working directory;
/// a --config file that is missing is an error naming it.
#[test]
fn the_settings_are_built_in_and_a_missing_config_file_is_named() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_etl")).unwrap();
    let source_path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/etl.toml");
    assert!(
        !binary
            .windows(source_path.len())
            .any(|w| w == source_path.as_bytes()),
        "etl reads its default config from {source_path}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["--rows", "50", "--generated-rows", "50"])
        .arg("--out")
        .arg(dir.path().join("out"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_etl"))
        .arg("--config")
        .arg(dir.path().join("no-such.toml"))
        .arg("--out")
        .arg(dir.path().join("out2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such.toml"), "{stderr}");
}

#[test]
fn bad_arguments_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "max_amount_cents = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_etl"))
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("max_amount_cents"),
        "{stderr}"
    );
}

#[test]
fn quoted_csv_fields_go_through_and_every_output_line_is_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    let jsonl = dir.path().join("in.jsonl");
    std::fs::write(
        &csv,
        "id,customer,country,amount\n\
         1,\"Smith, Ann\",DE,10.00\n\
         2,\"say \"\"hi\"\"\",FR,\"2.50\"\n\
         3,plain,US,1\n\
         4,\"a,b\",DE\n",
    )
    .unwrap();
    std::fs::write(
        &jsonl,
        "{\"id\":5,\"customer\":\"O'Brien, Pat\",\"country\":\"GB\",\"amount_cents\":100}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let report = dir.path().join("r.json");
    let out = Command::new(env!("CARGO_BIN_EXE_etl"))
        .arg("--csv")
        .arg(&csv)
        .arg("--jsonl")
        .arg(&jsonl)
        .args(["--generated-rows", "10"])
        .arg("--out")
        .arg(&out_dir)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rejected = RejectFile::read(&out_dir.join("rejected.jsonl")).unwrap();
    let csv_rejects: Vec<&str> = rejected
        .iter()
        .filter(|r| r.source == SourceId::Csv)
        .map(|r| r.reason.as_str())
        .collect();
    assert_eq!(
        csv_rejects,
        ["expected 4 CSV fields (id,customer,country,amount), found 3"]
    );
    let written = std::fs::read_to_string(out_dir.join("orders.out.csv")).unwrap();
    assert!(written.lines().all(|l| !l.is_empty()), "{written}");
    let mut reader = csv::Reader::from_reader(written.as_bytes());
    let customers: BTreeSet<String> = reader.records().map(|r| r.unwrap()[2].to_owned()).collect();
    for name in ["Smith, Ann", "say \"hi\"", "plain", "O'Brien, Pat"] {
        assert!(customers.contains(name), "{name} missing in {written}");
    }
    let jsonl_out = std::fs::read_to_string(out_dir.join("orders.out.jsonl")).unwrap();
    assert!(jsonl_out.lines().all(|l| !l.is_empty()), "{jsonl_out}");
    assert_eq!(jsonl_out.lines().count(), written.lines().count() - 1);
}

/// Replaces the config file atomically (a temporary file renamed over it), as an
/// editor or a deploy does: the watcher never reads it half written (a plain
/// `fs::write` truncates first, and a read in between would see an empty file
/// and record its own error).
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `etl --console 127.0.0.1:0`: the console serves the etl pipeline's graph
/// while it runs (rate-limited to 1 500 rows/s, so about two seconds), and the
/// run ends with its report as without the console.
#[test]
fn the_console_serves_the_etl_graph_while_it_runs() {
    use std::io::{BufRead, BufReader, Read};
    use std::net::SocketAddr;

    use crate::console_client::{first_pipeline, get};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etl.toml");
    std::fs::write(&config, "max_amount_cents = 500_000\nrate_limit = 1500\n").unwrap();
    let report = dir.path().join("report.json");
    let mut etl = Command::new(env!("CARGO_BIN_EXE_etl"))
        .args(["--rows", "1000", "--generated-rows", "1000"])
        .args(["--console", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(etl.stderr.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no console line");
        if let Some(rest) = line.trim().strip_prefix("etl: console on http://") {
            break rest.trim_end_matches('/').parse().unwrap();
        }
    };
    let (pipeline, names) = first_pipeline(addr);
    assert_eq!(pipeline["pipeline"], "etl");
    assert!(names.iter().any(|n| n == "reject"), "{names:?}");
    let (status, ready) = get(addr, "/readyz");
    assert_eq!(status, 200, "{ready}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(etl.wait().unwrap().success(), "{rest}");
    let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(json.is_object(), "{json}");
}
