//! Actix baseline with one message per element.
//!
//! Four actors (map 1, map 2, map 3, filter + sum) live on the current arbiter,
//! as weir places a linear chain. A driver task sends every source value with
//! `send().await` to the first actor, and every map actor's handler forwards
//! the mapped value with `send().await` to the next one, so each element is
//! awaited through the whole chain before the next one is sent.

use actix::prelude::*;

use crate::workload::{keep, map_step, sum_step};

/// How many elements the harness pushes through this (slow) variant by default.
pub const DEFAULT_ELEMENTS: u64 = 200_000;

/// One element travelling down the chain.
struct Elem(u64);

impl Message for Elem {
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

/// Applies map `stage` and forwards each element to `next`.
struct MapActor {
    stage: u64,
    next: Next,
}

impl Actor for MapActor {
    type Context = Context<Self>;
}

impl Handler<Elem> for MapActor {
    type Result = ResponseFuture<Result<(), MailboxError>>;

    fn handle(&mut self, Elem(x): Elem, _: &mut Context<Self>) -> Self::Result {
        let y = Elem(map_step(self.stage, x));
        match &self.next {
            Next::Map(addr) => {
                let request = addr.send(y);
                Box::pin(async move { request.await? })
            }
            Next::Sink(addr) => {
                let request = addr.send(y);
                Box::pin(async move { request.await? })
            }
        }
    }
}

/// Filters and sums the elements it receives.
struct SinkActor {
    sum: u64,
}

impl Actor for SinkActor {
    type Context = Context<Self>;
}

impl Handler<Elem> for SinkActor {
    type Result = Result<(), MailboxError>;

    fn handle(&mut self, Elem(x): Elem, _: &mut Context<Self>) -> Self::Result {
        if keep(x) {
            self.sum = sum_step(self.sum, x);
        }
        Ok(())
    }
}

impl Handler<TakeSum> for SinkActor {
    type Result = MessageResult<TakeSum>;

    fn handle(&mut self, _: TakeSum, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.sum)
    }
}

/// Runs the workload over `0..n`, one message per element, and returns the checksum.
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
        for x in 0..n {
            map1.send(Elem(x))
                .await
                .and_then(|forwarded| forwarded)
                .map_err(|e| format!("element {x}: {e}"))?;
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
        for n in [0, 1, 10_000] {
            assert_eq!(run(n), Ok(reference_checksum(n)));
        }
    }
}
