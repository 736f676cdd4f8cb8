//! A file dead-letter queue written in checkpoint order, so that a restore cuts
//! it back to exactly the letters of the elements before the checkpoint.
//!
//! A checkpointed pipeline (weir's runtime) replays, after a restore, every
//! element after its last complete checkpoint. A dead letter written for one of
//! those elements before the crash would be written again: the file would hold
//! it twice. So when a checkpointed pipeline supervises stages into a
//! [`SharedFileDlq`](super::SharedFileDlq), it *attaches* to the file
//! ([`DlqOrder`]), and from then on the file's contents follow the checkpoints'
//! barriers:
//!
//! - Every stage has an **epoch**: the last barrier it passed (weir's runtime
//!   reports each pass, and each stop, with [`DlqOrder::passed`] and
//!   [`DlqOrder::stopped`]). A letter a stage writes while it is in epoch *e*
//!   belongs to an element after barrier *e* and before barrier *e + 1*.
//! - A letter is appended at once when its stage's epoch is the lowest of all
//!   stages (no stage is behind it). A letter of a stage that is ahead — it has
//!   passed barrier *n*, another stage has not — is **held** in memory, encoded,
//!   until every stage has passed *n*.
//! - At the moment the last stage passes barrier *n* (or stops), the file holds
//!   the letters of every element before barrier *n*, from every stage, and none
//!   after: its [`DlqPosition`] then is checkpoint *n*'s **cut**
//!   ([`DlqOrder::cut`]). The held letters of epoch *n* are appended right after.
//!
//! This is a consistent cut whatever the threads do: a stage's own letters and
//! its barrier passes happen on its own thread, in order; the epochs, the
//! decision to append or hold and the capture of the cut are made under the
//! file's lock. Several stages may share the file, and may pass a barrier at
//! different times: a letter written between the passes of two stages is held
//! or appended according to its own stage's epoch, never by arrival time.
//!
//! A restore cuts the file back to the cut the checkpoint recorded
//! ([`DlqOrder::cut_back`], which first checks that the file still holds what it
//! held then), and the replayed elements write their letters once more: once.
//!
//! The held letters are bounded ([`SharedFileDlq::hold_limit`](super::SharedFileDlq::hold_limit)):
//! past the limit they are appended at once, and the checkpoints whose barriers
//! were in flight then get no cut ([`DlqCut::Unordered`]): a restore from one of
//! them leaves the file as it is (at least once), rather than hold more memory
//! or lose a letter.
//!
//! Which stage writes a letter is known from the thread: the runtime runs each
//! stage inside a [`StageScope`]. A letter offered from outside the attached
//! pipeline's stages (another thread, another pipeline) is refused
//! ([`DlqError::Foreign`]): it could not be placed
//! before or after a barrier, and a restore could cut it off.

mod engine;
#[cfg(test)]
mod engine_tests;
mod handle;
mod position;
mod scope;
#[cfg(test)]
mod test_log;

pub(crate) use engine::{Appender, Order};
pub use handle::DlqOrder;
pub(crate) use handle::OrderedFile;
pub use position::{DlqCut, DlqPosition};
pub(crate) use scope::current_stage;
pub use scope::{RunId, StageScope};

use super::DlqError;
