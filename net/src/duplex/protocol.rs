//! The wire protocol of a duplex connection: [`Message`]s carried in
//! length-prefixed frames ([`Framing::LengthPrefixed`]).

use crate::frame::{FrameError, Framing, encode};

/// The bytes a [`Message`] body adds to a payload: a tag and a `u64` sequence.
pub const HEADER: usize = 9;

/// The longest [`Message::Error`] reason sent; a longer one is cut (at a char
/// boundary).
pub const MAX_REASON: usize = 1024;

const DATA: u8 = 1;
const ACK: u8 = 2;
const CREDIT: u8 = 3;
const PING: u8 = 4;
const PONG: u8 = 5;
const END: u8 = 6;
const ERROR: u8 = 7;

/// One message of the duplex protocol. Each is one length-prefixed frame whose
/// body is a tag byte followed by the fields, big-endian.
///
/// # Examples
///
/// ```
/// use weir_net::duplex::Message;
///
/// let mut wire = Vec::new();
/// Message::Data { seq: 7, payload: b"hi".to_vec() }.encode(1024, &mut wire)?;
/// Message::Ack { upto: 8 }.encode(1024, &mut wire)?;
/// assert_eq!(&wire[..4], &11_u32.to_be_bytes()); // tag + seq + payload
/// assert_eq!(Message::decode(&wire[4..15], 1024), Ok(Message::Data { seq: 7, payload: b"hi".to_vec() }));
/// # Ok::<(), weir_net::frame::FrameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An element: the `seq`-th (from 0) this side sent.
    Data {
        /// The element's sequence number.
        seq: u64,
        /// The element's bytes.
        payload: Vec<u8>,
    },
    /// Every element with a sequence number below `upto` was handed to the
    /// receiver's pipeline.
    Ack {
        /// One past the last element delivered.
        upto: u64,
    },
    /// The sender may send `n` more elements.
    Credit {
        /// The elements granted.
        n: u32,
    },
    /// A heartbeat, sent when a side has written nothing for a heartbeat period.
    Ping,
    /// The answer to a [`Ping`](Message::Ping).
    Pong,
    /// The sender will send no more elements; it sent `total`.
    End {
        /// The number of elements sent in all.
        total: u64,
    },
    /// The sender failed or gave up; the connection is over.
    Error {
        /// Why, in words.
        reason: String,
    },
}

/// Why a frame is not a valid [`Message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is empty: no tag.
    #[error("empty frame: no message tag")]
    Empty,
    /// The tag names no message.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// A message has the wrong length for its fields.
    #[error("{message} frame of {len} bytes, expected {expected}")]
    BadLength {
        /// The message kind.
        message: &'static str,
        /// The frame's length.
        len: usize,
        /// The length the message needs (or at least needs, for DATA).
        expected: usize,
    },
    /// A DATA payload is above the maximum.
    #[error("DATA payload of {len} bytes, above the maximum of {max}")]
    PayloadTooLong {
        /// The payload's length.
        len: usize,
        /// The maximum payload.
        max: usize,
    },
    /// An ERROR reason is not UTF-8.
    #[error("ERROR reason is not UTF-8")]
    ReasonNotUtf8,
    /// The framing itself is broken (a length prefix above the maximum, or the
    /// stream cut inside a frame).
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
}

fn exact(message: &'static str, body: &[u8], expected: usize) -> Result<(), ProtocolError> {
    if body.len() == expected {
        Ok(())
    } else {
        Err(ProtocolError::BadLength {
            message,
            len: body.len(),
            expected,
        })
    }
}

fn u64_at(body: &[u8]) -> u64 {
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&body[1..9]);
    u64::from_be_bytes(bytes)
}

/// The largest frame (body) that carries a payload of `max_payload` bytes.
pub(crate) fn max_frame(max_payload: usize) -> usize {
    max_payload.saturating_add(HEADER).max(MAX_REASON + 1)
}

impl Message {
    /// Appends the message, framed, to `out`.
    ///
    /// # Errors
    ///
    /// [`FrameError::ElementTooLong`] for a DATA payload above `max_payload`.
    /// Nothing is appended on error.
    pub fn encode(&self, max_payload: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let mut body = Vec::with_capacity(HEADER);
        match self {
            Message::Data { seq, payload } => {
                if payload.len() > max_payload {
                    return Err(FrameError::ElementTooLong {
                        len: payload.len(),
                        max: max_payload,
                    });
                }
                body.reserve(payload.len());
                body.push(DATA);
                body.extend_from_slice(&seq.to_be_bytes());
                body.extend_from_slice(payload);
            }
            Message::Ack { upto } => {
                body.push(ACK);
                body.extend_from_slice(&upto.to_be_bytes());
            }
            Message::Credit { n } => {
                body.push(CREDIT);
                body.extend_from_slice(&n.to_be_bytes());
            }
            Message::Ping => body.push(PING),
            Message::Pong => body.push(PONG),
            Message::End { total } => {
                body.push(END);
                body.extend_from_slice(&total.to_be_bytes());
            }
            Message::Error { reason } => {
                let mut cut = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.push(ERROR);
                body.extend_from_slice(&reason.as_bytes()[..cut]);
            }
        }
        encode(Framing::LengthPrefixed, max_frame(max_payload), &body, out)
    }

    /// Decodes one frame body (without its length prefix).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] naming what is wrong; never panics, whatever the bytes.
    pub fn decode(body: &[u8], max_payload: usize) -> Result<Message, ProtocolError> {
        let Some(&tag) = body.first() else {
            return Err(ProtocolError::Empty);
        };
        match tag {
            DATA => {
                if body.len() < HEADER {
                    return Err(ProtocolError::BadLength {
                        message: "DATA",
                        len: body.len(),
                        expected: HEADER,
                    });
                }
                let len = body.len() - HEADER;
                if len > max_payload {
                    return Err(ProtocolError::PayloadTooLong {
                        len,
                        max: max_payload,
                    });
                }
                Ok(Message::Data {
                    seq: u64_at(body),
                    payload: body[HEADER..].to_vec(),
                })
            }
            ACK => exact("ACK", body, 9).map(|()| Message::Ack { upto: u64_at(body) }),
            CREDIT => {
                exact("CREDIT", body, 5)?;
                let n = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
                Ok(Message::Credit { n })
            }
            PING => exact("PING", body, 1).map(|()| Message::Ping),
            PONG => exact("PONG", body, 1).map(|()| Message::Pong),
            END => exact("END", body, 9).map(|()| Message::End {
                total: u64_at(body),
            }),
            ERROR => match std::str::from_utf8(&body[1..]) {
                Ok(reason) => Ok(Message::Error {
                    reason: reason.to_owned(),
                }),
                Err(_) => Err(ProtocolError::ReasonNotUtf8),
            },
            other => Err(ProtocolError::UnknownTag(other)),
        }
    }

    /// The message's name on the wire ("DATA", "ACK", …), for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Data { .. } => "DATA",
            Message::Ack { .. } => "ACK",
            Message::Credit { .. } => "CREDIT",
            Message::Ping => "PING",
            Message::Pong => "PONG",
            Message::End { .. } => "END",
            Message::Error { .. } => "ERROR",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_unknown_frames_are_named() {
        assert_eq!(Message::decode(&[], 8), Err(ProtocolError::Empty));
        assert_eq!(
            Message::decode(&[99], 8),
            Err(ProtocolError::UnknownTag(99))
        );
        assert_eq!(
            Message::decode(&[ACK, 1, 2], 8),
            Err(ProtocolError::BadLength {
                message: "ACK",
                len: 3,
                expected: 9
            })
        );
        let mut long = vec![DATA; HEADER + 9];
        long[0] = DATA;
        assert_eq!(
            Message::decode(&long, 8),
            Err(ProtocolError::PayloadTooLong { len: 9, max: 8 })
        );
        assert_eq!(
            Message::decode(&[ERROR, 0xff], 8),
            Err(ProtocolError::ReasonNotUtf8)
        );
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(MAX_REASON);
        let mut wire = Vec::new();
        Message::Error { reason }.encode(8, &mut wire).unwrap();
        let Message::Error { reason } = Message::decode(&wire[4..], 8).unwrap() else {
            panic!("not an error");
        };
        assert_eq!(reason.len(), MAX_REASON);
    }
}
