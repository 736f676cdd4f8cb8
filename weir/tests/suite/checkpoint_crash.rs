//! Exactly-once under `kill -9`: a child process runs a checkpointed pipeline from
//! a file source into the exactly-once file sink, checkpointing every 20–60 ms;
//! the test kills it with SIGKILL at random points and starts it again each time
//! with the same arguments. The committed output must then equal an uninterrupted
//! run's exactly: no line missing, none twice.
//!
//! The child is this test binary, run again with `WEIR_CRASH_CHILD` naming the
//! work directory: [`child`] is a no-op otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::checkpoint::CheckpointConfig;
use weir::file::{FileSink, FileSource, Naming};
use weir::prelude::*;
use weir::{Pipeline, Runtime};

const LINES: u64 = 1_000_000;
const KEYS: u64 = 64;

fn input_line(i: u64) -> String {
    format!("{i} key-{} {}", i % KEYS, "x".repeat((i % 7) as usize))
}

/// What the pipeline makes of a line: the same for every run.
fn transform(text: &str) -> String {
    let mut parts = text.split(' ');
    let n: u64 = parts.next().unwrap().parse().unwrap();
    let key = parts.next().unwrap();
    format!("{key}\t{}", n * 3 + 1)
}

fn run_child(dir: &Path) {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let out = dir.join("out");
    let done = Pipeline::file_lines(FileSource::lines(dir.join("input")))
        .map(|line| format!("{}\n", transform(&line.text)).into_bytes())
        .name("transform")
        .to_file(
            FileSink::new(&out)
                .delimiter(None)
                .rotate(64 * 1024, Naming::Numbered)
                .exactly_once(),
        )
        .name("write")
        .checkpoints(CheckpointConfig::new(dir.join("checkpoints")).interval(
            Duration::from_millis(20 + u64::from(std::process::id() % 40)),
        ))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
}

/// Runs the pipeline when started as the child; does nothing in a normal run.
#[test]
fn child() {
    if let Some(dir) = std::env::var_os("WEIR_CRASH_CHILD") {
        run_child(Path::new(&dir));
    }
}

fn spawn(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "checkpoint_crash::child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WEIR_CRASH_CHILD", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The committed output: the rotated files in order, then the last one.
fn committed(dir: &Path) -> String {
    let out = dir.join("out");
    let mut text = String::new();
    for k in 1.. {
        let part = PathBuf::from(format!("{}.{k}", out.display()));
        match std::fs::read_to_string(&part) {
            Ok(t) => text.push_str(&t),
            Err(_) => break,
        }
    }
    text.push_str(&std::fs::read_to_string(&out).unwrap_or_default());
    text
}

#[test]
fn killed_at_random_points_the_committed_output_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    let mut expected = String::new();
    for i in 0..LINES {
        let line = input_line(i);
        expected.push_str(&transform(&line));
        expected.push('\n');
        input.push_str(&line);
        input.push('\n');
    }
    std::fs::write(dir.path().join("input"), input).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut kills = 0;
    let started = Instant::now();
    while kills < 20 && started.elapsed() < Duration::from_secs(60) {
        let mut child = spawn(dir.path());
        let after = Duration::from_millis(10 + next() % 90);
        std::thread::sleep(after);
        if let Some(status) = child.try_wait().unwrap() {
            // It finished before the kill: the job is done.
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "seed {seed}: a run failed: {err}");
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    let out = spawn(dir.path()).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "seed {seed}: the last run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = committed(dir.path());
    if got != expected {
        let got_lines = got.lines().count();
        let first_diff = got.lines().zip(expected.lines()).position(|(a, b)| a != b);
        panic!(
            "seed {seed}, {kills} kills: committed output differs: {got_lines} lines, want {LINES}; first difference at line {first_diff:?}"
        );
    }
    // Nothing uncommitted is left beside the output.
    let hidden: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out"))
        .collect();
    assert!(hidden.is_empty(), "seed {seed}: left behind: {hidden:?}");
    assert!(
        kills >= 3,
        "seed {seed}: the job finished after {kills} kills"
    );
    eprintln!("{kills} kills in {:?}", started.elapsed());
}
