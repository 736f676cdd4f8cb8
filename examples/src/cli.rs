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
