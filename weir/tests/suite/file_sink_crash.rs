//! Crash consistency of the file sink with an fsync policy and rotation: a child
//! process runs a pipeline writing `00000000`, `00000001`, … into a rotating,
//! appending `FileSink` (fsync every 7 elements, a new file every 600 bytes) and
//! prints [`FileSinkStats::synced_elements`](weir::file::FileSinkStats::synced_elements)
//! each time it grows: what it acknowledges as durable. The test kills it with
//! SIGKILL at 1,000 random points, each after its first acknowledgement, some of
//! them inside a rotation (flush, fsync, rename, open), and after every kill
//! checks that the files (`out.1`, `out.2`, …, then `out`) hold exactly the lines
//! `0..n` in order — every acknowledged one, none twice, no torn or foreign line —
//! and that the next child reopens them and appends after them.
//!
//! The child is this test binary, run again with `WEIR_FILE_SINK_CHILD` naming
//! the output: [`child`] is a no-op otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::crash::{Child, clock_seed, kill_loop};
use weir::file::{FileFlowExt, FileSink, Fsync, Naming};
use weir::prelude::*;
use weir::{Pipeline, Runtime};

const KILLS: u32 = 1_000;
/// Bytes per line: eight digits and the newline.
const LINE: usize = 9;

/// The files of the output `path` in the order they were written: the
/// numbered rotated ones, then the active one if it exists.
fn parts(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let file = entry.file_name().into_string().ok()?;
            let n = file.strip_prefix(name)?.strip_prefix('.')?.parse().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    numbered.sort();
    let mut files: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

/// The lines the output holds, checked to be `0..n` in order, each whole:
/// `Err` names the first that is not.
fn written(path: &Path) -> Result<u64, String> {
    let mut next = 0_u64;
    for file in parts(path) {
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        if bytes.len() % LINE != 0 {
            return Err(format!(
                "{}: {} bytes, a torn line at the end",
                file.display(),
                bytes.len()
            ));
        }
        for line in bytes.chunks(LINE) {
            let expected = format!("{next:08}\n");
            if line != expected.as_bytes() {
                return Err(format!(
                    "{}: {:?} where line {next} belongs",
                    file.display(),
                    String::from_utf8_lossy(line)
                ));
            }
            next += 1;
        }
    }
    Ok(next)
}

/// Writes the lines after those already there until killed, printing the
/// number of lines known to be durable whenever it grows.
fn run_child(path: &Path) {
    let start = written(path).expect("the output as the last run left it");
    let rt = Runtime::builder().arbiters(1).build().expect("runtime");
    let sink = FileSink::new(path)
        .append(true)
        .fsync(Fsync::EveryElements(7))
        .rotate(600, Naming::Numbered);
    let stats = sink.stats();
    let _running = Pipeline::from_iter(start..)
        .map(|i| format!("{i:08}"))
        .to_file(sink)
        .run(&rt)
        .expect("run");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut acked = 0;
    loop {
        let synced = stats.synced_elements();
        if synced > acked {
            acked = synced;
            writeln!(out, "{}", start + synced).unwrap();
            out.flush().unwrap();
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Runs the writer when started as the child; does nothing in a normal run.
#[test]
fn child() {
    if let Some(path) = std::env::var_os("WEIR_FILE_SINK_CHILD") {
        run_child(Path::new(&path));
    }
}

#[test]
fn killed_at_1000_random_points_a_rotating_file_sink_keeps_every_durable_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    let seed = clock_seed();
    let started = Instant::now();
    let mut acked_max = 0_u64;
    let mut before = 0_u64;
    let mut grew = 0_u32;
    let child = Child::new("file_sink_crash::child", "WEIR_FILE_SINK_CHILD", &path);
    kill_loop(child, KILLS, seed, |kill, acked| {
        acked_max = acked.into_iter().fold(acked_max, u64::max);

        let n = written(&path).unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: {e}"));
        assert!(
            acked_max <= n,
            "seed {seed}, kill {kill}: {acked_max} lines were acknowledged as durable, \
             the files hold {n}"
        );
        if n > before {
            grew += 1;
        }
        before = n;
    });
    let files = parts(&path).len();
    // Every run appended (it acknowledged a sync before it was killed), and the
    // runs rotated many times: kills fell inside rotations as well as between.
    assert_eq!(grew, KILLS, "seed {seed}");
    assert!(files > 100, "seed {seed}: only {files} files");
    eprintln!(
        "file sink: {KILLS} kills in {:.1} s, {before} lines in {files} files (seed {seed})",
        started.elapsed().as_secs_f64()
    );
}
