//! One connection of a [`WsSource`](super::WsSource): read a message, hand it
//! to the pipeline, and only then read the next.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use weir_supervisor::dead_letter::DeadLetter;
use weir_supervisor::{ErrorClass, Failure};

use super::handshake::Ws;
use super::session::{self, Alarm, CLOSE_WAIT, End, Liveness};
use super::source::{Decode, OnBadMessage, Shared};
use super::stats::SourceCounters;
use super::{BadKind, BadMessage, WsMessage, WsPayload};

/// A message read and not yet accepted: counted `abandoned` if the session is
/// dropped (the server's runtime ends) before the pipeline took it.
struct Pending<'a> {
    counters: &'a SourceCounters,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.counters.abandoned.add(1);
        }
    }
}

/// Serves one connection until it ends.
pub(crate) async fn read<T: Send + 'static>(
    shared: Arc<Shared<T>>,
    mut ws: Ws,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let options = &shared.options;
    let counters = &shared.counters;
    let mut liveness = Liveness::new(options);
    // Set once this side sent its close frame: read on (messages still count)
    // until the peer's close frame, or this deadline.
    let mut closing: Option<Instant> = None;
    let end = loop {
        let next = tokio::select! {
            biased;
            changed = stopped.changed(), if closing.is_none() => {
                // Changed, or the server dropped the sender: stopping either way.
                let _ = changed;
                let end = End::Closing(CloseCode::Away, "the server is shutting down");
                if !session::send_close(&mut ws, &end, options.write_timeout).await {
                    break end;
                }
                closing = Some(Instant::now() + CLOSE_WAIT);
                continue;
            }
            next = ws.next() => next,
            () = deadline(closing) => break End::Closed,
            alarm = liveness.alarm(), if closing.is_none() => match alarm {
                Alarm::Idle => break End::Idle,
                Alarm::Ping => {
                    if !session::ping(&mut ws, options.write_timeout, &counters.conn).await {
                        break End::WriteTimeout;
                    }
                    liveness.pinged();
                    continue;
                }
            },
        };
        liveness.heard();
        let payload = match next {
            None => break End::Closed,
            Some(Err(e)) => break End::from_error(e),
            Some(Ok(Message::Text(text))) => WsPayload::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(bytes))) => WsPayload::Binary(Vec::from(bytes)),
            Some(Ok(Message::Pong(_))) => {
                let _ = counters.conn.pongs.add(1);
                continue;
            }
            // Pings are answered by tungstenite on the next read; a close frame
            // is answered too, and the stream then ends.
            Some(Ok(_)) => continue,
        };
        let _ = counters.received.add(1);
        let _ = counters.bytes.add(payload.len() as u64);
        let message = WsMessage { peer, payload };
        let element = match &shared.decode {
            Decode::Whole(f) => f(message),
            Decode::Fallible(f) => match f(&message) {
                Ok(element) => element,
                Err(why) => {
                    let _ = counters.undecodable.add(1);
                    let reason = format!("undecodable message: {why}");
                    tracing::debug!(%peer, %reason, "websocket source: bad message");
                    let on_bad = shared.on_bad;
                    dead_letter(
                        &shared,
                        peer,
                        BadKind::Undecodable,
                        reason.clone(),
                        Some(message.payload),
                    );
                    if on_bad == OnBadMessage::Close && closing.is_none() {
                        break End::Protocol(CloseCode::Invalid, reason);
                    }
                    continue;
                }
            },
        };
        let mut pending = Pending {
            counters,
            armed: true,
        };
        // Nothing more is read from this peer until the pipeline has room: a
        // slow pipeline slows its producers through TCP.
        if shared.ingress.send(element).await.is_err() {
            drop(pending);
            if closing.is_some() {
                continue;
            }
            break End::Closing(CloseCode::Away, "the pipeline no longer accepts messages");
        }
        pending.armed = false;
        let _ = counters.accepted.add(1);
        // Waiting for room is the pipeline's doing, not the peer's silence.
        liveness.heard();
    };
    end.count(&counters.conn);
    match &end {
        End::TooLarge { size, max } => {
            let reason = format!("message of {size} bytes over max_message_bytes ({max})");
            tracing::debug!(%peer, %reason, "websocket source: connection closed");
            dead_letter(&shared, peer, BadKind::TooLarge, reason, None);
        }
        End::Utf8(reason) => {
            tracing::debug!(%peer, %reason, "websocket source: connection closed");
            dead_letter(&shared, peer, BadKind::InvalidUtf8, reason.clone(), None);
        }
        End::Protocol(_, reason) | End::Broken(reason) => {
            tracing::debug!(%peer, %reason, "websocket source: connection closed");
        }
        _ => {}
    }
    if session::send_close(&mut ws, &end, options.write_timeout).await {
        // The peer's close frame, or the deadline; what still arrives is not
        // taken (the session is over), and counted.
        let late = session::linger(&mut ws).await;
        if late > 0 {
            let _ = counters.received.add(late);
            let _ = counters.abandoned.add(late);
        }
    }
}

/// Waits for `at`; never, without it.
async fn deadline(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Counts a bad message and offers it to the dead-letter sink, if there is one.
fn dead_letter<T>(
    shared: &Shared<T>,
    peer: SocketAddr,
    kind: BadKind,
    reason: String,
    payload: Option<WsPayload>,
) {
    let Some(sink) = &shared.dead_letters else {
        return;
    };
    let counters = &shared.counters;
    let index = counters.letters.fetch_add(1, Ordering::Relaxed);
    let failure = Failure::error(ErrorClass::Permanent, reason.clone());
    let letter = DeadLetter::new(
        BadMessage {
            peer,
            kind,
            reason,
            payload,
        },
        "websocket",
        "",
        &failure,
        1,
        index,
    );
    if sink.offer(letter).is_err() {
        let _ = counters.dead_letters_refused.add(1);
    }
}
