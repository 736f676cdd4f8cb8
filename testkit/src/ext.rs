//! [`TestkitExt`]: the kit's stages as methods on a [`Flow`].

use std::hash::Hash;
use std::time::Duration;

use weir::{Flow, Runnable};

use crate::check::CheckSequence;
use crate::fault::{DelayEach, Fault, Inject, Stall, StallHandle};
use crate::probe::{SinkProbe, TestSink};

/// The test kit's stages as flow methods: `use weir_testkit::prelude::*;`.
///
/// In a [`Graph`](weir::Graph), use them inside `g.flow(outlet, |f| f.inject(…))`,
/// and end an outlet with [`TestSink::attach`].
pub trait TestkitExt<T: Send + 'static>: Sized {
    /// Adds a pass-through stage that fails the elements `fault` picks (see
    /// [`Inject`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir::prelude::*;
    /// use weir_testkit::prelude::*;
    ///
    /// let rt = Runtime::builder().arbiters(1).build()?;
    /// // A transient error on the 5th element, retried by the stage's supervision.
    /// let done = Pipeline::from_iter(0..10_u32)
    ///     .supervise(Supervision::new(SupervisionPolicy::default()).dead_letters(MemoryDlq::new(8)))
    ///     .inject(Fault::error_at(5))
    ///     .name("flaky")
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, (0..10).collect::<Vec<_>>());
    /// assert_eq!(done.report.stage("flaky").unwrap().retries, 1);
    /// assert_conserved(&done.report);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn inject(self, fault: Fault) -> Flow<T>;

    /// Adds a pass-through stage that takes `period` per element (see
    /// [`DelayEach`]): a slow stage.
    fn delay_each(self, period: Duration) -> Flow<T>;

    /// Adds a pass-through stage that passes `after` elements, then takes nothing
    /// until the returned handle is released (see [`Stall`]).
    fn stall_after(self, after: u64) -> (Flow<T>, StallHandle);

    /// Adds a pass-through stage that checks each element's `(key, sequence
    /// number)`, sequences from 0 per key, and fails the pipeline at the first gap
    /// or repeat (see [`CheckSequence`]).
    fn check_sequence<K, F>(self, seq: F) -> Flow<T>
    where
        K: Hash + Eq + Clone + std::fmt::Debug + Send + 'static,
        F: FnMut(&T) -> (K, u64) + Send + 'static;

    /// Ends the flow with a probed sink (see [`TestSink::probe`]).
    fn test_sink(self) -> (Runnable<()>, SinkProbe<T>);
}

impl<T: Send + 'static> TestkitExt<T> for Flow<T> {
    fn inject(self, fault: Fault) -> Flow<T> {
        self.via(Inject::new(fault))
    }

    fn delay_each(self, period: Duration) -> Flow<T> {
        self.via(DelayEach::new(period))
    }

    fn stall_after(self, after: u64) -> (Flow<T>, StallHandle) {
        let (stall, handle) = Stall::new(after);
        (self.via(stall), handle)
    }

    fn check_sequence<K, F>(self, seq: F) -> Flow<T>
    where
        K: Hash + Eq + Clone + std::fmt::Debug + Send + 'static,
        F: FnMut(&T) -> (K, u64) + Send + 'static,
    {
        self.via(CheckSequence::new(0, seq))
    }

    fn test_sink(self) -> (Runnable<()>, SinkProbe<T>) {
        TestSink::probe(self)
    }
}
