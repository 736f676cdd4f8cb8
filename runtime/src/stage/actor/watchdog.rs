//! The stall watchdog: a stage that holds input it could process but makes no
//! progress is reported and acted on (`on_stall`: report, restart, fail). A stage
//! stuck *inside* a step, in synchronous user code, is seen from outside its
//! thread by the stall monitor (`stage::monitor`), which asks for the restart this
//! module performs when the step returns. A child of `actor`, so it sees the
//! stage's fields.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::Relaxed;
use std::task;

use super::Ctl;
use weir_supervisor::policy::StallAction;
use weir_supervisor::{ErrorClass, Failure, SupervisionEvent};

use super::supervise::{Restarted, restart_counting_state, supervision_now};
use super::{Phase, StageActor};
use crate::operator::Operator;

impl<Op: Operator> StageActor<Op> {
    /// The stall watchdog: a stage that holds input it could process (it has
    /// credit, or is a sink) and has made no progress for its stall timeout is
    /// reported once, and flagged in stats until it moves again.
    pub(super) fn watch(&mut self, ctx: &mut Ctl, cx: &mut task::Context<'_>) {
        let Some(timeout) = self.stall_timeout() else {
            return;
        };
        let holding = !self.inq.is_empty() || self.op_held() > 0;
        let could_work = self.downstream.is_none() || self.credit.get() > 0;
        // A source paused by its controller holds what it was given (an
        // ingress's channel) on purpose.
        let waiting = self.sup.as_ref().is_some_and(|s| s.resume.is_some())
            || (self.is_source() && self.shared.paused.load(Relaxed));
        if !holding || !could_work || waiting || self.phase == Phase::Stopped {
            // Idle, backpressured, or deliberately waiting: not stalled.
            self.last_progress = supervision_now();
            self.stall_timer = None;
            return;
        }
        let now = supervision_now();
        let due = self.last_progress + timeout;
        if now >= due {
            self.stall_timer = None;
            if self.stalled {
                return;
            }
            let idle_for = now - self.last_progress;
            self.stalled = true;
            self.shared.stalled.store(true, Relaxed);
            self.pipeline.publish(SupervisionEvent::StageStalled {
                pipeline: self.pipeline.name.clone(),
                stage: self.shared.name.clone(),
                idle_for,
            });
            match self.stall_action() {
                StallAction::Fail => {
                    let failure = Failure::error(
                        ErrorClass::Timeout,
                        format!("stalled: no progress for {idle_for:?} (on_stall = \"fail\")"),
                    );
                    self.fail(failure, ctx, true);
                }
                StallAction::Restart => {
                    let held = self.op_held();
                    if held > 0 {
                        let reason = format!(
                            "stalled for {idle_for:?} holding {held} element(s) in flight; a \
                             restart would lose them (on_stall = \"restart\"; bound each \
                             element with element_timeout_ms instead)"
                        );
                        self.escalate(
                            Failure::error(ErrorClass::Timeout, reason.clone()),
                            reason,
                            ctx,
                        );
                    } else if self.stall_restart(ctx) {
                        // Restarted: poll the stage again to go on with its queue.
                        cx.waker().wake_by_ref();
                    }
                }
                _ => {}
            }
            return;
        }
        let timer = self.stall_timer.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                due,
            )))
        });
        timer.as_mut().reset(tokio::time::Instant::from_std(due));
        // Registers the waker: the stage is polled again when the timeout is due.
        let _ = timer.as_mut().poll(cx);
    }

    /// The stall action in force: a policy file's, else the stage's
    /// supervision's, else report.
    pub(super) fn stall_action(&self) -> StallAction {
        self.shared
            .on_stall_override()
            .or_else(|| self.sup.as_ref().map(|s| s.policy.on_stall))
            .unwrap_or_default()
    }

    /// Restarts the stage after a stall (`on_stall = "restart"`): a fresh operator
    /// from its factory, counted against the restart intensity like any restart,
    /// and the strategy's siblings with it. An unsupervised stage is only
    /// reported. Returns false when the stage escalated (intensity exceeded) or
    /// failed.
    pub(super) fn stall_restart(&mut self, ctx: &mut Ctl) -> bool {
        if self.phase == Phase::Stopped {
            return false;
        }
        let Some(sup) = self.sup.as_mut() else {
            return true;
        };
        let now = supervision_now();
        if !sup.allow_restart(now) {
            let intensity = sup.policy.intensity;
            let reason = format!(
                "restart intensity exceeded: more than {} restarts within {:?}; last: stalled \
                 (on_stall = \"restart\")",
                intensity.max_restarts, intensity.within
            );
            return self.escalate(
                Failure::error(ErrorClass::Timeout, reason.clone()),
                reason,
                ctx,
            );
        }
        let restarts = sup.window.restarts(now);
        let op = &mut self.op;
        match catch_unwind(AssertUnwindSafe(|| {
            restart_counting_state(op, &self.shared, &self.pipeline)
        })) {
            Err(_) => {
                let failure = Failure::error(
                    ErrorClass::Panic,
                    "the operator's factory panicked while restarting after a stall",
                );
                self.fail(failure, ctx, true);
                return false;
            }
            Ok(Restarted::RollBack(reason)) => {
                let reason = format!("{reason}; it had stalled (on_stall = \"restart\")");
                return self.escalate(
                    Failure::error(ErrorClass::Timeout, reason.clone()),
                    reason,
                    ctx,
                );
            }
            Ok(Restarted::Replaced | Restarted::Kept) => {}
        }
        self.reapply_config(ctx);
        if self.phase == Phase::Stopped {
            return false;
        }
        self.shared.restarts.fetch_add(1, Relaxed);
        self.pipeline.restart_siblings(self.shared.index);
        self.pipeline.publish(SupervisionEvent::StageRestarted {
            pipeline: self.pipeline.name.clone(),
            stage: self.shared.name.clone(),
            restarts,
            delay: std::time::Duration::ZERO,
        });
        tracing::warn!(
            pipeline = %self.pipeline.name,
            stage = %self.shared.name,
            "stage restarted after a stall"
        );
        self.last_progress = now;
        true
    }

    /// The stall timeout in force: a policy file's, else the stage's
    /// supervision's, else the pipeline's.
    pub(super) fn stall_timeout(&self) -> Option<std::time::Duration> {
        self.shared
            .stall_override()
            .or_else(|| self.sup.as_ref().and_then(|s| s.policy.stall_timeout))
            .or(self.pipeline.stall_timeout)
    }

    /// Records progress for the watchdog.
    pub(super) fn progressed(&mut self) {
        if self.stall_timeout().is_some() {
            self.last_progress = supervision_now();
            if self.stalled {
                self.stalled = false;
                self.shared.stalled.store(false, Relaxed);
            }
        }
    }
}
