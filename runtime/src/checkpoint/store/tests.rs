//! The store's tests: round trips, retention, orphans, fault injection at every
//! step of a write, truncation and bit flips, limits, and directories that cannot
//! be written.

use std::collections::BTreeSet;
use std::fs::{self as stdfs, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::format::{self, HEADER_LEN, MAX_MANIFEST_BYTES, RECORD_HEADER_LEN};
use super::*;
use crate::checkpoint::{Snapshot, StatePart};
use weir_supervisor::fs::{FaultFs, Mode};

static_assertions::assert_impl_all!(CheckpointStore: Send, Sync);

fn stage(name: &str, value: u64) -> StageState {
    StageState {
        stage: name.into(),
        kind: "scan".into(),
        snapshot: Snapshot::of(1, &(value, format!("state of {name}"))).unwrap(),
    }
}

fn keyed_stage(name: &str, keys: u64) -> StageState {
    let counts: Vec<(u64, u64)> = (0..keys).map(|k| (k, k * 3)).collect();
    StageState {
        stage: name.into(),
        kind: "fold".into(),
        snapshot: Snapshot::keyed(2, counts.iter().map(|(k, v)| (k, v))).unwrap(),
    }
}

fn data(id: u64) -> CheckpointData {
    CheckpointData {
        id,
        pipeline: "logproc".into(),
        created_unix_ms: 1_700_000_000_000 + id,
        stages: vec![stage("source", id * 100), keyed_stage("count", id)],
    }
}

fn options(retain: usize) -> StoreOptions {
    StoreOptions {
        retain,
        ..StoreOptions::default()
    }
}

/// The store's file names in `dir` (the lock file left out).
fn files(dir: &Path) -> BTreeSet<String> {
    stdfs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != format::LOCK_NAME)
        .collect()
}

fn files_of(ids: impl IntoIterator<Item = u64>) -> BTreeSet<String> {
    ids.into_iter()
        .flat_map(|id| [format::manifest_name(id), format::state_name(id)])
        .collect()
}

fn latest(store: &CheckpointStore) -> (Option<u64>, Vec<Skipped>) {
    let loaded = store.load_latest().unwrap();
    (loaded.checkpoint.map(|(m, _)| m.id), loaded.skipped)
}

#[test]
fn several_checkpoints_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(10)).unwrap();
    assert_eq!(store.dir(), dir.path());
    let mut written = Vec::new();
    for id in 1..=4 {
        let mut d = data(id);
        if id == 3 {
            // Edge shapes: no parts, an empty part, no stages at all next time.
            d.stages.push(StageState {
                stage: "empty".into(),
                kind: "window".into(),
                snapshot: Snapshot::default(),
            });
            d.stages.push(StageState {
                stage: "blank".into(),
                kind: "join".into(),
                snapshot: Snapshot {
                    version: 9,
                    parts: vec![StatePart {
                        key_group: Some(127),
                        bytes: Vec::new(),
                    }],
                },
            });
        }
        if id == 4 {
            d.stages.clear();
        }
        let manifest = store.write(&d).unwrap();
        assert_eq!(manifest.id, id);
        assert_eq!(manifest.stages.len(), d.stages.len());
        written.push((manifest, d));
    }
    drop(store);

    let store = CheckpointStore::open(dir.path(), options(10)).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(
        listed,
        written.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>()
    );
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.checkpoint.as_ref(), written.last());
    assert!(loaded.skipped.is_empty());
    assert_eq!(store.next_id(), 5);

    // Each one reads back whole: remove the newer ones and look again.
    for (manifest, d) in written.iter().rev() {
        let (m, got) = store.load_latest().unwrap().checkpoint.unwrap();
        assert_eq!((&m, &got), (manifest, d));
        stdfs::remove_file(dir.path().join(format::manifest_name(manifest.id))).unwrap();
    }
}

#[test]
fn the_manifest_is_json_people_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(3)).unwrap();
    let manifest = store.write(&data(7)).unwrap();
    let text = stdfs::read_to_string(dir.path().join(format::manifest_name(7))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format"], 1);
    assert_eq!(json["manifest"]["id"], 7);
    assert_eq!(json["manifest"]["stages"][1]["stage"], "count");
    assert_eq!(
        json["manifest"]["state_file"],
        "chk-00000000000000000007.state"
    );
    let state_len = stdfs::metadata(dir.path().join(&manifest.state_file))
        .unwrap()
        .len();
    assert_eq!(json["manifest"]["state_bytes"], state_len);
    assert_eq!(manifest.stages[0].offset, HEADER_LEN);
    assert_eq!(
        manifest.stages[1].offset,
        HEADER_LEN + RECORD_HEADER_LEN + manifest.stages[0].len
    );
}

#[test]
fn retain_k_keeps_exactly_the_newest_k() {
    for retain in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), unsynced(retain)).unwrap();
        for id in 1..=6_u64 {
            store.write(&data(id)).unwrap();
            let first = id.saturating_sub(retain as u64 - 1).max(1);
            assert_eq!(
                files(dir.path()),
                files_of(first..=id),
                "retain {retain}, after {id}"
            );
        }
        let ids: Vec<u64> = store.list().unwrap().iter().map(|m| m.id).collect();
        assert_eq!(ids, (7 - retain as u64..=6).collect::<Vec<_>>());
    }
}

#[test]
fn retain_zero_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(0)).unwrap();
    store.write(&data(1)).unwrap();
    store.write(&data(2)).unwrap();
    assert_eq!(files(dir.path()), files_of([2]));
}

#[test]
fn a_corrupt_checkpoint_is_not_counted_as_retained() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(2)).unwrap();
    store.write(&data(1)).unwrap();
    store.write(&data(2)).unwrap();
    // Checkpoint 2 is damaged after it was written.
    let state = dir.path().join(format::state_name(2));
    let len = stdfs::metadata(&state).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&state)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    store.write(&data(3)).unwrap();
    // 3 and 1 are the two complete ones; the damaged 2 between them stays.
    assert_eq!(files(dir.path()), files_of([1, 2, 3]));
    store.write(&data(4)).unwrap();
    assert_eq!(files(dir.path()), files_of([3, 4]));
}

#[test]
fn open_removes_what_a_crash_left_and_reports_the_torn_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(3)).unwrap();
    store.write(&data(1)).unwrap();
    drop(store);
    // A write of checkpoint 2 that died before its manifest was renamed.
    stdfs::write(dir.path().join(format::state_name(2)), b"WEIRCKPT partial").unwrap();
    stdfs::write(dir.path().join(format::manifest_tmp_name(2)), b"{\"form").unwrap();
    stdfs::write(dir.path().join(format::PROBE_NAME), b"").unwrap();
    stdfs::write(dir.path().join("notes.txt"), b"not ours").unwrap();
    stdfs::write(dir.path().join("chk-2.state"), b"not ours either").unwrap();

    let store = CheckpointStore::open(dir.path(), options(3)).unwrap();
    let mut expected = files_of([1]);
    expected.insert("notes.txt".into());
    expected.insert("chk-2.state".into());
    assert_eq!(files(dir.path()), expected);

    let (id, skipped) = latest(&store);
    assert_eq!(id, Some(1));
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].file, dir.path().join(format::state_name(2)));
    assert!(
        skipped[0].reason.contains("no manifest"),
        "{}",
        skipped[0].reason
    );
    // Id 2 was used by the torn write: the next one is 3.
    assert_eq!(store.next_id(), 3);
    store.write(&data(3)).unwrap();
    let (id, skipped) = latest(&store);
    assert_eq!((id, skipped), (Some(3), Vec::new()));
}

#[test]
fn an_empty_directory_is_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path().join("a/b"), options(3)).unwrap();
    assert_eq!(store.load_latest().unwrap(), Loaded::default());
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.next_id(), 1);
}

#[test]
fn ids_are_used_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(3)).unwrap();
    store.write(&data(5)).unwrap();
    for id in [5, 3] {
        match store.write(&data(id)) {
            Err(StoreError::StaleId { id: got, newest: 5 }) => assert_eq!(got, id),
            other => panic!("expected StaleId, got {other:?}"),
        }
    }
    // A failed write uses its id too.
    let mut big = data(6);
    big.stages.push(StageState {
        stage: "huge".into(),
        kind: "scan".into(),
        snapshot: Snapshot::of(1, &vec![0_u8; 5000]).unwrap(),
    });
    let small = CheckpointStore::open(
        tempfile::tempdir().unwrap().path(),
        StoreOptions {
            max_state_bytes: 1000,
            ..options(3)
        },
    )
    .unwrap();
    assert!(matches!(
        small.write(&big),
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(small.next_id(), 7);
    assert_eq!(store.next_id(), 6);
}

#[test]
fn a_state_over_the_limit_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 1000;
    let store = CheckpointStore::open(
        dir.path(),
        StoreOptions {
            max_state_bytes: limit,
            ..options(3)
        },
    )
    .unwrap();
    // Far over: refused by the cheap check before any file is created. Just over
    // (the bytes fit, the encoded record with its names does not): refused while
    // encoding, and the started state file is removed.
    for (id, bytes) in [(1, 5000), (2, limit - 4)] {
        let mut d = data(id);
        d.stages.push(StageState {
            stage: "big".into(),
            kind: "scan".into(),
            snapshot: Snapshot {
                version: 1,
                parts: vec![StatePart {
                    key_group: None,
                    bytes: vec![7; bytes],
                }],
            },
        });
        match store.write(&d) {
            Err(StoreError::TooLarge {
                stage,
                size,
                limit: l,
            }) => {
                assert_eq!((stage.as_str(), l), ("big", limit));
                assert!(size > limit, "{size}");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    }
    assert_eq!(latest(&store), (None, Vec::new()));
}

/// Makes `path` hold `bytes`, without truncating it to 0 first: ext4 flushes a
/// file truncated to 0 and rewritten when it is closed, which costs milliseconds
/// per call in the loops below.
fn overwrite(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
    file.set_len(bytes.len() as u64).unwrap();
}

/// Writes checkpoints 1 and 2 and returns the store and the path of one of 2's files.
fn two_checkpoints(dir: &Path, file: fn(u64) -> String) -> (CheckpointStore, PathBuf, Vec<u8>) {
    let store = CheckpointStore::open(dir, options(3)).unwrap();
    store.write(&data(1)).unwrap();
    store.write(&data(2)).unwrap();
    let path = dir.join(file(2));
    let bytes = stdfs::read(&path).unwrap();
    (store, path, bytes)
}

/// Loads with `path` holding `bytes`: checkpoint 1 must be used and 2 skipped with a
/// reason naming `path`.
fn assert_falls_back(store: &CheckpointStore, path: &Path, bytes: &[u8], what: &str) {
    overwrite(path, bytes);
    let loaded = store.load_latest().unwrap();
    let (manifest, got) = loaded.checkpoint.expect(what);
    assert_eq!(manifest.id, 1, "{what}");
    assert_eq!(got, data(1), "{what}");
    assert_eq!(loaded.skipped.len(), 1, "{what}: {:?}", loaded.skipped);
    assert_eq!(loaded.skipped[0].file, path, "{what}: {:?}", loaded.skipped);
    assert!(!loaded.skipped[0].reason.is_empty(), "{what}");
}

#[test]
fn a_state_file_truncated_at_any_length_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path, bytes) = two_checkpoints(dir.path(), format::state_name);
    for len in 0..bytes.len() {
        assert_falls_back(&store, &path, &bytes[..len], &format!("truncated to {len}"));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_falls_back(&store, &path, &longer, "one byte appended");
    overwrite(&path, &bytes);
    assert_eq!(latest(&store), (Some(2), Vec::new()));
}

#[test]
fn a_manifest_truncated_at_any_length_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path, bytes) = two_checkpoints(dir.path(), format::manifest_name);
    // The trailing newline is whitespace: without it the manifest is still whole.
    for len in 0..bytes.len() - 1 {
        assert_falls_back(&store, &path, &bytes[..len], &format!("truncated to {len}"));
    }
    overwrite(&path, &bytes);
    assert_eq!(latest(&store), (Some(2), Vec::new()));
}

#[test]
fn a_flipped_bit_anywhere_in_the_state_file_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path, bytes) = two_checkpoints(dir.path(), format::state_name);
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 1 << (i % 8);
        assert_falls_back(
            &store,
            &path,
            &damaged,
            &format!("bit {} of byte {i}", i % 8),
        );
    }
}

#[test]
fn a_flipped_bit_anywhere_in_the_manifest_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path, bytes) = two_checkpoints(dir.path(), format::manifest_name);
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 1 << (i % 8);
        if damaged[i].is_ascii_whitespace() && bytes[i].is_ascii_whitespace() {
            // One JSON whitespace for another (a space for a tab): the content is
            // unchanged, and so is what is loaded.
            continue;
        }
        assert_falls_back(
            &store,
            &path,
            &damaged,
            &format!("bit {} of byte {i}", i % 8),
        );
    }
}

#[test]
fn a_missing_state_file_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path, _) = two_checkpoints(dir.path(), format::state_name);
    stdfs::remove_file(&path).unwrap();
    let (id, skipped) = latest(&store);
    assert_eq!(id, Some(1));
    assert_eq!(skipped[0].file, path);
    assert!(
        skipped[0].reason.contains("missing"),
        "{}",
        skipped[0].reason
    );
}

#[test]
fn no_complete_checkpoint_is_a_fresh_start_that_lists_the_skips() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = two_checkpoints(dir.path(), format::state_name);
    for id in [1, 2] {
        stdfs::write(dir.path().join(format::state_name(id)), b"WEIRCKPT").unwrap();
    }
    let loaded = store.load_latest().unwrap();
    assert_eq!(loaded.checkpoint, None);
    let files: Vec<PathBuf> = loaded.skipped.iter().map(|s| s.file.clone()).collect();
    assert_eq!(
        files,
        [2, 1].map(|id| dir.path().join(format::state_name(id)))
    );
    assert!(store.list().unwrap().is_empty());
}

/// Writes a manifest for checkpoint 1 with one record of `claimed` bytes, and a
/// state file holding a record header that claims the same and 16 bytes of payload.
fn write_claiming(dir: &Path, claimed: u64) {
    let manifest = Manifest {
        id: 1,
        pipeline: "p".into(),
        created_unix_ms: 0,
        state_file: format::state_name(1),
        stages: vec![ManifestEntry {
            stage: "s".into(),
            kind: "k".into(),
            version: 1,
            parts: 1,
            offset: HEADER_LEN,
            len: claimed,
            crc32: 0,
        }],
        state_bytes: HEADER_LEN + RECORD_HEADER_LEN + claimed,
    };
    stdfs::write(
        dir.join(format::manifest_name(1)),
        format::manifest_bytes(&manifest).unwrap(),
    )
    .unwrap();
    let mut state = format::header_bytes(1).to_vec();
    state.extend_from_slice(&u32::try_from(claimed).unwrap().to_le_bytes());
    state.extend_from_slice(&0_u32.to_le_bytes());
    state.extend_from_slice(&[0; 16]);
    stdfs::write(dir.join(format::state_name(1)), state).unwrap();
}

#[test]
fn a_record_claiming_4_gib_is_refused_before_it_is_read() {
    let claimed = u64::from(u32::MAX);
    // Over the configured limit: refused from the manifest, the state file unopened.
    let dir = tempfile::tempdir().unwrap();
    write_claiming(dir.path(), claimed);
    let store = CheckpointStore::open(dir.path(), options(3)).unwrap();
    let (id, skipped) = latest(&store);
    assert_eq!(id, None);
    assert_eq!(skipped[0].file, dir.path().join(format::manifest_name(1)));
    assert!(
        skipped[0]
            .reason
            .contains("claims 4294967295 bytes, over the limit of 268435456"),
        "{}",
        skipped[0].reason
    );
    drop(store);

    // Within a limit raised to the largest: refused because the file is not that long.
    let store = CheckpointStore::open(
        dir.path(),
        StoreOptions {
            max_state_bytes: usize::MAX,
            ..options(3)
        },
    )
    .unwrap();
    let (id, skipped) = latest(&store);
    assert_eq!(id, None);
    assert_eq!(skipped[0].file, dir.path().join(format::state_name(1)));
    assert!(
        skipped[0]
            .reason
            .contains("the state file is 44 bytes, its manifest says 4294967323"),
        "{}",
        skipped[0].reason
    );
    drop(store);

    // An honest manifest, a record header claiming 4 GiB: the two disagree.
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(3)).unwrap();
    store.write(&data(1)).unwrap();
    let path = dir.path().join(format::state_name(1));
    let mut bytes = stdfs::read(&path).unwrap();
    let at = HEADER_LEN as usize;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    stdfs::write(&path, bytes).unwrap();
    let (id, skipped) = latest(&store);
    assert_eq!(id, None);
    assert!(
        skipped[0]
            .reason
            .contains("the record header says 4294967295 bytes"),
        "{}",
        skipped[0].reason
    );
}

#[test]
fn a_directory_under_a_file_is_not_writable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    stdfs::write(&file, b"x").unwrap();
    let target = file.join("checkpoints");
    match CheckpointStore::open(&target, options(3)) {
        Err(e @ StoreError::NotWritable { .. }) => {
            let StoreError::NotWritable { dir, .. } = &e else {
                unreachable!()
            };
            assert_eq!(dir, &target);
            assert!(e.to_string().contains(&*target.to_string_lossy()), "{e}");
            assert!(std::error::Error::source(&e).is_some());
        }
        other => panic!("expected NotWritable, got {other:?}"),
    }
}

#[test]
fn a_directory_whose_probe_fails_is_not_writable() {
    for k in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::default();
        fs.arm(k, Mode::Fail);
        match CheckpointStore::open_with(dir.path(), options(3), Arc::new(fs)) {
            Err(StoreError::NotWritable { dir: d, .. }) => assert_eq!(d, dir.path()),
            other => panic!("probe step {k}: expected NotWritable, got {other:?}"),
        }
    }
}

#[test]
fn one_store_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(3)).unwrap();
    assert!(matches!(
        CheckpointStore::open(dir.path(), options(3)),
        Err(StoreError::Locked { dir: d }) if d == dir.path()
    ));
    drop(store);
    CheckpointStore::open(dir.path(), options(3)).unwrap();
}

#[test]
fn a_file_that_cannot_be_read_is_an_error_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), options(3)).unwrap();
    store.write(&data(1)).unwrap();
    // A directory where checkpoint 2's manifest should be: reading it fails.
    let manifest = dir.path().join(format::manifest_name(2));
    stdfs::create_dir(&manifest).unwrap();
    match store.load_latest() {
        Err(e @ StoreError::Io { .. }) => {
            let text = e.to_string();
            assert!(text.contains("could not read"), "{text}");
            assert!(text.contains(&*manifest.to_string_lossy()), "{text}");
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

// ---- Fault injection ----

// `FaultFs` and `Mode` are the shared seam's (`weir_supervisor::fs`), used by the
// file dead-letter queue's and the file sink's fault tests too.

/// Checkpoint 1 written by a real store, then a store on `fs` for checkpoint 2.
fn setup_crash(dir: &Path, fs: &FaultFs) -> CheckpointStore {
    let real = CheckpointStore::open(dir, unsynced(1)).unwrap();
    real.write(&data(1)).unwrap();
    drop(real);
    CheckpointStore::open_with(dir, options(1), Arc::new(fs.clone())).unwrap()
}

/// Options without fsync, for the real stores around a simulated crash.
fn unsynced(retain: usize) -> StoreOptions {
    StoreOptions {
        fsync: false,
        ..options(retain)
    }
}

#[test]
fn a_fault_at_every_step_of_a_write_leaves_the_previous_or_the_new_checkpoint() {
    // The operations of one write, counted on a run without a fault.
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::default();
    let store = setup_crash(dir.path(), &fs);
    fs.count();
    store.write(&data(2)).unwrap();
    let ops = fs.ops();
    let rename = ops.iter().position(|op| op.starts_with("rename")).unwrap();
    let dir_sync = ops
        .iter()
        .position(|op| op.starts_with("sync_dir"))
        .unwrap();
    assert!(dir_sync > rename, "{ops:?}");
    // State: create, header, 2 records, sync; manifest: create, write, sync,
    // rename; directory sync; prune: 2 removes.
    assert_eq!(ops.len(), 12, "{ops:?}");
    drop(store);

    for mode in [Mode::Fail, Mode::Kill, Mode::PowerLoss] {
        for (k, op) in ops.iter().enumerate() {
            let case = format!("{mode:?} at {k} ({op})");
            let dir = tempfile::tempdir().unwrap();
            let fs = FaultFs::default();
            let store = setup_crash(dir.path(), &fs);
            fs.arm(k, mode);
            let result = store.write(&data(2));
            drop(store);
            if mode == Mode::PowerLoss {
                fs.lose_power();
            }

            let store = CheckpointStore::open(dir.path(), unsynced(1)).unwrap();
            let loaded = store.load_latest().unwrap();
            let (manifest, got) = loaded.checkpoint.unwrap_or_else(|| panic!("{case}: none"));
            let expected = match mode {
                Mode::Fail if k > rename && k != dir_sync => 2,
                Mode::Kill if k > rename => 2,
                Mode::PowerLoss if k > dir_sync => 2,
                _ => 1,
            };
            assert_eq!(manifest.id, expected, "{case}: {:?}", loaded.skipped);
            assert_eq!(got, data(expected), "{case}");
            assert!(
                loaded.skipped.iter().all(|s| !s.reason.is_empty()),
                "{case}"
            );
            // `Ok` exactly when the checkpoint is durable.
            assert_eq!(result.is_ok(), k > dir_sync, "{case}: {result:?}");
            if let Err(e) = &result {
                assert!(e.to_string().contains("injected fault"), "{case}: {e}");
            }
            // Nothing torn left behind once reopened.
            let left = files(dir.path());
            assert!(
                left.iter().all(|f| !f.ends_with(".tmp")),
                "{case}: {left:?}"
            );
            for name in &left {
                if let Some(format::Name::State(id)) = format::parse_name(name) {
                    assert!(
                        left.contains(&format::manifest_name(id)),
                        "{case}: {left:?}"
                    );
                }
            }
            // And the store goes on.
            let next = data(store.next_id());
            store.write(&next).unwrap();
            assert_eq!(
                store.load_latest().unwrap().checkpoint.unwrap().1,
                next,
                "{case}"
            );
        }
    }
}

#[test]
fn without_fsync_nothing_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::default();
    let no_sync = StoreOptions {
        fsync: false,
        ..options(3)
    };
    let store = CheckpointStore::open_with(dir.path(), no_sync, Arc::new(fs.clone())).unwrap();
    fs.count();
    store.write(&data(1)).unwrap();
    let ops = fs.ops();
    assert!(ops.iter().all(|op| !op.starts_with("sync")), "{ops:?}");
    assert_eq!(latest(&store).0, Some(1));
}

#[test]
fn io_errors_name_the_file_and_the_operation() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::default();
    let store = CheckpointStore::open_with(dir.path(), options(3), Arc::new(fs.clone())).unwrap();
    fs.arm(0, Mode::Fail);
    let e = store.write(&data(1)).unwrap_err();
    let path = dir.path().join(format::state_name(1));
    assert!(
        matches!(&e, StoreError::Io { path: p, op: "create", .. } if *p == path),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint store: could not create {}: injected fault",
            path.display()
        )
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn a_manifest_too_large_to_read_back_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), unsynced(3)).unwrap();
    let mut d = data(1);
    d.stages[0].stage = "s".repeat(MAX_MANIFEST_BYTES as usize);
    match store.write(&d) {
        Err(StoreError::ManifestTooLarge { size, limit }) => {
            assert_eq!(limit, MAX_MANIFEST_BYTES);
            assert!(size as u64 > limit, "{size}");
        }
        other => panic!("expected ManifestTooLarge, got {other:?}"),
    }
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

fn stage_strategy() -> impl Strategy<Value = StageState> {
    let part = (
        proptest::option::of(0..crate::checkpoint::KEY_GROUPS),
        proptest::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(key_group, bytes)| StatePart { key_group, bytes });
    (
        "[a-z]{1,8}",
        "[a-z_]{1,6}",
        any::<u32>(),
        proptest::collection::vec(part, 0..4),
    )
        .prop_map(|(stage, kind, version, parts)| StageState {
            stage,
            kind,
            snapshot: Snapshot { version, parts },
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any checkpoint reads back exactly; one flipped bit anywhere in either of its
    /// files never loads damaged data: the previous checkpoint is used instead.
    #[test]
    fn any_checkpoint_round_trips_and_any_flipped_bit_is_caught(
        stages in proptest::collection::vec(stage_strategy(), 0..4),
        created in any::<u64>(),
        in_manifest in any::<bool>(),
        at in any::<proptest::sample::Index>(),
        bit in 0..8_u8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), unsynced(3)).unwrap();
        store.write(&data(1)).unwrap();
        let second = CheckpointData { id: 2, pipeline: "p ü \"q\"".into(), created_unix_ms: created, stages };
        store.write(&second).unwrap();
        let (manifest, got) = store.load_latest().unwrap().checkpoint.unwrap();
        prop_assert_eq!(manifest.id, 2);
        prop_assert_eq!(&got, &second);

        let name = if in_manifest { format::manifest_name(2) } else { format::state_name(2) };
        let path = dir.path().join(name);
        let mut bytes = stdfs::read(&path).unwrap();
        let i = at.index(bytes.len());
        let before = bytes[i];
        bytes[i] ^= 1 << bit;
        prop_assume!(!(before.is_ascii_whitespace() && bytes[i].is_ascii_whitespace()));
        overwrite(&path, &bytes);
        let loaded = store.load_latest().unwrap();
        let (manifest, got) = loaded.checkpoint.unwrap();
        prop_assert_eq!(manifest.id, 1);
        prop_assert_eq!(got, data(1));
        prop_assert_eq!(&loaded.skipped[0].file, &path);
    }
}
