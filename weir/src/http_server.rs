//! What the crate's HTTP endpoints ([`sse`](crate::sse), [`console`](crate::console))
//! share: a listener served on a thread of its own by a current-thread tokio
//! runtime, so that a server needs no runtime from the application and never
//! runs on the pipelines' arbiters.

#[cfg(any(feature = "sse", feature = "console"))]
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::net::TcpListener;

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
