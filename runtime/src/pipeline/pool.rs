//! Pools: `n` supervised replicas of an operator on different arbiters, fed by a
//! balance and merged back ([`Graph::pool`], [`Graph::pool_map`],
//! [`Graph::pool_try_map`]).
//!
//! ```text
//!                      ┌─► replica 0 (arbiter a+1) ─┐
//!  in ──► dispatch ────┼─► replica 1 (arbiter a+2) ─┼──► collect ──► out
//!                      └─► replica 2 (arbiter a+3) ─┘
//! ```
//!
//! A replica is an ordinary stage: its queue, credit and supervision are its own,
//! so a crash in one replica is handled by the pool's policy in that replica
//! (retry, restart from the factory, dead letter, …) while the others go on. A
//! restart keeps the replica's queue, and the element that failed is tried again
//! by the fresh instance: nothing in flight is lost.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering::Release;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::task::Context;

use weir_supervisor::Failure;
use weir_supervisor::dead_letter::{DeadLetter, DeadLetterSink};

use super::flow::Flow;
use super::graph::{Graph, JunctionPorts, Outlet};
use super::parts::{KeyedReplica, Pending};
use crate::error::BuildError;
use crate::junction::pool::{Active, Assigned, Collect, Dispatch, Spread};
use crate::junction::{Balance, BalanceOf, BalanceStrategy, Junction, Merge, Partition};
use crate::operator::{Io, Operator, Step};
use crate::reconfig::{Applied, ConfigHandle, ReconfigError};
use crate::stage::actor::reconfig::{record, rejected};
use crate::supervision::Supervision;

/// Whether a pool's results leave in input order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolOrder {
    /// Results leave in the order their inputs arrived (seed ParallelCoordinator's
    /// ordered mode). A slow element holds back the results after it, up to the
    /// replicas' capacities.
    Ordered,
    /// Results leave as replicas produce them: the highest throughput.
    #[default]
    Unordered,
}

/// Applies the pool's supervision to a replica's flow.
type Apply<T> = Box<dyn Fn(Flow<T>) -> Flow<T>>;

/// The key group of an element of a keyed pool ([`Pool::by_key`]).
pub(crate) type KeyGroupFn<T> = Arc<dyn Fn(&T) -> u16 + Send + Sync>;

/// How a pool is built: the number of replicas, result order, how elements are
/// spread, the replicas' supervision, names and capacities.
///
/// # Examples
///
/// ```
/// use weir_runtime::junction::BalanceStrategy;
/// use weir_runtime::{Pool, Supervision};
/// use weir_supervisor::policy::{Action, SupervisionPolicy};
///
/// let policy = SupervisionPolicy::default().on_exhausted(Action::Escalate);
/// let pool = Pool::<u64>::new(4)
///     .ordered()
///     .strategy(BalanceStrategy::LeastLoaded)
///     .supervise(Supervision::new(policy))
///     .name("parse")
///     .replica_capacity(256);
/// assert_eq!(pool.replicas(), 4);
/// ```
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Pool<T: Send + 'static> {
    replicas: usize,
    order: PoolOrder,
    strategy: BalanceStrategy,
    name: Option<String>,
    capacity: Option<usize>,
    plain: Option<Apply<T>>,
    numbered: Option<Apply<(u64, T)>>,
    /// The most replicas, and the handle that sets how many take elements.
    resize: Option<(usize, ConfigHandle<usize>)>,
    /// Routes by key group instead of by load.
    key: Option<KeyGroupFn<T>>,
}

impl<T: Send + 'static> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("replicas", &self.replicas)
            .field("order", &self.order)
            .field("strategy", &self.strategy)
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("supervised", &self.plain.is_some())
            .field("max_replicas", &self.resize.as_ref().map(|r| r.0))
            .field("by_key", &self.key.is_some())
            .finish()
    }
}

impl<T: Send + 'static> Pool<T> {
    /// A pool of `replicas` replicas: unordered, least-loaded, unsupervised (a
    /// failure fails the pipeline) until said otherwise.
    pub fn new(replicas: usize) -> Self {
        Pool {
            replicas,
            order: PoolOrder::Unordered,
            strategy: BalanceStrategy::LeastLoaded,
            name: None,
            capacity: None,
            plain: None,
            numbered: None,
            resize: None,
            key: None,
        }
    }

    /// The number of replicas.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Results in input order (see [`PoolOrder::Ordered`]).
    pub fn ordered(self) -> Self {
        self.order(PoolOrder::Ordered)
    }

    /// Makes the pool resizable while it runs: `max` replicas are built (each on its
    /// arbiter, as usual), of which [`replicas`](Self::replicas) take elements at
    /// first; `handle` sets how many take elements from then on (1 to `max`), see
    /// [`reconfig`](crate::reconfig).
    ///
    /// Growing: the replicas `0..n` take elements from the next dispatch on.
    /// Shrinking: the replicas `n..` get nothing new; each finishes the elements it
    /// has (its queue, its retries), which leave through the collect — in order for
    /// an [`Ordered`](PoolOrder::Ordered) pool — and then idles, holding nothing,
    /// until the pool grows again or the stream ends. Nothing is lost or
    /// reordered. A size outside `1..=max` is rejected and the size in force kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::reconfig::ConfigHandle;
    /// use weir_runtime::{Graph, Outlet, Pool};
    ///
    /// fn lengths(g: &mut Graph, lines: Outlet<String>, size: &ConfigHandle<usize>) -> Outlet<usize> {
    ///     // 2 replicas at first, up to 8 while it runs.
    ///     let pool = Pool::new(2).ordered().resizable(8, size);
    ///     g.pool_map(lines, pool, || |line: String| line.len())
    /// }
    /// ```
    pub fn resizable(mut self, max: usize, handle: &ConfigHandle<usize>) -> Self {
        self.resize = Some((max, handle.clone()));
        self
    }

    /// Routes every element by its key instead of by load: equal keys always go to
    /// the same replica, so each replica's keyed operators (`key_by(..).scan`,
    /// `fold`, windows, joins, `throttle_by_key`, …) hold exactly the keys routed
    /// to it. For [`Graph::pool`] and [`Graph::pool_flow`].
    ///
    /// **Rescaling.** Keys are routed by key group
    /// ([`key_group_of`](crate::checkpoint::key_group_of), one of
    /// [`KEY_GROUPS`](crate::checkpoint::KEY_GROUPS)), contiguous ranges of groups
    /// per replica as [`replica_of_group`](crate::checkpoint::replica_of_group)
    /// says — the layout keyed state is checkpointed in. A checkpointed pipeline
    /// restored with another replica count (up to `KEY_GROUPS`) gives each new
    /// replica the state of exactly the keys it now receives, from every replica
    /// of the run that wrote the checkpoint. The key given here must be the key the
    /// replicas' keyed operators use.
    ///
    /// The pool is named `"pool"` unless [`name`](Self::name) says otherwise: its
    /// replicas' stages are found in a checkpoint by that name. Elements wait for
    /// their replica's room (one slow replica holds back the others, as a
    /// `partition_by_key` does); a keyed pool cannot be
    /// [resizable](Self::resizable) (its keys would move while state is held), and
    /// the numbered [`Graph::pool_map`] / [`Graph::pool_try_map`] do not take a key.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::task::Context;
    /// use weir_runtime::operator::{Io, Operator, Step};
    /// use weir_runtime::{Graph, Outlet, Pool};
    ///
    /// /// Keeps a running total per user (a stand-in for a keyed operator).
    /// #[derive(Default)]
    /// struct Totals(std::collections::HashMap<u32, u64>);
    /// impl Operator for Totals {
    ///     type In = (u32, u64);
    ///     type Out = (u32, u64);
    ///     fn kind(&self) -> &'static str { "totals" }
    ///     fn step(&mut self, io: &mut Io<'_, (u32, u64), (u32, u64)>, _: &mut Context<'_>) -> Step {
    ///         let totals = &mut self.0;
    ///         io.map_batch(|(user, amount)| {
    ///             let t = totals.entry(user).or_default();
    ///             *t += amount;
    ///             (user, *t)
    ///         });
    ///         io.finish_when_drained()
    ///     }
    /// }
    ///
    /// // (user, amount): every user's elements reach the same replica.
    /// fn per_user(g: &mut Graph, payments: Outlet<(u32, u64)>) -> Outlet<(u32, u64)> {
    ///     let pool = Pool::new(4).by_key(|p: &(u32, u64)| p.0).name("per-user");
    ///     g.pool(payments, pool, Totals::default)
    /// }
    /// ```
    pub fn by_key<K: std::hash::Hash>(
        mut self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(move |x| crate::checkpoint::key_group_of(&key(x))));
        self
    }

    /// Result order.
    pub fn order(mut self, order: PoolOrder) -> Self {
        self.order = order;
        self
    }

    /// How elements are spread over the replicas (default
    /// [`BalanceStrategy::LeastLoaded`]).
    pub fn strategy(mut self, strategy: BalanceStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Names the pool's stages: `{name}.dispatch`, `{name}-0` … `{name}-{n-1}`,
    /// `{name}.collect`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The input capacity of each replica (default: the graph's default capacity).
    /// Each replica holds at most this many elements waiting.
    pub fn replica_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }
}

impl<T: Clone + Send + 'static> Pool<T> {
    /// Supervises every replica with `supervision` (its own retry counts, restart
    /// intensity and breaker per replica; the dead letters shared). A replica
    /// restarted by the policy keeps its queue and tries the failed element again
    /// with a fresh operator from the factory.
    pub fn supervise(mut self, supervision: Supervision<T>) -> Self {
        let numbered = numbered(supervision.clone());
        self.plain = Some(Box::new(move |flow| flow.supervise(supervision.clone())));
        self.numbered = Some(Box::new(move |flow| flow.supervise(numbered.clone())));
        self
    }

    /// Lets a policy file applied to the graph
    /// ([`Graph::policies`](super::Graph::policies)) supervise every replica
    /// (see [`Flow::cloneable`](super::Flow::cloneable)), with no dead-letter
    /// queue; [`supervise`](Self::supervise) does it too, with one.
    pub fn cloneable(mut self) -> Self {
        self.plain = Some(Box::new(Flow::cloneable));
        self.numbered = Some(Box::new(Flow::cloneable));
        self
    }
}

/// The supervision of a replica of numbered elements: the same policy, and dead
/// letters that carry the element without its number, with the number as the
/// element's index (its position in the pool's input).
fn numbered<T: Send + 'static>(s: Supervision<T>) -> Supervision<(u64, T)> {
    Supervision {
        policy: s.policy,
        dead_letters: s
            .dead_letters
            .map(|inner| Arc::new(Unnumbered(inner)) as Arc<dyn DeadLetterSink<(u64, T)>>),
        seed: s.seed,
    }
}

struct Unnumbered<T>(Arc<dyn DeadLetterSink<T>>);

impl<T: Send + 'static> DeadLetterSink<(u64, T)> for Unnumbered<T> {
    fn offer(&self, letter: DeadLetter<(u64, T)>) -> Result<(), (DeadLetter<(u64, T)>, String)> {
        let index = letter.element_index;
        let (seq, element) = letter.element;
        let inner = DeadLetter {
            element,
            element_index: seq,
            stage: letter.stage,
            pipeline: letter.pipeline,
            class: letter.class,
            error: letter.error,
            attempts: letter.attempts,
            at: letter.at,
        };
        self.0.offer(inner).map_err(|(back, reason)| {
            let letter = DeadLetter {
                element: (seq, back.element),
                element_index: index,
                stage: back.stage,
                pipeline: back.pipeline,
                class: back.class,
                error: back.error,
                attempts: back.attempts,
                at: back.at,
            };
            (letter, reason)
        })
    }

    fn ordered_file(&self) -> Option<weir_supervisor::dead_letter::DlqOrder> {
        self.0.ordered_file()
    }
}

/// The operator each replica of a [`Graph::pool_try_map`] runs: the user's function
/// on numbered elements, keeping the number.
struct PoolFn<F, T, U> {
    f: F,
    _t: PhantomData<fn(T) -> U>,
}

impl<F, T, U> Operator for PoolFn<F, T, U>
where
    F: FnMut(T) -> Result<U, Failure> + Send + 'static,
    T: Send + 'static,
    U: Send + 'static,
{
    type In = (u64, T);
    type Out = (u64, U);

    fn kind(&self) -> &'static str {
        "pool-map"
    }

    fn retry_safe(&self) -> bool {
        true
    }

    fn step(&mut self, io: &mut Io<'_, (u64, T), (u64, U)>, _cx: &mut Context<'_>) -> Step {
        while io.has_room() {
            let Some((seq, x)) = io.pop() else { break };
            match (self.f)(x) {
                Ok(y) => io.push((seq, y)),
                // The element is the last one taken: the stage knows which failed.
                Err(failure) => return Step::Failed(failure),
            }
        }
        io.finish_when_drained()
    }
}

impl Graph {
    /// `pool.replicas()` replicas of the operator `factory` builds, each a stage of
    /// its own on its own arbiter (replica `k` on the arbiter `k + 1` places after
    /// the pipeline's first stage, wrapping around), fed by a [`Balance`] with the
    /// pool's strategy and merged back fairly: results are **unordered**. Use
    /// [`pool_map`](Self::pool_map) for ordered results.
    ///
    /// Each replica is supervised by the pool's [`supervise`](Pool::supervise)
    /// policy on its own: a replica that crashes is restarted from `factory` (its
    /// queue kept, the failed element tried again) while the others keep working.
    /// Backpressure: the balance waits only when no replica has room.
    /// Completion: when the input ends and every replica has drained.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::task::Context;
    /// use weir_runtime::operator::{Io, Operator, Step};
    /// use weir_runtime::{Graph, Outlet, Pool};
    ///
    /// struct Square;
    /// impl Operator for Square {
    ///     type In = u64;
    ///     type Out = u64;
    ///     fn kind(&self) -> &'static str { "square" }
    ///     fn step(&mut self, io: &mut Io<'_, u64, u64>, _: &mut Context<'_>) -> Step {
    ///         io.map_batch(|x| x * x);
    ///         io.finish_when_drained()
    ///     }
    /// }
    ///
    /// fn squares(g: &mut Graph, numbers: Outlet<u64>) -> Outlet<u64> {
    ///     g.pool(numbers, Pool::new(4).name("square"), || Square)
    /// }
    /// ```
    pub fn pool<Op, F>(
        &mut self,
        from: Outlet<Op::In>,
        pool: Pool<Op::In>,
        factory: F,
    ) -> Outlet<Op::Out>
    where
        Op: Operator,
        F: Fn() -> Op + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        self.pool_flow(from, pool, move |flow| {
            let factory = factory.clone();
            flow.via_factory(move || factory())
        })
    }

    /// A pool (see [`pool`](Self::pool)) whose replicas each run the flow `build`
    /// makes — one or several stages, all on the replica's arbiter. Results merge
    /// **unordered**. With [`Pool::by_key`], the pool for keyed state that can be
    /// rescaled from a checkpoint.
    ///
    /// Names: with a pool named `p`, a one-stage replica `k` is `p-k`; in a flow
    /// of several stages each is `p-k.{its name}` (its kind if unnamed: name them
    /// when two are of the same kind). The pool's
    /// [`supervise`](Pool::supervise) applies to each replica's first stage; give
    /// the others their own. [`replica_capacity`](Pool::replica_capacity) is the
    /// first stage's input capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::task::Context;
    /// use weir_runtime::operator::{Io, Operator, Step};
    /// use weir_runtime::{Graph, Outlet, Pool};
    ///
    /// struct Trim;
    /// impl Operator for Trim {
    ///     type In = String;
    ///     type Out = String;
    ///     fn kind(&self) -> &'static str { "trim" }
    ///     fn step(&mut self, io: &mut Io<'_, String, String>, _: &mut Context<'_>) -> Step {
    ///         io.map_batch(|l| l.trim().to_owned());
    ///         io.finish_when_drained()
    ///     }
    /// }
    ///
    /// // Each replica: two stages on its arbiter, `clean-k.trim` and `clean-k.again`.
    /// fn cleaned(g: &mut Graph, lines: Outlet<String>) -> Outlet<String> {
    ///     g.pool_flow(lines, Pool::new(3).name("clean"), |f| {
    ///         f.via_factory(|| Trim).name("trim").via_factory(|| Trim).name("again")
    ///     })
    /// }
    /// ```
    pub fn pool_flow<T, U, B>(&mut self, from: Outlet<T>, pool: Pool<T>, build: B) -> Outlet<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        B: Fn(Flow<T>) -> Flow<U>,
    {
        let mut pool = pool;
        if pool.order == PoolOrder::Ordered {
            self.pool_error(
                &pool,
                "Graph::pool and Graph::pool_flow merge unordered (an operator may emit any \
                 number of outputs per input); use pool_map or pool_try_map for ordered results",
            );
        }
        if pool.key.is_some() {
            pool.name.get_or_insert_with(|| "pool".into());
            if pool.resize.is_some() {
                self.pool_error(
                    &pool,
                    "a keyed pool (by_key) cannot be resizable: its keys would move to other \
                     replicas while they hold state; restore a checkpoint with another replica \
                     count instead",
                );
            }
            if pool.replicas > usize::from(crate::checkpoint::KEY_GROUPS) {
                self.pool_error(
                    &pool,
                    &format!(
                        "a keyed pool (by_key) has at most {} replicas (KEY_GROUPS), not {}",
                        crate::checkpoint::KEY_GROUPS,
                        pool.replicas
                    ),
                );
            }
        }
        let (built, active) = self.pool_size(&pool);
        let JunctionPorts { inlets, outlets } = match (&pool.key, &active) {
            (Some(key), _) => {
                let by_key = Partition::by_key_group(built, Arc::clone(key));
                self.junction(by_key, 1, built)
            }
            (None, Some(active)) => {
                let spread = Spread::<T>::new(pool.strategy, active.clone());
                self.junction(spread, 1, built)
            }
            (None, None) => {
                let balance = BalanceOf {
                    balance: Balance::new(pool.strategy),
                    _t: PhantomData,
                };
                self.junction(balance, 1, built)
            }
        };
        self.bind_pool_size(&inlets[0], &pool, active);
        self.connect(from, inlets[0]);
        let replicas: Vec<Outlet<U>> = outlets
            .into_iter()
            .enumerate()
            .map(|(k, outlet)| {
                let supervise = pool.plain.as_ref();
                let first = self.parts.len();
                let out = self.flow(outlet, |flow| {
                    build(match supervise {
                        Some(apply) => apply(flow),
                        None => flow,
                    })
                });
                self.mark_replica(first, k, built, &pool);
                out
            })
            .collect();
        let merged = self.gather(replicas, Merge::new());
        let first = if pool.key.is_some() {
            "by_key"
        } else {
            "balance"
        };
        self.name_pool(&inlets[0], &merged, &pool, first, "merge");
        merged
    }

    fn pool_error<T: Send + 'static>(&mut self, pool: &Pool<T>, message: &str) {
        self.parts
            .errors
            .push(Pending::Ready(BuildError::InvalidArgument {
                stage: pool.name.clone().unwrap_or_else(|| "pool".into()),
                message: message.into(),
            }));
    }

    /// A pool (see [`pool`](Self::pool)) of replicas that each apply a function
    /// built by `factory` (called once per replica, and again for a replica's
    /// restart), with results [`Ordered`](PoolOrder::Ordered) or unordered as the
    /// pool says.
    ///
    /// Ordered results: a panic retried or restarted under supervision keeps the
    /// order; an element dropped by the policy (dead letter, skip) leaves a gap that
    /// holds back the elements after it until the replica that dropped it emits
    /// again or ends — soon under load, at the end of the stream at the latest.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{Graph, Outlet, Pool};
    ///
    /// fn lengths(g: &mut Graph, lines: Outlet<String>) -> Outlet<usize> {
    ///     g.pool_map(lines, Pool::new(4).ordered(), || |line: String| line.len())
    /// }
    /// ```
    pub fn pool_map<T, U, F, M>(&mut self, from: Outlet<T>, pool: Pool<T>, factory: M) -> Outlet<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: FnMut(T) -> U + Send + 'static,
        M: Fn() -> F + Send + Sync + 'static,
    {
        self.pool_try_map(from, pool, move || {
            let mut f = factory();
            move |x| Ok(f(x))
        })
    }

    /// As [`pool_map`](Self::pool_map), for a function that can fail with a
    /// classified [`Failure`]: the pool's supervision decides what happens to the
    /// element (retried, restarted, dead-lettered, skipped, or the pipeline fails).
    pub fn pool_try_map<T, U, F, M>(
        &mut self,
        from: Outlet<T>,
        pool: Pool<T>,
        factory: M,
    ) -> Outlet<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: FnMut(T) -> Result<U, Failure> + Send + 'static,
        M: Fn() -> F + Send + Sync + 'static,
    {
        if pool.key.is_some() {
            self.pool_error(
                &pool,
                "pool_map and pool_try_map do not take a key (by_key): use Graph::pool or \
                 Graph::pool_flow for a keyed pool",
            );
        }
        let factory = Arc::new(factory);
        let (built, active) = self.pool_size(&pool);
        let assigned: Assigned = (0..built).map(|_| AtomicU64::new(0)).collect();
        let dispatch = Dispatch::<T>::new(pool.strategy, assigned.clone(), active.clone());
        let JunctionPorts { inlets, outlets } = self.junction(dispatch, 1, built);
        self.bind_pool_size(&inlets[0], &pool, active);
        self.connect(from, inlets[0]);
        let replicas: Vec<Outlet<(u64, U)>> = outlets
            .into_iter()
            .enumerate()
            .map(|(k, outlet)| {
                let factory = factory.clone();
                let supervise = pool.numbered.as_ref();
                let first = self.parts.len();
                let out = self.flow(outlet, |flow| {
                    let flow = match supervise {
                        Some(apply) => apply(flow),
                        None => flow,
                    };
                    flow.via_factory(move || PoolFn {
                        f: factory(),
                        _t: PhantomData,
                    })
                });
                self.mark_replica(first, k, built, &pool);
                out
            })
            .collect();
        let collect = Collect::<U>::new(pool.order == PoolOrder::Ordered, assigned);
        let out = self.gather(replicas, collect);
        self.name_pool(&inlets[0], &out, &pool, "dispatch", "collect");
        out
    }

    /// How many replicas to build, and for a resizable pool the count of those
    /// taking elements. An invalid size is recorded as a build error.
    fn pool_size<T: Send + 'static>(&mut self, pool: &Pool<T>) -> (usize, Option<Active>) {
        let Some((max, handle)) = &pool.resize else {
            return (pool.replicas, None);
        };
        let stage = pool.name.clone().unwrap_or_else(|| "pool".into());
        let mut error = |message: String| {
            self.parts
                .errors
                .push(Pending::Ready(BuildError::InvalidArgument {
                    stage: stage.clone(),
                    message,
                }));
        };
        if pool.replicas == 0 || pool.replicas > *max {
            error(format!(
                "a resizable pool starts with 1 to max_replicas ({max}) replicas, not {}",
                pool.replicas
            ));
        }
        if !handle.attach() {
            error("this pool-size handle is already attached to another pool".into());
        }
        let active = Arc::new(AtomicUsize::new(pool.replicas.max(1)));
        ((*max).max(1), Some(active))
    }

    /// Binds a resizable pool's size handle when its dispatch (`entry`) starts: a
    /// new size is checked, stored for the dispatch's next pass, and recorded as a
    /// config of the dispatch stage (generation, text) in stats and report.
    fn bind_pool_size<I, T: Send + 'static>(
        &mut self,
        entry: &super::graph::Inlet<I>,
        pool: &Pool<T>,
        active: Option<Active>,
    ) {
        let (Some((max, handle)), Some(active)) = (&pool.resize, active) else {
            return;
        };
        if entry.at.node >= self.parts.len() {
            return;
        }
        let (max, handle) = (*max, handle.clone());
        self.parts.on_start(
            entry.at.node,
            Box::new(move |shared| {
                let shared = Arc::clone(shared);
                let stage = shared.name.clone();
                // The controller resizes through the handle, so that its
                // `current()` and generation follow.
                let via = handle.clone();
                let _ = shared
                    .resizer
                    .set(crate::stage::shared::Resizer(Box::new(move |n| {
                        let via = via.clone();
                        Box::pin(async move { via.reconfigure(n).await })
                    })));
                handle.bind(
                    stage,
                    Box::new(move |n, reply| {
                        let answer = if shared.final_state().is_some() {
                            Err(ReconfigError::Stopped {
                                stage: shared.name.clone(),
                            })
                        } else if n == 0 || n > max {
                            Err(rejected(
                                &shared,
                                format!("pool size {n} is outside 1..={max} (max_replicas)"),
                            ))
                        } else {
                            active.store(n, Release);
                            Ok(Applied {
                                stage: shared.name.clone(),
                                generation: record(&shared, format!("replicas: {n}")),
                            })
                        };
                        let _ = reply.send(answer);
                    }),
                );
            }),
        );
    }

    /// Connects every outlet to its own input of `junction`; returns its output.
    fn gather<J: Junction>(&mut self, from: Vec<Outlet<J::In>>, junction: J) -> Outlet<J::Out> {
        let JunctionPorts { inlets, outlets } = self.junction(junction, from.len(), 1);
        for (outlet, inlet) in from.into_iter().zip(inlets) {
            self.connect(outlet, inlet);
        }
        outlets[0]
    }

    /// Marks the stages from `first` on (what one replica's flow added) as
    /// replica `k` of `n`: placement, names, policy group, capacity, and for a
    /// keyed pool the facts a rescaling restore matches by.
    fn mark_replica<T: Send + 'static>(
        &mut self,
        first: usize,
        k: usize,
        n: usize,
        pool: &Pool<T>,
    ) {
        let end = self.parts.len();
        let single = end == first + 1;
        for node in first..end {
            let meta = self.parts.meta_mut(node);
            meta.replica = Some(k);
            let Some(name) = &pool.name else { continue };
            let rest = if single {
                String::new()
            } else {
                format!(".{}", meta.name.as_deref().unwrap_or(meta.kind))
            };
            meta.name = Some(format!("{name}-{k}{rest}"));
            meta.group = Some(name.clone());
            if pool.key.is_some() {
                meta.keyed = Some(KeyedReplica {
                    pool: name.clone(),
                    rest,
                    replica: k,
                    replicas: n,
                });
            }
        }
        if let Some(capacity) = pool.capacity
            && first < end
        {
            self.parts.meta_mut(first).capacity = Some(capacity);
        }
    }

    fn name_pool<I, O, T: Send + 'static>(
        &mut self,
        entry: &super::graph::Inlet<I>,
        exit: &Outlet<O>,
        pool: &Pool<T>,
        first: &str,
        last: &str,
    ) {
        if let Some(name) = &pool.name {
            let nodes = self.parts.len();
            if entry.at.node < nodes {
                let meta = self.parts.meta_mut(entry.at.node);
                meta.name = Some(format!("{name}.{first}"));
                meta.group = Some(name.clone());
            }
            if exit.at.node < nodes {
                let meta = self.parts.meta_mut(exit.at.node);
                meta.name = Some(format!("{name}.{last}"));
                meta.group = Some(name.clone());
            }
        }
    }
}
