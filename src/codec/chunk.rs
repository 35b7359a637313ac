//! The RTMP chunk ENCODER, a leaf that any layer may import: `ChunkEncoder` (per connection,
//! compressed headers) for the sessions, the stateless `encode_into` / `encoded_len` that the hub
//! serialises fan-out media with, the one table of chunk stream ids, and the header-format facts
//! the decoder (`rtmp::chunk`) shares. It does not decode, and knows no message semantics.

use bytes::{BufMut, Bytes};

/// One whole RTMP message as the chunk layer takes it (encoder) or assembles it (the decoder in
/// `rtmp::chunk`). The type ids are in `rtmp::message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Chunk stream id the message travelled (or will travel) on.
    pub csid: u32,
    /// Absolute timestamp in milliseconds (32-bit, wrapping), deltas already resolved.
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

// The chunk stream ids rtmpd sends on: the one table, for the sessions and the hub alike.

/// Protocol control and user control messages (the specification requires csid 2).
pub const CSID_CONTROL: u32 = 2;
/// Commands, onStatus and `|RtmpSampleAccess`.
pub const CSID_COMMAND: u32 = 3;
/// Media the hub pre-serialises with `encode_into` (format 0 always), on the csids FFmpeg and
/// nginx-rtmp use. A session's own `ChunkEncoder` never uses these, so its header compression
/// cannot be confused by chunks written beside it.
pub const CSID_AUDIO: u32 = 4;
/// Data messages (`onMetaData`).
pub const CSID_DATA: u32 = 5;
pub const CSID_VIDEO: u32 = 6;

pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size the specification allows (31 bits); the decoder has its own cap.
pub const MAX_CHUNK_SIZE: u32 = 0x7fff_ffff;
/// Chunk stream ids that a basic header can carry (0 and 1 select the longer header forms).
pub const MIN_CSID: u32 = 2;
pub const MAX_CSID: u32 = 65_599;
/// The largest message length the 3-byte length field can carry.
pub const MAX_MESSAGE_LEN_FIELD: usize = 0xff_ffff;
/// A 3-byte timestamp field with this value means "the real value follows in 4 bytes".
pub const EXTENDED: u32 = 0xff_ffff;

/// What the encoder remembers per chunk stream id.
struct OutStream {
    csid: u32,
    timestamp: u32,
    /// The delta of the last format 1/2 header (meaningless after format 0, see `after_fmt0`).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last full header was format 0; its field may have been extended.
    after_fmt0: bool,
    /// `Some(field)` when the last format 0 header used an extended timestamp.
    ext: Option<u32>,
}

/// Messages in, chunks out, with headers compressed per chunk stream id.
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: Vec<OutStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    pub fn new() -> ChunkEncoder {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }

    /// Takes effect for the next message. Send the Set Chunk Size message first (with the old
    /// size), then call this. Clamped to 1..=MAX_CHUNK_SIZE.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Appends the message as chunks. Header choice: format 0 for the first message on a chunk
    /// stream, a new message stream id, time going backwards or a delta that would need the
    /// extended field (so deltas are never extended, which some players mishandle); format 1
    /// when length or type change; format 3 when the delta repeats the previous format 1/2
    /// delta (never straight after format 0: decoders disagree there); else format 2.
    /// Continuation chunks are format 3 and repeat an extended timestamp.
    ///
    /// A payload longer than the 24-bit length field (16 MiB - 1) cannot be sent: it is dropped
    /// with a warning (nothing we produce comes near it). A csid outside 2..=65599 is a caller
    /// bug and is sent on csid 3.
    pub fn encode(&mut self, msg: &Message, out: &mut Vec<u8>) {
        if msg.payload.len() > MAX_MESSAGE_LEN_FIELD {
            log::warn!(
                "dropping an RTMP message of {} bytes: longer than the length field",
                msg.payload.len()
            );
            return;
        }
        let csid = checked_csid(msg.csid);
        let len = msg.payload.len() as u32;
        let idx = self.streams.iter().position(|s| s.csid == csid);
        let fmt = match idx.map(|i| &self.streams[i]) {
            None => 0,
            Some(p) => {
                let delta = msg.timestamp.wrapping_sub(p.timestamp);
                if p.stream_id != msg.stream_id || delta >= 0x8000_0000 || delta >= EXTENDED {
                    0
                } else if p.length != len || p.type_id != msg.type_id {
                    1
                } else if p.after_fmt0 || p.delta != delta {
                    2
                } else {
                    3
                }
            }
        };
        let idx = idx.unwrap_or_else(|| {
            self.streams.push(OutStream {
                csid,
                timestamp: 0,
                delta: 0,
                length: 0,
                type_id: 0,
                stream_id: 0,
                after_fmt0: true,
                ext: None,
            });
            self.streams.len() - 1
        });
        let st = &mut self.streams[idx];
        let delta = msg.timestamp.wrapping_sub(st.timestamp);
        put_basic_header(fmt, csid, out);
        match fmt {
            0 => {
                let ext = (msg.timestamp >= EXTENDED).then_some(msg.timestamp);
                put_be24(msg.timestamp.min(EXTENDED), out);
                put_be24(len, out);
                out.push(msg.type_id);
                out.extend_from_slice(&msg.stream_id.to_le_bytes());
                if let Some(e) = ext {
                    out.extend_from_slice(&e.to_be_bytes());
                }
                st.after_fmt0 = true;
                st.ext = ext;
                st.stream_id = msg.stream_id;
            }
            1 | 2 => {
                put_be24(delta, out);
                if fmt == 1 {
                    put_be24(len, out);
                    out.push(msg.type_id);
                }
                st.after_fmt0 = false;
                st.ext = None;
                st.delta = delta;
            }
            _ => {}
        }
        st.timestamp = msg.timestamp;
        st.length = len;
        st.type_id = msg.type_id;
        let ext = st.ext;
        let size = self.chunk_size as usize;
        let mut chunks = msg.payload.chunks(size);
        if let Some(first) = chunks.next() {
            out.extend_from_slice(first);
        }
        for piece in chunks {
            put_basic_header(3, csid, out);
            if let Some(e) = ext {
                out.extend_from_slice(&e.to_be_bytes());
            }
            out.extend_from_slice(piece);
        }
    }
}

/// The message as a format-0 first chunk and format-3 continuations, appended to `out`. Needs
/// no encoder state, so one serialisation serves every viewer that uses `chunk_size`. The
/// extended timestamp (timestamp >= 0xFFFFFF) is repeated in every continuation header. A csid
/// outside 2..=65599 is sent on csid 3; a payload longer than the length field appends nothing
/// (with a warning), as in `ChunkEncoder::encode`. `encoded_len` gives the exact size.
pub fn encode_into(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: u32,
    out: &mut impl BufMut,
) {
    if payload.len() > MAX_MESSAGE_LEN_FIELD {
        log::warn!(
            "dropping an RTMP message of {} bytes: longer than the length field",
            payload.len()
        );
        return;
    }
    let csid = checked_csid(csid);
    let size = chunk_size.clamp(1, MAX_CHUNK_SIZE) as usize;
    let ext = timestamp >= EXTENDED;
    let mut head = Vec::with_capacity(18);
    put_basic_header(0, csid, &mut head);
    put_be24(timestamp.min(EXTENDED), &mut head);
    put_be24(payload.len() as u32, &mut head);
    head.push(type_id);
    head.extend_from_slice(&stream_id.to_le_bytes());
    if ext {
        head.extend_from_slice(&timestamp.to_be_bytes());
    }
    out.put_slice(&head);
    let mut cont = Vec::with_capacity(7);
    put_basic_header(3, csid, &mut cont);
    if ext {
        cont.extend_from_slice(&timestamp.to_be_bytes());
    }
    for (i, piece) in payload.chunks(size).enumerate() {
        if i > 0 {
            out.put_slice(&cont);
        }
        out.put_slice(piece);
    }
}

/// The bytes `encode_into` appends for these arguments.
pub fn encoded_len(csid: u32, timestamp: u32, payload_len: usize, chunk_size: u32) -> usize {
    if payload_len > MAX_MESSAGE_LEN_FIELD {
        return 0;
    }
    let csid = checked_csid(csid);
    let basic = match csid {
        2..=63 => 1,
        64..=319 => 2,
        _ => 3,
    };
    let ext = if timestamp >= EXTENDED { 4 } else { 0 };
    let size = chunk_size.clamp(1, MAX_CHUNK_SIZE) as usize;
    let continuations = payload_len.div_ceil(size).saturating_sub(1);
    basic + 11 + ext + payload_len + continuations * (basic + ext)
}

fn checked_csid(csid: u32) -> u32 {
    if (MIN_CSID..=MAX_CSID).contains(&csid) {
        csid
    } else {
        log::warn!("RTMP chunk stream id {csid} out of range, using 3");
        3
    }
}

fn put_basic_header(fmt: u8, csid: u32, out: &mut Vec<u8>) {
    let f = fmt << 6;
    if csid < 64 {
        out.push(f | csid as u8);
    } else if csid < 320 {
        out.extend_from_slice(&[f, (csid - 64) as u8]);
    } else {
        let c = csid - 64;
        out.extend_from_slice(&[f | 1, c as u8, (c >> 8) as u8]);
    }
}

fn put_be24(v: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Message {
        Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn encoder_header_choices() {
        let mut enc = ChunkEncoder::new();
        let mut first = |m: &Message| {
            let mut out = Vec::new();
            enc.encode(m, &mut out);
            (out[0] >> 6, out.len())
        };
        assert_eq!(first(&msg(4, 0, 8, 1, &[1; 10])), (0, 22));
        assert_eq!(first(&msg(4, 20, 8, 1, &[1; 10])), (2, 14)); // same size, new delta
        assert_eq!(first(&msg(4, 40, 8, 1, &[1; 10])), (3, 11)); // same delta
        assert_eq!(first(&msg(4, 60, 8, 1, &[1; 11])), (1, 19)); // new length
        assert_eq!(first(&msg(4, 70, 9, 1, &[1; 11])), (1, 19)); // new type
        assert_eq!(first(&msg(4, 70, 9, 2, &[1; 11])), (0, 23)); // new stream id
        assert_eq!(first(&msg(4, 50, 9, 2, &[1; 11])), (0, 23)); // backwards
        assert_eq!(first(&msg(4, 0x0200_0000, 9, 2, &[1; 11])), (0, 27)); // big jump
        assert_eq!(first(&msg(4, 0x0200_0000, 9, 2, &[1; 11])), (2, 15)); // delta 0 after fmt 0
    }
}
