//! [`BatchSource`]: a source that pulls whole batches (`Vec`s) from an iterator.

use std::convert::Infallible;
use std::iter::Fuse;
use std::task::Context;

use weir_runtime::operator::{Io, Operator, Step};

/// Emits the elements of each batch an iterator yields, in order, pulling a batch
/// only when downstream has room for more. Created by
/// [`Pipeline::from_batches`](crate::Pipeline::from_batches).
///
/// A batch that fits in the room of a step whose output is still empty is handed
/// downstream whole: its `Vec` becomes the stage's output batch, with no element
/// copied. If it fills at least half the room it goes on alone; smaller ones are
/// joined by the batches after it (copied in) up to the room. A batch larger than
/// the room is emitted over several steps, within credit like any source. Empty
/// batches are skipped.
///
/// On shutdown it stops pulling: batches the iterator has not yielded, and the
/// rest of a batch that was only partly emitted, were never admitted (they count
/// neither as received nor as produced).
///
/// Not replayable: it keeps no checkpoint position. In a checkpointed pipeline it
/// is allowed, but restored from a checkpoint it starts again from its beginning,
/// and what it emitted after the last completed checkpoint before a crash is not
/// replayed (at most once). Use [`ReplayableSource`](super::ReplayableSource) for
/// a source that resumes.
#[derive(Debug)]
pub struct BatchSource<I, T> {
    batches: Fuse<I>,
    /// What is left of a batch that did not fit in one step.
    rest: std::vec::IntoIter<T>,
}

impl<I: Iterator<Item = Vec<T>>, T> BatchSource<I, T> {
    pub(crate) fn new(batches: I) -> Self {
        BatchSource {
            batches: batches.fuse(),
            rest: Vec::new().into_iter(),
        }
    }
}

impl<I, T> Operator for BatchSource<I, T>
where
    I: Iterator<Item = Vec<T>> + Send + 'static,
    T: Send + 'static,
{
    type In = Infallible;
    type Out = T;

    fn kind(&self) -> &'static str {
        "batches"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, T>, _cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            return Step::Finished;
        }
        let mut room = io.room();
        let whole = room / 2;
        let out = io.output();
        while room > 0 {
            let left = self.rest.len();
            if left > 0 {
                let n = left.min(room);
                // `Take<&mut vec::IntoIter>` has an exact length: one bulk copy.
                out.extend(self.rest.by_ref().take(n));
                room -= n;
                continue;
            }
            let Some(batch) = self.batches.next() else {
                return Step::Finished;
            };
            if out.is_empty() && batch.len() <= room {
                room -= batch.len();
                *out = batch;
                if out.len() >= whole {
                    // Big enough to go on as it is: appending more would copy it.
                    return Step::Continue;
                }
            } else {
                self.rest = batch.into_iter();
            }
        }
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use weir_runtime::Outcome;

    use crate::test_support::{rt, run_small};
    use crate::{FlowExt, Pipeline};

    fn batches() -> Vec<Vec<u32>> {
        vec![
            vec![0, 1, 2],
            vec![],
            vec![3],
            (4..40).collect(),
            vec![],
            vec![40, 41],
        ]
    }

    /// Small room (capacity 2, batches of 2): batches are cut and joined, the
    /// order and every count hold.
    #[test]
    fn emits_every_element_in_order_whatever_the_room() {
        let done = run_small(Pipeline::from_batches(batches()).collect());
        assert_eq!(done.output, (0..42).collect::<Vec<_>>());
        let r = &done.report;
        r.check_conservation().unwrap();
        assert_eq!(r.outcome, Outcome::Completed);
        let source = r.stage("batches#0").unwrap();
        assert_eq!(source.kind, "batches");
        assert!(source.is_source);
        assert_eq!((source.input, source.produced), (42, 42));
        assert!(source.largest_batch <= 2);
    }

    /// A batch as big as the room goes downstream whole, as it was made.
    #[test]
    fn a_batch_that_fits_goes_whole() {
        let rt = rt();
        let done = Pipeline::from_batches(vec![(0..100_u64).collect::<Vec<_>>(); 5])
            .fold(0_u64, |acc, x| acc + x)
            .default_capacity(100)
            .max_batch(100)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, 5 * 4_950);
        done.report.check_conservation().unwrap();
        let source = done.report.stage("batches#0").unwrap();
        assert_eq!(source.produced, 500);
        assert_eq!(source.largest_batch, 100);
    }

    /// Small batches are joined up to the room (here the first step's room is the
    /// whole capacity: one batch of 100 out of fifty of 2).
    #[test]
    fn small_batches_are_joined() {
        let rt = rt();
        let done = Pipeline::from_batches(vec![vec![1_u64, 2]; 50])
            .fold(0_u64, |acc, x| acc + x)
            .default_capacity(100)
            .run(&rt)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.output, 150);
        let source = done.report.stage("batches#0").unwrap();
        assert_eq!((source.produced, source.largest_batch), (100, 100));
    }

    /// On shutdown an endless batch source stops; the rest of a batch it had
    /// started was never admitted, so everything admitted is delivered.
    #[test]
    fn shutdown_stops_an_endless_supply_of_batches() {
        let rt = rt();
        let running = Pipeline::from_batches((0_u64..).map(|k| vec![k; 5]))
            .for_each(drop)
            .default_capacity(3)
            .max_batch(2)
            .run(&rt)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        running
            .controller()
            .shutdown(std::time::Duration::from_secs(5));
        let done = running.wait().unwrap();
        let r = &done.report;
        r.check_conservation().unwrap();
        assert!(
            matches!(r.outcome, Outcome::Drained { .. }),
            "{:?}",
            r.outcome
        );
        assert!(r.admitted() > 0);
        assert_eq!(r.admitted(), r.delivered());
    }

    #[test]
    fn no_batches_or_only_empty_ones_complete_at_once() {
        for input in [vec![], vec![Vec::<u8>::new(), vec![]]] {
            let done = run_small(Pipeline::from_batches(input).collect());
            assert!(done.output.is_empty());
            done.report.check_conservation().unwrap();
            assert_eq!(done.report.admitted(), 0);
        }
    }

    /// An endless supply of batches: the source pulls a batch only when there is
    /// room, so a `take` downstream ends the run after a few batches.
    #[test]
    fn pulls_batches_only_while_downstream_has_room() {
        let pulled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = pulled.clone();
        let endless = (0_u64..).map(move |k| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            vec![k; 3]
        });
        let done = run_small(Pipeline::from_batches(endless).take(10).collect());
        assert_eq!(done.output, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
        done.report.check_conservation().unwrap();
        let pulled = pulled.load(std::sync::atomic::Ordering::Relaxed);
        assert!(pulled < 20, "pulled {pulled} batches");
    }
}
