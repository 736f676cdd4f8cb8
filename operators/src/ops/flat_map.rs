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
    pub(crate) fn new(f: F) -> Self {
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

    fn counting(&self) -> Counting {
        Counting::Custom
    }

    fn held(&self) -> usize {
        usize::from(self.current.is_some())
    }

    fn step(&mut self, io: &mut Io<'_, T, I::Item>, _cx: &mut Context<'_>) -> Step {
        loop {
            if let Some(items) = &mut self.current {
                while io.has_room() {
                    match items.next() {
                        Some(item) => io.push(item),
                        None => {
                            self.current = None;
                            io.complete(1);
                            break;
                        }
                    }
                }
                if self.current.is_some() {
                    // Out of room; resume when downstream grants credit.
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
