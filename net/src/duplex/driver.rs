//! The driver of a duplex connection: a reader task and a writer task on the
//! arbiter of the stage that first steps, sharing [`Shared`] with both stages.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};
use weir_supervisor::ErrorClass;

use super::protocol::{Message, max_frame};
use super::shared::Shared;
use crate::frame::{Decoder, Framing};
use crate::stream::NetStream;

/// Starts the reader and writer tasks, once (the first stage to step does it).
pub(crate) fn ensure_started(shared: &Arc<Shared>) {
    let mut state = shared.lock();
    let Some(stream) = state.stream.take() else {
        return;
    };
    #[cfg(feature = "tls")]
    let tls = state.tls.take();
    drop(state);
    let stream = stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(stream));
    let stream = match stream {
        Ok(stream) => stream,
        Err(error) => {
            return shared.fail(
                ErrorClass::Transient,
                format!("duplex peer {}: cannot start: {error}", shared.peer),
            );
        }
    };
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            if let Some(stream) = handshake(&shared, tls, stream).await {
                start(&shared, NetStream::Tls(Box::new(stream)));
            }
        });
        return;
    }
    start(shared, NetStream::Plain(stream));
}

fn start(shared: &Arc<Shared>, stream: NetStream) {
    let (read, write) = tokio::io::split(stream);
    tokio::spawn(read_loop(Arc::clone(shared), read));
    tokio::spawn(write_loop(Arc::clone(shared), write));
}

/// The TLS handshake, within the peer timeout; a failure fails the connection
/// (class `Permanent` when rustls refused the peer, else `Transient` or
/// `Timeout`) before any message is read or written.
#[cfg(feature = "tls")]
async fn handshake(
    shared: &Shared,
    tls: super::shared::Handshake,
    stream: tokio::net::TcpStream,
) -> Option<tokio_rustls::TlsStream<tokio::net::TcpStream>> {
    use super::shared::Handshake;
    let peer = shared.peer;
    let limit = shared.config.peer_timeout;
    let done = match tls {
        Handshake::Client(connector) => {
            let connect = connector
                .inner
                .connect(connector.server_name.clone(), stream);
            timeout(limit, async { connect.await.map(Into::into) }).await
        }
        Handshake::Server(acceptor) => {
            let accept = acceptor.inner.accept(stream);
            timeout(limit, async { accept.await.map(Into::into) }).await
        }
    };
    let (class, message) = match done {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(error)) if crate::tls::is_refusal(&error) => (
            ErrorClass::Permanent,
            format!("duplex peer {peer}: TLS handshake refused: {error}"),
        ),
        Ok(Err(error)) => (
            ErrorClass::Transient,
            format!("duplex peer {peer}: TLS handshake failed: {error}"),
        ),
        Err(_) => (
            ErrorClass::Timeout,
            format!(
                "duplex peer {peer}: TLS handshake not done within the peer_timeout of {limit:?}"
            ),
        ),
    };
    shared.fail(class, message);
    None
}

/// Reads and applies the peer's messages until the connection ends or fails.
/// Nothing read within `peer_timeout` fails it (class `Timeout`).
async fn read_loop(shared: Arc<Shared>, mut read: impl AsyncRead + Unpin) {
    let peer = shared.peer;
    let config = shared.config.clone();
    let mut decoder = Decoder::new(Framing::LengthPrefixed, max_frame(config.max_payload));
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        {
            let state = shared.lock();
            if state.failure.is_some() || state.closed {
                return;
            }
        }
        let n = match timeout(config.peer_timeout, read.read(&mut buf)).await {
            Err(_) => {
                let message = format!(
                    "duplex peer {peer} silent: nothing received within the peer_timeout of {:?}",
                    config.peer_timeout
                );
                return shared.fail(ErrorClass::Timeout, message);
            }
            Ok(Err(error)) => {
                let message = format!("duplex peer {peer}: read failed: {error}");
                return shared.fail(ErrorClass::Transient, message);
            }
            Ok(Ok(0)) => return end_of_stream(&shared, &decoder),
            Ok(Ok(n)) => n,
        };
        let mut input = &buf[..n];
        loop {
            let body = match decoder.decode(&mut input) {
                Ok(Some(body)) => body,
                Ok(None) => break,
                Err(error) => {
                    let message = format!("duplex peer {peer}: malformed frame: {error}");
                    return shared.fail(ErrorClass::Permanent, message);
                }
            };
            let applied = match Message::decode(&body, config.max_payload) {
                Ok(message) => apply(&shared, message),
                Err(error) => Err((
                    ErrorClass::Permanent,
                    format!("duplex peer {peer}: malformed frame: {error}"),
                )),
            };
            if let Err((class, message)) = applied {
                return shared.fail(class, message);
            }
        }
    }
}

/// The peer closed its side: clean only once both directions ended and every
/// element sent was acknowledged.
fn end_of_stream(shared: &Shared, decoder: &Decoder) {
    let peer = shared.peer;
    if let Err(error) = decoder.finish() {
        let message = format!("duplex peer {peer}: malformed frame: {error}");
        return shared.fail(ErrorClass::Permanent, message);
    }
    let state = shared.lock();
    let unacked = state.assigned - state.acked;
    let clean = state.peer_ended && state.end_sent && unacked == 0;
    drop(state);
    if !clean {
        let message = format!(
            "duplex peer {peer} closed the connection before the end ({unacked} elements sent and unacknowledged)"
        );
        shared.fail(ErrorClass::Transient, message);
    }
}

type Refusal = (ErrorClass, String);

/// Applies one message of the peer to the state; a protocol violation is an
/// error naming it.
fn apply(shared: &Shared, message: Message) -> Result<(), Refusal> {
    let peer = shared.peer;
    let violation = |what: String| {
        (
            ErrorClass::Permanent,
            format!("duplex peer {peer}: protocol violation: {what}"),
        )
    };
    let mut state = shared.lock();
    let mut wake_writer = false;
    match message {
        Message::Data { seq, payload } => {
            if state.peer_ended {
                return Err(violation(format!("DATA {seq} after END")));
            }
            if seq != state.received {
                return Err(violation(format!(
                    "DATA seq {seq}, expected {}",
                    state.received
                )));
            }
            if state.received >= state.granted {
                return Err(violation(format!(
                    "DATA {seq} beyond the granted window ({} granted)",
                    state.granted
                )));
            }
            state.inbox.push_back(payload);
            state.received += 1;
            state.max_buffered = state.max_buffered.max(state.inbox.len() as u64);
            if let Some(waker) = state.source_waker.take() {
                waker.wake();
            }
        }
        Message::Ack { upto } => {
            if upto < state.acked || upto > state.written {
                return Err(violation(format!(
                    "ACK up to {upto}, but {} were sent and {} already acknowledged",
                    state.written, state.acked
                )));
            }
            state.acked = upto;
            wake_writer = true;
            if let Some(waker) = state.sink_waker.take() {
                waker.wake();
            }
        }
        Message::Credit { n } => {
            state.credit = state.credit.saturating_add(u64::from(n));
            if let Some(waker) = state.sink_waker.take() {
                waker.wake();
            }
        }
        Message::Ping => {
            state.pong_due = true;
            wake_writer = true;
        }
        Message::Pong => {}
        Message::End { total } => {
            if state.peer_ended {
                return Err(violation("a second END".to_owned()));
            }
            if total != state.received {
                return Err(violation(format!(
                    "END says {total} elements were sent, {} were received",
                    state.received
                )));
            }
            state.peer_ended = true;
            wake_writer = true;
            if let Some(waker) = state.source_waker.take() {
                waker.wake();
            }
        }
        Message::Error { reason } => {
            return Err((
                ErrorClass::Transient,
                format!("duplex peer {peer} reported an error: {reason}"),
            ));
        }
    }
    drop(state);
    if wake_writer {
        shared.writer.notify_one();
    }
    Ok(())
}

/// Writes what the state asks for (credit, ACKs, DATA, END, PONG), a PING when
/// nothing was written for a heartbeat, and ERROR once the connection failed.
async fn write_loop(shared: Arc<Shared>, mut write: impl AsyncWrite + Unpin) {
    let peer = shared.peer;
    let config = shared.config.clone();
    let max = config.max_payload;
    let mut wire = Vec::new();
    let mut last_write = Instant::now();
    // The initial window: the peer may send this many before any ACK.
    let _ = Message::Credit { n: config.window }.encode(max, &mut wire);
    loop {
        let mut done = false;
        let failed = {
            let mut state = shared.lock();
            let reason = if let Some((_, reason)) = &state.failure {
                Some(reason.clone())
            } else if state.source_cancelled && !(state.peer_ended && state.inbox.is_empty()) {
                Some(format!(
                    "duplex peer {peer}: the receiving stage stopped before the peer's END"
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                // What was handed on is acknowledged before the ERROR, so that
                // the peer counts it delivered.
                let ack = (state.delivered > state.ack_sent).then_some(state.delivered);
                state.ack_sent = state.delivered;
                Some((reason, ack))
            } else {
                if std::mem::take(&mut state.pong_due) {
                    let _ = Message::Pong.encode(max, &mut wire);
                }
                if state.delivered > state.ack_sent {
                    let n = state.delivered - state.ack_sent;
                    let _ = Message::Ack {
                        upto: state.delivered,
                    }
                    .encode(max, &mut wire);
                    // `n` is at most the window, a u32.
                    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
                    let _ = Message::Credit { n: n32 }.encode(max, &mut wire);
                    state.ack_sent = state.delivered;
                    state.granted += u64::from(n32);
                }
                while let Some(payload) = state.queue.pop_front() {
                    let seq = state.written;
                    // Checked against max_payload when the sink took it.
                    let _ = Message::Data { seq, payload }.encode(max, &mut wire);
                    state.written += 1;
                }
                if state.sink_done && state.queue.is_empty() && !state.end_sent {
                    let total = state.written;
                    let _ = Message::End { total }.encode(max, &mut wire);
                    state.end_sent = true;
                }
                done = state.end_sent
                    && state.acked == state.written
                    && state.peer_ended
                    && state.ack_sent == state.received;
                if wire.is_empty() && last_write.elapsed() >= config.heartbeat {
                    let _ = Message::Ping.encode(max, &mut wire);
                    state.pings_sent += 1;
                }
                None
            }
        };
        if let Some((reason, ack)) = failed {
            // Tell the peer, best effort, and stop.
            shared.fail(ErrorClass::Transient, reason.clone());
            let mut last = Vec::new();
            if let Some(upto) = ack {
                let _ = Message::Ack { upto }.encode(max, &mut last);
            }
            let _ = Message::Error { reason }.encode(max, &mut last);
            let _ = timeout(config.heartbeat, async {
                write.write_all(&last).await?;
                write.flush().await
            })
            .await;
            let _ = timeout(config.heartbeat, write.shutdown()).await;
            return;
        }
        if !wire.is_empty() {
            let written = async {
                write.write_all(&wire).await?;
                // TLS buffers records: they are on the wire only once flushed.
                write.flush().await
            };
            match timeout(config.peer_timeout, written).await {
                Ok(Ok(())) => last_write = Instant::now(),
                Ok(Err(error)) => {
                    let message = format!("duplex peer {peer}: write failed: {error}");
                    shared.fail(ErrorClass::Transient, message);
                }
                Err(_) => {
                    let message = format!(
                        "duplex peer {peer}: writing blocked for the peer_timeout of {:?}",
                        config.peer_timeout
                    );
                    shared.fail(ErrorClass::Timeout, message);
                }
            }
            wire.clear();
        }
        if done {
            let _ = timeout(config.peer_timeout, write.shutdown()).await;
            let mut state = shared.lock();
            if state.failure.is_none() {
                state.closed = true;
            }
            state.wake_stages();
            return;
        }
        let _ = timeout_at(last_write + config.heartbeat, shared.writer.notified()).await;
    }
}
