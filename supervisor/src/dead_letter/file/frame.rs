//! The private engine of the file DLQ: the header, record framing and the codec.
//!
//! The writer and the reader share these functions, so the format is written down
//! once. The format itself is described in the [parent module](super).

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CorruptReason, Tail};
use crate::dead_letter::{DeadLetter, DlqError};

/// The magic bytes at offset 0 of every dead-letter file.
pub(super) const MAGIC: [u8; 8] = *b"WEIRDLQ1";
/// The format version this build reads and writes.
pub(super) const FORMAT_VERSION: u16 = 1;
/// The length of the file header: magic and version.
pub(super) const HEADER_LEN: u64 = 10;
/// The length of a record's header: length and checksum.
pub(super) const RECORD_HEADER_LEN: u64 = 8;

/// Scratch buffers larger than this are given back to the allocator after use, so one
/// huge letter does not pin its size in memory for the life of a reader or writer.
const KEEP_BUFFER: usize = 1 << 20;

/// The header bytes: magic, then the version as u16 little-endian.
pub(super) fn header_bytes() -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// What [`read_header`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Header {
    /// A complete, supported header.
    Valid,
    /// The file ends inside the header after this many bytes, all of them matching
    /// it: a crash while the file was being created. 0 is an empty file.
    Torn(u64),
}

/// Reads and checks the file header from the start of `input`.
pub(super) fn read_header(input: &mut impl Read) -> Result<Header, DlqError> {
    let expected = header_bytes();
    let mut found = [0; HEADER_LEN as usize];
    let n = read_full(input, &mut found)?;
    let found = &found[..n];
    let magic_len = n.min(MAGIC.len());
    if found[..magic_len] != MAGIC[..magic_len] {
        return Err(DlqError::BadHeader {
            found: found.to_vec(),
        });
    }
    if n < expected.len() {
        return if found == &expected[..n] {
            Ok(Header::Torn(n as u64))
        } else {
            // Magic complete, version byte incomplete and not ours.
            Err(DlqError::BadHeader {
                found: found.to_vec(),
            })
        };
    }
    let version = u16::from_le_bytes([found[8], found[9]]);
    if version != FORMAT_VERSION {
        return Err(DlqError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(Header::Valid)
}

/// What [`next_frame`] found at the current offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Frame {
    /// A complete record whose checksum matches; its payload is in the buffer.
    Record,
    /// No further record: the end of the file, a torn record or a corrupt one.
    End(Tail),
}

/// Reads the record at `offset` from `input`, leaving its payload in `payload`.
///
/// The length is checked against `max` before anything is allocated, and the payload
/// buffer only grows as bytes actually arrive, so a bogus length costs nothing.
///
/// # Errors
///
/// Only I/O errors; every problem with the bytes themselves is a [`Frame::End`].
pub(super) fn next_frame(
    input: &mut impl Read,
    offset: u64,
    max: u32,
    payload: &mut Vec<u8>,
) -> io::Result<Frame> {
    let mut head = [0; RECORD_HEADER_LEN as usize];
    let n = read_full(input, &mut head)?;
    if n == 0 {
        return Ok(Frame::End(Tail::Clean));
    }
    if n < head.len() {
        return Ok(Frame::End(Tail::Torn {
            offset,
            bytes: n as u64,
        }));
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let stored = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let corrupt = |reason| Ok(Frame::End(Tail::Corrupt { offset, reason }));
    if len == 0 {
        // A writer never writes an empty record; zeros are what some file systems
        // leave in a file's tail after a crash.
        return corrupt(CorruptReason::Empty);
    }
    if len > max {
        return corrupt(CorruptReason::TooLarge { len, max });
    }
    shrink(payload);
    payload.clear();
    let got = input.take(u64::from(len)).read_to_end(payload)?;
    if got < len as usize {
        return Ok(Frame::End(Tail::Torn {
            offset,
            bytes: RECORD_HEADER_LEN + got as u64,
        }));
    }
    let computed = crc32fast::hash(payload);
    if computed != stored {
        return corrupt(CorruptReason::Checksum { stored, computed });
    }
    Ok(Frame::Record)
}

/// Encodes `letter` as one complete record (length, checksum, payload) into `record`.
///
/// Memory stays bounded by `max`: past it the encoding is counted, not stored.
///
/// # Errors
///
/// [`DlqError::RecordTooLarge`] when the payload would exceed `max` bytes,
/// [`DlqError::Encode`] when the letter's `Serialize` impl fails.
pub(super) fn encode_record<T: Serialize>(
    letter: &DeadLetter<T>,
    max: u32,
    record: &mut Vec<u8>,
) -> Result<(), DlqError> {
    shrink(record);
    record.clear();
    record.extend_from_slice(&[0; RECORD_HEADER_LEN as usize]);
    let mut sink = Capped {
        buf: record,
        room: max as usize,
        total: 0,
    };
    let encoded =
        bincode::serde::encode_into_std_write(letter, &mut sink, bincode::config::standard());
    let size = sink.total;
    if size > max as usize {
        record.clear();
        return Err(DlqError::RecordTooLarge { size, max });
    }
    if let Err(e) = encoded {
        record.clear();
        return Err(e.into());
    }
    // `size <= max`, so it fits the u32 length field.
    let len = u32::try_from(size).map_err(|_| DlqError::RecordTooLarge { size, max })?;
    let crc = crc32fast::hash(&record[RECORD_HEADER_LEN as usize..]);
    record[..4].copy_from_slice(&len.to_le_bytes());
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes a payload whose checksum matched.
///
/// bincode is given a limit proportional to the payload (see [`decode_budget`]), so a
/// length prefix inside the payload cannot make it allocate more than that.
pub(super) fn decode_payload<T: DeserializeOwned>(
    payload: &[u8],
) -> Result<DeadLetter<T>, CorruptReason> {
    let budget = decode_budget(payload.len());
    let decoded = if budget <= TIER_64_KIB {
        decode_limited::<T, TIER_64_KIB>(payload)
    } else if budget <= TIER_1_MIB {
        decode_limited::<T, TIER_1_MIB>(payload)
    } else if budget <= TIER_16_MIB {
        decode_limited::<T, TIER_16_MIB>(payload)
    } else if budget <= TIER_256_MIB {
        decode_limited::<T, TIER_256_MIB>(payload)
    } else {
        decode_limited::<T, TIER_LARGEST>(payload)
    };
    match decoded {
        Ok((letter, used)) if used == payload.len() => Ok(letter),
        Ok((_, used)) => Err(CorruptReason::TrailingBytes {
            decoded: used,
            len: payload.len(),
        }),
        Err(e) => Err(CorruptReason::Decode {
            message: e.to_string(),
        }),
    }
}

/// bincode's limit counts the in-memory size of what it decodes (8 bytes for a `u64`
/// that took one byte on disk, up to 16 for a `u128`) plus the lengths of strings and
/// byte buffers before it allocates them. 16 times the payload covers any honest
/// record; the tiers below round it up to a constant, as bincode wants one.
const DECODE_BYTES_PER_PAYLOAD_BYTE: usize = 16;

const TIER_64_KIB: usize = 1 << 16;
const TIER_1_MIB: usize = 1 << 20;
const TIER_16_MIB: usize = 1 << 24;
const TIER_256_MIB: usize = 1 << 28;
/// 64 GiB (16 × the largest possible payload of 4 GiB) where `usize` allows it.
const TIER_LARGEST: usize = if usize::BITS >= 64 {
    (1_u64 << 36) as usize
} else {
    usize::MAX
};

/// The decode limit for a payload of `len` bytes, before rounding up to a tier.
pub(super) fn decode_budget(len: usize) -> usize {
    len.saturating_mul(DECODE_BYTES_PER_PAYLOAD_BYTE)
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    payload: &[u8],
) -> Result<(DeadLetter<T>, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(payload, bincode::config::standard().with_limit::<LIMIT>())
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Gives a large scratch buffer's memory back.
pub(super) fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_BUFFER {
        buf.clear();
        buf.shrink_to(KEEP_BUFFER);
    }
}

/// A writer that stores at most `room` bytes after what `buf` already holds and
/// counts everything it is given.
struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    room: usize,
    total: usize,
}

impl Write for Capped<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.total = self.total.saturating_add(data.len());
        if self.total <= self.room {
            self.buf.extend_from_slice(data);
        }
        // Past the room, keep counting (the error names the exact size) but store
        // nothing more.
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorClass, Failure};

    fn letter(element: String) -> DeadLetter<String> {
        let failure = Failure::error(ErrorClass::Permanent, "bad");
        DeadLetter::new(element, "s", "p", &failure, 1, 0)
    }

    #[test]
    fn header_is_magic_then_version_le() {
        assert_eq!(&header_bytes(), b"WEIRDLQ1\x01\x00");
        assert_eq!(
            read_header(&mut &header_bytes()[..]).unwrap(),
            Header::Valid
        );
        assert_eq!(read_header(&mut &b"WEIR"[..]).unwrap(), Header::Torn(4));
        assert_eq!(read_header(&mut &b""[..]).unwrap(), Header::Torn(0));
        assert!(matches!(
            read_header(&mut &b"WEIRDLQ1\x02\x00"[..]),
            Err(DlqError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        ));
        assert!(matches!(
            read_header(&mut &b"WEIRDLQ1\x07"[..]),
            Err(DlqError::BadHeader { .. })
        ));
        assert!(matches!(
            read_header(&mut &b"PK\x03\x04"[..]),
            Err(DlqError::BadHeader { found }) if found == b"PK\x03\x04"
        ));
    }

    #[test]
    fn a_record_decodes_back() {
        let mut record = Vec::new();
        let hello = letter("hello".into());
        encode_record(&hello, 1 << 20, &mut record).unwrap();
        let len = u32::from_le_bytes(record[..4].try_into().unwrap()) as usize;
        assert_eq!(record.len(), 8 + len);
        let mut payload = Vec::new();
        let frame = next_frame(&mut &record[..], 10, 1 << 20, &mut payload).unwrap();
        assert_eq!(frame, Frame::Record);
        let back: DeadLetter<String> = decode_payload(&payload).unwrap();
        assert_eq!(back, hello);
    }

    #[test]
    fn oversized_letters_are_counted_not_stored() {
        let mut record = Vec::new();
        let big = letter("x".repeat(10_000));
        match encode_record(&big, 1_000, &mut record) {
            Err(DlqError::RecordTooLarge { size, max: 1_000 }) => assert!(size > 10_000),
            other => panic!("expected RecordTooLarge, got {other:?}"),
        }
        assert!(record.is_empty());
    }

    #[test]
    fn the_decode_budget_covers_varint_integers() {
        // A payload of small integers: each takes 1 byte but claims 8 when decoded.
        let ints: Vec<u64> = vec![1; 10_000];
        let failure = Failure::error(ErrorClass::Permanent, "bad");
        let l = DeadLetter::new(ints, "s", "p", &failure, 1, 0);
        let mut record = Vec::new();
        encode_record(&l, u32::MAX, &mut record).unwrap();
        let back: DeadLetter<Vec<u64>> = decode_payload(&record[8..]).unwrap();
        assert_eq!(back, l);
    }
}
