//! Keyed state: `key_by(f)` then a per-key `scan`, `reduce`, `fold`, `aggregate` or
//! `dedupe`, with an idle TTL and a bound on the number of keys.
//!
//! [`KeyedExt::key_by`] turns a [`Flow`] into a [`Keyed`] builder; its bounds
//! ([`ttl`](Keyed::ttl), [`max_keys`](Keyed::max_keys)) and
//! [`counters`](Keyed::counters) apply to the one stage the terminal method adds.
//!
//! # State, time and bounds
//!
//! - **State** lives in the stage, one entry per key (a `HashMap` per key group). It is not an
//!   element: the report counts inputs as completed once folded in, and the
//!   entries as [`Operator::state_entries`](weir_runtime::operator::Operator::state_entries).
//! - **TTL** is idle time on the tokio clock: a key not seen for `ttl` is removed
//!   (counted in [`StateCounters::expired`]); a timer steps the stage when the
//!   oldest key's TTL runs out, so a key expires on time even without input. Under a
//!   paused tokio runtime the clock is virtual, and expiry is exact.
//! - **Key bound**: with [`max_keys`](Keyed::max_keys) a new key beyond the bound
//!   evicts the least recently used one ([`OnFull::EvictLru`], counted) or fails
//!   its element ([`OnFull::Fail`], counted as rejected). Without a TTL or a bound
//!   the state grows with the number of distinct keys.
//! - **Restart**: every keyed stage is built from a factory. A supervised restart
//!   starts it with empty state; the entries it held are added to the stage's
//!   `state_lost` in the report and stats. The element that failed is retried
//!   (or dead-lettered) by the policy like for `map`.
//! - **Checkpoints**: every keyed stage is checkpointable. Its entries are stored
//!   by key group ([`Snapshot::keyed`](weir_runtime::checkpoint::Snapshot::keyed)),
//!   so a stage restored as one of several replicas takes exactly the keys it
//!   owns. Keys and states are therefore serde types (`Serialize +
//!   DeserializeOwned`: owned keys such as `String`, not `&str`). A key's idle
//!   time is stored as its age at the snapshot and counted again from the
//!   restore: the time the pipeline was down does not count towards the TTL. The
//!   recency order (for [`OnFull::EvictLru`]) and the counters (expired, evicted,
//!   rejected, peak keys) are restored too. `scan`, `reduce`, `fold`,
//!   `aggregate` and `dedupe` pause only microseconds for a snapshot, whatever
//!   the number of keys: they share their key groups with the checkpoint's
//!   writer thread, which encodes them, and copy a group only if they change it
//!   before the writer is done (so their keys and states are `Sync`, and
//!   `aggregate`'s accumulator is `Clone`).
//!
//! # Examples
//!
//! A running total per customer:
//!
//! ```
//! use weir_operators::keyed::KeyedExt;
//! use weir_operators::{FlowExt, Pipeline};
//! # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
//! let done = Pipeline::from_iter([("ann", 5), ("bob", 1), ("ann", 2)])
//!     .key_by(|(who, _): &(&str, u32)| who.to_string()) // keys are serde types
//!     .scan(0, |total: &mut u32, (who, amount)| {
//!         *total += amount;
//!         (who.to_string(), *total)
//!     })
//!     .collect()
//!     .run(&rt)?
//!     .wait()?;
//! let totals: Vec<(&str, u32)> = done.output.iter().map(|(who, t)| (who.as_str(), *t)).collect();
//! assert_eq!(totals, [("ann", 5), ("bob", 1), ("ann", 7)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod dedupe;
pub(crate) mod groups;
mod scan;
mod state;

pub use aggregate::{Aggregate, KeyedAggregate};
pub use dedupe::Dedupe;
pub use scan::KeyedScan;
pub use state::{OnFull, StateCounters};

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::Flow;

pub(crate) use state::now as state_now;

use aggregate::{DeferFn, FoldWith};
use state::{Bounds, KeyedState};

/// A flow with a key function, waiting for its keyed operator. Created by
/// [`KeyedExt::key_by`]. Adds no stage by itself.
pub struct Keyed<T: Send + 'static, K, KF> {
    flow: Flow<T>,
    key: Arc<KF>,
    bounds: Bounds,
    _k: std::marker::PhantomData<fn() -> K>,
}

impl<T: Send + 'static, K, KF> std::fmt::Debug for Keyed<T, K, KF> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

/// Keyed operators, as methods on a [`Flow`]. In the prelude.
pub trait KeyedExt<T: Send + 'static>: Sized {
    /// Keys the flow by `key` for the keyed operator that follows (see [`Keyed`]).
    ///
    /// The keyed state is checkpointed: `K` is a serde type (`Serialize +
    /// DeserializeOwned`).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::keyed::KeyedExt;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(1..=6_u32)
    ///     .key_by(|x| x % 2)
    ///     .fold(0, |sum: &mut u32, x| *sum += x)
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [(1, 9), (0, 12)]); // at the end: least recently seen key first
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn key_by<K, KF>(self, key: KF) -> Keyed<T, K, KF>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        KF: Fn(&T) -> K + Send + Sync + 'static;

    /// Drops an element whose key passed less than `ttl` ago (counted as
    /// filtered); shorthand for `key_by(key).ttl(ttl).dedupe()`. See
    /// [`Keyed::dedupe`] to remember the last `n` keys instead.
    ///
    /// State is checkpointed; `K` must be a serde type, and `Sync`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::keyed::KeyedExt;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter(["a", "b", "a", "c", "b"])
    ///     .dedupe(|s| s.to_string(), Duration::from_secs(60))
    ///     .map(String::from)
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, ["a", "b", "c"]);
    /// assert_eq!(done.report.filtered(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn dedupe<K, KF>(self, key: KF, ttl: Duration) -> Flow<T>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        KF: Fn(&T) -> K + Send + Sync + 'static,
    {
        self.key_by(key).ttl(ttl).dedupe()
    }
}

impl<T: Send + 'static> KeyedExt<T> for Flow<T> {
    fn key_by<K, KF>(self, key: KF) -> Keyed<T, K, KF>
    where
        K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
        KF: Fn(&T) -> K + Send + Sync + 'static,
    {
        Keyed {
            flow: self,
            key: Arc::new(key),
            bounds: Bounds::default(),
            _k: std::marker::PhantomData,
        }
    }
}

impl<T, K, KF> Keyed<T, K, KF>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + 'static,
    KF: Fn(&T) -> K + Send + Sync + 'static,
{
    /// Removes a key's state once the key has not been seen for `ttl` (tokio
    /// clock), counted in [`StateCounters::expired`]. `fold` and `aggregate` emit
    /// the key's result then. `ttl` 0 is rejected when the pipeline is built.
    ///
    /// Choosing a TTL: the longest gap between two elements of one key that must
    /// still share state (a session timeout); the memory it costs is the number
    /// of keys active within one TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.bounds.ttl = Some(ttl);
        self
    }

    /// Holds at most `max` keys; a new key beyond that is handled by `policy`
    /// (see [`OnFull`]). `max` 0 is rejected when the pipeline is built.
    ///
    /// Choosing a bound: the state's memory is about `max` × (key + state +
    /// 48 bytes).
    pub fn max_keys(mut self, max: usize, policy: OnFull) -> Self {
        self.bounds.max_keys = Some((max, policy));
        self
    }

    /// Counts into `counters` (keys held, expired, evicted, rejected).
    pub fn counters(mut self, counters: &StateCounters) -> Self {
        self.bounds.counters = counters.clone();
        self
    }

    /// Emits `f(&mut state, element)` for each element, `state` being its key's
    /// (a clone of `init` for a new key). One output per input, in order. Kind
    /// `keyed_scan`.
    ///
    /// State is checkpointed; `K` and `S` must be serde types, and `Sync` (a
    /// checkpoint's writer thread encodes a frozen copy of the state).
    ///
    /// # Examples
    ///
    /// See the [module](self) example.
    pub fn scan<S, U, F>(self, init: S, f: F) -> Flow<U>
    where
        K: Sync,
        S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        U: Send + 'static,
        F: Fn(&mut S, T) -> U + Send + Sync + 'static,
    {
        let (key, f, bounds) = (self.key, Arc::new(f), self.bounds);
        self.flow.via_factory(move || {
            KeyedScan::new(
                "keyed_scan",
                Arc::clone(&key),
                Arc::clone(&f),
                init.clone(),
                bounds.clone(),
            )
        })
    }

    /// Emits, for each element, `f(previous, element)` where `previous` is the last
    /// value emitted for its key (the element itself for a key's first). A panic
    /// in `f` forgets the key's value. Kind `keyed_reduce`.
    ///
    /// State is checkpointed; `K` and `T` (the value kept per key) must be serde
    /// types, and `Sync`.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::keyed::KeyedExt;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter([('a', 3), ('b', 9), ('a', 1), ('a', 4)])
    ///     .key_by(|(k, _): &(char, u32)| *k)
    ///     .reduce(|a, b| if b.1 > a.1 { b } else { a }) // running max
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [('a', 3), ('b', 9), ('a', 3), ('a', 4)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reduce<F>(self, f: F) -> Flow<T>
    where
        K: Sync,
        T: Clone + Serialize + DeserializeOwned + Sync,
        F: Fn(T, T) -> T + Send + Sync + 'static,
    {
        let (key, bounds) = (self.key, self.bounds);
        let f = Arc::new(move |acc: &mut Option<T>, x: T| {
            let next = match acc.take() {
                Some(prev) => f(prev, x),
                None => x,
            };
            *acc = Some(next.clone());
            next
        });
        self.flow.via_factory(move || {
            KeyedScan::new(
                "keyed_reduce",
                Arc::clone(&key),
                Arc::clone(&f),
                None,
                bounds.clone(),
            )
        })
    }

    /// Folds each key's elements into a state (a clone of `init` to start) and
    /// emits `(key, state)` when the key's state ends: its TTL ran out, it was
    /// evicted, or the input ended (then least recently seen key first). Kind `keyed_fold`.
    ///
    /// State is checkpointed; `K` and `S` must be serde types.
    ///
    /// # Examples
    ///
    /// See [`KeyedExt::key_by`].
    pub fn fold<S, F>(self, init: S, f: F) -> Flow<(K, S)>
    where
        K: Sync,
        S: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn(&mut S, T) + Send + Sync + 'static,
    {
        let defer: DeferFn<K, S> = KeyedState::snapshot_deferred;
        self.aggregate_as("keyed_fold", FoldWith { init, f }, defer)
    }

    /// Like [`fold`](Self::fold) with an [`Aggregate`]: its accumulator per key,
    /// its result emitted as `(key, result)` when the key's state ends. Kind
    /// `keyed_aggregate`.
    ///
    /// State is checkpointed; `K` and the accumulator `A::Acc` must be serde
    /// types, and `Sync`; the accumulator `Clone` too (a snapshot shares the
    /// key groups with the checkpoint's writer and copies one only if the stage
    /// changes it before the writer is done, see the [module docs](self)).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::keyed::{Aggregate, KeyedExt};
    /// use weir_operators::{FlowExt, Pipeline};
    /// struct Mean;
    /// impl Aggregate<(char, f64)> for Mean {
    ///     type Acc = (f64, u32);
    ///     type Out = f64;
    ///     fn init(&self) -> (f64, u32) { (0.0, 0) }
    ///     fn add(&self, acc: &mut (f64, u32), x: (char, f64)) { acc.0 += x.1; acc.1 += 1; }
    ///     fn finish(&self, acc: (f64, u32)) -> f64 { acc.0 / f64::from(acc.1) }
    /// }
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter([('x', 1.0), ('y', 4.0), ('x', 2.0)])
    ///     .key_by(|(k, _): &(char, f64)| *k)
    ///     .aggregate(Mean)
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [('y', 4.0), ('x', 1.5)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn aggregate<A>(self, agg: A) -> Flow<(K, A::Out)>
    where
        K: Sync,
        A: Aggregate<T>,
        A::Acc: Clone + Serialize + DeserializeOwned + Sync,
    {
        let defer: DeferFn<K, A::Acc> = KeyedState::snapshot_deferred;
        self.aggregate_as("keyed_aggregate", agg, defer)
    }

    fn aggregate_as<A>(
        self,
        kind: &'static str,
        agg: A,
        defer: DeferFn<K, A::Acc>,
    ) -> Flow<(K, A::Out)>
    where
        A: Aggregate<T>,
        A::Acc: Serialize + DeserializeOwned,
    {
        let (key, agg, bounds) = (self.key, Arc::new(agg), self.bounds);
        self.flow.via_factory(move || {
            KeyedAggregate::new(kind, Arc::clone(&key), Arc::clone(&agg), bounds.clone())
                .deferring(defer)
        })
    }

    /// Drops an element whose key passed less than the [`ttl`](Self::ttl) ago, or
    /// is among the last [`max_keys`](Self::max_keys) keys that passed (with
    /// [`OnFull::EvictLru`]); dropped elements count as filtered. One of the two
    /// bounds is required (the build fails without). Kind `dedupe`.
    ///
    /// State is checkpointed; `K` must be a serde type, and `Sync`.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::keyed::{KeyedExt, OnFull};
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let done = Pipeline::from_iter([1, 2, 1, 3, 1])
    ///     .key_by(|x: &u32| *x)
    ///     .max_keys(2, OnFull::EvictLru) // remembers the last 2 distinct keys
    ///     .dedupe()
    ///     .collect()
    ///     .run(&rt)?
    ///     .wait()?;
    /// assert_eq!(done.output, [1, 2, 3, 1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dedupe(self) -> Flow<T>
    where
        K: Sync,
    {
        let (key, bounds) = (self.key, self.bounds);
        self.flow
            .via_factory(move || Dedupe::new(Arc::clone(&key), bounds.clone()))
    }
}
