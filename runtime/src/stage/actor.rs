//! [`StageActor`]: the actix actor that runs one operator between two credit-based
//! edges.
//!
//! Message handlers only record what arrived (a batch, credit, end-of-stream, a
//! control command). The work happens in [`Driver`], an actor future that actix
//! polls right after it drained the mailbox: so a stage that received ten batches
//! processes them in one pass, and sends one batch and one credit grant for all of
//! them. That is how batches grow under load without a linger timer, and shrink to
//! one element when elements arrive one at a time.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::task::{self, Poll};

use actix::{Actor, ActorContext, ActorFuture, AsyncContext, Context, Handler};
use std::time::Instant;

use weir_supervisor::{Failure, StopReason};

use super::credit::{Credit, Owed};
use super::fused::{FusedOut, MemberControl, Output, Tail};
use super::link::{DownLink, UpLink};
use super::message::{Control, Down, Up};
use super::shared::{FinalState, StageShared};
use crate::observe::metrics::StageHistograms;
use crate::operator::{Counting, Io, Operator, Step};
use crate::pipeline::shared::PipelineShared;
use crate::supervision::StageSupervisor;

mod barrier;
mod budget;
mod flush;
pub(crate) mod reconfig;
mod slice;
mod supervise;
mod watchdog;

/// One step in this many is timed for the `weir_stage_step_seconds` histogram.
const STEP_TIMING_EVERY: u32 = 16;

pub(crate) use self::barrier::StageSnapshot;
use self::supervise::{Gate, Judge};
use crate::operator::element::ElementJudge;

/// What a stage's methods ask of whatever runs it: an actor, or the stage before
/// it in a fused group (which has no actix context for its members).
#[derive(Debug, Default)]
pub(crate) struct Ctl {
    stop: bool,
}

impl Ctl {
    /// The stage moved to `Stopped`: its actor, if it has one, stops.
    fn stop(&mut self) {
        self.stop = true;
    }
}

/// Rounds of "drive the stage, then its fused members" in one poll before the
/// group yields to the other tasks of its arbiter (and wakes itself again). One:
/// tokio looks at its timers only every few dozen task polls, so a group that
/// kept the thread for many rounds would hold back every timer of the arbiter
/// (checkpoint intervals, windows, throttles) by as many rounds; one pass of a
/// batch through the group per poll keeps that latency near an unfused chain's.
const FUSED_ROUNDS: usize = 1;

/// Where the stage is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// The operator finished; waiting for credit to send what is left.
    Finishing,
    Stopped,
}

/// One stage of a pipeline.
pub(crate) struct StageActor<Op: Operator> {
    op: Op,
    shared: Arc<StageShared>,
    pipeline: Arc<PipelineShared>,
    upstream: Option<UpLink>,
    downstream: Option<Output<Op::Out>>,
    inq: VecDeque<Op::In>,
    /// Inputs an interrupted bulk loop handed back; requeued at the front.
    spill: Vec<Op::In>,
    outbox: Vec<Op::Out>,
    /// Elements this stage may still send downstream.
    credit: Credit,
    /// Places freed in the input queue, not yet granted upstream.
    owed: Owed,
    max_batch: usize,
    input_ended: bool,
    shutdown: bool,
    phase: Phase,
    /// Whether the final state was reported to the pipeline.
    reported: bool,
    /// Whether the actor (when the stage is one) was told to stop.
    actor_stopping: bool,
    stop_reason: StopReason,
    started_at: Instant,
    // Running totals mirrored into `shared`.
    received: u64,
    consumed: u64,
    completed: u64,
    filtered: u64,
    dead_lettered: u64,
    failed: u64,
    last_batch: usize,
    /// Present when the stage is supervised (see `Flow::supervise`).
    sup: Option<StageSupervisor<Op::In>>,
    /// Last time the stage made progress (supervision clock), for the watchdog.
    last_progress: Instant,
    /// Wakes the stage when it would become stalled.
    stall_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: bool,
    /// Batch-size and step-time histograms (no-ops without a `metrics` recorder).
    histograms: Option<StageHistograms>,
    /// Steps so far, for timing one step in [`STEP_TIMING_EVERY`].
    steps: u32,
    /// Fewer elements per step, and the arbiter handed back between slices,
    /// for a stage whose steps are slow (see `actor/slice.rs`).
    slice: slice::TimeSlice,
    /// Counts the group's actor on its arbiter thread (set when it starts): a
    /// stage slices only when it shares the thread.
    presence: Option<super::neighbours::Presence>,
    /// Since when output has waited with no credit (backpressure).
    blocked_since: Option<Instant>,
    /// The stage's `tracing` span (`stage`, with pipeline, stage and kind), entered
    /// whenever the stage runs.
    span: tracing::Span,
    /// Applies the last applied config again after a restart rebuilt the operator.
    reapply: Option<reconfig::Reapply<Op>>,
    /// The checkpoint barrier that arrived and has not passed the stage yet.
    barrier: Option<barrier::Pending>,
    /// What arrived after that barrier, held until it passes (alignment).
    behind: VecDeque<Down<Op::In>>,
    /// Elements in `behind`.
    behind_len: usize,
    /// The last barrier that passed the stage.
    last_barrier: u64,
    /// Whether the operator is checkpointable (`Operator::checkpoint`).
    stateful: bool,
    /// The output edge's charge to the runtime's memory budget, if there is one.
    charge: Option<crate::memory::OutCharge<Op::Out>>,
    /// A source's own buffer's charge, when its operator charges it
    /// (`Operator::charge_buffer`).
    buffer: Option<crate::memory::BufferCharge<Op::Out>>,
    /// Input elements taken from the queue that stay charged to the memory
    /// budget because the operator holds them (`Operator::held`).
    held_charged: usize,
}

// The actor is only ever moved as a whole and no field is pinned structurally (the
// operator registers wakers through `&mut self`), so it is `Unpin` whatever the
// element types are; actix needs that of every actor.
impl<Op: Operator> Unpin for StageActor<Op> {}

impl<Op: Operator> StageActor<Op> {
    pub(crate) fn new(
        mut op: Op,
        shared: Arc<StageShared>,
        pipeline: Arc<PipelineShared>,
        upstream: Option<UpLink>,
        downstream: Option<DownLink<Op::Out>>,
        max_batch: usize,
        sup: Option<StageSupervisor<Op::In>>,
    ) -> Self {
        let (downstream, credit) = match downstream {
            Some(link) => (Some(Output::Tx(link.tx)), link.initial_credit),
            None => (None, 0),
        };
        shared.credit.store(credit, Relaxed);
        let credit = Credit::new(credit);
        let stateful = op.checkpoint().is_some();
        let is_source = shared.is_source;
        let (buffer, charge) = budget::charges(
            &mut op,
            &shared,
            &pipeline,
            downstream.is_some(),
            sup.as_ref(),
        );
        StageActor {
            charge,
            buffer,
            held_charged: 0,
            op,
            shared,
            pipeline,
            upstream,
            downstream,
            inq: VecDeque::new(),
            spill: Vec::new(),
            outbox: Vec::new(),
            credit,
            owed: Owed::default(),
            max_batch,
            input_ended: false,
            shutdown: false,
            phase: Phase::Running,
            reported: false,
            actor_stopping: false,
            stop_reason: StopReason::Aborted,
            started_at: Instant::now(),
            received: 0,
            consumed: 0,
            completed: 0,
            filtered: 0,
            dead_lettered: 0,
            failed: 0,
            last_batch: 1,
            sup,
            last_progress: Instant::now(),
            stall_timer: None,
            stalled: false,
            histograms: None,
            steps: 0,
            slice: slice::TimeSlice::new(is_source),
            presence: None,
            blocked_since: None,
            span: tracing::Span::none(),
            reapply: None,
            barrier: None,
            behind: VecDeque::new(),
            behind_len: 0,
            last_barrier: 0,
            stateful,
        }
    }

    /// For a stage feeding a fused member, the credit is the room left in the
    /// member's queue: what the member's grants would have said.
    fn refresh_credit(&mut self) {
        if let Some(Output::Fused(f)) = &self.downstream {
            self.credit.set(f.tail.room());
        }
    }

    /// Makes `tail` this stage's output: the first member of the fused group that
    /// continues after it.
    pub(crate) fn fuse(&mut self, tail: FusedOut<Op::Out>) {
        self.charge_fused_output();
        self.credit.set(tail.tail.room());
        self.shared.credit.store(self.credit.get(), Relaxed);
        self.downstream = Some(Output::Fused(tail));
    }

    fn is_source(&self) -> bool {
        self.shared.is_source
    }

    /// Does all the work that can be done now, or a time slice of it. Returns
    /// true when the stage used its slice and handed the arbiter back (its task
    /// is woken again once the arbiter's other tasks ran).
    fn drive(&mut self, ctx: &mut Ctl, cx: &mut task::Context<'_>) -> bool {
        let mut handed_back = false;
        let span = self.span.clone();
        let _entered = span.enter();
        let _dead_letters = self.pipeline.dead_letter_scope(self.shared.index);
        while self.phase != Phase::Stopped {
            if !self.flush(ctx) {
                break;
            }
            // Letters a full dead-letter queue refused (policy: backpressure) go
            // first; until they are taken the stage takes no input and does not end.
            let letters_wait = !self.flush_letters(cx);
            if self.barrier.is_some() {
                if !letters_wait && self.barrier_due() {
                    self.pass_barrier(ctx);
                    continue;
                }
                if self.is_source() {
                    // A source produces nothing after a barrier before it passed.
                    break;
                }
            }
            if self.phase == Phase::Finishing {
                if !letters_wait {
                    self.finish(ctx);
                }
                break;
            }
            if self.is_source() && !self.shutdown && self.shared.paused.load(Relaxed) {
                // Paused by its controller: takes nothing in; `Control::Resume`
                // wakes it. What it produced was flushed above; barriers pass.
                break;
            }
            self.refresh_credit();
            let limit = match self.downstream {
                Some(_) => self.credit.get().min(self.max_batch),
                None => usize::MAX,
            };
            if limit == 0 {
                break;
            }
            // A supervised stage waiting before a retry or restart takes nothing; the
            // timer wakes the stage when it is due (no spinning).
            let mut paused = letters_wait;
            if let Some(sup) = &mut self.sup
                && let Some(resume) = &mut sup.resume
            {
                if resume.as_mut().poll(cx).is_pending() {
                    paused = true;
                } else {
                    sup.resume = None;
                }
            }
            if paused {
                // An async operator still finishes what it has in flight while
                // its stage takes no new input (an open breaker's cooldown).
                let elementwise = self.sup.as_ref().is_some_and(|sup| sup.elementwise);
                if elementwise && self.step_in_flight(limit, ctx, cx) {
                    continue;
                }
                break;
            }
            let limit = match self.breaker_gate(limit, ctx) {
                Gate::Step(limit) => limit,
                // The cooldown timer is set: the check above polls it (registering
                // the waker) and stops the loop until it fires.
                Gate::Wait => continue,
            };
            // Under a memory budget a source admits only what fits; with the
            // budget exhausted it waits (a release wakes it), and only sources do.
            let limit = match self.admit(limit, cx) {
                0 => break,
                n => n,
            };
            let started = self
                .slice
                .start()
                .map(|at| (at, self.consumed + self.received));
            let progressed = self.step(limit.min(self.slice.limit()), ctx, cx);
            if let Some((started, before)) = started {
                let elements = (self.consumed + self.received).saturating_sub(before);
                if self.slice.record(started.elapsed(), elements as usize) {
                    // The slice is used: grant what was taken and let the
                    // arbiter's other actors run before the next step.
                    slice::TimeSlice::hand_back(cx);
                    handed_back = true;
                    break;
                }
            }
            if !progressed {
                break;
            }
        }
        self.slice.reset();
        // Between slices the stage grants only once it owes a quarter of its
        // capacity (its queue is still well filled): a grant to another
        // arbiter wakes that thread, and a grant per slice would do so every
        // 200 µs.
        if !handed_back || self.owed.get() * 4 >= self.shared.capacity {
            self.grant(ctx);
        }
        self.refresh_credit();
        self.publish_gauges();
        self.watch(ctx, cx);
        handed_back
    }

    /// Drives the stage and then the fused members after it, again while a member
    /// freed room the stage can fill, at most [`FUSED_ROUNDS`] times per poll.
    fn drive_group(&mut self, ctx: &mut Ctl, cx: &mut task::Context<'_>) -> bool {
        // A stage of the group that used its time slice has its task woken
        // after the arbiter's other tasks: waking it at once would undo that.
        let mut handed_back = false;
        for _ in 0..FUSED_ROUNDS {
            handed_back |= self.drive(ctx, cx);
            let Some(Output::Fused(f)) = &mut self.downstream else {
                return handed_back;
            };
            let room = f.tail.room();
            handed_back |= f.tail.drive(cx);
            let (cancelled, freed) = (f.up.cancelled(), f.tail.room() > room);
            if cancelled && self.phase != Phase::Stopped {
                // The member wants nothing more (it finished early, like `take`).
                self.cancel(ctx);
            }
            if !freed || self.phase == Phase::Stopped {
                return handed_back;
            }
        }
        // Work may be left: poll again after the arbiter's other actors ran.
        if !handed_back {
            cx.waker().wake_by_ref();
        }
        handed_back
    }

    /// Applies `msg` if it is for this stage (stage `index`), else hands it to the
    /// fused member it is for.
    fn route_policy(&mut self, index: usize, msg: reconfig::SetPolicy) {
        if index == self.shared.index {
            self.on_set_policy(msg);
        } else if let Some(Output::Fused(f)) = &mut self.downstream {
            f.tail.set_policy(index, msg);
        }
    }

    /// Whether every fused member after this stage has stopped (true without any).
    fn members_stopped(&self) -> bool {
        match &self.downstream {
            Some(Output::Fused(f)) => f.tail.all_stopped(),
            _ => true,
        }
    }

    /// After a handler or a drive of the group's actor: a stopped stage stops its
    /// actor, unless fused members still run in it. A stage that feeds members
    /// reports its own end at once (its actor goes on for them).
    fn settle_actor(&mut self, ctl: &Ctl, ctx: &mut Context<Self>) {
        if self.phase != Phase::Stopped {
            return;
        }
        if matches!(self.downstream, Some(Output::Fused(_))) {
            self.report_stop();
            if self.members_stopped() && !self.actor_stopping {
                self.actor_stopping = true;
                ctx.stop();
            }
        } else if ctl.stop && !self.actor_stopping {
            self.actor_stopping = true;
            ctx.stop();
        }
    }

    /// After a call into a fused member: a member that stopped reports its end
    /// (it has no actor to do so).
    fn settle_member(&mut self) {
        if self.phase == Phase::Stopped {
            self.report_stop();
        }
    }

    /// Runs the operator once. Returns whether it made progress.
    fn step(&mut self, limit: usize, ctx: &mut Ctl, cx: &mut task::Context<'_>) -> bool {
        let _batch = tracing::debug_span!("batch", queued = self.inq.len(), limit).entered();
        let queued_before = self.inq.len();
        let out_before = self.outbox.len();
        let input_ended = if self.is_source() {
            self.shutdown
        } else {
            self.input_ended
        };
        let watched = self.stall_timeout().map(|t| (t, self.stall_action()));
        let supervised = self.sup.is_some();
        // An async operator that handles its elements' failures reports them to
        // the stage's policy through the `Io`, during the step; for the others the
        // `Io` copies what user code takes, to retry the element it panicked on.
        let (mut judge, keep) = match self.sup.as_mut() {
            Some(sup) if sup.elementwise => {
                (Some(Judge::new(sup, &self.pipeline, &self.shared)), None)
            }
            Some(sup) => {
                sup.keep.begin();
                (None, Some(&mut sup.keep))
            }
            None => (None, None),
        };
        let io = Io::new(
            &mut self.inq,
            &mut self.spill,
            &mut self.outbox,
            input_ended,
            limit,
        );
        let mut io = io
            .with_judge(
                judge.as_mut().map(|j| j as &mut dyn ElementJudge<Op::In>),
                self.consumed,
            )
            .with_keep(keep);
        // Reading the clock twice per step shows in profiles: time a sample.
        self.steps = self.steps.wrapping_add(1);
        let timed = self.histograms.is_some() && self.steps.is_multiple_of(STEP_TIMING_EVERY);
        let step_started = timed.then(Instant::now);
        // Seen from outside the thread if the step sticks in user code.
        if let Some((timeout, action)) = watched {
            self.shared.busy.enter(&self.pipeline, timeout, action);
        }
        let op = &mut self.op;
        let quiet = crate::panics::SupervisedStep::enter(supervised);
        let result = catch_unwind(AssertUnwindSafe(|| op.step(&mut io, cx)));
        drop(quiet);
        if watched.is_some() && self.shared.busy.leave() {
            // The monitor reported the step stuck: progress clears the flag.
            self.stalled = true;
        }
        if let (Some(h), Some(t)) = (&self.histograms, step_started) {
            h.step_seconds.record(t.elapsed().as_secs_f64());
        }
        let (filtered, custom_completed) = (io.filtered, io.completed);
        let unjudged = io.unjudged.take();
        drop(io);
        let (settled, escalation) = judge.map(Judge::finish).unwrap_or_default();
        self.settle(settled);
        // Whatever a bulk loop did not get to goes back to the front, in order.
        while let Some(x) = self.spill.pop() {
            self.inq.push_front(x);
        }

        let consumed = queued_before.saturating_sub(self.inq.len());
        let produced = self.outbox.len().saturating_sub(out_before);
        let completed = match self.op.counting() {
            Counting::OneToOne => produced as u64,
            Counting::Custom => custom_completed,
        };
        self.consumed += consumed as u64;
        self.completed += completed;
        self.filtered += filtered;
        self.owed.freed(consumed);
        self.charge_outbox();
        if self.is_source() {
            self.received += produced as u64;
            self.shared.received.fetch_add(produced as u64, Relaxed);
        }
        self.shared.produced.fetch_add(produced as u64, Relaxed);
        self.shared.completed.fetch_add(completed, Relaxed);
        self.shared.filtered.fetch_add(filtered, Relaxed);
        let progress = consumed > 0 || produced > 0 || completed > 0 || filtered > 0;
        if progress {
            self.progressed();
        }

        let elementwise = self.sup.as_ref().is_some_and(|sup| sup.elementwise);
        // An async operator's element succeeds when it completes, not when taken.
        let succeeded = if elementwise {
            usize::try_from(completed).unwrap_or(usize::MAX)
        } else {
            consumed
        };
        if succeeded > 0 && matches!(result, Ok(Step::Continue | Step::Finished)) {
            self.breaker_success(succeeded);
        }
        if consumed > 0
            && matches!(result, Ok(Step::Continue | Step::Finished))
            && let Some(sup) = &mut self.sup
        {
            // Every element taken in a successful step succeeded, the one being
            // retried included: the next failure is a new element's first.
            sup.attempt = 0;
        }
        if let Some((class, reason)) = escalation {
            return self.escalate(Failure::error(class, reason.clone()), reason, ctx);
        }
        if let Some(failure) = unjudged {
            self.fail(failure, ctx, true);
            return false;
        }
        if self.shared.busy.take_restart() && !self.stall_restart(ctx) {
            // The step stalled and the watchdog restarted the stage; past the
            // intensity it escalated.
            return false;
        }
        match result {
            Ok(Step::Continue) => progress,
            Ok(Step::Finished) => {
                self.phase = Phase::Finishing;
                true
            }
            Ok(Step::Failed(failure)) => self.on_failure(failure, consumed, ctx),
            Err(payload) => self.on_failure(Failure::from_panic(payload), consumed, ctx),
        }
    }

    /// Steps the operator with its queue hidden, so that it only advances the
    /// elements it already holds. Returns whether it made progress.
    fn step_in_flight(&mut self, limit: usize, ctx: &mut Ctl, cx: &mut task::Context<'_>) -> bool {
        let queued = std::mem::take(&mut self.inq);
        let ended = std::mem::replace(&mut self.input_ended, false);
        let progress = self.step(limit, ctx, cx);
        // Whatever the operator put back goes before the hidden queue.
        let mut back = std::mem::replace(&mut self.inq, queued);
        while let Some(x) = back.pop_back() {
            self.inq.push_front(x);
        }
        self.input_ended = ended;
        progress
    }

    /// The operator finished and the outbox is empty: end the stream downstream,
    /// cancel upstream if it still sends, and stop.
    fn finish(&mut self, ctx: &mut Ctl) {
        if let Some(downstream) = &mut self.downstream {
            // End-of-stream is control, not data: it needs no credit. A closed
            // downstream has nothing left to end.
            let _ = downstream.try_send(Down::End);
        }
        self.cancel_upstream();
        self.stop(ctx, StopReason::Completed);
    }

    /// Downstream wants nothing more: stop taking input and stop.
    fn cancel(&mut self, ctx: &mut Ctl) {
        self.cancel_upstream();
        self.stop(ctx, StopReason::Cancelled);
    }

    /// Tells upstream to send nothing more, unless it has already ended.
    fn cancel_upstream(&self) {
        if !self.input_ended
            && let Some(up) = &self.upstream
        {
            // A closed upstream has stopped already.
            up.tx.send(Up::Cancel);
        }
    }

    fn fail(&mut self, failure: Failure, ctx: &mut Ctl, publish: bool) {
        // What was taken from the queue and neither completed, filtered, held,
        // dead-lettered nor already counted as failed is the element (or elements)
        // this failure destroyed.
        let held = self.op_held() as u64;
        let lost = self.consumed.saturating_sub(
            self.completed + self.filtered + held + self.dead_lettered + self.failed,
        );
        if !self.is_source() {
            self.shared.failed.fetch_add(lost, Relaxed);
        }
        tracing::error!(
            pipeline = %self.pipeline.name,
            stage = %self.shared.name,
            error = %failure,
            "stage failed"
        );
        // Published before anything stops, so subscribers learn the cause first.
        if publish {
            let element_index = (self.consumed > 0 && !self.is_source()).then(|| self.consumed - 1);
            self.publish_failed(&failure, element_index, 1);
        }
        if self.shared.contained {
            // Only the merge input this branch feeds ends: downstream sees the end
            // of the stream, upstream is cancelled, the pipeline goes on.
            self.pipeline.contain(self.shared.index, failure);
            // What the stage completed before failing goes on, within credit.
            self.flush(ctx);
            if let Some(downstream) = &mut self.downstream {
                let _ = downstream.try_send(Down::End);
            }
            self.cancel_upstream();
        } else {
            self.pipeline.fail(self.shared.index, failure);
        }
        self.stop(ctx, StopReason::Failed);
    }

    fn stop(&mut self, ctx: &mut Ctl, reason: StopReason) {
        if self.phase != Phase::Stopped {
            self.phase = Phase::Stopped;
            self.stop_reason = reason;
            ctx.stop();
        }
    }

    /// Grants upstream the places freed in the input queue.
    fn grant(&mut self, _ctx: &mut Ctl) {
        if self.phase == Phase::Stopped {
            return;
        }
        if self.pipeline.memory.is_some() {
            self.release_taken();
        }
        let owed = self.owed.take();
        if owed == 0 {
            return;
        }
        if !self.input_ended
            && let Some(up) = &self.upstream
        {
            // A closed upstream has ended or was aborted; the credit is moot.
            up.tx.send(Up::Demand(owed));
        }
    }

    /// Input elements held outside the queues: in the operator's state, and in
    /// dead letters waiting for room in a full dead-letter queue.
    fn op_held(&self) -> usize {
        let letters = self.sup.as_ref().map_or(0, |sup| sup.pending_letters.len());
        catch_unwind(AssertUnwindSafe(|| self.op.held())).unwrap_or(0) + letters
    }

    fn publish_gauges(&self) {
        let held = self.op_held();
        self.shared
            .queued
            .store(self.inq.len() + self.behind_len, Relaxed);
        self.shared.outbox.store(self.outbox.len(), Relaxed);
        self.shared.credit.store(self.credit.get(), Relaxed);
        self.shared.held.store(held, Relaxed);
        if self.inq.is_empty() && self.behind_len == 0 && self.outbox.is_empty() && held == 0 {
            self.shared.mark_settled(self.received);
        }
    }
}

impl<Op: Operator> Actor for StageActor<Op> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.presence = Some(super::neighbours::Presence::here());
        self.start_stage();
        ctx.spawn(Driver);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // weir always moves to `Stopped` before stopping the context; a stop from
        // anywhere else is actix tearing the actor down with its arbiter.
        if self.phase != Phase::Stopped {
            self.pipeline.runtime_lost();
            self.stop_reason = StopReason::RuntimeStopped;
        }
        self.report_stop();
    }
}

// An actor dropped without stopping means its arbiter went away (the runtime was
// dropped or stopped while the pipeline ran). It still reports, so that the
// pipeline's handle resolves instead of waiting forever.
impl<Op: Operator> Drop for StageActor<Op> {
    fn drop(&mut self) {
        if !self.reported {
            self.pipeline.runtime_lost();
            self.stop_reason = StopReason::RuntimeStopped;
            self.report_stop();
        }
    }
}

impl<Op: Operator> StageActor<Op> {
    /// The stage starts running (in its actor, or in its fused group's), and so do
    /// the fused members after it.
    fn start_stage(&mut self) {
        self.started_at = Instant::now();
        self.histograms = Some(StageHistograms::new(&self.pipeline.name, &self.shared));
        self.span = tracing::info_span!(
            "stage",
            pipeline = %self.pipeline.name,
            stage = %self.shared.name,
            kind = self.shared.kind
        );
        self.pipeline.stage_started(&self.shared);
        if let Some(Output::Fused(f)) = &mut self.downstream {
            f.tail.started();
        }
    }

    /// Records the final state and tells the pipeline this stage is done. Runs once.
    fn report_stop(&mut self) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        // The final snapshot comes first: `on_stop` may hand the state over (a
        // collect sink moves its result out), and the final checkpoint must hold it.
        self.final_snapshot();
        // Sinks hand over their result here; an ingress closes its channel so that
        // the count of what it held is final.
        if catch_unwind(AssertUnwindSafe(|| self.op.on_stop())).is_err() {
            tracing::error!(stage = %self.shared.name, "operator panicked in on_stop");
        }
        // Nothing more is taken from the input edge, and nothing more sent on
        // the output: their bytes leave the memory budget.
        if let Some(up) = &self.upstream {
            up.source.release_all();
        }
        if let Some(charge) = &mut self.charge {
            charge.abandon();
        }
        let final_state = FinalState {
            queued: self.inq.len() + self.behind_len,
            held: self.op_held(),
            outbox: self.outbox.len(),
        };
        self.publish_gauges();
        *self
            .shared
            .final_state
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(final_state);
        self.pipeline
            .stage_ended(&self.shared, self.stop_reason, self.started_at.elapsed());
    }
}

impl<Op: Operator> Handler<Down<Op::In>> for StageActor<Op> {
    type Result = ();

    fn handle(&mut self, msg: Down<Op::In>, _ctx: &mut Self::Context) {
        self.on_down(msg);
    }
}

impl<Op: Operator> StageActor<Op> {
    /// A batch, the end of the stream or a barrier arrived from upstream.
    fn on_down(&mut self, msg: Down<Op::In>) {
        if self.reported {
            // The stage stopped and reported what it held (a stage that feeds fused
            // members, whose actor goes on for them): what arrives now stays
            // counted as left in its mailbox.
            return;
        }
        if self.barrier.is_some() {
            // Held behind the barrier until it passes.
            self.hold_behind(msg);
            return;
        }
        match msg {
            Down::Barrier(n) => self.begin_barrier(n),
            Down::Batch(batch) => {
                let n = batch.len();
                self.received += n as u64;
                self.shared.received.fetch_add(n as u64, Relaxed);
                if self.inq.is_empty() {
                    // Reuses the batch's allocation.
                    self.inq = VecDeque::from(batch);
                } else {
                    self.inq.extend(batch);
                }
                self.observe_occupancy();
            }
            Down::End => self.input_ended = true,
        }
    }
}

impl<Op: Operator> StageActor<Op> {
    /// Checks, from inside the stage, that the input edge holds no more than its
    /// capacity: the queue plus what upstream sent that is still in the mailbox.
    fn observe_occupancy(&self) {
        let in_mailbox = self.upstream.as_ref().map_or(0, |up| {
            up.source.emitted(SeqCst).saturating_sub(self.received) as usize
        });
        let occupancy = self.inq.len() + self.behind_len + in_mailbox;
        self.shared.peak_occupancy.fetch_max(occupancy, Relaxed);
        if occupancy > self.shared.capacity {
            self.shared.bound_violations.fetch_add(1, Relaxed);
            tracing::error!(
                stage = %self.shared.name,
                occupancy,
                capacity = self.shared.capacity,
                "input edge above capacity"
            );
        }
    }
}

impl<Op: Operator> Handler<Up> for StageActor<Op> {
    type Result = ();

    fn handle(&mut self, msg: Up, ctx: &mut Self::Context) {
        let mut ctl = Ctl::default();
        match &mut self.downstream {
            // From the edge after the group: it is the last member's.
            Some(Output::Fused(f)) => f.tail.up(msg),
            _ => self.on_up(msg, &mut ctl),
        }
        self.settle_actor(&ctl, ctx);
    }
}

impl<Op: Operator> StageActor<Op> {
    fn on_up(&mut self, msg: Up, ctx: &mut Ctl) {
        match msg {
            Up::Demand(n) => self.credit.grant(n),
            Up::Cancel => self.cancel(ctx),
        }
    }

    fn on_control(&mut self, msg: Control, ctx: &mut Ctl) {
        match msg {
            Control::Shutdown => self.shutdown = true,
            Control::Abort => self.stop(ctx, StopReason::Aborted),
            Control::Restart => self.restart_as_sibling(ctx),
            // Injected at a source, or at a stage whose upstream has stopped: the
            // barrier comes after everything the stage has received.
            Control::Checkpoint(n) => {
                if self.barrier.is_some() {
                    self.hold_behind(Down::Barrier(n));
                } else {
                    self.begin_barrier(n);
                }
            }
            Control::Committed(n) => self.committed(n),
            // The flag is `shared.paused`, set by the controller: the message only
            // wakes the stage, whose next pass reads it.
            Control::Pause | Control::Resume => {}
            Control::ResetBreaker => self.reset_breaker(),
        }
    }
}

impl<Op: Operator> Handler<Control> for StageActor<Op> {
    type Result = ();

    fn handle(&mut self, msg: Control, ctx: &mut Self::Context) {
        let mut ctl = Ctl::default();
        self.on_control(msg, &mut ctl);
        self.settle_actor(&ctl, ctx);
    }
}

impl<Op: Operator> Handler<MemberControl> for StageActor<Op> {
    type Result = ();

    fn handle(&mut self, msg: MemberControl, ctx: &mut Self::Context) {
        if let Some(Output::Fused(f)) = &mut self.downstream {
            f.tail.control(msg.index, msg.control);
        }
        let ctl = Ctl::default();
        self.settle_actor(&ctl, ctx);
    }
}

/// The stage as a member of a fused group, driven by the stage before it.
impl<Op: Operator> Tail<Op::In> for StageActor<Op> {
    fn room(&self) -> usize {
        if self.phase == Phase::Stopped {
            return self.shared.capacity;
        }
        self.shared
            .capacity
            .saturating_sub(self.inq.len() + self.behind_len)
    }

    fn deliver(&mut self, down: Down<Op::In>) -> Result<(), Down<Op::In>> {
        if self.phase == Phase::Stopped {
            return Err(down);
        }
        self.on_down(down);
        Ok(())
    }

    fn drive(&mut self, cx: &mut task::Context<'_>) -> bool {
        let mut ctl = Ctl::default();
        let handed_back = self.drive_group(&mut ctl, cx);
        self.settle_member();
        handed_back
    }

    fn up(&mut self, up: Up) {
        match &mut self.downstream {
            Some(Output::Fused(f)) => f.tail.up(up),
            _ => {
                let mut ctl = Ctl::default();
                self.on_up(up, &mut ctl);
                self.settle_member();
            }
        }
    }

    fn control(&mut self, index: usize, control: Control) {
        if index == self.shared.index {
            let mut ctl = Ctl::default();
            self.on_control(control, &mut ctl);
            self.settle_member();
        } else if let Some(Output::Fused(f)) = &mut self.downstream {
            f.tail.control(index, control);
        }
    }

    fn started(&mut self) {
        self.start_stage();
    }

    fn set_policy(&mut self, index: usize, msg: reconfig::SetPolicy) {
        self.route_policy(index, msg);
    }

    fn all_stopped(&self) -> bool {
        self.phase == Phase::Stopped && self.members_stopped()
    }
}

/// The actor future that runs [`StageActor::drive`] after every mailbox drain and
/// whenever a waker registered by the operator fires. It never completes; it is
/// dropped with the actor.
struct Driver;

impl<Op: Operator> ActorFuture<StageActor<Op>> for Driver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut StageActor<Op>,
        ctx: &mut Context<StageActor<Op>>,
        cx: &mut task::Context<'_>,
    ) -> Poll<()> {
        let mut ctl = Ctl::default();
        let _handed_back = act.drive_group(&mut ctl, cx);
        act.settle_actor(&ctl, ctx);
        Poll::Pending
    }
}
