//! [`Decoder`]: an incremental frame decoder with a bounded buffer.

use super::{FrameError, Framing};

/// Cuts a byte stream into frames, incrementally: hand it the bytes as they arrive
/// with [`decode`](Self::decode), which takes from the input only what it needs for
/// the next frame.
///
/// The decoder never holds more than the maximum frame size (a length prefix above
/// it is rejected from its header, a line as soon as it outgrows it), never
/// allocates more than the frame being assembled, and never panics, whatever the
/// input. After an error it stays poisoned: every later call returns the same
/// error, since the frame boundaries are lost.
///
/// Choosing the maximum: the largest frame a well-behaved peer sends. It is also
/// the memory one connection may pin, so keep it small (kilobytes) for many
/// connections.
///
/// # Examples
///
/// Bytes may arrive in any pieces:
///
/// ```
/// use weir_net::frame::{Decoder, FrameError, Framing};
///
/// let mut decoder = Decoder::new(Framing::Lines, 8);
/// let mut input: &[u8] = b"ab";
/// assert_eq!(decoder.decode(&mut input)?, None); // waiting for the newline
/// assert_eq!(decoder.buffered(), 2);
/// let mut input: &[u8] = b"c\nde\n";
/// assert_eq!(decoder.decode(&mut input)?, Some(b"abc".to_vec()));
/// assert_eq!(decoder.decode(&mut input)?, Some(b"de".to_vec()));
/// assert_eq!(decoder.decode(&mut input)?, None);
///
/// // A line longer than the maximum is rejected once 9 bytes have no newline.
/// let mut input: &[u8] = b"0123456789\n";
/// assert!(matches!(decoder.decode(&mut input), Err(FrameError::LineTooLong { .. })));
///
/// // A length prefix of 4 GiB is rejected from its header.
/// let mut decoder = Decoder::new(Framing::LengthPrefixed, 1 << 20);
/// let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0];
/// assert_eq!(
///     decoder.decode(&mut input),
///     Err(FrameError::DeclaredTooLong { declared: u64::from(u32::MAX), max: 1 << 20 })
/// );
/// # Ok::<(), FrameError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    framing: Framing,
    max: usize,
    /// The frame being assembled (no header, no delimiter).
    buf: Vec<u8>,
    /// Length-prefixed: the header bytes seen so far.
    header: [u8; 4],
    header_len: usize,
    /// Length-prefixed: the declared length, once the header is complete.
    expected: Option<usize>,
    poisoned: Option<FrameError>,
}

impl Decoder {
    /// A decoder for `framing` with frames of at most `max_frame` bytes (capped at
    /// `u32::MAX`).
    pub fn new(framing: Framing, max_frame: usize) -> Self {
        Decoder {
            framing,
            max: max_frame.min(u32::MAX as usize),
            buf: Vec::new(),
            header: [0; 4],
            header_len: 0,
            expected: None,
            poisoned: None,
        }
    }

    /// The framing.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The maximum frame size.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Bytes of an unfinished frame held (header included): 0 between frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.header_len
    }

    /// The capacity of the internal buffer: never above the maximum frame size.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True if the decoder failed and must not be used any more.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Takes bytes from the front of `input` until one frame is complete, and
    /// returns it; `Ok(None)` once `input` is used up without completing one (the
    /// partial frame is kept for the next call). Call it again while it returns
    /// frames: `input` may hold several.
    ///
    /// # Errors
    ///
    /// [`FrameError::DeclaredTooLong`] or [`FrameError::LineTooLong`] for a frame
    /// above the maximum; the decoder is poisoned from then on.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        let result = match self.framing {
            Framing::Lines => self.decode_line(input),
            Framing::LengthPrefixed => self.decode_prefixed(input),
        };
        if let Err(error) = &result {
            self.poisoned = Some(error.clone());
            self.buf = Vec::new();
        }
        result
    }

    /// Says whether the stream may end here: at the end of a stream, call it to
    /// learn whether the last frame was cut short.
    ///
    /// # Errors
    ///
    /// [`FrameError::Truncated`] if a frame was started and not finished, or the
    /// error that poisoned the decoder.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        match self.buffered() {
            0 if self.expected.is_none() => Ok(()),
            buffered => Err(FrameError::Truncated {
                buffered: buffered + if self.expected.is_some() { 4 } else { 0 },
            }),
        }
    }

    fn decode_line(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        // Look for the newline only as far as the frame may still grow (plus the
        // newline itself), so a long line is rejected without buffering it.
        let allowed = self.max - self.buf.len();
        let window = input.len().min(allowed.saturating_add(1));
        match input[..window].iter().position(|&b| b == b'\n') {
            Some(pos) => {
                let frame = if self.buf.is_empty() {
                    input[..pos].to_vec()
                } else {
                    let mut frame = std::mem::take(&mut self.buf);
                    frame.extend_from_slice(&input[..pos]);
                    frame
                };
                *input = &input[pos + 1..];
                Ok(Some(frame))
            }
            None if window > allowed => Err(FrameError::LineTooLong {
                seen: self.buf.len() + window,
                max: self.max,
            }),
            None => {
                self.grow(window, self.max);
                self.buf.extend_from_slice(&input[..window]);
                *input = &input[window..];
                Ok(None)
            }
        }
    }

    fn decode_prefixed(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        let expected = match self.expected {
            Some(expected) => expected,
            None => {
                let need = 4 - self.header_len;
                let take = need.min(input.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&input[..take]);
                self.header_len += take;
                *input = &input[take..];
                if self.header_len < 4 {
                    return Ok(None);
                }
                let declared = u32::from_be_bytes(self.header);
                // Checked before any allocation: the header alone decides.
                let declared_len = usize::try_from(declared).unwrap_or(usize::MAX);
                if declared_len > self.max {
                    return Err(FrameError::DeclaredTooLong {
                        declared: u64::from(declared),
                        max: self.max,
                    });
                }
                self.header_len = 0;
                self.expected = Some(declared_len);
                declared_len
            }
        };
        let take = (expected - self.buf.len()).min(input.len());
        if self.buf.is_empty() && take == expected {
            self.expected = None;
            let frame = input[..take].to_vec();
            *input = &input[take..];
            return Ok(Some(frame));
        }
        self.grow(take, expected);
        self.buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.buf.len() == expected {
            self.expected = None;
            Ok(Some(std::mem::take(&mut self.buf)))
        } else {
            Ok(None)
        }
    }

    /// Reserves room for `more` bytes, doubling as a `Vec` would but never past
    /// `limit` (the frame's final size, at most the maximum).
    fn grow(&mut self, more: usize, limit: usize) {
        let needed = self.buf.len() + more;
        if needed > self.buf.capacity() {
            let target = needed.max(self.buf.capacity().saturating_mul(2)).min(limit);
            self.buf.reserve_exact(target.max(needed) - self.buf.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode;

    fn decode_all(decoder: &mut Decoder, mut input: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut frames = Vec::new();
        while let Some(frame) = decoder.decode(&mut input)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    #[test]
    fn lines_split_anywhere_give_the_same_frames() {
        let wire = b"alpha\n\nbeta\ngamma\n";
        for cut in 0..wire.len() {
            let mut decoder = Decoder::new(Framing::Lines, 16);
            let mut frames = decode_all(&mut decoder, &wire[..cut]).unwrap();
            frames.extend(decode_all(&mut decoder, &wire[cut..]).unwrap());
            assert_eq!(frames, [&b"alpha"[..], b"", b"beta", b"gamma"]);
            decoder.finish().unwrap();
        }
    }

    #[test]
    fn a_line_of_exactly_the_maximum_passes_and_one_more_byte_fails() {
        let mut decoder = Decoder::new(Framing::Lines, 4);
        assert_eq!(decode_all(&mut decoder, b"abcd\n").unwrap(), [b"abcd"]);
        let err = decode_all(&mut decoder, b"abcde\n").unwrap_err();
        assert_eq!(err, FrameError::LineTooLong { seen: 5, max: 4 });
        assert!(decoder.is_poisoned());
        assert_eq!(decoder.decode(&mut &b"x\n"[..]), Err(err));
    }

    #[test]
    fn a_long_line_fed_a_byte_at_a_time_never_buffers_more_than_the_maximum() {
        let mut decoder = Decoder::new(Framing::Lines, 100);
        for i in 0..100 {
            assert_eq!(decoder.decode(&mut &b"x"[..]), Ok(None), "byte {i}");
            assert!(decoder.capacity() <= 100);
        }
        assert!(decoder.decode(&mut &b"x"[..]).is_err());
    }

    #[test]
    fn length_prefixed_round_trips_and_reports_truncation() {
        let mut wire = Vec::new();
        for frame in [&b""[..], b"a", b"hello world"] {
            encode(Framing::LengthPrefixed, 64, frame, &mut wire).unwrap();
        }
        for cut in 0..wire.len() {
            let mut decoder = Decoder::new(Framing::LengthPrefixed, 64);
            let mut frames = decode_all(&mut decoder, &wire[..cut]).unwrap();
            frames.extend(decode_all(&mut decoder, &wire[cut..]).unwrap());
            assert_eq!(frames, [&b""[..], b"a", b"hello world"]);
            assert!(decoder.capacity() <= 11);
        }
        let mut decoder = Decoder::new(Framing::LengthPrefixed, 64);
        decode_all(&mut decoder, &wire[..wire.len() - 3]).unwrap();
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated { buffered: 12 })
        );
    }

    #[test]
    fn a_declared_length_above_the_maximum_is_rejected_from_the_header() {
        let mut decoder = Decoder::new(Framing::LengthPrefixed, 10);
        let err = decoder.decode(&mut &[0, 0, 0, 11][..]).unwrap_err();
        assert_eq!(
            err,
            FrameError::DeclaredTooLong {
                declared: 11,
                max: 10
            }
        );
        assert_eq!(decoder.capacity(), 0);
    }
}
