//! The RTMP chunk stream DECODER: `ChunkDecoder` turns bytes into whole messages (all header
//! formats, extended timestamps, Set Chunk Size, Abort, caps on every size). The encoder is
//! `codec::chunk` (a leaf the hub uses too); the control message builders are `control`. It
//! does not interpret commands, media or acknowledgements.

use bytes::{Buf, Bytes, BytesMut};

use super::message::{Message, ABORT, SET_CHUNK_SIZE};
use crate::codec::chunk::{DEFAULT_CHUNK_SIZE, EXTENDED, MAX_CHUNK_SIZE};

/// Defaults of `ChunkDecoder::new`.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 16 << 20;
pub const DEFAULT_MAX_CHUNK_SIZE: u32 = 16 << 20;
pub const DEFAULT_MAX_CHUNK_STREAMS: usize = 64;
/// Buffers for unfinished messages start this large and grow as bytes arrive, so that a
/// header declaring 16 MiB costs nothing until the bytes come.
const INITIAL_RESERVE: usize = 64 * 1024;
/// A chunk whose payload is at most this long is consumed only once it is whole (the common
/// case; a single-chunk message is then handed out without a copy). Longer chunks (a peer may
/// set a chunk size of megabytes) are consumed as their bytes arrive, so the caller's input
/// buffer never has to hold a whole large chunk.
const WHOLE_CHUNK_LIMIT: usize = 64 * 1024;

/// Why the chunk stream cannot go on. Every error means the peer broke the protocol or a cap;
/// the caller closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// A message header declared a length above the decoder's cap.
    MessageTooLarge { len: u32, max: usize },
    /// Set Chunk Size above the decoder's cap.
    ChunkSizeTooLarge(u32),
    /// Set Chunk Size of 0.
    ChunkSizeZero,
    /// More distinct chunk stream ids than the decoder's cap.
    TooManyChunkStreams,
    /// A format 2 or 3 header on a chunk stream that never had a format 0 or 1 header.
    BadFormat,
    /// A Set Chunk Size or Abort message whose payload is shorter than its 4-byte field.
    BadControl(u8),
    /// Unfinished messages on all chunk streams together hold more than the cap (twice the
    /// message cap): a peer could otherwise start a large message on every chunk stream.
    TooMuchBuffered(usize),
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::MessageTooLarge { len, max } => {
                write!(f, "RTMP message of {len} bytes exceeds the cap of {max}")
            }
            ChunkError::ChunkSizeTooLarge(n) => write!(f, "RTMP chunk size {n} exceeds the cap"),
            ChunkError::ChunkSizeZero => f.write_str("RTMP chunk size 0"),
            ChunkError::TooManyChunkStreams => f.write_str("too many RTMP chunk streams"),
            ChunkError::BadFormat => {
                f.write_str("RTMP chunk header refers to a chunk stream never started")
            }
            ChunkError::BadControl(t) => {
                write!(f, "RTMP control message type {t} with a short payload")
            }
            ChunkError::TooMuchBuffered(n) => {
                write!(f, "{n} bytes of unfinished RTMP messages exceed the cap")
            }
        }
    }
}

impl std::error::Error for ChunkError {}

/// What the decoder remembers per chunk stream id.
#[derive(Default)]
struct InStream {
    csid: u32,
    /// Absolute timestamp of the last message started on this chunk stream.
    timestamp: u32,
    /// What a format-3 chunk that starts a new message adds to `timestamp`. After format 1 or
    /// 2 it is their delta. After format 0 it is the format-0 timestamp itself: the RTMP 1.0
    /// specification (5.3.1.2.4) says "if a Type 3 chunk follows a Type 0 chunk, then the
    /// timestamp delta for this Type 3 chunk is the same as the timestamp of the Type 0
    /// chunk", and FFmpeg (rtmppkt.c keeps ts_field) and SRS (timestamp_delta set from the
    /// format-0 field) decode it that way. nginx-rtmp uses a delta of 0 instead; our encoder
    /// never sends a format-3 new message right after format 0, so the two never disagree
    /// about what we send.
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// `Some(field)` when the last format 0/1/2 header used an extended timestamp: format-3
    /// chunks then carry (or should carry) the same 4 bytes.
    ext: Option<u32>,
    /// The message being assembled; `None` between messages.
    partial: Option<BytesMut>,
}

impl InStream {
    /// The message whose header this chunk stream holds, with `payload`.
    fn message(&self, payload: Bytes) -> Message {
        Message {
            csid: self.csid,
            timestamp: self.timestamp,
            type_id: self.type_id,
            stream_id: self.stream_id,
            payload,
        }
    }
}

/// A parsed chunk header, not yet applied to the decoder state.
struct Header {
    fmt: u8,
    csid: u32,
    /// Index into `streams`, `None` for a chunk stream id seen for the first time.
    idx: Option<usize>,
    /// Basic + message header + extended timestamp bytes.
    len: usize,
    /// The timestamp or delta (extended field resolved), for formats 0-2.
    time: u32,
    msg_len: u32,
    type_id: u8,
    stream_id: u32,
    /// For formats 0-2: `Some(field)` when the extended field was used.
    ext: Option<u32>,
}

/// Bytes in, whole messages out. See `decode`.
pub struct ChunkDecoder {
    chunk_size: u32,
    max_message_len: usize,
    max_chunk_size: u32,
    max_streams: usize,
    streams: Vec<InStream>,
    /// A large chunk whose header was consumed: (stream index, payload bytes still to come).
    in_chunk: Option<(usize, usize)>,
    /// Bytes held in unfinished messages, and the cap on them.
    buffered: usize,
    max_buffered: usize,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkDecoder {
    /// Chunk size 128, messages up to 16 MiB, chunk sizes up to 16 MiB, 64 chunk streams.
    pub fn new() -> ChunkDecoder {
        Self::with_limits(
            DEFAULT_MAX_MESSAGE_LEN,
            DEFAULT_MAX_CHUNK_SIZE,
            DEFAULT_MAX_CHUNK_STREAMS,
        )
    }

    pub fn with_limits(
        max_message_len: usize,
        max_chunk_size: u32,
        max_chunk_streams: usize,
    ) -> ChunkDecoder {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message_len,
            max_chunk_size: max_chunk_size.clamp(1, MAX_CHUNK_SIZE),
            max_streams: max_chunk_streams,
            streams: Vec::new(),
            in_chunk: None,
            buffered: 0,
            max_buffered: max_message_len.saturating_mul(2),
        }
    }

    /// The chunk size the peer currently sends with.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Decodes from the front of `buf`. Returns a message when one completes (call again until
    /// `Ok(None)`); `Ok(None)` means more bytes are needed. Chunk headers are consumed only
    /// whole; chunk payloads are consumed whole up to 64 KiB and as they arrive beyond that,
    /// so at most one header plus 64 KiB stays in `buf` between calls. Set Chunk Size (type 1)
    /// and Abort (type 2) are applied here (from the next chunk on) and still returned.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ChunkError> {
        loop {
            if let Some((idx, left)) = self.in_chunk {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = left.min(buf.len());
                self.append(idx, &buf[..n])?;
                buf.advance(n);
                if n < left {
                    self.in_chunk = Some((idx, left - n));
                    return Ok(None);
                }
                self.in_chunk = None;
                if let Some(msg) = self.finish_if_complete(idx)? {
                    return Ok(Some(msg));
                }
                continue;
            }

            let Some(h) = self.parse_header(buf)? else {
                return Ok(None);
            };
            let (msg_len, received) = match h.idx {
                Some(i) if h.fmt == 3 => {
                    let st = &self.streams[i];
                    (st.length, st.partial.as_ref().map_or(0, |p| p.len()))
                }
                Some(i) if h.fmt == 2 => (self.streams[i].length, 0),
                _ => (h.msg_len, 0),
            };
            if h.fmt <= 1 && msg_len as usize > self.max_message_len {
                return Err(ChunkError::MessageTooLarge {
                    len: msg_len,
                    max: self.max_message_len,
                });
            }
            if h.idx.is_none() && self.streams.len() >= self.max_streams {
                return Err(ChunkError::TooManyChunkStreams);
            }
            let payload_len = (msg_len as usize - received).min(self.chunk_size as usize);
            let whole = buf.len() >= h.len + payload_len;
            if !whole && payload_len <= WHOLE_CHUNK_LIMIT {
                return Ok(None);
            }

            // The chunk is taken from here on: apply the header.
            let idx = self.apply_header(&h);
            buf.advance(h.len);
            let st = &mut self.streams[idx];
            let new_message = st.partial.is_none();
            if new_message && whole && payload_len == msg_len as usize {
                // The whole message is this one chunk: hand out the bytes without a copy.
                let msg = st.message(buf.split_to(payload_len).freeze());
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }
            if new_message {
                let reserve = (msg_len as usize).min(INITIAL_RESERVE);
                st.partial = Some(BytesMut::with_capacity(reserve));
            }
            let n = payload_len.min(buf.len());
            self.append(idx, &buf[..n])?;
            buf.advance(n);
            if n < payload_len {
                self.in_chunk = Some((idx, payload_len - n));
                return Ok(None);
            }
            if let Some(msg) = self.finish_if_complete(idx)? {
                return Ok(Some(msg));
            }
        }
    }

    /// Adds payload bytes to the unfinished message on stream `idx`, within the buffering cap.
    fn append(&mut self, idx: usize, bytes: &[u8]) -> Result<(), ChunkError> {
        self.buffered += bytes.len();
        if self.buffered > self.max_buffered {
            return Err(ChunkError::TooMuchBuffered(self.buffered));
        }
        if let Some(p) = self.streams[idx].partial.as_mut() {
            p.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Drops (or takes) the unfinished message on stream `idx`, releasing its share of the cap.
    fn take_partial(&mut self, idx: usize) -> Option<BytesMut> {
        let p = self.streams[idx].partial.take();
        self.buffered -= p.as_ref().map_or(0, |p| p.len());
        p
    }

    /// Reads the header at the front of `buf` without changing any state.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + b1 as u32, 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + b1 as u32 + ((b2 as u32) << 8), 3),
                _ => return Ok(None),
            },
            c => (c as u32, 1),
        };
        let idx = self.streams.iter().position(|s| s.csid == csid);
        // Format 1 on a fresh chunk stream is accepted (with stream id 0 and a timestamp
        // base of 0) because librtmp sends its first control messages on csid 2 that way;
        // formats 2 and 3 have no length or type to go on.
        if idx.is_none() && fmt >= 2 {
            return Err(ChunkError::BadFormat);
        }
        let fields = [11, 7, 3, 0][fmt as usize];
        let Some(f) = buf.get(pos..pos + fields) else {
            return Ok(None);
        };
        pos += fields;
        let be24 = |b: &[u8]| (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let mut h = Header {
            fmt,
            csid,
            idx,
            len: 0,
            time: 0,
            msg_len: 0,
            type_id: 0,
            stream_id: 0,
            ext: None,
        };
        if fmt <= 2 {
            h.time = be24(&f[0..3]);
        }
        if fmt <= 1 {
            h.msg_len = be24(&f[3..6]);
            h.type_id = f[6];
        }
        if fmt == 0 {
            h.stream_id = u32::from_le_bytes([f[7], f[8], f[9], f[10]]);
        } else if let Some(i) = idx {
            h.stream_id = self.streams[i].stream_id;
        }
        if fmt <= 2 {
            if h.time == EXTENDED {
                let Some(e) = buf.get(pos..pos + 4) else {
                    return Ok(None);
                };
                pos += 4;
                h.time = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
                h.ext = Some(h.time);
            }
        } else if let Some(field) = idx.and_then(|i| self.streams[i].ext) {
            // Format 3 after an extended header: the specification repeats the 4 bytes, but
            // librtmp and older FFmpeg leave them out on continuation chunks. As SRS does, take
            // the next 4 bytes as the field only when they equal the stored value; otherwise
            // they are payload. (Payload that happens to start with those 4 bytes is
            // indistinguishable; this is the ambiguity every server lives with.) When fewer
            // than 4 bytes are here and they match so far, wait for more.
            let want = field.to_be_bytes();
            let have = &buf[pos..buf.len().min(pos + 4)];
            if have == &want[..have.len()] {
                if have.len() < 4 {
                    return Ok(None);
                }
                pos += 4;
            }
        }
        h.len = pos;
        Ok(Some(h))
    }

    /// Applies a parsed header to its chunk stream (creating it if new); returns its index.
    fn apply_header(&mut self, h: &Header) -> usize {
        let idx = match h.idx {
            Some(i) => i,
            None => {
                self.streams.push(InStream {
                    csid: h.csid,
                    ..InStream::default()
                });
                self.streams.len() - 1
            }
        };
        if h.fmt <= 2 {
            // A new header while a message is unfinished: the peer gave up on that message
            // (as an Abort would say); start over rather than splice two messages.
            self.take_partial(idx);
        }
        let st = &mut self.streams[idx];
        if h.fmt <= 2 {
            st.ext = h.ext;
        }
        match h.fmt {
            0 => {
                st.timestamp = h.time;
                st.delta = h.time;
                st.stream_id = h.stream_id;
            }
            1 | 2 => {
                st.delta = h.time;
                st.timestamp = st.timestamp.wrapping_add(h.time);
            }
            _ => {
                if st.partial.is_none() {
                    st.timestamp = st.timestamp.wrapping_add(st.delta);
                }
            }
        }
        if h.fmt <= 1 {
            st.length = h.msg_len;
            st.type_id = h.type_id;
        }
        idx
    }

    fn finish_if_complete(&mut self, idx: usize) -> Result<Option<Message>, ChunkError> {
        let st = &self.streams[idx];
        let done = st
            .partial
            .as_ref()
            .is_some_and(|p| p.len() >= st.length as usize);
        if !done {
            return Ok(None);
        }
        let payload = self.take_partial(idx).unwrap_or_default().freeze();
        let msg = self.streams[idx].message(payload);
        self.apply_control(&msg)?;
        Ok(Some(msg))
    }

    fn apply_control(&mut self, msg: &Message) -> Result<(), ChunkError> {
        if msg.type_id != SET_CHUNK_SIZE && msg.type_id != ABORT {
            return Ok(());
        }
        let Some(b) = msg.payload.get(..4) else {
            return Err(ChunkError::BadControl(msg.type_id));
        };
        let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if msg.type_id == SET_CHUNK_SIZE {
            // The top bit is reserved and must be zero; ignore it rather than fail.
            let size = v & MAX_CHUNK_SIZE;
            if size == 0 {
                return Err(ChunkError::ChunkSizeZero);
            }
            if size > self.max_chunk_size {
                return Err(ChunkError::ChunkSizeTooLarge(size));
            }
            self.chunk_size = size;
        } else if let Some(idx) = self.streams.iter().position(|s| s.csid == v) {
            self.take_partial(idx);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::chunk::{encode_into, encoded_len, ChunkEncoder};
    use crate::rtmp::control::{abort_msg, set_chunk_size_msg};
    use crate::rtmp::message::{AUDIO, COMMAND_AMF0, VIDEO};
    use bytes::Bytes;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Message {
        Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn drain(dec: &mut ChunkDecoder, buf: &mut BytesMut, out: &mut Vec<Message>) {
        while let Some(m) = dec.decode(buf).unwrap() {
            out.push(m);
        }
    }

    fn decode_whole(bytes: &[u8]) -> Vec<Message> {
        let mut dec = ChunkDecoder::new();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        drain(&mut dec, &mut buf, &mut out);
        assert!(buf.is_empty(), "{} bytes left", buf.len());
        out
    }

    fn decode_bytewise(bytes: &[u8]) -> Vec<Message> {
        let mut dec = ChunkDecoder::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[*b]);
            drain(&mut dec, &mut buf, &mut out);
        }
        assert!(buf.is_empty());
        out
    }

    fn decode_split(bytes: &[u8], at: usize) -> Vec<Message> {
        let mut dec = ChunkDecoder::new();
        let mut buf = BytesMut::from(&bytes[..at]);
        let mut out = Vec::new();
        drain(&mut dec, &mut buf, &mut out);
        buf.extend_from_slice(&bytes[at..]);
        drain(&mut dec, &mut buf, &mut out);
        assert!(buf.is_empty());
        out
    }

    /// Messages over several csids with timestamps that cross 0xFFFFFF, wrap past
    /// 0xFFFFFFFF and sometimes go backwards; sizes repeat often so every format shows up.
    fn random_messages(rng: &mut Rng, count: usize, max_len: u64) -> Vec<Message> {
        let csids = [2u32, 3, 4, 6, 63, 64, 70, 319, 320, 400, 65_599];
        let mut ts = [0u32; 11];
        let mut lens = [0usize; 11];
        let mut out = Vec::new();
        for _ in 0..count {
            let i = rng.below(csids.len() as u64) as usize;
            ts[i] = match rng.below(20) {
                0 => 0xff_fff0 + rng.below(32) as u32,
                1 => 0xffff_fff0 + rng.below(16) as u32,
                2 => ts[i].wrapping_sub(rng.below(1000) as u32),
                3 => ts[i].wrapping_add(0x0100_0000),
                4..=9 => ts[i].wrapping_add(33),
                _ => ts[i].wrapping_add(rng.below(100) as u32),
            };
            if rng.below(3) != 0 || lens[i] == 0 {
                lens[i] = rng.below(max_len) as usize;
            }
            let payload: Vec<u8> = (0..lens[i]).map(|_| rng.next() as u8).collect();
            let type_id = [AUDIO, VIDEO, 18, COMMAND_AMF0][rng.below(4) as usize];
            let stream_id = [0, 1, 1, 1][rng.below(4) as usize];
            out.push(msg(csids[i], ts[i], type_id, stream_id, &payload));
        }
        out
    }

    fn encode_with_chunk_size(messages: &[Message], chunk_size: u32) -> (Vec<Message>, Vec<u8>) {
        let mut enc = ChunkEncoder::new();
        let mut out = Vec::new();
        let mut expect = Vec::new();
        if chunk_size != DEFAULT_CHUNK_SIZE {
            let m = set_chunk_size_msg(chunk_size);
            enc.encode(&m, &mut out);
            enc.set_chunk_size(chunk_size);
            expect.push(m);
        }
        for m in messages {
            enc.encode(m, &mut out);
            expect.push(m.clone());
        }
        (expect, out)
    }

    #[test]
    fn round_trip_random_messages_at_several_chunk_sizes() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for (chunk_size, max_len) in [
            (1, 500),
            (128, 20_000),
            (4096, 70_000),
            (60_000, 200_000),
            (100_000, 200_000),
        ] {
            let messages = random_messages(&mut rng, 200, max_len);
            let (expect, bytes) = encode_with_chunk_size(&messages, chunk_size);
            assert_eq!(decode_whole(&bytes), expect, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn every_split_point_and_byte_by_byte() {
        let mut rng = Rng(77);
        for chunk_size in [128, 4096] {
            let messages = random_messages(&mut rng, 40, 400);
            let (expect, bytes) = encode_with_chunk_size(&messages, chunk_size);
            assert_eq!(decode_bytewise(&bytes), expect);
            for at in 0..=bytes.len() {
                assert_eq!(decode_split(&bytes, at), expect, "split at {at}");
            }
        }
    }

    #[test]
    fn large_chunks_are_consumed_as_they_arrive() {
        // Chunks above WHOLE_CHUNK_LIMIT: bytes leave the caller's buffer before the chunk ends.
        let payload: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let messages = vec![
            msg(4, 0x0100_0000, VIDEO, 1, &payload),
            msg(4, 0x0100_0021, VIDEO, 1, &payload[..70_000]),
        ];
        let (expect, bytes) = encode_with_chunk_size(&messages, 200_000);
        assert_eq!(decode_whole(&bytes), expect);
        assert_eq!(decode_bytewise(&bytes), expect);
        let mut dec = ChunkDecoder::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(1000) {
            buf.extend_from_slice(piece);
            drain(&mut dec, &mut buf, &mut out);
            assert!(buf.len() < WHOLE_CHUNK_LIMIT + 18);
        }
        assert_eq!(out, expect);
    }

    #[test]
    fn each_header_format_by_hand() {
        let mut b = vec![0x03, 0, 0, 0x10, 0, 0, 3, 20, 1, 0, 0, 0, b'a', b'b', b'c'];
        b.extend_from_slice(&[0x43, 0, 0, 5, 0, 0, 2, 9, b'd', b'e']); // fmt 1
        b.extend_from_slice(&[0x83, 0, 0, 7, b'f', b'g']); // fmt 2
        b.extend_from_slice(&[0xc3, b'h', b'i']); // fmt 3 new message: delta 7 again
        let got = decode_whole(&b);
        assert_eq!(
            got,
            vec![
                msg(3, 0x10, 20, 1, b"abc"),
                msg(3, 0x15, 9, 1, b"de"),
                msg(3, 0x1c, 9, 1, b"fg"),
                msg(3, 0x23, 9, 1, b"hi"),
            ]
        );
        assert_eq!(decode_bytewise(&b), got);
    }

    #[test]
    fn fmt3_new_message_after_fmt0_uses_the_fmt0_timestamp_as_delta() {
        let mut b = vec![0x04, 0, 0, 100, 0, 0, 1, 8, 1, 0, 0, 0, 0xaf];
        b.extend_from_slice(&[0xc4, 0xaf, 0xc4, 0xaf]);
        let ts: Vec<u32> = decode_whole(&b).iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![100, 200, 300]);
    }

    #[test]
    fn basic_header_forms() {
        for (basic, csid) in [
            (vec![0x02], 2u32),
            (vec![0x3f], 63),
            (vec![0x00, 0x00], 64),
            (vec![0x00, 0x06], 70),
            (vec![0x00, 0xff], 319),
            (vec![0x01, 0x10, 0x01], 336),
            (vec![0x01, 0xff, 0xff], 65_599),
        ] {
            let mut b = basic.clone();
            b.extend_from_slice(&[0, 0, 1, 0, 0, 1, 8, 0, 0, 0, 0, 0x55]);
            assert_eq!(decode_whole(&b), vec![msg(csid, 1, 8, 0, &[0x55])]);
            // The encoder picks the same (shortest) form.
            let mut out = Vec::new();
            ChunkEncoder::new().encode(&msg(csid, 1, 8, 0, &[0x55]), &mut out);
            assert_eq!(out, b);
        }
        // The 3-byte form may also name small ids.
        let b = [0x01, 0x06, 0x00, 0, 0, 1, 0, 0, 1, 8, 0, 0, 0, 0, 0x55];
        assert_eq!(decode_whole(&b)[0].csid, 70);
    }

    /// fmt 0, timestamp 0x01000000 extended, 200 bytes at chunk size 128.
    fn extended_message(repeat_on_continuation: bool) -> Vec<u8> {
        let mut b = vec![0x06, 0xff, 0xff, 0xff, 0, 0, 200, 9, 1, 0, 0, 0, 1, 0, 0, 0];
        b.extend(std::iter::repeat_n(0x11, 128));
        b.push(0xc6);
        if repeat_on_continuation {
            b.extend_from_slice(&[1, 0, 0, 0]);
        }
        b.extend(std::iter::repeat_n(0x22, 72));
        b
    }

    #[test]
    fn extended_timestamp_with_and_without_repeat_on_continuations() {
        let mut payload = vec![0x11; 128];
        payload.extend(vec![0x22; 72]);
        let expect = vec![msg(6, 0x0100_0000, 9, 1, &payload)];
        for repeat in [true, false] {
            let b = extended_message(repeat);
            assert_eq!(decode_whole(&b), expect, "repeat {repeat}");
            assert_eq!(decode_bytewise(&b), expect, "repeat {repeat}");
        }
        // Our encoder repeats it.
        let mut out = Vec::new();
        ChunkEncoder::new().encode(&expect[0], &mut out);
        assert_eq!(out, extended_message(true));
        // And encode_into too.
        let mut out = Vec::new();
        encode_into(6, 0x0100_0000, 9, 1, &expect[0].payload, 128, &mut out);
        assert_eq!(out, extended_message(true));
    }

    #[test]
    fn extended_delta_on_fmt1_and_fmt3_new_message() {
        let mut b = vec![0x05, 0, 0, 10, 0, 0, 1, 8, 1, 0, 0, 0, 0xaa];
        // fmt 1, delta 0x01000000 in the extended field.
        b.extend_from_slice(&[0x45, 0xff, 0xff, 0xff, 0, 0, 1, 8, 1, 0, 0, 0, 0xbb]);
        // fmt 3 new message, extended field repeated: the same delta again.
        b.extend_from_slice(&[0xc5, 1, 0, 0, 0, 0xcc]);
        // fmt 3 new message without the field.
        b.extend_from_slice(&[0xc5, 0xdd]);
        // fmt 2 with a small delta: no extended field any more.
        b.extend_from_slice(&[0x85, 0, 0, 1, 0xee]);
        let got: Vec<(u32, u8)> = decode_whole(&b)
            .iter()
            .map(|m| (m.timestamp, m.payload[0]))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 0xaa),
                (0x0100_000a, 0xbb),
                (0x0200_000a, 0xcc),
                (0x0300_000a, 0xdd),
                (0x0300_000b, 0xee)
            ]
        );
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let mut b = vec![
            0x04, 0xff, 0xff, 0xff, 0, 0, 1, 8, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0,
        ];
        b.push(0);
        b.extend_from_slice(&[0x84, 0, 0, 0x20, 1]);
        let ts: Vec<u32> = decode_whole(&b).iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![0xffff_fff0, 0x10]);
    }

    #[test]
    fn chunk_size_change_applies_from_the_next_chunk() {
        let mut b = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 4];
        b.extend_from_slice(&[0x03, 0, 0, 0, 0, 0, 10, 20, 0, 0, 0, 0, 0, 1, 2, 3]);
        b.extend_from_slice(&[0xc3, 4, 5, 6, 7, 0xc3, 8, 9]);
        let got = decode_whole(&b);
        assert_eq!(got[0], set_chunk_size_msg(4));
        assert_eq!(got[1], msg(3, 0, 20, 0, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
        let mut dec = ChunkDecoder::new();
        dec.decode(&mut BytesMut::from(&b[..16])).unwrap();
        assert_eq!(dec.chunk_size(), 4);
    }

    #[test]
    fn bad_chunk_sizes_are_errors() {
        let zero = [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut dec = ChunkDecoder::new();
        assert_eq!(
            dec.decode(&mut BytesMut::from(&zero[..])),
            Err(ChunkError::ChunkSizeZero)
        );
        let big = [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x01, 0, 0, 1];
        let mut dec = ChunkDecoder::new();
        assert_eq!(
            dec.decode(&mut BytesMut::from(&big[..])),
            Err(ChunkError::ChunkSizeTooLarge(0x0100_0001))
        );
        let short = [0x02, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 1];
        let mut dec = ChunkDecoder::new();
        assert_eq!(
            dec.decode(&mut BytesMut::from(&short[..])),
            Err(ChunkError::BadControl(1))
        );
    }

    #[test]
    fn abort_discards_the_partial_message() {
        let mut b = vec![0x04, 0, 0, 1, 0, 0, 200, 8, 1, 0, 0, 0];
        b.extend(std::iter::repeat_n(0xaa, 128));
        // Abort csid 4.
        b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 4]);
        // A fmt 3 chunk on csid 4 now starts a new 200-byte message.
        b.push(0xc4);
        b.extend(std::iter::repeat_n(0xbb, 128));
        b.push(0xc4);
        b.extend(std::iter::repeat_n(0xcc, 72));
        let got = decode_whole(&b);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], abort_msg(4));
        assert_eq!(got[1].payload.len(), 200);
        assert_eq!(got[1].payload[0], 0xbb);
        assert_eq!(got[1].timestamp, 2);
    }

    #[test]
    fn interleaved_chunk_streams() {
        let audio: Vec<u8> = (0..200).map(|i| i as u8).collect();
        let video: Vec<u8> = (0..300).map(|i| (i * 7) as u8).collect();
        let mut b = vec![0x04, 0, 0, 5, 0, 0, 200, 8, 1, 0, 0, 0];
        b.extend_from_slice(&audio[..128]);
        b.extend_from_slice(&[0x06, 0, 0, 5, 0, 1, 44, 9, 1, 0, 0, 0]);
        b.extend_from_slice(&video[..128]);
        b.push(0xc6);
        b.extend_from_slice(&video[128..256]);
        b.push(0xc4);
        b.extend_from_slice(&audio[128..]);
        b.push(0xc6);
        b.extend_from_slice(&video[256..]);
        let expect = vec![msg(4, 5, 8, 1, &audio), msg(6, 5, 9, 1, &video)];
        assert_eq!(decode_whole(&b), expect);
        assert_eq!(decode_bytewise(&b), expect);
    }

    #[test]
    fn oversize_message_refused_before_its_bytes_arrive() {
        let b = [0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        let mut dec = ChunkDecoder::with_limits(1 << 20, 1 << 20, 8);
        assert_eq!(
            dec.decode(&mut BytesMut::from(&b[..])),
            Err(ChunkError::MessageTooLarge {
                len: 0xff_ffff,
                max: 1 << 20
            })
        );
        // Also through format 1.
        let mut b = vec![0x04, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0];
        b.extend_from_slice(&[0x44, 0, 0, 0, 0x10, 0, 1, 9]);
        let mut dec = ChunkDecoder::with_limits(1 << 20, 1 << 20, 8);
        let mut buf = BytesMut::from(&b[..]);
        assert!(dec.decode(&mut buf).unwrap().is_some());
        assert!(matches!(
            dec.decode(&mut buf),
            Err(ChunkError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn unfinished_messages_are_capped_together() {
        // Header bytes alone reserve nothing large: a 16 MiB declaration costs 64 KiB at most.
        let mut dec = ChunkDecoder::new();
        let mut buf = BytesMut::from(&set_chunk_size_bytes(1 << 20)[..]);
        buf.extend_from_slice(&[0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0, 1]);
        assert!(dec.decode(&mut buf).unwrap().is_some());
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
        assert!(dec.streams[1].partial.as_ref().unwrap().capacity() <= INITIAL_RESERVE);

        let mut enc = ChunkEncoder::new();
        let mut bytes = Vec::new();
        enc.encode(&set_chunk_size_msg(900), &mut bytes);
        enc.set_chunk_size(900);
        // Completed messages release their share: 50 sequential 1000-byte messages are fine.
        for i in 0..50 {
            enc.encode(&msg(4, i, 9, 1, &[i as u8; 1000]), &mut bytes);
        }
        let mut dec = ChunkDecoder::with_limits(1000, 1 << 20, 64);
        let mut buf = BytesMut::from(&bytes[..]);
        let mut n = 0;
        while dec.decode(&mut buf).unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 51);
        assert_eq!(dec.buffered, 0);
        // Three first chunks of 900 bytes held at once exceed 2 x 1000.
        let mut b = set_chunk_size_bytes(900);
        for csid in [4u8, 5, 6] {
            b.extend_from_slice(&[csid, 0, 0, 0, 0, 0x03, 0xe8, 9, 1, 0, 0, 0]);
            b.extend(std::iter::repeat_n(0, 900));
        }
        let mut dec = ChunkDecoder::with_limits(1000, 1 << 20, 64);
        let mut buf = BytesMut::from(&b[..]);
        assert!(dec.decode(&mut buf).unwrap().is_some());
        assert_eq!(dec.decode(&mut buf), Err(ChunkError::TooMuchBuffered(2700)));
    }

    fn set_chunk_size_bytes(size: u32) -> Vec<u8> {
        let mut out = Vec::new();
        ChunkEncoder::new().encode(&set_chunk_size_msg(size), &mut out);
        out
    }

    #[test]
    fn unknown_chunk_streams_and_too_many() {
        let mut dec = ChunkDecoder::new();
        assert_eq!(
            dec.decode(&mut BytesMut::from(&[0x83, 0, 0, 1][..])),
            Err(ChunkError::BadFormat)
        );
        let mut dec = ChunkDecoder::new();
        assert_eq!(
            dec.decode(&mut BytesMut::from(&[0xc3][..])),
            Err(ChunkError::BadFormat)
        );
        // librtmp's format 1 on a fresh csid 2 is accepted.
        let b = [0x42, 0, 0, 0, 0, 0, 6, 4, 0, 3, 0, 0, 0, 1];
        assert_eq!(decode_whole(&b), vec![msg(2, 0, 4, 0, &[0, 3, 0, 0, 0, 1])]);
        let mut dec = ChunkDecoder::with_limits(1 << 20, 1 << 20, 2);
        let mut buf = BytesMut::new();
        for csid in [3u8, 4, 5] {
            buf.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]);
        }
        assert!(dec.decode(&mut buf).unwrap().is_some());
        assert!(dec.decode(&mut buf).unwrap().is_some());
        assert_eq!(dec.decode(&mut buf), Err(ChunkError::TooManyChunkStreams));
    }

    #[test]
    fn zero_length_messages() {
        let b = [0x04, 0, 0, 1, 0, 0, 0, 8, 1, 0, 0, 0, 0xc4];
        assert_eq!(
            decode_whole(&b),
            vec![msg(4, 1, 8, 1, b""), msg(4, 2, 8, 1, b"")]
        );
    }

    #[test]
    fn new_header_mid_message_restarts() {
        let mut b = vec![0x04, 0, 0, 1, 0, 0, 200, 8, 1, 0, 0, 0];
        b.extend(std::iter::repeat_n(0xaa, 128));
        b.extend_from_slice(&[0x44, 0, 0, 1, 0, 0, 1, 8, 0x77]);
        assert_eq!(decode_whole(&b), vec![msg(4, 2, 8, 1, &[0x77])]);
    }

    #[test]
    fn single_chunk_messages_are_not_copied() {
        let b = [0x04, 0, 0, 1, 0, 0, 3, 8, 1, 0, 0, 0, 1, 2, 3];
        let mut buf = BytesMut::from(&b[..]);
        let base = buf.as_ptr() as usize;
        let m = ChunkDecoder::new().decode(&mut buf).unwrap().unwrap();
        assert_eq!(m.payload.as_ptr() as usize, base + 12);
    }

    #[test]
    fn encode_into_is_a_decodable_stream_of_the_announced_length() {
        for size in [128u32, 1, 7, 4096] {
            let mut rng = Rng(99 + size as u64);
            let mut stream = if size == 128 {
                Vec::new()
            } else {
                set_chunk_size_bytes(size)
            };
            let mut expect = Vec::new();
            for m in random_messages(&mut rng, 60, 1000) {
                let before = stream.len();
                let (ts, ty, sid) = (m.timestamp, m.type_id, m.stream_id);
                encode_into(m.csid, ts, ty, sid, &m.payload, size, &mut stream);
                let want = encoded_len(m.csid, ts, m.payload.len(), size);
                assert_eq!(stream.len() - before, want, "size {size}");
                expect.push(m);
            }
            let real = |v: Vec<Message>| -> Vec<Message> {
                v.into_iter()
                    .filter(|m| m.type_id != SET_CHUNK_SIZE)
                    .collect()
            };
            assert_eq!(real(decode_whole(&stream)), expect, "size {size}");
            assert_eq!(real(decode_bytewise(&stream)), expect, "size {size}");
        }
    }

    #[test]
    fn mutated_streams_never_panic() {
        let mut rng = Rng(2024);
        let (_, clean) = encode_with_chunk_size(&random_messages(&mut rng, 30, 300), 128);
        for _ in 0..2000 {
            let mut bytes = clean.clone();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = rng.next() as u8;
            }
            let cut = rng.below(bytes.len() as u64 + 1) as usize;
            let mut dec = ChunkDecoder::with_limits(4096, 1 << 16, 8);
            let mut buf = BytesMut::from(&bytes[..cut]);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }
}
