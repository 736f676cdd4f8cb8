//! [`encode`]: one element to its framed bytes.

use super::{FrameError, Framing};

/// Appends `frame`, framed, to `out`.
///
/// # Errors
///
/// [`FrameError::ElementTooLong`] if `frame` is above `max_frame` bytes, and for
/// [`Framing::Lines`], [`FrameError::NewlineInElement`] if it contains a `\n`.
/// Nothing is appended on error.
///
/// # Examples
///
/// ```
/// use weir_net::frame::{Framing, FrameError, encode};
///
/// let mut out = Vec::new();
/// encode(Framing::Lines, 16, b"ok", &mut out)?;
/// assert_eq!(out, b"ok\n");
/// assert!(matches!(encode(Framing::Lines, 16, b"a\nb", &mut out), Err(FrameError::NewlineInElement { at: 1 })));
/// assert!(matches!(encode(Framing::LengthPrefixed, 1, b"ab", &mut out), Err(FrameError::ElementTooLong { .. })));
/// # Ok::<(), FrameError>(())
/// ```
pub fn encode(
    framing: Framing,
    max_frame: usize,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let max = max_frame.min(u32::MAX as usize);
    if frame.len() > max {
        return Err(FrameError::ElementTooLong {
            len: frame.len(),
            max,
        });
    }
    match framing {
        Framing::Lines => {
            if let Some(at) = frame.iter().position(|&b| b == b'\n') {
                return Err(FrameError::NewlineInElement { at });
            }
            out.reserve(frame.len() + 1);
            out.extend_from_slice(frame);
            out.push(b'\n');
        }
        Framing::LengthPrefixed => {
            // `max` is at most u32::MAX, so the length fits.
            let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            out.reserve(frame.len() + 4);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(frame);
        }
    }
    Ok(())
}
