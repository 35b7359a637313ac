//! Enhanced RTMP (veovera E-RTMP v1 and v2) audio and video tag headers, parsed from the FLV tag
//! body / RTMP message payload: ModEx prefixes, FourCC, packet type, the multitrack forms and track
//! ids, composition time, and where each track's codec payload lies. Parsing borrows and never
//! copies; every length is checked and bad input is an `Error`, never a panic. `single_track`
//! rewrites one track of a multitrack message as a plain Ex tag (for FLV viewers of `?track=N`),
//! the one place that copies. Codec payloads themselves (hvcC, av1C, OpusHead, ...) are parsed by
//! their own modules; legacy (non-Ex) tags by `frame`.

use std::fmt;
use std::ops::Range;

use crate::media::frame::Codec;

/// Video FourCCs (E-RTMP `VideoFourCc`).
pub const FOURCC_AVC: [u8; 4] = *b"avc1";
pub const FOURCC_HEVC: [u8; 4] = *b"hvc1";
pub const FOURCC_AV1: [u8; 4] = *b"av01";
pub const FOURCC_VP9: [u8; 4] = *b"vp09";
pub const FOURCC_VP8: [u8; 4] = *b"vp08";
/// Audio FourCCs (E-RTMP `AudioFourCc`).
pub const FOURCC_OPUS: [u8; 4] = *b"Opus";
pub const FOURCC_AAC: [u8; 4] = *b"mp4a";
pub const FOURCC_MP3: [u8; 4] = *b".mp3";
pub const FOURCC_AC3: [u8; 4] = *b"ac-3";
pub const FOURCC_EAC3: [u8; 4] = *b"ec-3";
pub const FOURCC_FLAC: [u8; 4] = *b"fLaC";

/// FLV sound format 9 switches the audio tag into FourCC mode.
pub const SOUND_FORMAT_EX_HEADER: u8 = 9;
/// Video frame type 5: a command frame (no video data, one command byte).
pub const FRAME_TYPE_COMMAND: u8 = 5;

/// The wire values of `VideoPacketType` / `AudioPacketType` that are not a packet of their own.
const VIDEO_MULTITRACK: u8 = 6;
const AUDIO_MULTITRACK: u8 = 5;
const MOD_EX: u8 = 7;
const METADATA: u8 = 4;
/// `VideoPacketModExType` / `AudioPacketModExType` 0: a sub-millisecond timestamp offset.
const MOD_EX_TIMESTAMP_OFFSET_NANO: u8 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    Audio,
    Video,
}

/// What one track's packet holds (after ModEx and the multitrack wrapper are unwrapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// The codec configuration (hvcC, av1C, vpcC, avcC, AudioSpecificConfig, OpusHead, STREAMINFO).
    SequenceStart,
    /// Coded frames; for `avc1`/`hvc1` video with a 24-bit composition time first.
    CodedFrames,
    /// Video only: coded frames with an implicit composition time of 0.
    CodedFramesX,
    SequenceEnd,
    /// Video only: AMF-encoded metadata (`colorInfo`); the frame type is to be ignored.
    Metadata,
    /// Video only: an MPEG-2 TS descriptor (AV1 video descriptor) starting the sequence.
    Mpeg2TsSequenceStart,
    /// Audio only: channel order and layout.
    MultichannelConfig,
}

impl PacketType {
    fn video(v: u8) -> Result<PacketType, Error> {
        Ok(match v {
            0 => PacketType::SequenceStart,
            1 => PacketType::CodedFrames,
            2 => PacketType::SequenceEnd,
            3 => PacketType::CodedFramesX,
            4 => PacketType::Metadata,
            5 => PacketType::Mpeg2TsSequenceStart,
            VIDEO_MULTITRACK | MOD_EX => return Err(Error::MisplacedPacketType(v)),
            _ => return Err(Error::ReservedPacketType(v)),
        })
    }

    fn audio(v: u8) -> Result<PacketType, Error> {
        Ok(match v {
            0 => PacketType::SequenceStart,
            1 => PacketType::CodedFrames,
            2 => PacketType::SequenceEnd,
            4 => PacketType::MultichannelConfig,
            AUDIO_MULTITRACK | MOD_EX => return Err(Error::MisplacedPacketType(v)),
            _ => return Err(Error::ReservedPacketType(v)),
        })
    }
}

/// `AvMultitrackType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultitrackType {
    /// One track, with a track id but no size field.
    OneTrack,
    /// Several tracks of one codec (one FourCC in the header), each with a track id and a size.
    ManyTracks,
    /// Several tracks, each with its own FourCC, track id and size.
    ManyTracksManyCodecs,
}

/// Why an Enhanced RTMP tag could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The tag ends inside a header field or inside a track's declared size.
    Truncated,
    /// Not an Ex header (legacy tag): `frame` parses those.
    NotEnhanced,
    /// A reserved `VideoPacketType`/`AudioPacketType` value.
    ReservedPacketType(u8),
    /// Multitrack or ModEx where the spec forbids it (inside a multitrack wrapper).
    MisplacedPacketType(u8),
    /// A reserved `AvMultitrackType` value.
    ReservedMultitrackType(u8),
    /// A multitrack message with no track in it.
    NoTrack,
    /// Another reserved enumeration value (e.g. an `AudioChannelOrder`).
    ReservedValue(u8),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("Enhanced RTMP tag truncated"),
            Error::NotEnhanced => f.write_str("not an Enhanced RTMP tag"),
            Error::ReservedPacketType(v) => write!(f, "Enhanced RTMP reserved packet type {v}"),
            Error::MisplacedPacketType(v) => {
                write!(
                    f,
                    "Enhanced RTMP packet type {v} inside a multitrack packet"
                )
            }
            Error::ReservedMultitrackType(v) => {
                write!(f, "Enhanced RTMP reserved multitrack type {v}")
            }
            Error::NoTrack => f.write_str("Enhanced RTMP multitrack packet without a track"),
            Error::ReservedValue(v) => write!(f, "Enhanced RTMP reserved value {v}"),
        }
    }
}

impl std::error::Error for Error {}

/// The message-level part of an Ex tag: everything before the first track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExHeader {
    pub media: Media,
    /// Video: the 3-bit frame type (1 key, 2 inter, 3 disposable inter, 4 generated key,
    /// 5 command). Audio: 0.
    pub frame_type: u8,
    /// The packet type of every track in this message.
    pub packet_type: PacketType,
    /// `None` for a plain (single, track 0) Ex tag.
    pub multitrack: Option<MultitrackType>,
    /// The FourCC shared by the tracks; `None` for `ManyTracksManyCodecs` (each track has its
    /// own) and for command frames (which name no codec).
    pub fourcc: Option<[u8; 4]>,
    /// A ModEx `TimestampOffsetNano` (0..999999 ns to add to the millisecond timestamp).
    pub timestamp_offset_ns: Option<u32>,
    /// A video command frame's command byte (0 start seek, 1 end seek): the tag has no track.
    pub command: Option<u8>,
    /// Offset in the tag body where the first track starts.
    pub body_start: usize,
}

impl ExHeader {
    /// A keyframe (frame type 1, or 4 generated by a server); never for metadata.
    pub fn is_key(&self) -> bool {
        self.media == Media::Video
            && matches!(self.frame_type, 1 | 4)
            && self.packet_type != PacketType::Metadata
    }

    /// The tracks of `body` (the same bytes this header was parsed from).
    pub fn tracks<'a>(&self, body: &'a [u8]) -> Tracks<'a> {
        Tracks {
            header: *self,
            body,
            pos: self.body_start,
            done: self.command.is_some(),
        }
    }
}

/// One track's packet inside an Ex tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackPacket {
    pub fourcc: [u8; 4],
    /// What `fourcc` names; `OtherVideo`/`OtherAudio` for a FourCC we do not know.
    pub codec: Codec,
    /// 0 for a plain Ex tag (the default track).
    pub track_id: u8,
    pub packet_type: PacketType,
    /// Composition time offset in ms (only `avc1`/`hvc1` CodedFrames carry one; 0 otherwise).
    pub cts: i32,
    /// The codec payload, as a range of the tag body.
    pub payload: Range<usize>,
    /// The track's bytes after its FourCC, id and size: the composition time (when there is
    /// one) and the payload. What a plain Ex tag of this track holds after its FourCC.
    pub data: Range<usize>,
}

impl TrackPacket {
    /// A codec configuration (`SequenceStart`).
    pub fn is_config(&self) -> bool {
        self.packet_type == PacketType::SequenceStart
    }
}

/// An Ex tag fully walked: its header and its first track (`None` only for command frames).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExTag {
    pub header: ExHeader,
    pub first: Option<TrackPacket>,
    /// How many tracks the message holds.
    pub track_count: usize,
}

/// True when an FLV audio/video tag body starting with `first` has an Ex header.
pub fn is_enhanced(media: Media, first: u8) -> bool {
    match media {
        Media::Video => first & 0x80 != 0,
        Media::Audio => first >> 4 == SOUND_FORMAT_EX_HEADER,
    }
}

/// The codec a FourCC names.
pub fn codec_of(media: Media, fourcc: [u8; 4]) -> Codec {
    match (media, &fourcc) {
        (Media::Video, b"avc1") => Codec::Avc,
        (Media::Video, b"hvc1") => Codec::Hevc,
        (Media::Video, b"av01") => Codec::Av1,
        (Media::Video, b"vp09") => Codec::Vp9,
        (Media::Video, b"vp08") => Codec::Vp8,
        (Media::Audio, b"mp4a") => Codec::Aac,
        (Media::Audio, b".mp3") => Codec::Mp3,
        (Media::Audio, b"Opus") => Codec::Opus,
        (Media::Audio, b"ac-3") => Codec::Ac3,
        (Media::Audio, b"ec-3") => Codec::Eac3,
        (Media::Audio, b"fLaC") => Codec::Flac,
        // Relayed, not understood: the id keeps "Ex header" visible in the API.
        (Media::Video, _) => Codec::OtherVideo(0x80),
        (Media::Audio, _) => Codec::OtherAudio(SOUND_FORMAT_EX_HEADER),
    }
}

impl PacketType {
    /// The 4-bit wire value (the inverse of `video`/`audio`).
    fn wire(self) -> u8 {
        match self {
            PacketType::SequenceStart => 0,
            PacketType::CodedFrames => 1,
            PacketType::SequenceEnd => 2,
            PacketType::CodedFramesX => 3,
            PacketType::Metadata | PacketType::MultichannelConfig => 4,
            PacketType::Mpeg2TsSequenceStart => 5,
        }
    }
}

/// The tag an FLV viewer of one track gets (`?track=N`; the default track is 0): the track's
/// packet of a multitrack message as a plain (single-track) Ex tag, so a player that reads
/// Enhanced RTMP but not multitrack (mpegts.js) can play it. `Ok(None)` when this message has
/// nothing for `track`. Unchanged (a refcount, no copy): legacy tags and plain Ex tags for
/// track 0, and command frames (they apply to every track). A ModEx timestamp offset is not
/// carried over: it is below the FLV millisecond and those players do not read ModEx.
/// `body` is the FLV tag body / RTMP message payload; a malformed message is an `Error`.
pub fn single_track(
    media: Media,
    body: &bytes::Bytes,
    track: u8,
) -> Result<Option<bytes::Bytes>, Error> {
    let Some(&first) = body.first() else {
        return Err(Error::Truncated);
    };
    if !is_enhanced(media, first) {
        return Ok((track == 0).then(|| body.clone()));
    }
    let header = parse_header(media, body)?;
    if header.command.is_some() {
        return Ok(Some(body.clone()));
    }
    if header.multitrack.is_none() {
        // Walk it anyway, so a truncated tag is refused here as `parse` refuses it.
        parse(media, body)?;
        return Ok((track == 0).then(|| body.clone()));
    }
    let mut found = None;
    for t in header.tracks(body) {
        let t = t?;
        if t.track_id == track && found.is_none() {
            found = Some(t);
        }
    }
    let Some(t) = found else {
        return Ok(None);
    };
    let lead = match media {
        Media::Video => 0x80 | (header.frame_type << 4) | t.packet_type.wire(),
        Media::Audio => (SOUND_FORMAT_EX_HEADER << 4) | t.packet_type.wire(),
    };
    let mut out = Vec::with_capacity(5 + t.data.len());
    out.push(lead);
    out.extend_from_slice(&t.fourcc);
    out.extend_from_slice(&body[t.data]);
    Ok(Some(bytes::Bytes::from(out)))
}

/// Parses an Ex tag and walks every track, so that a message with any malformed track is refused
/// as a whole (the spec: the whole message must be processed). Returns the first track, which is
/// what a single-track consumer needs; `ExHeader::tracks` gives all of them.
pub fn parse(media: Media, body: &[u8]) -> Result<ExTag, Error> {
    let header = parse_header(media, body)?;
    let mut first = None;
    let mut track_count = 0usize;
    for t in header.tracks(body) {
        let t = t?;
        track_count += 1;
        if first.is_none() {
            first = Some(t);
        }
    }
    if header.command.is_none() && first.is_none() {
        return Err(Error::NoTrack);
    }
    Ok(ExTag {
        header,
        first,
        track_count,
    })
}

/// Parses the message-level header of an Ex tag (ModEx, multitrack wrapper, shared FourCC).
pub fn parse_header(media: Media, body: &[u8]) -> Result<ExHeader, Error> {
    let mut r = Cursor { b: body, pos: 0 };
    let first = r.u8()?;
    if !is_enhanced(media, first) {
        return Err(Error::NotEnhanced);
    }
    let frame_type = match media {
        Media::Video => (first >> 4) & 0x07,
        Media::Audio => 0,
    };
    let mut raw_type = first & 0x0f;
    let mut timestamp_offset_ns = None;
    // ModEx: (size, data, modExType|packetType) repeated while the packet type stays ModEx.
    while raw_type == MOD_EX {
        let mut size = r.u8()? as usize + 1;
        if size == 256 {
            size = r.u16()? as usize + 1;
        }
        let data = r.take(size)?;
        let next = r.u8()?;
        if next >> 4 == MOD_EX_TIMESTAMP_OFFSET_NANO && data.len() >= 3 {
            let ns = u32::from_be_bytes([0, data[0], data[1], data[2]]);
            timestamp_offset_ns = Some(ns);
        }
        raw_type = next & 0x0f;
    }
    let multitrack_raw = match media {
        Media::Video => VIDEO_MULTITRACK,
        Media::Audio => AUDIO_MULTITRACK,
    };
    let parse_type = |v| match media {
        Media::Video => PacketType::video(v),
        Media::Audio => PacketType::audio(v),
    };
    // The spec tests for a command frame before it tests for multitrack: a command frame has
    // one command byte, no FourCC and no video data, whatever its packet type nibble says.
    if media == Media::Video && frame_type == FRAME_TYPE_COMMAND && raw_type != METADATA {
        if raw_type > VIDEO_MULTITRACK {
            return Err(Error::ReservedPacketType(raw_type));
        }
        let command = r.u8()?;
        return Ok(ExHeader {
            media,
            frame_type,
            // The nibble means nothing for a command (Multitrack reads as CodedFrames).
            packet_type: PacketType::video(raw_type).unwrap_or(PacketType::CodedFrames),
            multitrack: None,
            fourcc: None,
            timestamp_offset_ns,
            command: Some(command),
            body_start: r.pos,
        });
    }
    if raw_type == multitrack_raw {
        let b = r.u8()?;
        let multitrack = match b >> 4 {
            0 => MultitrackType::OneTrack,
            1 => MultitrackType::ManyTracks,
            2 => MultitrackType::ManyTracksManyCodecs,
            v => return Err(Error::ReservedMultitrackType(v)),
        };
        let packet_type = parse_type(b & 0x0f)?;
        let fourcc = if multitrack == MultitrackType::ManyTracksManyCodecs {
            None
        } else {
            Some(r.fourcc()?)
        };
        return Ok(ExHeader {
            media,
            frame_type,
            packet_type,
            multitrack: Some(multitrack),
            fourcc,
            timestamp_offset_ns,
            command: None,
            body_start: r.pos,
        });
    }
    let packet_type = parse_type(raw_type)?;
    let fourcc = r.fourcc()?;
    Ok(ExHeader {
        media,
        frame_type,
        packet_type,
        multitrack: None,
        fourcc: Some(fourcc),
        timestamp_offset_ns,
        command: None,
        body_start: r.pos,
    })
}

/// The tracks of one Ex tag, in message order. Yields an error once and then stops.
pub struct Tracks<'a> {
    header: ExHeader,
    body: &'a [u8],
    pos: usize,
    done: bool,
}

impl Iterator for Tracks<'_> {
    type Item = Result<TrackPacket, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.read();
        match &r {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => self.done = true,
        }
        r.transpose()
    }
}

impl Tracks<'_> {
    fn read(&mut self) -> Result<Option<TrackPacket>, Error> {
        let h = &self.header;
        let mut r = Cursor {
            b: self.body,
            pos: self.pos,
        };
        let (fourcc, track_id, end) = match h.multitrack {
            None => {
                // A plain Ex tag is one track (0) running to the end of the message.
                self.done = true;
                (h.fourcc.ok_or(Error::Truncated)?, 0, self.body.len())
            }
            Some(kind) => {
                if kind != MultitrackType::OneTrack && r.pos == self.body.len() {
                    // Every track consumed exactly: the end of a many-tracks message.
                    return Ok(None);
                }
                let fourcc = match h.fourcc {
                    Some(f) => f,
                    None => r.fourcc()?,
                };
                let track_id = r.u8()?;
                let end = if kind == MultitrackType::OneTrack {
                    self.done = true;
                    self.body.len()
                } else {
                    let size = r.u24()? as usize;
                    r.pos.checked_add(size).ok_or(Error::Truncated)?
                };
                if end > self.body.len() {
                    return Err(Error::Truncated);
                }
                (fourcc, track_id, end)
            }
        };
        let codec = codec_of(h.media, fourcc);
        // Only AVC and HEVC CodedFrames carry a composition time (SI24) before the data.
        let data_start = r.pos;
        let cts = if h.packet_type == PacketType::CodedFrames
            && matches!(codec, Codec::Avc | Codec::Hevc)
        {
            if end - r.pos < 3 {
                return Err(Error::Truncated);
            }
            let v = r.u24()?;
            ((v << 8) as i32) >> 8
        } else {
            0
        };
        self.pos = end;
        Ok(Some(TrackPacket {
            fourcc,
            codec,
            track_id,
            packet_type: h.packet_type,
            cts,
            payload: r.pos..end,
            data: data_start..end,
        }))
    }
}

/// `AudioChannelOrder` with what each order carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Only the channel count is known.
    Unspecified,
    /// Channels in the native order; the mask says which are present (`AudioChannelMask`).
    Native(u32),
    /// One `AudioChannel` value per channel, in bitstream order.
    Custom(Vec<u8>),
}

/// The payload of an audio `MultichannelConfig` packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultichannelConfig {
    pub channels: u8,
    pub order: ChannelOrder,
}

impl MultichannelConfig {
    pub fn parse(payload: &[u8]) -> Result<MultichannelConfig, Error> {
        let mut r = Cursor { b: payload, pos: 0 };
        let order = r.u8()?;
        let channels = r.u8()?;
        let order = match order {
            0 => ChannelOrder::Unspecified,
            1 => {
                let s = r.take(4)?;
                ChannelOrder::Native(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            }
            2 => ChannelOrder::Custom(r.take(channels as usize)?.to_vec()),
            v => return Err(Error::ReservedValue(v)),
        };
        Ok(MultichannelConfig { channels, order })
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let s = self.b.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u24(&mut self) -> Result<u32, Error> {
        let s = self.take(3)?;
        Ok(u32::from_be_bytes([0, s[0], s[1], s[2]]))
    }
    fn fourcc(&mut self) -> Result<[u8; 4], Error> {
        let s = self.take(4)?;
        Ok([s[0], s[1], s[2], s[3]])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::Frame;

    fn video(body: &[u8]) -> ExTag {
        parse(Media::Video, body).unwrap()
    }
    fn audio(body: &[u8]) -> ExTag {
        parse(Media::Audio, body).unwrap()
    }
    fn first(t: &ExTag) -> &TrackPacket {
        t.first.as_ref().unwrap()
    }

    #[test]
    fn every_video_packet_type_and_fourcc() {
        // (first byte, packet type) for one FourCC; the frame type is the high nibble's low 3 bits.
        let cases = [
            (0x90, PacketType::SequenceStart),
            (0x91, PacketType::CodedFrames),
            (0x92, PacketType::SequenceEnd),
            (0xa3, PacketType::CodedFramesX),
            (0x94, PacketType::Metadata),
            (0x95, PacketType::Mpeg2TsSequenceStart),
        ];
        let fourccs = [
            (FOURCC_HEVC, Codec::Hevc),
            (FOURCC_AV1, Codec::Av1),
            (FOURCC_VP9, Codec::Vp9),
            (FOURCC_AVC, Codec::Avc),
            (FOURCC_VP8, Codec::Vp8),
        ];
        for (b0, pt) in cases {
            for (cc, codec) in fourccs {
                let mut body = vec![b0];
                body.extend_from_slice(&cc);
                body.extend_from_slice(&[0, 0, 0x28, 0xaa, 0xbb]);
                let t = video(&body);
                assert_eq!(t.header.packet_type, pt);
                assert_eq!(t.header.frame_type, (b0 >> 4) & 7);
                assert_eq!(t.header.multitrack, None);
                assert_eq!(t.track_count, 1);
                let p = first(&t);
                assert_eq!((p.codec, p.fourcc, p.track_id), (codec, cc, 0));
                // Only AVC/HEVC CodedFrames have the SI24 composition time.
                let with_cts =
                    pt == PacketType::CodedFrames && matches!(codec, Codec::Avc | Codec::Hevc);
                if with_cts {
                    assert_eq!((p.cts, p.payload.clone()), (0x28, 8..10));
                } else {
                    assert_eq!((p.cts, p.payload.clone()), (0, 5..10));
                }
                assert_eq!(p.is_config(), pt == PacketType::SequenceStart);
            }
        }
    }

    #[test]
    fn keyframes_commands_and_metadata() {
        assert!(video(b"\x91hvc1\0\0\0").header.is_key());
        assert!(!video(b"\xa1hvc1\0\0\0").header.is_key());
        assert!(video(b"\xc3av01").header.is_key(), "generated keyframe");
        // Metadata ignores the frame type (FFmpeg writes 5 there), and is no command.
        let m = video(b"\xd4av01\x02\x00\x09colorInfo");
        assert_eq!(m.header.packet_type, PacketType::Metadata);
        assert!(!m.header.is_key() && m.header.command.is_none());
        assert_eq!(first(&m).payload, 5..17);
        // A command frame: one byte, no FourCC, no track.
        let c = video(b"\xd1\x01");
        assert_eq!((c.header.command, c.header.fourcc), (Some(1), None));
        // The command test comes before the multitrack one: 0xd6 is a command too.
        assert_eq!(video(b"\xd6\x00").header.command, Some(0));
        assert_eq!(
            parse(Media::Video, b"\xd9\x00"),
            Err(Error::ReservedPacketType(9))
        );
        assert_eq!((c.first.clone(), c.track_count), (None, 0));
        assert_eq!(parse(Media::Video, b"\xd1"), Err(Error::Truncated));
    }

    #[test]
    fn negative_composition_time() {
        let t = video(b"\xa1avc1\xff\xff\xd8\x00");
        assert_eq!(first(&t).cts, -40);
    }

    #[test]
    fn every_audio_packet_type_and_fourcc() {
        let cases = [
            (0x90, PacketType::SequenceStart),
            (0x91, PacketType::CodedFrames),
            (0x92, PacketType::SequenceEnd),
            (0x94, PacketType::MultichannelConfig),
        ];
        let fourccs = [
            (FOURCC_OPUS, Codec::Opus),
            (FOURCC_AAC, Codec::Aac),
            (FOURCC_MP3, Codec::Mp3),
            (FOURCC_AC3, Codec::Ac3),
            (FOURCC_EAC3, Codec::Eac3),
            (FOURCC_FLAC, Codec::Flac),
        ];
        for (b0, pt) in cases {
            for (cc, codec) in fourccs {
                let mut body = vec![b0];
                body.extend_from_slice(&cc);
                body.extend_from_slice(&[1, 2, 3]);
                let t = audio(&body);
                assert_eq!((t.header.packet_type, t.header.frame_type), (pt, 0));
                let p = first(&t);
                assert_eq!((p.codec, p.track_id, p.cts), (codec, 0, 0));
                assert_eq!(p.payload, 5..8);
            }
        }
        assert_eq!(
            first(&audio(b"\x91abcd")).codec,
            Codec::OtherAudio(SOUND_FORMAT_EX_HEADER)
        );
        assert_eq!(first(&video(b"\x91abcd")).codec, Codec::OtherVideo(0x80));
    }

    #[test]
    fn reserved_and_misplaced_values_are_errors() {
        assert_eq!(
            parse(Media::Video, b"\x98hvc1"),
            Err(Error::ReservedPacketType(8))
        );
        assert_eq!(
            parse(Media::Audio, b"\x93Opus"),
            Err(Error::ReservedPacketType(3))
        );
        assert_eq!(
            parse(Media::Audio, b"\x96Opus"),
            Err(Error::ReservedPacketType(6))
        );
        // Multitrack inside multitrack, and ModEx inside multitrack.
        assert_eq!(
            parse(Media::Video, b"\x96\x06hvc1\0"),
            Err(Error::MisplacedPacketType(6))
        );
        assert_eq!(
            parse(Media::Audio, b"\x95\x07Opus\0"),
            Err(Error::MisplacedPacketType(7))
        );
        assert_eq!(
            parse(Media::Video, b"\x96\x31hvc1\0"),
            Err(Error::ReservedMultitrackType(3))
        );
        assert_eq!(parse(Media::Video, b"\x17\x01"), Err(Error::NotEnhanced));
        assert_eq!(parse(Media::Audio, b"\xaf\x01"), Err(Error::NotEnhanced));
        assert_eq!(parse(Media::Audio, b""), Err(Error::Truncated));
    }

    #[test]
    fn mod_ex_timestamp_offset_nano() {
        // ModEx (7), size 3 (2 + 1), data 0x0f4240 - 1 = 999999 ns, then type 0 | CodedFrames.
        let t = video(b"\x97\x02\x0f\x42\x3f\x01hvc1\x00\x00\x10\xee");
        assert_eq!(t.header.timestamp_offset_ns, Some(999_999));
        assert_eq!(t.header.packet_type, PacketType::CodedFrames);
        assert_eq!(first(&t).cts, 16);
        assert_eq!(first(&t).payload, 13..14);
        // Two ModEx entries in a row, the second of an unknown type (kept unread).
        let t = audio(b"\x97\x02\x00\x00\x05\x07\x00\x09\x11Opus\xaa");
        assert_eq!(t.header.timestamp_offset_ns, Some(5));
        assert_eq!(t.header.packet_type, PacketType::CodedFrames);
        assert_eq!(first(&t).payload, 13..14);
        // The 16-bit size escape: UI8 255 means "UI16 + 1 follows".
        let mut b = vec![0x97, 0xff, 0x01, 0x00];
        b.extend(std::iter::repeat_n(0, 257));
        b.push(0x00); // TimestampOffsetNano | SequenceStart
        b.extend_from_slice(b"av01\x81");
        let t = video(&b);
        assert_eq!(t.header.packet_type, PacketType::SequenceStart);
        assert_eq!(t.header.timestamp_offset_ns, Some(0));
        assert_eq!(first(&t).payload, b.len() - 1..b.len());
        // A size that overruns the message.
        assert_eq!(
            parse(Media::Video, b"\x97\x05\x00\x01hvc1"),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn multitrack_one_track() {
        // What FFmpeg 9 writes for a second audio stream: OneTrack, SequenceStart, mp4a, track 1.
        let t = audio(b"\x95\x00mp4a\x01\x11\x88\x56\xe5\x00");
        assert_eq!(t.header.multitrack, Some(MultitrackType::OneTrack));
        let p = first(&t);
        assert_eq!(
            (p.codec, p.track_id, p.packet_type),
            (Codec::Aac, 1, PacketType::SequenceStart)
        );
        assert_eq!(p.payload, 7..12);
        let v = video(b"\x96\x01hvc1\x02\x00\x00\x05\x77");
        assert_eq!(v.header.frame_type, 1);
        let p = first(&v);
        assert_eq!((p.track_id, p.cts, p.payload.clone()), (2, 5, 10..11));
    }

    #[test]
    fn multitrack_many_tracks_same_codec() {
        // Two HEVC tracks (0 and 1), each: id, UI24 size, SI24 cts, data.
        let b = b"\x96\x11hvc1\x00\x00\x00\x05\x00\x00\x11\xaa\xbb\x01\x00\x00\x04\xff\xff\xfc\xcc";
        let t = video(b);
        assert_eq!(t.header.multitrack, Some(MultitrackType::ManyTracks));
        assert_eq!(t.track_count, 2);
        let tracks: Vec<_> = t.header.tracks(b).map(Result::unwrap).collect();
        assert_eq!(
            (tracks[0].track_id, tracks[0].cts, tracks[0].payload.clone()),
            (0, 17, 13..15)
        );
        assert_eq!(
            (tracks[1].track_id, tracks[1].cts, tracks[1].payload.clone()),
            (1, -4, 22..23)
        );
        // A size running past the message.
        let mut bad = b.to_vec();
        bad[18] = 9;
        assert_eq!(parse(Media::Video, &bad), Err(Error::Truncated));
        // No track at all.
        assert_eq!(parse(Media::Video, b"\x96\x11hvc1"), Err(Error::NoTrack));
    }

    #[test]
    fn multitrack_many_tracks_many_codecs() {
        // Opus on track 0 and FLAC on track 7, each with its own FourCC before the track id.
        let b = b"\x95\x21Opus\x00\x00\x00\x02opfLaC\x07\x00\x00\x01f";
        let t = audio(b);
        assert_eq!(t.header.fourcc, None);
        let tracks: Vec<_> = t.header.tracks(b).map(Result::unwrap).collect();
        assert_eq!(tracks.len(), 2);
        assert_eq!((tracks[0].codec, tracks[0].track_id), (Codec::Opus, 0));
        assert_eq!(&b[tracks[0].payload.clone()], b"op");
        assert_eq!((tracks[1].codec, tracks[1].track_id), (Codec::Flac, 7));
        assert_eq!(&b[tracks[1].payload.clone()], b"f");
    }

    #[test]
    fn multichannel_config() {
        let t = audio(b"\x94Opus\x01\x01\x00\x00\x00\x04");
        let p = first(&t);
        let m = MultichannelConfig::parse(&b"\x94Opus\x01\x01\x00\x00\x00\x04"[p.payload.clone()]);
        assert_eq!(
            m,
            Ok(MultichannelConfig {
                channels: 1,
                order: ChannelOrder::Native(4)
            })
        );
        assert_eq!(
            MultichannelConfig::parse(b"\x02\x02\x00\x01"),
            Ok(MultichannelConfig {
                channels: 2,
                order: ChannelOrder::Custom(vec![0, 1])
            })
        );
        assert_eq!(
            MultichannelConfig::parse(b"\x02\x03\x00\x01"),
            Err(Error::Truncated)
        );
        assert_eq!(
            MultichannelConfig::parse(b"\x03\x01"),
            Err(Error::ReservedValue(3))
        );
    }

    /// Valid messages cut at every length: never a panic, a cut inside the header or inside a
    /// sized track is `Truncated`, and a cut in a to-the-end payload shortens the payload.
    #[test]
    fn truncated_at_every_length() {
        let cases: [(Media, &[u8]); 8] = [
            (Media::Video, b"\x91hvc1\x00\x00\x10\xee\xee"),
            (
                Media::Video,
                b"\x97\x02\x0f\x42\x3f\x01hvc1\x00\x00\x10\xee",
            ),
            (
                Media::Video,
                b"\x96\x11hvc1\x00\x00\x00\x05\x00\x00\x11\xaa\xbb\x01\x00\x00\x04\xff\xff\xfc\xcc",
            ),
            (
                Media::Video,
                b"\x96\x21av01\x03\x00\x00\x01\x0avp09\x04\x00\x00\x02\x0b\x0c",
            ),
            (Media::Video, b"\xd1\x00"),
            (Media::Audio, b"\x95\x00mp4a\x01\x11\x88"),
            (
                Media::Audio,
                b"\x95\x21Opus\x00\x00\x00\x02opfLaC\x07\x00\x00\x01f",
            ),
            (
                Media::Audio,
                b"\x97\x02\x00\x00\x05\x07\x00\x09\x11Opus\xaa",
            ),
        ];
        for (media, full) in cases {
            let whole = parse(media, full).unwrap();
            let header_len = whole.header.body_start;
            for n in 0..full.len() {
                let r = parse(media, &full[..n]);
                if n < header_len {
                    assert!(r.is_err(), "{full:?} cut at {n}: {r:?}");
                    continue;
                }
                match (whole.header.multitrack, r) {
                    (
                        Some(MultitrackType::ManyTracks | MultitrackType::ManyTracksManyCodecs),
                        Ok(t),
                    ) => {
                        // Only a cut exactly between tracks parses, with fewer tracks.
                        assert!(t.track_count < whole.track_count, "{full:?} cut at {n}");
                    }
                    (
                        Some(MultitrackType::ManyTracks | MultitrackType::ManyTracksManyCodecs),
                        Err(e),
                    ) => {
                        assert!(matches!(e, Error::Truncated | Error::NoTrack), "{e:?}");
                    }
                    (_, Ok(t)) => {
                        let p = t.first.map_or(0..0, |p| p.payload);
                        assert!(p.end <= n);
                    }
                    (_, Err(e)) => assert_eq!(e, Error::Truncated, "{full:?} cut at {n}"),
                }
            }
        }
    }

    /// Every audio and video tag of the FFmpeg 9 fixtures parses, with the codec FFmpeg wrote.
    #[test]
    fn fixtures_parse() {
        let fixtures: [(&str, &[u8], Codec, Codec); 6] = [
            (
                "hevc_aac",
                include_bytes!("../../tests/data/codecs/hevc_aac.flv"),
                Codec::Hevc,
                Codec::Aac,
            ),
            (
                "av1_opus",
                include_bytes!("../../tests/data/codecs/av1_opus.flv"),
                Codec::Av1,
                Codec::Opus,
            ),
            (
                "vp9_opus",
                include_bytes!("../../tests/data/codecs/vp9_opus.flv"),
                Codec::Vp9,
                Codec::Opus,
            ),
            (
                "h264_mp3",
                include_bytes!("../../tests/data/codecs/h264_mp3.flv"),
                Codec::Avc,
                Codec::Mp3,
            ),
            (
                "h264_ac3",
                include_bytes!("../../tests/data/codecs/h264_ac3.flv"),
                Codec::Avc,
                Codec::Ac3,
            ),
            (
                "multitrack_aac",
                include_bytes!("../../tests/data/codecs/multitrack_aac.flv"),
                Codec::Avc,
                Codec::Aac,
            ),
        ];
        for (name, flv, vcodec, acodec) in fixtures {
            let mut ex = 0;
            let mut tracks = std::collections::BTreeSet::new();
            for (tag, body) in flv_tags(flv) {
                let media = match tag {
                    8 => Media::Audio,
                    9 => Media::Video,
                    _ => continue,
                };
                if !is_enhanced(media, body[0]) {
                    continue;
                }
                ex += 1;
                let t = parse(media, body).unwrap_or_else(|e| panic!("{name}: {e}"));
                let Some(p) = t.first else { continue };
                let want = if media == Media::Video {
                    vcodec
                } else {
                    acodec
                };
                assert_eq!(p.codec, want, "{name}");
                tracks.insert((tag, p.track_id));
            }
            assert!(ex > 0 || name.starts_with("h264_mp3"), "{name} has Ex tags");
            if name == "multitrack_aac" {
                assert!(tracks.contains(&(8, 1)), "{name}: {tracks:?}");
            }
        }
    }

    /// Random bodies with Ex-header first bytes: errors or ranges inside the body, never a panic.
    #[test]
    fn random_bodies_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let fourccs: [&[u8; 4]; 4] = [b"hvc1", b"av01", b"Opus", b"mp4a"];
        for _ in 0..50_000 {
            let len = (next() % 48) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias towards plausible headers so the deep paths run.
            if len > 0 {
                b[0] = 0x90 | (b[0] & 0x7f);
            }
            if len > 6 && next() % 2 == 0 {
                let cc = fourccs[(next() % 4) as usize];
                let at = 1 + (next() % 3) as usize;
                b[at..at + 4].copy_from_slice(cc);
            }
            for media in [Media::Audio, Media::Video] {
                if let Ok(h) = parse_header(media, &b) {
                    for t in h.tracks(&b).flatten() {
                        assert!(t.payload.start <= t.payload.end && t.payload.end <= b.len());
                    }
                }
                let _ = parse(media, &b);
            }
            let data = bytes::Bytes::from(b);
            for media in [Media::Audio, Media::Video] {
                if let Ok(Some(t)) = single_track(media, &data, (next() % 3) as u8) {
                    // What comes out is itself a valid single-track tag.
                    if is_enhanced(media, t[0]) {
                        let p = parse(media, &t);
                        assert!(p.is_ok_and(|p| p.header.multitrack.is_none()));
                    }
                }
            }
            for tag in [8, 9] {
                if let Some(f) = Frame::parse(tag, 0, data.clone()) {
                    let _ = f.payload();
                }
            }
        }
    }

    fn one(media: Media, body: &[u8], track: u8) -> Option<Vec<u8>> {
        let b = bytes::Bytes::copy_from_slice(body);
        single_track(media, &b, track).unwrap().map(|b| b.to_vec())
    }

    #[test]
    fn single_track_of_a_one_track_message() {
        // FFmpeg 9's second audio stream (OneTrack, track 1) becomes a plain Ex tag.
        let b = b"\x95\x00mp4a\x01\x11\x88\x56\xe5\x00";
        assert_eq!(
            one(Media::Audio, b, 1).as_deref(),
            Some(&b"\x90mp4a\x11\x88\x56\xe5\x00"[..])
        );
        assert_eq!(one(Media::Audio, b, 0), None);
        // Video keeps its frame type and the composition time.
        let v = b"\x96\x01hvc1\x02\x00\x00\x05\x77";
        let plain = one(Media::Video, v, 2).unwrap();
        assert_eq!(plain, b"\x91hvc1\x00\x00\x05\x77");
        let t = video(&plain);
        assert!(t.header.is_key() && t.header.multitrack.is_none());
        assert_eq!((first(&t).track_id, first(&t).cts), (0, 5));
    }

    #[test]
    fn single_track_of_many_tracks_same_codec() {
        let b = b"\x96\x11hvc1\x00\x00\x00\x05\x00\x00\x11\xaa\xbb\x01\x00\x00\x04\xff\xff\xfc\xcc";
        assert_eq!(
            one(Media::Video, b, 0).as_deref(),
            Some(&b"\x91hvc1\x00\x00\x11\xaa\xbb"[..])
        );
        let t1 = one(Media::Video, b, 1).unwrap();
        assert_eq!(t1, b"\x91hvc1\xff\xff\xfc\xcc");
        assert_eq!(first(&video(&t1)).cts, -4);
        assert_eq!(one(Media::Video, b, 2), None);
        // The same for a sequence start of two AV1 tracks (no composition time).
        let s = [
            &b"\x96\x10av01"[..],
            b"\x00\x00\x00\x01\x81\x01\x00\x00\x02\x81\x0a",
        ]
        .concat();
        assert_eq!(
            one(Media::Video, &s, 1).as_deref(),
            Some(&b"\x90av01\x81\x0a"[..])
        );
    }

    #[test]
    fn single_track_of_many_tracks_many_codecs() {
        let b = b"\x95\x21Opus\x00\x00\x00\x02opfLaC\x07\x00\x00\x01f";
        assert_eq!(one(Media::Audio, b, 0).as_deref(), Some(&b"\x91Opusop"[..]));
        assert_eq!(one(Media::Audio, b, 7).as_deref(), Some(&b"\x91fLaCf"[..]));
        assert_eq!(one(Media::Audio, b, 1), None);
        let v = b"\x96\x21av01\x03\x00\x00\x01\x0avp09\x04\x00\x00\x02\x0b\x0c";
        assert_eq!(
            one(Media::Video, v, 4).as_deref(),
            Some(&b"\x91vp09\x0b\x0c"[..])
        );
    }

    #[test]
    fn single_track_passes_legacy_plain_and_command_tags_unchanged() {
        let legacy = bytes::Bytes::from_static(b"\x17\x01\x00\x00\x00\xaa");
        let got = single_track(Media::Video, &legacy, 0).unwrap().unwrap();
        // Shared, not copied.
        assert_eq!(got.as_ptr(), legacy.as_ptr());
        assert_eq!(single_track(Media::Video, &legacy, 1), Ok(None));
        assert_eq!(
            one(Media::Audio, b"\xaf\x01\x21", 0).as_deref(),
            Some(&b"\xaf\x01\x21"[..])
        );
        let plain = b"\x91hvc1\x00\x00\x10\xee";
        assert_eq!(one(Media::Video, plain, 0).as_deref(), Some(&plain[..]));
        assert_eq!(one(Media::Video, plain, 3), None);
        // A command frame applies to every track.
        assert_eq!(
            one(Media::Video, b"\xd1\x01", 5).as_deref(),
            Some(&b"\xd1\x01"[..])
        );
        // A ModEx offset is dropped from the single-track form.
        let m = b"\x97\x02\x0f\x42\x3f\x06\x01hvc1\x01\x00\x00\x01\xee";
        assert_eq!(
            one(Media::Video, m, 1).as_deref(),
            Some(&b"\x91hvc1\x00\x00\x01\xee"[..])
        );
    }

    #[test]
    fn single_track_refuses_broken_messages() {
        let b = bytes::Bytes::from_static(b"\x96\x11hvc1\x00\x00\x00\x09\x00\x00\x11");
        assert_eq!(single_track(Media::Video, &b, 0), Err(Error::Truncated));
        let e = bytes::Bytes::new();
        assert_eq!(single_track(Media::Audio, &e, 0), Err(Error::Truncated));
        let p = bytes::Bytes::from_static(b"\x91hvc1\x00");
        assert_eq!(single_track(Media::Video, &p, 0), Err(Error::Truncated));
    }

    /// The multitrack fixture split into its two audio tracks: each is a complete plain stream
    /// (one sequence start, then one tag per frame), with every frame of the source.
    #[test]
    fn single_track_splits_the_multitrack_fixture() {
        let flv = include_bytes!("../../tests/data/codecs/multitrack_aac.flv");
        // (sequence starts, coded frames, other packets) per track.
        let mut per_track = [(0usize, 0usize, 0usize); 2];
        for (tag, body) in flv_tags(flv) {
            if tag != 8 {
                continue;
            }
            let body = bytes::Bytes::copy_from_slice(body);
            for (id, n) in per_track.iter_mut().enumerate() {
                let Some(t) = single_track(Media::Audio, &body, id as u8).unwrap() else {
                    continue;
                };
                let f = Frame::parse(8, 0, t.clone()).unwrap();
                assert_eq!((f.codec, f.track_id), (Codec::Aac, 0), "track {id}");
                let kind = if is_enhanced(Media::Audio, t[0]) {
                    let ex = parse(Media::Audio, &t).unwrap();
                    assert_eq!(ex.header.multitrack, None, "plain form");
                    ex.header.packet_type
                } else if f.config {
                    PacketType::SequenceStart
                } else {
                    PacketType::CodedFrames
                };
                match kind {
                    PacketType::SequenceStart => n.0 += 1,
                    PacketType::CodedFrames => n.1 += 1,
                    _ => n.2 += 1,
                }
            }
        }
        // Track 0 is legacy AAC in this fixture; track 1 multitrack, with FFmpeg's channel
        // layout packet. Each: one header, then every frame FFmpeg decodes (facts.txt).
        assert_eq!(per_track[0], (1, 142, 0));
        assert_eq!(per_track[1], (1, 142, 1));
    }

    /// (tag type, body) of each tag of an FLV file.
    pub(crate) fn flv_tags(flv: &[u8]) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        let mut p = 13;
        while p + 11 <= flv.len() {
            let n = u32::from_be_bytes([0, flv[p + 1], flv[p + 2], flv[p + 3]]) as usize;
            let Some(body) = flv.get(p + 11..p + 11 + n) else {
                break;
            };
            if !body.is_empty() {
                out.push((flv[p], body));
            }
            p += 11 + n + 4;
        }
        out
    }
}
