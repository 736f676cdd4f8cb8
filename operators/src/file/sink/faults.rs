//! Fault injection into the file sink: a failure, a short write, a kill or a
//! power loss at every open, write, fsync, rotation rename, directory sync,
//! commit rename and removal of a scenario. What was acknowledged as durable
//! is still there once, and the sink starts again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use weir_runtime::checkpoint::{Checkpointable, RestoreContext, Snapshot};
use weir_runtime::operator::Operator;
use weir_supervisor::fs::{FaultFs, Mode};

use super::{FileSink, FileWriteStage, Fsync};
use crate::file::Naming;

type Stage = FileWriteStage<Vec<u8>>;

fn lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line-{i}")).collect()
}

fn on(sink: FileSink, fs: &FaultFs) -> FileSink {
    FileSink {
        fs: Arc::new(fs.clone()),
        ..sink
    }
}

/// The visible files of `dir` and their contents, and the hidden ones' names.
fn files(dir: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    let mut visible = BTreeMap::new();
    let mut hidden = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            hidden.push(name);
        } else {
            visible.insert(name, std::fs::read_to_string(entry.path()).unwrap());
        }
    }
    hidden.sort();
    (visible, hidden)
}

/// Three lines of 7 bytes per file, synced every 2 lines.
fn plain(path: &Path) -> FileSink {
    FileSink::new(path)
        .rotate(21, Naming::Numbered)
        .fsync(Fsync::EveryElements(2))
}

/// Writes `input` and finishes; the first failure, with the synced count
/// before the call that failed.
fn run_plain(stage: &mut Stage, input: &[String]) -> Option<(String, u64)> {
    let stats = stage.sink.stats();
    for line in input {
        let synced = stats.synced_elements();
        if let Err(f) = stage.write(line.as_bytes()) {
            return Some((f.to_string(), synced));
        }
    }
    let synced = stats.synced_elements();
    stage.finish().err().map(|f| (f.to_string(), synced))
}

/// The stream as the files hold it: `out.1`, `out.2`, …, then `out`.
fn stream(dir: &Path) -> String {
    let (visible, _) = files(dir);
    let mut rotated: Vec<(u64, &String)> = visible
        .iter()
        .filter_map(|(name, text)| Some((name.strip_prefix("out.")?.parse().ok()?, text)))
        .collect();
    rotated.sort();
    let mut all: String = rotated.into_iter().map(|(_, t)| t.as_str()).collect();
    all.push_str(visible.get("out").map_or("", String::as_str));
    all
}

#[test]
fn a_fault_at_every_step_of_a_plain_sink_keeps_every_synced_line_once() {
    let input = lines(8);
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::default();
    fs.count();
    let mut stage = Stage::new(on(plain(&dir.path().join("out")), &fs));
    assert_eq!(run_plain(&mut stage, &input), None);
    drop(stage);
    let ops = fs.ops();
    let renames = ops.iter().filter(|op| op.starts_with("rename")).count();
    assert_eq!(renames, 2, "{ops:?}");
    // open, directory sync; for each of the 2 rotations, the fsync after 2
    // lines (write, sync), the one before it (write, sync), rename, open,
    // directory sync; the end (write, sync).
    assert_eq!(ops.len(), 18, "{ops:?}");

    for mode in Mode::ALL {
        for k in 0..ops.len() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out");
            let fs = FaultFs::default();
            fs.arm(k, mode);
            let mut stage = Stage::new(on(plain(&path), &fs));
            let (error, synced) = run_plain(&mut stage, &input)
                .unwrap_or_else(|| panic!("{mode:?} at {k}: no error"));
            let case = format!("{mode:?} at {k} ({})", fs.ops()[k]);
            // The failure names the sink's file.
            assert!(error.contains(&*path.to_string_lossy()), "{case}: {error}");
            drop(stage);
            if mode == Mode::PowerLoss {
                fs.lose_power();
            }
            // Every line synced is there, in order, once; after them at most
            // the lines written, the last perhaps torn.
            let text = stream(dir.path());
            let expected: String = input.iter().map(|l| format!("{l}\n")).collect();
            let whole = text.matches('\n').count();
            assert!(
                whole as u64 >= synced,
                "{case}: {text:?} lacks synced {synced}"
            );
            assert!(expected.starts_with(&text), "{case}: {text:?}");

            // The sink starts again on what is there (appending: at least once).
            let again = FaultFs::default();
            let mut stage = Stage::new(on(plain(&path).append(true), &again));
            stage.write(b"again").unwrap();
            stage
                .finish()
                .unwrap_or_else(|f| panic!("{case}: restart: {f}"));
            assert!(stream(dir.path()).starts_with(&text), "{case}");
        }
    }
}

/// Parts of 3 lines, committed with the checkpoints.
fn exactly_once(path: &Path) -> FileSink {
    FileSink::new(path)
        .rotate(21, Naming::Numbered)
        .exactly_once()
}

/// How far an exactly-once run got before its fault.
#[derive(Debug, Default)]
struct Progress {
    /// Checkpoint 1's snapshot, if it was taken.
    snapshot: Option<Snapshot>,
    /// Checkpoint 1 was durable and the sink told so (a restore must use it).
    committed: bool,
    error: Option<String>,
}

/// 4 lines, checkpoint 1 (its snapshot, then its commit), 6 more lines, the
/// end: stops at the first failure.
fn run_exactly_once(stage: &mut Stage, input: &[String]) -> Progress {
    let mut progress = Progress::default();
    for line in &input[..4] {
        if let Err(f) = stage.write(line.as_bytes()) {
            progress.error = Some(f.to_string());
            return progress;
        }
    }
    match stage.snapshot(1) {
        Ok(s) => progress.snapshot = Some(s),
        Err(e) => {
            progress.error = Some(e.to_string());
            return progress;
        }
    }
    progress.committed = true;
    stage.committed(1);
    if let Some(f) = stage.failed.take() {
        progress.error = Some(f.to_string());
        return progress;
    }
    for line in &input[4..] {
        if let Err(f) = stage.write(line.as_bytes()) {
            progress.error = Some(f.to_string());
            return progress;
        }
    }
    progress.error = stage.finish().err().map(|f| f.to_string());
    progress
}

#[test]
fn a_fault_at_every_step_of_an_exactly_once_sink_leaves_the_uninterrupted_output_after_recovery() {
    let input = lines(10);
    // What an uninterrupted run commits.
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::default();
    fs.count();
    let mut stage = Stage::new(on(exactly_once(&dir.path().join("out")), &fs));
    let progress = run_exactly_once(&mut stage, &input);
    assert_eq!(progress.error, None);
    drop(stage);
    let (expected, hidden) = files(dir.path());
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(expected.len(), 4);
    let ops = fs.ops();
    let renames = ops.iter().filter(|op| op.starts_with("rename")).count();
    // 1 rotated part at checkpoint 1; at the end the commit log into place,
    // 2 more rotated parts and the last one.
    assert_eq!(renames, 5, "{ops:?}");
    // 4 parts (open, writes, syncs), checkpoint 1's directory sync, its commit
    // (rename, directory sync), the final commit (log: open, write, sync,
    // rename, directory sync; 3 renames, directory sync; log removed,
    // directory sync).
    assert_eq!(ops.len(), 28, "{ops:?}");

    let mut recoveries = 0;
    for mode in Mode::ALL {
        for k in 0..ops.len() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("out");
            let fs = FaultFs::default();
            fs.arm(k, mode);
            let mut stage = Stage::new(on(exactly_once(&path), &fs));
            let progress = run_exactly_once(&mut stage, &input);
            let case = format!("{mode:?} at {k} ({})", fs.ops()[k]);
            let error = progress.error.unwrap_or_else(|| panic!("{case}: no error"));
            assert!(error.contains(&*path.to_string_lossy()), "{case}: {error}");
            // The stage fails (stopped: its buffer flushed) or the process dies.
            stage.on_stop();
            drop(stage);
            if mode == Mode::PowerLoss {
                fs.lose_power();
            }
            // Nothing uncommitted is visible: what is there is committed output.
            let (visible, _) = files(dir.path());
            for (name, text) in &visible {
                assert_eq!(expected.get(name), Some(text), "{case}: {name}");
            }

            // Recovery: from checkpoint 1 if its snapshot was taken (it may
            // have become durable), afresh if it was not told durable. Either
            // way the sources replay from there.
            let mut starts: Vec<Option<&Snapshot>> = Vec::new();
            if let Some(snapshot) = &progress.snapshot {
                starts.push(Some(snapshot));
            }
            if !progress.committed {
                starts.push(None);
            }
            for start in starts {
                let copy = tempfile::tempdir().unwrap();
                copy_dir(dir.path(), copy.path());
                let path = copy.path().join("out");
                let again = FaultFs::default();
                let mut stage = Stage::new(on(exactly_once(&path), &again));
                let replay = match start {
                    Some(snapshot) => {
                        stage.restore(snapshot, &RestoreContext::default()).unwrap();
                        &input[4..]
                    }
                    None => &input[..],
                };
                for line in replay {
                    stage
                        .write(line.as_bytes())
                        .unwrap_or_else(|f| panic!("{case}: {f}"));
                }
                stage.finish().unwrap_or_else(|f| panic!("{case}: {f}"));
                let (visible, hidden) = files(copy.path());
                let from = if start.is_some() {
                    "checkpoint 1"
                } else {
                    "scratch"
                };
                assert_eq!(visible, expected, "{case}, from {from}");
                assert!(hidden.is_empty(), "{case}, from {from}: {hidden:?}");
                recoveries += 1;
            }
        }
    }
    // One recovery a case: no fault falls between the snapshot and its commit.
    assert_eq!(recoveries, Mode::ALL.len() * ops.len());
}

/// Copies the files of `from` into `to` (flat).
fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
