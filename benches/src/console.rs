//! The cost of watching: the comparison workload run by a [`PipelineManager`],
//! once alone (`weir_managed`) and once with a console serving it and one
//! event-stream client reading `/api/events` throughout (`weir_console`). The
//! two differ only in the console, so their ratio is its cost.
//!
//! The console pushes at its shortest interval (250 ms), the most work it can
//! be asked for; its setup (binding, the client's connection and first frame)
//! is inside the timed run.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use weir::console::Console;
use weir::manager::PipelineManager;
use weir::prelude::*;

use crate::workload::{keep, map_step, sum_step};

/// The shortest push interval the console allows.
const INTERVAL: Duration = Duration::from_millis(250);

/// The workload's four stages; the sink keeps the running sum in `total` (a
/// managed pipeline hands no sink output back).
fn runnable(elements: u64, total: &Arc<AtomicU64>) -> Runnable<()> {
    let total = Arc::clone(total);
    let mut acc = 0_u64;
    Pipeline::from_iter(0..elements)
        .map(|x| map_step(1, x))
        .map(|x| map_step(2, x))
        .map(|x| map_step(3, x))
        .filter(|x| keep(*x))
        .for_each(move |x| {
            acc = sum_step(acc, x);
            total.store(acc, Relaxed);
        })
}

/// Runs the workload under `manager` to its end and returns the checksum.
fn run_managed_on(manager: &PipelineManager, elements: u64, rt: &Runtime) -> Result<u64, String> {
    let total = Arc::new(AtomicU64::new(0));
    manager
        .start("workload", runnable(elements, &total), rt)
        .map_err(|e| e.to_string())?;
    let ended = futures::executor::block_on(manager.join("workload"))
        .ok_or("the managed pipeline vanished")?;
    if let Some(e) = ended.error {
        return Err(e);
    }
    ended
        .report
        .ok_or("no report")?
        .check_conservation()
        .map_err(|e| e.to_string())?;
    Ok(total.load(Relaxed))
}

/// The workload under a [`PipelineManager`], no console.
///
/// # Errors
///
/// Fails when the pipeline cannot be built or does not complete.
pub fn run_managed(elements: u64) -> Result<u64, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    run_managed_on(&PipelineManager::new(), elements, &rt)
}

/// The workload under a [`PipelineManager`] whose console is served on
/// `127.0.0.1:0` with one client reading its event stream until the console
/// shuts down.
///
/// # Errors
///
/// Fails when the pipeline, the console or its client fails, or the client got
/// no `stats` frame.
pub fn run_console(elements: u64) -> Result<u64, String> {
    let rt = Runtime::builder()
        .arbiters(1)
        .build()
        .map_err(|e| e.to_string())?;
    let manager = PipelineManager::new();
    let console = Console::new(&manager)
        .interval(INTERVAL)
        .serve("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?)
        .map_err(|e| e.to_string())?;
    let mut socket = TcpStream::connect(console.local_addr()).map_err(|e| e.to_string())?;
    socket
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: bench\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(socket);
    // Attached: the stream's first frame has come.
    let mut frames = 0_u64;
    let mut line = String::new();
    while frames == 0 {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the event stream ended before its first frame".into());
        }
        frames += u64::from(line.starts_with("event: stats"));
    }
    let client = std::thread::spawn(move || {
        let mut frames = frames;
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            frames += u64::from(line.starts_with("event: stats"));
            line.clear();
        }
        frames
    });
    let sum = run_managed_on(&manager, elements, &rt);
    console.shutdown();
    let frames = client.join().map_err(|_| "the client panicked")?;
    if frames == 0 {
        return Err("the client read no stats frame".into());
    }
    sum
}
