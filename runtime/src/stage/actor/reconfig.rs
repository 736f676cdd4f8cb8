//! Reconfiguration of a running stage: typed configs for a [`Reconfigurable`]
//! operator, and a new supervision policy. Both arrive as control messages and are
//! applied by the message handler, that is between two steps of the operator,
//! never during one; queues, outbox and credit are left as they are.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::PoisonError;
use std::sync::atomic::Ordering::Relaxed;

use actix::{Handler, Message};

use super::Ctl;
use weir_supervisor::policy::{Backoff, CircuitBreaker, IntensityWindow, SupervisionPolicy};
use weir_supervisor::{ErrorClass, Failure};

use super::{Phase, StageActor};
use crate::operator::Operator;
use crate::reconfig::{Applied, Reconfig, ReconfigError, Reconfigurable};
use crate::stage::shared::StageShared;

/// Re-applies the last applied config to an operator its factory rebuilt.
pub(crate) type Reapply<Op> = Box<dyn Fn(&mut Op) -> Result<(), String> + Send>;

/// A new supervision policy for a supervised stage.
pub(crate) struct SetPolicy {
    pub(crate) policy: SupervisionPolicy,
    pub(crate) reply: crate::reconfig::Reply,
}

impl Message for SetPolicy {
    type Result = ();
}

/// A [`SetPolicy`] for a fused member, sent to its group's actor.
pub(crate) struct MemberSetPolicy {
    pub(crate) index: usize,
    pub(crate) msg: SetPolicy,
}

impl Message for MemberSetPolicy {
    type Result = ();
}

/// Where a supervised stage's new policies go: its actor, or its fused group's.
#[derive(Clone)]
pub(crate) enum PolicyTx {
    Actor(actix::Recipient<SetPolicy>),
    /// Stage `.1`, a member of the group whose actor this is.
    Member(actix::Recipient<MemberSetPolicy>, usize),
}

impl PolicyTx {
    /// Sends the policy. A control message: no elements, no credit (see the
    /// `do_send` audit).
    pub(crate) fn do_send(&self, msg: SetPolicy) {
        match self {
            PolicyTx::Actor(r) => r.do_send(msg),
            PolicyTx::Member(r, index) => r.do_send(MemberSetPolicy { index: *index, msg }),
        }
    }
}

/// Records an applied config in the stage's counters; returns its generation.
pub(crate) fn record(shared: &StageShared, shown: String) -> u64 {
    let generation = shared.config_generation.fetch_add(1, Relaxed) + 1;
    *shared.config.lock().unwrap_or_else(PoisonError::into_inner) = Some(shown);
    generation
}

/// Counts a rejected config and builds the error naming the stage.
pub(crate) fn rejected(shared: &StageShared, reason: String) -> ReconfigError {
    shared.config_rejected.fetch_add(1, Relaxed);
    ReconfigError::Rejected {
        stage: shared.name.clone(),
        reason,
    }
}

impl<Op: Operator> StageActor<Op> {
    /// After the operator was replaced by a fresh one (a supervised restart), applies
    /// the last applied config to it again. A config the fresh operator rejects
    /// fails the stage: running it with its built-in defaults would silently undo
    /// a change the caller was told was applied.
    pub(super) fn reapply_config(&mut self, ctx: &mut Ctl) {
        let Some(reapply) = &self.reapply else {
            return;
        };
        let op = &mut self.op;
        let result = catch_unwind(AssertUnwindSafe(|| reapply(op)));
        let reason = match result {
            Ok(Ok(())) => return,
            Ok(Err(reason)) => reason,
            Err(payload) => Failure::from_panic(payload).message().to_string(),
        };
        let failure = Failure::error(
            ErrorClass::Permanent,
            format!("the restarted operator rejected the config in force: {reason}"),
        );
        self.fail(failure, ctx, true);
    }
}

impl<Op: Reconfigurable> Handler<Reconfig<Op::Config>> for StageActor<Op> {
    type Result = ();

    fn handle(&mut self, msg: Reconfig<Op::Config>, _ctx: &mut Self::Context) {
        let answer = if self.phase == Phase::Stopped {
            Err(ReconfigError::Stopped {
                stage: self.shared.name.clone(),
            })
        } else {
            let op = &mut self.op;
            let config = msg.config;
            match catch_unwind(AssertUnwindSafe(|| op.reconfigure(&config))) {
                Ok(Ok(())) => {
                    let generation = record(&self.shared, format!("{config:?}"));
                    self.reapply = Some(Box::new(move |op: &mut Op| op.reconfigure(&config)));
                    tracing::info!(
                        stage = %self.shared.name,
                        generation,
                        "config applied"
                    );
                    Ok(Applied {
                        stage: self.shared.name.clone(),
                        generation,
                    })
                }
                Ok(Err(reason)) => Err(rejected(&self.shared, reason)),
                Err(payload) => Err(rejected(
                    &self.shared,
                    format!(
                        "the operator panicked in reconfigure: {}",
                        Failure::from_panic(payload).message()
                    ),
                )),
            }
        };
        // The caller may have stopped waiting.
        let _ = msg.reply.send(answer);
    }
}

impl<Op: Operator> Handler<SetPolicy> for StageActor<Op> {
    type Result = ();

    fn handle(&mut self, msg: SetPolicy, _ctx: &mut Self::Context) {
        self.on_set_policy(msg);
    }
}

impl<Op: Operator> Handler<MemberSetPolicy> for StageActor<Op> {
    type Result = ();

    fn handle(&mut self, msg: MemberSetPolicy, _ctx: &mut Self::Context) {
        self.route_policy(msg.index, msg.msg);
    }
}

impl<Op: Operator> StageActor<Op> {
    /// Applies a new supervision policy, answering the caller.
    pub(crate) fn on_set_policy(&mut self, msg: SetPolicy) {
        let answer = if self.phase == Phase::Stopped {
            Err(ReconfigError::Stopped {
                stage: self.shared.name.clone(),
            })
        } else {
            let shown = format!("{:?}", msg.policy);
            match self.replace_policy(msg.policy) {
                Ok(()) => Ok(Applied {
                    stage: self.shared.name.clone(),
                    generation: record(&self.shared, shown),
                }),
                Err(reason) => Err(rejected(&self.shared, reason)),
            }
        };
        let _ = msg.reply.send(answer);
    }
}

impl<Op: Operator> StageActor<Op> {
    /// Swaps the stage's supervision policy, resetting its backoff, restart
    /// intensity and breaker. Rejected (nothing changes) if the policy is invalid,
    /// needs what the stage was not built with (a dead-letter queue, an async
    /// operator for element timeouts), or could drop elements when the one the
    /// graph was validated with could not.
    fn replace_policy(&mut self, policy: SupervisionPolicy) -> Result<(), String> {
        let Some(sup) = self.sup.as_mut() else {
            return Err("the stage is not supervised (Flow::supervise)".into());
        };
        crate::supervision::check_policy(&policy, sup.elementwise, sup.dead_letters.is_some())?;
        if crate::supervision::policy_may_drop(&policy) && !sup.may_drop() {
            return Err(
                "supervision policy: the new policy can drop elements (dead \
                        letters, skip) but the stage was built with one that cannot"
                    .into(),
            );
        }
        let seed = (self.shared.index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        sup.backoff = Backoff::new(policy.backoff, seed);
        sup.restart_backoff = Backoff::new(policy.restart_backoff, seed.rotate_left(17));
        sup.window = IntensityWindow::new(policy.intensity);
        sup.breaker = policy.breaker.map(CircuitBreaker::new);
        sup.policy = policy;
        Ok(())
    }
}
