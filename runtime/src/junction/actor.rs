//! [`JunctionActor`]: the actor that runs a [`Junction`] between several edges.
//!
//! Like [`StageActor`](crate::stage::actor::StageActor), message handlers only record
//! what arrived; the work happens in one pass after the mailbox drained.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::task::{self, Poll};
use std::time::Instant;
use weir_supervisor::policy::StallAction;

use actix::dev::{SendError, channel};
use actix::{Actor, ActorContext, ActorFuture, Addr, AsyncContext, Context, Handler};
use actix_rt::ArbiterHandle;
use weir_supervisor::{ErrorClass, Failure, StopReason, SupervisionEvent};

use super::{InPort, Junction, OutPort, Ports, QueueCodec, Routing, take_batches};
use crate::pipeline::shared::PipelineShared;
use crate::stage::link::{DownLink, PortDown, PortUp, UpLink};
use crate::stage::message::{Control, Down, Up};
use crate::stage::shared::{FinalState, StageShared};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Finishing,
    Stopped,
}

/// One junction stage.
pub(crate) struct JunctionActor<J: Junction> {
    junction: J,
    shared: Arc<StageShared>,
    pipeline: Arc<PipelineShared>,
    ins: Vec<InPort<J::In>>,
    outs: Vec<OutPort<J::Out>>,
    max_batch: usize,
    phase: Phase,
    reported: bool,
    stop_reason: StopReason,
    started_at: Instant,
    taken: u64,
    filtered: u64,
    failed: u64,
    wake: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The checkpoint barrier being aligned, and since when.
    barrier: Option<(u64, Instant)>,
    /// The last barrier that passed.
    last_barrier: u64,
    /// Whether the junction is checkpointable.
    stateful: bool,
    /// How its input queues are kept in a checkpoint, for a junction whose
    /// queues are part of its state (see `junction::queues`).
    codec: Option<QueueCodec<J::In>>,
    /// Counts the junction on its arbiter thread (see `stage::neighbours`).
    presence: Option<crate::stage::neighbours::Presence>,
}

impl<J: Junction> Unpin for JunctionActor<J> {}

/// A junction whose address exists but whose actor has not started.
pub(crate) struct UnstartedJunction<J: Junction> {
    pub(crate) addr: Addr<JunctionActor<J>>,
    rx: channel::AddressReceiver<JunctionActor<J>>,
}

impl<J: Junction> UnstartedJunction<J> {
    /// Mailbox sized for one batch per element of input capacity, one credit grant
    /// per element of output capacity, and control messages per port.
    pub(crate) fn new(input_capacity: usize, output_capacity: usize, ports: usize) -> Self {
        let (tx, rx) = channel::channel(input_capacity + output_capacity + 16 + 2 * ports);
        UnstartedJunction {
            addr: Addr::new(tx),
            rx,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        self,
        arbiter: &ArbiterHandle,
        junction: J,
        shared: Arc<StageShared>,
        pipeline: Arc<PipelineShared>,
        ups: Vec<Option<UpLink>>,
        downs: Vec<Option<DownLink<J::Out>>>,
        max_batch: usize,
        restored: Vec<Vec<J::In>>,
    ) -> bool {
        let now = Instant::now();
        let mut restored = restored.into_iter();
        let ins = ups
            .into_iter()
            .enumerate()
            .map(|(i, up)| {
                // What a restored checkpoint held in this input's queue goes first;
                // it counts as received by this run.
                let queue: VecDeque<J::In> = restored.next().unwrap_or_default().into();
                let n = queue.len() as u64;
                shared.in_received[i].fetch_add(n, Relaxed);
                shared.received.fetch_add(n, Relaxed);
                (queue, n, up)
            })
            .map(|(queue, received, up)| InPort {
                restored: queue.len(),
                queue,
                behind: VecDeque::new(),
                behind_len: 0,
                arrived: false,
                ended: false,
                owed: 0,
                up,
                received,
            })
            .collect();
        let outs = downs
            .into_iter()
            .enumerate()
            .map(|(o, down)| {
                let (tx, credit) = match down {
                    Some(d) => (Some(d.tx), d.initial_credit),
                    None => (None, 0),
                };
                let charge = match (&pipeline.memory, &tx) {
                    (Some(memory), Some(_)) => Some(memory.charge_for::<J::Out>(
                        &pipeline.name,
                        &shared.name,
                        Some(o),
                        &shared.out_ports[o].charge,
                    )),
                    _ => None,
                };
                OutPort {
                    charge,
                    buffer: VecDeque::new(),
                    credit,
                    capacity: credit,
                    open: tx.is_some(),
                    tx,
                    last_flow: now,
                    pushed: 0,
                    ending: false,
                }
            })
            .collect();
        let mut junction = junction;
        let codec = junction.queue_codec();
        let stateful = junction.checkpoint().is_some() || codec.is_some();
        let actor = JunctionActor {
            stateful,
            codec,
            presence: None,
            barrier: None,
            last_barrier: 0,
            junction,
            shared,
            pipeline,
            ins,
            outs,
            max_batch,
            phase: Phase::Running,
            reported: false,
            stop_reason: StopReason::Aborted,
            started_at: now,
            taken: 0,
            filtered: 0,
            failed: 0,
            wake: None,
        };
        let rx = self.rx;
        arbiter.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            actix_rt::spawn(ctx.into_future(actor));
        })
    }
}

impl<J: Junction> JunctionActor<J> {
    fn drive(&mut self, ctx: &mut Context<Self>, cx: &mut task::Context<'_>) {
        let _dead_letters = self.pipeline.dead_letter_scope(self.shared.index);
        if let Some(wake) = &mut self.wake
            && wake.as_mut().poll(cx).is_ready()
        {
            self.wake = None;
        }
        // One clock read per pass: routing and flushing see the same time.
        let now = Instant::now();
        let mut rounds = 0;
        while self.phase != Phase::Stopped {
            let sent = self.flush(ctx, now);
            if self.phase == Phase::Stopped {
                break;
            }
            if self.barrier.is_some() && self.barrier_due() {
                self.pass_barrier(ctx);
                continue;
            }
            if self.phase == Phase::Finishing {
                if self.outs.iter().all(|o| !o.open || o.buffer.is_empty()) {
                    self.finish(ctx);
                }
                break;
            }
            let progress = self.route(ctx, cx, now);
            self.sync_charges();
            rounds += 1;
            if !(progress || sent) || rounds > 64 {
                if rounds > 64 {
                    // Yield to the mailbox; the waker brings us back.
                    cx.waker().wake_by_ref();
                }
                break;
            }
        }
        if self.phase != Phase::Stopped {
            self.grant();
            if !self.outs.is_empty() && self.outs.iter().all(|o| !o.open && !o.ending) {
                // Every branch cancelled: nothing this junction does can be seen.
                self.cancel_inputs();
                self.stop(ctx, StopReason::Cancelled);
            }
        }
        self.publish_gauges();
    }

    /// Runs the junction once. Returns whether it moved anything.
    fn route(&mut self, ctx: &mut Context<Self>, cx: &mut task::Context<'_>, now: Instant) -> bool {
        let pushed_before = self.pushed_total();
        let mut ports = Ports {
            ins: &mut self.ins,
            outs: &mut self.outs,
            shared: &self.shared,
            pipeline: &self.pipeline.name,
            taken: 0,
            uncommitted: 0,
            filtered: 0,
            now,
            wake: None,
        };
        // A junction stuck in user code (a key function that blocks) is seen from
        // outside its thread; it has no operator to rebuild, so `restart` reports.
        let watched = self.shared.stall_override().or(self.pipeline.stall_timeout);
        if let Some(timeout) = watched {
            let action = match self.shared.on_stall_override() {
                Some(StallAction::Fail) => StallAction::Fail,
                _ => StallAction::Report,
            };
            self.shared.busy.enter(&self.pipeline, timeout, action);
        }
        let junction = &mut self.junction;
        let result = catch_unwind(AssertUnwindSafe(|| junction.route(&mut ports)));
        if watched.is_some() && self.shared.busy.leave() {
            // Reported stuck; it moves again now.
            self.shared.stalled.store(false, Relaxed);
        }
        let (taken, uncommitted, filtered, wake) =
            (ports.taken, ports.uncommitted, ports.filtered, ports.wake);
        self.taken += taken;
        self.filtered += filtered;
        let pushed = self.pushed_total() - pushed_before;
        if pushed > 0 {
            for (port, counters) in self.outs.iter().zip(&self.shared.out_ports) {
                counters.pushed.store(port.pushed, Relaxed);
            }
        }
        if let Some(at) = wake {
            let at = tokio::time::Instant::from_std(at);
            match &mut self.wake {
                Some(sleep) if sleep.deadline() <= at => {}
                _ => {
                    let mut sleep = Box::pin(tokio::time::sleep_until(at));
                    // Registers the waker.
                    let _ = sleep.as_mut().poll(cx);
                    self.wake = Some(sleep);
                }
            }
        }
        match result {
            Ok(Routing::Continue) => taken > 0 || pushed > 0,
            Ok(Routing::Finished) => {
                self.phase = Phase::Finishing;
                true
            }
            Err(payload) => {
                self.failed += uncommitted;
                // A junction may fail on purpose with a `Failure` payload (a
                // feedback edge's `Overflow::Fail`).
                let failure = match payload.downcast::<Failure>() {
                    Ok(failure) => *failure,
                    Err(payload) => Failure::from_panic(payload),
                };
                self.fail(failure, ctx);
                false
            }
        }
    }

    fn pushed_total(&self) -> u64 {
        self.outs.iter().map(|p| p.pushed).sum()
    }

    /// Sends every buffer as far as its branch's credit allows. Returns whether
    /// anything was sent.
    fn flush(&mut self, ctx: &mut Context<Self>, now: Instant) -> bool {
        self.sync_charges();
        let mut sent = false;
        for (o, port) in self.outs.iter_mut().enumerate() {
            if port.buffer.is_empty() {
                port.last_flow = now;
                if port.ending && port.open {
                    // Ended alone, and everything sent: end the branch.
                    port.open = false;
                    if let Some(tx) = &port.tx {
                        let _ = tx.try_send(Down::End);
                    }
                    sent = true;
                }
                continue;
            }
            let Some(tx) = port.tx.as_ref().filter(|_| port.open) else {
                continue;
            };
            let counters = &self.shared.out_ports[o];
            let sendable = port.buffer.len().min(port.credit);
            if sendable == 0 {
                continue;
            }
            // Every batch credit allows, cut at once: each element is copied at
            // most once (a batch at a time from the front would shift the rest).
            let mut batches = take_batches(&mut port.buffer, sendable, self.max_batch).into_iter();
            while let Some(batch) = batches.next() {
                let n = batch.len();
                counters.emitted.fetch_add(n as u64, SeqCst);
                self.shared.emitted.fetch_add(n as u64, Relaxed);
                match tx.try_send(Down::Batch(batch)) {
                    Ok(()) => {
                        port.credit -= n;
                        if let Some(charge) = &mut port.charge {
                            charge.sent(n);
                        }
                        port.last_flow = now;
                        sent = true;
                        self.shared.batches.fetch_add(1, Relaxed);
                        self.shared.largest_batch.fetch_max(n, Relaxed);
                    }
                    Err(err) => {
                        counters.emitted.fetch_sub(n as u64, SeqCst);
                        self.shared.emitted.fetch_sub(n as u64, Relaxed);
                        let (closed, msg) = match err {
                            SendError::Full(msg) => (false, msg),
                            SendError::Closed(msg) => (true, msg),
                        };
                        // What was not sent goes back in front, in order.
                        let mut unsent: VecDeque<J::Out> = VecDeque::new();
                        if let Down::Batch(batch) = msg {
                            unsent.extend(batch);
                        }
                        unsent.extend(batches.by_ref().flatten());
                        unsent.append(&mut port.buffer);
                        port.buffer = unsent;
                        if closed {
                            // The branch is gone: what was meant for it is dropped,
                            // counted on the port.
                            port.open = false;
                            let n = port.buffer.len() as u64;
                            port.buffer.clear();
                            counters.dropped.fetch_add(n, Relaxed);
                        } else {
                            let msg = "mailbox full despite credit (weir flow-control bug)";
                            let failure = Failure::error(ErrorClass::ResourceExhausted, msg);
                            self.fail(failure, ctx);
                            return sent;
                        }
                        break;
                    }
                }
            }
        }
        sent
    }

    /// Charges the memory budget for what the routing put in the output
    /// buffers (and releases what a lag policy dropped from them).
    fn sync_charges(&mut self) {
        for port in &mut self.outs {
            if let Some(charge) = &mut port.charge {
                charge.sync_deque(&port.buffer);
            }
        }
    }

    fn grant(&mut self) {
        for port in &mut self.ins {
            if port.owed > 0 {
                if let Some(up) = &port.up {
                    // What was taken leaves the memory budget, ended or not.
                    up.source.release(port.owed);
                    if !port.ended {
                        up.tx.send(Up::Demand(port.owed));
                    }
                }
                port.owed = 0;
            }
        }
    }

    fn cancel_inputs(&mut self) {
        for port in &mut self.ins {
            if !port.ended {
                port.ended = true;
                if let Some(up) = &port.up {
                    up.tx.send(Up::Cancel);
                }
            }
        }
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        for port in &self.outs {
            if port.open
                && let Some(tx) = &port.tx
            {
                let _ = tx.try_send(Down::End);
            }
        }
        self.cancel_inputs();
        self.stop(ctx, StopReason::Completed);
    }

    fn fail(&mut self, failure: Failure, ctx: &mut Context<Self>) {
        tracing::error!(
            pipeline = %self.pipeline.name,
            stage = %self.shared.name,
            error = %failure,
            "junction failed"
        );
        self.pipeline.publish(SupervisionEvent::StageFailed {
            pipeline: self.pipeline.name.clone(),
            stage: self.shared.name.clone(),
            class: failure.class(),
            error: failure.to_string(),
            element_index: None,
            attempt: 1,
            at: std::time::SystemTime::now(),
        });
        self.pipeline.fail(self.shared.index, failure);
        self.stop(ctx, StopReason::Failed);
    }

    fn stop(&mut self, ctx: &mut Context<Self>, reason: StopReason) {
        if self.phase != Phase::Stopped {
            self.phase = Phase::Stopped;
            self.stop_reason = reason;
            ctx.stop();
        }
    }

    fn publish_gauges(&self) {
        let s = &self.shared;
        s.completed
            .store(self.taken - self.filtered - self.failed, Relaxed);
        s.filtered.store(self.filtered, Relaxed);
        s.failed.store(self.failed, Relaxed);
        let pushed: u64 = s.out_ports.iter().map(|p| p.pushed.load(Relaxed)).sum();
        let dropped: u64 = s.out_ports.iter().map(|p| p.dropped.load(Relaxed)).sum();
        s.produced.store(pushed - dropped, Relaxed);
        s.queued.store(
            self.ins.iter().map(|p| p.queue.len() + p.behind_len).sum(),
            Relaxed,
        );
        s.outbox
            .store(self.outs.iter().map(|p| p.buffer.len()).sum(), Relaxed);
        s.credit
            .store(self.outs.iter().map(|p| p.credit).sum(), Relaxed);
        let held = self.held();
        s.held.store(held, Relaxed);
        for (port, counters) in self.outs.iter().zip(&s.out_ports) {
            counters.buffered.store(port.buffer.len(), Relaxed);
            counters.credit.store(port.credit, Relaxed);
        }
        if held == 0
            && self
                .ins
                .iter()
                .all(|p| p.queue.is_empty() && p.behind_len == 0)
            && self.outs.iter().all(|p| p.buffer.is_empty())
        {
            s.mark_settled(self.ins.iter().map(|p| p.received).sum());
        }
    }

    fn held(&self) -> usize {
        catch_unwind(AssertUnwindSafe(|| self.junction.held())).unwrap_or(0)
    }

    fn report_stop(&mut self) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        self.final_snapshot();
        self.publish_gauges();
        // Nothing more is taken from the inputs or sent on the outputs: their
        // bytes leave the memory budget.
        for port in self.ins.iter().filter_map(|p| p.up.as_ref()) {
            port.source.release_all();
        }
        for charge in self.outs.iter_mut().filter_map(|p| p.charge.as_mut()) {
            charge.abandon();
        }
        for (port, counters) in self.outs.iter().zip(&self.shared.out_ports) {
            counters.final_outbox.store(port.buffer.len(), Relaxed);
        }
        *self
            .shared
            .final_state
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(FinalState {
            queued: self.ins.iter().map(|p| p.queue.len() + p.behind_len).sum(),
            held: self.held(),
            outbox: 0,
        });
        self.pipeline
            .stage_ended(&self.shared, self.stop_reason, self.started_at.elapsed());
    }

    /// Checks that input `port` holds no more than the junction's input capacity.
    fn observe_occupancy(&self, port: usize) {
        let p = &self.ins[port];
        let in_mailbox = p.up.as_ref().map_or(0, |up| {
            up.source.emitted(SeqCst).saturating_sub(p.received) as usize
        });
        let occupancy = p.queue.len() + p.behind_len + in_mailbox;
        self.shared.peak_occupancy.fetch_max(occupancy, Relaxed);
        if occupancy > self.shared.capacity {
            self.shared.bound_violations.fetch_add(1, Relaxed);
            tracing::error!(
                stage = %self.shared.name,
                port,
                occupancy,
                capacity = self.shared.capacity,
                "junction input above capacity"
            );
        }
    }
}

impl<J: Junction> Actor for JunctionActor<J> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.presence = Some(crate::stage::neighbours::Presence::here());
        self.started_at = Instant::now();
        self.pipeline.stage_started(&self.shared);
        ctx.spawn(Driver);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.phase != Phase::Stopped {
            self.pipeline.runtime_lost();
            self.stop_reason = StopReason::RuntimeStopped;
        }
        self.report_stop();
    }
}

impl<J: Junction> Drop for JunctionActor<J> {
    fn drop(&mut self) {
        if !self.reported {
            self.pipeline.runtime_lost();
            self.stop_reason = StopReason::RuntimeStopped;
            self.report_stop();
        }
    }
}

impl<J: Junction> Handler<PortDown<J::In>> for JunctionActor<J> {
    type Result = ();

    fn handle(&mut self, msg: PortDown<J::In>, _ctx: &mut Self::Context) {
        let port = msg.port;
        if self.ins[port].arrived {
            self.hold_behind(port, msg.down);
            return;
        }
        match msg.down {
            Down::Barrier(id) => self.port_barrier(port, id),
            Down::Batch(batch) => {
                let n = batch.len() as u64;
                let p = &mut self.ins[port];
                p.received += n;
                self.shared.in_received[port].fetch_add(n, Relaxed);
                self.shared.received.fetch_add(n, Relaxed);
                if p.ended {
                    // A cancelled input that still had a batch in flight.
                    self.taken += n;
                    self.filtered += n;
                } else {
                    if p.queue.is_empty() {
                        // Reuses the batch's allocation.
                        p.queue = VecDeque::from(batch);
                    } else {
                        p.queue.extend(batch);
                    }
                    self.observe_occupancy(port);
                }
            }
            Down::End => self.ins[port].ended = true,
        }
    }
}

impl<J: Junction> Handler<PortUp> for JunctionActor<J> {
    type Result = ();

    fn handle(&mut self, msg: PortUp, _ctx: &mut Self::Context) {
        let port = &mut self.outs[msg.port];
        match msg.up {
            Up::Demand(n) => port.credit += n,
            Up::Cancel => {
                if port.open {
                    port.open = false;
                    let n = port.buffer.len() as u64;
                    port.buffer.clear();
                    self.shared.out_ports[msg.port]
                        .dropped
                        .fetch_add(n, Relaxed);
                }
            }
        }
    }
}

impl<J: Junction> Handler<Control> for JunctionActor<J> {
    type Result = ();

    fn handle(&mut self, msg: Control, ctx: &mut Self::Context) {
        match msg {
            // Only sources act on a shutdown; a junction drains like any stage.
            // Junctions hold no user state to rebuild on a sibling's restart,
            // are never sources (pause) and have no circuit breaker.
            Control::Shutdown
            | Control::Restart
            | Control::Pause
            | Control::Resume
            | Control::ResetBreaker => {}
            Control::Abort => self.stop(ctx, StopReason::Aborted),
            // Every input's upstream has stopped: the barrier comes after all of it.
            Control::Checkpoint(id) => self.inject_barrier(id),
            Control::Committed(id) => self.committed(id),
        }
    }
}

/// Checkpoint barriers through a junction: an input that delivered barrier `n` is
/// held (its later messages wait in `behind`) until every input has; once every
/// element before the barriers is routed and sent, the junction snapshots, sends
/// the barrier on every open output, acknowledges it, and releases its inputs.
impl<J: Junction> JunctionActor<J> {
    fn hold_behind(&mut self, port: usize, down: Down<J::In>) {
        if let Down::Batch(batch) = &down {
            let n = batch.len() as u64;
            let p = &mut self.ins[port];
            p.received += n;
            p.behind_len += batch.len();
            self.shared.in_received[port].fetch_add(n, Relaxed);
            self.shared.received.fetch_add(n, Relaxed);
            self.observe_occupancy(port);
        }
        self.ins[port].behind.push_back(down);
    }

    /// Input `port` delivered barrier `id`.
    fn port_barrier(&mut self, port: usize, id: u64) {
        if id <= self.last_barrier {
            return;
        }
        match self.barrier {
            None => {
                self.barrier = Some((id, Instant::now()));
                self.ins[port].arrived = true;
            }
            Some((pending, _)) if pending == id => self.ins[port].arrived = true,
            Some((pending, _)) if id > pending => {
                // The pending one was injected (this input had ended for it).
                self.ins[port].arrived = true;
                self.ins[port].behind.push_back(Down::Barrier(id));
            }
            Some(_) => {}
        }
    }

    fn inject_barrier(&mut self, id: u64) {
        if id <= self.last_barrier {
            return;
        }
        match self.barrier {
            None => {
                self.barrier = Some((id, Instant::now()));
                for p in &mut self.ins {
                    p.arrived = true;
                }
            }
            Some((pending, _)) if id > pending => {
                for p in &mut self.ins {
                    if p.arrived {
                        p.behind.push_back(Down::Barrier(id));
                    }
                }
            }
            Some(_) => {}
        }
    }

    fn barrier_due(&self) -> bool {
        let queues_kept = self.codec.is_some();
        self.ins
            .iter()
            .all(|p| (p.arrived || p.ended) && (queues_kept || p.queue.is_empty()))
            && self.outs.iter().all(|o| !o.open || o.buffer.is_empty())
            && (self.stateful || self.held() == 0)
    }

    fn pass_barrier(&mut self, ctx: &mut Context<Self>) {
        let Some((id, since)) = self.barrier.take() else {
            return;
        };
        let snapshot_started = Instant::now();
        let snapshot = self
            .snapshot(id)
            .map(|s| s.map(crate::checkpoint::Deferred::ready));
        let timing = crate::checkpoint::AckTiming {
            alignment: since.elapsed(),
            snapshot: snapshot_started.elapsed(),
        };
        for port in &self.outs {
            if !port.open {
                continue;
            }
            if let Some(tx) = &port.tx
                && let Err(SendError::Full(_)) = tx.try_send(Down::Barrier(id))
            {
                let msg = "mailbox full despite credit (weir flow-control bug)";
                self.fail(Failure::error(ErrorClass::ResourceExhausted, msg), ctx);
                return;
            }
        }
        self.last_barrier = id;
        self.pipeline
            .checkpoint_ack(self.shared.index, id, snapshot, timing);
        for port in 0..self.ins.len() {
            self.ins[port].arrived = false;
            while let Some(down) = self.ins[port].behind.pop_front() {
                match down {
                    Down::Batch(batch) => {
                        let p = &mut self.ins[port];
                        p.behind_len -= batch.len();
                        if p.ended {
                            self.taken += batch.len() as u64;
                            self.filtered += batch.len() as u64;
                        } else {
                            p.queue.extend(batch);
                        }
                    }
                    Down::End => self.ins[port].ended = true,
                    Down::Barrier(next) => {
                        self.port_barrier(port, next);
                        if self.ins[port].arrived {
                            break;
                        }
                    }
                }
            }
        }
    }

    fn snapshot(&mut self, id: u64) -> crate::stage::actor::StageSnapshot {
        if !self.stateful {
            return Ok(None);
        }
        let junction = &mut self.junction;
        let own = crate::checkpoint::guarded_snapshot(|| {
            junction.checkpoint().map(|state| state.snapshot(id))
        });
        match &self.codec {
            None => own,
            Some(codec) => {
                let queues: Vec<&VecDeque<J::In>> = self.ins.iter().map(|p| &p.queue).collect();
                let own = own?;
                crate::checkpoint::guarded_snapshot(|| Some(codec.snapshot(own, &queues)))
            }
        }
    }

    fn committed(&mut self, id: u64) {
        if !self.stateful {
            return;
        }
        let junction = &mut self.junction;
        if catch_unwind(AssertUnwindSafe(|| {
            if let Some(state) = junction.checkpoint() {
                state.committed(id);
            }
        }))
        .is_err()
        {
            tracing::error!(stage = %self.shared.name, checkpoint = id, "junction panicked committing a checkpoint");
        }
    }

    /// The junction's state when it stops, for checkpoints its barrier never
    /// reached.
    fn final_snapshot(&mut self) {
        if !self.pipeline.checkpointed() {
            return;
        }
        let snapshot = self.snapshot(self.last_barrier + 1);
        self.shared.set_final_snapshot(snapshot);
    }
}

struct Driver;

impl<J: Junction> ActorFuture<JunctionActor<J>> for Driver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut JunctionActor<J>,
        ctx: &mut Context<JunctionActor<J>>,
        cx: &mut task::Context<'_>,
    ) -> Poll<()> {
        act.drive(ctx, cx);
        Poll::Pending
    }
}
