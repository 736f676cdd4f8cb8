//! Limits: rate limiting and quotas, resource budgets, and validation — the
//! stages that protect what is behind them (a rate-limited stream, a limited
//! stream and a validated transform).
//!
//! | method | turns away | how |
//! |---|---|---|
//! | [`throttle`](LimitExt::throttle) / [`throttle_by_key`](LimitExt::throttle_by_key) | elements over a rate ([`ThrottleMode::Enforce`]), or delays them ([`ThrottleMode::Shape`]) | `ResourceExhausted` to the stage's supervision |
//! | [`max_elements`](LimitExt::max_elements) / [`max_bytes`](LimitExt::max_bytes) | everything past a total | ends the stream or fails ([`AtLimit`]) |
//! | [`validate`](LimitExt::validate) | elements a check refuses | `Permanent` to the stage's supervision |
//! | [`max_element_bytes`](LimitExt::max_element_bytes) | elements over a size | `Permanent` to the stage's supervision |
//!
//! # Where turned-away elements go
//!
//! A stage that turns an element away reports it as failed to the stage's own
//! [`Supervision`], with the reason as the message, and the policy decides —
//! exactly as for any failing element. [`rejections_to`] builds the usual
//! choice: every rejection goes to a [`DeadLetterSink`] (a bounded
//! [`MemoryDlq`](weir_supervisor::dead_letter::MemoryDlq), or a durable
//! [`SharedFileDlq`](weir_supervisor::dead_letter::SharedFileDlq)) and is counted
//! as `dead_lettered` in the stage's report, so conservation stays exact:
//! `input = completed + dead_lettered + abandoned`. Without supervision the first
//! rejection fails the pipeline with the reason.
//!
//! # Examples
//!
//! ```
//! use weir_operators::limit::{LimitExt, Rate, Throttle, rejections_to};
//! use weir_operators::{FlowExt, Pipeline};
//! use weir_supervisor::dead_letter::MemoryDlq;
//!
//! let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
//! let dead = MemoryDlq::new(100);
//! let done = Pipeline::from_iter(["ok", "", "fine", "waaaaaaaaaaay too long"])
//!     .supervise(rejections_to(dead.clone()))
//!     .validate(|s: &&str| if s.is_empty() { Err("empty".into()) } else { Ok(()) })
//!     .supervise(rejections_to(dead.clone()))
//!     .max_element_bytes(8, |s: &&str| s.len())
//!     .throttle(Throttle::shape(Rate::per_second(1_000)).burst(10))
//!     .map(String::from)
//!     .collect()
//!     .run(&rt)?
//!     .wait()?;
//! assert_eq!(done.output, ["ok", "fine"]);
//! let reasons: Vec<String> = dead.drain().into_iter().map(|l| l.error).collect();
//! assert_eq!(reasons, ["empty", "element of 22 bytes exceeds max_element_bytes 8"]);
//! assert_eq!(done.report.dead_lettered(), 2);
//! done.report.check_conservation()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod budget;
pub mod clock;
mod config;
mod quotas;
mod reconfig;
mod reject;
mod throttle;
mod validate;

use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use weir_runtime::reconfig::ConfigHandle;
use weir_runtime::{ErrorClass, Flow, Supervision};
use weir_supervisor::dead_letter::DeadLetterSink;
use weir_supervisor::policy::{Action, SupervisionPolicy};

pub use budget::{AtLimit, Budget};
pub use config::{KeysFull, Rate, Throttle, ThrottleMode, ThrottleStats};
pub use reconfig::ThrottleConfig;
pub use throttle::ThrottleStage;
pub use validate::Validate;

/// Supervision that sends every element a limit stage turns away to `sink`, at
/// once: permanent failures (`validate`, `max_element_bytes`) and exhausted
/// resources (an enforcing `throttle`) are dead-lettered, not retried. Put it
/// right before the stage with [`Flow::supervise`]. Other failures keep the
/// default policy; a full sink escalates (the pipeline fails rather than drop an
/// element).
///
/// # Examples
///
/// ```
/// use weir_operators::limit::rejections_to;
/// use weir_supervisor::dead_letter::MemoryDlq;
///
/// let dead = MemoryDlq::<String>::new(1_000);
/// let supervision = rejections_to(dead.clone());
/// # drop(supervision);
/// ```
pub fn rejections_to<T: Send + 'static>(sink: impl DeadLetterSink<T>) -> Supervision<T> {
    let policy = SupervisionPolicy::default()
        .action(ErrorClass::Permanent, Action::DeadLetter)
        .action(ErrorClass::ResourceExhausted, Action::DeadLetter);
    Supervision::new(policy).dead_letters_to(sink)
}

/// The limit stages, as methods on a [`Flow`]. In the prelude.
pub trait LimitExt<T: Clone + Send + 'static>: Sized {
    /// Holds the stream to a rate: shaping delays elements until the rate allows
    /// them, enforcing turns away those beyond it (see [`Throttle`],
    /// [`ThrottleMode`], [`ThrottleStage`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::limit::{LimitExt, Rate, Throttle};
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let throttle = Throttle::shape(Rate::per_second(500)).burst(5);
    /// let stats = throttle.stats();
    /// let started = std::time::Instant::now();
    /// let done = Pipeline::from_iter(0..15).throttle(throttle).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output.len(), 15);
    /// // 5 at once, then one every 2 ms.
    /// assert!(started.elapsed() >= std::time::Duration::from_millis(20));
    /// assert_eq!(stats.admitted(), 15);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn throttle(self, throttle: Throttle) -> Flow<T>;

    /// [`throttle`](Self::throttle) with one quota per key: each key is held to
    /// the rate on its own. At most [`Throttle::max_keys`] keys are tracked; idle
    /// ones are forgotten first, then [`KeysFull`] decides.
    ///
    /// Each key's quota is checkpointed; `K` must be a serde type.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::limit::{LimitExt, Rate, Throttle, rejections_to};
    /// use weir_operators::{FlowExt, Pipeline};
    /// use weir_supervisor::dead_letter::MemoryDlq;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let dead = MemoryDlq::new(10);
    /// let done = Pipeline::from_iter([('a', 1), ('a', 2), ('b', 1), ('a', 3)])
    ///     .supervise(rejections_to(dead.clone()))
    ///     .throttle_by_key(|(user, _)| *user, Throttle::enforce(Rate::per_minute(1)).burst(2))
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [('a', 1), ('a', 2), ('b', 1)]);
    /// assert_eq!(dead.drain()[0].element, ('a', 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn throttle_by_key<K, F>(self, key: F, throttle: Throttle) -> Flow<T>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        F: FnMut(&T) -> K + Send + 'static;

    /// [`throttle`](Self::throttle) whose rate and burst `handle` changes while the
    /// pipeline runs (see [`ThrottleConfig`]). An invalid rate or burst is rejected
    /// and the one in force kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::limit::{LimitExt, Rate, Throttle, ThrottleConfig};
    /// use weir_operators::{FlowExt, Pipeline};
    /// use weir_runtime::reconfig::ConfigHandle;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let rate = ConfigHandle::<ThrottleConfig>::new();
    /// // An ingress keeps the stage running until the handle is dropped.
    /// let (ingress, flow) = Pipeline::ingress::<u32>(128);
    /// let running = flow
    ///     .throttle_with_config(Throttle::shape(Rate::per_second(100_000)), &rate)
    ///     .collect()
    ///     .run(&rt)?;
    /// let applied = rate.reconfigure_blocking(ThrottleConfig::new(Rate::per_second(50_000), 10))?;
    /// assert_eq!(applied.generation, 1);
    /// // A zero burst is rejected; the rate in force stays.
    /// assert!(rate.reconfigure_blocking(ThrottleConfig::new(Rate::per_second(1), 0)).is_err());
    /// for x in 0..100 {
    ///     ingress.try_send(x).expect("room in the ingress buffer");
    /// }
    /// drop(ingress);
    /// let done = running.wait()?;
    /// assert_eq!(done.output.len(), 100);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn throttle_with_config(
        self,
        throttle: Throttle,
        handle: &ConfigHandle<ThrottleConfig>,
    ) -> Flow<T>;

    /// Passes at most `n` elements in all; [`AtLimit`] says what happens to the
    /// stream at the limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::limit::{AtLimit, LimitExt};
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(0..).max_elements(3, AtLimit::End).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [0, 1, 2]);
    /// let err = Pipeline::from_iter(0..5).max_elements(3, AtLimit::Fail).collect().run(&rt)?.wait();
    /// assert!(err.unwrap_err().to_string().contains("max_elements limit of 3 exceeded"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn max_elements(self, n: u64, at_limit: AtLimit) -> Flow<T>;

    /// Passes elements while their total size, as `size` measures it, stays within
    /// `limit` bytes; [`AtLimit`] says what happens to the stream at the limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::limit::{AtLimit, LimitExt};
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(["abc", "de", "fgh", "i"])
    ///     .max_bytes(6, |s: &&str| s.len() as u64, AtLimit::End)
    ///     .map(String::from)
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, ["abc", "de"]); // "fgh" would make 8
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn max_bytes<S>(self, limit: u64, size: S, at_limit: AtLimit) -> Flow<T>
    where
        S: FnMut(&T) -> u64 + Send + 'static;

    /// Checks every element with `check`; `Err(reason)` turns the element away
    /// with [`ErrorClass::Permanent`] and the reason (see [`Validate`] and the
    /// module docs for where it goes).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::limit::{LimitExt, rejections_to};
    /// use weir_operators::{FlowExt, Pipeline};
    /// use weir_supervisor::dead_letter::MemoryDlq;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let dead = MemoryDlq::new(10);
    /// let done = Pipeline::from_iter([4, -1, 7])
    ///     .supervise(rejections_to(dead.clone()))
    ///     .validate(|x: &i32| if *x >= 0 { Ok(()) } else { Err(format!("{x} is negative")) })
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [4, 7]);
    /// assert_eq!(dead.drain()[0].error, "-1 is negative");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn validate<F>(self, check: F) -> Flow<T>
    where
        F: FnMut(&T) -> Result<(), String> + Send + 'static;

    /// Turns away every element larger than `limit` bytes, as `size` measures it,
    /// before any later stage sees it (see [`validate`](Self::validate)). `limit`
    /// must be at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::limit::{LimitExt, rejections_to};
    /// use weir_operators::{FlowExt, Pipeline};
    /// use weir_supervisor::dead_letter::MemoryDlq;
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let dead = MemoryDlq::new(10);
    /// let done = Pipeline::from_iter([vec![0_u8; 10], vec![0; 2_000], vec![0; 3]])
    ///     .supervise(rejections_to(dead.clone()))
    ///     .max_element_bytes(1_024, Vec::len)
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output.len(), 2);
    /// assert_eq!(dead.drain()[0].error, "element of 2000 bytes exceeds max_element_bytes 1024");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn max_element_bytes<S>(self, limit: usize, size: S) -> Flow<T>
    where
        S: FnMut(&T) -> usize + Send + 'static;
}

impl<T: Clone + Send + 'static> LimitExt<T> for Flow<T> {
    fn throttle(self, throttle: Throttle) -> Flow<T> {
        self.cloneable()
            .via(ThrottleStage::new("throttle", throttle, |_: &T| ()))
    }

    fn throttle_with_config(
        self,
        throttle: Throttle,
        handle: &ConfigHandle<ThrottleConfig>,
    ) -> Flow<T> {
        self.cloneable()
            .via_reconfigurable(ThrottleStage::new("throttle", throttle, |_: &T| ()), handle)
    }

    fn throttle_by_key<K, F>(self, key: F, throttle: Throttle) -> Flow<T>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        F: FnMut(&T) -> K + Send + 'static,
    {
        self.cloneable()
            .via(ThrottleStage::new("throttle_by_key", throttle, key))
    }

    fn max_elements(self, n: u64, at_limit: AtLimit) -> Flow<T> {
        self.cloneable()
            .via(Budget::new("max_elements", n, |_: &T| 1, at_limit))
    }

    fn max_bytes<S>(self, limit: u64, size: S, at_limit: AtLimit) -> Flow<T>
    where
        S: FnMut(&T) -> u64 + Send + 'static,
    {
        self.cloneable()
            .via(Budget::new("max_bytes", limit, size, at_limit))
    }

    fn validate<F>(self, check: F) -> Flow<T>
    where
        F: FnMut(&T) -> Result<(), String> + Send + 'static,
    {
        self.cloneable().via(Validate::new("validate", check, None))
    }

    fn max_element_bytes<S>(self, limit: usize, mut size: S) -> Flow<T>
    where
        S: FnMut(&T) -> usize + Send + 'static,
    {
        let invalid = (limit == 0).then(|| {
            "max_element_bytes(0) would turn every element away; the limit must be at least 1"
                .to_owned()
        });
        let check = move |x: &T| {
            let n = size(x);
            if n > limit {
                Err(format!(
                    "element of {n} bytes exceeds max_element_bytes {limit}"
                ))
            } else {
                Ok(())
            }
        };
        self.cloneable()
            .via(Validate::new("max_element_bytes", check, invalid).bounding(limit as u64))
    }
}

#[cfg(test)]
mod tests;
