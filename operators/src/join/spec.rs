//! [`IntervalJoin`]: what to join and how (keys, time, bounds), and
//! [`JoinCounters`].

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_runtime::{Flow, Supervision};

use super::operator::JoinStage;
use super::{JoinOut, Side};
use crate::keyed::OnFull;

pub(crate) type KeyFn<X, K> = Arc<dyn Fn(&X) -> K + Send + Sync>;
pub(crate) type TsFn<X> = Arc<dyn Fn(&X) -> i64 + Send + Sync>;
pub(crate) type Combine<L, R, O> = Arc<dyn Fn(&L, Option<&R>) -> O + Send + Sync>;
type Wrap<T> = Box<dyn FnOnce(Flow<T>) -> Flow<T> + Send>;

#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) joined: AtomicU64,
    pub(crate) unmatched_left: AtomicU64,
    pub(crate) unmatched_right: AtomicU64,
    pub(crate) late: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) rows: AtomicU64,
    pub(crate) peak_rows: AtomicU64,
}

/// Live counts of a join stage: pairs joined, rows that ended unmatched, late
/// elements, rows expired by the TTL or evicted by the row bound, rows held.
/// Cheap to clone; pass one with [`IntervalJoin::counters`].
///
/// # Examples
///
/// ```
/// use weir_operators::join::JoinCounters;
/// let c = JoinCounters::new();
/// assert_eq!((c.joined(), c.rows(), c.unmatched_left()), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Default)]
pub struct JoinCounters(pub(crate) Arc<Counts>);

impl JoinCounters {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        JoinCounters::default()
    }
    /// Outputs made from a left and a right row.
    pub fn joined(&self) -> u64 {
        self.0.joined.load(Relaxed)
    }
    /// Left rows that left the state without a match: on the side output for an
    /// inner join, joined with `None` on the main output for a left-outer join.
    pub fn unmatched_left(&self) -> u64 {
        self.0.unmatched_left.load(Relaxed)
    }
    /// Right rows that left the state without a match (side output).
    pub fn unmatched_right(&self) -> u64 {
        self.0.unmatched_right.load(Relaxed)
    }
    /// Elements behind their side's watermark, sent to the side output unjoined.
    pub fn late(&self) -> u64 {
        self.0.late.load(Relaxed)
    }
    /// Rows removed by the TTL.
    pub fn expired(&self) -> u64 {
        self.0.expired.load(Relaxed)
    }
    /// Rows evicted by the row bound ([`OnFull::EvictLru`]: the oldest row).
    pub fn evicted(&self) -> u64 {
        self.0.evicted.load(Relaxed)
    }
    /// Rows refused by the row bound ([`OnFull::Fail`]).
    pub fn rejected(&self) -> u64 {
        self.0.rejected.load(Relaxed)
    }
    /// Rows held now.
    pub fn rows(&self) -> u64 {
        self.0.rows.load(Relaxed)
    }
    /// The most rows held at once.
    pub fn peak_rows(&self) -> u64 {
        self.0.peak_rows.load(Relaxed)
    }
}

/// Event time: timestamp extractors, the join interval and the out-of-orderness
/// bound.
pub(crate) struct EventTime<L, R> {
    pub(crate) left: TsFn<L>,
    pub(crate) right: TsFn<R>,
    pub(crate) lower: i64,
    pub(crate) upper: i64,
    pub(crate) lateness: i64,
}

impl<L, R> Clone for EventTime<L, R> {
    fn clone(&self) -> Self {
        EventTime {
            left: Arc::clone(&self.left),
            right: Arc::clone(&self.right),
            ..*self
        }
    }
}

/// The parts of a join that each fresh instance of its stage is built from.
pub(crate) struct Config<K, L, R, O> {
    pub(crate) key_left: KeyFn<L, K>,
    pub(crate) key_right: KeyFn<R, K>,
    pub(crate) combine: Combine<L, R, O>,
    pub(crate) outer: bool,
    pub(crate) time: Option<EventTime<L, R>>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) max_rows: Option<(usize, OnFull)>,
    pub(crate) counters: JoinCounters,
}

impl<K, L, R, O> Clone for Config<K, L, R, O> {
    fn clone(&self) -> Self {
        Config {
            key_left: Arc::clone(&self.key_left),
            key_right: Arc::clone(&self.key_right),
            combine: Arc::clone(&self.combine),
            outer: self.outer,
            time: self.time.clone(),
            ttl: self.ttl,
            max_rows: self.max_rows,
            counters: self.counters.clone(),
        }
    }
}

/// A stream-stream join by key of a left and a right input (seed `StreamJoin`,
/// Flink's interval join): how rows are keyed, when they match, what a match
/// makes, and how long rows wait. Run it with
/// [`JoinExt::interval_join`](super::JoinExt::interval_join) (two outlets of a
/// graph) or [`on`](Self::on) (a flow of [`Side`]s).
///
/// A left row `l` and a right row `r` match when their keys are equal, both are
/// in the state (neither expired nor evicted) and, with [`event_time`](Self::event_time),
/// `lower ≤ ts(r) − ts(l) ≤ upper`. Without event time, any two rows with equal
/// keys that meet in the state match (a processing-time join bounded by the TTL).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::join::IntervalJoin;
/// use weir_operators::keyed::OnFull;
///
/// // Orders (id, ts) and payments (order id, ts): a payment within 60 s after
/// // its order.
/// let join = IntervalJoin::inner(
///     |o: &(u32, i64)| o.0,
///     |p: &(u32, i64)| p.0,
///     |o, p| (o.0, p.1 - o.1),
/// )
/// .event_time(|o| o.1, |p| p.1, 0, 60_000)
/// .out_of_orderness(5_000)
/// .ttl(Duration::from_secs(600))
/// .max_rows(100_000, OnFull::EvictLru);
/// # drop(join);
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct IntervalJoin<K, L: Send + 'static, R: Send + 'static, O> {
    pub(crate) config: Config<K, L, R, O>,
    pub(crate) name: Option<String>,
    pub(crate) supervise: Option<Wrap<Side<L, R>>>,
}

impl<K, L: Send + 'static, R: Send + 'static, O> std::fmt::Debug for IntervalJoin<K, L, R, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalJoin")
            .field("outer", &self.config.outer)
            .field("event_time", &self.config.time.is_some())
            .field("ttl", &self.config.ttl)
            .field("max_rows", &self.config.max_rows)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K, L, R, O> IntervalJoin<K, L, R, O>
where
    K: Hash + Eq + Clone + Send + 'static,
    L: Send + 'static,
    R: Send + 'static,
    O: Send + 'static,
{
    fn with(
        key_left: KeyFn<L, K>,
        key_right: KeyFn<R, K>,
        combine: Combine<L, R, O>,
        outer: bool,
    ) -> Self {
        IntervalJoin {
            config: Config {
                key_left,
                key_right,
                combine,
                outer,
                time: None,
                ttl: None,
                max_rows: None,
                counters: JoinCounters::new(),
            },
            name: None,
            supervise: None,
        }
    }

    /// An inner join: each matching pair makes `combine(&left, &right)`; rows that
    /// leave the state unmatched go to the side output.
    pub fn inner(
        key_left: impl Fn(&L) -> K + Send + Sync + 'static,
        key_right: impl Fn(&R) -> K + Send + Sync + 'static,
        combine: impl Fn(&L, &R) -> O + Send + Sync + 'static,
    ) -> Self {
        let combine = move |l: &L, r: Option<&R>| match r {
            Some(r) => combine(l, r),
            // Cannot happen: an inner join never emits an unmatched left element.
            None => unreachable!("an inner join combines only matched pairs"),
        };
        Self::with(
            Arc::new(key_left),
            Arc::new(key_right),
            Arc::new(combine),
            false,
        )
    }

    /// A left-outer join: each matching pair makes `combine(&left, Some(&right))`;
    /// a left row that leaves the state without a match makes
    /// `combine(&left, None)` on the main output, exactly once. Unmatched right
    /// rows go to the side output.
    pub fn left_outer(
        key_left: impl Fn(&L) -> K + Send + Sync + 'static,
        key_right: impl Fn(&R) -> K + Send + Sync + 'static,
        combine: impl Fn(&L, Option<&R>) -> O + Send + Sync + 'static,
    ) -> Self {
        Self::with(
            Arc::new(key_left),
            Arc::new(key_right),
            Arc::new(combine),
            true,
        )
    }

    /// Joins on event time: `ts(r) − ts(l)` must lie in `lower..=upper` (in the
    /// timestamps' unit, milliseconds say). Each side's watermark is its largest
    /// timestamp so far minus the [out-of-orderness](Self::out_of_orderness); a row
    /// leaves the state once the other side's watermark shows that no partner
    /// can come, and an element behind its own side's watermark is late: it goes
    /// to the side output unjoined (counted in [`JoinCounters::late`]).
    pub fn event_time(
        mut self,
        ts_left: impl Fn(&L) -> i64 + Send + Sync + 'static,
        ts_right: impl Fn(&R) -> i64 + Send + Sync + 'static,
        lower: i64,
        upper: i64,
    ) -> Self {
        let lateness = self.config.time.as_ref().map_or(0, |t| t.lateness);
        self.config.time = Some(EventTime {
            left: Arc::new(ts_left),
            right: Arc::new(ts_right),
            lower,
            upper,
            lateness,
        });
        self
    }

    /// How far behind the largest timestamp seen on a side an element of that side
    /// may arrive and still be joined (default 0: each side in timestamp order).
    /// Only with [`event_time`](Self::event_time). Rows wait in the state this
    /// much longer.
    pub fn out_of_orderness(mut self, bound: i64) -> Self {
        if let Some(t) = &mut self.config.time {
            t.lateness = bound;
        }
        self
    }

    /// Removes a row `ttl` after it arrived (tokio clock; counted in
    /// [`JoinCounters::expired`]) even if the watermarks have not passed it: the
    /// bound on how long an idle input can hold the other side's rows. Without
    /// event time it is the join window.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = Some(ttl);
        self
    }

    /// Holds at most `max` rows (both sides together); one more is handled by
    /// `policy`: [`OnFull::EvictLru`] finishes the oldest row early (counted in
    /// [`JoinCounters::evicted`]), [`OnFull::Fail`] fails the element.
    pub fn max_rows(mut self, max: usize, policy: OnFull) -> Self {
        self.config.max_rows = Some((max, policy));
        self
    }

    /// Counts into `counters`.
    pub fn counters(mut self, counters: &JoinCounters) -> Self {
        self.config.counters = counters.clone();
        self
    }

    /// Names the join stage (default `interval_join#N`); with
    /// [`JoinExt::interval_join`](super::JoinExt::interval_join) the stages
    /// around it are named after it (`NAME.left`, `NAME.right`, `NAME.merge`,
    /// `NAME.split`, `NAME.joined`, `NAME.unmatched`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Supervises the join stage: a panic in a key, timestamp or combine function
    /// fails only its element, which the policy retries, dead-letters or skips,
    /// or restarts the stage with empty state (the rows it held are counted as
    /// `state_lost`).
    pub fn supervise(mut self, supervision: impl Into<Supervision<Side<L, R>>>) -> Self
    where
        L: Clone,
        R: Clone,
    {
        let supervision = supervision.into();
        self.supervise = Some(Box::new(move |flow: Flow<Side<L, R>>| {
            flow.supervise(supervision)
        }));
        self
    }

    /// Adds the join stage after a flow that carries both inputs, tagged; its
    /// output carries both the joined elements and the unmatched rows. The order
    /// of the tagged flow is the order the join sees.
    ///
    /// State is checkpointed; `K`, `L` and `R` must be serde types, and
    /// `Sync`; `L` and `R` also `Clone` (a snapshot shares the rows with the
    /// checkpoint's writer and copies a key group of them only if the stage
    /// changes it before the writer is done; see the [module](super) docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::join::{IntervalJoin, JoinOut, Side};
    /// use weir_operators::keyed::OnFull;
    /// use weir_operators::{FlowExt, Pipeline};
    /// # let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
    /// let tagged = Pipeline::from_iter([Side::Left(1_u32), Side::Right(1_u32), Side::Right(2)]);
    /// let join = IntervalJoin::inner(|l: &u32| *l, |r: &u32| *r, |l, r| l + r)
    ///     .max_rows(1_000, OnFull::EvictLru);
    /// let done = join.on(tagged).collect().run(&rt)?.wait()?;
    /// assert_eq!(done.output, [JoinOut::Joined(2), JoinOut::Unmatched(Side::Right(2))]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on(self, tagged: Flow<Side<L, R>>) -> Flow<JoinOut<O, L, R>>
    where
        K: Serialize + DeserializeOwned + Sync,
        L: Clone + Serialize + DeserializeOwned + Sync,
        R: Clone + Serialize + DeserializeOwned + Sync,
    {
        let IntervalJoin {
            config,
            name,
            supervise,
        } = self;
        let tagged = match supervise {
            Some(wrap) => wrap(tagged),
            None => tagged,
        };
        let flow = tagged.via_factory(move || JoinStage::new(config.clone()));
        match name {
            Some(name) => flow.name(name),
            None => flow,
        }
    }
}
