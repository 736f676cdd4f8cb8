//! Fan-out junctions: one input, several outputs.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::time::Duration;

use weir_supervisor::dead_letter::{DeadLetter, DeadLetterSink};
use weir_supervisor::{ErrorClass, Failure};

use super::{DropSink, Junction, Ports, Routing};

/// What a [`Broadcast`] does with a branch that cannot keep up.
///
/// A branch *lags* when elements wait for it because it has granted no credit: its
/// stage is slower than the others, or stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LagPolicy {
    /// The broadcast waits for the branch: the slowest `Block` branch sets the pace
    /// of every branch (and of the source). Nothing is dropped.
    #[default]
    Block,
    /// Up to `buffer` elements wait for the branch; when that is full, new elements
    /// are dropped for it (counted).
    DropNewest {
        /// Elements kept for the branch beyond its credit.
        buffer: usize,
    },
    /// Up to `buffer` elements wait for the branch; when that is full, the oldest
    /// waiting one is dropped for it (counted) to make room.
    DropOldest {
        /// Elements kept for the branch beyond its credit.
        buffer: usize,
    },
    /// The branch is detached when more than `max_lag` elements wait for it, or when
    /// elements have waited longer than `max_wait`: what waits is dropped, and so is
    /// every element until the branch has caught up (its stage's input queue is
    /// empty), when it is attached again. Every drop is counted, so the branch's
    /// drop count is exactly what it missed.
    Detach {
        /// Elements that may wait for the branch.
        max_lag: usize,
        /// How long elements may wait for the branch; `None`: no time limit.
        max_wait: Option<Duration>,
    },
}

/// One output of a [`Broadcast`]: its lag policy and whether it is attached.
#[derive(Debug, Clone, Copy)]
pub struct Branch {
    policy: LagPolicy,
    detached: bool,
}

/// Sends every element to every branch (Akka's `Broadcast`).
///
/// Order: each branch sees the input order (minus what its lag policy dropped).
/// Backpressure: from the slowest branch whose [`LagPolicy`] is `Block`; branches with
/// another policy never slow the others. Completion: when the input ends, after every
/// buffer is sent. A branch that cancels is dropped from the broadcast (what is
/// routed to it after is counted as dropped on its port); when every branch has
/// cancelled, the broadcast cancels its input.
#[must_use = "builder methods return the changed value: use it, or the setting is lost"]
pub struct Broadcast<T> {
    declared: usize,
    branches: Vec<Branch>,
    dead_letters: Option<DropSink<T>>,
    index: u64,
    /// Scratch of [`plain_run`](Self::plain_run): the branches whose policy drops
    /// every element of the run.
    discard: Vec<bool>,
}

impl<T> std::fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("branches", &self.branches)
            .field("dead_letters", &self.dead_letters.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + 'static> Broadcast<T> {
    /// A broadcast to `branches` outputs, each with [`LagPolicy::Block`].
    pub fn new(branches: usize) -> Self {
        Broadcast {
            declared: branches,
            branches: vec![
                Branch {
                    policy: LagPolicy::Block,
                    detached: false,
                };
                branches
            ],
            dead_letters: None,
            index: 0,
            discard: Vec::new(),
        }
    }

    /// Sets branch `branch`'s lag policy. An index past the last branch is reported
    /// when the graph is built.
    pub fn lag(mut self, branch: usize, policy: LagPolicy) -> Self {
        if branch >= self.branches.len() {
            self.branches.resize(
                branch + 1,
                Branch {
                    policy: LagPolicy::Block,
                    detached: false,
                },
            );
        }
        self.branches[branch].policy = policy;
        self
    }

    /// Also sends every dropped element to `sink`, as a dead letter naming the
    /// branch (class `ResourceExhausted`). A letter the sink refuses is still
    /// counted as dropped.
    pub fn dead_letters(mut self, sink: impl DeadLetterSink<T>) -> Self {
        self.dead_letters = Some(std::sync::Arc::new(sink));
        self
    }

    pub(crate) fn branches(&self) -> usize {
        self.declared
    }

    /// Dead-letters `x`, the element at position `index` of the input.
    fn letter(&self, ports: &Ports<'_, T, T>, branch: usize, x: T, index: u64, why: &str) {
        if let Some(sink) = &self.dead_letters {
            let failure = Failure::error(
                ErrorClass::ResourceExhausted,
                format!("dropped for branch {branch}: {why}"),
            );
            let letter = DeadLetter::new(
                x,
                ports.shared.name.clone(),
                ports.pipeline.to_owned(),
                &failure,
                0,
                index,
            );
            // Refused: the drop is counted on the port all the same.
            let _ = sink.offer(letter);
        }
    }

    /// Applies time limits of detaching branches.
    fn check_waits(&mut self, ports: &mut Ports<'_, T, T>) {
        for o in 0..self.branches.len() {
            let branch = self.branches[o];
            if let LagPolicy::Detach {
                max_wait: Some(max_wait),
                ..
            } = branch.policy
                && !branch.detached
                && ports.is_open(o)
                && ports.buffered(o) > ports.credit(o)
            {
                if ports.lagging_for(o) >= max_wait {
                    self.detach(ports, o, "waited longer than its lag budget");
                } else {
                    let at = ports.now() + (max_wait - ports.lagging_for(o));
                    ports.wake_at(at);
                }
            }
        }
    }

    fn detach(&mut self, ports: &mut Ports<'_, T, T>, o: usize, why: &str) {
        self.branches[o].detached = true;
        let kept = ports.credit(o).min(ports.buffered(o)) as u64;
        // Every element is routed to every branch: a port's stream positions are
        // the input's.
        let first = ports.routed(o) - ports.buffered(o) as u64 + kept;
        for (k, x) in ports.detach(o).into_iter().enumerate() {
            self.letter(ports, o, x, first + k as u64, why);
        }
    }

    /// How many elements every branch takes from here without an event of its lag
    /// policy (a detachment, a drop of the oldest), so that they can be copied as
    /// one run, exactly as [`offer`](Self::offer) would route them one by one.
    /// Marks in `self.discard` the branches that drop every element of the run (a
    /// detached branch that has not caught up, a `DropNewest` branch whose buffer
    /// is full), and attaches again a detached branch that has caught up, as
    /// `offer` would at the next element. 0: route the next element with `offer`.
    ///
    /// Credit and buffers change only by what is routed while `route` runs, so
    /// what holds for the first element of the run holds for the rest.
    fn plain_run(&mut self, ports: &Ports<'_, T, T>) -> usize {
        let n = ports.outputs();
        self.discard.clear();
        self.discard.resize(n, false);
        let mut run = ports.queued(0);
        for o in 0..n {
            if !ports.is_open(o) {
                // Counted as dropped whatever the policy.
                continue;
            }
            let (credit, buffered) = (ports.credit(o), ports.buffered(o));
            // Pushed while fewer than credit + `limit` elements are buffered.
            let pushes = |limit: usize| (credit + limit).saturating_sub(buffered);
            let takes = match self.branches[o].policy {
                LagPolicy::Block => ports.room(o),
                LagPolicy::DropNewest { buffer } => match pushes(buffer) {
                    0 => {
                        self.discard[o] = true;
                        continue;
                    }
                    k => k,
                },
                LagPolicy::DropOldest { buffer } => pushes(buffer),
                LagPolicy::Detach { max_lag, .. } => {
                    let branch = &mut self.branches[o];
                    if branch.detached {
                        if buffered == 0 && credit >= ports.capacity(o) {
                            // Caught up: its stage's queue is empty again.
                            branch.detached = false;
                        } else {
                            self.discard[o] = true;
                            continue;
                        }
                    }
                    pushes(max_lag)
                }
            };
            run = run.min(takes);
        }
        run
    }

    /// Offers `x` to branch `o` under its policy.
    fn offer(&mut self, ports: &mut Ports<'_, T, T>, o: usize, x: T) {
        let waiting = ports.buffered(o).saturating_sub(ports.credit(o));
        match self.branches[o].policy {
            LagPolicy::Block => ports.push(o, x),
            LagPolicy::DropNewest { buffer } => {
                if waiting < buffer || ports.room(o) > 0 {
                    ports.push(o, x);
                } else {
                    let x = ports.discard(o, x);
                    self.letter(ports, o, x, self.index, "its buffer was full (drop newest)");
                }
            }
            LagPolicy::DropOldest { buffer } => {
                if waiting >= buffer && ports.room(o) == 0 {
                    if buffer == 0 {
                        let x = ports.discard(o, x);
                        let why = "it had no credit (drop oldest, no buffer)";
                        self.letter(ports, o, x, self.index, why);
                        return;
                    }
                    let oldest = ports.routed(o) - ports.buffered(o) as u64;
                    if let Some(old) = ports.drop_oldest(o) {
                        self.letter(ports, o, old, oldest, "its buffer was full (drop oldest)");
                    }
                }
                ports.push(o, x);
            }
            LagPolicy::Detach { max_lag, .. } => {
                if self.branches[o].detached {
                    if ports.buffered(o) == 0 && ports.credit(o) >= ports.capacity(o) {
                        // Caught up: its stage's queue is empty again.
                        self.branches[o].detached = false;
                        ports.push(o, x);
                    } else {
                        let x = ports.discard(o, x);
                        self.letter(ports, o, x, self.index, "it is detached");
                    }
                } else if waiting >= max_lag && ports.room(o) == 0 {
                    // The waiting ones first (they are older), then this one.
                    self.detach(ports, o, "it lagged more than its budget");
                    let x = ports.discard(o, x);
                    self.letter(ports, o, x, self.index, "it lagged more than its budget");
                } else {
                    ports.push(o, x);
                }
            }
        }
    }
}

impl<T: Clone + Send + 'static> Junction for Broadcast<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "broadcast"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // One input: the barrier passes once what came before it is sent.
        None
    }

    fn validate(&self, _inputs: usize, outputs: usize) -> Result<(), String> {
        if outputs == 0 {
            return Err("a broadcast needs at least one branch".into());
        }
        if self.branches.len() > self.declared.max(outputs) {
            return Err(format!(
                "a lag policy was set for branch {}, but the broadcast has {outputs}",
                self.branches.len() - 1
            ));
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        self.check_waits(ports);
        let n = ports.outputs();
        if self
            .branches
            .iter()
            .all(|b| matches!(b.policy, LagPolicy::Block))
        {
            // Every branch blocks: move whole runs, as far as the fullest branch
            // allows.
            let room = (0..n)
                .filter(|&o| ports.is_open(o))
                .map(|o| ports.room(o))
                .min()
                .unwrap_or(usize::MAX);
            let moved = ports.copy_to_all(room, &[]);
            self.index += moved as u64;
            return if ports.is_exhausted(0) {
                Routing::Finished
            } else {
                Routing::Continue
            };
        }
        loop {
            if ports.queued(0) == 0 {
                return if ports.is_exhausted(0) {
                    Routing::Finished
                } else {
                    Routing::Continue
                };
            }
            // A blocking branch without room holds everything up.
            let blocked = (0..n).any(|o| {
                matches!(self.branches[o].policy, LagPolicy::Block)
                    && ports.is_open(o)
                    && ports.room(o) == 0
            });
            if blocked {
                return Routing::Continue;
            }
            if self.dead_letters.is_none() {
                // Whole runs between policy events (a dead-letter sink needs each
                // dropped element: one at a time then).
                let run = self.plain_run(ports);
                if run > 0 {
                    let moved = ports.copy_to_all(run, &self.discard);
                    self.index += moved as u64;
                    continue;
                }
            }
            let Some(x) = ports.pop(0) else {
                return Routing::Continue;
            };
            for o in 0..n - 1 {
                self.offer(ports, o, x.clone());
            }
            self.offer(ports, n - 1, x);
            self.index += 1;
            ports.commit();
        }
    }
}

/// A routing predicate of [`Partition::by_predicates`].
pub type Predicate<T> = Box<dyn FnMut(&T) -> bool + Send>;

/// The branch function of a [`Partition`].
pub type PartitionFn<T> = Box<dyn FnMut(&T) -> usize + Send>;

/// Sends each element to the one branch a function picks (Akka's `Partition`, a
/// conditional fan-out). Built by `Graph::partition`, `Graph::route` (first
/// matching predicate, else a default branch) and `Graph::partition_by_key` (hash
/// of a key).
///
/// Order: each branch sees its elements in input order. Backpressure: an element
/// waits until its branch has room, and the elements behind it wait too (one input,
/// one order). Completion: when the input ends. An element routed to a cancelled
/// branch is counted as dropped on that port. A branch number out of range fails the
/// pipeline with an error naming it.
pub struct Partition<T> {
    pick: PartitionFn<T>,
    kind: &'static str,
    /// The branch picked for the element at the head of the input, which waits
    /// for room: the function is called once per element.
    head: Option<usize>,
}

impl<T> std::fmt::Debug for Partition<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Partition<T> {
    /// Routes each element to branch `pick(&element)`.
    pub fn new(pick: impl FnMut(&T) -> usize + Send + 'static) -> Self {
        Partition {
            pick: Box::new(pick),
            kind: "partition",
            head: None,
        }
    }

    /// Routes each element to the first branch whose predicate holds, or to the
    /// default branch (numbered `predicates.len()`) if none does.
    pub fn by_predicates(mut predicates: Vec<Predicate<T>>) -> Self {
        let default = predicates.len();
        Partition {
            pick: Box::new(move |x| predicates.iter_mut().position(|p| p(x)).unwrap_or(default)),
            kind: "route",
            head: None,
        }
    }

    /// Routes each element by the hash of its key, to one of `branches`: equal keys
    /// always go to the same branch. The hash is deterministic across runs.
    pub fn by_key<K: Hash>(branches: usize, key: impl Fn(&T) -> K + Send + 'static) -> Self {
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        let n = branches.max(1) as u64;
        Partition {
            pick: Box::new(move |x| (hasher.hash_one(key(x)) % n) as usize),
            kind: "partition_by_key",
            head: None,
        }
    }
}

impl<T: Send + 'static> Partition<T> {
    /// Routes each element to the replica of `branches` that owns its key group
    /// ([`replica_of_group`](crate::checkpoint::replica_of_group)): a keyed pool.
    pub(crate) fn by_key_group(
        branches: usize,
        group: crate::pipeline::pool::KeyGroupFn<T>,
    ) -> Self {
        let n = branches.max(1);
        Partition {
            pick: Box::new(move |x| crate::checkpoint::replica_of_group(group(x), n)),
            kind: "pool-by-key",
            head: None,
        }
    }
}

impl<T: Send + 'static> Junction for Partition<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn not_checkpointable(&self) -> Option<String> {
        // One input: the barrier passes once what came before it is sent.
        None
    }

    fn validate(&self, _inputs: usize, outputs: usize) -> Result<(), String> {
        if outputs == 0 {
            return Err(format!("a {} needs at least one branch", self.kind));
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        while let Some(x) = ports.front(0) {
            let o = match self.head {
                Some(o) => o,
                None => *self.head.insert((self.pick)(x)),
            };
            if o >= ports.outputs() {
                // The pick ran on a reference: nothing was taken, nothing is lost.
                let failure = Failure::error(
                    ErrorClass::Permanent,
                    format!(
                        "{} picked branch {o}, but there are {} branches",
                        self.kind,
                        ports.outputs()
                    ),
                );
                ports.fail(failure);
            }
            if ports.is_open(o) && ports.room(o) == 0 {
                return Routing::Continue;
            }
            if let Some(x) = ports.pop(0) {
                ports.push(o, x);
            }
            self.head = None;
            // The pick ran before the element was taken: nothing is in hand.
            ports.commit();
        }
        if ports.is_exhausted(0) {
            Routing::Finished
        } else {
            Routing::Continue
        }
    }
}

/// How a [`Balance`] picks a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalanceStrategy {
    /// The next branch in turn that has room.
    #[default]
    RoundRobin,
    /// The branch with the most unused credit, that is, the fewest elements
    /// outstanding; ties are taken in turn, and what is queued is spread over the
    /// branches rather than handed to one.
    LeastLoaded,
}

/// Sends each element to one branch that has room (Akka's `Balance`): work
/// distribution over replicas.
///
/// Order: none across branches; each branch sees its elements in input order.
/// Backpressure: only when no branch has room. Completion: when the input ends;
/// elements are never routed to a cancelled branch (the others take them).
#[derive(Debug, Default)]
pub struct Balance {
    strategy: BalanceStrategy,
    next: usize,
}

impl Balance {
    /// A balance with `strategy`.
    pub fn new(strategy: BalanceStrategy) -> Self {
        Balance { strategy, next: 0 }
    }

    /// Among the first `n` outputs (the active ones), a branch with room and how
    /// many elements to send it in one go.
    ///
    /// Round-robin: the next branch with room, one element. Least-loaded: the
    /// branch with the most room, ties taken in turn (always the first would feed
    /// one replica whenever it has just caught up); a share of its room, and no
    /// more than a share of what is queued, so that what is there now is spread
    /// over the branches rather than handed to one.
    pub(crate) fn pick<I, O: Send + 'static>(
        &mut self,
        ports: &Ports<'_, I, O>,
        n: usize,
    ) -> Option<(usize, usize)> {
        let n = n.min(ports.outputs());
        let o = match self.strategy {
            BalanceStrategy::RoundRobin => (0..n)
                .map(|k| (self.next + k) % n)
                .find(|&o| ports.room(o) > 0)?,
            BalanceStrategy::LeastLoaded => {
                let mut best: Option<(usize, usize)> = None;
                for k in 0..n {
                    let o = (self.next + k) % n;
                    let room = ports.room(o);
                    if room > 0 && best.is_none_or(|(_, r)| room > r) {
                        best = Some((o, room));
                    }
                }
                best?.0
            }
        };
        self.next = (o + 1) % n;
        let room = ports.room(o);
        let run = match self.strategy {
            BalanceStrategy::RoundRobin => 1,
            BalanceStrategy::LeastLoaded => (room / n).min(ports.queued(0).div_ceil(n)).max(1),
        };
        Some((o, run.min(room)))
    }
}

/// [`Balance`] over elements of `T`.
pub(crate) struct BalanceOf<T> {
    pub(crate) balance: Balance,
    pub(crate) _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T: Send + 'static> Junction for BalanceOf<T> {
    type In = T;
    type Out = T;

    fn kind(&self) -> &'static str {
        "balance"
    }

    fn not_checkpointable(&self) -> Option<String> {
        // One input: the barrier passes once what came before it is sent.
        None
    }

    fn validate(&self, _inputs: usize, outputs: usize) -> Result<(), String> {
        if outputs == 0 {
            return Err("a balance needs at least one branch".into());
        }
        Ok(())
    }

    fn route(&mut self, ports: &mut Ports<'_, T, T>) -> Routing {
        let balance = &mut self.balance;
        spread(ports, |ports| balance.pick(ports, ports.outputs()))
    }
}

/// Forwards what input 0 holds in runs to the branches `pick` chooses (a branch
/// and a run length, `None` when no branch has room): the routing of a balance
/// and of a resizable pool's spread.
pub(crate) fn spread<T: Send + 'static>(
    ports: &mut Ports<'_, T, T>,
    mut pick: impl FnMut(&Ports<'_, T, T>) -> Option<(usize, usize)>,
) -> Routing {
    while ports.queued(0) > 0 {
        let Some((o, run)) = pick(ports) else {
            return Routing::Continue;
        };
        ports.forward(0, o, run);
    }
    if ports.is_exhausted(0) {
        Routing::Finished
    } else {
        Routing::Continue
    }
}
