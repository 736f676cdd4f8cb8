//! TCP connectors: [`listen`] (a source serving many connections) and
//! [`TcpSink`] (a client).
//!
//! # The source
//!
//! [`listen`] binds a listener and returns a [`Flow`] of [`Frame`]s and a
//! [`TcpSourceHandle`]. Each accepted connection is read by its own task on the
//! source stage's arbiter and decoded with the configured [`Framing`]; the frames
//! of all connections go through one bounded buffer into the stage, which takes
//! them only while the pipeline has credit. When the pipeline is full, sockets
//! are not read and TCP flow control stops the peers.
//!
//! Limits ([`TcpSourceConfig`]): maximum frame size (checked before allocating),
//! maximum connections (the excess is closed at once), an idle timeout, a read
//! (frame completion) timeout, and a per-connection rate quota. A bad frame
//! closes its connection, is counted, and is dead-lettered as a [`BadInput`]
//! naming the peer, if a dead-letter sink was given. Nothing a peer sends can
//! fail the stage.
//!
//! [`Framing`]: crate::frame::Framing
//!
//! # Examples
//!
//! ```
//! use std::io::Write;
//! use weir_net::frame::Framing;
//! use weir_net::tcp::{TcpSourceConfig, listen};
//! use weir_operators::{FlowExt, Pipeline};
//!
//! let rt = weir_runtime::Runtime::builder().arbiters(1).build()?;
//! let (handle, flow) = listen("127.0.0.1:0", TcpSourceConfig::new(Framing::Lines))?;
//! let running = flow.map(|frame| frame.bytes).take(2).collect().run(&rt)?;
//! let mut client = std::net::TcpStream::connect(handle.local_addr())?;
//! client.write_all(b"hello\nworld\n")?;
//! let done = running.wait()?;
//! assert_eq!(done.output, [b"hello".to_vec(), b"world".to_vec()]);
//! done.report.check_conservation()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bad_input;
mod config;
mod serve;
mod sink;
mod source;
mod stats;

use std::sync::Arc;

pub use bad_input::BadInput;
pub use config::{ConnectionQuota, OverQuota, TcpSourceConfig};
pub use sink::{TcpSink, TcpSinkConfig, TcpSinkStats};
pub use source::{Frame, TcpSource, TcpSourceHandle};
pub use stats::TcpSourceStats;
use weir_runtime::Flow;
use weir_supervisor::dead_letter::DeadLetterSink;

/// Binds a TCP listener on `addr` and returns its handle and the flow of the
/// frames its connections send. The configuration is checked when the pipeline
/// is built (a [`BuildError`](weir_runtime::BuildError) naming the stage).
///
/// # Errors
///
/// The address cannot be bound.
pub fn listen(
    addr: impl std::net::ToSocketAddrs,
    config: TcpSourceConfig,
) -> std::io::Result<(TcpSourceHandle, Flow<Frame>)> {
    TcpSource::bind(addr, config, None)
}

/// [`listen`], with the bad input of peers dead-lettered into `dead_letters` (a
/// [`MemoryDlq`](weir_supervisor::dead_letter::MemoryDlq) or a file). A full
/// sink refuses the letter; it is counted in
/// [`TcpSourceStats::dead_letters_refused`].
///
/// # Errors
///
/// The address cannot be bound.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use weir_net::frame::Framing;
/// use weir_net::tcp::{BadInput, TcpSourceConfig, listen_with_dead_letters};
/// use weir_supervisor::dead_letter::MemoryDlq;
///
/// let dlq = Arc::new(MemoryDlq::<BadInput>::new(100));
/// let (handle, flow) = listen_with_dead_letters("127.0.0.1:0", TcpSourceConfig::new(Framing::Lines), dlq.clone())?;
/// # drop(flow); let _ = handle;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn listen_with_dead_letters(
    addr: impl std::net::ToSocketAddrs,
    config: TcpSourceConfig,
    dead_letters: Arc<dyn DeadLetterSink<BadInput>>,
) -> std::io::Result<(TcpSourceHandle, Flow<Frame>)> {
    TcpSource::bind(addr, config, Some(dead_letters))
}
