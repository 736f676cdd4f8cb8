//! How a supervised stage handles a failure: the policy's decision (retry,
//! restart, dead-letter, skip, escalate), restart strategies, and the circuit
//! breaker. A child of `actor`, so it sees the stage's fields.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

use super::Ctl;
use weir_supervisor::dead_letter::DeadLetter;
use weir_supervisor::policy::{Action, OpenBehavior, Permit, Transition, WhenDeadLettersFull};
use weir_supervisor::{ErrorClass, Failure, SupervisionEvent};

use super::{Phase, StageActor};
use crate::operator::element::ElementJudge;
use crate::operator::{Operator, Verdict};
use crate::pipeline::shared::PipelineShared;
use crate::stage::shared::StageShared;
use crate::supervision::StageSupervisor;

/// The clock of supervision decisions (backoff, restart intensity, breaker): the
/// tokio clock of the arbiter, the same one the stage's timers run on. Under a
/// paused tokio runtime it is virtual, so retry storms and cooldowns can be tested
/// without sleeping.
pub(super) fn supervision_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// What a restart did to the operator.
pub(super) enum Restarted {
    /// A fresh instance from the factory replaced it.
    Replaced,
    /// It kept its state (no factory, or it holds elements).
    Kept,
    /// It keeps checkpointed state and the pipeline rolls back instead of letting
    /// it go on empty ([`OnStateLoss::RollBack`]): the stage must fail the
    /// pipeline with this reason.
    ///
    /// [`OnStateLoss::RollBack`]: crate::checkpoint::OnStateLoss::RollBack
    RollBack(String),
}

/// Restarts the operator. When a fresh instance replaced it: in a pipeline that
/// rolls back, a stateful operator asks for the roll-back; otherwise the state
/// entries the old one held are counted as lost.
pub(super) fn restart_counting_state<Op: Operator>(
    op: &mut Op,
    shared: &StageShared,
    pipeline: &PipelineShared,
) -> Restarted {
    let entries = op.state_entries() as u64;
    if !op.restart() {
        return Restarted::Kept;
    }
    if pipeline.rolls_back_state() && op.checkpoint().is_some() {
        return Restarted::RollBack(format!(
            "stage `{}` keeps checkpointed state and its supervision restarted it, which \
             would start it empty: the pipeline stops instead, without a final checkpoint, \
             so that the next run from the checkpoint directory restores the last \
             checkpoint and replays from there (OnStateLoss::RollBack; PipelineManager::\
             supervise restarts it)",
            shared.name
        ));
    }
    if entries > 0 {
        shared.state_lost.fetch_add(entries, Relaxed);
    }
    Restarted::Replaced
}

/// What the circuit breaker lets a stage do next.
pub(super) enum Gate {
    /// Step with this limit.
    Step(usize),
    /// Wait for the cooldown timer.
    Wait,
}

impl<Op: Operator> StageActor<Op> {
    /// Applies the stage's supervision to a failure of the element that was
    /// consumed last in this step; without supervision the pipeline fails. Returns
    /// whether the stage can go on.
    pub(super) fn on_failure(&mut self, failure: Failure, consumed: usize, ctx: &mut Ctl) -> bool {
        let is_source = self.is_source();
        let Some(sup) = self.sup.as_mut() else {
            self.fail(failure, ctx, true);
            return false;
        };
        // The failed element is the last one taken from the queue in this step:
        // those before it completed, those after it were put back.
        let element = match consumed.checked_sub(1) {
            Some(k) if !is_source => sup.take_copy(k).map(|e| (k, e)),
            _ => None,
        };
        let Some((k, element)) = element else {
            // Not tied to an element of this step (a source, an async operator
            // that reports its own elements' failures): nothing to retry.
            self.fail(failure, ctx, true);
            return false;
        };
        if k > 0 {
            // The head element succeeded; the failing one is a new element.
            sup.attempt = 0;
        }
        sup.attempt += 1;
        let attempt = sup.attempt;
        let index = self.consumed - 1;
        let mut judge = Judge::new(sup, &self.pipeline, &self.shared);
        let verdict = judge.decide(&failure, element, index, attempt);
        let (settled, escalation) = judge.finish();
        self.settle(settled);
        if let Some((_, reason)) = escalation {
            return self.escalate(failure, reason, ctx);
        }
        let sup = self.sup.as_mut().expect("checked above");
        match verdict {
            Verdict::Retry { element, delay } => {
                if std::mem::take(&mut sup.restart_pending) {
                    // Fresh state from the factory, if the operator has one; the
                    // queue, credit and outbox stay as they are.
                    let op = &mut self.op;
                    match catch_unwind(AssertUnwindSafe(|| {
                        restart_counting_state(op, &self.shared, &self.pipeline)
                    })) {
                        Err(_) => {
                            let reason = format!(
                                "the operator's factory panicked while restarting; last failure: {failure}"
                            );
                            return self.escalate(failure, reason, ctx);
                        }
                        Ok(Restarted::Replaced) => {
                            // The fresh operator gets the config in force.
                            self.reapply_config(ctx);
                            if self.phase == Phase::Stopped {
                                return false;
                            }
                        }
                        Ok(Restarted::Kept) => {}
                        Ok(Restarted::RollBack(reason)) => {
                            // The element is not lost: it goes back to the queue, and
                            // the restored run reads it again from its source.
                            self.inq.push_front(element);
                            self.consumed -= 1;
                            self.owed.put_back(1);
                            let reason = format!("{reason}; last failure: {failure}");
                            return self.escalate(failure, reason, ctx);
                        }
                    }
                }
                let sup = self.sup.as_mut().expect("checked above");
                sup.pause(delay);
                // The element goes back to the front; the copy replaces the one user
                // code consumed, so nothing is counted twice.
                self.inq.push_front(element);
                self.consumed -= 1;
                self.owed.put_back(1);
                true
            }
            Verdict::Settled => {
                sup.attempt = 0;
                true
            }
            Verdict::Escalated => {
                let reason = format!("policy escalates {}: {failure}", failure.class());
                self.escalate(failure, reason, ctx)
            }
        }
    }

    /// Offers the letters a full dead-letter queue refused again, in order. Returns
    /// true when none is left waiting; otherwise a timer wakes the stage for the
    /// next offer (no spinning).
    pub(super) fn flush_letters(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        let Some(sup) = self.sup.as_mut() else {
            return true;
        };
        if sup.pending_letters.is_empty() {
            return true;
        }
        if let Some(timer) = &mut sup.letter_timer {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            sup.letter_timer = None;
        }
        let Some(sink) = sup.dead_letters.clone() else {
            return true;
        };
        while let Some(letter) = sup.pending_letters.pop_front() {
            let event = SupervisionEvent::ElementDeadLettered {
                pipeline: self.pipeline.name.clone(),
                stage: self.shared.name.clone(),
                element_index: letter.element_index,
                attempts: letter.attempts,
                class: letter.class,
                error: letter.error.clone(),
            };
            match sink.offer(letter) {
                Ok(()) => {
                    self.dead_lettered += 1;
                    self.shared.dead_lettered.fetch_add(1, Relaxed);
                    self.pipeline.publish(event);
                }
                Err((letter, _)) => {
                    sup.pending_letters.push_front(letter);
                    let mut timer = Box::pin(tokio::time::sleep(sup.policy.dead_letters_retry));
                    // Registers the waker; a zero-length sleep is ruled out by
                    // the policy's validation.
                    let _ = timer.as_mut().poll(cx);
                    sup.letter_timer = Some(timer);
                    return false;
                }
            }
        }
        true
    }

    /// Adds what a [`Judge`] dead-lettered and skipped to the stage's totals.
    pub(super) fn settle(&mut self, settled: Settled) {
        self.dead_lettered += settled.dead_lettered;
        self.failed += settled.skipped;
    }

    /// Asks the stage's circuit breaker whether the next step may run: with which
    /// limit (1 for a half-open probe), or not until the cooldown ends
    /// (backpressure). In dead-letter mode an open breaker diverts the queue first.
    pub(super) fn breaker_gate(&mut self, limit: usize, ctx: &mut Ctl) -> Gate {
        let has_input = !self.inq.is_empty();
        let Some(sup) = self.sup.as_mut() else {
            return Gate::Step(limit);
        };
        let Some(breaker) = sup.breaker.as_mut() else {
            return Gate::Step(limit);
        };
        if !has_input {
            // Nothing to call the operator with: only an end of input to pass on.
            return Gate::Step(limit);
        }
        match breaker.permits(supervision_now()) {
            Permit::Allow => Gate::Step(limit),
            Permit::Probe { half_opened } => {
                if half_opened {
                    self.pipeline.publish(SupervisionEvent::BreakerHalfOpened {
                        pipeline: self.pipeline.name.clone(),
                        stage: self.shared.name.clone(),
                    });
                }
                Gate::Step(1)
            }
            Permit::Reject { retry_at } => {
                if breaker.config().when_open == OpenBehavior::DeadLetter {
                    // The queue is now empty (or the stage escalated): stepping
                    // passes on an end of input, if there is one. A full dead-letter
                    // queue under a backpressure policy leaves it waiting instead.
                    if self.divert(ctx) {
                        Gate::Step(limit)
                    } else {
                        Gate::Wait
                    }
                } else {
                    sup.pause_until(retry_at);
                    Gate::Wait
                }
            }
        }
    }

    /// While the breaker is open in dead-letter mode: every queued element goes to
    /// the dead letters, with the last failure's class.
    ///
    /// Returns false when a full queue under a backpressure policy leaves elements
    /// waiting in the stage's queue (a timer is set to try again).
    pub(super) fn divert(&mut self, ctx: &mut Ctl) -> bool {
        let (pipeline, stage) = (self.pipeline.name.clone(), self.shared.name.clone());
        let Some(sup) = self.sup.as_mut() else {
            return true;
        };
        let (class, message) = sup
            .last_failure
            .clone()
            .unwrap_or((ErrorClass::Transient, String::new()));
        let failure = Failure::error(class, format!("circuit open (last failure: {message})"));
        let mut diverted = 0_u64;
        let mut full = None;
        while let Some(element) = self.inq.pop_front() {
            let index = self.consumed;
            let letter =
                DeadLetter::new(element, stage.clone(), pipeline.clone(), &failure, 0, index);
            let pushed = sup.dead_letters.as_ref().map(|sink| sink.offer(letter));
            match pushed {
                Some(Ok(())) => {
                    self.consumed += 1;
                    self.owed.freed(1);
                    diverted += 1;
                }
                Some(Err((letter, why))) => {
                    full = Some(why);
                    self.inq.push_front(letter.element);
                    break;
                }
                None => break,
            }
        }
        self.dead_lettered += diverted;
        self.shared.dead_lettered.fetch_add(diverted, Relaxed);
        if let Some(why) = full {
            if sup.policy.dead_letters_full == WhenDeadLettersFull::Backpressure {
                // The rest stays queued until the dead-letter queue has room.
                let retry = sup.policy.dead_letters_retry;
                sup.pause(retry);
                return false;
            }
            let reason = format!("{why} while the circuit is open");
            self.escalate(failure, reason, ctx);
        }
        true
    }

    /// Reports successful calls to the breaker (bounded work per step) and
    /// publishes a close.
    pub(super) fn breaker_success(&mut self, consumed: usize) {
        let Some(breaker) = self.sup.as_mut().and_then(|s| s.breaker.as_mut()) else {
            return;
        };
        let now = supervision_now();
        let mut closed = false;
        for _ in 0..consumed.min(256) {
            closed |= breaker.on_success(now) == Some(Transition::Closed);
        }
        if closed {
            self.pipeline.publish(SupervisionEvent::BreakerClosed {
                pipeline: self.pipeline.name.clone(),
                stage: self.shared.name.clone(),
            });
        }
    }

    /// Closes the stage's circuit breaker by hand (`PipelineController::reset_breaker`):
    /// its counts are cleared, the wait of an open breaker ends (the stage takes
    /// input again on its next pass), and the close is published like any other. A
    /// breaker already closed is left alone.
    pub(super) fn reset_breaker(&mut self) {
        let Some(sup) = self.sup.as_mut() else {
            return;
        };
        let Some(breaker) = sup.breaker.as_mut() else {
            return;
        };
        let was = breaker.state();
        if matches!(was, weir_supervisor::policy::BreakerState::Closed) {
            return;
        }
        breaker.reset();
        if matches!(was, weir_supervisor::policy::BreakerState::Open { .. }) {
            // The wait in progress (the cooldown, or a retry's backoff behind it)
            // is cut short: the reset means "try again now".
            sup.resume = None;
        }
        self.pipeline.publish(SupervisionEvent::BreakerClosed {
            pipeline: self.pipeline.name.clone(),
            stage: self.shared.name.clone(),
        });
    }

    /// A sibling restarted and the strategy restarts this stage too.
    pub(super) fn restart_as_sibling(&mut self, ctx: &mut Ctl) {
        if self.phase == Phase::Stopped {
            return;
        }
        let op = &mut self.op;
        match catch_unwind(AssertUnwindSafe(|| {
            restart_counting_state(op, &self.shared, &self.pipeline)
        })) {
            Ok(Restarted::RollBack(reason)) => {
                let reason = format!("{reason} (as a sibling of a restarted stage)");
                self.fail(Failure::error(ErrorClass::Transient, reason), ctx, true);
            }
            Ok(Restarted::Replaced) => {
                self.reapply_config(ctx);
                let restarts = self.shared.restarts.fetch_add(1, Relaxed) + 1;
                self.pipeline.publish(SupervisionEvent::StageRestarted {
                    pipeline: self.pipeline.name.clone(),
                    stage: self.shared.name.clone(),
                    restarts: u32::try_from(restarts).unwrap_or(u32::MAX),
                    delay: std::time::Duration::ZERO,
                });
            }
            // No factory, or it holds elements: it keeps its state.
            Ok(Restarted::Kept) => {}
            Err(payload) => {
                let failure = Failure::from_panic(payload);
                let failure = Failure::error(
                    failure.class(),
                    format!(
                        "the operator's factory panicked while restarting: {}",
                        failure.message()
                    ),
                );
                self.fail(failure, ctx, true);
            }
        }
    }

    /// The failure goes beyond the stage's policy: tell subscribers why, then fail.
    pub(super) fn escalate(&mut self, failure: Failure, reason: String, ctx: &mut Ctl) -> bool {
        self.pipeline.publish(SupervisionEvent::Escalated {
            pipeline: self.pipeline.name.clone(),
            stage: self.shared.name.clone(),
            reason: reason.clone(),
        });
        let failure = Failure::error(failure.class(), reason);
        self.fail(failure, ctx, false);
        false
    }

    pub(super) fn publish_failed(
        &self,
        failure: &Failure,
        element_index: Option<u64>,
        attempt: u32,
    ) {
        self.pipeline.publish(SupervisionEvent::StageFailed {
            pipeline: self.pipeline.name.clone(),
            stage: self.shared.name.clone(),
            class: failure.class(),
            error: failure.message().to_owned(),
            element_index,
            attempt,
            at: SystemTime::now(),
        });
    }
}

/// What a [`Judge`] settled: counted by the judge in the shared counters, added to
/// the stage's own totals by [`StageActor::settle`].
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Settled {
    pub(super) dead_lettered: u64,
    pub(super) skipped: u64,
}

/// Applies a stage's policy to one failed element: the part of supervision that
/// needs the stage's supervisor, counters and event bus but not its queues, so that
/// it also serves async operators during a step (through
/// [`Io::element_failed`](crate::operator::Io::element_failed)).
pub(super) struct Judge<'s, T> {
    sup: &'s mut StageSupervisor<T>,
    pipeline: &'s PipelineShared,
    shared: &'s StageShared,
    settled: Settled,
    /// Why the stage must escalate (the failure's class and the reason), once the
    /// step is over.
    escalation: Option<(ErrorClass, String)>,
}

impl<'s, T> Judge<'s, T> {
    pub(super) fn new(
        sup: &'s mut StageSupervisor<T>,
        pipeline: &'s PipelineShared,
        shared: &'s StageShared,
    ) -> Self {
        Judge {
            sup,
            pipeline,
            shared,
            settled: Settled::default(),
            escalation: None,
        }
    }

    /// What was settled, and the reason to escalate if the policy said so.
    pub(super) fn finish(self) -> (Settled, Option<(ErrorClass, String)>) {
        (self.settled, self.escalation)
    }

    fn escalated(&mut self, failure: &Failure, reason: String) -> Verdict<T> {
        self.escalation.get_or_insert((failure.class(), reason));
        Verdict::Escalated
    }
}

impl<T: Send + 'static> ElementJudge<T> for Judge<'_, T> {
    fn judge(&mut self, failure: Failure, element: T, index: u64, attempt: u32) -> Verdict<T> {
        self.decide(&failure, element, index, attempt)
    }
}

impl<T: Send + 'static> Judge<'_, T> {
    /// Applies the policy to `element`, which failed its `attempt`-th attempt.
    pub(super) fn decide(
        &mut self,
        failure: &Failure,
        element: T,
        index: u64,
        attempt: u32,
    ) -> Verdict<T> {
        if self.escalation.is_some() {
            // The stage is failing already: nothing more is retried.
            return Verdict::Escalated;
        }
        let (pipeline, stage) = (self.pipeline.name.clone(), self.shared.name.clone());
        let sup = &mut *self.sup;
        sup.last_failure = Some((failure.class(), failure.message().to_owned()));
        let opened = sup.breaker.as_mut().and_then(|b| {
            b.on_failure(supervision_now())
                .map(|t| (t, b.config().cooldown))
        });
        let action = sup.policy.decide(failure.class(), attempt);
        self.pipeline.publish(SupervisionEvent::StageFailed {
            pipeline: pipeline.clone(),
            stage: stage.clone(),
            class: failure.class(),
            error: failure.message().to_owned(),
            element_index: Some(index),
            attempt,
            at: SystemTime::now(),
        });
        if let Some((Transition::Opened, cooldown)) = opened {
            self.pipeline.publish(SupervisionEvent::BreakerOpened {
                pipeline: pipeline.clone(),
                stage: stage.clone(),
                cooldown,
            });
        }
        let sup = &mut *self.sup;
        match action {
            Action::Retry => {
                let delay = sup.backoff.delay(attempt);
                self.shared.retries.fetch_add(1, Relaxed);
                self.pipeline.publish(SupervisionEvent::ElementRetried {
                    pipeline,
                    stage,
                    element_index: index,
                    attempt,
                    delay,
                });
                Verdict::Retry { element, delay }
            }
            Action::Restart => {
                let now = supervision_now();
                if !sup.allow_restart(now) {
                    let intensity = sup.policy.intensity;
                    return self.escalated(failure, format!(
                        "restart intensity exceeded: more than {} restarts within {:?}; last failure: {failure}",
                        intensity.max_restarts, intensity.within
                    ));
                }
                let restarts = sup.window.restarts(now);
                let delay = sup.restart_backoff.delay(restarts.saturating_sub(1));
                sup.restart_pending = true;
                self.shared.restarts.fetch_add(1, Relaxed);
                self.shared.retries.fetch_add(1, Relaxed);
                self.pipeline.restart_siblings(self.shared.index);
                self.pipeline.publish(SupervisionEvent::StageRestarted {
                    pipeline,
                    stage,
                    restarts,
                    delay,
                });
                Verdict::Retry { element, delay }
            }
            Action::DeadLetter => {
                let letter = DeadLetter::new(
                    element,
                    stage.clone(),
                    pipeline.clone(),
                    failure,
                    attempt,
                    index,
                );
                let backpressure =
                    sup.policy.dead_letters_full == WhenDeadLettersFull::Backpressure;
                if backpressure && !sup.pending_letters.is_empty() {
                    // Behind the letters already waiting, in order.
                    sup.pending_letters.push_back(letter);
                    return Verdict::Settled;
                }
                let pushed = match &sup.dead_letters {
                    Some(sink) => match sink.offer(letter) {
                        Ok(()) => Ok(()),
                        Err((letter, _)) if backpressure => {
                            // The stage takes no input until the queue has room.
                            sup.pending_letters.push_back(letter);
                            return Verdict::Settled;
                        }
                        Err((_, reason)) => Err(reason),
                    },
                    None => Err("no dead-letter queue".to_owned()),
                };
                match pushed {
                    Ok(()) => {
                        self.settled.dead_lettered += 1;
                        self.shared.dead_lettered.fetch_add(1, Relaxed);
                        self.pipeline
                            .publish(SupervisionEvent::ElementDeadLettered {
                                pipeline,
                                stage,
                                element_index: index,
                                attempts: attempt,
                                class: failure.class(),
                                error: failure.message().to_owned(),
                            });
                        Verdict::Settled
                    }
                    Err(why) => self.escalated(failure, format!("{why}; last failure: {failure}")),
                }
            }
            Action::Skip => {
                self.settled.skipped += 1;
                self.shared.failed.fetch_add(1, Relaxed);
                self.pipeline.publish(SupervisionEvent::ElementSkipped {
                    pipeline,
                    stage,
                    element_index: index,
                    attempts: attempt,
                });
                Verdict::Settled
            }
            _ => self.escalated(
                failure,
                format!("policy escalates {}: {failure}", failure.class()),
            ),
        }
    }
}
