//! Crash consistency of the file dead-letter queue: a child process appends
//! letters (fsync per record, the default) and prints each index once its
//! `append` returned; the test kills it with SIGKILL at 1,000 random points, each
//! after it acknowledged at least one letter, and after every kill checks that
//! the file reopens for append, and that it holds the letters `0..n` in order —
//! every acknowledged one, none twice, nothing corrupt (a torn last record at
//! most, which the next writer cuts off).
//!
//! The child is this test binary, run again with `WEIR_DLQ_CHILD` naming the
//! file: [`child`] is a no-op otherwise.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::common::crash::{Child, clock_seed, kill_loop};
use weir::supervisor::dead_letter::{DeadLetter, FileDlqReader, FileDlqWriter, Tail};
use weir::supervisor::{ErrorClass, Failure};

const KILLS: u32 = 1_000;

/// Appends letters `n, n+1, …` (n: the letters already there) until killed.
fn run_child(path: &Path) {
    let mut writer = if path.exists() {
        FileDlqWriter::<u64>::open_append(path).expect("reopen for append")
    } else {
        FileDlqWriter::<u64>::create(path).expect("create")
    };
    let failure = Failure::error(ErrorClass::Permanent, "crash test");
    let mut next = writer.record_count();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let letter = DeadLetter::new(next, "stage", "pipeline", &failure, 1, next);
        writer.append(&letter).expect("append");
        writeln!(out, "{next}").unwrap();
        out.flush().unwrap();
        next += 1;
    }
}

/// Runs the appender when started as the child; does nothing in a normal run.
#[test]
fn child() {
    if let Some(path) = std::env::var_os("WEIR_DLQ_CHILD") {
        run_child(Path::new(&path));
    }
}

#[test]
fn killed_at_1000_random_points_the_file_dlq_keeps_every_acknowledged_letter_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("letters.dlq");
    let seed = clock_seed();
    let started = Instant::now();
    let mut acked_max: Option<u64> = None;
    let child = Child::new("dlq_crash::child", "WEIR_DLQ_CHILD", &path);
    kill_loop(child, KILLS, seed, |kill, acked| {
        if let Some(&last) = acked.last() {
            acked_max = Some(acked_max.map_or(last, |m| m.max(last)));
        }

        let outcome = FileDlqReader::<u64>::open(&path)
            .unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: reopen: {e}"))
            .read_all()
            .unwrap();
        assert!(
            matches!(outcome.tail, Tail::Clean | Tail::Torn { .. }),
            "seed {seed}, kill {kill}: {:?}",
            outcome.tail
        );
        let got: Vec<u64> = outcome.letters.iter().map(|l| l.element).collect();
        let n = got.len() as u64;
        assert!(
            got.iter().copied().eq(0..n),
            "seed {seed}, kill {kill}: letters out of order or twice"
        );
        let max = acked_max.unwrap();
        assert!(
            max < n,
            "seed {seed}, kill {kill}: letter {max} was acknowledged but the file holds {n}"
        );
    });
    // The last reopen for append cuts a torn tail off and appends after it.
    let writer = FileDlqWriter::<u64>::open_append(&path).unwrap();
    assert!(writer.record_count() > u64::from(KILLS) / 2);
    eprintln!(
        "dlq_crash: {KILLS} kills, {} letters, {:?} (seed {seed})",
        writer.record_count(),
        started.elapsed()
    );
}
