//! [`ReplaySource`]: replays a dead-letter file into a pipeline.

use std::convert::Infallible;
use std::path::Path;
use std::task::Context;

use serde::de::DeserializeOwned;
use weir_runtime::operator::{Io, Operator, Step};
use weir_runtime::{ErrorClass, Failure};
use weir_supervisor::dead_letter::{DeadLetter, DlqError, FileDlqReader, ReadError};

/// Emits the letters of a dead-letter file written by
/// [`SharedFileDlq`](weir_supervisor::dead_letter::SharedFileDlq), oldest first, so
/// that a later run can process them again. Created by
/// [`Pipeline::replay_dead_letters`](crate::Pipeline::replay_dead_letters).
///
/// A torn last record (the writer crashed while appending it) ends the replay:
/// that letter was never acknowledged. A corrupt record fails the stage with an
/// error naming the offset; nothing after it is skipped silently.
#[derive(Debug)]
///
/// Not replayable: it keeps no checkpoint position. In a checkpointed pipeline it
/// is allowed, but restored from a checkpoint it starts again from its beginning,
/// and what it emitted after the last completed checkpoint before a crash is not
/// replayed (at most once). Use [`ReplayableSource`](super::ReplayableSource) for
/// a source that resumes.
pub struct ReplaySource<T> {
    reader: FileDlqReader<T>,
}

impl<T> ReplaySource<T> {
    pub(crate) fn open(path: impl AsRef<Path>) -> Result<Self, DlqError> {
        Ok(ReplaySource {
            reader: FileDlqReader::open(path)?,
        })
    }
}

impl<T: DeserializeOwned + Send + 'static> Operator for ReplaySource<T> {
    type In = Infallible;
    type Out = DeadLetter<T>;

    fn kind(&self) -> &'static str {
        "replay"
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, DeadLetter<T>>, _cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            return Step::Finished;
        }
        while io.has_room() {
            match self.reader.next() {
                Some(Ok(letter)) => io.push(letter),
                Some(Err(ReadError::Torn { offset, bytes })) => {
                    tracing::warn!(
                        offset,
                        bytes,
                        "dead-letter file ends in a torn record; replay stops there"
                    );
                    return Step::Finished;
                }
                Some(Err(e)) => {
                    let message = format!("dead-letter file {}: {e}", self.reader.path().display());
                    return Step::Failed(Failure::error(ErrorClass::Permanent, message));
                }
                None => return Step::Finished,
            }
        }
        Step::Continue
    }
}
