//! What the crate's HTTP endpoints ([`sse`](crate::sse), [`console`](crate::console),
//! `http_source`, `websocket`) share: a listener served on a thread of its own by a
//! current-thread tokio runtime, so that a server needs no runtime from the
//! application and never runs on the pipelines' arbiters; the counts of what is
//! open ([`count`]); the opening of a connection, with TLS under feature
//! `server-tls` ([`conn`]); the bearer-token check ([`auth`]).

mod auth;
mod conn;
mod count;

pub(crate) use auth::admits;
pub(crate) use conn::Opening;
pub(crate) use count::{Counted, OpenCount};

#[cfg(any(feature = "sse", feature = "console"))]
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// A response body: a fixed text or a stream of frames.
#[cfg(any(feature = "sse", feature = "console"))]
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Infallible>;

/// Binds `addr` (port 0: any free port), then runs `serve` with the listener on a
/// new thread named `name`. Returns the bound address and the thread.
///
/// # Errors
///
/// Binding, setting up the listener, or starting the runtime or the thread
/// failed.
pub(crate) fn spawn<F, Fut>(
    addr: SocketAddr,
    name: &str,
    serve: F,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)>
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread_name = name.to_owned();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(listener) => serve(listener).await,
                    Err(e) => {
                        tracing::error!(%local, server = %thread_name, error = %e, "listener failed");
                    }
                }
            });
        })?;
    Ok((local, thread))
}

/// A server's thread and the signal that stops it: a handle holding one stops the
/// server and joins its thread on `stop_and_join`, or when dropped.
#[derive(Debug)]
pub(crate) struct Stopper {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Stopper {
    pub(crate) fn new(stop: tokio::sync::watch::Sender<bool>, thread: JoinHandle<()>) -> Self {
        Stopper {
            stop,
            thread: Some(thread),
        }
    }

    /// Signals the stop and waits for the server's thread to end.
    pub(crate) fn stop_and_join(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Accepts connections until `stopped` changes, handing each to `admit` (a failed
/// accept — out of descriptors and the like — backs off instead of spinning);
/// then waits up to `drain` for the connections counted in `open` to close.
pub(crate) async fn accept_until(
    listener: TcpListener,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    server: &str,
    open: &OpenCount,
    drain: Duration,
    mut admit: impl FnMut(TcpStream),
) {
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _peer)) => admit(socket),
                Err(e) => {
                    tracing::warn!(server, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + drain;
    while open.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(any(feature = "sse", feature = "http", feature = "websocket"))]
/// Answers a connection over the limit with `answer` (a whole HTTP response,
/// written without reading the request; after the TLS handshake on a TLS
/// listener) and closes it; `guard` is dropped then. Best effort: a client that
/// cannot take it within a second is closed anyway.
pub(crate) fn refuse(
    opening: &Opening,
    socket: TcpStream,
    answer: &'static [u8],
    guard: impl Send + 'static,
) {
    use tokio::io::AsyncWriteExt;
    let opening = opening.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), async move {
            if let Some(mut conn) = opening.open(socket).await {
                let _ = conn.write_all(answer).await;
                let _ = conn.shutdown().await;
            }
        })
        .await;
        drop(guard);
    });
}
