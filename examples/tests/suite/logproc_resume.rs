//! `logproc --checkpoint-dir`: killed with SIGKILL at random points (and once
//! stopped with Ctrl-C) and started again each time with the same arguments, its
//! final report equals an uninterrupted run's (timing fields aside) and its
//! dead-letter file holds each malformed line once; started again after the end,
//! it reports the same and reads nothing.

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

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_logproc"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start logproc")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The report without what differs between any two runs: the timing and
/// process fields, the checkpoint object, the dead-letter file's path.
fn comparable(report: &Value) -> Value {
    let mut report = report.clone();
    let map = report.as_object_mut().unwrap();
    for field in [
        "elapsed_sec",
        "lines_per_sec",
        "peak_rss_bytes",
        "checkpoint",
        "dlq",
    ] {
        assert!(map.remove(field).is_some(), "the report has no {field}");
    }
    report
}

/// Every letter of a dead-letter file as (line, reason, text), sorted by line.
fn letters(path: &Path) -> Vec<(u64, String, String)> {
    let read = FileDlqReader::<MalformedLine>::open(path)
        .unwrap()
        .read_all()
        .unwrap();
    assert!(read.tail.is_clean(), "{:?}", read.tail);
    let mut letters: Vec<_> = read
        .letters
        .into_iter()
        .map(|l| (l.element.line, l.element.reason, l.element.text))
        .collect();
    letters.sort();
    letters
}

/// `got` equals `want`, or the failure names the counts and the first letter
/// that differs (not both lists).
fn same_letters(got: &[(u64, String, String)], want: &[(u64, String, String)], what: &str) {
    let differ = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        differ.is_none() && got.len() == want.len(),
        "{what}: {} letters, want {}; first difference: {:?} vs {:?}",
        got.len(),
        want.len(),
        differ.map(|i| &got[i]),
        differ.map(|i| &want[i]),
    );
}

/// A small xorshift generator: the test's random kill points, reproducible from
/// the seed it prints.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "logproc did not stop in {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sleeps up to `delay`, returning early (true) if the child exits.
fn exited_within(child: &mut Child, delay: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[cfg(unix)]
#[test]
fn killed_at_random_points_and_restarted_it_reports_what_an_uninterrupted_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("access.log");
    let bad = Generator::write_file(42, 200_000, &input).unwrap();
    let input_len = std::fs::metadata(&input).unwrap().len();
    let input = input.to_str().unwrap();

    // The uninterrupted run, without checkpoints.
    let reference = d.join("reference.json");
    let plain_dlq = d.join("plain.dlq");
    let started = Instant::now();
    let out = logproc(&[
        "--input",
        input,
        "--report",
        reference.to_str().unwrap(),
        "--dlq",
        plain_dlq.to_str().unwrap(),
    ]);
    let uninterrupted = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = read_json(&reference);
    assert_eq!(reference["checkpoint"], Value::Null);
    assert_eq!(reference["malformed"], bad.len() as u64);
    let want_letters = letters(&plain_dlq);
    assert_eq!(
        want_letters.iter().map(|l| l.0).collect::<Vec<_>>(),
        bad,
        "the plain run's dead letters"
    );

    let ckpt = d.join("ckpt");
    let report = d.join("report.json");
    let args = [
        "--input",
        input,
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
        "--checkpoint-interval-ms",
        "40",
        "--report",
        report.to_str().unwrap(),
    ];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill points from seed {seed}");
    let mut rng = Rng(seed);
    // Each run is killed after 8 to 30 % of an uninterrupted run's time (a
    // restart resumes, so every kill lands further on), at most 6 times.
    let mut kills = 0;
    let mut finished = false;
    for _ in 0..6 {
        let mut child = spawn(&args);
        let delay = uninterrupted.mul_f64(0.08 + rng.below(22) as f64 / 100.0);
        if exited_within(&mut child, delay) {
            finished = true;
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert!(finished || kills == 6);
    assert!(
        kills >= 2,
        "only {kills} kills before the end (seed {seed})"
    );

    // Ctrl-C: drains, writes a final checkpoint, exits with 130.
    let interrupted = if finished {
        false
    } else {
        let mut child = spawn(&args);
        let delay = uninterrupted.mul_f64(0.1).max(Duration::from_millis(150));
        if exited_within(&mut child, delay) {
            false
        } else {
            let pid = child.id().to_string();
            let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
            assert!(sent.success());
            let status = wait_for_exit(&mut child, Duration::from_secs(60));
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            // It may have finished on its own just before the signal.
            if status.code() == Some(130) {
                assert!(err.contains("a final checkpoint"), "{err}");
                assert!(
                    err.contains("run the same command again to resume"),
                    "{err}"
                );
                true
            } else {
                assert!(status.success(), "{status:?}: {err}");
                false
            }
        }
    };

    println!("{kills} kills, interrupted with Ctrl-C: {interrupted}");
    let out = logproc(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = read_json(&report);
    assert_eq!(
        comparable(&got),
        comparable(&reference),
        "seed {seed}, {kills} kills"
    );
    let checkpoint = &got["checkpoint"];
    assert!(
        checkpoint["resumed_from"].as_u64().is_some(),
        "the last run resumed: {checkpoint}"
    );
    let resumed_at = checkpoint["resumed_at_offset"].as_u64().unwrap();
    assert!(resumed_at > 0 && resumed_at <= input_len, "{checkpoint}");
    assert!(
        checkpoint["completed"].as_u64().unwrap() >= 1,
        "{checkpoint}"
    );
    assert_eq!(
        checkpoint["lines_this_run"].as_u64().unwrap()
            + checkpoint["resumed_at_line"].as_u64().unwrap()
            - 1,
        200_000,
        "{checkpoint}"
    );
    let dlq = ckpt.join("dead-letters.dlq");
    assert_eq!(got["dlq"], dlq.to_str().unwrap());
    // Each malformed line once, with its reason and text, as the plain run has it.
    same_letters(
        &letters(&dlq),
        &want_letters,
        &format!("seed {seed}, {kills} kills, interrupted {interrupted}"),
    );

    // Started again after the end: the same report, nothing read.
    let again = logproc(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    let after = read_json(&report);
    assert_eq!(comparable(&after), comparable(&reference));
    let checkpoint = &after["checkpoint"];
    assert_eq!(checkpoint["lines_this_run"], 0, "{checkpoint}");
    assert_eq!(checkpoint["resumed_at_offset"], input_len, "{checkpoint}");
    assert_eq!(checkpoint["resumed_at_line"], 200_001, "{checkpoint}");
    same_letters(&letters(&dlq), &want_letters, "after the end");
}

#[test]
fn the_generator_resumes_and_a_checkpoint_of_other_input_or_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reference = d.join("reference.json");
    let plain_dlq = d.join("plain.dlq");
    let out = logproc(&[
        "--lines",
        "30000",
        "--seed",
        "9",
        "--report",
        reference.to_str().unwrap(),
        "--dlq",
        plain_dlq.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Killed (SIGKILL) once its first checkpoint is written, or at its end.
    let ckpt = d.join("ckpt");
    let report = d.join("report.json");
    let dlq = d.join("job.dlq");
    let args = [
        "--lines",
        "30000",
        "--seed",
        "9",
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
        "--checkpoint-interval-ms",
        "20",
        "--dlq",
        dlq.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    let mut child = spawn(&args);
    let start = Instant::now();
    let manifests = |dir: &Path| {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
                })
                .count()
        })
    };
    while manifests(&ckpt) == 0 && child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    child.wait().unwrap();

    // Other settings than the checkpoint's: refused, naming the difference, and
    // the job is left as it was.
    let mut other = args.to_vec();
    other[3] = "10";
    let out = logproc(&other);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--seed 9 --lines 30000, not --seed 10"),
        "{}",
        stderr(&out)
    );
    let mut other = args.to_vec();
    other.extend(["--max-line-bytes", "100"]);
    let out = logproc(&other);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--max-line-bytes"),
        "{}",
        stderr(&out)
    );
    let log = d.join("a.log");
    Generator::write_file(9, 100, &log).unwrap();
    let mut other = args[2..].to_vec();
    other.extend(["--input", log.to_str().unwrap()]);
    let out = logproc(&other);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("of the generator's lines"),
        "{}",
        stderr(&out)
    );

    let out = logproc(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = read_json(&report);
    assert_eq!(comparable(&got), comparable(&read_json(&reference)));
    same_letters(&letters(&dlq), &letters(&plain_dlq), "the generator's");
}
