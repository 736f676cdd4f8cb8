//! Running a test on an actix System, in real or virtual time.
//!
//! [`run_paused`] starts an actix System whose tokio clock is *paused*: time
//! stands still while anything can run, and jumps to the next timer as soon as
//! nothing can. Windows, backoff, throttles, stall watchdogs and the probes'
//! timeouts all follow that clock, so a test of a one-minute window takes
//! microseconds and gives the same result every time. Move the clock yourself with
//! [`advance`]; let every actor run to quiescence with [`settle`].
//!
//! [`run`] is the same on a normal clock, for tests that want real timing.
//!
//! Both run the pipeline's stages on the calling thread (one arbiter: the
//! System's), so the test's `async` block and the stages interleave
//! deterministically.

use std::future::Future;
use std::time::Duration;

use weir::Runtime;

/// Scheduling rounds [`settle`] yields for: enough for a chain of dozens of stages
/// to pass a batch end to end.
const SETTLE_ROUNDS: usize = 500;

/// Runs `test` on a fresh actix System whose tokio clock is paused, with a
/// [`Runtime`] on that System, and returns what `test` returns.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir::prelude::*;
/// use weir_testkit::time::{advance, run_paused};
///
/// let fired = run_paused(|_rt| async {
///     let start = tokio::time::Instant::now();
///     advance(Duration::from_secs(3600)).await; // an hour, instantly
///     start.elapsed()
/// });
/// assert_eq!(fired, Duration::from_secs(3600));
/// ```
///
/// # Panics
///
/// If called on a thread that already runs an actix System or a tokio runtime, or
/// if `test` panics.
pub fn run_paused<R, Fut>(test: impl FnOnce(Runtime) -> Fut) -> R
where
    Fut: Future<Output = R>,
{
    run_on(true, test)
}

/// Runs `test` on a fresh actix System with a normal clock, with a [`Runtime`] on
/// that System.
///
/// # Examples
///
/// ```
/// use weir::prelude::*;
/// use weir_testkit::time::run;
///
/// let out = run(|rt| async move {
///     Pipeline::from_iter(1..=3_u32).collect().run(&rt).unwrap().await.unwrap().output
/// });
/// assert_eq!(out, [1, 2, 3]);
/// ```
///
/// # Panics
///
/// As [`run_paused`].
pub fn run<R, Fut>(test: impl FnOnce(Runtime) -> Fut) -> R
where
    Fut: Future<Output = R>,
{
    run_on(false, test)
}

fn run_on<R, Fut>(paused: bool, test: impl FnOnce(Runtime) -> Fut) -> R
where
    Fut: Future<Output = R>,
{
    let system = actix_rt::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(paused)
            .build()
            .expect("a current-thread tokio runtime")
    });
    system.block_on(async move {
        // Cannot fail: this runs inside the System started just above.
        let rt = Runtime::from_current().expect("a weir runtime on the test's actix System");
        test(rt).await
    })
}

/// Lets every actor on the current (single-threaded) System run until nothing
/// moves: yields to the scheduler a fixed number of rounds. It does not move the
/// clock.
pub async fn settle() {
    for _ in 0..SETTLE_ROUNDS {
        tokio::task::yield_now().await;
    }
}

/// Moves the paused clock forward by `by`, firing every timer that falls due on
/// the way, then [`settle`]s so the stages react to them.
///
/// # Panics
///
/// If the clock is not paused (use it inside [`run_paused`]).
pub async fn advance(by: Duration) {
    settle().await;
    tokio::time::advance(by).await;
    settle().await;
}
