//! [`Flow`] and [`Runnable`]: the typed pipeline builder.

use std::collections::HashMap;
use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use actix::Recipient;

use super::events::{EVENT_BUFFER, Events};
use super::output::OutputReceiver;
use super::running::Running;
use super::shared::PipelineShared;
use crate::error::BuildError;
use crate::operator::factory::FromFactory;
use crate::operator::{Counting, ElementSupervision, Operator};
use crate::runtime::{Placement, Runtime};
use crate::stage::Unstarted;
use crate::stage::actor::{DownLink, UpLink};
use crate::stage::message::Control;
use crate::stage::shared::{StageShared, StageSpec};
use crate::supervision::{Copies, StageSupervisor, Supervision};

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

static PIPELINE_SEQ: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone)]
struct StageMeta {
    name: Option<String>,
    kind: &'static str,
    counting: Counting,
    capacity: Option<usize>,
    pinned: Option<usize>,
    is_source: bool,
    is_sink: bool,
}

/// What the spawn closures need while wiring stages from the sink back to the source.
struct Wiring<'a> {
    runtime: &'a Runtime,
    pipeline: Arc<PipelineShared>,
    arbiters: Vec<usize>,
    capacities: Vec<usize>,
    controls: Vec<Option<Recipient<Control>>>,
    max_batch: usize,
}

impl Wiring<'_> {
    fn start<Op: Operator>(
        &mut self,
        index: usize,
        unstarted: Unstarted<Op>,
        op: Op,
        upstream: Option<UpLink>,
        downstream: Option<DownLink<Op::Out>>,
        sup: Option<StageSupervisor<Op::In>>,
    ) -> Result<UpLink, BuildError> {
        let shared = Arc::clone(&self.pipeline.stages[index]);
        if let Some(up) = &upstream {
            let _ = shared.upstream.set(Arc::clone(&up.shared));
        }
        let addr = unstarted.addr.clone();
        self.controls[index] = Some(addr.clone().recipient());
        let arbiter = self.runtime.handle(self.arbiters[index]);
        let started = unstarted.start(
            arbiter,
            op,
            Arc::clone(&shared),
            Arc::clone(&self.pipeline),
            upstream,
            downstream,
            self.max_batch,
            sup,
        );
        if !started {
            return Err(BuildError::RuntimeStopped {
                stage: shared.name.clone(),
            });
        }
        Ok(UpLink {
            recipient: addr.recipient(),
            shared,
        })
    }
}

type SpawnFn<T> =
    Box<dyn FnOnce(&mut Wiring<'_>, DownLink<T>) -> Result<UpLink, BuildError> + Send>;
/// Supervision waiting for the next stage, with the element cloner it needs.
type NextSupervision<T> = (Supervision<T>, Copies<T>);
type SpawnSinkFn = Box<dyn FnOnce(&mut Wiring<'_>) -> Result<(), BuildError> + Send>;

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
    stages: Vec<StageMeta>,
    errors: Vec<BuildError>,
    spawn: SpawnFn<T>,
    /// Supervision for the next stage, with the element cloner it needs.
    next: Option<NextSupervision<T>>,
}

impl<T: Send + 'static> std::fmt::Debug for Flow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("stages", &self.stages)
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
        let mut errors = Vec::new();
        let meta = StageMeta::new(&op, true, false);
        check(&op, 0, &mut errors);
        let spawn: SpawnFn<T> = Box::new(move |w: &mut Wiring<'_>, down: DownLink<T>| {
            let unstarted = Unstarted::<Op>::new(0, down.initial_credit);
            w.start(0, unstarted, op, None, Some(down), None)
        });
        Flow {
            stages: vec![meta],
            errors,
            spawn,
            next: None,
        }
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
                self.errors.push(BuildError::InvalidArgument {
                    stage: format!("{kind}#{index}"),
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
    pub fn via<Op>(mut self, mut op: Op) -> Flow<Op::Out>
    where
        Op: Operator<In = T>,
    {
        let index = self.stages.len();
        self.stages.push(StageMeta::new(&op, false, false));
        check(&op, index, &mut self.errors);
        let sup = self.take_supervision(index, &mut op);
        let prev = self.spawn;
        let spawn: SpawnFn<Op::Out> =
            Box::new(move |w: &mut Wiring<'_>, down: DownLink<Op::Out>| {
                let capacity = w.capacities[index];
                let unstarted = Unstarted::<Op>::new(capacity, down.initial_credit);
                let recipient = unstarted.addr.clone().recipient();
                let up = prev(
                    w,
                    DownLink {
                        recipient,
                        initial_credit: capacity,
                    },
                )?;
                w.start(index, unstarted, op, Some(up), Some(down), sup)
            });
        Flow {
            stages: self.stages,
            errors: self.errors,
            spawn,
            next: None,
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
    pub fn to<Op, R>(mut self, mut op: Op, output: OutputReceiver<R>) -> Runnable<R>
    where
        Op: Operator<In = T, Out = Infallible>,
    {
        let index = self.stages.len();
        self.stages.push(StageMeta::new(&op, false, true));
        check(&op, index, &mut self.errors);
        let sup = self.take_supervision(index, &mut op);
        let prev = self.spawn;
        let spawn: SpawnSinkFn = Box::new(move |w: &mut Wiring<'_>| {
            let capacity = w.capacities[index];
            let unstarted = Unstarted::<Op>::new(capacity, 0);
            let recipient = unstarted.addr.clone().recipient();
            let up = prev(
                w,
                DownLink {
                    recipient,
                    initial_credit: capacity,
                },
            )?;
            w.start(index, unstarted, op, Some(up), None, sup).map(drop)
        });
        Runnable {
            stages: self.stages,
            errors: self.errors,
            spawn,
            output,
            name: None,
            default_capacity: DEFAULT_CAPACITY,
            max_batch: usize::MAX,
            placement: Placement::default(),
            events: None,
            stall_timeout: None,
            strategy: weir_supervisor::policy::RestartStrategy::default(),
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
        self.stages
            .last_mut()
            .expect("a flow always has its source")
    }
}

fn check<Op: Operator>(op: &Op, index: usize, errors: &mut Vec<BuildError>) {
    if let Err(message) = op.validate() {
        errors.push(BuildError::InvalidArgument {
            stage: format!("{}#{index}", op.kind()),
            message,
        });
    }
}

impl StageMeta {
    fn new<Op: Operator>(op: &Op, is_source: bool, is_sink: bool) -> Self {
        StageMeta {
            name: None,
            kind: op.kind(),
            counting: op.counting(),
            capacity: None,
            pinned: None,
            is_source,
            is_sink,
        }
    }
}

/// A complete pipeline, from source to sink, ready to [`run`](Self::run). `R` is what
/// the sink hands back when the pipeline completes (`Vec<T>` for `collect`, `()` for
/// `for_each`).
pub struct Runnable<R> {
    stages: Vec<StageMeta>,
    errors: Vec<BuildError>,
    spawn: SpawnSinkFn,
    output: OutputReceiver<R>,
    name: Option<String>,
    default_capacity: usize,
    max_batch: usize,
    placement: Placement,
    events: Option<tokio::sync::broadcast::Sender<weir_supervisor::SupervisionEvent>>,
    stall_timeout: Option<std::time::Duration>,
    strategy: weir_supervisor::policy::RestartStrategy,
}

impl<R> std::fmt::Debug for Runnable<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runnable")
            .field("name", &self.name)
            .field("stages", &self.stages)
            .field("default_capacity", &self.default_capacity)
            .field("max_batch", &self.max_batch)
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static> Runnable<R> {
    /// Names the sink stage (see [`Flow::name`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        if let Some(sink) = self.stages.last_mut() {
            sink.name = Some(name.into());
        }
        self
    }

    /// Sets the sink's input capacity (see [`Flow::capacity`]).
    pub fn capacity(mut self, capacity: usize) -> Self {
        if let Some(sink) = self.stages.last_mut() {
            sink.capacity = Some(capacity);
        }
        self
    }

    /// Subscribes to the pipeline's supervision events before it starts, so that no
    /// event is missed (see [`Events`]).
    pub fn subscribe(&mut self) -> Events {
        let tx = self
            .events
            .get_or_insert_with(|| tokio::sync::broadcast::channel(EVENT_BUFFER).0);
        Events::new(tx.subscribe())
    }

    /// Names the pipeline. Default: `pipeline-N`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Input capacity of every stage whose capacity was not set. Default
    /// [`DEFAULT_CAPACITY`].
    pub fn default_capacity(mut self, capacity: usize) -> Self {
        self.default_capacity = capacity;
        self
    }

    /// Largest batch a stage sends in one message. Default: unlimited, that is, as
    /// large as the receiver's credit. Lower it to bound the time one stage spends on
    /// one batch.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
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
        self.stall_timeout = Some(timeout);
        self
    }

    /// Which stages restart when a supervised stage restarts (OTP's strategies):
    /// `OneForOne` (the default) restarts only that stage, `OneForAll` every stage,
    /// `RestForOne` that stage and everything downstream of it. A sibling is rebuilt
    /// from its factory ([`Flow::via_factory`]) when it holds no element; other
    /// operators keep their state.
    pub fn strategy(mut self, strategy: weir_supervisor::policy::RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Where the stages run. Default [`Placement::Together`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
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
        let pipeline_name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("pipeline-{}", PIPELINE_SEQ.fetch_add(1, Relaxed)));
        let specs = self.resolve(&pipeline_name, runtime)?;
        let capacities = specs.iter().map(|s| s.capacity).collect();
        let stages: Vec<Arc<StageShared>> = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| Arc::new(StageShared::new(i, s)))
            .collect();
        let pinned: Vec<Option<usize>> = self.stages.iter().map(|m| m.pinned).collect();
        let arbiters = runtime.place(self.placement, &pinned);
        let timer = runtime.handle(arbiters[0]).clone();
        let n = stages.len();
        let events = self
            .events
            .unwrap_or_else(|| tokio::sync::broadcast::channel(EVENT_BUFFER).0);
        let (pipeline, done) = PipelineShared::new(
            pipeline_name,
            stages,
            timer,
            events,
            self.stall_timeout,
            self.strategy,
        );
        let mut wiring = Wiring {
            runtime,
            pipeline: Arc::clone(&pipeline),
            arbiters,
            capacities,
            controls: vec![None; n],
            max_batch: self.max_batch,
        };
        let result = (self.spawn)(&mut wiring);
        pipeline.set_controls(wiring.controls.into_iter().flatten().collect());
        if let Err(err) = result {
            pipeline.abort();
            return Err(err);
        }
        Ok(Running::new(pipeline, done, self.output))
    }

    fn resolve(&self, pipeline: &str, runtime: &Runtime) -> Result<Vec<StageSpec>, BuildError> {
        if let Some(err) = self.errors.first() {
            // Errors were recorded with default names; report the final name.
            let err = match err.clone() {
                BuildError::InvalidArgument { stage, message } => BuildError::InvalidArgument {
                    stage: self.rename(&stage),
                    message,
                },
                other => other,
            };
            return Err(err);
        }
        if self.max_batch == 0 {
            return Err(BuildError::ZeroBatchLimit {
                pipeline: pipeline.to_owned(),
            });
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut specs = Vec::with_capacity(self.stages.len());
        for (index, meta) in self.stages.iter().enumerate() {
            let name = meta
                .name
                .clone()
                .unwrap_or_else(|| default_name(meta.kind, index));
            if name.is_empty() {
                return Err(BuildError::EmptyStageName { index });
            }
            if let Some(&first) = seen.get(&name) {
                return Err(BuildError::DuplicateStageName {
                    name,
                    first,
                    second: index,
                });
            }
            seen.insert(name.clone(), index);
            let capacity = if meta.is_source {
                if meta.capacity.is_some() {
                    return Err(BuildError::CapacityOnSource { stage: name });
                }
                0
            } else {
                let capacity = meta.capacity.unwrap_or(self.default_capacity);
                if capacity == 0 {
                    return Err(BuildError::ZeroCapacity { stage: name });
                }
                capacity
            };
            if let Some(arbiter) = meta.pinned
                && arbiter >= runtime.arbiters()
            {
                return Err(BuildError::NoSuchArbiter {
                    stage: name,
                    arbiter,
                    available: runtime.arbiters(),
                });
            }
            specs.push(StageSpec {
                name,
                kind: meta.kind,
                capacity,
                counting: meta.counting,
                is_source: meta.is_source,
                is_sink: meta.is_sink,
            });
        }
        Ok(specs)
    }

    /// Maps a default name (`kind#index`) to the name the stage finally has.
    fn rename(&self, default: &str) -> String {
        self.stages
            .iter()
            .enumerate()
            .find(|(i, m)| default_name(m.kind, *i) == default)
            .and_then(|(_, m)| m.name.clone())
            .unwrap_or_else(|| default.to_owned())
    }
}

fn default_name(kind: &str, index: usize) -> String {
    format!("{kind}#{index}")
}
