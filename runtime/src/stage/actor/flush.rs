//! Sending the outbox downstream within credit, and the time spent blocked on
//! backpressure. A child of `actor`, so it sees the stage's fields.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Instant;

use super::Ctl;
use actix::dev::SendError;
use weir_supervisor::{ErrorClass, Failure};

use super::StageActor;
use crate::operator::Operator;
use crate::stage::message::Down;

impl<Op: Operator> StageActor<Op> {
    /// Sends the outbox downstream as far as credit allows. Returns true when the
    /// outbox is empty.
    pub(super) fn flush(&mut self, ctx: &mut Ctl) -> bool {
        if let Some(charge) = &mut self.charge {
            charge.sync(&self.outbox);
        }
        while !self.outbox.is_empty() {
            self.refresh_credit();
            let Some(downstream) = &mut self.downstream else {
                // Sinks have no output; an operator that pushes anyway is a bug in it.
                let n = self.outbox.len();
                self.outbox.clear();
                let msg = format!("a sink produced {n} output elements");
                self.fail(Failure::error(ErrorClass::Permanent, msg), ctx, true);
                return false;
            };
            let n = self.credit.batch(self.outbox.len(), self.max_batch);
            if n == 0 {
                if self.credit.get() == 0 && self.blocked_since.is_none() {
                    self.blocked_since = Some(Instant::now());
                }
                return false;
            }
            if let Some(since) = self.blocked_since.take() {
                let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.shared.blocked_nanos.fetch_add(nanos, Relaxed);
            }
            let batch = if n == self.outbox.len() {
                let hint = self.last_batch.max(n).min(self.max_batch);
                std::mem::replace(&mut self.outbox, Vec::with_capacity(hint))
            } else {
                self.outbox.drain(..n).collect()
            };
            // Counted before sending so that the receiver never sees more elements in
            // its mailbox than `emitted` says were sent.
            self.shared.emitted.fetch_add(n as u64, SeqCst);
            match downstream.try_send(Down::Batch(batch)) {
                Ok(()) => {
                    self.credit.spend(n);
                    if let Some(charge) = &mut self.charge {
                        charge.sent(n);
                    }
                    self.last_batch = n;
                    if let Some(h) = &self.histograms {
                        h.batch_size.record(n as f64);
                    }
                    self.shared.batches.fetch_add(1, Relaxed);
                    self.shared.largest_batch.fetch_max(n, Relaxed);
                }
                Err(err) => {
                    self.shared.emitted.fetch_sub(n as u64, SeqCst);
                    let (closed, msg) = match err {
                        SendError::Full(msg) => (false, msg),
                        SendError::Closed(msg) => (true, msg),
                    };
                    if let Down::Batch(mut batch) = msg {
                        batch.append(&mut self.outbox);
                        self.outbox = batch;
                    }
                    if closed {
                        // The next stage is gone (it finished early or was aborted):
                        // nothing more can be delivered from here.
                        self.cancel(ctx);
                    } else {
                        let msg = "mailbox full despite credit (weir flow-control bug)";
                        self.fail(
                            Failure::error(ErrorClass::ResourceExhausted, msg),
                            ctx,
                            true,
                        );
                    }
                    return false;
                }
            }
        }
        true
    }
}
