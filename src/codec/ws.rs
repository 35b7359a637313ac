//! WebSocket framing (RFC 6455 section 5): an incremental reader of the unmasked frames a server
//! sends, the masked frames a client writes, and the header of the binary frames the server's
//! media packets carry. Does not do the HTTP upgrade and does not read client frames (the
//! server's WebSocket is tungstenite, in `http::ws`).

use std::fmt;

/// Control frames carry at most this much payload (RFC 6455 5.5).
const MAX_CONTROL: u64 = 125;

pub const OP_CONTINUATION: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// A server must not mask its frames.
    Masked,
    /// A control frame over 125 bytes, or fragmented.
    BadControl,
    /// A frame larger than the reader's limit.
    TooLarge(u64),
    /// A reserved opcode, reserved bits set, or a continuation with no message to continue.
    BadFrame,
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Masked => f.write_str("masked frame from the server"),
            WsError::BadControl => f.write_str("oversized control frame"),
            WsError::TooLarge(n) => write!(f, "WebSocket frame of {n} bytes"),
            WsError::BadFrame => f.write_str("bad WebSocket frame header"),
        }
    }
}

impl std::error::Error for WsError {}

/// One thing out of the server's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A piece of a data message's payload, in order (a frame may come in several pieces).
    Data {
        text: bool,
        payload: &'a [u8],
    },
    /// A complete ping (answer it with a pong carrying the same payload).
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A complete close frame; its payload is the status code and reason, if any.
    Close(Vec<u8>),
}

/// Reads server frames fed in pieces of any size; holds at most a 14-byte header and one
/// control payload.
#[derive(Debug, Clone)]
pub struct WsReader {
    max_frame: u64,
    hdr: [u8; 10],
    have: usize,
    /// The frame being read, once its header is complete: opcode and payload bytes left.
    frame: Option<(u8, u64)>,
    /// The opcode of the data message a continuation continues (None between messages).
    message: Option<u8>,
    control: Vec<u8>,
}

impl WsReader {
    /// A reader refusing frames with more than `max_frame` payload bytes.
    pub fn new(max_frame: u64) -> WsReader {
        WsReader {
            max_frame,
            hdr: [0; 10],
            have: 0,
            frame: None,
            message: None,
            control: Vec::new(),
        }
    }

    /// The next event in `input`, advancing it past what was consumed; `Ok(None)` when
    /// `input` is used up (need more).
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<WsEvent<'a>>, WsError> {
        loop {
            if let Some((opcode, left)) = self.frame {
                if opcode < OP_CLOSE {
                    if left == 0 {
                        self.frame = None;
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (input.len() as u64).min(left) as usize;
                    let (payload, rest) = input.split_at(take);
                    *input = rest;
                    self.frame = Some((opcode, left - take as u64));
                    let text = opcode == OP_TEXT;
                    return Ok(Some(WsEvent::Data { text, payload }));
                }
                let take = (input.len() as u64).min(left) as usize;
                self.control.extend_from_slice(&input[..take]);
                *input = &input[take..];
                if left > take as u64 {
                    self.frame = Some((opcode, left - take as u64));
                    return Ok(None);
                }
                self.frame = None;
                let payload = std::mem::take(&mut self.control);
                return Ok(Some(match opcode {
                    OP_PING => WsEvent::Ping(payload),
                    OP_PONG => WsEvent::Pong(payload),
                    _ => WsEvent::Close(payload),
                }));
            }
            if !self.read_header(input)? {
                return Ok(None);
            }
        }
    }

    /// Collects the header; true once a frame has started (`self.frame` set).
    fn read_header(&mut self, input: &mut &[u8]) -> Result<bool, WsError> {
        // 2 bytes, then 0, 2 or 8 length bytes; a server frame has no mask key.
        let need = if self.have < 2 {
            2
        } else {
            match self.hdr[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            }
        };
        let n = (need - self.have).min(input.len());
        self.hdr[self.have..self.have + n].copy_from_slice(&input[..n]);
        self.have += n;
        *input = &input[n..];
        if self.have < need {
            return Ok(false);
        }
        let (b0, b1) = (self.hdr[0], self.hdr[1]);
        if b1 & 0x80 != 0 {
            return Err(WsError::Masked);
        }
        let len = match b1 & 0x7f {
            126 if self.have < 4 => return self.read_header(input),
            127 if self.have < 10 => return self.read_header(input),
            126 => u16::from_be_bytes([self.hdr[2], self.hdr[3]]) as u64,
            127 => u64::from_be_bytes([
                self.hdr[2],
                self.hdr[3],
                self.hdr[4],
                self.hdr[5],
                self.hdr[6],
                self.hdr[7],
                self.hdr[8],
                self.hdr[9],
            ]),
            n => n as u64,
        };
        self.have = 0;
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            return Err(WsError::BadFrame);
        }
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG if len > MAX_CONTROL || !fin => {
                return Err(WsError::BadControl)
            }
            OP_CLOSE | OP_PING | OP_PONG => {}
            _ if len > self.max_frame => return Err(WsError::TooLarge(len)),
            OP_CONTINUATION => {
                let Some(op) = self.message else {
                    return Err(WsError::BadFrame);
                };
                self.frame = Some((op, len));
                if fin {
                    self.message = None;
                }
                return Ok(true);
            }
            OP_TEXT | OP_BINARY => {
                self.message = (!fin).then_some(opcode);
            }
            _ => return Err(WsError::BadFrame),
        }
        self.control.clear();
        self.frame = Some((opcode, len));
        Ok(true)
    }
}

/// A masked client frame with FIN set.
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Bytes of the header of an unmasked frame with a `len`-byte payload.
pub fn server_header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// The header of one unmasked binary frame (FIN, opcode 2) with a `len`-byte payload, and how
/// many of the 10 bytes it uses; written straight into a packet, without allocating.
pub fn binary_header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | OP_BINARY;
    let n = server_header_len(len);
    match n {
        2 => h[1] = len as u8,
        4 => {
            h[1] = 126;
            h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h[1] = 127;
            h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        }
    }
    (h, n)
}

/// An unmasked server frame with FIN set (what a server sends; for tests and stand-ins).
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Got {
        Data(bool, Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Vec<u8>),
    }

    /// Feeds `input` in the pieces given by `cuts`; data pieces of one message are merged.
    fn run(input: &[u8], cuts: &[usize]) -> Result<Vec<Got>, WsError> {
        let mut r = WsReader::new(1 << 20);
        let mut out: Vec<Got> = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            let mut piece = &input[at..c];
            while let Some(ev) = r.next(&mut piece)? {
                match ev {
                    WsEvent::Data { text, payload } => match out.last_mut() {
                        Some(Got::Data(t, d)) if *t == text => d.extend_from_slice(payload),
                        _ => out.push(Got::Data(text, payload.to_vec())),
                    },
                    WsEvent::Ping(p) => out.push(Got::Ping(p)),
                    WsEvent::Pong(p) => out.push(Got::Pong(p)),
                    WsEvent::Close(p) => out.push(Got::Close(p)),
                }
            }
            assert!(piece.is_empty());
            at = c;
        }
        Ok(out)
    }

    #[test]
    fn frames_at_every_split_point() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut input = server_frame(OP_BINARY, b"FLV");
        input.extend(server_frame(OP_PING, b"hi"));
        input.extend(server_frame(OP_TEXT, b"t"));
        input.extend(server_frame(OP_BINARY, &big[..300]));
        input.extend(server_frame(OP_BINARY, &[]));
        input.extend(server_frame(OP_PONG, b""));
        // A fragmented binary message with a ping between its frames.
        input.extend([OP_BINARY, 2, b'a', b'b']);
        input.extend(server_frame(OP_PING, b""));
        input.extend([0x80, 1, b'c']);
        input.extend(server_frame(OP_BINARY, &big));
        input.extend(server_frame(OP_CLOSE, &1000u16.to_be_bytes()));
        let mut want_big = big[..300].to_vec();
        want_big.extend_from_slice(b"ab");
        let whole = run(&input, &[]).unwrap();
        assert_eq!(
            whole,
            vec![
                Got::Data(false, b"FLV".to_vec()),
                Got::Ping(b"hi".to_vec()),
                Got::Data(true, b"t".to_vec()),
                Got::Data(false, big[..300].to_vec()),
                Got::Pong(Vec::new()),
                Got::Data(false, b"ab".to_vec()),
                Got::Ping(Vec::new()),
                Got::Data(false, [b"c".as_slice(), &big].concat()),
                Got::Close(vec![3, 232]),
            ]
        );
        // Every split point of the frames before the big one, then a stride over the rest.
        for cut in (0..400).chain((400..input.len()).step_by(997)) {
            assert_eq!(run(&input, &[cut]).unwrap(), whole, "cut {cut}");
        }
        let small = &input[..input.len() - big.len() - 14];
        let cuts: Vec<usize> = (1..small.len()).collect();
        assert_eq!(run(small, &cuts).unwrap(), run(small, &[]).unwrap());
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], WsError)] = &[
            (&[0x82, 0x81, 1, 2, 3, 4, 5], WsError::Masked),
            (&[0x89, 126, 0, 200], WsError::BadControl),
            (&[0x09, 0], WsError::BadControl),
            (&[0x83, 0], WsError::BadFrame),
            (&[0xc2, 0], WsError::BadFrame),
            (&[0x80, 0], WsError::BadFrame),
            (
                &[0x82, 127, 0, 0, 0, 0, 0, 0x20, 0, 0],
                WsError::TooLarge(0x20_0000),
            ),
        ];
        for (input, want) in cases {
            for cut in 0..=input.len() {
                assert_eq!(
                    run(input, &[cut]).as_ref(),
                    Err(want),
                    "{input:?} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn binary_headers_match_whole_frames_and_read_back() {
        for len in [0usize, 1, 125, 126, 127, 0xffff, 0x10000, 70_000] {
            let payload = vec![7u8; len];
            let (h, n) = binary_header(len);
            assert_eq!(n, server_header_len(len));
            let mut frame = h[..n].to_vec();
            frame.extend_from_slice(&payload);
            assert_eq!(frame, server_frame(OP_BINARY, &payload), "{len}");
            let want = if len == 0 {
                vec![]
            } else {
                vec![Got::Data(false, payload)]
            };
            assert_eq!(run(&frame, &[n.min(frame.len())]).unwrap(), want, "{len}");
        }
    }

    /// A client frame read back the way a server reads it: length form, mask, payload.
    #[test]
    fn client_frames_unmask_to_their_payload_in_every_length_form() {
        for (len, form) in [
            (0usize, 0u8),
            (125, 125),
            (126, 126),
            (0xffff, 126),
            (70_000, 127),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mask = [0x5a, 0x01, 0xff, 0x80];
            let f = client_frame(OP_PONG, &payload, mask);
            assert_eq!((f[0], f[1]), (0x80 | OP_PONG, 0x80 | form), "{len}");
            let at = match form {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            assert_eq!(&f[at..at + 4], &mask);
            let back: Vec<u8> = f[at + 4..]
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            assert_eq!(back, payload, "{len}");
        }
    }

    /// Hostile input: mutated frame streams fed in random pieces never panic and never buffer
    /// more than a control payload.
    #[test]
    fn mutated_frames_never_panic_or_grow() {
        let mut rng = crate::testutil::Rng::new(0x3e5);
        let mut valid = server_frame(OP_BINARY, &[1; 200]);
        valid.extend(server_frame(OP_PING, b"abc"));
        valid.extend([OP_TEXT, 1, b'x', 0x80, 1, b'y']);
        valid.extend(server_frame(OP_CLOSE, b""));
        for _ in 0..3000 {
            let input = rng.mutate(&valid);
            let mut r = WsReader::new(1 << 16);
            let mut rest = &input[..];
            'feed: while !rest.is_empty() {
                let n = 1 + rng.below(rest.len());
                let (mut piece, tail) = rest.split_at(n);
                rest = tail;
                loop {
                    match r.next(&mut piece) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                    assert!(r.control.len() <= MAX_CONTROL as usize);
                }
                assert!(piece.is_empty());
            }
        }
    }
}
