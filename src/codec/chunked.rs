//! HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1): an incremental, sans-IO decoder with
//! bounded lines and trailers, and the size-line encoder. Does not parse response heads
//! (`codec::http_head`) and does not own any socket or body buffer: the caller does.

use std::fmt;

/// Longest chunk-size line, extensions included (the size alone is at most 15 hex digits).
pub const MAX_LINE: usize = 1024;
/// Most trailer bytes after the last chunk (all trailer lines together).
pub const MAX_TRAILERS: usize = 8 * 1024;
/// More hex digits than this could overflow a u64 and no sane chunk needs them.
const MAX_SIZE_DIGITS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// The chunk-size line is not hex digits (optionally followed by `;extensions`).
    BadSize,
    /// A chunk-size or trailer line is longer than `MAX_LINE`.
    LineTooLong,
    /// A chunk's data is not followed by CRLF.
    MissingCrlf,
    /// The trailer section is larger than `MAX_TRAILERS`.
    TrailersTooLarge,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkedError::BadSize => "bad chunk-size line",
            ChunkedError::LineTooLong => "chunk-size or trailer line too long",
            ChunkedError::MissingCrlf => "chunk data not followed by CRLF",
            ChunkedError::TrailersTooLarge => "chunked trailers too large",
        })
    }
}

impl std::error::Error for ChunkedError {}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(u64),
    /// Expecting the CRLF (or a bare LF) after a chunk's data.
    DataEnd,
    /// The CR after a chunk's data came; expecting its LF.
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    Done,
}

/// Decodes one chunked body fed in pieces of any size. Incomplete input is "need more"
/// (`Ok(None)`), never an error; the bytes of an unfinished line are kept (at most `MAX_LINE`).
#[derive(Debug, Default, Clone)]
pub struct ChunkedDecoder {
    state: State,
    line: Vec<u8>,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder::default()
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next run of body data in `input` (borrowed, not copied), advancing `input` past
    /// what was consumed. `Ok(None)`: `input` is used up (need more) or the body is done; after
    /// the end, `input` is left at the first byte past the body.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, ChunkedError> {
        while !input.is_empty() {
            match self.state {
                State::Done => return Ok(None),
                State::Data(left) => {
                    // `take` fits in usize: it is at most input.len().
                    let take = (input.len() as u64).min(left) as usize;
                    let (data, rest) = input.split_at(take);
                    *input = rest;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(data));
                }
                // Checked byte by byte: junk after a chunk's data is an error at once, not
                // a line to wait for.
                State::DataEnd | State::DataLf => {
                    self.state = match (self.state, input[0]) {
                        (State::DataEnd, b'\r') => State::DataLf,
                        (_, b'\n') => State::Size,
                        _ => return Err(ChunkedError::MissingCrlf),
                    };
                    *input = &input[1..];
                }
                State::Size | State::Trailer => {
                    let Some(line) = self.take_line(input)? else {
                        return Ok(None);
                    };
                    self.state = match self.state {
                        State::Size => match parse_size(&line)? {
                            0 => State::Trailer,
                            n => State::Data(n),
                        },
                        _ if line.is_empty() => State::Done,
                        _ => {
                            self.trailer_bytes = self.trailer_bytes.saturating_add(line.len() + 2);
                            if self.trailer_bytes > MAX_TRAILERS {
                                return Err(ChunkedError::TrailersTooLarge);
                            }
                            State::Trailer
                        }
                    };
                }
            }
        }
        Ok(None)
    }

    /// Decodes all of `input`, handing each data run to `sink`; returns the bytes consumed
    /// (less than `input.len()` only when the body ended inside it).
    pub fn decode(
        &mut self,
        input: &[u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkedError> {
        let mut rest = input;
        while let Some(data) = self.next(&mut rest)? {
            sink(data);
        }
        Ok(input.len() - rest.len())
    }

    /// One line without its CRLF (a bare LF is accepted too), once complete.
    fn take_line(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, ChunkedError> {
        let (part, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (&input[..i], Some(i + 1)),
            None => (*input, None),
        };
        // +1: the CR of a CRLF may still be in the buffer.
        if self.line.len() + part.len() > MAX_LINE + 1 {
            return Err(ChunkedError::LineTooLong);
        }
        self.line.extend_from_slice(part);
        let Some(used) = complete else {
            *input = &[];
            return Ok(None);
        };
        *input = &input[used..];
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > MAX_LINE {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(Some(line))
    }
}

/// `1*HEXDIG [BWS] [; extensions]`: the size; extensions are skipped (bounded by the line).
fn parse_size(line: &[u8]) -> Result<u64, ChunkedError> {
    let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
    let size = size.trim_ascii();
    if size.is_empty() || size.len() > MAX_SIZE_DIGITS || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(ChunkedError::BadSize);
    }
    // All hex digits, at most 15: this cannot fail or overflow.
    Ok(size.iter().fold(0u64, |n, &d| {
        n * 16 + (d as char).to_digit(16).unwrap_or(0) as u64
    }))
}

/// Digits of `n` in hexadecimal, the length of a chunk-size line without its CRLF.
pub fn size_digits(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize
}

/// Writes the chunk-size line (`{n:x}\r\n`) for a chunk of `n` bytes into `out`, without
/// allocating; returns the bytes written. `out` must hold at least 18 bytes.
pub fn size_line(n: usize, out: &mut [u8; 18]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = size_digits(n);
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = HEX[(n >> shift) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    digits + 2
}

/// The last-chunk marker with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// `body` as one chunked body (chunks of at most `max_chunk` bytes) with the last chunk.
pub fn encode(body: &[u8], max_chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / max_chunk.max(1) * 20 + 8);
    let mut line = [0u8; 18];
    for chunk in body.chunks(max_chunk.max(1)) {
        let n = size_line(chunk.len(), &mut line);
        out.extend_from_slice(&line[..n]);
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(LAST_CHUNK);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in the pieces given by `cuts`; returns the body, whether it ended, and
    /// the bytes after the body.
    fn run(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool, Vec<u8>), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut after = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            let piece = &input[at..c];
            let used = d.decode(piece, |b| body.extend_from_slice(b))?;
            after.extend_from_slice(&piece[used..]);
            at = c;
        }
        Ok((body, d.is_done(), after))
    }

    #[test]
    fn table_at_every_split_point() {
        let long_ext = format!("3;{}\r\nabc\r\n0\r\n\r\n", "e".repeat(MAX_LINE - 2));
        type Want = Result<(&'static [u8], bool), ChunkedError>;
        let cases: &[(&[u8], Want)] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", Ok((b"hello", true))),
            (
                b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n",
                Ok((b"hello world!", true)),
            ),
            (b"A\r\n0123456789\r\n0\r\n\r\n", Ok((b"0123456789", true))),
            (
                b"a \t; x=\"y\"\r\nabcdefghij\r\n0\r\n\r\n",
                Ok((b"abcdefghij", true)),
            ),
            // Bare LF line ends are tolerated.
            (b"2\nhi\n0\n\n", Ok((b"hi", true))),
            (
                b"2\r\nhi\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n",
                Ok((b"hi", true)),
            ),
            // Incomplete input is "need more", not an error.
            (b"5\r\nhel", Ok((b"hel", false))),
            (b"5\r\nhello\r\n0\r\n", Ok((b"hello", false))),
            (b"", Ok((b"", false))),
            (long_ext.as_bytes(), Ok((b"abc", true))),
            (b"zz\r\n", Err(ChunkedError::BadSize)),
            (b"+5\r\nhello\r\n", Err(ChunkedError::BadSize)),
            (b"\r\n", Err(ChunkedError::BadSize)),
            (b";x\r\n", Err(ChunkedError::BadSize)),
            (b"1000000000000000\r\n", Err(ChunkedError::BadSize)),
            (b"3\r\nFLVxx\r\n", Err(ChunkedError::MissingCrlf)),
            (b"3\r\nabcXY", Err(ChunkedError::MissingCrlf)),
            (b"3\r\nabc\rX", Err(ChunkedError::MissingCrlf)),
            (&[b'1'; MAX_LINE + 2], Err(ChunkedError::LineTooLong)),
        ];
        for (input, want) in cases {
            for cut in 0..=input.len() {
                let got = run(input, &[cut]).map(|(b, done, _)| (b, done));
                let want = want.map(|(b, done)| (b.to_vec(), done));
                assert_eq!(
                    got,
                    want,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(input)
                );
            }
            // And byte by byte.
            let cuts: Vec<usize> = (1..input.len()).collect();
            let got = run(input, &cuts).map(|(b, done, _)| (b, done));
            assert_eq!(got, want.map(|(b, d)| (b.to_vec(), d)));
        }
    }

    #[test]
    fn bytes_after_the_body_are_left_alone() {
        let input = b"2\r\nhi\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
        for cut in 0..=input.len() {
            let (body, done, after) = run(input, &[cut]).unwrap();
            assert_eq!((&body[..], done), (&b"hi"[..], true), "cut {cut}");
            assert_eq!(after, b"HTTP/1.1 200 OK\r\n", "cut {cut}");
        }
    }

    #[test]
    fn trailers_are_bounded() {
        let mut input = b"0\r\n".to_vec();
        while input.len() < MAX_TRAILERS + 100 {
            input.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(run(&input, &[]), Err(ChunkedError::TrailersTooLarge));
    }

    #[test]
    fn a_huge_chunk_is_streamed_not_buffered() {
        // A 2^56-byte chunk is legal framing; the decoder holds none of it.
        let mut d = ChunkedDecoder::new();
        let mut input: &[u8] = b"100000000000000\r\nabc";
        assert_eq!(d.next(&mut input), Ok(Some(&b"abc"[..])));
        assert_eq!(d.next(&mut input), Ok(None));
        assert!(!d.is_done());
    }

    #[test]
    fn encoder_round_trips_and_size_lines_match_format() {
        for n in [
            0usize,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            4095,
            65536,
            1 << 40,
            usize::MAX,
        ] {
            let mut line = [0u8; 18];
            let len = size_line(n, &mut line);
            assert_eq!(&line[..len], format!("{n:x}\r\n").as_bytes());
            assert_eq!(size_digits(n) + 2, len);
        }
        let body: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        for max in [1, 7, 999, 1000, 5000] {
            let enc = encode(&body, max);
            for cut in (0..enc.len()).step_by(13) {
                let (got, done, after) = run(&enc, &[cut]).unwrap();
                assert!(
                    got == body && done && after.is_empty(),
                    "max {max} cut {cut}"
                );
            }
        }
        assert_eq!(encode(b"", 10), LAST_CHUNK);
    }

    /// Hostile input: mutated bodies fed in random pieces never panic, never hold more than a
    /// line, and never give more body bytes than they carry.
    #[test]
    fn mutated_input_never_panics_or_grows() {
        let mut rng = crate::testutil::Rng::new(0xc4a2);
        let valid = encode(&[7u8; 300], 37);
        for _ in 0..3000 {
            let input = rng.mutate(&valid);
            let mut d = ChunkedDecoder::new();
            let mut rest = &input[..];
            let mut body = 0usize;
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                let (piece, tail) = rest.split_at(n);
                rest = tail;
                match d.decode(piece, |b| body += b.len()) {
                    Ok(_) => assert!(d.line.len() <= MAX_LINE + 1),
                    Err(_) => break,
                }
            }
            assert!(body <= input.len());
        }
    }
}
