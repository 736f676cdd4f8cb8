//! Unit tests of [`Io`](super::Io)'s queue handling, bulk paths and panic safety.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Io;
use crate::operator::Step;

/// Unwinds without going through the panic hook, so that the many panics these
/// tests cause do not flood the output. The stage catches it like a `panic!`.
fn boom() -> ! {
    std::panic::resume_unwind(Box::new("boom"))
}

/// The queues of one stage, as the stage engine holds them.
struct Queues<In, Out> {
    input: VecDeque<In>,
    spill: Vec<In>,
    output: Vec<Out>,
}

/// What one step did.
struct Stepped<R> {
    /// The closure's result, `None` if it panicked.
    result: Option<R>,
    filtered: u64,
    completed: u64,
    /// Elements left in the spill buffer when the `Io` was dropped (before the
    /// engine put them back).
    spilled: usize,
}

impl<R> Stepped<R> {
    fn panicked(&self) -> bool {
        self.result.is_none()
    }
}

impl<In, Out> Queues<In, Out> {
    fn new(input: impl IntoIterator<Item = In>) -> Self {
        Queues {
            input: input.into_iter().collect(),
            spill: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Runs `f` on an `Io` over the queues the way the stage engine's `step`
    /// does: a panic is caught, the counters are read, the `Io` is dropped, and
    /// whatever is left in the spill buffer goes back to the front of the queue.
    fn step<R>(
        &mut self,
        input_ended: bool,
        limit: usize,
        f: impl FnOnce(&mut Io<'_, In, Out>) -> R,
    ) -> Stepped<R> {
        let (result, filtered, completed) = {
            let mut io = Io::new(
                &mut self.input,
                &mut self.spill,
                &mut self.output,
                input_ended,
                limit,
            );
            let result = catch_unwind(AssertUnwindSafe(|| f(&mut io))).ok();
            (result, io.filtered, io.completed)
        };
        let spilled = self.spill.len();
        while let Some(x) = self.spill.pop() {
            self.input.push_front(x);
        }
        Stepped {
            result,
            filtered,
            completed,
            spilled,
        }
    }

    fn queued(&self) -> Vec<In>
    where
        In: Clone,
    {
        self.input.iter().cloned().collect()
    }
}

fn strings(range: std::ops::Range<u8>) -> Vec<String> {
    range.map(|i| char::from(b'a' + i).to_string()).collect()
}

/// A queue whose elements wrap around the end of its ring buffer.
fn wrapped(values: std::ops::Range<u32>) -> VecDeque<u32> {
    let mut q = VecDeque::with_capacity(values.len());
    let cap = q.capacity();
    // Move the head near the end of the buffer, then fill.
    for _ in 0..cap - 2 {
        q.push_back(0);
    }
    for _ in 0..cap - 2 {
        q.pop_front();
    }
    q.extend(values);
    let (front, back) = q.as_slices();
    assert!(!front.is_empty() && !back.is_empty(), "queue did not wrap");
    q
}

/// Counts drops, to check that a panic destroys exactly one element.
#[derive(Debug)]
struct Tracked {
    id: usize,
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn tracked(n: usize, drops: &Arc<AtomicUsize>) -> Vec<Tracked> {
    (0..n)
        .map(|id| Tracked {
            id,
            drops: Arc::clone(drops),
        })
        .collect()
}

fn ids(items: &[Tracked]) -> Vec<usize> {
    items.iter().map(|t| t.id).collect()
}

// ---- map_batch -------------------------------------------------------------

#[test]
fn map_batch_stops_at_room_and_keeps_order() {
    let mut q = Queues::<u32, u32>::new(0..10);
    let s = q.step(false, 4, |io| io.map_batch(|x| x * 10));
    assert!(!s.panicked());
    assert_eq!(q.output, [0, 10, 20, 30]);
    assert_eq!(q.queued(), [4, 5, 6, 7, 8, 9]);
    assert_eq!(s.spilled, 0);
    assert_eq!((s.filtered, s.completed), (0, 0));

    // The outputs already buffered take room: only one more fits.
    let s = q.step(false, 5, |io| io.map_batch(|x| x * 10));
    assert!(!s.panicked());
    assert_eq!(q.output, [0, 10, 20, 30, 40]);
    assert_eq!(q.queued(), [5, 6, 7, 8, 9]);

    q.output.clear();
    q.step(false, 3, |io| io.map_batch(|x| x * 10));
    assert_eq!(q.output, [50, 60, 70]);
    assert_eq!(q.queued(), [8, 9]);
}

#[test]
fn map_batch_with_more_room_than_input_takes_everything() {
    let mut q = Queues::<u32, u64>::new(0..5);
    let s = q.step(true, usize::MAX, |io| {
        io.map_batch(|x| u64::from(x) + 1);
        (io.input_exhausted(), io.finish_when_drained())
    });
    let (exhausted, step) = s.result.unwrap();
    assert!(exhausted);
    assert!(matches!(step, Step::Finished));
    assert_eq!(q.output, [1, 2, 3, 4, 5]);
    assert!(q.input.is_empty());
}

#[test]
fn map_batch_without_room_does_nothing() {
    let mut q = Queues::<u32, u32>::new(0..3);
    q.output = vec![7, 7];
    let mut calls = 0;
    let s = q.step(false, 2, |io| {
        assert_eq!(io.room(), 0);
        assert!(!io.has_room());
        io.map_batch(|x| {
            calls += 1;
            x
        });
    });
    assert!(!s.panicked());
    assert_eq!(calls, 0);
    assert_eq!(q.output, [7, 7]);
    assert_eq!(q.queued(), [0, 1, 2]);

    // An output buffer above the limit (an operator that pushed too much) is no
    // room either, not an underflow.
    q.output = vec![7, 7, 7];
    q.step(false, 2, |io| {
        assert_eq!(io.room(), 0);
        io.map_batch(|x| x);
    });
    assert_eq!(q.output.len(), 3);
    assert_eq!(q.queued(), [0, 1, 2]);
}

#[test]
fn map_batch_on_empty_queue_does_nothing() {
    let mut q = Queues::<u32, u32>::new([]);
    let s = q.step(true, 8, |io| {
        io.map_batch(|_| unreachable!("no input"));
        io.finish_when_drained()
    });
    assert!(matches!(s.result, Some(Step::Finished)));
    assert!(q.output.is_empty());
}

#[test]
fn map_batch_on_wrapped_queue_keeps_order() {
    let mut q = Queues::<u32, u32>::new([]);
    q.input = wrapped(0..10);
    q.step(false, 7, |io| io.map_batch(|x| x + 100));
    assert_eq!(q.output, [100, 101, 102, 103, 104, 105, 106]);
    assert_eq!(q.queued(), [7, 8, 9]);
}

#[test]
fn map_batch_moves_non_copy_elements() {
    let mut q = Queues::<String, String>::new(strings(0..6));
    q.step(false, 4, |io| io.map_batch(|s| s.to_uppercase()));
    assert_eq!(q.output, ["A", "B", "C", "D"]);
    assert_eq!(q.queued(), ["e", "f"]);
}

// ---- filter_batch ----------------------------------------------------------

/// Regression: `filter_batch` once left the inputs it did not get to in the
/// spill buffer when it stopped at the limit, so the operator saw an empty queue
/// and `finish_when_drained` said `Finished` with input still to process.
#[test]
fn filter_batch_stopped_by_limit_leaves_rest_queued_in_order() {
    let mut q = Queues::<u32, u32>::new(0..10);
    let s = q.step(true, 2, |io| {
        io.filter_batch(|x| x % 2 == 0);
        (
            io.input_len(),
            io.input_exhausted(),
            io.finish_when_drained(),
        )
    });
    let (len, exhausted, step) = s.result.unwrap();
    assert_eq!(len, 7, "the queue the operator sees after the loop");
    assert!(!exhausted, "input left over, so not exhausted");
    assert!(matches!(step, Step::Continue));
    assert_eq!(s.spilled, 0, "filter_batch requeues itself");
    assert_eq!(q.output, [0, 2]);
    assert_eq!(q.queued(), [3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(s.filtered, 1);
}

#[test]
fn filter_batch_counts_filtered_and_rejects_take_no_room() {
    let mut q = Queues::<u32, u32>::new(0..10);
    let s = q.step(true, 3, |io| io.filter_batch(|x| x % 3 == 0));
    assert_eq!(q.output, [0, 3, 6]);
    assert_eq!(s.filtered, 4); // 1, 2, 4, 5
    assert_eq!(s.completed, 0);
    assert_eq!(q.queued(), [7, 8, 9]);

    q.output.clear();
    let s = q.step(true, 3, |io| {
        io.filter_batch(|x| x % 3 == 0);
        io.finish_when_drained()
    });
    assert_eq!(q.output, [9]);
    assert_eq!(s.filtered, 2); // 7, 8
    assert!(q.input.is_empty());
    assert!(matches!(s.result, Some(Step::Finished)));
}

#[test]
fn filter_batch_rejecting_everything_drains_queue() {
    let mut q = Queues::<u32, u32>::new(0..50);
    let s = q.step(false, 1, |io| io.filter_batch(|_| false));
    assert!(q.output.is_empty());
    assert!(q.input.is_empty());
    assert_eq!(s.filtered, 50);
}

#[test]
fn filter_batch_with_full_output_does_nothing() {
    let mut q = Queues::<u32, u32>::new(0..4);
    q.output = vec![42];
    let mut calls = 0;
    let s = q.step(false, 1, |io| {
        io.filter_batch(|_| {
            calls += 1;
            true
        })
    });
    assert_eq!(calls, 0);
    assert_eq!(s.filtered, 0);
    assert_eq!(q.output, [42]);
    assert_eq!(q.queued(), [0, 1, 2, 3]);
}

#[test]
fn filter_batch_appends_after_buffered_outputs() {
    let mut q = Queues::<u32, u32>::new(10..20);
    q.output = vec![1, 2];
    let s = q.step(false, 4, |io| io.filter_batch(|x| x % 2 == 1));
    assert_eq!(q.output, [1, 2, 11, 13]);
    assert_eq!(s.filtered, 2); // 10, 12
    assert_eq!(q.queued(), [14, 15, 16, 17, 18, 19]);
}

#[test]
fn filter_batch_on_wrapped_queue_of_strings() {
    let mut q = Queues::<String, String>::new(strings(0..10));
    // Wrap the queue around its buffer.
    let mut wrapped = VecDeque::with_capacity(10);
    let cap = wrapped.capacity();
    for _ in 0..cap - 3 {
        wrapped.push_back(String::new());
    }
    for _ in 0..cap - 3 {
        wrapped.pop_front();
    }
    wrapped.extend(q.input.drain(..));
    assert!(!wrapped.as_slices().1.is_empty());
    q.input = wrapped;

    let s = q.step(false, 3, |io| io.filter_batch(|s| s != "b" && s != "e"));
    assert_eq!(q.output, ["a", "c", "d"]);
    assert_eq!(s.filtered, 1);
    assert_eq!(q.queued(), strings(4..10));
}

// ---- filter_map_batch ------------------------------------------------------

#[test]
fn filter_map_batch_stops_at_limit_and_counts_filtered() {
    let input = ["1", "x", "2", "y", "z", "3", "4", "w", "5"].map(String::from);
    let mut q = Queues::<String, u32>::new(input);
    let s = q.step(true, 3, |io| {
        io.filter_map_batch(|s| s.parse().ok());
        io.finish_when_drained()
    });
    assert!(matches!(s.result, Some(Step::Continue)));
    assert_eq!(q.output, [1, 2, 3]);
    assert_eq!(s.filtered, 3);
    assert_eq!(s.spilled, 0);
    assert_eq!(q.queued(), ["4", "w", "5"]);

    q.output.clear();
    let s = q.step(true, 3, |io| {
        io.filter_map_batch(|s| s.parse().ok());
        io.finish_when_drained()
    });
    assert!(matches!(s.result, Some(Step::Finished)));
    assert_eq!(q.output, [4, 5]);
    assert_eq!(s.filtered, 1);
}

#[test]
fn filter_map_batch_with_full_output_does_nothing() {
    let mut q = Queues::<u32, u32>::new(0..3);
    q.output = vec![9, 9];
    let s = q.step(false, 2, |io| io.filter_map_batch(|_| unreachable!()));
    assert!(!s.panicked());
    assert_eq!(q.queued(), [0, 1, 2]);
}

// ---- consume_all -----------------------------------------------------------

#[test]
fn consume_all_hands_over_everything_in_order_and_counts_completed() {
    let mut q = Queues::<String, std::convert::Infallible>::new(strings(0..8));
    let mut seen = Vec::new();
    // A sink's limit is unlimited; consume_all ignores it anyway.
    let s = q.step(true, usize::MAX, |io| {
        io.consume_all(|x| seen.push(x));
        io.finish_when_drained()
    });
    assert!(matches!(s.result, Some(Step::Finished)));
    assert_eq!(seen, strings(0..8));
    assert_eq!(s.completed, 8);
    assert_eq!(s.filtered, 0);
    assert!(q.input.is_empty());
}

#[test]
fn consume_all_on_empty_queue_does_nothing() {
    let mut q = Queues::<u32, std::convert::Infallible>::new([]);
    let s = q.step(false, usize::MAX, |io| {
        io.consume_all(|_| unreachable!());
        io.finish_when_drained()
    });
    assert!(matches!(s.result, Some(Step::Continue)));
    assert_eq!(s.completed, 0);
}

// ---- element-wise API ------------------------------------------------------

#[test]
fn pop_unpop_push_and_room() {
    let mut q = Queues::<u32, u32>::new([1, 2, 3]);
    let s = q.step(false, 2, |io| {
        assert_eq!(io.input_len(), 3);
        assert_eq!(io.room(), 2);
        let a = io.pop().unwrap();
        assert_eq!(a, 1);
        io.unpop(a);
        assert_eq!(io.input_len(), 3);
        while io.has_room() {
            let x = io.pop().unwrap();
            io.push(x * 2);
        }
        assert_eq!(io.room(), 0);
        io.output().push(99); // beyond the room: kept
        assert_eq!(io.room(), 0);
        io.filter();
        io.complete(5);
        io.finish_when_drained()
    });
    assert!(matches!(s.result, Some(Step::Continue)));
    assert_eq!(q.output, [2, 4, 99]);
    assert_eq!(q.queued(), [3]);
    assert_eq!((s.filtered, s.completed), (1, 5));
}

#[test]
fn input_exhausted_needs_end_and_empty_queue() {
    let mut q = Queues::<u32, u32>::new([1]);
    let s = q.step(false, 1, |io| (io.input_ended(), io.input_exhausted()));
    assert_eq!(s.result, Some((false, false)));
    let s = q.step(true, 1, |io| (io.input_ended(), io.input_exhausted()));
    assert_eq!(s.result, Some((true, false)));
    let s = q.step(true, 1, |io| {
        io.pop();
        (io.input_ended(), io.input_exhausted())
    });
    assert_eq!(s.result, Some((true, true)));
    let mut empty = Queues::<u32, u32>::new([]);
    let s = empty.step(false, 1, |io| io.input_exhausted());
    assert_eq!(s.result, Some(false));
}

// ---- panic safety ----------------------------------------------------------

#[test]
fn map_batch_panic_loses_only_the_panicking_element() {
    let mut q = Queues::<String, String>::new(strings(0..10));
    let s = q.step(false, 6, |io| {
        io.map_batch(|s| {
            if s == "c" {
                panic!("map panics on {s}");
            }
            s.to_uppercase()
        })
    });
    assert!(s.panicked());
    // d, e, f were inside the room (taken out for the loop), g.. were not: all
    // are back in the queue, in order.
    assert_eq!(q.output, ["A", "B"]);
    assert_eq!(q.queued(), strings(3..10));
}

#[test]
fn map_batch_panic_at_batch_edges() {
    // On the first element.
    let mut q = Queues::<String, String>::new(strings(0..5));
    let s = q.step(false, 3, |io| io.map_batch(|_| boom()));
    assert!(s.panicked());
    assert!(q.output.is_empty());
    assert_eq!(q.queued(), strings(1..5));

    // On the last element within the room: nothing to spill.
    let mut q = Queues::<String, String>::new(strings(0..5));
    let s = q.step(false, 3, |io| {
        io.map_batch(|s| if s == "c" { boom() } else { s })
    });
    assert!(s.panicked());
    assert_eq!(q.output, ["a", "b"]);
    assert_eq!(q.queued(), ["d", "e"]);

    // On the very last element of the queue.
    let mut q = Queues::<String, String>::new(strings(0..5));
    let s = q.step(true, 10, |io| {
        io.map_batch(|s| if s == "e" { boom() } else { s })
    });
    assert!(s.panicked());
    assert_eq!(q.output, strings(0..4));
    assert!(q.input.is_empty());
}

#[test]
fn map_batch_panic_on_wrapped_queue() {
    let mut q = Queues::<u32, u32>::new([]);
    q.input = wrapped(0..10);
    let s = q.step(false, 8, |io| {
        io.map_batch(|x| if x == 4 { boom() } else { x })
    });
    assert!(s.panicked());
    assert_eq!(q.output, [0, 1, 2, 3]);
    assert_eq!(q.queued(), [5, 6, 7, 8, 9]);
}

#[test]
fn map_batch_panic_drops_exactly_one_element() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut q = Queues::<Tracked, Tracked>::new(tracked(10, &drops));
    let s = q.step(false, 7, |io| {
        io.map_batch(|t| if t.id == 3 { boom() } else { t })
    });
    assert!(s.panicked());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "only the panicking element"
    );
    assert_eq!(ids(&q.output), [0, 1, 2]);
    assert_eq!(ids(q.input.make_contiguous()), [4, 5, 6, 7, 8, 9]);
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 10, "no element leaked");
}

#[test]
fn filter_batch_panic_loses_only_the_panicking_element() {
    let mut q = Queues::<String, String>::new(strings(0..10));
    let s = q.step(false, 100, |io| {
        io.filter_batch(|s| {
            if s == "e" {
                panic!("filter panics on {s}");
            }
            s != "b"
        })
    });
    assert!(s.panicked());
    assert_eq!(q.output, ["a", "c", "d"]);
    assert_eq!(q.queued(), strings(5..10));
}

#[test]
fn filter_batch_panic_drops_exactly_one_element() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut q = Queues::<Tracked, Tracked>::new(tracked(10, &drops));
    q.output = tracked(1, &drops); // an output from an earlier step
    let s = q.step(false, 100, |io| {
        io.filter_batch(|t| if t.id == 6 { boom() } else { t.id != 2 })
    });
    assert!(s.panicked());
    // The rejected element (2) and the panicking one (6).
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert_eq!(ids(&q.output), [0, 0, 1, 3, 4, 5]);
    assert_eq!(ids(q.input.make_contiguous()), [7, 8, 9]);
    drop(q);
    assert_eq!(drops.load(Ordering::SeqCst), 11);
}

#[test]
fn filter_map_batch_panic_loses_only_the_panicking_element() {
    let mut q = Queues::<String, usize>::new(strings(0..10));
    let s = q.step(false, 100, |io| {
        io.filter_map_batch(|s| match s.as_str() {
            "f" => boom(),
            "b" => None,
            _ => Some(s.len()),
        })
    });
    assert!(s.panicked());
    assert_eq!(q.output, [1, 1, 1, 1]); // a, c, d, e
    assert_eq!(q.queued(), strings(6..10));
}

#[test]
fn consume_all_panic_loses_only_the_panicking_element() {
    let mut q = Queues::<String, std::convert::Infallible>::new(strings(0..10));
    let mut seen = Vec::new();
    let s = q.step(false, usize::MAX, |io| {
        io.consume_all(|s| {
            if s == "c" {
                panic!("sink panics on {s}");
            }
            seen.push(s);
        })
    });
    assert!(s.panicked());
    assert_eq!(seen, ["a", "b"]);
    assert_eq!(q.queued(), strings(3..10));
}

#[test]
fn consume_all_panic_drops_exactly_one_element() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mut q = Queues::<Tracked, std::convert::Infallible>::new(tracked(6, &drops));
    let mut kept = Vec::new();
    let s = q.step(false, usize::MAX, |io| {
        io.consume_all(|t| if t.id == 4 { boom() } else { kept.push(t) })
    });
    assert!(s.panicked());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(ids(&kept), [0, 1, 2, 3]);
    assert_eq!(ids(q.input.make_contiguous()), [5]);
    drop((q, kept));
    assert_eq!(drops.load(Ordering::SeqCst), 6);
}

/// After a panic, the stage goes on with the requeued elements: nothing lost,
/// nothing duplicated, order kept.
#[test]
fn processing_resumes_after_a_panic() {
    let mut q = Queues::<u32, u32>::new(0..20);
    let mut out = Vec::new();
    for _ in 0..20 {
        q.step(false, 4, |io| {
            io.map_batch(|x| if x % 7 == 3 { boom() } else { x })
        });
        out.append(&mut q.output);
        if q.input.is_empty() {
            break;
        }
    }
    let expected: Vec<u32> = (0..20).filter(|x| x % 7 != 3).collect();
    assert_eq!(out, expected);
}

/// A small deterministic generator, so the model test needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random queue lengths, limits, buffered outputs, predicates and panic points,
/// checked against a straightforward model of each bulk method.
#[test]
fn bulk_methods_match_model() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for case in 0..400 {
        let len = rng.below(12) as u32;
        let limit = 1 + rng.below(8) as usize;
        let buffered = rng.below(limit as u64 + 2) as usize;
        let mask = rng.next();
        let keep = move |x: u32| mask >> (x % 64) & 1 == 1;
        let panic_at = if rng.below(3) == 0 && len > 0 {
            Some(rng.below(u64::from(len)) as u32)
        } else {
            None
        };
        let ended = rng.below(2) == 0;
        let method = rng.below(3);

        let mut q = Queues::<u32, u32>::new(0..len);
        q.output = vec![u32::MAX; buffered];
        let s = q.step(ended, limit, |io| match method {
            0 => io.map_batch(|x| if Some(x) == panic_at { boom() } else { x }),
            1 => io.filter_batch(|&x| if Some(x) == panic_at { boom() } else { keep(x) }),
            _ => io.filter_map_batch(|x| {
                if Some(x) == panic_at {
                    boom()
                } else {
                    keep(x).then_some(x)
                }
            }),
        });

        // The model: walk the queue while there is room.
        let mut out = vec![u32::MAX; buffered];
        let mut filtered = 0;
        let mut next = 0;
        let mut panicked = false;
        while next < len && out.len() < limit {
            let x = next;
            next += 1;
            if Some(x) == panic_at {
                panicked = true;
                break;
            }
            if method == 0 || keep(x) {
                out.push(x);
            } else {
                filtered += 1;
            }
        }
        let rest: Vec<u32> = (next..len).collect();
        let ctx = format!(
            "case {case}: method {method} len {len} limit {limit} buffered {buffered} panic_at {panic_at:?}"
        );
        assert_eq!(s.panicked(), panicked, "{ctx}");
        assert_eq!(q.output, out, "{ctx}");
        assert_eq!(q.queued(), rest, "{ctx}");
        assert_eq!(s.filtered, filtered, "{ctx}");
        if !panicked {
            assert_eq!(s.spilled, 0, "{ctx}");
        }
    }
}

// ---- counts after a panic --------------------------------------------------

/// The elements handed to `f` before the panic were delivered: they count as
/// completed, not failed (the engine counts as failed whatever was consumed and
/// neither completed, filtered nor held).
#[test]
fn consume_all_panic_keeps_completed_count() {
    let mut q = Queues::<u32, std::convert::Infallible>::new(0..10);
    let s = q.step(false, usize::MAX, |io| {
        io.consume_all(|x| {
            if x == 3 {
                boom()
            }
        })
    });
    assert!(s.panicked());
    assert_eq!(q.queued(), [4, 5, 6, 7, 8, 9]);
    assert_eq!(s.completed, 3, "0, 1 and 2 were delivered before the panic");
}

/// The elements rejected before the panic count as filtered, not failed.
#[test]
fn filter_batch_panic_keeps_filtered_count() {
    let mut q = Queues::<u32, u32>::new(0..10);
    let s = q.step(false, 100, |io| {
        io.filter_batch(|&x| if x == 5 { boom() } else { x % 2 == 0 })
    });
    assert!(s.panicked());
    assert_eq!(q.output, [0, 2, 4]);
    assert_eq!(q.queued(), [6, 7, 8, 9]);
    assert_eq!(s.filtered, 2, "1 and 3 were rejected before the panic");
}

/// Same as above for `filter_map_batch`.
#[test]
fn filter_map_batch_panic_keeps_filtered_count() {
    let mut q = Queues::<u32, u32>::new(0..10);
    let s = q.step(false, 100, |io| {
        io.filter_map_batch(|x| {
            if x == 5 {
                boom()
            } else {
                (x % 2 == 0).then_some(x)
            }
        })
    });
    assert!(s.panicked());
    assert_eq!(q.output, [0, 2, 4]);
    assert_eq!(q.queued(), [6, 7, 8, 9]);
    assert_eq!(s.filtered, 2, "1 and 3 were rejected before the panic");
}
