//! The file source and sink: resuming from an offset, over-long lines into the
//! dead letters, bounded memory, rotation by size, the fsync policy, build and
//! write errors.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use weir::file::{FileSink, FileSource, Fsync, Line, Naming};
use weir::prelude::*;

use common::rt1;

/// `n` lines of varied lengths, `\r\n` on every seventh.
fn text(n: usize) -> String {
    (0..n)
        .map(|i| {
            let end = if i % 7 == 3 { "\r\n" } else { "\n" };
            format!("line {i} {}{end}", "x".repeat(i % 13))
        })
        .collect()
}

fn texts(lines: &[Line]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

fn read_lines(source: FileSource) -> Completion<Vec<Line>> {
    let done = Pipeline::file_lines(source)
        .collect()
        .default_capacity(8)
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    done
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn resume_from_each_checkpoint_yields_exactly_the_remaining_lines() {
    let dir = tempfile::tempdir().unwrap();
    let content = text(300);
    let path = write(dir.path(), "in.txt", &content);
    let all = read_lines(FileSource::lines(&path).read_buffer(64)).output;
    let expected: Vec<String> = content.lines().map(str::to_owned).collect();
    assert_eq!(texts(&all), expected);
    // Offsets chain through the whole file.
    let mut at = 0;
    for line in &all {
        assert_eq!(line.offset, at);
        at = line.next_offset;
    }
    assert_eq!(at, content.len() as u64);
    for k in [0, 1, 57, 150, 299] {
        let source = FileSource::lines(&path).from_offset(all[k].next_offset);
        let stats = source.stats();
        let rest = read_lines(source).output;
        assert_eq!(rest, all[k + 1..], "resumed after line {k}");
        assert_eq!(stats.offset(), content.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Reading up to a checkpoint, then resuming from it, gives every line once
    /// in order, whatever the lines, the buffer size and the checkpoint.
    #[test]
    fn stop_and_resume_loses_and_repeats_nothing(
        lines in proptest::collection::vec("[a-z ]{0,40}", 1..60),
        buffer in 1_usize..50,
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let content: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let path = write(dir.path(), "in.txt", &content);
        let first = read_lines(FileSource::lines(&path).read_buffer(buffer)).output;
        let k = cut.index(first.len());
        let mut got = texts(&first[..=k]);
        let rest = read_lines(
            FileSource::lines(&path).read_buffer(buffer).from_offset(first[k].next_offset),
        );
        got.extend(texts(&rest.output));
        prop_assert_eq!(got, lines);
    }
}

#[test]
fn an_overlong_line_is_dead_lettered_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "z".repeat(300_000);
    let content = format!("first\nsecond\n{huge}\nafter\nbad \u{1}\n");
    let mut bytes = content.into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\nlast\n");
    let path = dir.path().join("in.txt");
    std::fs::write(&path, &bytes).unwrap();
    let dead = MemoryDlq::new(10);
    let source = FileSource::lines(&path)
        .max_line_bytes(1024)
        .read_buffer(4096)
        .dead_letters(dead.clone())
        .name("input");
    let stats = source.stats();
    let done = read_lines(source);
    assert_eq!(
        texts(&done.output),
        ["first", "second", "after", "bad \u{1}", "last"]
    );
    let letters = dead.drain();
    assert_eq!(letters.len(), 2);
    let long = &letters[0];
    assert_eq!(long.element.offset, 13);
    assert_eq!(long.element.next_offset, 13 + 300_001);
    assert_eq!(long.element.text.len(), weir::file::SAMPLE_BYTES);
    assert_eq!(long.stage, "input_check");
    assert!(
        long.error.contains(&path.display().to_string()),
        "{}",
        long.error
    );
    assert!(
        long.error.contains("byte offset 13 is 300000 bytes"),
        "{}",
        long.error
    );
    let offset = (13 + 300_001 + 6 + 6) as u64;
    assert_eq!(letters[1].element.offset, offset);
    assert!(
        letters[1]
            .error
            .contains(&format!("byte offset {offset} is not valid UTF-8"))
    );
    assert_eq!(done.report.dead_lettered(), 2);
    assert_eq!(stats.rejected(), 2);
    assert!(stats.peak_buffered_bytes() <= 4096 + 1025);
}

#[test]
fn without_dead_letters_an_overlong_line_fails_the_pipeline_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "in.txt", &format!("ok\n{}\n", "y".repeat(100)));
    let err = Pipeline::file_lines(FileSource::lines(&path).max_line_bytes(10))
        .collect()
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap_err();
    err.report().unwrap().check_conservation().unwrap();
    let message = err.to_string();
    assert!(
        message.contains("byte offset 3 is 100 bytes, over max_line_bytes 10"),
        "{message}"
    );
}

/// A large file through a slow consumer: the source reads only as far ahead as
/// the credit of the pipeline allows, and holds at most its buffer and one line.
#[test]
fn memory_and_read_ahead_stay_bounded_on_a_large_file() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!("{}\n", "m".repeat(99));
    let n = 80_000; // 8 MB
    let path = dir.path().join("big.txt");
    std::fs::write(&path, line.repeat(n)).unwrap();
    let source = FileSource::lines(&path)
        .read_buffer(8192)
        .max_line_bytes(512);
    let stats = source.stats();
    let probe = Arc::clone(&stats);
    let ahead = Arc::new(AtomicU64::new(0));
    let worst = Arc::clone(&ahead);
    let count = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&count);
    let done = Pipeline::file_lines(source)
        .for_each(move |l: Line| {
            // How far the reader is past the line being consumed now.
            let lead = probe.bytes_read() - l.offset;
            worst.fetch_max(lead, Ordering::Relaxed);
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .default_capacity(16)
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    assert_eq!(count.load(Ordering::Relaxed), n as u64);
    assert!(
        stats.peak_buffered_bytes() <= 8192 + 513,
        "{}",
        stats.peak_buffered_bytes()
    );
    // 3 edges of 16, their batches and the buffer: far less than the 8 MB file.
    let lead = ahead.load(Ordering::Relaxed);
    assert!(lead <= 8192 + 4 * 16 * 100 * 2, "read {lead} bytes ahead");
    for stage in &done.report.stages {
        assert!(stage.peak_occupancy <= stage.capacity.max(1), "{stage:?}");
    }
}

#[test]
fn chunks_cover_the_file_and_resume_from_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..10_000_u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.path().join("bin");
    std::fs::write(&path, &bytes).unwrap();
    let run = |source| {
        // A chunk is not a serde type (collect's bound): gather its fields.
        let done = Pipeline::file_chunks(source)
            .map(|c| (c.offset, c.next_offset, c.bytes))
            .collect()
            .run(&rt1())
            .unwrap()
            .wait()
            .unwrap();
        done.report.check_conservation().unwrap();
        done.output
    };
    let chunks = run(FileSource::chunks(&path, 999).read_buffer(256));
    assert_eq!(chunks.len(), 11);
    assert!(chunks[..10].iter().all(|c| c.2.len() == 999));
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.2.clone()).collect();
    assert_eq!(joined, bytes);
    let rest = run(FileSource::chunks(&path, 999).from_offset(chunks[4].1));
    assert_eq!(rest, chunks[5..]);
}

fn elements(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("element {i:05}")).collect()
}

fn write_all(sink: FileSink, items: Vec<String>) -> Completion<Arc<weir::file::FileSinkStats>> {
    let done = Pipeline::from_iter(items)
        .to_file(sink)
        .default_capacity(8)
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
    done
}

#[test]
fn rotation_keeps_every_file_within_the_bound_and_every_element_in_order() {
    for naming in [Naming::Numbered, Naming::Timestamped] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let items = elements(2_000); // 14 bytes each with the newline
        let done = write_all(
            FileSink::new(&path).rotate(1_000, naming).buffer(100),
            items.clone(),
        );
        let stats = done.output;
        let mut files = stats.rotated_files();
        assert_eq!(files.len() as u64, stats.rotations());
        assert_eq!(files.len(), 2_000 * 14 / 994); // 71 elements (994 bytes) a file
        if naming == Naming::Numbered {
            for (i, f) in files.iter().enumerate() {
                assert_eq!(f, &dir.path().join(format!("out.log.{}", i + 1)));
            }
        } else {
            let mut sorted = files.clone();
            sorted.sort();
            assert_eq!(sorted, files, "timestamped names sort in write order");
        }
        files.push(path.clone());
        let mut all = String::new();
        for f in &files {
            let content = std::fs::read_to_string(f).unwrap();
            assert!(
                content.len() <= 1_000,
                "{} has {} bytes",
                f.display(),
                content.len()
            );
            all.push_str(&content);
        }
        assert_eq!(all.lines().collect::<Vec<_>>(), items);
        assert_eq!((stats.elements(), stats.bytes()), (2_000, 28_000));
        // OnCompletion syncs each rotated file once, and the last at the end.
        assert_eq!(stats.fsyncs(), stats.rotations() + 1);
    }
}

#[test]
fn a_second_run_continues_the_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    write_all(
        FileSink::new(&path).rotate(30, Naming::Numbered),
        elements(5),
    );
    let second = write_all(
        FileSink::new(&path)
            .rotate(30, Naming::Numbered)
            .append(true),
        elements(4),
    );
    // The first run left out.1, out.2 and 1 element in `out`; appending 4 more
    // rotates it to out.3 (2 elements) and leaves out.4 and `out`.
    assert_eq!(
        second.output.rotated_files(),
        [dir.path().join("out.3"), dir.path().join("out.4")]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.3")).unwrap(),
        "element 00004\nelement 00000\n"
    );
}

#[test]
fn the_fsync_policy_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (Fsync::Never, 95, 0),
        (Fsync::OnCompletion, 95, 1),
        (Fsync::EveryElements(10), 95, 10),
        (Fsync::EveryElements(10), 100, 10),
        (Fsync::EveryElements(1), 7, 7),
    ];
    for (i, (policy, n, fsyncs)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("f{i}"));
        let stats = write_all(FileSink::new(&path).fsync(policy), elements(n)).output;
        assert_eq!(stats.fsyncs(), fsyncs, "{policy:?} over {n}");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), n);
    }
}

/// `Fsync::Every` on paused time: a sync a second after the first unsynced write,
/// none while nothing is written, one at completion only if something is left.
#[test]
fn the_fsync_interval_follows_the_stage_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timed");
    let sink = FileSink::new(&path).fsync(Fsync::Every(Duration::from_secs(1)));
    let stats = sink.stats();
    let probe = Arc::clone(&stats);
    common::paused(|rt| async move {
        let (ingress, flow) = Pipeline::ingress::<String>(4);
        let running = flow.to_file(sink).run(&rt).unwrap();
        for round in 0..3 {
            for i in 0..3 {
                ingress.send(format!("r{round} e{i}")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(probe.fsyncs(), round, "before the interval");
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(probe.fsyncs(), round + 1, "after the interval");
        }
        ingress.send("tail".to_owned()).await.unwrap();
        drop(ingress);
        let done = running.await.unwrap();
        done.report.check_conservation().unwrap();
    });
    assert_eq!(stats.fsyncs(), 4);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 10);
}

#[test]
fn bad_arguments_are_build_errors_naming_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "in", "a\n");
    let build = |flow: Flow<Line>| {
        flow.collect()
            .run(&rt1())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let missing = build(Pipeline::file_lines(
        FileSource::lines(dir.path().join("nope")).name("src"),
    ));
    assert!(
        missing.contains("stage `src`") && missing.contains("nope"),
        "{missing}"
    );
    let is_dir = build(Pipeline::file_lines(FileSource::lines(dir.path())));
    assert!(
        is_dir.contains("file_lines#0") && is_dir.contains("not a regular file"),
        "{is_dir}"
    );
    let zero = build(Pipeline::file_lines(
        FileSource::lines(&path).max_line_bytes(0),
    ));
    assert!(zero.contains("max_line_bytes must be at least 1"), "{zero}");
    let chunk = Pipeline::file_chunks(FileSource::chunks(&path, 0))
        .map(|c| c.bytes)
        .collect()
        .run(&rt1());
    assert!(
        chunk
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("chunk_bytes")
    );
    let sink = |s: FileSink| {
        Pipeline::from_iter(["x"])
            .to_file(s)
            .run(&rt1())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let no_dir = sink(FileSink::new(dir.path().join("no/such/file")));
    assert!(
        no_dir.contains("to_file#1") && no_dir.contains("directory does not exist"),
        "{no_dir}"
    );
    assert!(sink(FileSink::new(&path).rotate(0, Naming::Numbered)).contains("max_bytes"));
    assert!(sink(FileSink::new(&path).fsync(Fsync::EveryElements(0))).contains("fsync"));
}

/// `/dev/full` refuses every write: the sink's stage fails with the file's name,
/// and the accounting still balances.
#[test]
fn a_write_error_fails_the_sink_stage() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let err = Pipeline::from_iter(elements(50))
        .to_file(FileSink::new("/dev/full").buffer(16))
        .run(&rt1())
        .unwrap()
        .wait()
        .unwrap_err();
    let report = err.report().unwrap();
    report.check_conservation().unwrap();
    assert!(matches!(err, PipelineError::StageFailed { ref stage, .. } if stage == "to_file#1"));
    assert!(err.to_string().contains("/dev/full"), "{err}");
    assert_eq!(report.stage("to_file#1").unwrap().failed, 1);
}
