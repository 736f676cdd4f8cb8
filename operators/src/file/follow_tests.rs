//! A following file source (`FileSource::follow`) against a file that grows, is
//! rotated and is truncated while the pipeline runs.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::FileSource;
use crate::{FlowExt, Pipeline};

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Waits (up to 20 s) until `seen` holds `want`; fails naming what it holds.
fn until(seen: &Arc<Mutex<Vec<String>>>, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if *seen.lock().unwrap() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {want:?}, have {:?}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn follows_a_file_as_it_grows_is_rotated_and_truncated_until_shut_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, "a\n").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let rt = crate::test_support::rt();
    let running = Pipeline::file_lines(FileSource::lines(&path).follow(Duration::from_millis(2)))
        .for_each(move |l| log.lock().unwrap().push(l.text))
        .run(&rt)
        .unwrap();
    until(&seen, &["a"]);

    // Grows; a line without its newline waits for it.
    append(&path, "b\npar");
    until(&seen, &["a", "b"]);
    std::thread::sleep(Duration::from_millis(30));
    until(&seen, &["a", "b"]);
    append(&path, "tial\n");
    until(&seen, &["a", "b", "partial"]);

    // Rotated: the old file's last lines (the unfinished one as it is), then the
    // new file from its start.
    append(&path, "c\nunfinished");
    until(&seen, &["a", "b", "partial", "c"]);
    std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, "d\n").unwrap();
    until(&seen, &["a", "b", "partial", "c", "unfinished", "d"]);

    // Truncated in place: read again from the start.
    std::fs::write(&path, "").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    append(&path, "e\n");
    until(&seen, &["a", "b", "partial", "c", "unfinished", "d", "e"]);

    let done = futures::executor::block_on(running.shutdown(Duration::from_secs(5))).unwrap();
    done.report.check_conservation().unwrap();
}

#[test]
fn follow_is_for_lines_and_needs_a_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    std::fs::write(&path, "x\n").unwrap();
    let rt = crate::test_support::rt();
    let err = Pipeline::file_lines(FileSource::lines(&path).follow(Duration::ZERO))
        .for_each(|_| {})
        .run(&rt)
        .unwrap_err();
    assert!(
        err.to_string().contains("poll must be longer than 0"),
        "{err}"
    );
    let err = Pipeline::file_chunks(FileSource::chunks(&path, 4).follow(Duration::from_millis(1)))
        .for_each(|_| {})
        .run(&rt)
        .unwrap_err();
    assert!(err.to_string().contains("follow is for lines"), "{err}");
}
