//! The join example runs to completion, checks its own results and says so.

use std::process::Command;

#[test]
fn order_payment_join_settles_every_order_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_order_payment_join"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(
        stdout.contains("paid: 4300 orders, unpaid: 700"),
        "{stdout}"
    );
    assert!(
        stdout.contains("orphan payments (side output): 220"),
        "{stdout}"
    );
}
