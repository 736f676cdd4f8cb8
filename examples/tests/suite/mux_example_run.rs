//! The mux/demux example runs to completion, checks its own results and says so.

use std::process::Command;

#[test]
fn mux_demux_runs_and_a_stalled_sub_stream_does_not_hold_up_the_others() {
    let out = Command::new(env!("CARGO_BIN_EXE_mux_demux"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("baseline, every consumer reading: alpha and beta delivered 20000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("while gamma was stalled: alpha 20000 and beta 20000 events in order"),
        "{stdout}"
    );
    assert!(
        stdout.contains("gamma stalled: its source emitted 120 ="),
        "{stdout}"
    );
    assert!(stdout.contains("the demux holds 64 for it"), "{stdout}");
    assert!(
        stdout.contains("gamma resumed and delivered 20000 events"),
        "{stdout}"
    );
    assert!(
        stdout.contains("per-sub-stream counts of `demux`"),
        "{stdout}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
