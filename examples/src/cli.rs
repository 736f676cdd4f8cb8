//! What the command-line examples (`logproc`, `etl`) share: how a failure before
//! or after the run becomes a message and an exit code, and how output to a
//! closed stdout ends a program.
//!
//! # A closed stdout
//!
//! `logproc | head -1` closes logproc's stdout after one line. Rust ignores
//! `SIGPIPE`, so every later write fails with `EPIPE` (`BrokenPipe`), and
//! `println!` panics on it. The examples write their output with `writeln!`
//! instead and take `BrokenPipe` as "nobody reads any more": they stop writing
//! to stdout and exit with code 0, quietly, as most Unix tools do (a shell's
//! `set -o pipefail` then does not fail on `| head`). `logproc` and `etl`
//! finish their run and still write `--report`; the scenario binaries stop at
//! once ([`outln!`](crate::outln)). Any other write error is a failure
//! (exit code 1) with a message.

use std::fmt;
use std::io::{self, Write};
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

/// Whether stdout is closed after `result`, a write to it: `Ok(false)` when
/// it succeeded, `Ok(true)` when the reader went away (`BrokenPipe`, see the
/// [module docs](self)), a failed run for any other error.
///
/// # Errors
///
/// The write failed for another reason than a closed pipe.
///
/// ```
/// use std::io::{Error, ErrorKind};
/// use weir_examples::cli::stdout_closed;
///
/// assert!(!stdout_closed(Ok(())).unwrap());
/// assert!(stdout_closed(Err(Error::from(ErrorKind::BrokenPipe))).unwrap());
/// assert!(stdout_closed(Err(Error::other("disk full"))).is_err());
/// ```
pub fn stdout_closed(result: io::Result<()>) -> Result<bool, Fatal> {
    match result {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(failed(format!("writing to stdout: {e}"))),
    }
}

/// Writes `args` and a newline to stdout, locked. When the reader went away
/// (`BrokenPipe`) the program exits at once with code 0, quietly; on any
/// other error it exits with code 1 and a message. Called by [`outln!`](crate::outln).
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    match stdout_closed(written) {
        Ok(false) => {}
        Ok(true) => std::process::exit(0),
        Err(Fatal(message, code)) => {
            drop(out);
            eprintln!("{message}");
            std::process::exit(i32::from(code));
        }
    }
}

/// `println!` that ends the program quietly with exit code 0 when stdout is
/// closed (`example | head -1`) instead of panicking; see [`print_line`].
///
/// ```
/// weir_examples::outln!("{} lines", 3);
/// ```
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::print_line(::std::format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::print_line(::std::format_args!($($arg)*))
    };
}

/// Writes `bytes` to `path` atomically: into a temporary file beside it, then
/// renamed over it, so that a reader sees the old content or the new, never
/// part of it (a live report rewritten while someone reads it).
///
/// # Errors
///
/// The temporary file cannot be written, or renamed.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("report.json");
/// weir_examples::cli::write_atomically(&path, b"{}")?;
/// weir_examples::cli::write_atomically(&path, b"{\"lines\": 3}")?;
/// assert_eq!(std::fs::read_to_string(&path)?, "{\"lines\": 3}");
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1); // no temporary file left
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("not a file name"))?;
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
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

/// The environment variable a command-line example reads the console's bearer
/// token from (never a flag: a flag shows in `ps` to every user).
pub const CONSOLE_TOKEN_ENV: &str = "WEIR_CONSOLE_TOKEN";

/// How a command-line example serves its console (`--console ADDR`,
/// `--console-controls`, the token from [`CONSOLE_TOKEN_ENV`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleOptions {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// The bearer token every request must carry, if any.
    pub token: Option<String>,
    /// Whether the console's controls (pause and resume the source, reset a
    /// breaker, resize a pool, take a checkpoint) are on; they need the token.
    pub controls: bool,
}

impl ConsoleOptions {
    /// The options of `--console ADDR` and `--console-controls`, with the token
    /// from the environment ([`CONSOLE_TOKEN_ENV`], if set and not empty).
    /// `None` without an address; controls without one are a usage error.
    ///
    /// # Errors
    ///
    /// `--console-controls` without `--console`, or without a token.
    pub fn from_flags(
        addr: Option<std::net::SocketAddr>,
        controls: bool,
    ) -> Result<Option<ConsoleOptions>, Fatal> {
        let token = std::env::var(CONSOLE_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty());
        match addr {
            None if controls => Err(usage("--console-controls needs --console ADDR")),
            None => Ok(None),
            Some(_) if controls && token.is_none() => Err(usage(format!(
                "--console-controls needs a bearer token in {CONSOLE_TOKEN_ENV}"
            ))),
            Some(addr) => Ok(Some(ConsoleOptions {
                addr,
                token,
                controls,
            })),
        }
    }
}

/// A command-line example's running pipeline: on its own, or under a
/// [`PipelineManager`](weir::manager::PipelineManager) whose live console is served (`--console ADDR`). Either
/// way the same graph, named `name`, and the same report.
///
/// # Examples
///
/// ```no_run
/// use weir::prelude::*;
/// use weir_examples::cli::Run;
///
/// let rt = Runtime::new()?;
/// let graph = Graph::new(); // the example's graph
/// let console = weir_examples::cli::ConsoleOptions {
///     addr: "127.0.0.1:0".parse()?,
///     token: None,
///     controls: false,
/// };
/// let run = Run::start("etl", "etl", graph, &rt, Some(console))
///     .map_err(|e| e.0)?;
/// let report = run.wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum Run {
    /// Run with [`Graph::run`](weir::Graph::run).
    Plain(weir::Running<()>),
    /// Run by a manager whose console is served until the run has ended.
    Console {
        /// The manager running the pipeline (and only it).
        manager: weir::manager::PipelineManager,
        /// The pipeline's controller.
        controller: weir::PipelineController,
        /// The pipeline's name in the manager.
        name: String,
        /// Served until the run has ended.
        console: weir::console::ConsoleServer,
    },
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Run::Plain(_) => "Run::Plain",
            Run::Console { .. } => "Run::Console",
        })
    }
}

impl Run {
    /// Starts `graph` on `rt` as pipeline `name`; with `console`, under a manager
    /// whose console is served there (its URL printed to stderr, prefixed with
    /// `program`).
    ///
    /// # Errors
    ///
    /// A usage error: the graph is invalid, or the console cannot listen there
    /// (or has controls without a token).
    pub fn start(
        program: &str,
        name: &str,
        graph: weir::Graph,
        rt: &weir::Runtime,
        console: Option<ConsoleOptions>,
    ) -> Result<Run, Fatal> {
        let Some(options) = console else {
            return Ok(Run::Plain(graph.run(rt).map_err(usage)?));
        };
        let manager = weir::manager::PipelineManager::new();
        let mut builder = weir::console::Console::new(&manager);
        if let Some(token) = options.token {
            builder = builder.bearer_token(token);
        }
        if options.controls {
            builder = builder.enable_controls();
        }
        let console = builder
            .serve(options.addr)
            .map_err(|e| usage(format!("--console: {e}")))?;
        eprintln!("{program}: console on http://{}/", console.local_addr());
        let controller = manager.start_graph(name, graph, rt).map_err(|e| match e {
            weir::manager::ManagerError::Build(e) => usage(e),
            e => failed(e),
        })?;
        Ok(Run::Console {
            manager,
            controller,
            name: name.to_owned(),
            console,
        })
    }

    /// The running pipeline's controller.
    pub fn controller(&self) -> weir::PipelineController {
        match self {
            Run::Plain(running) => running.controller(),
            Run::Console { controller, .. } => controller.clone(),
        }
    }

    /// Waits for the end: the report, or the error as text. The console stops
    /// serving then.
    ///
    /// # Errors
    ///
    /// The pipeline failed (the error's text).
    pub fn wait(self) -> Result<weir::Report, String> {
        match self {
            Run::Plain(running) => running
                .wait()
                .map(|done| done.report)
                .map_err(|e| e.to_string()),
            Run::Console {
                manager,
                console,
                name,
                ..
            } => {
                let ended = futures::executor::block_on(manager.join(&name));
                console.shutdown();
                match ended {
                    Some(weir::manager::Ended {
                        report: Some(report),
                        error: None,
                        ..
                    }) => Ok(report),
                    Some(weir::manager::Ended { error, .. }) => {
                        Err(error.unwrap_or_else(|| "ended without a report".to_owned()))
                    }
                    None => Err("the manager lost the pipeline".to_owned()),
                }
            }
        }
    }
}

/// Ctrl-C (SIGINT on unix), registered when made: one that comes after
/// [`register`](Self::register) returned is never missed, even before anything
/// waits for it (the process is not killed by it any more).
///
/// # Examples
///
/// ```no_run
/// use weir_examples::cli::Interrupts;
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// rt.block_on(async {
///     let mut interrupts = Interrupts::register()?;
///     println!("ready"); // a Ctrl-C from now on is seen
///     if interrupts.next().await {
///         println!("stopping");
///     }
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Registers the handler. Call it inside a tokio runtime with I/O enabled.
    ///
    /// # Errors
    ///
    /// The handler cannot be installed (no runtime, or the OS refused).
    pub fn register() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupts {
                signal: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// Waits for the next Ctrl-C; false if none can come any more.
    pub async fn next(&mut self) -> bool {
        #[cfg(unix)]
        {
            self.signal.recv().await.is_some()
        }
        #[cfg(not(unix))]
        {
            // Registered when first waited for.
            tokio::signal::ctrl_c().await.is_ok()
        }
    }
}
