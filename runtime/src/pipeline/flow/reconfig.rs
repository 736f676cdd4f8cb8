//! The builder side of hot reconfiguration: stages bound to a [`ConfigHandle`].

use weir_supervisor::policy::SupervisionPolicy;

use super::Flow;
use crate::operator::Operator;
use crate::operator::factory::FromFactory;
use crate::pipeline::node::Binder;
use crate::pipeline::parts::{Parts, Pending};
use crate::reconfig::{ConfigHandle, Reconfig, Reconfigurable};
use crate::stage::actor::reconfig::SetPolicy;

/// Claims `handle` for the stage at `index`, recording a build error if another
/// stage has it already.
fn claim<C: Clone + Send + 'static>(handle: &ConfigHandle<C>, index: usize, parts: &mut Parts) {
    if !handle.attach() {
        parts.errors.push(Pending::Argument {
            node: index,
            message: "this config handle is already attached to another stage (one handle \
                      per stage)"
                .into(),
        });
    }
}

/// Binds `handle` to the stage running `Op` when it starts.
pub(super) fn config_binder<Op: Reconfigurable>(
    handle: &ConfigHandle<Op::Config>,
    index: usize,
    parts: &mut Parts,
) -> Binder<Op> {
    claim(handle, index, parts);
    let handle = handle.clone();
    Box::new(move |addr, name| {
        let recipient = addr.clone().recipient::<Reconfig<Op::Config>>();
        handle.bind(
            name.to_owned(),
            // A control message: it needs no credit, and a stopped stage drops it
            // (and with it the reply channel, which the caller sees as `Stopped`).
            Box::new(move |config, reply| recipient.do_send(Reconfig { config, reply })),
        );
    })
}

/// Binds a policy handle to the supervised stage running `Op` when it starts.
pub(super) fn policy_binder<Op: Operator>(
    handle: &ConfigHandle<SupervisionPolicy>,
    index: usize,
    parts: &mut Parts,
) -> Binder<Op> {
    claim(handle, index, parts);
    let handle = handle.clone();
    Box::new(move |addr, name| {
        let recipient = addr.clone().recipient::<SetPolicy>();
        handle.bind(
            name.to_owned(),
            // A control message like `Reconfig` above: no elements, no credit.
            Box::new(move |policy, reply| recipient.do_send(SetPolicy { policy, reply })),
        );
    })
}

impl<T: Send + 'static> Flow<T> {
    /// Adds a stage running `op`, whose config `handle` changes while the pipeline
    /// runs (see [`reconfig`](crate::reconfig)). A handle serves one stage: giving it
    /// to a second one is a build error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::task::Context;
    /// use weir_runtime::operator::{Io, Operator, Step};
    /// use weir_runtime::reconfig::{ConfigHandle, Reconfigurable};
    /// use weir_runtime::Flow;
    ///
    /// struct Scale(u64);
    /// impl Operator for Scale {
    ///     type In = u64;
    ///     type Out = u64;
    ///     fn kind(&self) -> &'static str { "scale" }
    ///     fn step(&mut self, io: &mut Io<'_, u64, u64>, _: &mut Context<'_>) -> Step {
    ///         while io.has_room() {
    ///             let Some(x) = io.pop() else { break };
    ///             io.push(x * self.0);
    ///         }
    ///         io.finish_when_drained()
    ///     }
    /// }
    /// impl Reconfigurable for Scale {
    ///     type Config = u64;
    ///     fn reconfigure(&mut self, k: &u64) -> Result<(), String> {
    ///         self.0 = *k;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// fn scaled(flow: Flow<u64>, handle: &ConfigHandle<u64>) -> Flow<u64> {
    ///     flow.via_reconfigurable(Scale(1), handle)
    /// }
    /// ```
    pub fn via_reconfigurable<Op>(
        mut self,
        op: Op,
        handle: &ConfigHandle<Op::Config>,
    ) -> Flow<Op::Out>
    where
        Op: Reconfigurable<In = T>,
    {
        let index = self.parts.len();
        let binder = config_binder::<Op>(handle, index, &mut self.parts);
        let node = self.push_stage_bound(op, 1, vec![binder]);
        self.retyped(node)
    }

    /// [`via_factory`](Self::via_factory) for a reconfigurable operator: a stage
    /// restarted by its supervision gets a fresh operator from `factory`, and the
    /// last config applied through `handle` is applied to it before it takes the
    /// next element.
    pub fn via_factory_reconfigurable<Op, F>(
        self,
        factory: F,
        handle: &ConfigHandle<Op::Config>,
    ) -> Flow<Op::Out>
    where
        Op: Reconfigurable<In = T>,
        F: Fn() -> Op + Send + 'static,
    {
        self.via_reconfigurable(FromFactory::new(factory), handle)
    }

    /// Lets `handle` replace the supervision policy of the **next** stage (which
    /// must be supervised: call it after [`supervise`](Self::supervise)) while the
    /// pipeline runs. A new policy resets the stage's backoff, restart intensity and
    /// circuit breaker. It is rejected, and the old one kept, if it is invalid,
    /// dead-letters without a dead-letter queue, sets an element timeout on a
    /// synchronous operator, or can drop elements when the policy the stage was
    /// built with could not.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_runtime::{Flow, Supervision};
    /// use weir_runtime::reconfig::ConfigHandle;
    /// use weir_supervisor::policy::SupervisionPolicy;
    ///
    /// fn supervised<T: Clone + Send + 'static>(
    ///     flow: Flow<T>,
    ///     policy: &ConfigHandle<SupervisionPolicy>,
    /// ) -> Flow<T> {
    ///     flow.supervise(Supervision::new(SupervisionPolicy::default()))
    ///         .policy_handle(policy)
    /// }
    /// ```
    pub fn policy_handle(mut self, handle: &ConfigHandle<SupervisionPolicy>) -> Self {
        self.next_policy = Some(handle.clone());
        self
    }

    /// The flow with `node` as its tail, typed by its output.
    fn retyped<U: Send + 'static>(self, node: usize) -> Flow<U> {
        Flow {
            parts: self.parts,
            tail: Some(super::PortRef { node, port: 0 }),
            entry: self.entry,
            next: None,
            copies: None,
            next_policy: None,
            _t: std::marker::PhantomData,
        }
    }
}
