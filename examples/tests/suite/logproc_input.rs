//! logproc on bad input (a clear message and a non-zero exit, or a dead letter;
//! never a panic), its health printing, and its memory bound.

use std::io::Write;
use std::process::{Command, Output};

use serde_json::Value;
use weir::supervisor::dead_letter::FileDlqReader;
use weir_examples::logproc::{Generator, MalformedLine};

fn logproc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(args)
        .output()
        .expect("run logproc")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code 2, a message naming `what`, no panic.
fn refused(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(what), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unusable_input_files_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dlq = |name: &str| d.join(name).to_str().unwrap().to_owned();

    let missing = d.join("nope.log");
    let out = logproc(&["--input", missing.to_str().unwrap(), "--dlq", &dlq("1.dlq")]);
    refused(&out, "cannot open input");
    assert!(stderr(&out).contains("nope.log"));

    let out = logproc(&["--input", d.to_str().unwrap(), "--dlq", &dlq("2.dlq")]);
    refused(&out, "is a directory");

    let binary = d.join("app.bin");
    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.extend((0..4096).map(|i| (i % 251) as u8));
    std::fs::write(&binary, bytes).unwrap();
    let out = logproc(&["--input", binary.to_str().unwrap(), "--dlq", &dlq("3.dlq")]);
    refused(&out, "looks like a binary file");

    // An existing dead-letter file is never overwritten.
    let taken = d.join("taken.dlq");
    std::fs::write(&taken, b"x").unwrap();
    let log = d.join("ok.log");
    Generator::write_file(1, 10, &log).unwrap();
    let out = logproc(&[
        "--input",
        log.to_str().unwrap(),
        "--dlq",
        taken.to_str().unwrap(),
    ]);
    refused(&out, "dead-letter file");

    let out = logproc(&[
        "--input",
        log.to_str().unwrap(),
        "--workers",
        "0",
        "--dlq",
        &dlq("4.dlq"),
    ]);
    refused(&out, "--workers");
    let out = logproc(&["--health-every=0", "--dlq", &dlq("5.dlq")]);
    refused(&out, "--health-every");
}

#[test]
fn an_over_long_line_becomes_a_dead_letter_and_the_rest_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("long.log");
    let good = r#"10.0.0.1 - - [14/Mar/2025:10:00:00 +0000] "GET / HTTP/1.1" 200 10"#;
    let mut f = std::fs::File::create(&log).unwrap();
    writeln!(f, "{good}").unwrap();
    // 3 MiB without a newline: far beyond --max-line-bytes and any batch.
    let huge = "A".repeat(3 << 20);
    writeln!(f, "{huge}").unwrap();
    writeln!(f, "{good}\r").unwrap();
    f.write_all(b"bad \xff\xfe utf8\n").unwrap();
    write!(f, "{good}").unwrap(); // no final newline
    drop(f);
    let report = dir.path().join("r.json");
    let dlq = dir.path().join("d.dlq");
    let out = logproc(&[
        "--input",
        log.to_str().unwrap(),
        "--max-line-bytes",
        "4096",
        "--report",
        report.to_str().unwrap(),
        "--dlq",
        dlq.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        (json["lines"].as_u64(), json["parsed"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(json["malformed"], 2);
    let letters = FileDlqReader::<MalformedLine>::open(&dlq)
        .unwrap()
        .read_all()
        .unwrap();
    let got: Vec<(u64, &str)> = letters
        .letters
        .iter()
        .map(|l| (l.element.line, l.element.reason.as_str()))
        .collect();
    let too_long = format!(
        "line too long: {} bytes (--max-line-bytes 4096)",
        huge.len()
    );
    assert_eq!(got, [(2, too_long.as_str()), (4, "not valid UTF-8")]);
    assert!(letters.letters[0].element.text.len() <= 256);
    // The reader never held the 3 MiB line: a small peak RSS.
    let rss = json["peak_rss_bytes"].as_u64().unwrap();
    assert!(rss < 64 << 20, "peak RSS {rss}");
}

#[test]
fn health_is_printed_and_memory_stays_bounded_on_a_larger_generated_input() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let dlq = dir.path().join("d.dlq");
    let out = logproc(&[
        "--lines",
        "100000",
        "--health-every",
        "0.2",
        "--report",
        report.to_str().unwrap(),
        "--dlq",
        dlq.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let health: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("health: "))
        .collect();
    assert!(!health.is_empty(), "{stdout}");
    for line in &health {
        let verdict: Value = serde_json::from_str(&line["health: ".len()..]).unwrap();
        assert_eq!(verdict["status"], "healthy", "{line}");
    }
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["lines"], 100_000);
    assert_eq!(
        json["parsed"].as_u64().unwrap() + json["malformed"].as_u64().unwrap(),
        100_000
    );
    // Edges hold at most a few 256 KiB batches; the aggregates grow with distinct
    // clients and paths, not lines. 100 000 lines are 17 MiB of text.
    let rss = json["peak_rss_bytes"].as_u64().unwrap();
    assert!(rss < 64 << 20, "peak RSS {rss}");
}

#[test]
fn the_default_policies_are_built_in_and_a_missing_config_file_is_named() {
    // An installed binary must not depend on the source tree: no path into it
    // is compiled in as the default policy file.
    let binary = std::fs::read(env!("CARGO_BIN_EXE_logproc")).unwrap();
    let source_path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/logproc.toml");
    assert!(
        !binary
            .windows(source_path.len())
            .any(|w| w == source_path.as_bytes()),
        "logproc reads its default policies from {source_path}"
    );
    let dir = tempfile::tempdir().unwrap();
    let dlq = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // No --config: the built-in policies, from any working directory.
    let out = Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(["--lines", "100", "--dlq", &dlq("1.dlq")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // An explicit file is read, and one that is missing is an error naming it.
    let missing = dir.path().join("no-such-policy.toml");
    let out = logproc(&[
        "--lines",
        "100",
        "--config",
        missing.to_str().unwrap(),
        "--dlq",
        &dlq("2.dlq"),
    ]);
    refused(&out, "no-such-policy.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[default]\nmax_attemps = 3\n").unwrap();
    let out = logproc(&[
        "--lines",
        "100",
        "--config",
        bad.to_str().unwrap(),
        "--dlq",
        &dlq("3.dlq"),
    ]);
    refused(&out, "max_attemps");
}

/// `--input -` reads standard input: the same lines, parsed and counted as the
/// same file read with `--input FILE` (the summary's figures match), streamed
/// through a pipe in pieces; with `--checkpoint-dir` it is refused up front
/// (stdin cannot be replayed).
#[test]
fn standard_input_is_read_like_a_file_and_cannot_be_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("in.log");
    Generator::write_file(7, 20_000, &log).unwrap();
    let run = |input: &str, report: &str, stdin: Option<&[u8]>| {
        let report = dir.path().join(report);
        let dlq = dir.path().join(format!("{}.dlq", report.display()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_logproc"))
            .args(["--input", input, "--workers", "2", "--report"])
            .arg(&report)
            .arg("--dlq")
            .arg(&dlq)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run logproc");
        let mut pipe = child.stdin.take().unwrap();
        let bytes = stdin.map(<[u8]>::to_vec);
        let writer = std::thread::spawn(move || {
            if let Some(bytes) = bytes {
                // In pieces that cut lines, as a pipe delivers them.
                for piece in bytes.chunks(7_777) {
                    pipe.write_all(piece).unwrap();
                }
            }
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        json
    };
    let bytes = std::fs::read(&log).unwrap();
    let from_file = run(log.to_str().unwrap(), "file.json", None);
    let from_stdin = run("-", "stdin.json", Some(&bytes));
    assert_eq!(from_stdin["lines"], 20_000);
    for field in [
        "lines",
        "parsed",
        "malformed",
        "dead_lettered",
        "status_counts",
        "bytes_total",
        "top_ips",
        "top_paths",
        "five_xx_per_minute",
    ] {
        assert_eq!(from_stdin[field], from_file[field], "{field}");
    }
    let ckpt = dir.path().join("ckpt");
    let out = logproc(&["--input", "-", "--checkpoint-dir", ckpt.to_str().unwrap()]);
    refused(&out, "cannot be checkpointed");
}
