//! [`BadInput`]: what a TCP source dead-letters when a peer sends a bad frame.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::frame::FrameError;

/// A bad frame a peer sent, and who sent it: the element of the dead letters a
/// [`TcpSource`](super::TcpSource) writes. The bytes of the frame are not kept
/// (an oversized frame was never read).
///
/// # Examples
///
/// ```
/// use weir_net::frame::FrameError;
/// use weir_net::tcp::BadInput;
///
/// let bad = BadInput {
///     peer: "127.0.0.1:4000".parse()?,
///     error: FrameError::DeclaredTooLong { declared: 1 << 32 - 1, max: 1024 },
/// };
/// assert!(bad.to_string().contains("127.0.0.1:4000"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadInput {
    /// The peer that sent it; its connection was closed.
    pub peer: SocketAddr,
    /// What was wrong.
    pub error: FrameError,
}

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad frame from {}: {}", self.peer, self.error)
    }
}
