//! Actix baseline with one message per batch of [`BATCH`] elements.
//!
//! The same four actors as [`super::actix_per_element`] on the current
//! arbiter, but each message carries a `Vec<u64>` batch, forwarded with
//! `send().await` per batch.

use actix::prelude::*;

use crate::workload::{BATCH, keep, map_step, sum_step};

/// One batch travelling down the chain.
struct Batch(Vec<u64>);

impl Message for Batch {
    type Result = Result<(), MailboxError>;
}

/// Asks the sink for its checksum.
struct TakeSum;

impl Message for TakeSum {
    type Result = u64;
}

/// Where a map actor forwards its output.
enum Next {
    Map(Addr<MapActor>),
    Sink(Addr<SinkActor>),
}

/// Applies map `stage` to each batch and forwards it to `next`.
struct MapActor {
    stage: u64,
    next: Next,
}

impl Actor for MapActor {
    type Context = Context<Self>;
}

impl Handler<Batch> for MapActor {
    type Result = ResponseFuture<Result<(), MailboxError>>;

    fn handle(&mut self, Batch(mut batch): Batch, _: &mut Context<Self>) -> Self::Result {
        for x in &mut batch {
            *x = map_step(self.stage, *x);
        }
        let batch = Batch(batch);
        match &self.next {
            Next::Map(addr) => {
                let request = addr.send(batch);
                Box::pin(async move { request.await? })
            }
            Next::Sink(addr) => {
                let request = addr.send(batch);
                Box::pin(async move { request.await? })
            }
        }
    }
}

/// Filters and sums the batches it receives.
struct SinkActor {
    sum: u64,
}

impl Actor for SinkActor {
    type Context = Context<Self>;
}

impl Handler<Batch> for SinkActor {
    type Result = Result<(), MailboxError>;

    fn handle(&mut self, Batch(batch): Batch, _: &mut Context<Self>) -> Self::Result {
        self.sum = batch
            .into_iter()
            .filter(|&x| keep(x))
            .fold(self.sum, sum_step);
        Ok(())
    }
}

impl Handler<TakeSum> for SinkActor {
    type Result = MessageResult<TakeSum>;

    fn handle(&mut self, _: TakeSum, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.sum)
    }
}

/// Runs the workload over `0..n`, one message per batch, and returns the checksum.
///
/// # Errors
///
/// Fails when a mailbox is closed before the run ends.
pub fn run(n: u64) -> Result<u64, String> {
    System::new().block_on(async move {
        let sink = SinkActor { sum: 0 }.start();
        let map3 = MapActor {
            stage: 3,
            next: Next::Sink(sink.clone()),
        }
        .start();
        let map2 = MapActor {
            stage: 2,
            next: Next::Map(map3),
        }
        .start();
        let map1 = MapActor {
            stage: 1,
            next: Next::Map(map2),
        }
        .start();
        let mut next = 0u64;
        while next < n {
            let end = n.min(next.saturating_add(BATCH as u64));
            map1.send(Batch((next..end).collect()))
                .await
                .and_then(|forwarded| forwarded)
                .map_err(|e| format!("batch at {next}: {e}"))?;
            next = end;
        }
        sink.send(TakeSum)
            .await
            .map_err(|e| format!("reading the sum: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::reference_checksum;

    #[test]
    fn matches_reference() {
        for n in [0, 1, BATCH as u64, 10_000] {
            assert_eq!(run(n), Ok(reference_checksum(n)));
        }
    }
}
