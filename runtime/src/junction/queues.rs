//! A junction's input queues in a checkpoint.
//!
//! At a checkpoint barrier a junction that pairs or orders its inputs (`zip`)
//! can hold elements that arrived before the barrier and that it cannot route
//! yet: their partners come after the barrier on the other input. Waiting for
//! them would never end (that input is held until the barrier passes), and
//! dropping them from the checkpoint would lose them on a restore. A junction
//! that gives a [`QueueCodec`] lets the barrier pass with its input queues as
//! they are: the queues are part of its snapshot, and a restore puts them back
//! in front of whatever its inputs send next.
//!
//! ```text
//!   input 0: a3 a4 | B(n) b… held          snapshot n = { junction state,
//!   input 1: (empty) | B(n)                                  queue 0: [a3, a4],
//!                                                              queue 1: [] }
//! ```

use std::collections::VecDeque;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::{Snapshot, StateError};

/// The version of the snapshot a junction with queued state writes: its own
/// state (if it keeps any) and its input queues.
const QUEUED_VERSION: u32 = 1;

/// Encodes and decodes the elements waiting in a junction's input queues, for
/// junctions whose queues are part of their checkpoint (see the module docs and
/// [`Junction::queue_codec`](super::Junction::queue_codec)). Made for any serde
/// element type by [`QueueCodec::serde`].
///
/// # Examples
///
/// ```
/// use weir_runtime::junction::QueueCodec;
///
/// let codec = QueueCodec::<u64>::serde();
/// # drop(codec);
/// ```
pub struct QueueCodec<T> {
    encode: EncodeQueues<T>,
    decode: DecodeQueues<T>,
}

/// Encodes every input's queue, in port order.
type EncodeQueues<T> = fn(&[&VecDeque<T>]) -> Result<Vec<u8>, StateError>;
/// Decodes them, refusing more than the given number of bytes.
type DecodeQueues<T> = fn(&[u8], usize) -> Result<Vec<Vec<T>>, StateError>;

impl<T> Clone for QueueCodec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for QueueCodec<T> {}

impl<T> std::fmt::Debug for QueueCodec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueCodec").finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> QueueCodec<T> {
    /// The card's codec (bincode 2, decoded with the checkpoint's size limit).
    pub fn serde() -> Self {
        QueueCodec {
            encode: |queues| crate::checkpoint::encode(queues),
            decode: |bytes, limit| crate::checkpoint::decode(bytes, limit),
        }
    }
}

/// What a junction with queued state snapshots: its own state and its queues.
#[derive(serde::Serialize, serde::Deserialize)]
struct Queued {
    junction: Option<Snapshot>,
    queues: Vec<u8>,
}

impl<T> QueueCodec<T> {
    /// The snapshot of a junction whose own state is `junction` and whose input
    /// queues are `queues`.
    pub(crate) fn snapshot(
        &self,
        junction: Option<Snapshot>,
        queues: &[&VecDeque<T>],
    ) -> Result<Snapshot, StateError> {
        let queues = (self.encode)(queues)?;
        Snapshot::of(QUEUED_VERSION, &Queued { junction, queues })
    }

    /// The junction's own state and its queues, from a snapshot made by
    /// [`snapshot`](Self::snapshot); `inputs` queues are expected.
    pub(crate) fn restore(
        &self,
        snapshot: &Snapshot,
        inputs: usize,
        ctx: &crate::checkpoint::RestoreContext,
    ) -> Result<(Option<Snapshot>, Vec<Vec<T>>), StateError> {
        let queued: Queued = snapshot.decode(QUEUED_VERSION, ctx)?;
        let queues = (self.decode)(&queued.queues, ctx.max_state_bytes)?;
        if queues.len() != inputs {
            return Err(StateError::Shape(format!(
                "the checkpoint holds {} input queues, the junction has {inputs} inputs",
                queues.len()
            )));
        }
        Ok((queued.junction, queues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::RestoreContext;

    #[test]
    fn queues_and_state_come_back_as_they_were() {
        let codec = QueueCodec::<String>::serde();
        let a: VecDeque<String> = ["x".to_owned(), "y".to_owned()].into();
        let b: VecDeque<String> = VecDeque::new();
        let own = Snapshot::of(3, &7_u64).unwrap();
        let s = codec.snapshot(Some(own.clone()), &[&a, &b]).unwrap();
        let (back, queues) = codec.restore(&s, 2, &RestoreContext::default()).unwrap();
        assert_eq!(back, Some(own));
        assert_eq!(queues, vec![vec!["x".to_owned(), "y".to_owned()], vec![]]);
        let err = codec
            .restore(&s, 3, &RestoreContext::default())
            .unwrap_err();
        assert!(matches!(err, StateError::Shape(_)), "{err}");
    }

    #[test]
    fn queues_over_the_limit_are_refused_before_they_are_decoded() {
        let codec = QueueCodec::<u64>::serde();
        let big: VecDeque<u64> = (0..10_000).collect();
        let s = codec.snapshot(None, &[&big]).unwrap();
        let ctx = RestoreContext {
            max_state_bytes: 1_000,
            ..RestoreContext::default()
        };
        assert!(matches!(
            codec.restore(&s, 1, &ctx),
            Err(StateError::TooLarge { .. })
        ));
    }
}
