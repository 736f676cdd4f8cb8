//! [`StreamSource`]: a source that polls a `futures::Stream`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use weir_runtime::operator::{Io, Operator, Step};

/// Emits the items of a stream, polling it only while downstream has credit: a
/// stream that reads a socket stops reading when the pipeline is full. Created by
/// [`Pipeline::from_stream`](crate::Pipeline::from_stream). On shutdown it stops
/// polling.
///
/// Not replayable: it keeps no checkpoint position. In a checkpointed pipeline it
/// is allowed, but restored from a checkpoint it starts again from its beginning,
/// and what it emitted after the last completed checkpoint before a crash is not
/// replayed (at most once). Use [`ReplayableSource`](super::ReplayableSource) for
/// a source that resumes.
pub struct StreamSource<S> {
    stream: Pin<Box<S>>,
}

impl<S> StreamSource<S> {
    pub(crate) fn new(stream: S) -> Self {
        StreamSource {
            stream: Box::pin(stream),
        }
    }
}

impl<S> std::fmt::Debug for StreamSource<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamSource")
    }
}

impl<S> Operator for StreamSource<S>
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    type In = Infallible;
    type Out = S::Item;

    fn kind(&self) -> &'static str {
        "stream"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, S::Item>, cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            return Step::Finished;
        }
        while io.has_room() {
            match self.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => io.push(item),
                Poll::Ready(None) => return Step::Finished,
                Poll::Pending => break,
            }
        }
        Step::Continue
    }
}
