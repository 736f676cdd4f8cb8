//! The `tcp_echo_count` example moves lines from TCP clients through a pipeline to a
//! TCP collector, turning away one oversized frame; both sides' counts must agree.

use std::process::Command;

#[test]
fn tcp_echo_count_delivers_every_good_line_and_dead_letters_the_bad_frame() {
    let out = Command::new(env!("CARGO_BIN_EXE_tcp_echo_count"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("4000 frames, 1 bad frames, 0 refused"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dead letter: bad frame from 127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line longer than the maximum of 256 bytes"),
        "{stdout}"
    );
    assert!(stdout.contains("4000 lines written"), "{stdout}");
    assert!(stdout.contains("collector read 4000"), "{stdout}");
}
