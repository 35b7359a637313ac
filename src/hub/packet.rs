//! Output forms and `Packet`s: one frame serialised once for one output form (HTTP-FLV, chunked
//! HTTP-FLV, WS-FLV, RTMP) into one contiguous `Bytes`, shared by every viewer of that form
//! through an `Arc`. A `PacketArena` lays a form's consecutive packets side by side in memory.
//! No queues, no policy, no sockets.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::chunk::{self, CSID_AUDIO, CSID_DATA, CSID_VIDEO};
use crate::codec::{chunked, flv, ws};
use std::borrow::Cow;

use crate::media::enhanced::{self, Media};
use crate::media::{Frame, Track};

/// How a viewer wants its bytes. Two viewers with equal forms receive identical bytes, so a
/// frame is serialised once per distinct form on a stream.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum OutputForm {
    /// FLV over HTTP; `chunked` frames every write as one HTTP/1.1 chunk. Of a multitrack
    /// stream, FLV viewers get one track per media as plain tags: `track` (`?track=N`) where the
    /// stream has it, else the default track (0). See `view`.
    HttpFlv { chunked: bool, track: u8, aac: bool },
    /// FLV tags, each in one unmasked binary WebSocket frame (one track per media, as HTTP-FLV).
    WsFlv { track: u8, aac: bool },
    /// RTMP messages on the viewer's message stream, with its outgoing chunk size.
    Rtmp {
        chunk_size: u32,
        stream_id: u32,
        aac: bool,
    },
}

impl OutputForm {
    /// The track an FLV viewer asked for (0, the default, for RTMP players: they get every
    /// track).
    pub fn track(self) -> u8 {
        match self {
            OutputForm::HttpFlv { track, .. } | OutputForm::WsFlv { track, .. } => track,
            OutputForm::Rtmp { .. } => 0,
        }
    }

    /// The viewer cannot take Opus: of an Opus stream it gets the audio bridge's AAC instead
    /// (`Frame::bridged`); of any other stream, the audio as published. Viewers that can take
    /// Opus get the published audio and never the bridged AAC.
    pub fn aac(self) -> bool {
        match self {
            OutputForm::HttpFlv { aac, .. }
            | OutputForm::WsFlv { aac, .. }
            | OutputForm::Rtmp { aac, .. } => aac,
        }
    }

    /// True for the forms that start with an FLV file header.
    pub fn is_flv(self) -> bool {
        !matches!(self, OutputForm::Rtmp { .. })
    }

    /// Short name for stats and logs.
    pub fn kind(self) -> FormKind {
        match self {
            OutputForm::HttpFlv { .. } => FormKind::HttpFlv,
            OutputForm::WsFlv { .. } => FormKind::WsFlv,
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

/// One serialised media message for one output form.
#[derive(Debug)]
pub struct Packet {
    /// The bytes to write: the whole message in the form's framing.
    pub data: Bytes,
    /// The frame's timestamp as players get it (`Frame::dts`).
    pub dts: u32,
    /// The stream's monotonic media time in ms (`Frame::time`, `media::time`): the queue policy
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
    /// The bytes to write.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Serialises `frame` for `form` into a buffer of its own. `key` is the resume-point flag
    /// (it depends on the stream: audio is a resume point only when the stream has no video).
    /// `None` when the form gets nothing of this frame (another track of a multitrack message).
    /// `tracks`: the tracks the stream has announced, which decide what a `?track=N` viewer gets.
    pub fn new(
        form: OutputForm,
        frame: &Frame,
        tracks: &TrackSet,
        time: u64,
        key: bool,
    ) -> Option<Packet> {
        let frame = view(form, frame, tracks)?;
        let mut buf = BytesMut::with_capacity(encoded_len(form, &frame));
        serialise(form, &frame, &mut buf);
        Some(Packet::with_data(buf.freeze(), &frame, time, key))
    }

    /// Like `new`, but the bytes go into `arena`, next to the form's previous packet. Headers
    /// (metadata, sequence headers) get a buffer of their own: the cache keeps them for the
    /// whole stream, and they must not pin a block of media with them.
    pub fn new_in(
        arena: &mut PacketArena,
        form: OutputForm,
        frame: &Frame,
        tracks: &TrackSet,
        time: u64,
        key: bool,
    ) -> Option<Packet> {
        if is_header(frame) {
            return Packet::new(form, frame, tracks, time, key);
        }
        let frame = view(form, frame, tracks)?;
        let buf = arena.room(encoded_len(form, &frame));
        serialise(form, &frame, buf);
        let data = buf.split().freeze();
        Some(Packet::with_data(data, &frame, time, key))
    }

    fn with_data(data: Bytes, frame: &Frame, time: u64, key: bool) -> Packet {
        Packet {
            data,
            dts: frame.dts,
            time,
            track: frame.track,
            key,
            header: is_header(frame),
        }
    }
}

/// The tracks a stream has announced besides the default one, per media: bit N is set once a
/// configuration (SequenceStart, MultichannelConfig) of track N arrived. Encoders send every
/// track's configuration in the burst before the media, so it is known before the frames.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TrackSet {
    /// Audio, then video: 256 bits each.
    bits: [[u64; 4]; 2],
    /// The stream's Opus has an audio bridge: viewers that cannot take Opus get its AAC.
    pub bridged: bool,
}

impl TrackSet {
    fn media(track: Track) -> Option<usize> {
        match track {
            Track::Audio => Some(0),
            Track::Video => Some(1),
            Track::Meta => None,
        }
    }

    /// Notes a configuration of track `id` (0 is always there).
    pub fn add(&mut self, track: Track, id: u8) {
        if let Some(m) = Self::media(track) {
            self.bits[m][usize::from(id / 64)] |= 1 << (id % 64);
        }
    }

    pub fn has(&self, track: Track, id: u8) -> bool {
        Self::media(track)
            .is_some_and(|m| id == 0 || self.bits[m][usize::from(id / 64)] & (1 << (id % 64)) != 0)
    }

    /// The track of this media a viewer asking for `want` gets: `want` where the stream has it,
    /// else the default track (a stream whose second audio track is multitrack keeps its one
    /// video track: a `?track=1` viewer gets that video and audio track 1).
    pub fn pick(&self, track: Track, want: u8) -> u8 {
        if self.has(track, want) {
            want
        } else {
            0
        }
    }
}

/// What `form` gets of `frame`: RTMP players get every message as published (they may read
/// multitrack); an FLV viewer gets one track per media (`TrackSet::pick`): of a multitrack
/// message, that track's packet as a plain Enhanced tag (`media::enhanced::single_track`:
/// players such as mpegts.js read Enhanced RTMP but not multitrack); a plain or legacy message
/// is the default track's, unchanged for a viewer of it. `None`: nothing for this viewer (the
/// message lacks its track, or is malformed).
fn view<'a>(form: OutputForm, frame: &'a Frame, tracks: &TrackSet) -> Option<Cow<'a, Frame>> {
    // The audio bridge: the Opus of the default track goes to the viewers that take Opus, its
    // AAC form to the others.
    if (frame.bridged && !form.aac()) || (form.aac() && tracks.bridged && is_opus(frame)) {
        return None;
    }
    let media = match (form, frame.track) {
        (OutputForm::Rtmp { .. }, _) | (_, Track::Meta) => return Some(Cow::Borrowed(frame)),
        (_, Track::Video) => Media::Video,
        (_, Track::Audio) => Media::Audio,
    };
    let pick = tracks.pick(frame.track, form.track());
    if pick != 0 {
        let data = enhanced::single_track(media, &frame.data, pick).ok()??;
        return Some(Cow::Owned(Frame {
            data,
            ..frame.clone()
        }));
    }
    if !enhanced::is_enhanced(media, *frame.data.first()?) {
        return Some(Cow::Borrowed(frame));
    }
    match enhanced::parse_header(media, &frame.data) {
        Ok(h) if h.multitrack.is_some() => {}
        _ => return Some(Cow::Borrowed(frame)),
    }
    let data = enhanced::single_track(media, &frame.data, 0).ok()??;
    Some(Cow::Owned(Frame {
        data,
        ..frame.clone()
    }))
}

/// The published Opus of the default audio track (what the bridge replaces for AAC viewers).
fn is_opus(frame: &Frame) -> bool {
    frame.track == Track::Audio
        && frame.track_id == 0
        && frame.codec == crate::media::Codec::Opus
        && !frame.bridged
}

fn is_header(frame: &Frame) -> bool {
    frame.track == Track::Meta || frame.config || frame.other_track_config().is_some()
}

/// Append-only blocks that one form's packets are serialised into, one after the other. A
/// packet is a `Bytes` slice of a block; a block is freed when its last packet is. What a
/// viewer at the live edge has queued lies side by side in one or two blocks, which the kernel
/// reads in one sweep when it copies a write.
pub struct PacketArena {
    /// The unused rest of the current block.
    free: BytesMut,
}

/// Block size: about a quarter of a second of a 2 Mbps stream, so a block is freed soon after
/// the cache and the viewers are done with it.
pub const ARENA_BLOCK: usize = 64 * 1024;

impl Default for PacketArena {
    fn default() -> Self {
        PacketArena {
            free: BytesMut::new(),
        }
    }
}

impl PacketArena {
    /// An empty buffer with room for `need` bytes, in the current block when they fit.
    fn room(&mut self, need: usize) -> &mut BytesMut {
        if self.free.capacity() < need {
            self.free = BytesMut::with_capacity(need.max(ARENA_BLOCK));
        }
        &mut self.free
    }
}

/// The exact size of `frame` serialised for `form`.
fn encoded_len(form: OutputForm, frame: &Frame) -> usize {
    let body = frame.data.len();
    let tag = flv::TAG_HEADER_LEN + body + 4;
    match form {
        OutputForm::HttpFlv { chunked: false, .. } => tag,
        OutputForm::HttpFlv { chunked: true, .. } => chunked::size_digits(tag) + 2 + tag + 2,
        OutputForm::WsFlv { .. } => ws::server_header_len(tag) + tag,
        OutputForm::Rtmp { chunk_size, .. } => {
            chunk::encoded_len(csid_for(frame.track), frame.dts, body, chunk_size)
        }
    }
}

/// Appends `frame` in `form`'s framing: one FLV tag (in an HTTP chunk or a WebSocket frame
/// for those forms) or one RTMP message cut into chunks.
fn serialise(form: OutputForm, frame: &Frame, out: &mut BytesMut) {
    match form {
        OutputForm::HttpFlv { chunked, .. } => put_flv_tag(frame, chunked, false, out),
        OutputForm::WsFlv { .. } => put_flv_tag(frame, false, true, out),
        OutputForm::Rtmp {
            chunk_size,
            stream_id,
            ..
        } => chunk::encode_into(
            csid_for(frame.track),
            frame.dts,
            frame.tag_type(),
            stream_id,
            &frame.data,
            chunk_size,
            out,
        ),
    }
}

/// The chunk stream id for a track's media messages.
pub fn csid_for(track: Track) -> u32 {
    match track {
        Track::Audio => CSID_AUDIO,
        Track::Video => CSID_VIDEO,
        Track::Meta => CSID_DATA,
    }
}

/// One FLV tag, with the HTTP chunk line and CRLF around it or a WebSocket frame header
/// before it.
fn put_flv_tag(frame: &Frame, chunked: bool, ws: bool, out: &mut BytesMut) {
    let body = frame.data.len();
    let tag_len = flv::TAG_HEADER_LEN + body + 4;
    if chunked {
        put_size_line(out, tag_len);
    } else if ws {
        put_ws_header(out, tag_len);
    }
    out.put_slice(&flv::tag_header(frame.tag_type(), body, frame.dts));
    out.put_slice(&frame.data);
    out.put_slice(&flv::tag_trailer(body));
    if chunked {
        out.put_slice(b"\r\n");
    }
}

/// The HTTP chunk-size line for a `len`-byte chunk.
fn put_size_line(out: &mut BytesMut, len: usize) {
    let mut line = [0u8; 18];
    let n = chunked::size_line(len, &mut line);
    out.put_slice(&line[..n]);
}

/// Header of one unmasked binary WebSocket frame (FIN, opcode 2) with a `len`-byte payload.
fn put_ws_header(out: &mut BytesMut, len: usize) {
    let (h, n) = ws::binary_header(len);
    out.put_slice(&h[..n]);
}

/// The FLV file header in `form`'s framing: plain for non-chunked HTTP, one HTTP chunk for
/// chunked, one binary WebSocket message for WS. `None` for RTMP, which has no file header.
pub fn flv_file_header(form: OutputForm, has_audio: bool, has_video: bool) -> Option<Bytes> {
    let header = flv::file_header(has_audio, has_video);
    let mut out = BytesMut::with_capacity(header.len() + 16);
    match form {
        OutputForm::HttpFlv { chunked: false, .. } => out.put_slice(&header),
        OutputForm::HttpFlv { chunked: true, .. } => {
            put_size_line(&mut out, header.len());
            out.put_slice(&header);
            out.put_slice(b"\r\n");
        }
        OutputForm::WsFlv { .. } => {
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
    use crate::mux::flv::write_tag;

    fn concat(p: &Packet) -> Vec<u8> {
        assert_eq!(p.data.len(), p.len());
        p.data.to_vec()
    }

    const fn flv(chunked: bool) -> OutputForm {
        OutputForm::HttpFlv {
            chunked,
            track: 0,
            aac: false,
        }
    }

    fn video(dts: u32, len: usize) -> Frame {
        let mut data = vec![0x27, 1, 0, 0, 0];
        data.resize(len.max(5), 0xab);
        Frame::parse(TAG_VIDEO, dts, Bytes::from(data)).unwrap()
    }

    #[test]
    fn flv_tag_bytes_exact() {
        let f = Frame::parse(TAG_AUDIO, 0x0102_0304, Bytes::from_static(&[0xaf, 1, 7])).unwrap();
        let p = Packet::new(flv(false), &f, &TrackSet::default(), 0, true).unwrap();
        let mut want = Vec::new();
        write_tag(&mut want, &f);
        assert_eq!(concat(&p), want);
        assert_eq!(
            concat(&p),
            [8, 0, 0, 3, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0xaf, 1, 7, 0, 0, 0, 14]
        );
        assert!(!p.header);
    }

    #[test]
    fn http_chunk_framing_exact() {
        let f = video(40, 300);
        let p = Packet::new(flv(true), &f, &TrackSet::default(), 0, false).unwrap();
        let mut tag = Vec::new();
        write_tag(&mut tag, &f);
        let mut want = format!("{:x}\r\n", tag.len()).into_bytes();
        want.extend_from_slice(&tag);
        want.extend_from_slice(b"\r\n");
        assert_eq!(concat(&p), want);
        assert!(want.starts_with(b"13b\r\n")); // 11 + 300 + 4 = 315 = 0x13b
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
            let p = Packet::new(
                OutputForm::WsFlv {
                    track: 0,
                    aac: false,
                },
                &f,
                &TrackSet::default(),
                0,
                false,
            )
            .unwrap();
            let bytes = concat(&p);
            assert_eq!(&bytes[..head.len()], &head[..], "payload {payload}");
            assert_eq!(bytes.len() - head.len(), payload);
            let mut tag = Vec::new();
            write_tag(&mut tag, &f);
            assert_eq!(&bytes[head.len()..], &tag[..]);
        }
    }

    #[test]
    fn file_header_framings() {
        let plain = flv_file_header(flv(false), true, false).unwrap();
        assert_eq!(&plain[..], &flv::file_header(true, false)[..]);
        let chunked = flv_file_header(flv(true), false, true).unwrap();
        let mut want = b"d\r\n".to_vec();
        want.extend_from_slice(&flv::file_header(false, true));
        want.extend_from_slice(b"\r\n");
        assert_eq!(&chunked[..], &want[..]);
        let ws = flv_file_header(
            OutputForm::WsFlv {
                track: 0,
                aac: false,
            },
            true,
            true,
        )
        .unwrap();
        assert_eq!(&ws[..2], &[0x82, 13]);
        assert_eq!(&ws[2..], &flv::file_header(true, true)[..]);
        let rtmp = OutputForm::Rtmp {
            chunk_size: 128,
            stream_id: 1,
            aac: false,
        };
        assert!(flv_file_header(rtmp, true, true).is_none());
    }

    const FORMS: [OutputForm; 4] = [
        flv(false),
        flv(true),
        OutputForm::WsFlv {
            track: 0,
            aac: false,
        },
        OutputForm::Rtmp {
            chunk_size: 4096,
            stream_id: 1,
            aac: false,
        },
    ];

    #[test]
    fn arena_packets_are_the_same_bytes_side_by_side() {
        for form in FORMS {
            let mut arena = PacketArena::default();
            let frames: Vec<Frame> = (0..40)
                .map(|i| video(i * 40, 100 + i as usize * 37))
                .collect();
            let packets: Vec<Packet> = frames
                .iter()
                .map(|f| {
                    Packet::new_in(&mut arena, form, f, &TrackSet::default(), 0, false).unwrap()
                })
                .collect();
            let mut adjacent = 0;
            for (f, pair) in frames.iter().zip(packets.windows(2)) {
                assert_eq!(
                    concat(&pair[0]),
                    concat(&Packet::new(form, f, &TrackSet::default(), 0, false).unwrap())
                );
                assert_eq!(
                    pair[0].len(),
                    encoded_len(form, f),
                    "{form:?}: announced size"
                );
                let end = pair[0].data.as_ptr() as usize + pair[0].len();
                adjacent += (end == pair[1].data.as_ptr() as usize) as usize;
            }
            // 40 packets of 100..1600 bytes fill a 64 KiB block about once.
            assert!(
                adjacent >= 37,
                "{form:?}: only {adjacent} of 39 pairs adjacent"
            );
        }
    }

    #[test]
    fn arena_headers_and_big_frames() {
        let mut arena = PacketArena::default();
        let form = flv(true);
        let none = TrackSet::default();
        let mut put = |f: &Frame| Packet::new_in(&mut arena, form, f, &none, 0, false).unwrap();
        let a = put(&video(0, 100));
        // A sequence header is kept apart: the cache holds it for the stream's lifetime.
        let config =
            Frame::parse(TAG_VIDEO, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])).unwrap();
        assert!(config.config);
        let h = put(&config);
        assert!(h.header);
        let b = put(&video(40, 100));
        assert_eq!(a.data.as_ptr() as usize + a.len(), b.data.as_ptr() as usize);
        let h_at = h.data.as_ptr() as usize;
        assert!(!(a.data.as_ptr() as usize..b.data.as_ptr() as usize + b.len()).contains(&h_at));
        // A frame larger than a block gets a block of its own size.
        let big = video(80, ARENA_BLOCK * 3);
        let p = put(&big);
        assert_eq!(
            concat(&p),
            concat(&Packet::new(form, &big, &none, 0, false).unwrap())
        );
    }

    #[test]
    fn rtmp_chunks_split_and_header_fields() {
        let f = video(1000, 300);
        let p = Packet::new(
            OutputForm::Rtmp {
                chunk_size: 128,
                stream_id: 1,
                aac: false,
            },
            &f,
            &TrackSet::default(),
            0,
            false,
        )
        .unwrap();
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
                aac: false,
            },
            &f,
            &TrackSet::default(),
            0,
            false,
        )
        .unwrap();
        let b = concat(&p);
        assert_eq!(&b[1..4], &[0xff, 0xff, 0xff]);
        assert_eq!(&b[12..16], &[1, 0, 0, 0]);
        assert_eq!(&b[16 + 128..16 + 128 + 5], &[0xc6, 1, 0, 0, 0]);
        assert_eq!(b.len(), 16 + 128 + 5 + 72);
    }

    #[test]
    fn rtmp_packets_decode_with_the_chunk_decoder() {
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
            aac: false,
        };
        let mut wire = BytesMut::new();
        for f in &frames {
            wire.extend_from_slice(&concat(
                &Packet::new(form, f, &TrackSet::default(), 0, false).unwrap(),
            ));
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
