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
#[must_use = "a Flow does nothing until it is completed by a sink and run"]
pub struct Flow<T: Send + 'static> {
    parts: Parts,
    /// The output of the last stage; `None` for a segment with no stage yet.
    tail: Option<PortRef>,
    /// The input of a segment's first stage, connected by the graph it joins.
    entry: Option<PortRef>,
    /// Supervision for the next stage.
    next: Option<Supervision<T>>,
    /// How to copy the elements, when they are known to be `Clone`: the next stage
    /// can then be supervised, in code or by a policy file applied later.
    copies: Option<Copies<T>>,
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
        self.next = Some(supervision.into());
        self.cloneable()
    }

    /// Records how to copy the elements, so that the **next** stage can be
    /// supervised by a policy applied later with
    /// [`Runnable::policies`] or [`Graph::policies`](crate::Graph::policies): a
    /// retry or a dead letter needs a copy of the element that failed. The
    /// operator methods of the prelude call it for you; call it before
    /// [`via`](Self::via) with an operator of your own.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::Flow;
    /// # use weir_runtime::operator::Operator;
    ///
    /// fn supervisable<T: Clone + Send + 'static, Op: Operator<In = T>>(flow: Flow<T>, op: Op) -> Flow<Op::Out> {
    ///     flow.cloneable().via(op)
    /// }
    /// ```
    pub fn cloneable(mut self) -> Self {
        self.copies = Some(Copies::of());
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
            copies: None,
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
            copies: None,
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
        let copies = self.copies.take();
        let code = self.next.take();
        let sup = code.clone().and_then(|supervision| {
            // Cannot fail: `Flow::supervise` sets `next` and `copies` together.
            let copies = copies.expect("Flow::supervise records the copies");
            supervise(supervision, copies, index, &mut op, &mut self.parts)
        });
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
        let node = self.parts.add(
            meta,
            Box::new(StageNode::bound(op, sup, binders).supervisable(copies, code)),
        );
        let input = PortRef { node, port: 0 };
        match self.tail {
            Some(tail) => self.parts.connect(tail, input),
            None => self.entry = Some(input),
        }
        node
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
            copies: None,
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

    /// Sizes the pipeline's elements of type `E` with `f` for the runtime's
    /// [memory budget](crate::memory) (see [`Runnable::sizer`]); set on a flow,
    /// it holds for the pipeline the flow becomes part of. Sources of library
    /// element types register theirs this way.
    pub fn sizer<E: 'static>(mut self, f: impl Fn(&E) -> u64 + Send + Sync + 'static) -> Self {
        self.parts.sizers.insert::<E>(std::sync::Arc::new(f));
        self
    }

    /// Sizes the pipeline's elements of type `E` with their
    /// [`ByteSize`](crate::memory::ByteSize) (see [`Flow::sizer`]).
    pub fn sized<E: crate::memory::ByteSize + 'static>(self) -> Self {
        self.sizer(|x: &E| x.byte_size() as u64)
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

    /// Ends the fused group after the last stage: the next stage runs in an actor
    /// of its own, with a mailbox between the two (Akka's name for the same). Stages
    /// fuse by default when they can (see [`Runnable::fusion`]); a boundary is
    /// worth it when the stages on either side are heavy enough to run in parallel
    /// on two arbiters, with [`on_arbiter`](Self::on_arbiter) or
    /// [`Placement::Spread`].
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::Flow;
    ///
    /// /// Whatever `flow` ends with runs in one actor, what comes next in another.
    /// fn boundary<T: Send + 'static>(flow: Flow<T>) -> Flow<T> {
    ///     flow.async_boundary()
    /// }
    /// ```
    pub fn async_boundary(mut self) -> Self {
        self.last().boundary = true;
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

/// Builds the supervisor of the stage at `index` from `supervision`, recording a
/// build error against the stage when it cannot apply it.
fn supervise<Op: Operator>(
    supervision: Supervision<Op::In>,
    copies: Copies<Op::In>,
    index: usize,
    op: &mut Op,
    parts: &mut Parts,
) -> Option<StageSupervisor<Op::In>> {
    match supervisor_for(supervision, copies, index, op) {
        Ok(sup) => Some(sup),
        Err(Unfit::Unsupervisable(message)) => {
            parts.errors.push(Pending::Argument {
                node: index,
                message,
            });
            None
        }
        Err(Unfit::Invalid(message)) => {
            parts.errors.push(Pending::CodePolicy {
                node: index,
                message,
            });
            None
        }
    }
}

/// Why a stage cannot take a supervision.
pub(crate) enum Unfit {
    /// Its operator cannot retry one element.
    Unsupervisable(String),
    /// The supervision does not fit the stage.
    Invalid(String),
}

/// Checks `supervision` against the operator and builds the stage's supervisor: a
/// retry-safe operator is supervised by the stage (which copies the queue before
/// each step); an async one that accepts handles its elements' failures itself;
/// any other is rejected, with the reason.
pub(crate) fn supervisor_for<Op: Operator>(
    supervision: Supervision<Op::In>,
    copies: Copies<Op::In>,
    index: usize,
    op: &mut Op,
) -> Result<StageSupervisor<Op::In>, Unfit> {
    let elementwise = if op.retry_safe() {
        false
    } else {
        let kind = op.kind();
        let setup = ElementSupervision::new(copies.one, supervision.policy.element_timeout);
        match catch_unwind(AssertUnwindSafe(|| op.supervise_elements(setup))) {
            Ok(true) => true,
            Ok(false) => return Err(Unfit::Unsupervisable(unsupervisable(kind))),
            Err(_) => {
                return Err(Unfit::Invalid(format!(
                    "`{kind}` panicked in supervise_elements"
                )));
            }
        }
    };
    supervision.check(elementwise).map_err(Unfit::Invalid)?;
    Ok(StageSupervisor::new(
        supervision,
        copies.queue,
        index,
        elementwise,
    ))
}

/// Why an operator that cannot retry one element cannot be supervised.
pub(crate) fn unsupervisable(kind: &str) -> String {
    format!(
        "`{kind}` cannot be supervised yet: a failure in it can leave partial output or \
         held elements, so retrying one element is not safe"
    )
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
            group: None,
            keyed: None,
            inputs,
            outputs,
            junction: false,
            boundary: false,
        }
    }
}

/// A complete pipeline, from source to sink, ready to [`run`](Self::run). `R` is what
/// the sink hands back when the pipeline completes (`Vec<T>` for `collect`, `()` for
/// `for_each`).
#[must_use = "a Runnable does nothing until run"]
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

    /// Sizes this pipeline's elements of type `T` with `f` (bytes held, heap
    /// included) for the runtime's [memory budget](crate::memory), over the
    /// budget's own sizer for `T`. Without a budget it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::Runnable;
    ///
    /// struct Frame(Vec<u8>);
    ///
    /// fn sized<R: Send + 'static>(job: Runnable<R>) -> Runnable<R> {
    ///     job.sizer(|f: &Frame| f.0.capacity() as u64)
    /// }
    /// ```
    pub fn sizer<E: 'static>(mut self, f: impl Fn(&E) -> u64 + Send + Sync + 'static) -> Self {
        self.parts.sizers.insert::<E>(std::sync::Arc::new(f));
        self
    }

    /// Whether adjacent stages run *fused*: in one actor, elements handed from one
    /// stage to the next by a method call instead of a mailbox. Default on (unless
    /// the environment variable [`FUSION_ENV`](crate::FUSION_ENV) is `off`).
    ///
    /// A stage joins the group of the stage before it when its operator fuses
    /// ([`Operator::fusable`](crate::operator::Operator::fusable)), the two are
    /// linked by a plain edge (no junction, no feedback)
    /// on the same arbiter, neither is pinned with [`Flow::on_arbiter`], and no
    /// [`Flow::async_boundary`] separates them. Each fused stage keeps its name,
    /// counters, supervision policy (retries, dead letters, breaker, restarts of
    /// that stage), barriers, stall watchdog and place in [`stats`] and the report;
    /// the groups show in [`TopologyNode::fused_group`](crate::TopologyNode::fused_group).
    ///
    /// [`stats`]: crate::Running::stats
    pub fn fusion(mut self, on: bool) -> Self {
        self.settings.fusion = on;
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

    /// Checkpoints the pipeline's state into `config`'s directory (see
    /// `docs/checkpoints.md`): barriers flow with the elements, every checkpointable
    /// stage snapshots its state as a barrier passes, sources record their
    /// positions, and sinks commit when a checkpoint is durable. When the
    /// directory already holds a complete checkpoint, `run` restores every stage
    /// from it and every replayable source resumes where it was.
    ///
    /// `run` fails with [`BuildError::NotCheckpointable`](crate::BuildError::NotCheckpointable)
    /// for a stage a checkpoint cannot make consistent, with
    /// [`BuildError::CheckpointMismatch`](crate::BuildError::CheckpointMismatch)
    /// when the checkpoint found does not fit the pipeline, and with
    /// [`BuildError::CheckpointDir`](crate::BuildError::CheckpointDir) when the
    /// directory cannot be written.
    pub fn checkpoints(mut self, config: crate::checkpoint::CheckpointConfig) -> Self {
        self.settings.checkpoint = Some(config);
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

    /// Applies a policy file to the whole pipeline when it runs: its `strategy`,
    /// `[stages.<name>]` to the stage of that name and `[default]` to every other
    /// stage. See `docs/supervision.md` for every key.
    ///
    /// **The file decides the policy** (so operators change behaviour without a
    /// rebuild): it replaces a policy given in code with [`Flow::supervise`], and
    /// the strategy set with [`strategy`](Self::strategy). **The code decides where
    /// dead letters go**: a stage keeps the dead-letter queue (and jitter seed) its
    /// `Supervision` gave it.
    ///
    /// What applies where:
    /// - a stage whose operator can retry one element (`map`, `filter`, `try_map`,
    ///   `map_async`, `for_each`, …) is supervised by the policy;
    /// - a source, a junction, or an operator that cannot retry one element
    ///   (`chunks`, keyed folds, windows) gets the policy's `stall_timeout_ms`
    ///   only; its failures fail the pipeline, as without a file.
    ///
    /// # Errors
    ///
    /// [`run`](Self::run) returns [`BuildError::UnknownPolicyStage`] for a
    /// `[stages.<name>]` table naming no stage (with the nearest name as a
    /// suggestion), and [`BuildError::PolicyMismatch`] naming the stage when a
    /// policy cannot apply to it: it dead-letters but the stage has no dead-letter
    /// queue, it sets `element_timeout_ms` on a synchronous stage, or a
    /// `[stages.<name>]` table sets how failed elements are handled for a stage that
    /// cannot retry one.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{Flow, Runnable};
    /// use weir_supervisor::policy::PolicyConfig;
    ///
    /// fn configured<R: Send + 'static>(pipeline: Runnable<R>) -> Result<Runnable<R>, Box<dyn std::error::Error>> {
    ///     let config = PolicyConfig::from_toml_str(r#"
    ///         strategy = "one_for_all"
    ///         [default]
    ///         actions = { panic = "retry", on_exhausted = "escalate" }
    ///         stall_timeout_ms = 30_000
    ///     "#)?;
    ///     Ok(pipeline.policies(&config))
    /// }
    /// ```
    pub fn policies(mut self, config: &weir_supervisor::policy::PolicyConfig) -> Self {
        self.settings.policies = Some(config.clone());
        self
    }

    /// Binds `handle` to the running pipeline, so that a policy file changed while
    /// it runs is applied to it: `handle.reconfigure(config)` (or a
    /// `ConfigWatcher` bound to the handle) checks the new file as
    /// [`policies`](Self::policies) checks the first one — names, dead-letter
    /// queues, element timeouts, and that a stage built without drops gets none —
    /// and a rejected file changes nothing: the old policies stay in force. An
    /// accepted one replaces the strategy, every stage's stall timeout and every
    /// supervised stage's policy (between two steps; queues and credit are kept;
    /// backoff, restart intensity and breaker start afresh). Give the first file
    /// with [`policies`](Self::policies) too. One handle serves one pipeline.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::Runnable;
    /// use weir_runtime::reconfig::ConfigHandle;
    /// use weir_supervisor::policy::PolicyConfig;
    ///
    /// fn reloadable<R: Send + 'static>(
    ///     pipeline: Runnable<R>,
    ///     first: &PolicyConfig,
    ///     handle: &ConfigHandle<PolicyConfig>,
    /// ) -> Runnable<R> {
    ///     pipeline.policies(first).policies_handle(handle)
    /// }
    /// ```
    pub fn policies_handle(
        mut self,
        handle: &ConfigHandle<weir_supervisor::policy::PolicyConfig>,
    ) -> Self {
        self.settings.policies_handle = Some(handle.clone());
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
