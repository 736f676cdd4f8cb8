//! [`FrameError`]: why bytes are not a valid frame.

/// Why a byte stream is not a valid sequence of frames. After an error the
/// [`Decoder`](super::Decoder) is poisoned: the stream must be closed, since the
/// frame boundaries are lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum FrameError {
    /// A length prefix declares a frame above the maximum; nothing was allocated
    /// for it.
    #[error("frame declares {declared} bytes, above the maximum of {max}")]
    DeclaredTooLong {
        /// The length in the prefix.
        declared: u64,
        /// The maximum frame size.
        max: usize,
    },
    /// A line grew above the maximum without a delimiter; only the maximum was
    /// buffered.
    #[error("line longer than the maximum of {max} bytes (no newline within {seen} bytes)")]
    LineTooLong {
        /// How many bytes were seen without a newline (more than `max`).
        seen: usize,
        /// The maximum frame size.
        max: usize,
    },
    /// An element to encode is above the maximum frame size.
    #[error("element of {len} bytes is above the maximum frame size of {max}")]
    ElementTooLong {
        /// The element's length.
        len: usize,
        /// The maximum frame size.
        max: usize,
    },
    /// An element to encode as a line contains a newline, which would split it.
    #[error("element contains a newline at byte {at}, which would split the line")]
    NewlineInElement {
        /// The offset of the first `\n`.
        at: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame after {buffered} bytes")]
    Truncated {
        /// Bytes of the unfinished frame (header included).
        buffered: usize,
    },
}
