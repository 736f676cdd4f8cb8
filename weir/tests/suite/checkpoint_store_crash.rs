//! Crash consistency of the checkpoint store: a child process commits
//! checkpoints `n, n+1, …` into a [`CheckpointStore`] (fsync on, the default,
//! keeping the last 3) and prints each id once its `write` returned. The test
//! kills it with SIGKILL at 1,000 random points, each after it acknowledged at
//! least one checkpoint — inside a state file, a manifest's temporary file,
//! the rename, the directory sync or the pruning of old checkpoints — and
//! after every kill checks that:
//!
//! - the store opens (it removes what a torn write left);
//! - the newest complete checkpoint is the last acknowledged one or the one
//!   after it (written, killed before it was printed), and decodes whole,
//!   every record checksummed, to exactly what the child wrote for that id;
//! - nothing else is returned as complete: every listed checkpoint decodes to
//!   what was written for its id;
//! - retention holds: the complete checkpoints are the newest ones, at most
//!   `retain + 1` of them (a kill between a write and its pruning leaves one
//!   more), and once the store opened, their files are all there is (no
//!   torn write, no temporary file, nothing of an older checkpoint).
//!
//! The child is this test binary, run again with `WEIR_STORE_CHILD` naming the
//! directory: [`child`] is a no-op otherwise.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::crash::{Child, clock_seed, kill_loop};
use weir::checkpoint::{
    CheckpointData, CheckpointStore, Snapshot, StageState, StoreError, StoreOptions,
};

const KILLS: u32 = 1_000;
const RETAIN: usize = 3;

fn options() -> StoreOptions {
    StoreOptions {
        retain: RETAIN,
        ..StoreOptions::default()
    }
}

/// What the child writes as checkpoint `id`: three stages whose states depend
/// on the id, from a few bytes to ~40 KiB, so that kills land inside writes.
fn data(id: u64) -> CheckpointData {
    let stage = |name: &str, k: u64| {
        let len = ((id * 7_919 + k * 104_729) % 5_000) as usize;
        StageState {
            stage: name.into(),
            kind: "scan".into(),
            snapshot: Snapshot::of(1, &(id, k, vec![id ^ k; len])).unwrap(),
        }
    };
    CheckpointData {
        id,
        pipeline: "crash".into(),
        created_unix_ms: 1_700_000_000_000 + id,
        stages: vec![stage("parse", 1), stage("count", 2), stage("sink", 3)],
    }
}

/// Opens the store. The lock of the store is an `flock`: a process another
/// test of this binary forks at that moment holds a copy of it until it execs,
/// so `Locked` is tried again for a while.
fn open(dir: &Path) -> Result<CheckpointStore, StoreError> {
    let started = Instant::now();
    loop {
        match CheckpointStore::open(dir, options()) {
            Err(StoreError::Locked { .. }) if started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            opened => return opened,
        }
    }
}

/// Commits checkpoints after the newest one there until killed.
fn run_child(dir: &Path) {
    let store = open(dir).expect("open");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let id = store.next_id();
        store.write(&data(id)).expect("write");
        writeln!(out, "{id}").unwrap();
        out.flush().unwrap();
    }
}

/// Runs the writer when started as the child; does nothing in a normal run.
#[test]
fn child() {
    if let Some(dir) = std::env::var_os("WEIR_STORE_CHILD") {
        run_child(Path::new(&dir));
    }
}

/// Opens the store as a crash left it and checks it: the newest complete id,
/// and whether the kill tore a write (the store skipped what it left).
fn check(dir: &Path, acked: u64) -> Result<(u64, bool), String> {
    let store = open(dir).map_err(|e| format!("open: {e}"))?;
    let loaded = store.load_latest().map_err(|e| format!("load: {e}"))?;
    let torn = !loaded.skipped.is_empty();
    let (manifest, got) = loaded
        .checkpoint
        .ok_or_else(|| format!("no complete checkpoint, {acked} acknowledged"))?;
    let latest = manifest.id;
    if latest != acked && latest != acked + 1 {
        return Err(format!(
            "the newest complete checkpoint is {latest}, {acked} was acknowledged last"
        ));
    }
    if got != data(latest) {
        return Err(format!(
            "checkpoint {latest} does not hold what was written"
        ));
    }
    let listed = store.list().map_err(|e| format!("list: {e}"))?;
    let ids: Vec<u64> = listed.iter().map(|m| m.id).collect();
    let newest: Vec<u64> = (latest.saturating_sub(RETAIN as u64) + 1..=latest).collect();
    if !(ids.ends_with(&newest) && ids.len() <= RETAIN + 1 && ids.len() >= newest.len()) {
        return Err(format!("complete checkpoints {ids:?}, newest {latest}"));
    }
    for id in &ids {
        let (_, data_of) = store.load(*id).map_err(|e| format!("load {id}: {e}"))?;
        if data_of != data(*id) {
            return Err(format!("checkpoint {id} does not hold what was written"));
        }
    }
    // The store opened: the complete checkpoints' two files each and its
    // lock are all that is left (no torn write, no temporary file).
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .flat_map(|id| [format!("chk-{id:020}.json"), format!("chk-{id:020}.state")])
        .chain(["chk.lock".to_owned()])
        .collect();
    expected.sort();
    if files != expected {
        return Err(format!("files {files:?}, complete checkpoints {ids:?}"));
    }
    Ok((latest, torn))
}

#[test]
fn killed_at_1000_random_points_the_checkpoint_store_keeps_the_last_acknowledged_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints");
    let seed = clock_seed();
    let started = Instant::now();
    let mut acked_max = 0_u64;
    let mut latest = 0_u64;
    let mut torn = 0_u32;
    let child = Child::new("checkpoint_store_crash::child", "WEIR_STORE_CHILD", &path);
    kill_loop(child, KILLS, seed, |kill, acked| {
        acked_max = acked.into_iter().fold(acked_max, u64::max);
        let (newest, tore) =
            check(&path, acked_max).unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: {e}"));
        latest = newest;
        torn += u32::from(tore);
    });
    // Every run committed (it acknowledged one before it was killed), and many
    // kills fell inside a write, not only between two.
    assert!(
        latest > u64::from(KILLS),
        "seed {seed}: {latest} checkpoints"
    );
    assert!(
        torn > KILLS / 10,
        "seed {seed}: only {torn} kills tore a write"
    );
    eprintln!(
        "checkpoint store: {KILLS} kills ({torn} inside a write), {latest} checkpoints, {:.1} s \
         (seed {seed})",
        started.elapsed().as_secs_f64()
    );
}
