//! [`Flow`] and [`Runnable`]: the typed pipeline builder.

use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::events::Events;
use super::node::{Binder, StageNode};
use super::output::OutputReceiver;
use super::parts::{Parts, Pending, PortRef, Settings, StageMeta, launch};
use super::running::Running;
use crate::error::BuildError;
use crate::operator::factory::FromFactory;
use crate::operator::{ElementSupervision, Operator};
use crate::reconfig::ConfigHandle;
use crate::runtime::{Placement, Runtime};
use crate::supervision::{Copies, StageSupervisor, Supervision};
use weir_supervisor::policy::SupervisionPolicy;

mod reconfig;

/// Input capacity of a stage whose capacity was not set: 1024 elements.
///
/// # Choosing a capacity
///
/// An edge's capacity is both its memory bound (capacity × element size) and the
/// largest batch that can cross it. 1024 lets batches amortise messaging overhead
/// (a batch of 1024 costs about as much to send as a single element) while keeping a
/// chain of small elements within a few hundred KiB. Lower it for large elements or
/// tight memory; raise it only if a profile shows stages starved between batches.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Supervision waiting for the next stage, with the element cloner it needs.
type NextSupervision<T> = (Supervision<T>, Copies<T>);

/// A pipeline under construction whose last stage emits `T`.
///
/// Start one from a source, add operators, and end it with a sink to get a
/// [`Runnable`]. A flow without a sink cannot be run: that is a type error, not a
/// runtime one. Stages are moved into the flow, so one stage cannot be used twice.
///
/// The operator methods (`map`, `filter`, …) come from the `weir` facade's prelude;
/// this type offers the generic [`via`](Self::via) they are built on.
///
/// ```compile_fail
/// # use weir_runtime::{Flow, Runtime};
/// # fn no_sink(flow: Flow<u64>, rt: &Runtime) {
/// flow.run(rt); // no sink: `Flow` has no `run`
/// # }
/// ```
pub struct Flow<T: Send + 'static> {
    parts: Parts,
    /// The output of the last stage; `None` for a segment with no stage yet.
    tail: Option<PortRef>,
    /// The input of a segment's first stage, connected by the graph it joins.
    entry: Option<PortRef>,
    /// Supervision for the next stage, with the element cloner it needs.
    next: Option<NextSupervision<T>>,
    /// A handle to change the next stage's supervision policy at run time.
    next_policy: Option<ConfigHandle<SupervisionPolicy>>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: Send + 'static> std::fmt::Debug for Flow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + 'static> Flow<T> {
    /// Supervises the **next** stage (the one added after this call): a failure of
    /// its user code on an element is handled by the policy (the element retried
    /// with backoff, dead-lettered, skipped, the stage restarted, or the failure
    /// escalated) instead of failing the pipeline. See [`Supervision`] for what is
    /// applied today. The elements must be `Clone`: the stage keeps a copy of each
    /// until its operator has processed it.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{Flow, Supervision};
    /// use weir_supervisor::policy::{Action, SupervisionPolicy};
    ///
    /// fn retrying<T: Clone + Send + 'static>(flow: Flow<T>) -> Flow<T> {
    ///     let policy = SupervisionPolicy::default().on_exhausted(Action::Escalate);
    ///     flow.supervise(Supervision::new(policy))
    /// }
    /// ```
    pub fn supervise(mut self, supervision: impl Into<Supervision<T>>) -> Self {
        self.next = Some((supervision.into(), Copies::of()));
        self
    }
}

impl<T: Send + 'static> Flow<T> {
    /// Starts a flow from a source operator (one whose input is `Infallible`).
    pub fn from_source<Op>(op: Op) -> Self
    where
        Op: Operator<In = Infallible, Out = T>,
    {
        let mut parts = Parts::new();
        let meta = StageMeta::of(&op, 0, 1);
        let op = op_checked(op, &mut parts);
        let node = parts.add(meta, Box::new(StageNode::new(op, None)));
        Flow {
            parts,
            tail: Some(PortRef { node, port: 0 }),
            entry: None,
            next: None,
            next_policy: None,
            _t: std::marker::PhantomData,
        }
    }

    /// A flow with no stage yet, whose first stage's input a graph connects.
    pub(crate) fn segment() -> Self {
        Flow {
            parts: Parts::new(),
            tail: None,
            entry: None,
            next: None,
            next_policy: None,
            _t: std::marker::PhantomData,
        }
    }

    /// The graph parts, the output of the last stage, and a segment's entry.
    pub(crate) fn into_parts(self) -> (Parts, Option<PortRef>, Option<PortRef>) {
        (self.parts, self.tail, self.entry)
    }

    /// Adds a stage after the tail (or as a segment's first) and returns its node.
    fn push_stage<Op: Operator<In = T>>(&mut self, op: Op, outputs: usize) -> usize {
        self.push_stage_bound(op, outputs, Vec::new())
    }

    /// [`push_stage`](Self::push_stage) with handles to bind when the stage starts.
    fn push_stage_bound<Op: Operator<In = T>>(
        &mut self,
        mut op: Op,
        outputs: usize,
        mut binders: Vec<Binder<Op>>,
    ) -> usize {
        let index = self.parts.len();
        let sup = self.take_supervision(index, &mut op);
        if let Some(handle) = self.next_policy.take() {
            match &sup {
                Some(_) => binders.push(reconfig::policy_binder::<Op>(
                    &handle,
                    index,
                    &mut self.parts,
                )),
                None => self.parts.errors.push(Pending::Argument {
                    node: index,
                    message: "a policy handle was given to a stage that is not supervised \
                              (call Flow::supervise first)"
                        .into(),
                }),
            }
        }
        let meta = StageMeta::of(&op, 1, outputs);
        let op = op_checked_at(op, index, &mut self.parts);
        let node = self
            .parts
            .add(meta, Box::new(StageNode::bound(op, sup, binders)));
        let input = PortRef { node, port: 0 };
        match self.tail {
            Some(tail) => self.parts.connect(tail, input),
            None => self.entry = Some(input),
        }
        node
    }

    /// Takes the supervision set for the next stage (at `index`), checking it: a
    /// retry-safe operator is supervised by the stage (which copies the queue
    /// before each step); an async one that accepts handles its elements' failures
    /// itself; any other is rejected.
    fn take_supervision<Op: Operator<In = T>>(
        &mut self,
        index: usize,
        op: &mut Op,
    ) -> Option<StageSupervisor<T>> {
        let (supervision, copies) = self.next.take()?;
        let kind = op.kind();
        let checked = if op.retry_safe() {
            supervision.check(false).map(|()| false)
        } else {
            let setup = ElementSupervision::new(copies.one, supervision.policy.element_timeout);
            match catch_unwind(AssertUnwindSafe(|| op.supervise_elements(setup))) {
                Ok(true) => supervision.check(true).map(|()| true),
                Ok(false) => Err(format!(
                    "`{kind}` cannot be supervised yet: a failure in it can leave partial \
                     output or held elements, so retrying one element is not safe"
                )),
                Err(_) => Err(format!("`{kind}` panicked in supervise_elements")),
            }
        };
        let elementwise = match checked {
            Ok(elementwise) => elementwise,
            Err(message) => {
                self.parts.errors.push(Pending::Argument {
                    node: index,
                    message,
                });
                false
            }
        };
        Some(StageSupervisor::new(
            supervision,
            copies.queue,
            index,
            elementwise,
        ))
    }

    /// Adds a stage running `op` after the current last stage.
    pub fn via<Op>(mut self, op: Op) -> Flow<Op::Out>
    where
        Op: Operator<In = T>,
    {
        let node = self.push_stage(op, 1);
        Flow {
            parts: self.parts,
            tail: Some(PortRef { node, port: 0 }),
            entry: self.entry,
            next: None,
            next_policy: None,
            _t: std::marker::PhantomData,
        }
    }

    /// Adds a stage whose operator `factory` builds, and builds again, fresh, each
    /// time a supervised stage is restarted (see [`Supervision`]): the queue, credit
    /// and pending elements are kept, the operator's state is not.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::task::Context;
    /// use weir_runtime::Flow;
    /// use weir_runtime::operator::{Io, Operator, Step};
    ///
    /// /// Numbers elements from 0, per incarnation.
    /// struct Numbered(u64);
    /// impl Operator for Numbered {
    ///     type In = String;
    ///     type Out = (u64, String);
    ///     fn kind(&self) -> &'static str { "numbered" }
    ///     fn retry_safe(&self) -> bool { true }
    ///     fn step(&mut self, io: &mut Io<'_, String, (u64, String)>, _: &mut Context<'_>) -> Step {
    ///         while io.has_room() {
    ///             let Some(s) = io.pop() else { break };
    ///             io.push((self.0, s));
    ///             self.0 += 1;
    ///         }
    ///         io.finish_when_drained()
    ///     }
    /// }
    ///
    /// fn numbered(flow: Flow<String>) -> Flow<(u64, String)> {
    ///     flow.via_factory(|| Numbered(0))
    /// }
    /// ```
    pub fn via_factory<Op, F>(self, factory: F) -> Flow<Op::Out>
    where
        Op: Operator<In = T>,
        F: Fn() -> Op + Send + 'static,
    {
        self.via(FromFactory::new(factory))
    }

    /// Ends the flow with a sink operator. `output` is where the sink hands over its
    /// result (see [`output`](crate::output)).
    pub fn to<Op, R>(mut self, op: Op, output: OutputReceiver<R>) -> Runnable<R>
    where
        Op: Operator<In = T, Out = Infallible>,
    {
        let sink = self.push_stage(op, 0);
        Runnable {
            parts: self.parts,
            entry: self.entry,
            sink,
            output,
            settings: Settings::default(),
        }
    }

    /// Names the last stage. Names appear in stats, reports and errors; they must be
    /// unique within a pipeline. Default: `kind#index`, e.g. `map#2`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.last().name = Some(name.into());
        self
    }

    /// Sets the input capacity of the last stage, in elements: the most it holds in
    /// its queue and mailbox together. See [`DEFAULT_CAPACITY`] for how to choose.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.last().capacity = Some(capacity);
        self
    }

    /// Pins the last stage to the runtime's arbiter `index`, whatever the pipeline's
    /// [`Placement`].
    pub fn on_arbiter(mut self, index: usize) -> Self {
        self.last().pinned = Some(index);
        self
    }

    fn last(&mut self) -> &mut StageMeta {
        match self.tail {
            Some(tail) => self.parts.meta_mut(tail.node),
            None => {
                // A segment with no stage: there is nothing to name or size. The
                // setting goes to a placeholder and the mistake is reported.
                self.parts
                    .errors
                    .push(Pending::Ready(BuildError::InvalidArgument {
                        stage: "flow".into(),
                        message:
                            "a stage setting (name, capacity, pin) was applied before any stage"
                                .into(),
                    }));
                self.parts.scratch()
            }
        }
    }
}

/// Records the operator's own argument check against its node.
fn op_checked<Op: Operator>(op: Op, parts: &mut Parts) -> Op {
    let index = parts.len();
    op_checked_at(op, index, parts)
}

fn op_checked_at<Op: Operator>(op: Op, index: usize, parts: &mut Parts) -> Op {
    if let Err(message) = op.validate() {
        parts.errors.push(Pending::Argument {
            node: index,
            message,
        });
    }
    op
}

impl StageMeta {
    fn of<Op: Operator>(op: &Op, inputs: usize, outputs: usize) -> Self {
        StageMeta {
            name: None,
            kind: op.kind(),
            counting: op.counting(),
            capacity: None,
            pinned: None,
            replica: None,
            inputs,
            outputs,
            junction: false,
        }
    }
}

/// A complete pipeline, from source to sink, ready to [`run`](Self::run). `R` is what
/// the sink hands back when the pipeline completes (`Vec<T>` for `collect`, `()` for
/// `for_each`).
pub struct Runnable<R> {
    parts: Parts,
    entry: Option<PortRef>,
    sink: usize,
    output: OutputReceiver<R>,
    settings: Settings,
}

impl<R> std::fmt::Debug for Runnable<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runnable")
            .field("parts", &self.parts)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static> Runnable<R> {
    /// Names the sink stage (see [`Flow::name`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.parts.meta_mut(self.sink).name = Some(name.into());
        self
    }

    /// Sets the sink's input capacity (see [`Flow::capacity`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.parts.meta_mut(self.sink).capacity = Some(capacity);
        self
    }

    /// Subscribes to the pipeline's supervision events before it starts, so that no
    /// event is missed (see [`Events`]).
    pub fn subscribe(&mut self) -> Events {
        self.settings.subscribe()
    }

    /// Names the pipeline. Default: `pipeline-N`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    /// Input capacity of every stage whose capacity was not set. Default
    /// [`DEFAULT_CAPACITY`].
    pub fn default_capacity(mut self, capacity: usize) -> Self {
        self.settings.default_capacity = capacity;
        self
    }

    /// Largest batch a stage sends in one message. Default: unlimited, that is, as
    /// large as the receiver's credit. Lower it to bound the time one stage spends on
    /// one batch.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.settings.max_batch = max_batch;
        self
    }

    /// Reports a stage as stalled (a `StageStalled` event, `stalled` in stats) when
    /// it holds input it could process but has made no progress for `timeout`.
    /// Backpressured stages (no credit) are not stalled; the stage that holds them
    /// up is. A supervised stage's policy `stall_timeout` overrides this. Default:
    /// off.
    ///
    /// Choosing a timeout: longer than the slowest legitimate element (a slow
    /// external call), short enough to page someone before the backlog matters.
    pub fn stall_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.settings.stall_timeout = Some(timeout);
        self
    }

    /// How often the stages' counters and gauges are published through the
    /// [`metrics`](https://docs.rs/metrics) facade (see `docs/observability.md`);
    /// default [`DEFAULT_METRICS_INTERVAL`](crate::observe::DEFAULT_METRICS_INTERVAL)
    /// (1 s). The values are sampled from the stages' counters by one task per
    /// pipeline, and once more when the pipeline ends; without an installed
    /// recorder the publishing is a no-op.
    pub fn metrics_interval(mut self, interval: std::time::Duration) -> Self {
        self.settings.metrics_interval = interval;
        self
    }

    /// Which stages restart when a supervised stage restarts (OTP's strategies):
    /// `OneForOne` (the default) restarts only that stage, `OneForAll` every stage,
    /// `RestForOne` that stage and everything downstream of it. A sibling is rebuilt
    /// from its factory ([`Flow::via_factory`]) when it holds no element; other
    /// operators keep their state.
    pub fn strategy(mut self, strategy: weir_supervisor::policy::RestartStrategy) -> Self {
        self.settings.strategy = strategy;
        self
    }

    /// Where the stages run. Default [`Placement::Together`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.settings.placement = placement;
        self
    }

    /// Validates the pipeline and starts its stages on `runtime`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the stage at fault: zero capacity, a capacity set on a
    /// source, an invalid operator argument, duplicate or empty stage names, a zero
    /// batch limit, a pin to a missing arbiter, or a stopped runtime.
    pub fn run(self, runtime: &Runtime) -> Result<Running<R>, BuildError> {
        // A segment's unconnected input is reported by the shape check.
        let (pipeline, done) = launch(self.parts, self.settings, runtime)?;
        Ok(Running::new(pipeline, done, self.output))
    }

    /// The graph parts, a segment's entry, and the sink's output.
    pub(crate) fn into_parts(self) -> (Parts, Option<PortRef>, OutputReceiver<R>) {
        (self.parts, self.entry, self.output)
    }
}
