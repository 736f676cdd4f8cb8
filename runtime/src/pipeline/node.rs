//! Type-erased graph nodes: a stage or a junction waiting to be wired and started.
//!
//! Wiring happens in three passes over the graph: every node creates its mailbox
//! (so that every address exists), then every edge hands the receiver's typed sender
//! to the sender and the sender's credit channel to the receiver, then every node
//! starts. The typed handles of [`Graph`](super::Graph) guarantee that the sender a
//! node receives has its output type; the downcast checks it once more.

use std::any::Any;
use std::sync::Arc;

use actix::{Addr, Recipient};
use actix_rt::ArbiterHandle;

use crate::checkpoint::{RestoreContext, Snapshot, StateError};
use crate::junction::Junction;
use crate::junction::actor::{JunctionActor, UnstartedJunction};
use crate::operator::Operator;
use crate::pipeline::shared::PipelineShared;
use crate::stage::Unstarted;
use crate::stage::actor::StageActor;
use crate::stage::actor::reconfig::{MemberSetPolicy, SetPolicy};
use crate::stage::fused::{FusedOut, FusedUp, MemberControl};
use crate::stage::link::{DownLink, DownTx, UpLink, UpTx};
use crate::stage::message::Control;
use crate::stage::shared::StageShared;
use crate::supervision::{Copies, StageSupervisor, Supervision};
use weir_supervisor::policy::SupervisionPolicy;

/// What a node needs to start.
pub(crate) struct Start<'a> {
    pub(crate) arbiter: &'a ArbiterHandle,
    pub(crate) shared: Arc<StageShared>,
    pub(crate) pipeline: Arc<PipelineShared>,
    pub(crate) max_batch: usize,
}

/// A sender into one input port, of that port's element type.
pub(crate) type AnyDownTx = Box<dyn Any + Send>;

/// A fused member (a `FusedOut<T>`), for the stage before it, whose output is `T`.
pub(crate) type AnyTail = Box<dyn Any + Send>;

pub(crate) trait Node: Send {
    /// Creates the mailbox. `input` and `output` are the total capacities of the
    /// node's input edges and of the edges it feeds.
    fn prepare(&mut self, input: usize, output: usize);
    /// The typed sender for input `port` (a `DownTx<In>` in a box).
    fn down_tx(&self, port: usize) -> AnyDownTx;
    /// The credit channel for output `port`.
    fn up_tx(&self, port: usize) -> UpTx;
    fn set_output(&mut self, port: usize, tx: AnyDownTx, credit: usize);
    fn set_input(&mut self, port: usize, up: UpLink);
    fn control(&self) -> Recipient<Control>;
    /// Whether the stage may run as a member of the fused group of the stage
    /// before it: a stage with one input whose operator fuses
    /// ([`Operator::fusable`]), with no handle bound to its actor.
    fn fusable(&self) -> bool {
        false
    }
    /// Where control messages for the fused members of this node's group go
    /// (after `prepare`; a stage only).
    fn member_controls(&self) -> Option<Recipient<MemberControl>> {
        None
    }
    /// Where new policies for the supervised fused members of this node's group
    /// go (after `prepare`; a stage only).
    fn member_policies(&self) -> Option<Recipient<MemberSetPolicy>> {
        None
    }
    /// Makes `tail` (a `FusedOut` of the node's output type, in a box) the node's
    /// output: the first member of its fused group. A stage only.
    fn set_fused_output(&mut self, tail: AnyTail) {
        let _ = tail;
        unreachable!("only a stage leads a fused group");
    }
    /// Builds the stage as a fused member (instead of starting it): a `FusedOut`
    /// of its input type, in a box, to give the stage before it. A stage only.
    fn into_member(self: Box<Self>, start: Start<'_>, up: Arc<FusedUp>) -> AnyTail {
        let _ = (start, up);
        unreachable!("only a stage fuses");
    }
    /// Starts the actor. False if the arbiter has stopped.
    fn start(self: Box<Self>, start: Start<'_>) -> bool;
    /// Whether the stage's supervision can drop an element (dead letter, skip).
    fn may_drop(&self) -> bool {
        false
    }
    /// Whether the stage's operator can take an input and produce nothing.
    fn may_filter(&self) -> bool {
        false
    }
    /// Whether a failure in the branch feeding one of the junction's inputs only
    /// ends that input.
    fn contains_input_failures(&self) -> bool {
        false
    }
    /// Supervises the stage with `policy` from a policy file (see
    /// [`Runnable::policies`](crate::Runnable::policies)), keeping the dead-letter
    /// queue and seed given in code.
    fn apply_policy(&mut self, _policy: &SupervisionPolicy, _index: usize) -> PolicyFit {
        PolicyFit::Unsupervisable(None)
    }
    /// Where a new supervision policy goes while the stage runs, if it is
    /// supervised (after `prepare`).
    fn policy_setter(&self) -> Option<Recipient<SetPolicy>> {
        None
    }
    /// A summary of the stage's supervision, if it is supervised (for its
    /// [`Topology`](super::Topology)).
    fn supervision(&self) -> Option<super::topology::SupervisionSummary> {
        None
    }
    /// Adds a hook run with the node's counters when it starts (binds a
    /// [`ConfigHandle`](crate::reconfig::ConfigHandle) that is not a message to the
    /// actor, like a pool's size).
    fn on_start(&mut self, hook: StartHook);
    /// What a checkpoint makes of the node.
    fn checkpoint_kind(&mut self) -> NodeState;
    /// The largest element the stage lets through, if it bounds it
    /// ([`Operator::max_element_bytes`](crate::operator::Operator::max_element_bytes)).
    fn max_element_bytes(&self) -> Option<u64> {
        None
    }
    /// The dead-letter file the stage's supervision writes to, if any.
    fn dead_letter_file(&self) -> Option<weir_supervisor::dead_letter::DlqOrder> {
        None
    }
    /// Restores the node's state from a checkpoint, before it starts.
    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError>;
}

/// What a checkpoint makes of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// It keeps nothing a checkpoint needs.
    Stateless,
    /// It is checkpointable.
    Stateful,
    /// It cannot take part in a checkpoint (the reason).
    Not(String),
}

fn restore_into(
    state: Option<&mut dyn crate::checkpoint::Checkpointable>,
    snapshot: &Snapshot,
    ctx: &RestoreContext,
) -> Result<(), StateError> {
    match state {
        Some(state) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            state.restore(snapshot, ctx)
        }))
        .unwrap_or_else(|payload| {
            Err(StateError::Decode(format!(
                "restore panicked: {}",
                weir_supervisor::Failure::from_panic(payload)
            )))
        }),
        None => Err(StateError::Shape("the stage keeps no state".into())),
    }
}

/// What a node made of a policy from a policy file.
#[derive(Debug)]
pub(crate) enum PolicyFit {
    /// The stage is supervised by it.
    Supervised {
        /// Its operator handles its elements' failures itself (an async one).
        elementwise: bool,
        /// It has a dead-letter queue.
        dead_letters: bool,
    },
    /// A junction (`None`), or an operator that cannot retry one element (the
    /// reason): only the stall settings apply.
    Unsupervisable(Option<String>),
    /// The elements were not declared `Clone` (`Flow::cloneable`).
    NoCopies,
    /// The policy does not fit the stage (the reason).
    Invalid(String),
}

/// Run with a node's counters when it starts.
pub(crate) type StartHook = Box<dyn FnOnce(&Arc<StageShared>) + Send>;

fn downcast<T: Send + 'static>(tx: AnyDownTx) -> DownTx<T> {
    // Cannot fail: edges are made from typed `Outlet<T>`/`Inlet<T>` pairs, so the
    // sender a node receives always carries its element type.
    *tx.downcast::<DownTx<T>>()
        .expect("typed ports connect matching element types")
}

/// Binds a handle (a [`ConfigHandle`](crate::reconfig::ConfigHandle)) to the stage's
/// address and name when the stage starts.
pub(crate) type Binder<Op> = Box<dyn FnOnce(&Addr<StageActor<Op>>, &str) + Send>;

/// A stage: one operator, at most one input and one output.
pub(crate) struct StageNode<Op: Operator> {
    op: Op,
    sup: Option<StageSupervisor<Op::In>>,
    /// How to copy the input elements, if they are known to be `Clone`.
    copies: Option<Copies<Op::In>>,
    /// The supervision given in code, whose dead letters and seed a policy file
    /// keeps.
    code: Option<Supervision<Op::In>>,
    binders: Vec<Binder<Op>>,
    hooks: Vec<StartHook>,
    unstarted: Option<Unstarted<Op>>,
    up: Option<UpLink>,
    down: Option<DownLink<Op::Out>>,
    /// The fused member this stage feeds, if its output is fused.
    tail: Option<FusedOut<Op::Out>>,
}

impl<Op: Operator> StageNode<Op> {
    pub(crate) fn new(op: Op, sup: Option<StageSupervisor<Op::In>>) -> Self {
        Self::bound(op, sup, Vec::new())
    }

    /// A stage whose handles `binders` bind when it starts.
    pub(crate) fn bound(
        op: Op,
        sup: Option<StageSupervisor<Op::In>>,
        binders: Vec<Binder<Op>>,
    ) -> Self {
        StageNode {
            op,
            sup,
            copies: None,
            code: None,
            binders,
            hooks: Vec::new(),
            unstarted: None,
            up: None,
            down: None,
            tail: None,
        }
    }

    /// Records what a policy file needs to supervise the stage later.
    pub(crate) fn supervisable(
        mut self,
        copies: Option<Copies<Op::In>>,
        code: Option<Supervision<Op::In>>,
    ) -> Self {
        self.copies = copies;
        self.code = code;
        self
    }

    fn addr(&self) -> &Addr<StageActor<Op>> {
        &self
            .unstarted
            .as_ref()
            .expect("a node is prepared before it is wired")
            .addr
    }
}

impl<Op: Operator> Node for StageNode<Op> {
    fn max_element_bytes(&self) -> Option<u64> {
        self.op.max_element_bytes()
    }

    fn dead_letter_file(&self) -> Option<weir_supervisor::dead_letter::DlqOrder> {
        self.sup.as_ref()?.dead_letters.as_ref()?.ordered_file()
    }

    fn supervision(&self) -> Option<super::topology::SupervisionSummary> {
        self.sup.as_ref().map(|sup| {
            super::topology::SupervisionSummary::of(&sup.policy, sup.dead_letters.is_some())
        })
    }

    fn checkpoint_kind(&mut self) -> NodeState {
        if let Some(reason) = self.op.not_checkpointable() {
            NodeState::Not(reason)
        } else if self.op.checkpoint().is_some() {
            NodeState::Stateful
        } else {
            NodeState::Stateless
        }
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        restore_into(self.op.checkpoint(), snapshot, ctx)
    }

    fn policy_setter(&self) -> Option<Recipient<SetPolicy>> {
        self.sup
            .as_ref()
            .map(|_| self.addr().clone().recipient::<SetPolicy>())
    }

    fn apply_policy(&mut self, policy: &SupervisionPolicy, index: usize) -> PolicyFit {
        let Some(copies) = self.copies else {
            return if self.op.retry_safe() {
                PolicyFit::NoCopies
            } else {
                PolicyFit::Unsupervisable(Some(format!(
                    "{} (or its elements were not declared Clone: Flow::cloneable)",
                    super::flow::unsupervisable(self.op.kind())
                )))
            };
        };
        let mut supervision = self
            .code
            .clone()
            .unwrap_or_else(|| Supervision::new(policy.clone()));
        supervision.policy = policy.clone();
        let dead_letters = supervision.dead_letters.is_some();
        match super::flow::supervisor_for(supervision, copies, index, &mut self.op) {
            Ok(sup) => {
                let elementwise = sup.elementwise;
                self.sup = Some(sup);
                PolicyFit::Supervised {
                    elementwise,
                    dead_letters,
                }
            }
            Err(super::flow::Unfit::Unsupervisable(reason)) => {
                PolicyFit::Unsupervisable(Some(reason))
            }
            Err(super::flow::Unfit::Invalid(message)) => PolicyFit::Invalid(message),
        }
    }

    fn on_start(&mut self, hook: StartHook) {
        self.hooks.push(hook);
    }

    fn may_drop(&self) -> bool {
        self.sup.as_ref().is_some_and(StageSupervisor::may_drop)
    }

    fn may_filter(&self) -> bool {
        self.op.may_filter()
    }

    fn prepare(&mut self, input: usize, output: usize) {
        self.unstarted = Some(Unstarted::new(input, output));
    }

    fn down_tx(&self, _port: usize) -> AnyDownTx {
        Box::new(DownTx::<Op::In>::Stage(self.addr().clone().recipient()))
    }

    fn up_tx(&self, _port: usize) -> UpTx {
        UpTx::Stage(self.addr().clone().recipient())
    }

    fn set_output(&mut self, _port: usize, tx: AnyDownTx, credit: usize) {
        self.down = Some(DownLink {
            tx: downcast(tx),
            initial_credit: credit,
        });
    }

    fn set_input(&mut self, _port: usize, up: UpLink) {
        self.up = Some(up);
    }

    fn control(&self) -> Recipient<Control> {
        self.addr().clone().recipient()
    }

    fn fusable(&self) -> bool {
        // A stage whose operator handles its elements' failures itself is async:
        // it does not fuse (and such an operator never says it does).
        self.op.fusable()
            && self.binders.is_empty()
            && !self.sup.as_ref().is_some_and(|sup| sup.elementwise)
    }

    fn member_controls(&self) -> Option<Recipient<MemberControl>> {
        Some(self.addr().clone().recipient())
    }

    fn member_policies(&self) -> Option<Recipient<MemberSetPolicy>> {
        Some(self.addr().clone().recipient())
    }

    fn set_fused_output(&mut self, tail: AnyTail) {
        // Cannot fail: the fused pass pairs each stage with the one it feeds.
        let tail = *tail
            .downcast::<FusedOut<Op::Out>>()
            .expect("a fused member takes its predecessor's output type");
        self.tail = Some(tail);
    }

    fn into_member(self: Box<Self>, s: Start<'_>, up: Arc<FusedUp>) -> AnyTail {
        let this = *self;
        for hook in this.hooks {
            hook(&s.shared);
        }
        let mut member = StageActor::new(
            this.op,
            s.shared,
            s.pipeline,
            this.up,
            this.down,
            s.max_batch,
            this.sup,
        );
        if let Some(tail) = this.tail {
            member.fuse(tail);
        }
        Box::new(FusedOut::<Op::In> {
            tail: Box::new(member),
            up,
        })
    }

    fn start(self: Box<Self>, s: Start<'_>) -> bool {
        let this = *self;
        let unstarted = this.unstarted.expect("a node is prepared before it starts");
        for bind in this.binders {
            bind(&unstarted.addr, &s.shared.name);
        }
        for hook in this.hooks {
            hook(&s.shared);
        }
        unstarted.start(
            s.arbiter,
            this.op,
            s.shared,
            s.pipeline,
            this.up,
            this.down,
            s.max_batch,
            this.sup,
            this.tail,
        )
    }
}

/// Builds the sender for one input port of a junction.
pub(crate) type InletFn<J> = fn(&Addr<JunctionActor<J>>, usize) -> AnyDownTx;

/// The sender for an input port whose elements are the junction's own.
pub(crate) fn plain_inlet<J: Junction>(addr: &Addr<JunctionActor<J>>, port: usize) -> AnyDownTx {
    Box::new(DownTx::<J::In>::Port(addr.clone().recipient(), port))
}

/// A junction: several inputs or outputs.
pub(crate) struct JunctionNode<J: Junction> {
    junction: J,
    inlets: Vec<InletFn<J>>,
    unstarted: Option<UnstartedJunction<J>>,
    ups: Vec<Option<UpLink>>,
    downs: Vec<Option<DownLink<J::Out>>>,
    hooks: Vec<StartHook>,
    /// Per input: the queue a restored checkpoint held (see
    /// [`Junction::queue_codec`]).
    restored: Vec<Vec<J::In>>,
}

impl<J: Junction> JunctionNode<J> {
    pub(crate) fn new(junction: J, inlets: Vec<InletFn<J>>, outputs: usize) -> Self {
        let inputs = inlets.len();
        JunctionNode {
            junction,
            inlets,
            unstarted: None,
            ups: (0..inputs).map(|_| None).collect(),
            downs: (0..outputs).map(|_| None).collect(),
            hooks: Vec::new(),
            restored: Vec::new(),
        }
    }

    fn addr(&self) -> &Addr<JunctionActor<J>> {
        &self
            .unstarted
            .as_ref()
            .expect("a node is prepared before it is wired")
            .addr
    }
}

impl<J: Junction> Node for JunctionNode<J> {
    fn checkpoint_kind(&mut self) -> NodeState {
        if let Some(reason) = self.junction.not_checkpointable() {
            NodeState::Not(reason)
        } else if self.junction.checkpoint().is_some() || self.junction.queue_codec().is_some() {
            NodeState::Stateful
        } else {
            NodeState::Stateless
        }
    }

    fn restore(&mut self, snapshot: &Snapshot, ctx: &RestoreContext) -> Result<(), StateError> {
        let Some(codec) = self.junction.queue_codec() else {
            return restore_into(self.junction.checkpoint(), snapshot, ctx);
        };
        let (own, queues) = codec.restore(snapshot, self.inlets.len(), ctx)?;
        match (own, self.junction.checkpoint().is_some()) {
            (Some(own), true) => restore_into(self.junction.checkpoint(), &own, ctx)?,
            (None, false) => {}
            (Some(_), false) => {
                return Err(StateError::Shape(
                    "the checkpoint holds state for this junction, which keeps none".into(),
                ));
            }
            (None, true) => {
                return Err(StateError::Shape(
                    "the checkpoint holds no state for this junction's own".into(),
                ));
            }
        }
        self.restored = queues;
        Ok(())
    }

    fn on_start(&mut self, hook: StartHook) {
        self.hooks.push(hook);
    }

    fn contains_input_failures(&self) -> bool {
        self.junction.contains_input_failures()
    }

    fn prepare(&mut self, input: usize, output: usize) {
        let ports = self.ups.len() + self.downs.len();
        self.unstarted = Some(UnstartedJunction::new(input, output, ports));
    }

    fn down_tx(&self, port: usize) -> AnyDownTx {
        (self.inlets[port])(self.addr(), port)
    }

    fn up_tx(&self, port: usize) -> UpTx {
        UpTx::Port(self.addr().clone().recipient(), port)
    }

    fn set_output(&mut self, port: usize, tx: AnyDownTx, credit: usize) {
        self.downs[port] = Some(DownLink {
            tx: downcast(tx),
            initial_credit: credit,
        });
    }

    fn set_input(&mut self, port: usize, up: UpLink) {
        self.ups[port] = Some(up);
    }

    fn control(&self) -> Recipient<Control> {
        self.addr().clone().recipient()
    }

    fn start(self: Box<Self>, s: Start<'_>) -> bool {
        let this = *self;
        let unstarted = this.unstarted.expect("a node is prepared before it starts");
        for hook in this.hooks {
            hook(&s.shared);
        }
        unstarted.start(
            s.arbiter,
            this.junction,
            s.shared,
            s.pipeline,
            this.ups,
            this.downs,
            s.max_batch,
            this.restored,
        )
    }
}
