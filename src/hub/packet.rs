//! Output forms and `Packet`s: one frame serialised once for one output form (HTTP-FLV, chunked
//! HTTP-FLV, WS-FLV, RTMP) as a list of `Bytes` pieces that share the frame's payload. Shared by
//! every viewer of that form through an `Arc`. No queues, no policy, no sockets.

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::{Frame, Track};
use crate::mux::flv;
use crate::rtmp::chunk::encode_pieces;

/// How a viewer wants its bytes. Two viewers with equal forms receive identical bytes, so a
/// frame is serialised once per distinct form on a stream.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum OutputForm {
    /// FLV over HTTP; `chunked` frames every write as one HTTP/1.1 chunk.
    HttpFlv { chunked: bool },
    /// FLV tags, each in one unmasked binary WebSocket frame.
    WsFlv,
    /// RTMP messages on the viewer's message stream, with its outgoing chunk size.
    Rtmp { chunk_size: u32, stream_id: u32 },
}

impl OutputForm {
    /// True for the forms that start with an FLV file header.
    pub fn is_flv(self) -> bool {
        !matches!(self, OutputForm::Rtmp { .. })
    }

    /// Short name for stats and logs.
    pub fn kind(self) -> FormKind {
        match self {
            OutputForm::HttpFlv { .. } => FormKind::HttpFlv,
            OutputForm::WsFlv => FormKind::WsFlv,
            OutputForm::Rtmp { .. } => FormKind::Rtmp,
        }
    }
}

/// The protocol of an output form, for per-protocol viewer counts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FormKind {
    Rtmp,
    HttpFlv,
    WsFlv,
}

/// RTMP chunk stream ids the server uses for media (the ones FFmpeg and nginx-rtmp use).
pub const CSID_AUDIO: u32 = 4;
pub const CSID_META: u32 = 5;
pub const CSID_VIDEO: u32 = 6;

/// One serialised media message for one output form.
#[derive(Debug)]
pub struct Packet {
    /// The bytes to write, in order; the frame payload appears as slices of the frame's `Bytes`.
    pub pieces: Vec<Bytes>,
    /// Sum of the pieces' lengths.
    pub len: usize,
    /// The frame's timestamp as the publisher sent it.
    pub dts: u32,
    /// The stream's monotonic media time in ms (see `stream::Timeline`): the queue policy
    /// measures spans and lag with it so that publisher timestamp jumps and wraps cannot
    /// make a viewer look late.
    pub time: u64,
    pub track: Track,
    /// A point a skipping viewer may resume at: a video keyframe, or any audio frame on a
    /// stream without video.
    pub key: bool,
    /// Metadata or a sequence header: never dropped by the slow-viewer policy, because the
    /// next keyframe cannot be decoded without it.
    pub header: bool,
}

impl Packet {
    /// Serialises `frame` for `form`. `key` is the resume-point flag (it depends on the
    /// stream: audio is a resume point only when the stream has no video).
    pub fn new(form: OutputForm, frame: &Frame, time: u64, key: bool) -> Packet {
        let pieces = match form {
            OutputForm::HttpFlv { chunked } => flv_pieces(frame, chunked, false),
            OutputForm::WsFlv => flv_pieces(frame, false, true),
            OutputForm::Rtmp {
                chunk_size,
                stream_id,
            } => encode_pieces(
                csid_for(frame.track),
                frame.dts,
                frame.tag_type(),
                stream_id,
                &frame.data,
                chunk_size,
            ),
        };
        let len = pieces.iter().map(|p| p.len()).sum();
        Packet {
            pieces,
            len,
            dts: frame.dts,
            time,
            track: frame.track,
            key,
            header: frame.track == Track::Meta || frame.config,
        }
    }
}

/// The chunk stream id for a track's media messages.
pub fn csid_for(track: Track) -> u32 {
    match track {
        Track::Audio => CSID_AUDIO,
        Track::Video => CSID_VIDEO,
        Track::Meta => CSID_META,
    }
}

/// Header piece | body (shared) | trailer piece, with the HTTP chunk line or the WebSocket
/// frame header merged into the first piece and the chunk's CRLF into the last.
fn flv_pieces(frame: &Frame, chunked: bool, ws: bool) -> Vec<Bytes> {
    let body = frame.data.len();
    let tag_len = flv::TAG_HEADER_LEN + body + 4;
    let mut head = BytesMut::with_capacity(flv::TAG_HEADER_LEN + 16);
    if chunked {
        head.put_slice(format!("{tag_len:x}\r\n").as_bytes());
    } else if ws {
        put_ws_header(&mut head, tag_len);
    }
    head.put_slice(&flv::frame_header(frame));
    let mut tail = BytesMut::with_capacity(6);
    tail.put_slice(&flv::tag_trailer(body));
    if chunked {
        tail.put_slice(b"\r\n");
    }
    let mut pieces = Vec::with_capacity(3);
    pieces.push(head.freeze());
    if body > 0 {
        pieces.push(frame.data.clone());
    }
    pieces.push(tail.freeze());
    pieces
}

/// Header of one unmasked binary WebSocket frame (FIN, opcode 2) with a `len`-byte payload.
fn put_ws_header(out: &mut BytesMut, len: usize) {
    out.put_u8(0x82);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= 0xffff {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// The FLV file header in `form`'s framing: plain for non-chunked HTTP, one HTTP chunk for
/// chunked, one binary WebSocket message for WS. `None` for RTMP, which has no file header.
pub fn flv_file_header(form: OutputForm, has_audio: bool, has_video: bool) -> Option<Bytes> {
    let header = flv::file_header(has_audio, has_video);
    let mut out = BytesMut::with_capacity(header.len() + 16);
    match form {
        OutputForm::HttpFlv { chunked: false } => out.put_slice(&header),
        OutputForm::HttpFlv { chunked: true } => {
            out.put_slice(format!("{:x}\r\n", header.len()).as_bytes());
            out.put_slice(&header);
            out.put_slice(b"\r\n");
        }
        OutputForm::WsFlv => {
            put_ws_header(&mut out, header.len());
            out.put_slice(&header);
        }
        OutputForm::Rtmp { .. } => return None,
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};

    fn concat(p: &Packet) -> Vec<u8> {
        let mut v = Vec::new();
        for piece in &p.pieces {
            v.extend_from_slice(piece);
        }
        assert_eq!(v.len(), p.len);
        v
    }

    fn video(dts: u32, len: usize) -> Frame {
        let mut data = vec![0x27, 1, 0, 0, 0];
        data.resize(len.max(5), 0xab);
        Frame::parse(TAG_VIDEO, dts, Bytes::from(data)).unwrap()
    }

    #[test]
    fn flv_tag_bytes_exact() {
        let f = Frame::parse(TAG_AUDIO, 0x0102_0304, Bytes::from_static(&[0xaf, 1, 7])).unwrap();
        let p = Packet::new(OutputForm::HttpFlv { chunked: false }, &f, 0, true);
        let mut want = Vec::new();
        flv::write_tag(&mut want, &f);
        assert_eq!(concat(&p), want);
        assert_eq!(
            concat(&p),
            [8, 0, 0, 3, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0xaf, 1, 7, 0, 0, 0, 14]
        );
        assert_eq!(p.pieces.len(), 3);
        assert!(!p.header);
    }

    #[test]
    fn http_chunk_framing_exact() {
        let f = video(40, 300);
        let p = Packet::new(OutputForm::HttpFlv { chunked: true }, &f, 0, false);
        let mut tag = Vec::new();
        flv::write_tag(&mut tag, &f);
        let mut want = format!("{:x}\r\n", tag.len()).into_bytes();
        want.extend_from_slice(&tag);
        want.extend_from_slice(b"\r\n");
        assert_eq!(concat(&p), want);
        assert!(want.starts_with(b"13b\r\n")); // 11 + 300 + 4 = 315 = 0x13b
        assert_eq!(p.pieces.len(), 3);
    }

    #[test]
    fn ws_frame_header_lengths() {
        // Payload = tag = 11 + body + 4: pick bodies for 125, 126 and 65536-byte payloads.
        for (payload, head) in [
            (125usize, vec![0x82u8, 125]),
            (126, vec![0x82, 126, 0, 126]),
            (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let f = video(0, payload - 15);
            let p = Packet::new(OutputForm::WsFlv, &f, 0, false);
            let bytes = concat(&p);
            assert_eq!(&bytes[..head.len()], &head[..], "payload {payload}");
            assert_eq!(bytes.len() - head.len(), payload);
            let mut tag = Vec::new();
            flv::write_tag(&mut tag, &f);
            assert_eq!(&bytes[head.len()..], &tag[..]);
        }
    }

    #[test]
    fn file_header_framings() {
        let plain = flv_file_header(OutputForm::HttpFlv { chunked: false }, true, false).unwrap();
        assert_eq!(&plain[..], &flv::file_header(true, false)[..]);
        let chunked = flv_file_header(OutputForm::HttpFlv { chunked: true }, false, true).unwrap();
        let mut want = b"d\r\n".to_vec();
        want.extend_from_slice(&flv::file_header(false, true));
        want.extend_from_slice(b"\r\n");
        assert_eq!(&chunked[..], &want[..]);
        let ws = flv_file_header(OutputForm::WsFlv, true, true).unwrap();
        assert_eq!(&ws[..2], &[0x82, 13]);
        assert_eq!(&ws[2..], &flv::file_header(true, true)[..]);
        let rtmp = OutputForm::Rtmp {
            chunk_size: 128,
            stream_id: 1,
        };
        assert!(flv_file_header(rtmp, true, true).is_none());
    }

    #[test]
    fn body_is_shared_not_copied() {
        let f = video(0, 1000);
        for form in [
            OutputForm::HttpFlv { chunked: true },
            OutputForm::WsFlv,
            OutputForm::Rtmp {
                chunk_size: 4096,
                stream_id: 1,
            },
        ] {
            let p = Packet::new(form, &f, 0, false);
            assert!(p
                .pieces
                .iter()
                .any(|b| b.as_ptr() == f.data.as_ptr() && b.len() == f.data.len()));
        }
    }

    #[test]
    fn rtmp_chunks_split_and_header_fields() {
        let f = video(1000, 300);
        let p = Packet::new(
            OutputForm::Rtmp {
                chunk_size: 128,
                stream_id: 1,
            },
            &f,
            0,
            false,
        );
        let b = concat(&p);
        // fmt 0, csid 6; ts 1000; len 300; type 9; stream id 1 little-endian.
        assert_eq!(&b[..12], &[6, 0, 0x03, 0xe8, 0, 0x01, 0x2c, 9, 1, 0, 0, 0]);
        assert_eq!(&b[12..140], &f.data[..128]);
        assert_eq!(b[140], 0xc6);
        assert_eq!(&b[141..269], &f.data[128..256]);
        assert_eq!(b[269], 0xc6);
        assert_eq!(&b[270..], &f.data[256..]);
    }

    #[test]
    fn rtmp_extended_timestamp_on_every_chunk() {
        let f = video(0x0100_0000, 200);
        let p = Packet::new(
            OutputForm::Rtmp {
                chunk_size: 128,
                stream_id: 1,
            },
            &f,
            0,
            false,
        );
        let b = concat(&p);
        assert_eq!(&b[1..4], &[0xff, 0xff, 0xff]);
        assert_eq!(&b[12..16], &[1, 0, 0, 0]);
        assert_eq!(&b[16 + 128..16 + 128 + 5], &[0xc6, 1, 0, 0, 0]);
        assert_eq!(b.len(), 16 + 128 + 5 + 72);
    }

    #[test]
    fn rtmp_pieces_decode_with_the_chunk_decoder() {
        use crate::rtmp::chunk::ChunkDecoder;
        use bytes::BytesMut;
        let frames = [
            video(1000, 300),
            Frame::parse(TAG_AUDIO, 1010, Bytes::from_static(&[0xaf, 1, 7])).unwrap(),
            video(0x0100_0000, 1000),
            Frame::parse(TAG_SCRIPT, 0, Bytes::from_static(&[2, 0, 1, b'x'])).unwrap(),
        ];
        let form = OutputForm::Rtmp {
            chunk_size: 128,
            stream_id: 1,
        };
        let mut wire = BytesMut::new();
        for f in &frames {
            wire.extend_from_slice(&concat(&Packet::new(form, f, 0, false)));
        }
        let mut dec = ChunkDecoder::new();
        for f in &frames {
            let m = dec.decode(&mut wire).unwrap().expect("a whole message");
            assert_eq!(m.csid, csid_for(f.track));
            assert_eq!(m.timestamp, f.dts);
            assert_eq!(m.type_id, f.tag_type());
            assert_eq!(m.stream_id, 1);
            assert_eq!(m.payload, f.data);
        }
        assert!(wire.is_empty());
    }
}
