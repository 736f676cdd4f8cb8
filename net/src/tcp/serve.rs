//! The private engine of the TCP source: the accept loop and one task per
//! connection, feeding decoded frames into one bounded channel.
//!
//! Backpressure: a connection task awaits room in the channel before it reads
//! more from its socket, and the source stage takes from the channel only while
//! the pipeline has credit. So when the pipeline is full, sockets are not read and
//! TCP's window stops the peers.

use std::net::SocketAddr;
use std::sync::Arc;

use governor::RateLimiter;
use governor::state::{InMemoryState, NotKeyed};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};
use weir_supervisor::dead_letter::{DeadLetter, DeadLetterSink};
use weir_supervisor::{ErrorClass, Failure};

use super::stats::{Counters, bump};
use super::{BadInput, Frame, OverQuota, TcpSourceConfig};
use crate::frame::{Decoder, FrameError};
use crate::stream::NetStream;
use weir_operators::limit::clock::{TokioClock, TokioInstant};

type Limiter = RateLimiter<
    NotKeyed,
    InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<TokioInstant>,
>;

/// What the handle asks of the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Keep serving.
    Serve,
    /// Stop accepting; the stream ends when the open connections end.
    Close,
    /// Close everything now.
    Abort,
}

/// Everything the tasks share.
pub(crate) struct Shared {
    /// The address the source listens on (its logs and metrics name it).
    pub(crate) local_addr: SocketAddr,
    pub(crate) config: TcpSourceConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) dead_letters: Option<Arc<dyn DeadLetterSink<BadInput>>>,
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    frames: mpsc::Sender<Frame>,
    mut control: watch::Receiver<Control>,
) {
    let permits = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut connections = JoinSet::new();
    let mut listening = true;
    let mut control_open = true;
    while listening {
        tokio::select! {
            biased;
            changed = control.changed(), if control_open => {
                if changed.is_err() {
                    control_open = false;
                    continue;
                }
                match *control.borrow_and_update() {
                    Control::Serve => {}
                    Control::Close => listening = false,
                    Control::Abort => return,
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        shared.counters.opened();
                        connections.spawn(serve(
                            stream,
                            peer,
                            Arc::clone(&shared),
                            frames.clone(),
                            permit,
                        ));
                    }
                    Err(_) => {
                        // Closed at once: never more than max_connections open.
                        drop(stream);
                        bump(&shared.counters.refused, 1);
                    }
                },
                Err(error) => {
                    // Out of descriptors, or a connection reset before accept: wait a
                    // moment rather than spin, and go on.
                    bump(&shared.counters.io_errors, 1);
                    tracing::warn!(%error, "tcp source: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    drop(frames);
    // Closing: let the open connections finish, unless told to abort.
    loop {
        tokio::select! {
            changed = control.changed(), if control_open => {
                if changed.is_err() {
                    control_open = false;
                } else if *control.borrow_and_update() == Control::Abort {
                    return;
                }
            }
            next = connections.join_next() => if next.is_none() { return },
        }
    }
}

/// Why a connection ended.
enum End {
    Eof,
    Bad(FrameError),
    Idle,
    ReadTimeout,
    IoError,
    StreamGone,
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    frames: mpsc::Sender<Frame>,
    _permit: OwnedSemaphorePermit,
) {
    let Some(mut stream) = handshake(stream, peer, &shared).await else {
        shared.counters.closed();
        return;
    };
    let end = read_frames(&mut stream, peer, &shared, &frames).await;
    drop(stream);
    let counters = &shared.counters;
    match end {
        End::Eof | End::StreamGone => {}
        End::Idle => bump(&counters.idle_timeouts, 1),
        End::ReadTimeout => bump(&counters.read_timeouts, 1),
        End::IoError => bump(&counters.io_errors, 1),
        End::Bad(error) => report_bad(&shared, peer, error),
    }
    counters.closed();
}

/// The connection as the source reads it: plain, or TLS once the handshake
/// completed within the read timeout. `None`: the handshake failed (counted and
/// logged), and the connection is dropped before anything it sent is read.
async fn handshake(stream: TcpStream, peer: SocketAddr, shared: &Shared) -> Option<NetStream> {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &shared.config.tls {
        let accepted =
            tokio::time::timeout(shared.config.read_timeout, acceptor.inner.accept(stream)).await;
        let error = match accepted {
            Ok(Ok(tls)) => return Some(NetStream::Tls(Box::new(tls.into()))),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("timed out after {:?}", shared.config.read_timeout),
        };
        bump(&shared.counters.tls_handshake_failures, 1);
        tracing::warn!(
            addr = %shared.local_addr,
            %peer,
            %error,
            "tcp source: TLS handshake failed, connection refused"
        );
        return None;
    }
    let _ = (peer, shared);
    Some(NetStream::Plain(stream))
}

fn report_bad(shared: &Shared, peer: SocketAddr, error: FrameError) {
    let counters = &shared.counters;
    let index = counters.bad_frames.add(1);
    tracing::warn!(
        addr = %shared.local_addr,
        %peer,
        %error,
        "tcp source: bad frame, connection closed"
    );
    if let Some(sink) = &shared.dead_letters {
        let failure = Failure::error(ErrorClass::Permanent, error.to_string());
        let letter = DeadLetter::new(
            BadInput { peer, error },
            shared.config.name.clone(),
            "",
            &failure,
            1,
            index,
        );
        if sink.offer(letter).is_err() {
            bump(&counters.dead_letters_refused, 1);
        }
    }
}

async fn read_frames(
    stream: &mut (impl AsyncRead + Unpin),
    peer: SocketAddr,
    shared: &Shared,
    frames: &mpsc::Sender<Frame>,
) -> End {
    let config = &shared.config;
    let counters = &shared.counters;
    let mut decoder = Decoder::new(config.framing, config.max_frame);
    let quota = config.quota.and_then(|q| Some((q.governor()?, q.mode())));
    let limiter = quota.map(|(q, mode)| (Limiter::direct_with_clock(q, TokioClock), mode));
    let mut buf = vec![0_u8; config.read_chunk];
    let mut last_read = Instant::now();
    let mut frame_started: Option<Instant> = None;
    loop {
        let idle_at = last_read + config.idle_timeout;
        let read_at = frame_started.map(|at| at + config.read_timeout);
        let deadline = read_at.map_or(idle_at, |at| at.min(idle_at));
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) if read_at.is_some_and(|at| at <= idle_at) => return End::ReadTimeout,
            Err(_) => return End::Idle,
            Ok(Err(_)) => return End::IoError,
            Ok(Ok(0)) => {
                return match decoder.finish() {
                    Ok(()) => End::Eof,
                    Err(error) => End::Bad(error),
                };
            }
            Ok(Ok(n)) => n,
        };
        bump(&counters.bytes, n as u64);
        let had_partial = decoder.buffered() > 0;
        let mut completed = false;
        let mut input = &buf[..n];
        loop {
            let bytes = match decoder.decode(&mut input) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(error) => return End::Bad(error),
            };
            completed = true;
            if let Some((limiter, mode)) = &limiter
                && !admit(limiter, *mode, counters).await
            {
                continue;
            }
            if frames.send(Frame { peer, bytes }).await.is_err() {
                return End::StreamGone;
            }
            bump(&counters.frames, 1);
        }
        let now = Instant::now();
        frame_started = match (decoder.buffered(), completed || !had_partial) {
            (0, _) => None,
            (_, true) => Some(now),
            (_, false) => frame_started,
        };
        // Time spent waiting on backpressure or the quota is not idleness.
        last_read = now;
    }
}

/// Waits for the quota (`Delay`) or says to drop the frame (`Drop`).
async fn admit(limiter: &Limiter, mode: OverQuota, counters: &Counters) -> bool {
    let mut counted = false;
    loop {
        match limiter.check() {
            Ok(()) => return true,
            Err(not_until) => match mode {
                OverQuota::Drop => {
                    bump(&counters.over_quota_dropped, 1);
                    return false;
                }
                OverQuota::Delay => {
                    if !counted {
                        bump(&counters.over_quota_delayed, 1);
                        counted = true;
                    }
                    tokio::time::sleep_until(not_until.earliest_possible().0).await;
                }
            },
        }
    }
}
