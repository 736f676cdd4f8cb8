//! The checkpoint holds of a [`JetStreamSource`](crate::JetStreamSource) with
//! [`Acks::OnCheckpoint`](crate::Acks::OnCheckpoint): one extra share of every
//! message's [`AckToken`], released when a checkpoint that covers the message is
//! durable.

use std::collections::{HashSet, VecDeque};

use crate::AckToken;

/// A message the source emitted and holds a share of.
struct Held {
    token: AckToken,
    /// Its stream sequence.
    sequence: u64,
    /// The reply subject its acknowledgement goes to.
    reply: String,
}

/// A message a checkpoint covers and that may not be acknowledged yet: its stream
/// sequence and its acknowledgement's reply subject. What the source's snapshot
/// holds, and what a restore acknowledges again.
pub(crate) type Covered = (u64, String);

/// The holds, in the order the messages were emitted, and the barriers between
/// them.
#[derive(Default)]
pub(crate) struct Holds {
    held: VecDeque<Held>,
    /// Messages emitted so far; the front of `held` is number `released`.
    emitted: u64,
    released: u64,
    /// `(checkpoint, emitted before its barrier)`, oldest first.
    barriers: VecDeque<(u64, u64)>,
    /// The stream sequences in `held`.
    sequences: HashSet<u64>,
}

impl Holds {
    /// Holds `token`'s share of the message `sequence`, emitted now.
    pub(crate) fn hold(&mut self, token: AckToken, sequence: u64, reply: String) {
        self.sequences.insert(sequence);
        self.held.push_back(Held {
            token,
            sequence,
            reply,
        });
        self.emitted += 1;
    }

    /// Whether message `sequence` is held: a delivery of it is an earlier copy
    /// still waiting for its checkpoint (the broker redelivered it because
    /// `ack_wait` ran out).
    pub(crate) fn is_held(&self, sequence: u64) -> bool {
        self.sequences.contains(&sequence)
    }

    /// Messages held.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// The reply subjects of the messages held.
    pub(crate) fn replies(&self) -> impl Iterator<Item = &str> {
        self.held.iter().map(|h| h.reply.as_str())
    }

    /// Barrier `checkpoint` passes the source: everything emitted so far is
    /// before it. Returns the messages it covers that are still held and that no
    /// holder objected to (a nak, a term or a veto keeps its own fate on a
    /// restore).
    pub(crate) fn barrier(&mut self, checkpoint: u64) -> Vec<Covered> {
        if self.barriers.back().is_none_or(|&(id, _)| id < checkpoint) {
            self.barriers.push_back((checkpoint, self.emitted));
        }
        self.held
            .iter()
            .filter(|h| !h.token.objected())
            .map(|h| (h.sequence, h.reply.clone()))
            .collect()
    }

    /// Checkpoint `checkpoint` is durable: releases the holds of every message
    /// before its barrier (and so before every earlier one). Returns how many were
    /// released.
    pub(crate) fn committed(&mut self, checkpoint: u64) -> usize {
        let mut upto = None;
        while let Some(&(id, emitted)) = self.barriers.front() {
            if id > checkpoint {
                break;
            }
            upto = Some(emitted);
            self.barriers.pop_front();
        }
        let Some(upto) = upto else { return 0 };
        let mut n = 0;
        while self.released < upto {
            let Some(held) = self.held.pop_front() else {
                break;
            };
            self.sequences.remove(&held.sequence);
            held.token.commit();
            self.released += 1;
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::Holds;
    use crate::AckToken;
    use crate::ack::Decision;

    /// A token whose decision is logged under `sequence`.
    fn token(sequence: u64, log: &Arc<Mutex<Vec<(u64, Decision)>>>) -> AckToken {
        let log = Arc::clone(log);
        AckToken::with_resolver(Box::new(move |d| log.lock().unwrap().push((sequence, d))))
    }

    /// Emits `sequences`: the source holds one share, the pipeline (here: the
    /// test) the other, which it commits at once.
    fn emit(
        holds: &mut Holds,
        sequences: std::ops::Range<u64>,
        log: &Arc<Mutex<Vec<(u64, Decision)>>>,
    ) {
        for s in sequences {
            let t = token(s, log);
            holds.hold(t.clone(), s, format!("$JS.ACK.s.c.1.{s}.{s}.0.0"));
            t.commit();
        }
    }

    #[test]
    fn a_message_is_acked_only_when_the_checkpoint_after_it_is_durable() {
        let log = Arc::default();
        let mut holds = Holds::default();
        emit(&mut holds, 1..4, &log);
        let covered = holds.barrier(1);
        assert_eq!(covered.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 2, 3]);
        emit(&mut holds, 4..6, &log);
        assert!(
            log.lock().unwrap().is_empty(),
            "nothing acked before a commit"
        );
        // Checkpoint 2's barrier is after 5; checkpoint 1 commits 1..=3 only.
        let covered = holds.barrier(2);
        assert_eq!(covered.len(), 5);
        assert_eq!(holds.committed(1), 3);
        assert_eq!(
            *log.lock().unwrap(),
            [(1, Decision::Ack), (2, Decision::Ack), (3, Decision::Ack)]
        );
        assert!(holds.is_held(4) && !holds.is_held(3));
        assert_eq!(holds.len(), 2);
    }

    #[test]
    fn a_commit_covers_every_earlier_checkpoint_even_a_failed_one() {
        let log = Arc::default();
        let mut holds = Holds::default();
        emit(&mut holds, 1..3, &log);
        let _ = holds.barrier(1);
        emit(&mut holds, 3..5, &log);
        let _ = holds.barrier(2);
        emit(&mut holds, 5..6, &log);
        // Checkpoint 1 failed (no commit for it); 2 commits all before its barrier.
        assert_eq!(holds.committed(2), 4);
        assert_eq!(log.lock().unwrap().len(), 4);
        assert!(holds.is_held(5));
        // A late or repeated commit releases nothing more.
        assert_eq!(holds.committed(2), 0);
        assert_eq!(holds.committed(1), 0);
    }

    #[test]
    fn a_snapshot_leaves_out_what_a_holder_objected_to() {
        let log = Arc::default();
        let mut holds = Holds::default();
        let naked = token(7, &log);
        holds.hold(naked.clone(), 7, "r7".into());
        naked.nak(Duration::from_millis(1));
        emit(&mut holds, 8..9, &log);
        assert_eq!(holds.barrier(1), [(8, "$JS.ACK.s.c.1.8.8.0.0".to_owned())]);
        holds.committed(1);
        let log = log.lock().unwrap();
        assert!(log.contains(&(7, Decision::Nak(Some(Duration::from_millis(1))))));
        assert!(log.contains(&(8, Decision::Ack)));
    }

    #[test]
    fn dropped_holds_leave_their_messages_unacknowledged() {
        let log = Arc::default();
        let mut holds = Holds::default();
        emit(&mut holds, 1..3, &log);
        let _ = holds.barrier(1);
        drop(holds);
        assert_eq!(
            *log.lock().unwrap(),
            [(1, Decision::Unacked), (2, Decision::Unacked)]
        );
    }
}
