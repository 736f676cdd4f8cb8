//! End-to-end acknowledgement: [`Delivery`], [`AckToken`] and [`DeliveryInfo`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use serde::{Deserialize, Serialize};

use crate::Nats;
pub(crate) use crate::ack_core::Decision;
use crate::ack_core::{ACK, NAK, Resolve, Shared, TERM, UNDECIDED};

/// Where a message came from and how often the broker delivered it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    /// The subject the message was published on.
    pub subject: String,
    /// The message's sequence number in its stream.
    pub stream_sequence: u64,
    /// How many times the broker delivered it, this delivery included (1 the
    /// first time; more means it was redelivered).
    pub delivered: u64,
    /// The consumer's `max_deliver`, if it has one: the delivery on which
    /// `delivered == max_deliver` is the last.
    pub max_deliver: Option<u64>,
}

impl DeliveryInfo {
    /// Whether the broker delivered the message before (`delivered > 1`).
    pub fn redelivered(&self) -> bool {
        self.delivered > 1
    }

    /// Whether this is the last delivery the broker will make.
    pub fn is_last_delivery(&self) -> bool {
        self.max_deliver.is_some_and(|max| self.delivered >= max)
    }
}

/// A message taken from JetStream, with its payload, where it came from, and the
/// token that acknowledges it.
///
/// The broker hears about the message once every holder of its token has decided:
/// clones (a broadcast sends one to each branch) are holders too. The message is
///
/// - **acked** when every holder committed ([`AckToken::commit`]) or filtered it
///   ([`AckToken::filtered`]);
/// - **terminated** (`AckKind::Term`, never redelivered) when a holder
///   dead-lettered it ([`AckToken::term`]) and none was dropped undecided;
/// - **nakked** (redelivered after a delay) when a holder asked for a retry
///   ([`AckToken::nak`]) and none terminated it or was dropped undecided;
/// - **left unacked** when a holder was dropped without deciding: an element
///   abandoned at shutdown, destroyed by a failure, or lost with its process. The
///   broker redelivers it after the consumer's `ack_wait`.
///
/// # Examples
///
/// ```
/// use weir_nats::Delivery;
///
/// let d = Delivery::detached(7_u32);
/// let twice = d.map(|x| x * 2);
/// assert_eq!(twice.payload, 14);
/// twice.ack.commit();
/// ```
#[derive(Debug)]
pub struct Delivery<T> {
    /// The message's payload (transformed by [`map`](Self::map)).
    pub payload: T,
    /// Where it came from.
    pub info: DeliveryInfo,
    /// Its acknowledgement.
    pub ack: AckToken,
}

impl<T> Delivery<T> {
    /// A delivery that no broker message stands behind: its token decides
    /// nothing. For elements that did not come from JetStream but go to a
    /// [`publish`](crate::NatsFlowExt::publish) sink.
    pub fn detached(payload: T) -> Self {
        Delivery {
            payload,
            info: DeliveryInfo::default(),
            ack: AckToken::detached(),
        }
    }

    /// Transforms the payload, keeping the token.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Delivery<U> {
        Delivery {
            payload: f(self.payload),
            info: self.info,
            ack: self.ack,
        }
    }

    /// Commits this holder's share and returns the payload.
    pub fn commit(self) -> T {
        self.ack.commit();
        self.payload
    }
}

/// A second holder of the same message: it must decide too.
impl<T: Clone> Clone for Delivery<T> {
    fn clone(&self) -> Self {
        Delivery {
            payload: self.payload.clone(),
            info: self.info.clone(),
            ack: self.ack.clone(),
        }
    }
}

/// One holder's share of a message's acknowledgement; see [`Delivery`].
///
/// Each clone is a holder. A holder decides once, with [`commit`](Self::commit),
/// [`filtered`](Self::filtered), [`nak`](Self::nak) or [`term`](Self::term);
/// dropping it without deciding vetoes the acknowledgement. When the last holder
/// has decided, the decision is sent to the broker at once (it does not wait for
/// the tokens to be dropped).
pub struct AckToken {
    shared: Option<Arc<Shared>>,
    decided: bool,
}

impl AckToken {
    pub(crate) fn new(nats: Nats, message: jetstream::Message) -> Self {
        AckToken::with_resolver(Box::new(move |decision| {
            let counters = nats.counters();
            let kind = match decision {
                Decision::Ack => {
                    let _ = counters.acked.add(1);
                    AckKind::Ack
                }
                Decision::Nak(delay) => {
                    let _ = counters.naked.add(1);
                    AckKind::Nak(delay)
                }
                Decision::Term => {
                    let _ = counters.termed.add(1);
                    AckKind::Term
                }
                Decision::Unacked => {
                    let _ = counters.unacked.add(1);
                    return;
                }
            };
            nats.send_ack(&message, kind);
        }))
    }

    pub(crate) fn with_resolver(resolve: Resolve) -> Self {
        AckToken {
            shared: Some(Arc::new(Shared::new(resolve))),
            decided: false,
        }
    }

    /// A token that stands for no message.
    ///
    /// # Examples
    ///
    /// ```
    /// weir_nats::AckToken::detached().commit();
    /// ```
    pub fn detached() -> Self {
        AckToken {
            shared: None,
            decided: false,
        }
    }

    /// This holder is done: the element was delivered, written, committed.
    pub fn commit(mut self) {
        self.decide(ACK, Duration::ZERO);
    }

    /// This holder dropped the element on purpose (a filter): done, like a commit.
    pub fn filtered(mut self) {
        self.decide(ACK, Duration::ZERO);
    }

    /// This holder failed in a way worth retrying: the broker should redeliver the
    /// message after `delay` (the longest delay asked for wins).
    pub fn nak(mut self, delay: Duration) {
        self.decide(NAK, delay);
    }

    /// This holder gave up on the message (it was dead-lettered): the broker
    /// must never redeliver it.
    pub fn term(mut self) {
        self.decide(TERM, Duration::ZERO);
    }

    /// Whether a holder has already asked for something other than an ack: a
    /// nak, a term, or a veto (dropped undecided). False for a detached token.
    pub(crate) fn objected(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.objected())
    }

    fn decide(&mut self, verdict: u8, delay: Duration) {
        if self.decided {
            return;
        }
        self.decided = true;
        if let Some(shared) = &self.shared {
            shared.decide(verdict, delay);
        }
    }
}

impl Clone for AckToken {
    fn clone(&self) -> Self {
        if let Some(shared) = &self.shared {
            shared.join();
        }
        AckToken {
            shared: self.shared.clone(),
            decided: false,
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        self.decide(UNDECIDED, Duration::ZERO);
    }
}

impl fmt::Debug for AckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckToken")
            .field("detached", &self.shared.is_none())
            .field("decided", &self.decided)
            .finish()
    }
}

/// What a poison message leaves in the dead-letter queue: its payload and where
/// it came from (`info.delivered` is its delivery count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received<T> {
    /// The payload.
    pub payload: T,
    /// Where it came from and how often it was delivered.
    pub info: DeliveryInfo,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use proptest::prelude::*;

    use super::{AckToken, Decision};

    #[derive(Debug, Clone, Copy)]
    enum Choice {
        Commit,
        Filter,
        Nak(u64),
        Term,
        Drop,
    }

    fn choice() -> impl Strategy<Value = Choice> {
        prop_oneof![
            Just(Choice::Commit),
            Just(Choice::Filter),
            (1..500_u64).prop_map(Choice::Nak),
            Just(Choice::Term),
            Just(Choice::Drop),
        ]
    }

    fn recorded() -> (AckToken, Arc<Mutex<Vec<Decision>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let token = AckToken::with_resolver(Box::new(move |d| sink.lock().unwrap().push(d)));
        (token, log)
    }

    proptest! {
        /// Whatever the holders decide and in whatever order, the broker hears
        /// exactly once, only after the last holder decided, and the decision is
        /// the strongest one: a veto (undecided drop) > term > nak > ack.
        #[test]
        fn the_last_holder_resolves_once_with_the_strongest_decision(
            choices in proptest::collection::vec(choice(), 1..6),
            order in any::<u64>(),
        ) {
            let (first, log) = recorded();
            let mut tokens: Vec<(AckToken, Choice)> = Vec::new();
            for c in &choices[1..] {
                tokens.push((first.clone(), *c));
            }
            tokens.push((first, choices[0]));
            // A deterministic shuffle from the generated seed.
            let mut seed = order;
            for i in (1..tokens.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = usize::try_from(seed >> 33).unwrap() % (i + 1);
                tokens.swap(i, j);
            }
            let n = tokens.len();
            for (done, (token, c)) in tokens.into_iter().enumerate() {
                match c {
                    Choice::Commit => token.commit(),
                    Choice::Filter => token.filtered(),
                    Choice::Nak(ms) => token.nak(Duration::from_millis(ms)),
                    Choice::Term => token.term(),
                    Choice::Drop => drop(token),
                }
                let expected_calls = usize::from(done + 1 == n);
                prop_assert_eq!(log.lock().unwrap().len(), expected_calls);
            }
            let expected = if choices.iter().any(|c| matches!(c, Choice::Drop)) {
                Decision::Unacked
            } else if choices.iter().any(|c| matches!(c, Choice::Term)) {
                Decision::Term
            } else if let Some(ms) = choices.iter().filter_map(|c| match c {
                Choice::Nak(ms) => Some(*ms),
                _ => None,
            }).max() {
                Decision::Nak(Some(Duration::from_millis(ms)))
            } else {
                Decision::Ack
            };
            prop_assert_eq!(log.lock().unwrap().clone(), vec![expected]);
        }
    }

    #[test]
    fn a_detached_token_decides_nothing() {
        let token = AckToken::detached();
        let copy = token.clone();
        token.commit();
        drop(copy);
    }

    #[test]
    fn resolving_does_not_wait_for_the_tokens_to_be_dropped() {
        let (token, log) = recorded();
        let copy = token.clone();
        copy.commit();
        assert!(log.lock().unwrap().is_empty());
        token.nak(Duration::from_millis(5));
        assert_eq!(
            *log.lock().unwrap(),
            [Decision::Nak(Some(Duration::from_millis(5)))]
        );
    }
}
