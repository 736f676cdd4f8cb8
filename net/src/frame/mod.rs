//! Framing: how a byte stream is cut into frames, and back.
//!
//! Two framings, chosen with [`Framing`]:
//!
//! - [`Framing::Lines`]: each frame ends with `\n` (a `\r` before it is kept as part
//!   of the frame; strip it downstream if needed). The delimiter is not part of the
//!   frame.
//! - [`Framing::LengthPrefixed`]: each frame is a `u32` big-endian length followed by
//!   that many bytes.
//!
//! Both have a maximum frame size, checked **before** anything is allocated for the
//! frame: a length prefix above the maximum is rejected from its four header bytes
//! (a frame declaring 4 GiB costs nothing), and a line is rejected as soon as the
//! bytes seen without a delimiter exceed the maximum. A [`Decoder`] therefore never
//! holds more than the maximum frame size, whatever it is fed, and no input makes it
//! panic.
//!
//! # Examples
//!
//! ```
//! use weir_net::frame::{Decoder, Framing, encode};
//!
//! let mut wire = Vec::new();
//! encode(Framing::LengthPrefixed, 1024, b"hello", &mut wire)?;
//! encode(Framing::LengthPrefixed, 1024, b"world", &mut wire)?;
//!
//! let mut decoder = Decoder::new(Framing::LengthPrefixed, 1024);
//! let mut input = &wire[..];
//! assert_eq!(decoder.decode(&mut input)?, Some(b"hello".to_vec()));
//! assert_eq!(decoder.decode(&mut input)?, Some(b"world".to_vec()));
//! assert_eq!(decoder.decode(&mut input)?, None);
//! # Ok::<(), weir_net::frame::FrameError>(())
//! ```

mod decoder;
mod encoder;
mod error;

pub use decoder::Decoder;
pub use encoder::encode;
pub use error::FrameError;

/// How frames are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Newline-delimited: a frame is the bytes before each `\n`.
    Lines,
    /// A `u32` big-endian length, then that many bytes.
    LengthPrefixed,
}

impl Framing {
    /// The bytes this framing adds around a frame of `len` bytes on the wire.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_net::frame::Framing;
    /// assert_eq!(Framing::Lines.overhead(), 1);
    /// assert_eq!(Framing::LengthPrefixed.overhead(), 4);
    /// ```
    pub fn overhead(self) -> usize {
        match self {
            Framing::Lines => 1,
            Framing::LengthPrefixed => 4,
        }
    }
}
