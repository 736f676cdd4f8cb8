//! Exactly-once under `kill -9`: a child process runs a checkpointed pipeline from
//! a file source into the exactly-once file sink; the test kills it with SIGKILL
//! at random points and starts it again each time with the same arguments. The
//! committed output must then equal an uninterrupted run's exactly: no line
//! missing, none twice.
//!
//! Two pipelines share the harness: a stateless `map` (checkpoints every
//! 20–60 ms), and a stateful one (checkpoints every 50–100 ms) through a keyed
//! count, an event-time tumbling window and a keyed interval join, so that
//! counts, open windows and the join's buffered rows all cross checkpoints.
//!
//! The child is this test binary, run again with `WEIR_CRASH_CHILD` naming the
//! work directory and `WEIR_CRASH_JOB` the pipeline: [`child`] is a no-op
//! otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::checkpoint::CheckpointConfig;
use weir::file::{FileSink, FileSource, Line, Naming};
use weir::limit::{Rate, Throttle};
use weir::prelude::*;
use weir::{Pipeline, Runtime};

const LINES: u64 = 1_000_000;
const KEYS: u64 = 64;
/// The stateful job's tumbling windows, in event-time milliseconds (the event
/// time of line `n` is `n` ms).
const WINDOW_MS: u64 = 1000;
/// Kills per test: every one of them lands before the job ends, because the
/// source is held to a rate at which 20 runs of the longest life cannot read
/// the whole input (20 × 100 ms × 300,000/s = 600,000 lines for the map job,
/// 20 × 250 ms × 150,000/s = 750,000 for the stateful one). The last run, the
/// one that is not killed, reads as fast as it can.
const KILLS: u32 = 20;
const MAP_LINES_PER_SECOND: u32 = 300_000;
const STATEFUL_LINES_PER_SECOND: u32 = 150_000;

/// The input, at `lines_per_second` (bursts of 1,024) while `WEIR_CRASH_SLOW`
/// is set, else as fast as it goes. The stage is there either way: its
/// checkpointed state is restored whatever the rate.
fn read_input(dir: &Path, lines_per_second: u32) -> Flow<Line> {
    let rate = if std::env::var_os("WEIR_CRASH_SLOW").is_some() {
        Rate::per_second(lines_per_second)
    } else {
        Rate::per_second(100_000_000)
    };
    Pipeline::file_lines(FileSource::lines(dir.join("input")))
        .throttle(Throttle::shape(rate).burst(1024))
        .name("rate")
}

fn input_line(i: u64) -> String {
    format!("{i} key-{} {}", i % KEYS, "x".repeat((i % 7) as usize))
}

/// The line number and the key of an input line.
fn parse(text: &str) -> (u64, u64) {
    let mut parts = text.split(' ');
    let n = parts.next().unwrap().parse().unwrap();
    let key = parts
        .next()
        .unwrap()
        .trim_start_matches("key-")
        .parse()
        .unwrap();
    (n, key)
}

/// What the map job makes of a line: the same for every run.
fn transform(text: &str) -> String {
    let (n, key) = parse(text);
    format!("key-{key}\t{}", n * 3 + 1)
}

/// The pipelines a child runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// file source → map → exactly-once file sink.
    Map,
    /// file source → keyed count → broadcast: the counted lines, and per key
    /// counts per event-time tumbling window → interval join of each line with
    /// its key's window → exactly-once file sink.
    Stateful,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Map => "map",
            Job::Stateful => "stateful",
        }
    }

    fn named(name: &str) -> Job {
        match name {
            "map" => Job::Map,
            "stateful" => Job::Stateful,
            other => panic!("unknown crash job {other:?}"),
        }
    }
}

fn sink(dir: &Path) -> FileSink {
    FileSink::new(dir.join("out"))
        .delimiter(None)
        .rotate(64 * 1024, Naming::Numbered)
        .exactly_once()
}

fn run_map_child(dir: &Path) {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let done = read_input(dir, MAP_LINES_PER_SECOND)
        .map(|line| format!("{}\n", transform(&line.text)).into_bytes())
        .name("transform")
        .to_file(sink(dir))
        .name("write")
        .checkpoints(CheckpointConfig::new(dir.join("checkpoints")).interval(
            Duration::from_millis(20 + u64::from(std::process::id() % 40)),
        ))
        .run(&rt)
        .unwrap()
        .wait()
        .unwrap();
    done.report.check_conservation().unwrap();
}

/// A line with its key's running count: `(n, key, count)`.
type Counted = (u64, u64, u64);
/// A window's count of one key: `(key, window start, lines)`.
type PerWindow = (u64, u64, u64);

/// One output line of the stateful job.
fn joined_line(n: u64, key: u64, count: u64, start: u64, in_window: u64) -> String {
    format!("key-{key}\t{n}\t{count}\t{start}\t{in_window}")
}

fn run_stateful_child(dir: &Path) {
    let rt = Runtime::builder().arbiters(2).build().unwrap();
    let mut g = Graph::new();
    let counted = g.source(
        read_input(dir, STATEFUL_LINES_PER_SECOND)
            .map(|line| parse(&line.text))
            .name("parse")
            .key_by(|x: &(u64, u64)| x.1)
            .scan(0_u64, |count, (n, key)| {
                *count += 1;
                (n, key, *count)
            })
            .name("count"),
    );
    let [lines, to_window] = g.broadcast(counted, Broadcast::new(2));
    let windows = g.flow(to_window, |f| {
        f.event_time_windows(
            Windows::tumbling(Duration::from_millis(WINDOW_MS)),
            EventTime::new(|c: &Counted| c.0),
            |c: &Counted| c.1,
            Aggregate::new(|| 0_u64, |n: &mut u64, _: &Counted| *n += 1, |n| *n),
        )
        .name("windows")
        .map(|r| (r.key, r.window.start, r.value))
        .name("per-window")
    });
    // Each line meets the count of its own window: start ≤ n < start + WINDOW_MS.
    let join = IntervalJoin::inner(
        |l: &Counted| l.1,
        |r: &PerWindow| r.0,
        |l, r| format!("{}\n", joined_line(l.0, l.1, l.2, r.1, r.2)).into_bytes(),
    )
    .event_time(|l| l.0 as i64, |r| r.1 as i64, 1 - WINDOW_MS as i64, 0)
    .name("join");
    let JoinOutlets { joined, unmatched } = g.interval_join(lines, windows, join);
    let _stats = g.sink(joined, |f| f.to_file(sink(dir)).name("write"));
    // Every line has its window: a row left unmatched fails the run.
    let _none = g.sink(unmatched, |f| {
        f.for_each(|s| panic!("an unmatched row: {s:?}"))
            .name("unmatched")
    });
    g.checkpoints(
        CheckpointConfig::new(dir.join("checkpoints")).interval(Duration::from_millis(
            50 + u64::from(std::process::id() % 51),
        )),
    );
    let done = g.run(&rt).unwrap().wait().unwrap();
    done.report.check_conservation().unwrap();
}

/// What the stateful job commits, by a plain fold over the input.
fn stateful_expected() -> Vec<String> {
    let windows = LINES.div_ceil(WINDOW_MS);
    let mut in_window = vec![0_u64; (windows * KEYS) as usize];
    for n in 0..LINES {
        in_window[(n / WINDOW_MS * KEYS + n % KEYS) as usize] += 1;
    }
    (0..LINES)
        .map(|n| {
            let key = n % KEYS;
            let w = n / WINDOW_MS;
            let count = n / KEYS + 1;
            joined_line(
                n,
                key,
                count,
                w * WINDOW_MS,
                in_window[(w * KEYS + key) as usize],
            )
        })
        .collect()
}

/// Runs the pipeline when started as the child; does nothing in a normal run.
#[test]
fn child() {
    if let Some(dir) = std::env::var_os("WEIR_CRASH_CHILD") {
        let job = std::env::var("WEIR_CRASH_JOB").unwrap_or_else(|_| "map".into());
        match Job::named(&job) {
            Job::Map => run_map_child(Path::new(&dir)),
            Job::Stateful => run_stateful_child(Path::new(&dir)),
        }
    }
}

/// Starts the child; `slow`: with its source held to the job's rate.
fn spawn(dir: &Path, job: Job, slow: bool) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    if slow {
        command.env("WEIR_CRASH_SLOW", "1");
    }
    command
        .args([
            "checkpoint_crash::child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WEIR_CRASH_CHILD", dir)
        .env("WEIR_CRASH_JOB", job.name())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The committed output: the rotated files in order, then the last one.
fn committed(dir: &Path) -> String {
    let out = dir.join("out");
    let mut text = String::new();
    for k in 1.. {
        let part = PathBuf::from(format!("{}.{k}", out.display()));
        match std::fs::read_to_string(&part) {
            Ok(t) => text.push_str(&t),
            Err(_) => break,
        }
    }
    text.push_str(&std::fs::read_to_string(&out).unwrap_or_default());
    text
}

/// How a run of [`kill_and_restart`] went.
struct Killed {
    seed: u64,
    kills: u32,
    took: Duration,
}

/// Writes the input into `dir`, then starts `job` and kills it with SIGKILL
/// after a random `kill_ms.0..kill_ms.1` ms, [`KILLS`] times, then lets a last
/// run finish. Checks that every killed run was still working when killed, that
/// the last run succeeded, and that no pending part is left beside the output.
fn kill_and_restart(dir: &Path, job: Job, kill_ms: (u64, u64)) -> Killed {
    let mut input = String::new();
    for i in 0..LINES {
        input.push_str(&input_line(i));
        input.push('\n');
    }
    std::fs::write(dir.join("input"), input).unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut kills = 0;
    let started = Instant::now();
    while kills < KILLS {
        let mut child = spawn(dir, job, true);
        let after = Duration::from_millis(kill_ms.0 + next() % (kill_ms.1 - kill_ms.0));
        std::thread::sleep(after);
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "seed {seed}: a run failed: {err}");
            panic!("seed {seed}: the job finished after {kills} kills, before {KILLS}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    let out = spawn(dir, job, false).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "seed {seed}: the last run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing uncommitted is left beside the output.
    let hidden: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out"))
        .collect();
    assert!(hidden.is_empty(), "seed {seed}: left behind: {hidden:?}");
    Killed {
        seed,
        kills,
        took: started.elapsed(),
    }
}

/// Panics, naming the first difference, unless `got` and `want` are the same
/// lines.
fn assert_same_lines(got: &[&str], want: &[&str], run: &Killed) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
        let at = first_diff.unwrap_or(got.len().min(want.len()));
        panic!(
            "seed {}, {} kills: committed output differs: {} lines, want {}; first difference at line {at}: {:?}, want {:?}",
            run.seed,
            run.kills,
            got.len(),
            want.len(),
            got.get(at),
            want.get(at)
        );
    }
}

#[test]
fn killed_at_random_points_the_committed_output_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = kill_and_restart(dir.path(), Job::Map, (10, 100));
    let expected: String = (0..LINES)
        .map(|i| format!("{}\n", transform(&input_line(i))))
        .collect();
    let got = committed(dir.path());
    let got: Vec<&str> = got.lines().collect();
    assert_same_lines(&got, &expected.lines().collect::<Vec<_>>(), &run);
    eprintln!("map: {} kills in {:?}", run.kills, run.took);
}

/// Keyed counts, open windows and the join's rows survive every kill: each
/// line is committed once, with its key's count and its window's count.
///
/// The join's merge interleaves its two inputs by arrival, so the order of the
/// committed lines differs from run to run: they are compared as a set, each
/// by its line number with the line the fold expects, and each expected line
/// must be there exactly once (none missing, none twice).
#[test]
fn a_keyed_count_window_and_join_killed_at_random_points_commit_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = kill_and_restart(dir.path(), Job::Stateful, (50, 250));
    let (seed, kills) = (run.seed, run.kills);
    let want = stateful_expected();
    let mut seen = vec![false; want.len()];
    for line in committed(dir.path()).lines() {
        let n: usize = line
            .split('\t')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("seed {seed}, {kills} kills: a stray line {line:?}"));
        assert!(
            want.get(n).is_some_and(|w| w == line),
            "seed {seed}, {kills} kills: committed {line:?}, want {:?}",
            want.get(n)
        );
        assert!(
            !seen[n],
            "seed {seed}, {kills} kills: line {n} committed twice"
        );
        seen[n] = true;
    }
    let missing = seen.iter().filter(|s| !**s).count();
    assert_eq!(
        missing,
        0,
        "seed {seed}, {kills} kills: {missing} lines missing, the first {:?}",
        seen.iter().position(|s| !s).map(|n| &want[n])
    );
    eprintln!("stateful: {kills} kills in {:?}", run.took);
}
