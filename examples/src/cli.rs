//! What the command-line examples (`logproc`, `etl`) share: how a failure before
//! or after the run becomes a message and an exit code.

use std::process::ExitCode;

/// A failure before or after the run: a message, and the exit code (2 for a
/// usage error, 1 for a failed run).
#[derive(Debug)]
pub struct Fatal(pub String, pub u8);

/// A usage error (bad arguments or configuration): exit code 2.
pub fn usage(message: impl std::fmt::Display) -> Fatal {
    Fatal(message.to_string(), 2)
}

/// A failed run: exit code 1.
pub fn failed(message: impl std::fmt::Display) -> Fatal {
    Fatal(message.to_string(), 1)
}

/// The exit code of a program's `run`; prints `program: message` to stderr on
/// failure.
///
/// ```
/// use weir_examples::cli::{exit, usage};
/// let code = exit("demo", Err(usage("--rows must be at least 1")));
/// assert_eq!(code, std::process::ExitCode::from(2));
/// ```
pub fn exit(program: &str, result: Result<(), Fatal>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal(message, code)) => {
            eprintln!("{program}: {message}");
            ExitCode::from(code)
        }
    }
}

/// Threads that run a callback periodically (health and progress printers) until
/// [`stop`](Self::stop).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use weir_examples::cli::Tickers;
///
/// let ticks = Arc::new(AtomicU32::new(0));
/// let mut tickers = Tickers::default();
/// let counter = Arc::clone(&ticks);
/// tickers.every(Duration::from_secs(60), move || {
///     counter.fetch_add(1, Ordering::Relaxed);
/// });
/// tickers.stop(); // joins the thread; it ticked once, at the start
/// assert_eq!(ticks.load(Ordering::Relaxed), 1);
/// ```
#[derive(Debug, Default)]
pub struct Tickers {
    stop: Vec<std::sync::mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Tickers {
    /// Runs `tick` now and every `period` on a thread of its own until stopped.
    pub fn every(&mut self, period: std::time::Duration, mut tick: impl FnMut() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        self.stop.push(tx);
        self.threads.push(std::thread::spawn(move || {
            loop {
                tick();
                match rx.recv_timeout(period) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
        }));
    }

    /// Stops every thread and waits for them.
    pub fn stop(self) {
        drop(self.stop);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}
