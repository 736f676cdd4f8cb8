//! The stall watchdog: reports a stage that holds input it could process but makes
//! no progress. A child of `actor`, so it sees the stage's fields.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::task;

use weir_supervisor::SupervisionEvent;

use super::supervise::supervision_now;
use super::{Phase, StageActor};
use crate::operator::Operator;

impl<Op: Operator> StageActor<Op> {
    /// The stall watchdog: a stage that holds input it could process (it has
    /// credit, or is a sink) and has made no progress for its stall timeout is
    /// reported once, and flagged in stats until it moves again.
    pub(super) fn watch(&mut self, cx: &mut task::Context<'_>) {
        let Some(timeout) = self.stall_timeout() else {
            return;
        };
        let holding = !self.inq.is_empty() || self.op_held() > 0;
        let could_work = self.downstream.is_none() || self.credit > 0;
        let waiting = self.sup.as_ref().is_some_and(|s| s.resume.is_some());
        if !holding || !could_work || waiting || self.phase == Phase::Stopped {
            // Idle, backpressured, or deliberately waiting: not stalled.
            self.last_progress = supervision_now();
            self.stall_timer = None;
            return;
        }
        let now = supervision_now();
        let due = self.last_progress + timeout;
        if now >= due {
            if !self.stalled {
                self.stalled = true;
                self.shared.stalled.store(true, Relaxed);
                self.pipeline.publish(SupervisionEvent::StageStalled {
                    pipeline: self.pipeline.name.clone(),
                    stage: self.shared.name.clone(),
                    idle_for: now - self.last_progress,
                });
            }
            self.stall_timer = None;
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

    /// The stall timeout in force: a policy file's, else the stage's
    /// supervision's, else the pipeline's.
    fn stall_timeout(&self) -> Option<std::time::Duration> {
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
