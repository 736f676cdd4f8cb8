//! [`BoundedLineReader`]: lines or fixed-size chunks of any reader, in constant
//! memory, each with its byte offsets.

use std::io::{self, Read};

/// At most this many bytes of an over-long line are kept, as a sample for its dead
/// letter.
pub const SAMPLE_BYTES: usize = 256;

/// One line as the reader gives it: where it starts and ends in the input, and its
/// bytes or why it was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// Byte offset of the line's first byte.
    pub offset: u64,
    /// Byte offset just past the line's newline (or the end of the input): where
    /// reading resumes after this line.
    pub next_offset: u64,
    /// The line without its `\n` (and without a `\r` before it), or the reason it
    /// was rejected.
    pub bytes: Result<Vec<u8>, Overlong>,
}

/// A line longer than the bound: its full length and the start of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlong {
    /// The line's length in bytes, without its newline.
    pub len: u64,
    /// Its first bytes (at most [`SAMPLE_BYTES`]).
    pub sample: Vec<u8>,
}

/// Reads lines (or chunks) from `R` through one buffer of fixed size: the memory it
/// holds is the buffer plus at most one line of `max_line_bytes` (or one chunk),
/// whatever the input. A line longer than the bound is not stored: it is skipped
/// to its newline and returned as [`Overlong`] with its length and a sample.
///
/// # Examples
///
/// ```
/// use weir_operators::file::BoundedLineReader;
/// let mut r = BoundedLineReader::new(&b"ab\r\ncdef\ng"[..], 0, 16, 3);
/// let first = r.next_line()?.unwrap();
/// assert_eq!((first.offset, first.next_offset), (0, 4));
/// assert_eq!(first.bytes.unwrap(), b"ab");
/// assert_eq!(r.next_line()?.unwrap().bytes.unwrap_err().len, 4); // over 3 bytes
/// assert_eq!(r.next_line()?.unwrap().bytes.unwrap(), b"g");
/// assert!(r.next_line()?.is_none());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct BoundedLineReader<R> {
    input: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The input offset of `buf[start]`.
    offset: u64,
    max_line_bytes: usize,
    eof: bool,
    /// The most bytes held at once (buffer plus the line being assembled).
    peak_bytes: usize,
    /// Bytes read from the input.
    read_bytes: u64,
    /// Following a growing input: the end of the input is not final.
    follow: bool,
    /// The line being assembled when the input ran out (following only).
    partial: Option<Partial>,
}

/// A line not finished yet: where it starts, its bytes so far, or its length and
/// sample once it is over the bound.
#[derive(Debug)]
struct Partial {
    first: u64,
    line: Vec<u8>,
    overlong: Option<Overlong>,
}

impl<R: Read> BoundedLineReader<R> {
    /// A reader of `input`, whose first byte is at `offset` of the whole input,
    /// with a buffer of `buffer_bytes` (at least 1) and lines bounded by
    /// `max_line_bytes` (at least 1).
    pub fn new(input: R, offset: u64, buffer_bytes: usize, max_line_bytes: usize) -> Self {
        let buffer_bytes = buffer_bytes.max(1);
        BoundedLineReader {
            input,
            buf: vec![0; buffer_bytes].into_boxed_slice(),
            start: 0,
            end: 0,
            offset,
            max_line_bytes: max_line_bytes.max(1),
            eof: false,
            peak_bytes: buffer_bytes,
            read_bytes: 0,
            follow: false,
            partial: None,
        }
    }

    /// Follows a growing input (`tail -f`): at the end of the input a last line
    /// without its newline is kept, not returned, until more input completes it
    /// (or [`take_partial`](Self::take_partial) takes it), and the end is not
    /// remembered — the next call reads again.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_operators::file::BoundedLineReader;
    /// let mut r = BoundedLineReader::new(&b"a\npar"[..], 0, 16, 64).follow();
    /// assert_eq!(r.next_line()?.unwrap().bytes.unwrap(), b"a");
    /// assert!(r.next_line()?.is_none()); // "par" waits for its newline
    /// assert_eq!(r.take_partial().unwrap().bytes.unwrap(), b"par");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn follow(mut self) -> Self {
        self.follow = true;
        self
    }

    /// The line a following reader holds without its newline, as a line (on a
    /// rotation: the old file will not grow any more); `None` if it holds none.
    pub fn take_partial(&mut self) -> Option<RawLine> {
        let p = self.partial.take()?;
        Some(self.complete(p))
    }

    /// The offset of the next byte to be returned: after the last line or chunk.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The input being read.
    pub fn get_ref(&self) -> &R {
        &self.input
    }

    /// The most bytes this reader held at once: its buffer plus the largest line
    /// (or chunk) it assembled.
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    /// Bytes read from the input so far.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Refills the buffer when it is empty; false at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start < self.end {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.start = 0;
        self.end = 0;
        let n = loop {
            match self.input.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        self.read_bytes += n as u64;
        self.end = n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// The next line, `None` at the end of the input. A last line without a
    /// newline counts; an empty input has no lines.
    ///
    /// # Errors
    ///
    /// The input's read error.
    pub fn next_line(&mut self) -> io::Result<Option<RawLine>> {
        let mut p = self.partial.take().unwrap_or(Partial {
            first: self.offset,
            line: Vec::new(),
            overlong: None,
        });
        let mut found = false;
        while !found {
            if !self.fill()? {
                break;
            }
            let avail = &self.buf[self.start..self.end];
            let part = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    found = true;
                    &avail[..i]
                }
                None => avail,
            };
            match &mut p.overlong {
                Some(o) => {
                    o.len += part.len() as u64;
                    let keep = SAMPLE_BYTES.saturating_sub(o.sample.len()).min(part.len());
                    o.sample.extend_from_slice(&part[..keep]);
                }
                None if p.line.len() + part.len() > self.max_line_bytes + 1 => {
                    // +1: a '\r' before the newline does not count.
                    let mut sample = std::mem::take(&mut p.line);
                    let len = (sample.len() + part.len()) as u64;
                    let keep = SAMPLE_BYTES.saturating_sub(sample.len()).min(part.len());
                    sample.extend_from_slice(&part[..keep]);
                    sample.truncate(SAMPLE_BYTES);
                    sample.shrink_to_fit();
                    p.overlong = Some(Overlong { len, sample });
                }
                None => {
                    p.line.extend_from_slice(part);
                    self.peak_bytes = self.peak_bytes.max(self.buf.len() + p.line.len());
                }
            }
            let used = part.len() + usize::from(found);
            self.start += used;
            self.offset += used as u64;
        }
        if !found {
            if self.follow {
                // Not the end: the input may grow. What was read of the line waits.
                self.eof = false;
                if self.offset > p.first {
                    self.partial = Some(p);
                }
                return Ok(None);
            }
            if self.offset == p.first {
                return Ok(None);
            }
        }
        Ok(Some(self.complete(p)))
    }

    /// The line `p` as it ends here: its bytes, or why it is rejected.
    fn complete(&self, p: Partial) -> RawLine {
        let Partial {
            first,
            mut line,
            overlong,
        } = p;
        let bytes = match overlong {
            Some(mut o) => {
                if o.sample.len() as u64 == o.len && o.sample.last() == Some(&b'\r') {
                    o.sample.pop();
                }
                Err(o)
            }
            None => {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > self.max_line_bytes {
                    let len = line.len() as u64;
                    line.truncate(SAMPLE_BYTES);
                    Err(Overlong { len, sample: line })
                } else {
                    Ok(line)
                }
            }
        };
        RawLine {
            offset: first,
            next_offset: self.offset,
            bytes,
        }
    }

    /// The next chunk of `size` bytes (the last may be shorter) with its offset,
    /// `None` at the end of the input.
    ///
    /// # Errors
    ///
    /// The input's read error.
    pub fn next_chunk(&mut self, size: usize) -> io::Result<Option<(u64, Vec<u8>)>> {
        let first = self.offset;
        let mut chunk = Vec::with_capacity(size.min(self.buf.len()));
        while chunk.len() < size && self.fill()? {
            let take = (size - chunk.len()).min(self.end - self.start);
            chunk.extend_from_slice(&self.buf[self.start..self.start + take]);
            self.start += take;
            self.offset += take as u64;
        }
        self.peak_bytes = self.peak_bytes.max(self.buf.len() + chunk.len());
        Ok((!chunk.is_empty()).then_some((first, chunk)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], buffer: usize, max: usize) -> Vec<RawLine> {
        let mut r = BoundedLineReader::new(input, 0, buffer, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        assert!(r.peak_bytes() <= buffer + max + 1);
        out
    }

    #[test]
    fn offsets_chain_and_cover_the_input() {
        let input = b"one\ntwo\r\n\nthree";
        for buffer in [1, 2, 3, 5, 64] {
            let got = lines(input, buffer, 10);
            let texts: Vec<_> = got.iter().map(|l| l.bytes.clone().unwrap()).collect();
            assert_eq!(texts, [&b"one"[..], b"two", b"", b"three"]);
            let mut at = 0;
            for l in &got {
                assert_eq!(l.offset, at);
                at = l.next_offset;
            }
            assert_eq!(at, input.len() as u64);
        }
    }

    #[test]
    fn overlong_lines_are_skipped_with_length_and_sample() {
        let long = "x".repeat(1000);
        let input = format!("a\n{long}\r\nb\n{long}");
        for buffer in [1, 7, 4096] {
            let got = lines(input.as_bytes(), buffer, 20);
            assert_eq!(got.len(), 4);
            let o = got[1].bytes.clone().unwrap_err();
            assert_eq!(o.len, 1001); // with the '\r'
            assert_eq!(o.sample.len(), SAMPLE_BYTES);
            assert_eq!(got[1].offset, 2);
            assert_eq!(got[2].bytes.clone().unwrap(), b"b");
            assert_eq!(got[3].bytes.clone().unwrap_err().len, 1000);
        }
    }

    #[test]
    fn a_line_of_exactly_the_bound_passes_one_more_is_rejected() {
        let got = lines(b"abc\r\nabcd\n", 2, 3);
        assert_eq!(got[0].bytes.clone().unwrap(), b"abc");
        assert_eq!(got[1].bytes.clone().unwrap_err().len, 4);
    }

    #[test]
    fn chunks_cover_the_input_in_order() {
        let input: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let mut r = BoundedLineReader::new(&input[..], 5, 64, 1);
        let mut all = Vec::new();
        let mut at = 5;
        while let Some((offset, chunk)) = r.next_chunk(300).unwrap() {
            assert_eq!(offset, at);
            at += chunk.len() as u64;
            all.extend(chunk);
        }
        assert_eq!(all, input);
        assert!(r.peak_bytes() <= 64 + 300);
    }
}
