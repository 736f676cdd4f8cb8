//! [`failing_source`]: a source that closes with an error.

use std::convert::Infallible;
use std::task::Context;

use weir::operator::{Io, Operator, Step};
use weir::{ErrorClass, Failure, Flow};

/// A source that emits `elements` and then fails the pipeline with `message`
/// (class [`ErrorClass::Permanent`]) instead of ending. It fails in a step of its
/// own, once every element has left it; as with any failure, the pipeline then
/// stops at once, so elements still in flight downstream are abandoned (and
/// counted as such).
///
/// # Examples
///
/// ```
/// use weir::prelude::*;
/// use weir_testkit::fault::failing_source;
///
/// let rt = Runtime::builder().arbiters(1).build()?;
/// let err = failing_source(0..5_u32, "connection reset")
///     .name("feed")
///     .collect()
///     .run(&rt)?
///     .wait()
///     .unwrap_err();
/// let text = err.to_string();
/// assert!(text.contains("`feed`") && text.contains("connection reset"), "{text}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn failing_source<I>(elements: I, message: impl Into<String>) -> Flow<I::Item>
where
    I: IntoIterator,
    I::IntoIter: Send + 'static,
    I::Item: Send + 'static,
{
    Flow::from_source(FailingSource {
        elements: elements.into_iter(),
        message: message.into(),
        exhausted: false,
    })
}

struct FailingSource<I> {
    elements: I,
    message: String,
    /// Every element was emitted; the next step fails.
    exhausted: bool,
}

impl<I> Operator for FailingSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type In = Infallible;
    type Out = I::Item;

    fn kind(&self) -> &'static str {
        "failing_source"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, I::Item>, cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            return Step::Finished;
        }
        if self.exhausted {
            return Step::Failed(Failure::error(ErrorClass::Permanent, self.message.clone()));
        }
        while io.has_room() {
            match self.elements.next() {
                Some(x) => io.push(x),
                None if io.output().is_empty() => {
                    return Step::Failed(Failure::error(
                        ErrorClass::Permanent,
                        self.message.clone(),
                    ));
                }
                None => {
                    // Fail in a step of its own, once these elements have left.
                    self.exhausted = true;
                    cx.waker().wake_by_ref();
                    return Step::Continue;
                }
            }
        }
        Step::Continue
    }
}
