//! Unit tests of the copies a supervised stage's [`Io`](super::Io) keeps
//! ([`Keep`]): after a panic in user code, the copy of the failed element, and
//! only the elements user code took leave the queue.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::Io;
use crate::supervision::Keep;

/// Unwinds without going through the panic hook.
fn boom() -> ! {
    std::panic::resume_unwind(Box::new("boom"))
}

/// Runs `f` on a supervised `Io` over `input` as the stage's `step` does (a panic
/// caught, the spill put back) and returns whether it panicked, the queue left,
/// the output, and the copy of the element taken last (the failed one).
fn step_kept<Out>(
    input: &mut VecDeque<u32>,
    limit: usize,
    f: impl FnOnce(&mut Io<'_, u32, Out>),
) -> (bool, Vec<u32>, Vec<Out>, Option<u32>) {
    let mut keep = Keep::cloning();
    keep.begin();
    let (mut spill, mut output) = (Vec::new(), Vec::new());
    let before = input.len();
    let panicked = {
        let mut io =
            Io::new(input, &mut spill, &mut output, false, limit).with_keep(Some(&mut keep));
        catch_unwind(AssertUnwindSafe(|| f(&mut io))).is_err()
    };
    while let Some(x) = spill.pop() {
        input.push_front(x);
    }
    let consumed = before - input.len();
    let copy = consumed.checked_sub(1).and_then(|k| keep.take(k));
    (panicked, input.iter().copied().collect(), output, copy)
}

#[test]
fn map_batch_cloning_keeps_the_failed_element() {
    let mut q: VecDeque<u32> = (0..6).collect();
    let (panicked, left, out, copy) = step_kept(&mut q, 10, |io| {
        io.map_batch_cloning(|x| if x == 2 { boom() } else { x * 10 });
    });
    assert!(panicked);
    assert_eq!((left, out, copy), (vec![3, 4, 5], vec![0, 10], Some(2)));
}

#[test]
fn map_batch_cloning_without_a_panic_takes_room_only() {
    let mut q: VecDeque<u32> = (0..6).collect();
    let (panicked, left, out, _) = step_kept(&mut q, 4, |io| io.map_batch_cloning(|x| x + 1));
    assert!(!panicked);
    assert_eq!((left, out), (vec![4, 5], vec![1, 2, 3, 4]));
}

#[test]
fn map_batch_copies_before_moving() {
    let mut q: VecDeque<u32> = (0..6).collect();
    let (panicked, left, out, copy) = step_kept(&mut q, 10, |io| {
        io.map_batch(|x| if x == 4 { boom() } else { x });
    });
    assert!(panicked);
    assert_eq!((left, out, copy), (vec![5], vec![0, 1, 2, 3], Some(4)));
}

#[test]
fn filter_batch_keeps_the_element_it_lent() {
    let mut q: VecDeque<u32> = (0..6).collect();
    let (panicked, left, out, copy) = step_kept(&mut q, 10, |io: &mut Io<'_, u32, u32>| {
        io.filter_batch(|x| if *x == 3 { boom() } else { x % 2 == 0 });
    });
    assert!(panicked);
    assert_eq!((left, out, copy), (vec![4, 5], vec![0, 2], Some(3)));
}

#[test]
fn copies_follow_pops() {
    let mut q: VecDeque<u32> = (0..10).collect();
    let (panicked, left, out, copy) = step_kept(&mut q, 100, |io: &mut Io<'_, u32, u32>| {
        let a = io.pop().expect("queued");
        let b = io.pop().expect("queued");
        io.unpop(b);
        io.push(a);
        io.consume_all(|x| {
            if x == 3 {
                boom()
            }
        });
    });
    assert!(panicked);
    assert_eq!((left, out, copy), ((4..10).collect(), vec![0], Some(3)));
}

#[test]
fn copies_start_after_lent_elements() {
    // A filter lends its elements (no copies) and stops at its room; the sink loop
    // after it copies from where the filter stopped.
    let mut q: VecDeque<u32> = (0..10).collect();
    let (panicked, left, out, copy) = step_kept(&mut q, 3, |io: &mut Io<'_, u32, u32>| {
        io.filter_batch(|x| x % 2 == 0);
        io.consume_all(|x| {
            if x == 7 {
                boom()
            }
        });
    });
    assert!(panicked);
    assert_eq!((left, out, copy), (vec![8, 9], vec![0, 2, 4], Some(7)));
}

#[test]
fn wrapped_queue_is_copied_in_order() {
    let mut q = VecDeque::with_capacity(8);
    let cap = q.capacity();
    for _ in 0..cap - 2 {
        q.push_back(0);
    }
    for _ in 0..cap - 2 {
        q.pop_front();
    }
    q.extend(0..6_u32);
    assert!(!q.as_slices().1.is_empty(), "queue did not wrap");
    let (panicked, left, _, copy) = step_kept(&mut q, 10, |io: &mut Io<'_, u32, u32>| {
        io.consume_all(|x| {
            if x == 3 {
                boom()
            }
        });
    });
    assert!(panicked);
    assert_eq!((left, copy), (vec![4, 5], Some(3)));
}
