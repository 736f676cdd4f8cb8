//! The kill loop of the crash tests: run this test binary again as a child
//! that writes and acknowledges what is durable, one number per line on its
//! stdout, and kill it with SIGKILL at a random point after its first
//! acknowledgement.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Rng;

/// A seed from the clock (odd, as xorshift needs a non-zero one), printed by
/// the tests so that a failing run can be told apart.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

/// The child a crash test kills: the test `test` of this binary, run alone
/// with the variable `env` set to `value` (the test is a no-op without it).
#[derive(Debug, Clone, Copy)]
pub struct Child<'a> {
    pub test: &'a str,
    pub env: &'a str,
    pub value: &'a OsStr,
}

impl<'a> Child<'a> {
    pub fn new(test: &'a str, env: &'a str, value: &'a Path) -> Self {
        Child {
            test,
            env,
            value: value.as_os_str(),
        }
    }
}

/// Runs `child` `kills` times, killing each run with SIGKILL a random 0–3 ms
/// after its first acknowledgement, and calls `after(kill, acked)` once each
/// run is dead, with every number it acknowledged, in order.
///
/// # Panics
///
/// Naming `seed` and the kill, if a run ends before its first acknowledgement.
pub fn kill_loop(child: Child<'_>, kills: u32, seed: u64, mut after: impl FnMut(u32, Vec<u64>)) {
    let mut rng = Rng(seed);
    for kill in 0..kills {
        let acked = kill_after_first_ack(child, &mut rng, 3_000)
            .unwrap_or_else(|e| panic!("seed {seed}, kill {kill}: {e}"));
        after(kill, acked);
    }
}

/// Starts `child`, waits for its first acknowledgement, kills it after a
/// random 0..`max_delay_us` µs more, and returns every number it
/// acknowledged. A line cut by the kill (or the test harness's own) is no
/// number and is skipped; `Err` has what the child printed if it ended before
/// its first acknowledgement.
fn kill_after_first_ack(
    child: Child<'_>,
    rng: &mut Rng,
    max_delay_us: u64,
) -> Result<Vec<u64>, String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([child.test, "--exact", "--nocapture", "--test-threads=1"])
        .env(child.env, child.value)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let first = loop {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        if !line.ends_with('\n') {
            child.kill().unwrap();
            child.wait().unwrap();
            return Err(format!(
                "the child ended before its first acknowledgement: {line:?}"
            ));
        }
        if let Ok(n) = line.trim().parse::<u64>() {
            break n;
        }
    };
    std::thread::sleep(Duration::from_micros(rng.below(max_delay_us)));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut acked = vec![first];
    for line in lines.lines() {
        let Ok(line) = line else { break };
        if let Ok(n) = line.trim().parse::<u64>() {
            acked.push(n);
        }
    }
    Ok(acked)
}
