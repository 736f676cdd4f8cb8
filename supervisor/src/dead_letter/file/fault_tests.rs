//! Fault injection into the file DLQ writer: a failure, a short write, a kill or
//! a power loss at every write, sync, cut, open and directory sync of a scenario;
//! the file reopens and holds every letter acknowledged as durable, once.

use std::path::Path;
use std::time::Instant;

use super::{FileDlqOptions, FileDlqWriter, SyncPolicy};
use crate::dead_letter::{DeadLetter, DlqError};
use crate::fs::{FaultFs, Mode};
use crate::{ErrorClass, Failure};

fn letter(id: u64) -> DeadLetter<u64> {
    let failure = Failure::error(ErrorClass::Permanent, format!("failure #{id}"));
    DeadLetter::new(id, "parse", "orders", &failure, 1, id)
}

/// One call a scenario makes on the writer.
#[derive(Debug, Clone, Copy)]
enum Call {
    Append(u64),
    /// `truncate_to` the end of the first `n` records.
    CutTo(usize),
    Flush,
}

/// What the file holds in the model: the letters written, and which of them
/// survive a crash of the process and of the machine.
#[derive(Debug, Clone, Default)]
struct Model {
    written: Vec<u64>,
    /// The end offset after each record, to cut back to.
    ends: Vec<u64>,
    /// What a power loss keeps: the letters as of the last sync.
    synced: Vec<u64>,
    unsynced: u32,
}

impl Model {
    /// The model once `call` is done, under `policy`.
    fn after(&self, call: Call, policy: SyncPolicy) -> Model {
        let mut next = self.clone();
        match call {
            Call::Append(id) => {
                next.written.push(id);
                next.unsynced += 1;
                let syncs = match policy {
                    SyncPolicy::Never => false,
                    SyncPolicy::EveryRecord => true,
                    SyncPolicy::EveryN(n) => next.unsynced >= n,
                };
                if syncs {
                    next.sync();
                }
            }
            Call::CutTo(n) => {
                next.written.truncate(n);
                next.ends.truncate(n);
                if policy != SyncPolicy::Never {
                    next.sync();
                }
            }
            Call::Flush => next.sync(),
        }
        next
    }

    fn sync(&mut self) {
        self.synced = self.written.clone();
        self.unsynced = 0;
    }

    /// What is acknowledged as durable against a crash of this kind.
    fn durable(&self, mode: Mode) -> &[u64] {
        match mode {
            Mode::PowerLoss => &self.synced,
            _ => &self.written,
        }
    }
}

fn common_prefix<'a>(a: &'a [u64], b: &[u64]) -> &'a [u64] {
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    &a[..n]
}

/// A new file, three letters, a cut back to two (a restore) and the third again.
const CREATE: [Call; 5] = [
    Call::Append(0),
    Call::Append(1),
    Call::Append(2),
    Call::CutTo(2),
    Call::Append(2),
];

/// An existing file of two letters and a torn record, reopened under
/// `EveryN(2)`: three letters and a flush.
const REOPEN: [Call; 4] = [
    Call::Append(2),
    Call::Append(3),
    Call::Append(4),
    Call::Flush,
];

/// Runs `calls` on a writer through `fs` (created, or reopened if `reopen`),
/// stopping at the first error. The model before the failing call, the model
/// had it been done, and the error.
fn run(
    fs: &FaultFs,
    path: &Path,
    options: FileDlqOptions,
    reopen: Option<&Model>,
    calls: &[Call],
) -> (Model, Model, Option<DlqError>) {
    let policy = options.sync_policy();
    let mut model = reopen.cloned().unwrap_or_default();
    let opened = match reopen {
        Some(_) => FileDlqWriter::<u64>::open_append_on(fs, path, options),
        None => FileDlqWriter::<u64>::create_on(fs, path, options),
    };
    let mut writer = match opened {
        Ok(writer) => writer,
        Err(e) => return (model.clone(), model, Some(e)),
    };
    for &call in calls {
        let next = model.after(call, policy);
        let result = match call {
            Call::Append(id) => writer.append(&letter(id)).map(|_| ()),
            Call::CutTo(n) => writer.truncate_to(model.ends[n - 1]),
            Call::Flush => writer.flush(),
        };
        if let Err(e) = result {
            return (model, next, Some(e));
        }
        model = next;
        if let Call::Append(_) = call {
            model.ends.push(writer.end_offset());
        }
    }
    (model.clone(), model, None)
}

/// Options for the real writers around a simulated crash: no fsync, which the
/// model does not need and would only make the test slow.
fn unsynced() -> FileDlqOptions {
    FileDlqOptions::new().sync(SyncPolicy::Never)
}

/// Two letters and half a record, written by a real writer.
fn setup_reopen(path: &Path) -> Model {
    let mut writer = unsynced().create::<u64>(path).unwrap();
    let mut model = Model::default();
    for id in 0..2 {
        writer.append(&letter(id)).unwrap();
        model.written.push(id);
        model.ends.push(writer.end_offset());
    }
    model.synced = model.written.clone();
    drop(writer);
    let mut bytes = std::fs::read(path).unwrap();
    let whole = bytes.len();
    bytes.extend_from_within(10..10 + (whole - 10) / 4);
    std::fs::write(path, bytes).unwrap();
    model
}

/// Every fault at every step of `calls`: the number of steps, and of the
/// power losses that lost a letter written but not synced.
fn every_fault(options: FileDlqOptions, reopen: bool, calls: &[Call]) -> (usize, usize) {
    let scenario = |fs: &FaultFs, path: &Path| {
        let before = reopen.then(|| setup_reopen(path));
        run(fs, path, options, before.as_ref(), calls)
    };
    // The steps, counted on a run without a fault.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.dlq");
    let fs = FaultFs::default();
    fs.count();
    let (model, _, error) = scenario(&fs, &path);
    assert!(error.is_none(), "{error:?}");
    let ops = fs.ops();
    let read: Vec<u64> = options
        .open_reader::<u64>(&path)
        .unwrap()
        .read_all()
        .unwrap()
        .letters
        .iter()
        .map(|l| l.element)
        .collect();
    assert_eq!(read, model.written);

    let mut lost = 0;
    for mode in Mode::ALL {
        for (k, op) in ops.iter().enumerate() {
            let case = format!("{mode:?} at {k} ({op})");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("orders.dlq");
            let fs = FaultFs::default();
            // Armed after the setup: it writes through the real file system.
            let before = reopen.then(|| setup_reopen(&path));
            fs.arm(k, mode);
            let (done, next, error) = run(&fs, &path, options, before.as_ref(), calls);
            // The fault surfaces, naming the file (or its directory) it hit.
            let error = error.unwrap_or_else(|| panic!("{case}: no error"));
            let hit = &fs.ops()[k];
            let target = hit.split_once(' ').unwrap().1;
            assert!(error.to_string().contains(target), "{case}: {error}");
            if mode == Mode::PowerLoss {
                fs.lose_power();
            }

            // Reopening succeeds and holds what was acknowledged, once and in
            // order, and at most what the failing call would have written.
            let mut writer = unsynced()
                .open_append::<u64>(&path)
                .unwrap_or_else(|e| panic!("{case}: reopen: {e}"));
            let read: Vec<u64> = options
                .open_reader::<u64>(&path)
                .unwrap()
                .read_all()
                .unwrap()
                .letters
                .iter()
                .map(|l| l.element)
                .collect();
            let required = common_prefix(done.durable(mode), &next.written);
            assert!(
                read.starts_with(required),
                "{case}: {read:?} lacks {required:?}"
            );
            assert!(
                done.written.starts_with(&read) || next.written.starts_with(&read),
                "{case}: {read:?} is neither a prefix of {:?} nor of {:?}",
                done.written,
                next.written
            );
            if mode == Mode::PowerLoss
                && read.len() < common_prefix(&done.written, &next.written).len()
            {
                lost += 1;
            }
            // And the file goes on.
            writer.append(&letter(99)).unwrap();
            drop(writer);
            let outcome = options
                .open_reader::<u64>(&path)
                .unwrap()
                .read_all()
                .unwrap();
            assert!(outcome.tail.is_clean(), "{case}: {}", outcome.tail);
            let last = outcome.letters.last().map(|l| l.element);
            assert_eq!(last, Some(99), "{case}");
            assert_eq!(outcome.letters.len(), read.len() + 1, "{case}");
        }
    }
    (ops.len(), lost)
}

#[test]
fn a_fault_at_every_step_of_creating_appending_and_cutting_keeps_every_durable_letter_once() {
    let started = Instant::now();
    let options = FileDlqOptions::new();
    let (steps, lost) = every_fault(options, false, &CREATE);
    // open, header, sync, directory sync; 3 × (write, sync); cut, sync; write, sync.
    assert_eq!(steps, 14);
    // Only the letter in flight: every acknowledged one was synced.
    assert_eq!(lost, 0);
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn a_fault_at_every_step_of_a_reopen_with_every_n_keeps_every_durable_letter_once() {
    let options = FileDlqOptions::new().sync(SyncPolicy::EveryN(2));
    let (steps, lost) = every_fault(options, true, &REOPEN);
    // open, cut of the torn tail, sync; write, write, sync; write; sync (flush).
    assert_eq!(steps, 8);
    // Power lost after an unsynced append: acknowledged to the process only.
    assert!(lost > 0);
}
