//! The file dead-letter queue under checkpoints: supervised stages dead-letter
//! into a `SharedFileDlq`, the pipeline is aborted (a crash) after a checkpoint
//! and started again, and the file holds every dead letter exactly once — with
//! one stage, with two stages sharing the file whose barrier passes are far
//! apart, and before the first checkpoint. A file that no longer holds what the
//! checkpoint recorded is refused, naming it.
//!
//! The source is gated (the test says how far it may go), so every abort comes
//! at a known point; the waits poll counters, they do not sleep for timing.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use weir::checkpoint::{CheckpointConfig, Checkpointable, RestoreContext, Snapshot, StateError};
use weir::operator::{Io, Operator, Step};
use weir::prelude::*;
use weir::supervisor::dead_letter::{DlqError, FileDlqReader, FileDlqWriter, SharedFileDlq};
use weir::{BuildError, Flow};

/// How far the source may go; the test raises it.
#[derive(Default)]
pub(crate) struct Gate {
    allowed: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    pub(crate) fn open_to(&self, n: u64) {
        self.allowed.store(n, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    /// Whether element `n` may go; if not, `cx` is woken when the gate opens.
    pub(crate) fn allows(&self, n: u64, cx: &Context<'_>) -> bool {
        if n < self.allowed.load(Ordering::SeqCst) {
            return true;
        }
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        // Opened between the check and storing the waker: go on.
        n < self.allowed.load(Ordering::SeqCst)
    }
}

/// Emits `0..end`, no further than its gate allows; resumes from its position.
pub(crate) struct Numbers {
    next: u64,
    end: u64,
    gate: Arc<Gate>,
}

impl Numbers {
    pub(crate) fn new(end: u64, gate: &Arc<Gate>) -> Self {
        Numbers {
            next: 0,
            end,
            gate: Arc::clone(gate),
        }
    }
}

impl Checkpointable for Numbers {
    fn snapshot(&mut self, _: u64) -> Result<Snapshot, StateError> {
        Snapshot::of(1, &self.next)
    }
    fn restore(&mut self, s: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        self.next = s.decode(1, ctx)?;
        Ok(())
    }
}

impl Operator for Numbers {
    type In = Infallible;
    type Out = u64;
    fn kind(&self) -> &'static str {
        "numbers"
    }
    fn step(&mut self, io: &mut Io<'_, Infallible, u64>, cx: &mut Context<'_>) -> Step {
        while io.has_room() && self.next < self.end {
            if !self.gate.allows(self.next, cx) {
                return Step::Continue;
            }
            io.push(self.next);
            self.next += 1;
        }
        if self.next == self.end || io.input_ended() {
            return Step::Finished;
        }
        Step::Continue
    }
    fn checkpoint(&mut self) -> Option<&mut dyn Checkpointable> {
        Some(self)
    }
}

fn rt() -> Runtime {
    Runtime::builder().arbiters(2).build().unwrap()
}

pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The file, opened to go on appending (as a restarted process does), once the
/// actors of the pipeline that had it open have all been dropped.
pub(crate) fn open<T>(path: &Path) -> SharedFileDlq<T> {
    let mut writer = None;
    wait_until(
        "the last run to let go of the file",
        || match FileDlqWriter::<T>::open_append(path) {
            Ok(w) => {
                writer = Some(w);
                true
            }
            Err(DlqError::Locked) => false,
            Err(e) => panic!("{e}"),
        },
    );
    SharedFileDlq::new(writer.unwrap())
}

/// `(stage, element)` of every letter in the file, in file order.
fn letters(path: &Path) -> Vec<(String, u64)> {
    let read = FileDlqReader::<u64>::open(path)
        .unwrap()
        .read_all()
        .unwrap();
    assert!(read.tail.is_clean(), "{:?}", read.tail);
    read.letters
        .into_iter()
        .map(|l| (l.stage, l.element))
        .collect()
}

/// Fails `x` (a permanent error: dead-lettered) when `bad(x)`.
fn reject(bad: impl Fn(u64) -> bool) -> impl FnMut(u64) -> Result<u64, Failure> {
    move |x| {
        if bad(x) {
            Err(Failure::error(ErrorClass::Permanent, format!("{x} is bad")))
        } else {
            Ok(x)
        }
    }
}

fn config(dir: &Path) -> CheckpointConfig {
    CheckpointConfig::new(dir).without_fsync()
}

const END: u64 = 300;

/// numbers → picky (dead-letters multiples of 7 into the file) → collect.
fn one_writer(dir: &Path, dlq: &SharedFileDlq<u64>, gate: &Arc<Gate>) -> weir::Runnable<Vec<u64>> {
    Flow::from_source(Numbers::new(END, gate))
        .name("numbers")
        .supervise(Supervision::default().dead_letters_to(dlq.clone()))
        .try_map(reject(|x| x % 7 == 0))
        .name("picky")
        .collect()
        .checkpoints(config(dir))
}

fn sevens(range: std::ops::Range<u64>) -> u64 {
    range.filter(|x| x % 7 == 0).count() as u64
}

/// Aborted before any checkpoint, then after one with letters written since,
/// then run to the end: the file holds the letter it had before the first run
/// and each dead letter of the job once, in order; run again after the end, it
/// is unchanged.
#[test]
fn a_restart_after_an_abort_holds_each_dead_letter_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, path) = (dir.path().join("ckpt"), dir.path().join("picky.dlq"));
    {
        // A letter from before this job: it stays.
        let earlier = open::<u64>(&path);
        let failure = Failure::error(ErrorClass::Permanent, "earlier");
        let letter = DeadLetter::new(9_999, "earlier", "other", &failure, 1, 0);
        weir::supervisor::dead_letter::DeadLetterSink::offer(&earlier, letter).unwrap();
    }
    let rt = rt();
    // Each run opens the file again, as a restarted process does.
    let dlq = open(&path);

    // Run 1: no checkpoint completes; 0..50 dead-lettered, then a crash.
    let gate = Arc::new(Gate::default());
    let running = one_writer(&ckpt, &dlq, &gate).run(&rt).unwrap();
    gate.open_to(50);
    wait_until("run 1's letters", || {
        dlq.record_count() == 1 + sevens(0..50)
    });
    let _ = futures::executor::block_on(running.abort());
    drop(dlq);

    // Run 2: no checkpoint to restore; the file is cut back to where run 1 found
    // it. A checkpoint at 100, letters up to 200, a crash.
    let gate = Arc::new(Gate::default());
    let dlq = open(&path);
    assert_eq!(dlq.record_count(), 1 + sevens(0..50));
    let running = one_writer(&ckpt, &dlq, &gate).run(&rt).unwrap();
    assert_eq!(
        dlq.record_count(),
        1,
        "cut back to where the first run found it"
    );
    gate.open_to(100);
    wait_until("run 2's letters before the checkpoint", || {
        dlq.record_count() == 1 + sevens(0..100)
    });
    let info = futures::executor::block_on(running.checkpoint()).unwrap();
    assert!(
        info.stages
            .iter()
            .any(|(s, _)| s.starts_with("dead-letters:")),
        "{info:?}"
    );
    gate.open_to(200);
    wait_until("run 2's letters after the checkpoint", || {
        dlq.record_count() == 1 + sevens(0..200)
    });
    let _ = futures::executor::block_on(running.abort());
    drop(dlq);

    // Run 3: restored; 100..300 replayed, their letters written once.
    let gate = Arc::new(Gate::default());
    gate.open_to(END);
    let dlq = open(&path);
    let done = one_writer(&ckpt, &dlq, &gate)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        done.report.checkpoint.as_ref().unwrap().restored_from,
        Some(info.id)
    );
    assert_eq!(
        done.output,
        (0..END).filter(|x| x % 7 != 0).collect::<Vec<_>>()
    );
    let mut want = vec![("earlier".to_owned(), 9_999)];
    want.extend(
        (0..END)
            .filter(|x| x % 7 == 0)
            .map(|x| ("picky".to_owned(), x)),
    );
    assert_eq!(letters(&path), want);
    drop(dlq);

    // Run 4, after the end: no work, the file as it was.
    let dlq = open(&path);
    let done = one_writer(&ckpt, &dlq, &gate)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.report.dead_lettered(), 0);
    drop(dlq);
    assert_eq!(letters(&path), want);
}

/// Two stages dead-letter into one file. At the second checkpoint the second
/// stage is held up (blocked on another arbiter) before its barrier, while the
/// first passes the barrier and dead-letters the elements after it: those
/// letters wait out of the file until the second stage has passed too (and its
/// own letters before the barrier are in). Aborted after more letters of both,
/// restarted: every letter of each stage once.
#[test]
fn two_stages_sharing_one_file_hold_each_dead_letter_once_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, path) = (dir.path().join("ckpt"), dir.path().join("shared.dlq"));
    let rt = rt();
    let a_seen = Arc::new(AtomicU64::new(0));
    let b_seen = Arc::new(AtomicU64::new(0));
    let block_at_150 = Arc::new(AtomicBool::new(false));
    let (blocked_tx, blocked_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocked_tx = Arc::new(Mutex::new(blocked_tx));
    let release_rx = Arc::new(Mutex::new(release_rx));
    let job = |dlq: &SharedFileDlq<u64>, gate: &Arc<Gate>| {
        let (a_seen, b_seen) = (Arc::clone(&a_seen), Arc::clone(&b_seen));
        let block = Arc::clone(&block_at_150);
        let (blocked, release) = (Arc::clone(&blocked_tx), Arc::clone(&release_rx));
        let mut sevens = reject(|x| x % 7 == 0);
        let mut fives = reject(|x| x % 5 == 0);
        Flow::from_source(Numbers::new(END, gate))
            .name("numbers")
            .on_arbiter(0)
            .supervise(Supervision::default().dead_letters_to(dlq.clone()))
            .try_map(move |x| {
                a_seen.fetch_add(1, Ordering::SeqCst);
                sevens(x)
            })
            .name("sevens")
            .on_arbiter(0)
            .supervise(Supervision::default().dead_letters_to(dlq.clone()))
            .try_map(move |x| {
                if x == 150 && block.swap(false, Ordering::SeqCst) {
                    blocked.lock().unwrap().send(()).unwrap();
                    release.lock().unwrap().recv().unwrap();
                }
                b_seen.fetch_add(1, Ordering::SeqCst);
                fives(x)
            })
            .name("fives")
            .on_arbiter(1)
            .capacity(1024)
            .collect()
            .checkpoints(config(&ckpt))
    };
    let not_seven = |r: std::ops::Range<u64>| r.filter(|x| x % 7 != 0).count() as u64;
    let count = |stage: &str, path: &Path| letters(path).iter().filter(|(s, _)| s == stage).count();

    let gate = Arc::new(Gate::default());
    let dlq = SharedFileDlq::new(FileDlqWriter::<u64>::create(&path).unwrap());
    let running = job(&dlq, &gate).run(&rt).unwrap();
    gate.open_to(100);
    wait_until("both stages through 0..100", || {
        b_seen.load(Ordering::SeqCst) == not_seven(0..100)
    });
    futures::executor::block_on(running.checkpoint()).unwrap();

    // Checkpoint 2's barrier comes after 199; `fives` stops at 150 until told.
    block_at_150.store(true, Ordering::SeqCst);
    gate.open_to(200);
    blocked_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // Triggered now (barrier 2 goes in at the source, after 199), awaited later.
    let second = running.checkpoint();
    gate.open_to(END);
    wait_until("sevens through everything", || {
        a_seen.load(Ordering::SeqCst) == END
    });
    // `sevens` passed barrier 2 and dead-lettered 200..300: held, not in the file.
    dlq.flush().unwrap();
    assert_eq!(count("sevens", &path) as u64, sevens(0..200));
    assert_eq!(
        count("fives", &path),
        (0..150).filter(|x| x % 7 != 0 && x % 5 == 0).count()
    );
    release_tx.send(()).unwrap();
    futures::executor::block_on(second).unwrap();
    wait_until("fives through everything", || {
        b_seen.load(Ordering::SeqCst) == not_seven(0..END)
    });
    let _ = futures::executor::block_on(running.abort());
    let before = letters(&path);
    assert_eq!(
        before.len(),
        before
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );

    // Restarted from checkpoint 2: 200..300 replayed.
    let gate = Arc::new(Gate::default());
    gate.open_to(END);
    let done = job(&dlq, &gate).run(&rt).unwrap().wait().unwrap();
    assert!(done.report.checkpoint.unwrap().restored_from.is_some());
    assert_eq!(
        done.output,
        (0..END)
            .filter(|x| x % 7 != 0 && x % 5 != 0)
            .collect::<Vec<_>>()
    );
    drop(dlq);
    let mut got = letters(&path);
    got.sort();
    let mut want: Vec<(String, u64)> = (0..END)
        .filter(|x| x % 7 == 0)
        .map(|x| ("sevens".to_owned(), x))
        .chain(
            (0..END)
                .filter(|x| x % 7 != 0 && x % 5 == 0)
                .map(|x| ("fives".to_owned(), x)),
        )
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// A file cut shorter than the checkpoint recorded (or replaced) is refused,
/// naming it; `discard_state` with the record's name keeps it as it is.
#[test]
fn a_file_shorter_than_its_checkpoint_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, path) = (dir.path().join("ckpt"), dir.path().join("picky.dlq"));
    let rt = rt();
    let gate = Arc::new(Gate::default());
    gate.open_to(END);
    let dlq = open(&path);
    one_writer(&ckpt, &dlq, &gate)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    drop(dlq);
    // Someone cut the file back to its header.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(10)
        .unwrap();

    let dlq = open(&path);
    let err = one_writer(&ckpt, &dlq, &gate).run(&rt).unwrap_err();
    let BuildError::CheckpointMismatch { stage, reason, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        stage.starts_with("dead-letters:") && stage.ends_with("picky.dlq"),
        "{err}"
    );
    assert!(
        reason.contains("picky.dlq")
            && reason.contains("truncated")
            && reason.contains("discard_state"),
        "{err}"
    );
    let name = stage.clone();
    drop(dlq);

    let dlq = open(&path);
    let done = Flow::from_source(Numbers::new(END, &gate))
        .name("numbers")
        .supervise(Supervision::default().dead_letters_to(dlq.clone()))
        .try_map(reject(|x| x % 7 == 0))
        .name("picky")
        .collect()
        .checkpoints(config(&ckpt).discard_state(name))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.report.dead_lettered(), 0, "restored at the end");
    assert_eq!(dlq.record_count(), 0, "kept as it was");
}

/// One file, one checkpointed pipeline at a time; and a letter offered to it
/// from outside the pipeline's stages is refused while it runs.
#[test]
fn a_file_written_by_a_running_checkpointed_pipeline_is_not_shared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("picky.dlq");
    let rt = rt();
    let gate = Arc::new(Gate::default());
    let dlq = open(&path);
    let running = one_writer(&dir.path().join("a"), &dlq, &gate)
        .run(&rt)
        .unwrap();
    let err = one_writer(&dir.path().join("b"), &dlq, &gate)
        .run(&rt)
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidArgument { stage, message } if stage == "picky" && message.contains("picky.dlq")),
        "{err}"
    );
    let failure = Failure::error(ErrorClass::Permanent, "by hand");
    let letter = DeadLetter::new(1, "hand", "none", &failure, 1, 0);
    let (_, why) = weir::supervisor::dead_letter::DeadLetterSink::offer(&dlq, letter).unwrap_err();
    assert!(why.contains("outside its stages"), "{why}");
    gate.open_to(END);
    running.wait().unwrap();
    // Ended: the file is free again.
    let gate = Arc::new(Gate::default());
    gate.open_to(END);
    one_writer(&dir.path().join("b"), &dlq, &gate)
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
}
