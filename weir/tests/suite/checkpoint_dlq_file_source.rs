//! The file source's own dead letters (lines over `max_line_bytes`, given to
//! `FileSource::dead_letters`) under checkpoints: aborted after a checkpoint with
//! rejected lines dead-lettered since, then restored and run to the end, the
//! dead-letter file holds each rejected line once, in file order.
//!
//! A gate after the source says how far the lines may go, so the abort comes
//! after the source has read (and rejected) past the checkpoint; the waits poll
//! counters, they do not sleep for timing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Context;

use weir::checkpoint::CheckpointConfig;
use weir::file::{FileSource, Line};
use weir::operator::{Io, Operator, Step};
use weir::prelude::*;
use weir::supervisor::dead_letter::{FileDlqReader, SharedFileDlq};

use super::checkpoint_dlq::{Gate, open, wait_until};

const LINES: u64 = 3_000;
const MAX: usize = 16;

/// Every 10th line is longer than `MAX` bytes: the source rejects it.
fn long(i: u64) -> bool {
    i % 10 == 3
}

fn write_input(path: &Path) {
    let mut text = String::new();
    for i in 0..LINES {
        if long(i) {
            text.push_str(&format!("line {i} is far too long for the limit\n"));
        } else {
            text.push_str(&format!("line {i}\n"));
        }
    }
    std::fs::write(path, text).unwrap();
}

/// Passes lines on, no more than its gate allows; counts what it passed.
struct Gated {
    gate: Arc<Gate>,
    passed: Arc<AtomicU64>,
}

impl Operator for Gated {
    type In = Line;
    type Out = Line;
    fn kind(&self) -> &'static str {
        "gated"
    }
    fn step(&mut self, io: &mut Io<'_, Line, Line>, cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let passed = self.passed.load(Ordering::SeqCst);
            if !self.gate.allows(passed, cx) {
                return Step::Continue;
            }
            let Some(line) = io.pop() else { break };
            io.push(line);
            self.passed.fetch_add(1, Ordering::SeqCst);
        }
        io.finish_when_drained()
    }
}

fn job(
    input: &Path,
    ckpt: &Path,
    dlq: &SharedFileDlq<Line>,
    gate: &Arc<Gate>,
    passed: &Arc<AtomicU64>,
) -> weir::Runnable<Vec<Line>> {
    let source = FileSource::lines(input)
        .name("input")
        .max_line_bytes(MAX)
        .read_buffer(256)
        .dead_letters(dlq.clone());
    Pipeline::file_lines(source)
        .via(Gated {
            gate: Arc::clone(gate),
            passed: Arc::clone(passed),
        })
        .name("gated")
        .collect()
        .default_capacity(8)
        .checkpoints(CheckpointConfig::new(ckpt).without_fsync())
}

fn rejected(range: std::ops::Range<u64>) -> u64 {
    range.filter(|&i| long(i)).count() as u64
}

#[test]
fn the_file_sources_rejected_lines_are_dead_lettered_once_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (input, ckpt) = (dir.path().join("input.log"), dir.path().join("ckpt"));
    let path = dir.path().join("rejected.dlq");
    write_input(&input);
    let rt = Runtime::builder().arbiters(2).build().unwrap();

    // Run 1: a checkpoint once 500 lines passed the gate, then 1,000 lines
    // more, then a crash: the source has rejected lines past the checkpoint's.
    // The barrier waits behind the lines the gate holds, so the gate opens a
    // little at a time until the checkpoint completes.
    let (gate, passed) = (Arc::new(Gate::default()), Arc::new(AtomicU64::new(0)));
    let dlq = open(&path);
    let running = job(&input, &ckpt, &dlq, &gate, &passed).run(&rt).unwrap();
    let mut allowed = 500;
    gate.open_to(allowed);
    wait_until("500 lines", || passed.load(Ordering::SeqCst) == allowed);
    let checkpoint = std::thread::spawn({
        let done = running.checkpoint();
        move || futures::executor::block_on(done)
    });
    while !checkpoint.is_finished() {
        allowed += 4;
        assert!(allowed < LINES, "the checkpoint never completed");
        gate.open_to(allowed);
        wait_until("the gate's lines", || {
            passed.load(Ordering::SeqCst) == allowed || checkpoint.is_finished()
        });
    }
    let info = checkpoint.join().unwrap().unwrap();
    assert!(
        passed.load(Ordering::SeqCst) < 600,
        "the barrier came soon after 500"
    );
    allowed = passed.load(Ordering::SeqCst) + 1_000;
    gate.open_to(allowed);
    wait_until("1,000 lines more", || {
        passed.load(Ordering::SeqCst) == allowed
    });
    assert!(dlq.record_count() >= rejected(0..allowed));
    let _ = futures::executor::block_on(running.abort());
    drop(dlq);

    // Run 2: restored; the lines after the checkpoint are read again, and their
    // rejections are written once.
    let (gate, passed) = (Arc::new(Gate::default()), Arc::new(AtomicU64::new(0)));
    gate.open_to(LINES);
    let dlq = open(&path);
    let done = job(&input, &ckpt, &dlq, &gate, &passed)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        done.report.checkpoint.as_ref().unwrap().restored_from,
        Some(info.id)
    );
    assert_eq!(done.output.len() as u64, LINES - rejected(0..LINES));
    drop(dlq);
    let read = FileDlqReader::<Line>::open(&path)
        .unwrap()
        .read_all()
        .unwrap();
    assert!(read.tail.is_clean(), "{:?}", read.tail);
    let lines: Vec<u64> = read
        .letters
        .iter()
        .map(|l| {
            let number = l.element.text.split(' ').nth(1).unwrap();
            number.parse().unwrap()
        })
        .collect();
    let want: Vec<u64> = (0..LINES).filter(|&i| long(i)).collect();
    assert_eq!(lines, want, "each rejected line once, in file order");
    assert!(read.letters.iter().all(|l| l.stage == "input_check"));
}
