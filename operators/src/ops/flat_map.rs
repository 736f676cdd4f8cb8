//! [`FlatMap`]: zero or more outputs per input, produced lazily.

use std::task::Context;

use weir_runtime::operator::{Counting, Io, Operator, Step};

/// Expands each element into an iterator and emits its items in order. The iterator
/// is drained lazily, only as fast as downstream grants credit, so a huge (or
/// endless) expansion never piles up in memory. Created by
/// [`FlowExt::flat_map`](crate::FlowExt::flat_map).
pub struct FlatMap<F, T, I: IntoIterator> {
    f: F,
    current: Option<I::IntoIter>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<F, T, I: IntoIterator> FlatMap<F, T, I> {
    /// The operator behind [`FlowExt::flat_map`](crate::FlowExt::flat_map), for [`Flow::via`](weir_runtime::Flow::via) (elements that are not `Clone`).
    pub fn new(f: F) -> Self {
        FlatMap {
            f,
            current: None,
            _type: std::marker::PhantomData,
        }
    }
}

impl<F, T, I: IntoIterator> std::fmt::Debug for FlatMap<F, T, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatMap")
            .field("expanding", &self.current.is_some())
            .finish()
    }
}

impl<F, T, I> Operator for FlatMap<F, T, I>
where
    F: FnMut(T) -> I + Send + 'static,
    T: Send + 'static,
    I: IntoIterator + 'static,
    I::IntoIter: Send + 'static,
    I::Item: Send + 'static,
{
    type In = T;
    type Out = I::Item;

    fn kind(&self) -> &'static str {
        "flat_map"
    }

    fn fusable(&self) -> bool {
        true
    }

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        usize::from(self.current.is_some())
    }

    fn step(&mut self, io: &mut Io<'_, T, I::Item>, _cx: &mut Context<'_>) -> Step {
        loop {
            // Taken out while it runs: if the user's iterator panics, the element
            // it came from is not held any more, so it is counted as failed.
            if let Some(mut items) = self.current.take() {
                let mut exhausted = false;
                while io.has_room() {
                    match items.next() {
                        Some(item) => io.push(item),
                        None => {
                            exhausted = true;
                            break;
                        }
                    }
                }
                if exhausted {
                    io.complete(1);
                } else {
                    // Out of room; resume when downstream grants credit.
                    self.current = Some(items);
                    return Step::Continue;
                }
            }
            match io.pop() {
                Some(x) => self.current = Some((self.f)(x).into_iter()),
                None => return io.finish_when_drained(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::test_support::{Gate, rt, run_small, run_to_failure};
    use crate::{FlowExt, Pipeline};

    #[test]
    fn expands_in_order_and_counts_inputs_completed() {
        let done = run_small(
            Pipeline::from_iter(0..20_u32)
                .flat_map(|n| (0..n % 4).map(move |i| (n, i)))
                .collect(),
        );
        let expected: Vec<(u32, u32)> = (0..20)
            .flat_map(|n| (0..n % 4).map(move |i| (n, i)))
            .collect();
        assert_eq!(done.output, expected);
        let r = &done.report;
        r.check_conservation().unwrap();
        let fm = r.stage("flat_map#1").unwrap();
        assert!(!fm.one_to_one);
        assert_eq!(fm.input, 20);
        assert_eq!(
            fm.completed, 20,
            "every input expanded, empty ones included"
        );
        assert_eq!(fm.produced, expected.len() as u64);
        assert_eq!(fm.filtered, 0);
        assert!(fm.largest_batch <= 2);
        assert_eq!(r.stage("collect#2").unwrap().input, expected.len() as u64);
    }

    #[test]
    fn empty_expansions_produce_nothing() {
        let done = run_small(
            Pipeline::from_iter(0..25_u32)
                .flat_map(|_| Vec::<String>::new())
                .collect(),
        );
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
        let fm = done.report.stage("flat_map#1").unwrap();
        assert_eq!((fm.input, fm.completed, fm.produced), (25, 25, 0));
    }

    #[test]
    fn empty_input() {
        let done = run_small(Pipeline::from_iter(0..0_u32).flat_map(|x| [x, x]).collect());
        assert!(done.output.is_empty());
        done.report.check_conservation().unwrap();
    }

    /// One element expanding into 10 000 is drained as downstream grants credit,
    /// never buffered whole.
    #[test]
    fn large_expansion_is_drained_lazily() {
        let rt = rt();
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&pulled);
        let running = Pipeline::from_iter([10_000_u32])
            .flat_map(move |n| {
                let counter = Arc::clone(&counter);
                (0..n).inspect(move |_| {
                    counter.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect()
            .default_capacity(4)
            .run(&rt)
            .unwrap();
        let done = running.wait().unwrap();
        assert_eq!(done.output, (0..10_000).collect::<Vec<_>>());
        assert_eq!(pulled.load(Ordering::Relaxed), 10_000);
        let r = &done.report;
        r.check_conservation().unwrap();
        let fm = r.stage("flat_map#1").unwrap();
        assert!(fm.largest_batch <= 4, "largest batch {}", fm.largest_batch);
        assert_eq!((fm.input, fm.completed, fm.produced), (1, 1, 10_000));
        assert!(r.stage("collect#2").unwrap().peak_occupancy <= 4);
    }

    /// An endless expansion works when something downstream stops the stream.
    #[test]
    fn endless_expansion_with_take() {
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&pulled);
        let done = run_small(
            Pipeline::from_iter(["x"])
                .flat_map(move |s| {
                    let counter = Arc::clone(&counter);
                    std::iter::repeat(s).inspect(move |_| {
                        counter.fetch_add(1, Ordering::Relaxed);
                    })
                })
                .take(7)
                .map(String::from)
                .collect(),
        );
        assert_eq!(done.output, ["x"; 7]);
        let r = &done.report;
        r.check_conservation().unwrap();
        // What it pulled is what take passed plus at most take's input capacity.
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(pulled <= 7 + 3, "pulled {pulled}");
        let fm = r.stage("flat_map#1").unwrap();
        assert_eq!(fm.completed, 0);
        assert_eq!(fm.abandoned, 1, "the endless expansion was never finished");
    }

    #[test]
    fn panic_in_function_fails_the_stage_and_loses_one_element() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..10_u32)
                .flat_map(move |x| {
                    if x == 4 {
                        g.boom("flat_map panics on 4")
                    }
                    [x, x]
                })
                .collect()
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "flat_map#1",
        );
        let fm = report.stage("flat_map#1").unwrap();
        assert_eq!(fm.failed, 1);
        assert_eq!(fm.completed, 4);
        assert_eq!(report.failed(), 1);
    }

    /// A panic while draining an element's expansion destroys that element, so it
    /// should count as failed, like a panic in the function itself.
    #[test]
    fn panic_in_expansion_iterator_counts_its_element_as_failed() {
        let gate = Gate::default();
        let g = gate.clone();
        let report = run_to_failure(
            Pipeline::from_iter(0..10_u32)
                .flat_map(move |x| {
                    let g = g.clone();
                    (0..3).map(move |i| {
                        if x == 4 && i == 1 {
                            g.boom("expansion of 4 panics")
                        }
                        x * 10 + i
                    })
                })
                .collect()
                .default_capacity(3)
                .max_batch(2),
            &gate,
            "flat_map#1",
        );
        let fm = report.stage("flat_map#1").unwrap();
        assert_eq!(fm.completed, 4);
        assert_eq!(fm.failed, 1, "abandoned: {}", fm.abandoned);
    }
}
