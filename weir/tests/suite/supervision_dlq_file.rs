//! Dead letters into a durable file, and replayed from it into a later pipeline.

use weir::prelude::*;
use weir::supervisor::dead_letter::{FileDlqWriter, SharedFileDlq};

fn rt() -> Runtime {
    Runtime::builder().arbiters(1).build().unwrap()
}

/// Runs a pipeline whose poison elements (multiples of 7) go to a file DLQ.
fn write_dead_letters(path: &std::path::Path) {
    let sink = SharedFileDlq::new(FileDlqWriter::<u64>::create(path).unwrap());
    let policy = SupervisionPolicy::default().action(ErrorClass::Panic, Action::DeadLetter);
    let done = Pipeline::from_iter(0..100_u64)
        .supervise(Supervision::new(policy).dead_letters_to(sink.clone()))
        .map(|x| {
            if x % 7 == 0 {
                panic!("cannot take {x}")
            } else {
                x
            }
        })
        .name("picky")
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(done.report.dead_lettered(), 15);
    done.report.check_conservation().unwrap();
    sink.flush().unwrap();
    assert_eq!(sink.record_count(), 15);
}

#[test]
fn dead_letters_written_to_a_file_are_replayed_into_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("picky.dlq");
    write_dead_letters(&path);

    let done = Pipeline::replay_dead_letters::<u64>(&path)
        .unwrap()
        .map(|letter| (letter.element, letter.stage, letter.error))
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    let elements: Vec<u64> = done.output.iter().map(|(x, _, _)| *x).collect();
    assert_eq!(
        elements,
        (0..100).filter(|x| x % 7 == 0).collect::<Vec<_>>()
    );
    assert!(
        done.output
            .iter()
            .all(|(_, stage, error)| stage == "picky" && error.contains("cannot take"))
    );
}

#[test]
fn a_torn_last_record_ends_the_replay_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.dlq");
    write_dead_letters(&path);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let done = Pipeline::replay_dead_letters::<u64>(&path)
        .unwrap()
        .map(|letter| letter.element)
        .collect()
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap();
    // Every complete record; the torn one (the crash point) is not invented.
    assert_eq!(
        done.output,
        (0..98).filter(|x| x % 7 == 0).collect::<Vec<_>>()
    );
}

#[test]
fn a_corrupt_record_fails_the_replay_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.dlq");
    write_dead_letters(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // Header (10 bytes), then the first record's length and CRC (8 bytes): flip a
    // payload byte.
    bytes[20] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let err = Pipeline::replay_dead_letters::<u64>(&path)
        .unwrap()
        .map(|letter| letter.element)
        .collect()
        .name("out")
        .run(&rt())
        .unwrap()
        .wait()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("dead-letter file") && text.contains("offset"),
        "{text}"
    );
    assert!(Pipeline::replay_dead_letters::<u64>(dir.path().join("missing.dlq")).is_err());
}
