//! [`Graph`]: pipelines that are not a single line — fan-out, fan-in, several
//! sources and sinks — built from typed ports.
//!
//! A [`Flow`] is a graph with one open output; the graph builder adds junctions
//! (stages with several inputs or outputs) and connects their typed [`Outlet`]s and
//! [`Inlet`]s. Connecting ports of different element types does not compile. What
//! the compiler cannot see — a port left unconnected, a port connected twice, a
//! cycle that goes through no [feedback edge](Graph::feedback) — is rejected by
//! [`Graph::run`] with an error naming the stage and port.

use super::parts::{Parts, Pending, PortRef, Settings, StageMeta, launch};
use std::hash::Hash;
use std::marker::PhantomData;

use super::events::Events;
use super::flow::{Flow, Runnable};
use super::node::{AnyDownTx, InletFn, JunctionNode, plain_inlet};
use super::output::OutputReceiver;
use super::running::Running;
use crate::error::BuildError;
use crate::junction::actor::JunctionActor;
use crate::junction::{
    Balance, BalanceOf, Broadcast, Concat, Interleave, Junction, Merge, MergePrioritized,
    Partition, Priority, ZipIn, ZipWith,
};
use crate::operator::Counting;
use crate::runtime::{Placement, Runtime};
use crate::stage::link::{DownTx, Lift};

/// An output port of a graph stage, carrying elements of `T`. Connect it once.
pub struct Outlet<T> {
    pub(crate) graph: u64,
    pub(crate) at: PortRef,
    _t: PhantomData<fn() -> T>,
}

/// An input port of a graph stage, taking elements of `T`. Connect it once.
pub struct Inlet<T> {
    pub(crate) graph: u64,
    pub(crate) at: PortRef,
    _t: PhantomData<fn(T)>,
}

macro_rules! port_impls {
    ($port:ident, $dir:literal) => {
        impl<T> Clone for $port<T> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T> Copy for $port<T> {}
        impl<T> std::fmt::Debug for $port<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}(stage {}, port {})", $dir, self.at.node, self.at.port)
            }
        }
        impl<T> $port<T> {
            pub(crate) fn new(graph: u64, node: usize, port: usize) -> Self {
                $port {
                    graph,
                    at: PortRef { node, port },
                    _t: PhantomData,
                }
            }
        }
    };
}
port_impls!(Outlet, "Outlet");
port_impls!(Inlet, "Inlet");

/// The ports of a junction added with [`Graph::junction`].
#[derive(Debug)]
pub struct JunctionPorts<I, O> {
    /// Its inputs, by port number.
    pub inlets: Vec<Inlet<I>>,
    /// Its outputs, by port number.
    pub outlets: Vec<Outlet<O>>,
}

/// A graph of stages and junctions with typed ports: fan-out, fan-in, several
/// sources and sinks.
///
/// Add linear parts as [`Flow`]s ([`source`](Self::source), [`flow`](Self::flow),
/// [`sink`](Self::sink)), split and join them with junctions
/// ([`broadcast`](Self::broadcast), [`partition`](Self::partition),
/// [`merge`](Self::merge), [`zip`](Self::zip), …), then [`run`](Self::run). Each
/// sink's result comes back through the [`OutputReceiver`] that `sink` returned.
///
/// # Examples
///
/// Evens and odds, counted apart and merged back:
///
/// ```
/// use weir_runtime::{Flow, Graph, Runtime};
/// # use weir_runtime::operator::{Io, Operator, Step};
/// # use std::task::Context;
/// # struct Src(std::ops::Range<u64>);
/// # impl Operator for Src { type In = std::convert::Infallible; type Out = u64;
/// #   fn kind(&self) -> &'static str { "src" }
/// #   fn step(&mut self, io: &mut Io<'_, Self::In, u64>, _: &mut Context<'_>) -> Step {
/// #     while io.has_room() { match self.0.next() { Some(x) => io.push(x), None => return Step::Finished } }
/// #     Step::Continue } }
/// # struct Sum(u64, Option<weir_runtime::OutputSender<u64>>);
/// # impl Operator for Sum { type In = u64; type Out = std::convert::Infallible;
/// #   fn kind(&self) -> &'static str { "sum" }
/// #   fn counting(&self) -> weir_runtime::operator::Counting { weir_runtime::operator::Counting::Custom }
/// #   fn step(&mut self, io: &mut Io<'_, u64, Self::Out>, _: &mut Context<'_>) -> Step {
/// #     let mut s = 0; io.consume_all(|x| s += x); self.0 += s; io.finish_when_drained() }
/// #   fn on_stop(&mut self) { if let Some(mut tx) = self.1.take() { tx.send(self.0) } } }
/// # fn sum() -> (Sum, weir_runtime::OutputReceiver<u64>) {
/// #   let (tx, rx) = weir_runtime::output(); (Sum(0, Some(tx)), rx) }
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let mut g = Graph::new();
/// let numbers = g.source(Flow::from_source(Src(0..100)));
/// let [evens, odds] = g.partition(numbers, |x: &u64| (x % 2) as usize);
/// let both = g.merge([evens, odds]);
/// let (op, rx) = sum();
/// let total = g.sink(both, |f| f.to(op, rx));
/// let done = g.run(&rt)?.wait()?;
/// done.report.check_conservation()?;
/// assert_eq!(futures::executor::block_on(total), Some((0..100).sum()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a Graph does nothing until run"]
pub struct Graph {
    pub(super) parts: Parts,
    settings: Settings,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("parts", &self.parts)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph {
            parts: Parts::new(),
            settings: Settings::default(),
        }
    }

    pub(super) fn check_outlet<T>(&mut self, outlet: &Outlet<T>) -> bool {
        if outlet.graph == self.parts.id {
            true
        } else {
            self.parts
                .errors
                .push(Pending::Ready(BuildError::ForeignPort {
                    what: format!("{outlet:?}"),
                }));
            false
        }
    }

    /// Adds a linear flow that starts with a source; returns its output.
    pub fn source<T: Send + 'static>(&mut self, flow: Flow<T>) -> Outlet<T> {
        let (parts, tail, entry) = flow.into_parts();
        // A segment used as a source keeps its input unconnected; the shape check
        // reports it when the graph runs.
        let _ = entry;
        let offset = self.parts.absorb(parts);
        match tail {
            Some(t) => Outlet::new(self.parts.id, t.node + offset, t.port),
            None => {
                self.parts
                    .errors
                    .push(Pending::Ready(BuildError::InvalidArgument {
                        stage: "graph".into(),
                        message: "a flow added as a source has no stage".into(),
                    }));
                Outlet::new(self.parts.id, usize::MAX, 0)
            }
        }
    }

    /// Continues `from` with the stages `build` adds to a flow; returns the output
    /// of the last one (or `from` itself if `build` adds none).
    ///
    /// `build` receives an empty [`Flow`] that starts at `from`: use every flow
    /// method on it (`map`, `filter`, `supervise`, `name`, …).
    pub fn flow<T, U, F>(&mut self, from: Outlet<T>, build: F) -> Outlet<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: FnOnce(Flow<T>) -> Flow<U>,
    {
        if !self.check_outlet(&from) {
            return Outlet::new(self.parts.id, from.at.node, from.at.port);
        }
        let flow = build(Flow::segment());
        let (parts, tail, entry) = flow.into_parts();
        let offset = self.parts.absorb(parts);
        if let Some(entry) = entry {
            self.parts.connect(
                from.at,
                PortRef {
                    node: entry.node + offset,
                    port: entry.port,
                },
            );
        }
        match tail {
            Some(t) => Outlet::new(self.parts.id, t.node + offset, t.port),
            // No stage added: the output is `from` itself (types match: T = U).
            None => Outlet::new(self.parts.id, from.at.node, from.at.port),
        }
    }

    /// Ends `from` with the sink (and any stages before it) that `build` adds;
    /// returns the sink's result, ready once the graph has completed.
    pub fn sink<T, R, F>(&mut self, from: Outlet<T>, build: F) -> OutputReceiver<R>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: FnOnce(Flow<T>) -> Runnable<R>,
    {
        let foreign = !self.check_outlet(&from);
        let runnable = build(Flow::segment());
        let (parts, entry, output) = runnable.into_parts();
        let offset = self.parts.absorb(parts);
        if let Some(entry) = entry
            && !foreign
        {
            self.parts.connect(
                from.at,
                PortRef {
                    node: entry.node + offset,
                    port: entry.port,
                },
            );
        }
        output
    }

    /// Adds a junction with `inputs` input ports and `outputs` output ports; connect
    /// them with [`connect`](Self::connect).
    pub fn junction<J: Junction>(
        &mut self,
        junction: J,
        inputs: usize,
        outputs: usize,
    ) -> JunctionPorts<J::In, J::Out> {
        let inlets: Vec<InletFn<J>> = vec![plain_inlet::<J> as InletFn<J>; inputs];
        let node = self.add_junction(junction, inlets, outputs);
        let id = self.parts.id;
        JunctionPorts {
            inlets: (0..inputs).map(|p| Inlet::new(id, node, p)).collect(),
            outlets: (0..outputs).map(|p| Outlet::new(id, node, p)).collect(),
        }
    }

    pub(super) fn add_junction<J: Junction>(
        &mut self,
        junction: J,
        inlets: Vec<InletFn<J>>,
        outputs: usize,
    ) -> usize {
        let inputs = inlets.len();
        let meta = StageMeta {
            name: None,
            kind: junction.kind(),
            counting: Counting::Custom,
            capacity: None,
            pinned: None,
            replica: None,
            group: None,
            keyed: None,
            inputs,
            outputs,
            junction: true,
            boundary: false,
        };
        let check = junction.validate(inputs, outputs);
        let node = self
            .parts
            .add(meta, Box::new(JunctionNode::new(junction, inlets, outputs)));
        if let Err(message) = check {
            self.parts.errors.push(Pending::Argument { node, message });
        }
        node
    }

    /// Connects an output to an input of the same element type. Ports of different
    /// types do not connect:
    ///
    /// ```compile_fail
    /// use weir_runtime::{Graph, Inlet, Outlet};
    /// fn wire(g: &mut Graph, numbers: Outlet<u64>, words: Inlet<String>) {
    ///     g.connect(numbers, words); // error: expected `Inlet<u64>`, found `Inlet<String>`
    /// }
    /// ```
    pub fn connect<T>(&mut self, from: Outlet<T>, to: Inlet<T>) {
        if !self.check_outlet(&from) {
            return;
        }
        if to.graph != self.parts.id {
            self.parts
                .errors
                .push(Pending::Ready(BuildError::ForeignPort {
                    what: format!("{to:?}"),
                }));
            return;
        }
        self.parts.connect(from.at, to.at);
    }

    fn fan_out<J: Junction<In = T, Out = T>, T, const N: usize>(
        &mut self,
        from: Outlet<T>,
        junction: J,
    ) -> [Outlet<T>; N] {
        let JunctionPorts { inlets, outlets } = self.junction(junction, 1, N);
        self.connect(from, inlets[0]);
        std::array::from_fn(|i| outlets[i])
    }

    fn fan_in<J: Junction<In = T, Out = T>, T>(
        &mut self,
        from: impl IntoIterator<Item = Outlet<T>>,
        junction: J,
    ) -> Outlet<T> {
        let from: Vec<Outlet<T>> = from.into_iter().collect();
        let JunctionPorts { inlets, outlets } = self.junction(junction, from.len(), 1);
        for (outlet, inlet) in from.into_iter().zip(inlets) {
            self.connect(outlet, inlet);
        }
        outlets[0]
    }

    /// Sends every element of `from` to each of `N` branches; see [`Broadcast`] for
    /// the per-branch lag policies and the backpressure rule.
    pub fn broadcast<T: Clone + Send + 'static, const N: usize>(
        &mut self,
        from: Outlet<T>,
        broadcast: Broadcast<T>,
    ) -> [Outlet<T>; N] {
        if broadcast.branches() != N {
            self.parts
                .errors
                .push(Pending::Ready(BuildError::InvalidArgument {
                    stage: "broadcast".into(),
                    message: format!(
                        "Broadcast::new({}) connected to {N} branches",
                        broadcast.branches()
                    ),
                }));
        }
        self.fan_out(from, broadcast)
    }

    /// Sends every element of `from` on, and a copy of it to `side` (Akka's
    /// `alsoTo`): a broadcast of two branches, the side one with `policy`.
    pub fn tee<T: Clone + Send + 'static>(
        &mut self,
        from: Outlet<T>,
        side: crate::junction::LagPolicy,
    ) -> (Outlet<T>, Outlet<T>) {
        let [main, side] = self.broadcast(from, Broadcast::new(2).lag(1, side));
        (main, side)
    }

    /// Sends each element of `from` to branch `pick(&element)` of `N` (see
    /// [`Partition`]).
    pub fn partition<T: Send + 'static, const N: usize>(
        &mut self,
        from: Outlet<T>,
        pick: impl FnMut(&T) -> usize + Send + 'static,
    ) -> [Outlet<T>; N] {
        self.fan_out(from, Partition::new(pick))
    }

    /// Sends each element to the first of the `N - 1` predicates that holds, or to
    /// the last branch (the default) if none does: a conditional fan-out.
    pub fn route<T: Send + 'static, const N: usize>(
        &mut self,
        from: Outlet<T>,
        predicates: Vec<crate::junction::Predicate<T>>,
    ) -> [Outlet<T>; N] {
        if predicates.len() + 1 != N {
            self.parts
                .errors
                .push(Pending::Ready(BuildError::InvalidArgument {
                    stage: "route".into(),
                    message: format!(
                        "{} predicates need {} branches (the last is the default), not {N}",
                        predicates.len(),
                        predicates.len() + 1
                    ),
                }));
        }
        self.fan_out(from, Partition::by_predicates(predicates))
    }

    /// Sends each element to one of `N` branches by the hash of `key`: equal keys
    /// always take the same branch.
    pub fn partition_by_key<T: Send + 'static, K: Hash, const N: usize>(
        &mut self,
        from: Outlet<T>,
        key: impl Fn(&T) -> K + Send + 'static,
    ) -> [Outlet<T>; N] {
        self.fan_out(from, Partition::by_key(N, key))
    }

    /// Sends each element to one of `N` branches that has room (see [`Balance`]).
    pub fn balance<T: Send + 'static, const N: usize>(
        &mut self,
        from: Outlet<T>,
        balance: Balance,
    ) -> [Outlet<T>; N] {
        self.fan_out(
            from,
            BalanceOf {
                balance,
                _t: PhantomData,
            },
        )
    }

    /// Merges the outlets fairly (see [`Merge`]).
    pub fn merge<T: Send + 'static>(
        &mut self,
        from: impl IntoIterator<Item = Outlet<T>>,
    ) -> Outlet<T> {
        self.fan_in(from, Merge::new())
    }

    /// Merges the outlets with a configured [`Merge`]: say what a failure in one
    /// input's branch does with [`Merge::on_input_failure`].
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::junction::{InputFailure, Merge};
    /// use weir_runtime::{Graph, Outlet};
    ///
    /// fn tolerant(g: &mut Graph, feeds: Vec<Outlet<String>>) -> Outlet<String> {
    ///     g.merge_with(feeds, Merge::new().on_input_failure(InputFailure::EndInput))
    /// }
    /// ```
    pub fn merge_with<T: Send + 'static>(
        &mut self,
        from: impl IntoIterator<Item = Outlet<T>>,
        merge: Merge<T>,
    ) -> Outlet<T> {
        self.fan_in(from, merge)
    }

    /// Merges the outlets by `priority` (see [`MergePrioritized`]).
    pub fn merge_prioritized<T: Send + 'static>(
        &mut self,
        from: impl IntoIterator<Item = Outlet<T>>,
        priority: Priority,
    ) -> Outlet<T> {
        self.fan_in(from, MergePrioritized::new(priority))
    }

    /// Everything from the first outlet, then the second, … (see [`Concat`]).
    pub fn concat<T: Send + 'static>(
        &mut self,
        from: impl IntoIterator<Item = Outlet<T>>,
    ) -> Outlet<T> {
        self.fan_in(from, Concat::new())
    }

    /// `segment` elements from each outlet in turn (see [`Interleave`]).
    pub fn interleave<T: Send + 'static>(
        &mut self,
        from: impl IntoIterator<Item = Outlet<T>>,
        segment: usize,
    ) -> Outlet<T> {
        self.fan_in(from, Interleave::new(segment))
    }

    /// Pairs the k-th elements of `a` and `b` (see [`Zip`](crate::junction::Zip)).
    pub fn zip<A: Send + 'static, B: Send + 'static>(
        &mut self,
        a: Outlet<A>,
        b: Outlet<B>,
    ) -> Outlet<(A, B)> {
        self.zip_with(a, b, |a, b| (a, b))
    }

    /// Combines the k-th elements of `a` and `b` with `f` (see [`ZipWith`]).
    pub fn zip_with<A, B, C, F>(&mut self, a: Outlet<A>, b: Outlet<B>, f: F) -> Outlet<C>
    where
        A: Send + 'static,
        B: Send + 'static,
        C: Send + 'static,
        F: FnMut(A, B) -> C + Send + 'static,
    {
        self.zip_junction(a, b, ZipWith::new(f))
    }

    /// [`zip`](Self::zip) for a checkpointed pipeline: the elements of one input
    /// that wait for their partners at a checkpoint barrier are kept in the
    /// checkpoint, so they need serde types (see [`ZipWith::checkpointed`]). A
    /// plain `zip` in a checkpointed pipeline is a
    /// [`BuildError::NotCheckpointable`].
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{Graph, Outlet};
    ///
    /// fn readings(g: &mut Graph, ids: Outlet<u64>, values: Outlet<f64>) -> Outlet<(u64, f64)> {
    ///     g.zip_checkpointed(ids, values)
    /// }
    /// ```
    pub fn zip_checkpointed<A, B>(&mut self, a: Outlet<A>, b: Outlet<B>) -> Outlet<(A, B)>
    where
        A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        B: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        self.zip_with_checkpointed(a, b, |a, b| (a, b))
    }

    /// [`zip_with`](Self::zip_with) for a checkpointed pipeline (see
    /// [`zip_checkpointed`](Self::zip_checkpointed)).
    pub fn zip_with_checkpointed<A, B, C, F>(
        &mut self,
        a: Outlet<A>,
        b: Outlet<B>,
        f: F,
    ) -> Outlet<C>
    where
        A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        B: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
        C: Send + 'static,
        F: FnMut(A, B) -> C + Send + 'static,
    {
        self.zip_junction(a, b, ZipWith::new(f).checkpointed())
    }

    fn zip_junction<A, B, C, F>(
        &mut self,
        a: Outlet<A>,
        b: Outlet<B>,
        zip: ZipWith<A, B, C, F>,
    ) -> Outlet<C>
    where
        A: Send + 'static,
        B: Send + 'static,
        C: Send + 'static,
        F: FnMut(A, B) -> C + Send + 'static,
    {
        fn left<A: Send + 'static, B: Send + 'static, J: Junction<In = ZipIn<A, B>>>(
            addr: &actix::Addr<JunctionActor<J>>,
            port: usize,
        ) -> AnyDownTx {
            Box::new(DownTx::<A>::lifted(
                addr.clone().recipient(),
                port,
                Lift {
                    into: ZipIn::Left,
                    back: ZipIn::left,
                },
            ))
        }
        fn right<A: Send + 'static, B: Send + 'static, J: Junction<In = ZipIn<A, B>>>(
            addr: &actix::Addr<JunctionActor<J>>,
            port: usize,
        ) -> AnyDownTx {
            Box::new(DownTx::<B>::lifted(
                addr.clone().recipient(),
                port,
                Lift {
                    into: ZipIn::Right,
                    back: ZipIn::right,
                },
            ))
        }
        type Z<A, B, C, F> = ZipWith<A, B, C, F>;
        let inlets: Vec<InletFn<Z<A, B, C, F>>> = vec![
            left::<A, B, Z<A, B, C, F>> as InletFn<Z<A, B, C, F>>,
            right::<A, B, Z<A, B, C, F>> as InletFn<Z<A, B, C, F>>,
        ];
        let node = self.add_junction(zip, inlets, 1);
        let id = self.parts.id;
        if self.check_outlet(&a) && self.check_outlet(&b) {
            self.parts.connect(a.at, PortRef { node, port: 0 });
            self.parts.connect(b.at, PortRef { node, port: 1 });
        }
        Outlet::new(id, node, 0)
    }

    /// Names the stage that owns `port` (a junction, usually). Names appear in
    /// stats, reports and errors and must be unique.
    pub fn name_stage<T>(&mut self, port: Outlet<T>, name: impl Into<String>) -> &mut Self {
        if self.check_outlet(&port) && port.at.node < self.parts.len() {
            self.parts.meta_mut(port.at.node).name = Some(name.into());
        }
        self
    }

    /// Sets the input capacity (per input port) of the stage that owns `port`.
    pub fn capacity_of<T>(&mut self, port: Outlet<T>, capacity: usize) -> &mut Self {
        if self.check_outlet(&port) && port.at.node < self.parts.len() {
            self.parts.meta_mut(port.at.node).capacity = Some(capacity);
        }
        self
    }

    /// Names the pipeline (default `pipeline-N`).
    pub fn named(&mut self, name: impl Into<String>) -> &mut Self {
        self.settings.name = Some(name.into());
        self
    }

    /// Input capacity of every stage whose capacity was not set (see
    /// [`Runnable::default_capacity`]).
    pub fn default_capacity(&mut self, capacity: usize) -> &mut Self {
        self.settings.default_capacity = capacity;
        self
    }

    /// Largest batch a stage sends in one message (see [`Runnable::max_batch`]).
    pub fn max_batch(&mut self, max_batch: usize) -> &mut Self {
        self.settings.max_batch = max_batch;
        self
    }

    /// Where the stages run (see [`Runnable::placement`]).
    pub fn placement(&mut self, placement: Placement) -> &mut Self {
        self.settings.placement = placement;
        self
    }

    /// Whether adjacent stages run fused (see [`Runnable::fusion`]).
    pub fn fusion(&mut self, on: bool) -> &mut Self {
        self.settings.fusion = on;
        self
    }

    /// How often the stages' counters are published through the `metrics` facade
    /// (see [`Runnable::metrics_interval`]).
    pub fn metrics_interval(&mut self, interval: std::time::Duration) -> &mut Self {
        self.settings.metrics_interval = interval;
        self
    }

    /// Which stages restart with a supervised stage that restarts, over the
    /// graph's topology (OTP's strategies): `OneForOne` (the default) restarts
    /// only that stage, `OneForAll` every stage of the graph, `RestForOne` that
    /// stage and every stage downstream of it (reachable along the graph's edges,
    /// feedback edges left out). See [`Runnable::strategy`] for what a restarted
    /// sibling loses.
    pub fn strategy(&mut self, strategy: weir_supervisor::policy::RestartStrategy) -> &mut Self {
        self.settings.strategy = strategy;
        self
    }

    /// Checkpoints the graph's state (see [`Runnable::checkpoints`]: the same
    /// protocol, restore and errors).
    pub fn checkpoints(&mut self, config: crate::checkpoint::CheckpointConfig) -> &mut Self {
        self.settings.checkpoint = Some(config);
        self
    }

    /// Reports a stage or junction as stalled when it holds input it could
    /// process but makes no progress for `timeout` (see
    /// [`Runnable::stall_timeout`]). Default: off.
    pub fn stall_timeout(&mut self, timeout: std::time::Duration) -> &mut Self {
        self.settings.stall_timeout = Some(timeout);
        self
    }

    /// Applies a policy file to every stage and junction of the graph when it runs
    /// (see [`Runnable::policies`]: the same rules, precedence and errors).
    pub fn policies(&mut self, config: &weir_supervisor::policy::PolicyConfig) -> &mut Self {
        self.settings.policies = Some(config.clone());
        self
    }

    /// Re-applies a policy file to the running graph through `handle` (see
    /// [`Runnable::policies_handle`]).
    pub fn policies_handle(
        &mut self,
        handle: &crate::reconfig::ConfigHandle<weir_supervisor::policy::PolicyConfig>,
    ) -> &mut Self {
        self.settings.policies_handle = Some(handle.clone());
        self
    }

    /// Subscribes to supervision events before the graph starts.
    pub fn subscribe(&mut self) -> Events {
        self.settings.subscribe()
    }

    /// Validates the graph and starts it. Sink results come through the receivers
    /// [`sink`](Self::sink) returned; the handle's own output is `()`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the stage (and port) at fault: everything
    /// [`Runnable::run`] rejects, plus unconnected ports, ports connected twice,
    /// cycles through no feedback edge, feedback edges that close no cycle, and
    /// ports of another graph.
    pub fn run(self, runtime: &Runtime) -> Result<Running<()>, BuildError> {
        let (pipeline, done) = launch(self.parts, self.settings, runtime)?;
        Ok(Running::new(pipeline, done, OutputReceiver::ready(())))
    }
}
