//! A loom model of the file dead-letter queue under concurrent appends
//! (`supervisor/src/dead_letter/order/engine.rs`, the engine behind
//! `SharedFileDlq` when a checkpointed pipeline writes it in checkpoint order).
//!
//! Stages on different arbiters append letters and pass checkpoint barriers
//! at once; every call takes the one lock of the `SharedFileDlq` (here loom's
//! `Mutex`, around the real engine and an in-memory file), and a coordinator
//! thread asks for the checkpoint's cut while they go on. Under every
//! interleaving of their calls:
//!
//! - once a checkpoint has a cut, the file before it holds **exactly** the
//!   letters every stage wrote before passing that barrier (none after);
//! - in the end every letter is in the file **once**, each stage's in the
//!   order it wrote them (appends never interleave or vanish).
//!
//! The writer's own append (one `write_all` of a whole record, under that
//! lock) is checked by the dead-letter crash test (1,000 SIGKILLs) instead:
//! it is file I/O, not shared memory.

use loom::sync::{Arc, Mutex};
use loom::thread;

use weir_supervisor::dead_letter::{DlqCut, DlqError, DlqPosition, RunId};

#[path = "../../supervisor/src/dead_letter/order/engine.rs"]
#[allow(dead_code)]
mod engine;

#[path = "../../supervisor/src/dead_letter/order/test_log.rs"]
mod test_log;

use engine::Order;
use test_log::Log;

/// `SharedFileDlq`'s `Shared`: the writer and the order, under one lock.
struct Shared {
    order: Order,
    file: Log,
}

type File = Arc<Mutex<Shared>>;

/// What a stage does, one locked call each.
#[derive(Clone, Copy)]
enum Step {
    Letter(u8),
    Pass(u64),
    Stop,
}

fn stage(file: &File, stage: usize, steps: Vec<Step>) -> thread::JoinHandle<()> {
    let file = Arc::clone(file);
    thread::spawn(move || {
        for step in steps {
            let mut shared = file.lock().unwrap();
            let Shared { order, file } = &mut *shared;
            match step {
                Step::Letter(n) => order.offer(stage, vec![n], file).unwrap(),
                Step::Pass(checkpoint) => order.passed(stage, checkpoint, file),
                Step::Stop => order.stopped(stage, file),
            }
        }
    })
}

fn sorted(letters: &[u8]) -> Vec<u8> {
    let mut letters = letters.to_vec();
    letters.sort_unstable();
    letters
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// Runs the stages' scripts against a coordinator that waits for checkpoint
/// 1's cut; `before` are the letters written before barrier 1, `after` the
/// rest.
fn check(scripts: Vec<Vec<Step>>, before: &[u8], after: &[u8]) {
    let file: File = Arc::new(Mutex::new(Shared {
        order: Order::new(RunId::new(), "job", scripts.len(), usize::MAX),
        file: Log::default(),
    }));
    let stages: Vec<_> = scripts
        .into_iter()
        .enumerate()
        .map(|(i, steps)| stage(&file, i, steps))
        .collect();
    // The coordinator: the cut exists once every stage passed the barrier.
    loop {
        let shared = file.lock().unwrap();
        if let Some(cut) = shared.order.cut(1) {
            let DlqCut::At(at) = cut else {
                panic!("no hold limit, yet the cut is unordered")
            };
            let prefix = &shared.file.0[..at.end as usize];
            assert_eq!(sorted(prefix), before, "the file before cut 1");
            break;
        }
        drop(shared);
        thread::yield_now();
    }
    for s in stages {
        s.join().unwrap();
    }
    let mut shared = file.lock().unwrap();
    let Shared { order, file } = &mut *shared;
    order.finish(file);
    let Some(DlqCut::At(at)) = order.cut(1) else {
        panic!("the cut of checkpoint 1 is gone")
    };
    let (prefix, rest) = file.0.split_at(at.end as usize);
    assert_eq!(sorted(prefix), before, "the file before cut 1");
    assert_eq!(sorted(rest), after, "the file after cut 1");
    // Each stage's letters in its order: numbered ascending per stage (tens).
    for tens in [10, 20, 30] {
        let mine: Vec<u8> = file
            .0
            .iter()
            .copied()
            .filter(|n| n / 10 * 10 == tens)
            .collect();
        assert!(
            mine.is_sorted(),
            "a stage's letters out of order: {:?}",
            file.0
        );
    }
}

/// Two stages, each writing a letter before and after barrier 1.
#[test]
fn a_cut_holds_exactly_the_letters_before_its_barrier() {
    model(|| {
        check(
            vec![
                vec![Step::Letter(10), Step::Pass(1), Step::Letter(11)],
                vec![Step::Letter(20), Step::Pass(1), Step::Letter(21)],
            ],
            &[10, 20],
            &[11, 21],
        );
    });
}

/// A stage that stops instead of passing the barrier holds nothing back, and
/// a stage that writes twice after the barrier keeps its order.
#[test]
fn a_stopping_stage_and_letters_held_back_keep_the_cut_exact() {
    model(|| {
        check(
            vec![
                vec![Step::Pass(1), Step::Letter(10), Step::Letter(11)],
                vec![Step::Letter(20), Step::Stop],
            ],
            &[20],
            &[10, 11],
        );
    });
}
