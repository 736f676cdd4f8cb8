//! `logproc --follow`: tails a log file as it grows and across a rotation,
//! rewriting its report (whole, never half-written) with the figures so far
//! every `--report-interval-ms`; Ctrl-C drains and writes the final report,
//! which equals a plain run's over the concatenated input, dead letters (line
//! numbers and reasons) included. And the combinations `--follow` refuses.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::supervisor::dead_letter::FileDlqReader;
use weir_examples::logproc::{Generator, MalformedLine};

fn logproc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(args)
        .output()
        .expect("run logproc")
}

/// Realistic lines (about 0.5 % malformed) from the generator, each with its
/// newline.
fn generated(seed: u64, lines: u64) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(seed, lines);
    let mut out = Vec::new();
    let mut line = String::new();
    while generator.next_line(&mut line).is_some() {
        out.push(format!("{line}\n").into_bytes());
        line.clear();
    }
    out
}

fn append(path: &Path, lines: &[Vec<u8>]) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        file.write_all(line).unwrap();
    }
    file.sync_all().unwrap();
}

/// The report once it shows `lines` lines, all through the parser (polled;
/// every read must parse: the file is replaced whole, never written in place).
fn report_with(path: &Path, lines: u64, child: &mut Child) -> Value {
    let started = Instant::now();
    let mut last = Value::Null;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("logproc stopped ({status:?}); last report {last}");
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            last = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("a half-written report ({e}): {text}"));
            if last["lines"] == lines && last["follow"]["in_flight"] == 0 {
                return last;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the report never showed {lines} lines: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The report without what differs between a followed and a plain run.
fn comparable(report: &Value) -> Value {
    let mut report = report.clone();
    let map = report.as_object_mut().unwrap();
    for field in [
        "elapsed_sec",
        "lines_per_sec",
        "peak_rss_bytes",
        "dlq",
        "source",
        "follow",
    ] {
        assert!(map.remove(field).is_some(), "the report has no {field}");
    }
    report
}

/// Every letter of a dead-letter file as (line, reason), in file order.
fn letters(path: &Path) -> Vec<(u64, String)> {
    let read = FileDlqReader::<MalformedLine>::open(path)
        .unwrap()
        .read_all()
        .unwrap();
    assert!(read.tail.is_clean(), "{:?}", read.tail);
    read.letters
        .into_iter()
        .map(|l| (l.element.line, l.element.reason))
        .collect()
}

#[cfg(unix)]
#[test]
fn a_followed_log_is_reported_live_across_rotation_and_ends_as_a_plain_run_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("access.log");
    let report = d.join("live.json");
    let dlq = d.join("follow.dlq");
    let lines = generated(11, 3_000);
    // Lines the file source turns away (over --max-line-bytes 512, not
    // UTF-8): numbered in place, dead-lettered as a plain run does.
    let overlong = format!("{}\n", "x".repeat(2_000)).into_bytes();
    let not_utf8 = b"10.0.0.1 - - \xff\xfe broken\n".to_vec();

    let first = &lines[..1_000];
    append(&log, first);
    let mut child = Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(["--input", log.to_str().unwrap(), "--follow"])
        .args(["--report", report.to_str().unwrap()])
        .args(["--report-interval-ms", "100", "--follow-poll-ms", "20"])
        .args(["--dlq", dlq.to_str().unwrap()])
        .args(["--max-line-bytes", "512", "--workers", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut total = first.len() as u64;
    let live = report_with(&report, total, &mut child);
    assert_eq!(live["follow"]["last"], false, "{live}");

    // Appended in steps, with lines the file source rejects among them.
    let mut step: Vec<Vec<u8>> = lines[1_000..1_500].to_vec();
    step.insert(100, overlong.clone());
    step.insert(300, not_utf8.clone());
    append(&log, &step);
    total += step.len() as u64;
    let live = report_with(&report, total, &mut child);
    let malformed_before = live["malformed"].as_u64().unwrap();
    append(&log, &lines[1_500..2_000]);
    total += 500;
    let live = report_with(&report, total, &mut child);
    assert!(live["malformed"].as_u64().unwrap() >= malformed_before);

    // Rotated: renamed away, a new file in its place, starting with a
    // rejected line; the rest of the old one is written before it goes.
    let rotated = d.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &lines[2_000..2_200]);
    total += 200;
    let mut new_file = vec![not_utf8.clone()];
    new_file.extend_from_slice(&lines[2_200..2_600]);
    append(&log, &new_file);
    total += new_file.len() as u64;
    report_with(&report, total, &mut child);
    let mut last_step = lines[2_600..].to_vec();
    last_step.insert(50, overlong);
    append(&log, &last_step);
    total += last_step.len() as u64;
    report_with(&report, total, &mut child);

    // Ctrl-C: drains, writes the final report, exits 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(err.contains("Ctrl-C: stopping"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the final report (drained)"), "{stdout}");
    let followed: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(followed["follow"]["last"], true, "{followed}");
    assert_eq!(followed["lines"], total);

    // A plain run over what was followed: the old file, then the new one.
    let all = d.join("all.log");
    let mut concatenated = std::fs::read(&rotated).unwrap();
    concatenated.extend(std::fs::read(&log).unwrap());
    std::fs::write(&all, concatenated).unwrap();
    let plain_report = d.join("plain.json");
    let plain_dlq = d.join("plain.dlq");
    let out = logproc(&[
        "--input",
        all.to_str().unwrap(),
        "--report",
        plain_report.to_str().unwrap(),
        "--dlq",
        plain_dlq.to_str().unwrap(),
        "--max-line-bytes",
        "512",
        "--workers",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain: Value =
        serde_json::from_str(&std::fs::read_to_string(&plain_report).unwrap()).unwrap();
    assert_eq!(plain["lines"], total);
    assert_eq!(comparable(&followed), comparable(&plain));
    let want = letters(&plain_dlq);
    assert!(
        want.iter()
            .filter(|(_, why)| why.starts_with("line too long"))
            .count()
            == 2
            && want
                .iter()
                .filter(|(_, why)| why == "not valid UTF-8")
                .count()
                == 2,
        "{want:?}"
    );
    assert_eq!(letters(&dlq), want);
}

#[test]
fn follow_refuses_what_it_cannot_go_with() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.log");
    append(&log, &generated(1, 10));
    let log = log.to_str().unwrap();
    let ckpt = dir.path().join("ckpt");
    for (args, what) in [
        (vec!["--follow", "--input", "-"], "standard input"),
        (vec!["--follow"], "give it with --input FILE"),
        (
            vec![
                "--follow",
                "--input",
                log,
                "--checkpoint-dir",
                ckpt.to_str().unwrap(),
            ],
            "--follow cannot be checkpointed",
        ),
        (
            vec!["--input", log, "--report-interval-ms", "100"],
            "--follow",
        ),
        (
            vec!["--input", log, "--follow", "--report-interval-ms", "0"],
            "--report-interval-ms",
        ),
    ] {
        let out = logproc(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(
        !ckpt.exists(),
        "a refused run created its checkpoint directory"
    );
}
