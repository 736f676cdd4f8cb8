//! [`TcpSource`]: a listener whose connections feed one stream of frames, and its
//! [`TcpSourceHandle`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};
use weir_runtime::Flow;
use weir_runtime::operator::{Io, Operator, Step};
use weir_supervisor::dead_letter::DeadLetterSink;
use weir_supervisor::{ErrorClass, Failure};

use super::serve::{Control, Shared, accept_loop};
use super::stats::Counters;
use super::{BadInput, TcpSourceConfig, TcpSourceStats};

/// One frame received, and the peer that sent it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frame {
    /// The connection's remote address.
    pub peer: SocketAddr,
    /// The frame, without its framing.
    pub bytes: Vec<u8>,
}

/// Controls a running [`TcpSource`] and reads its counters.
///
/// Dropping the handle changes nothing: the source keeps listening until the
/// pipeline stops it.
#[derive(Debug, Clone)]
pub struct TcpSourceHandle {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    control: Arc<watch::Sender<Control>>,
}

impl TcpSourceHandle {
    /// The address the source listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TcpSourceStats {
        self.counters.snapshot()
    }

    /// Stops accepting connections; the stream ends once every open connection
    /// has ended (by its peer or a timeout) and its frames were taken.
    pub fn close(&self) {
        self.control.send_replace(Control::Close);
    }

    /// Closes the listener and every connection now; the stream ends once the
    /// frames already decoded were taken.
    pub fn abort(&self) {
        self.control.send_replace(Control::Abort);
    }
}

/// A TCP listener as a pipeline source: many connections feed one stream of
/// [`Frame`]s, in the order each connection sent them (frames of different
/// connections interleave). Created by [`listen`](super::listen).
///
/// The listener is bound when it is created; it accepts from the first step of
/// the stage. See [`TcpSourceConfig`] for the limits and the crate docs for what
/// happens to bad input.
pub struct TcpSource {
    start: Option<Start>,
    frames: mpsc::Receiver<Frame>,
    task: Option<tokio::task::JoinHandle<()>>,
    config_check: Result<(), String>,
}

struct Start {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    sender: mpsc::Sender<Frame>,
    control: watch::Receiver<Control>,
}

impl std::fmt::Debug for TcpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpSource")
            .field("started", &self.start.is_none())
            .finish_non_exhaustive()
    }
}

impl TcpSource {
    pub(crate) fn bind(
        addr: impl std::net::ToSocketAddrs,
        config: TcpSourceConfig,
        dead_letters: Option<Arc<dyn DeadLetterSink<BadInput>>>,
    ) -> std::io::Result<(TcpSourceHandle, Flow<Frame>)> {
        let listener = bind_listener(addr, config.backlog)?;
        let local_addr = listener.local_addr()?;
        let counters = Arc::new(Counters::new(&local_addr.to_string()));
        let config_check = config.check();
        let (sender, frames) = mpsc::channel(config.buffer.max(1));
        let (control_tx, control) = watch::channel(Control::Serve);
        let shared = Arc::new(Shared {
            local_addr,
            config,
            counters: Arc::clone(&counters),
            dead_letters,
        });
        let source = TcpSource {
            start: Some(Start {
                listener,
                shared,
                sender,
                control,
            }),
            frames,
            task: None,
            config_check,
        };
        let handle = TcpSourceHandle {
            local_addr,
            counters,
            control: Arc::new(control_tx),
        };
        Ok((handle, Flow::from_source(source)))
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.start = None;
        self.frames.close();
    }
}

/// Binds the first address of `addr` that can be bound, with `backlog` pending
/// connections (std's `bind` fixes 128, which a burst of connections overflows:
/// their SYNs are then dropped and retried a second later).
fn bind_listener(
    addr: impl std::net::ToSocketAddrs,
    backlog: u32,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        let bound = (|| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
            socket.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(std::net::TcpListener::from(socket))
        })();
        match bound {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    }))
}

impl Drop for TcpSource {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Operator for TcpSource {
    type In = Infallible;
    type Out = Frame;

    fn kind(&self) -> &'static str {
        "tcp_source"
    }

    fn validate(&self) -> Result<(), String> {
        self.config_check.clone()
    }

    fn step(&mut self, io: &mut Io<'_, Infallible, Frame>, cx: &mut Context<'_>) -> Step {
        if io.input_ended() {
            // Cancelled from downstream: stop listening and reading.
            self.stop();
            return Step::Finished;
        }
        if let Some(start) = self.start.take() {
            let listener = match tokio::net::TcpListener::from_std(start.listener) {
                Ok(listener) => listener,
                Err(error) => {
                    return Step::Failed(Failure::with_source(ErrorClass::Permanent, error));
                }
            };
            self.task = Some(tokio::spawn(accept_loop(
                listener,
                start.shared,
                start.sender,
                start.control,
            )));
        }
        while io.has_room() {
            match self.frames.poll_recv(cx) {
                Poll::Ready(Some(frame)) => io.push(frame),
                Poll::Ready(None) => return Step::Finished,
                Poll::Pending => break,
            }
        }
        Step::Continue
    }

    fn on_stop(&mut self) {
        self.stop();
    }
}
