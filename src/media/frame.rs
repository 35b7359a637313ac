//! `Frame`: one audio, video or script (metadata) message, protocol-free.
//!
//! The payload is kept exactly as RTMP and FLV carry it (the FLV tag body), so relaying never
//! re-encodes and every output can share the same `Bytes`. The parsed fields (`key`, `config`,
//! `cts`, `codec`) are read once at ingest so that the hub, the players and the recorders never
//! parse the payload again for their decisions.

use bytes::Bytes;

use crate::media::enhanced::{self, Media};

/// FLV / RTMP message type ids for the three media kinds.
pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Track {
    Audio,
    Video,
    /// Script data; for the hub this is always `onMetaData`.
    Meta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// H.264 (FLV codec id 7).
    Avc,
    /// H.265 / HEVC (FLV codec id 12 as used by some encoders, or Enhanced RTMP `hvc1`).
    Hevc,
    /// AV1 via Enhanced RTMP (`av01`).
    Av1,
    /// VP9 via Enhanced RTMP (`vp09`).
    Vp9,
    /// VP8 via Enhanced RTMP (`vp08`).
    Vp8,
    /// Any other FLV video codec id (Sorenson, VP6, ...): relayed, not recorded.
    OtherVideo(u8),
    /// AAC (FLV sound format 10, or Enhanced RTMP `mp4a`).
    Aac,
    /// MP3 (FLV sound format 2, or Enhanced RTMP `.mp3`).
    Mp3,
    /// Opus via Enhanced RTMP (`Opus`).
    Opus,
    /// AC-3 via Enhanced RTMP (`ac-3`).
    Ac3,
    /// E-AC-3 via Enhanced RTMP (`ec-3`).
    Eac3,
    /// FLAC via Enhanced RTMP (`fLaC`).
    Flac,
    /// Any other FLV sound format: relayed, not recorded.
    OtherAudio(u8),
    /// AMF0 script data.
    Script,
}

#[derive(Clone, Debug)]
pub struct Frame {
    pub track: Track,
    /// Decode timestamp in milliseconds as players receive it (32-bit, wrapping): the
    /// publisher's own until its clock jumps, then the continued stream time truncated to 32 bits
    /// (`media::time` has the policy).
    pub dts: u32,
    /// Monotonic stream time in milliseconds, set by the ingest normaliser (`media::time`); every
    /// recorder and the hub's queue policy read this, never `dts`. `parse` sets it to `dts`.
    pub time: u64,
    /// The source's clock jumped just before this frame (set by the normaliser; a source may set
    /// it beforehand to say its clock restarted).
    pub discontinuity: bool,
    /// Composition time offset in milliseconds (H.264/H.265 B-frames); 0 otherwise.
    pub cts: i32,
    /// Video: a keyframe (FLV frame type 1). Audio and metadata: always true.
    pub key: bool,
    /// A codec configuration record (AVC/HEVC sequence header, AAC AudioSpecificConfig).
    pub config: bool,
    pub codec: Codec,
    /// The Enhanced RTMP multitrack track id (of the first track when a message holds several);
    /// 0, the default track, for everything else. For another track, `codec` is
    /// `OtherAudio(9)`/`OtherVideo(0x80)` and `config` false (see `default_track_view`).
    pub track_id: u8,
    /// Made by the server's audio bridge (`audio::opus_aac`: the AAC form of an Opus stream's
    /// audio, in stream time), not by the publisher: only the outputs that cannot take Opus
    /// get it (`hub::packet`), and it never changes what the stream's codecs are.
    pub bridged: bool,
    /// The FLV tag body / RTMP message payload, unchanged.
    pub data: Bytes,
}

impl Frame {
    /// A frame with the defaults every kind starts from: stream time = `dts`, no discontinuity,
    /// no composition offset, a key unit, not a configuration record, the default track.
    fn new(track: Track, dts: u32, codec: Codec, data: Bytes) -> Frame {
        Frame {
            track,
            dts,
            time: dts as u64,
            discontinuity: false,
            cts: 0,
            key: true,
            config: false,
            codec,
            track_id: 0,
            bridged: false,
            data,
        }
    }

    /// Classifies an RTMP message / FLV tag body. Returns `None` for an empty body or a type
    /// that is not audio, video or script data.
    pub fn parse(tag_type: u8, dts: u32, data: Bytes) -> Option<Frame> {
        let first = *data.first()?;
        match tag_type {
            TAG_AUDIO if enhanced::is_enhanced(Media::Audio, first) => {
                // A malformed Ex tag is refused whole rather than relayed half-understood.
                let tag = enhanced::parse(Media::Audio, &data).ok()?;
                let t = tag.first?;
                let (codec, config) = default_track_view(&t, Codec::OtherAudio(SOUND_FORMAT_EX));
                Some(Frame {
                    config,
                    track_id: t.track_id,
                    ..Frame::new(Track::Audio, dts, codec, data)
                })
            }
            TAG_AUDIO => {
                let fmt = first >> 4;
                let codec = match fmt {
                    10 => Codec::Aac,
                    2 => Codec::Mp3,
                    other => Codec::OtherAudio(other),
                };
                let config = codec == Codec::Aac && data.get(1) == Some(&0);
                Some(Frame {
                    config,
                    ..Frame::new(Track::Audio, dts, codec, data)
                })
            }
            TAG_VIDEO => {
                if enhanced::is_enhanced(Media::Video, first) {
                    return Self::parse_enhanced_video(dts, data);
                }
                let frame_type = (first >> 4) & 0x07;
                let codec_id = first & 0x0f;
                let codec = match codec_id {
                    7 => Codec::Avc,
                    12 => Codec::Hevc,
                    other => Codec::OtherVideo(other),
                };
                let (config, cts) = if matches!(codec, Codec::Avc | Codec::Hevc) && data.len() >= 5
                {
                    (data[1] == 0, cts24(&data[2..5]))
                } else {
                    (false, 0)
                };
                // A sequence header is not a picture, but it must start a GOP like one.
                let key = frame_type == 1 || config;
                Some(Frame {
                    cts,
                    key,
                    config,
                    ..Frame::new(Track::Video, dts, codec, data)
                })
            }
            TAG_SCRIPT => Some(Frame::new(Track::Meta, dts, Codec::Script, data)),
            _ => None,
        }
    }

    /// An Enhanced RTMP video tag (IsExHeader set): `None` when malformed.
    fn parse_enhanced_video(dts: u32, data: Bytes) -> Option<Frame> {
        let tag = enhanced::parse(Media::Video, &data).ok()?;
        let (codec, track_id, config, cts) = match &tag.first {
            Some(t) => {
                let (codec, config) = default_track_view(t, Codec::OtherVideo(0x80));
                (codec, t.track_id, config, t.cts)
            }
            // A command frame names no codec and carries no picture.
            None => (Codec::OtherVideo(0x80), 0, false, 0),
        };
        // A sequence header is not a picture, but it must start a GOP like one.
        let key = tag.header.is_key() || config;
        Some(Frame {
            cts,
            key,
            config,
            track_id,
            ..Frame::new(Track::Video, dts, codec, data)
        })
    }

    /// The Enhanced RTMP reading of this frame's payload (`None` for a legacy tag): every track of
    /// a multitrack message, ModEx data, the packet type.
    /// The track id and packet type when this is the configuration of a track other than the default one (an
    /// Enhanced RTMP multitrack SequenceStart or MultichannelConfig whose first track is not 0).
    /// Such a frame is not `config` (recorders take the default track from `config`), but a
    /// player needs it to decode that track: the hub caches it and never drops it.
    pub fn other_track_config(&self) -> Option<(u8, enhanced::PacketType)> {
        if self.track_id == 0 {
            return None;
        }
        let media = match self.track {
            Track::Video => Media::Video,
            Track::Audio => Media::Audio,
            Track::Meta => return None,
        };
        let h = enhanced::parse_header(media, &self.data).ok()?;
        matches!(
            h.packet_type,
            enhanced::PacketType::SequenceStart | enhanced::PacketType::MultichannelConfig
        )
        .then_some((self.track_id, h.packet_type))
    }

    pub fn enhanced(&self) -> Option<enhanced::ExTag> {
        let media = match self.track {
            Track::Audio => Media::Audio,
            Track::Video => Media::Video,
            Track::Meta => return None,
        };
        if !enhanced::is_enhanced(media, *self.data.first()?) {
            return None;
        }
        enhanced::parse(media, &self.data).ok()
    }

    /// The FLV tag type / RTMP message type id of this frame.
    pub fn tag_type(&self) -> u8 {
        match self.track {
            Track::Audio => TAG_AUDIO,
            Track::Video => TAG_VIDEO,
            Track::Meta => TAG_SCRIPT,
        }
    }

    /// The codec payload after the FLV audio/video header: for AVC the length-prefixed NAL units
    /// (or the AVCDecoderConfigurationRecord), for AAC the raw frame (or the AudioSpecificConfig).
    /// For an Enhanced RTMP tag, the first track's payload (after FourCC, track id, size and
    /// composition time).
    pub fn payload(&self) -> &[u8] {
        if let Some(tag) = self.enhanced() {
            let range = tag.first.map_or(0..0, |t| t.payload);
            return self.data.get(range).unwrap_or(&[]);
        }
        let skip = match self.codec {
            // Legacy H.264 and H.265 (codec id 12) share the 5-byte header.
            Codec::Avc | Codec::Hevc => 5,
            Codec::Aac => 2,
            Codec::Mp3 | Codec::OtherAudio(_) => 1,
            _ => 0,
        };
        self.data.get(skip..).unwrap_or(&[])
    }

    /// Presentation time in milliseconds (dts + cts, may be negative only for broken input).
    pub fn pts(&self) -> i64 {
        self.dts as i64 + self.cts as i64
    }
}

/// FLV sound format 9: the Enhanced RTMP audio header.
const SOUND_FORMAT_EX: u8 = enhanced::SOUND_FORMAT_EX_HEADER;

/// The codec and config flag a frame reports for a track. The hub and the recorders read one
/// audio and one video stream: a second multitrack track (id != 0) is shown to them as an unknown
/// codec that is never the stream's header, so it is relayed (and recorded to FLV) as before, not
/// mixed into the default track; `Frame::enhanced` has its real codec and packet type.
fn default_track_view(t: &enhanced::TrackPacket, other: Codec) -> (Codec, bool) {
    if t.track_id == 0 {
        (t.codec, t.is_config())
    } else {
        (other, false)
    }
}

/// Signed 24-bit big-endian composition time.
fn cts24(b: &[u8]) -> i32 {
    let v = ((b[0] as i32) << 16) | ((b[1] as i32) << 8) | b[2] as i32;
    (v << 8) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_keyframe_and_sequence_header() {
        let seq = Frame::parse(TAG_VIDEO, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])).unwrap();
        assert!(seq.config && seq.key && seq.codec == Codec::Avc);
        let inter =
            Frame::parse(TAG_VIDEO, 40, Bytes::from_static(&[0x27, 1, 0, 0, 80, 0])).unwrap();
        assert!(!inter.config && !inter.key);
        assert_eq!(inter.cts, 80);
        assert_eq!(inter.payload(), &[0]);
    }

    #[test]
    fn negative_composition_time() {
        let f = Frame::parse(
            TAG_VIDEO,
            0,
            Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xd8]),
        )
        .unwrap();
        assert_eq!(f.cts, -40);
    }

    #[test]
    fn aac_config_and_raw() {
        let asc = Frame::parse(TAG_AUDIO, 0, Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap();
        assert!(asc.config && asc.codec == Codec::Aac);
        assert_eq!(asc.payload(), &[0x12, 0x10]);
        let raw = Frame::parse(TAG_AUDIO, 23, Bytes::from_static(&[0xaf, 1, 0x21])).unwrap();
        assert!(!raw.config && raw.key);
    }

    #[test]
    fn empty_or_unknown_is_refused() {
        assert!(Frame::parse(TAG_VIDEO, 0, Bytes::new()).is_none());
        assert!(Frame::parse(20, 0, Bytes::from_static(&[1])).is_none());
    }

    #[test]
    fn enhanced_rtmp_hevc() {
        let f = Frame::parse(
            TAG_VIDEO,
            0,
            Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1]),
        )
        .unwrap();
        assert_eq!(f.codec, Codec::Hevc);
        assert!(f.config && f.key);
    }

    #[test]
    fn enhanced_video_keeps_key_config_cts() {
        let f = Frame::parse(
            TAG_VIDEO,
            0,
            Bytes::from_static(b"\x91hvc1\x00\x00\x50\x01\x02"),
        )
        .unwrap();
        assert!(f.key && !f.config);
        assert_eq!((f.codec, f.cts, f.track_id), (Codec::Hevc, 80, 0));
        assert_eq!(f.payload(), &[1, 2]);
        // AV1 CodedFrames have no composition time: the bytes after the FourCC are the OBUs.
        let f = Frame::parse(TAG_VIDEO, 0, Bytes::from_static(b"\xa1av01\x12\x00")).unwrap();
        assert_eq!((f.codec, f.cts, f.key), (Codec::Av1, 0, false));
        assert_eq!(f.payload(), &[0x12, 0]);
        let f = Frame::parse(TAG_VIDEO, 0, Bytes::from_static(b"\x90vp09\x01")).unwrap();
        assert!(f.config && f.key && f.codec == Codec::Vp9);
        // Metadata (frame type 5 ignored) and command frames are neither keys nor configs.
        let f = Frame::parse(TAG_VIDEO, 0, Bytes::from_static(b"\xd4hvc1\x02")).unwrap();
        assert!(!f.key && !f.config && f.codec == Codec::Hevc);
        let f = Frame::parse(TAG_VIDEO, 0, Bytes::from_static(b"\xd1\x00")).unwrap();
        assert!(!f.key && !f.config && f.payload().is_empty());
    }

    #[test]
    fn enhanced_audio_and_multitrack() {
        let f = Frame::parse(TAG_AUDIO, 0, Bytes::from_static(b"\x90OpusOpusHead")).unwrap();
        assert!(f.config && f.key && f.codec == Codec::Opus);
        assert_eq!(f.payload(), b"OpusHead");
        let f = Frame::parse(TAG_AUDIO, 0, Bytes::from_static(b"\x91ac-3\x0b\x77")).unwrap();
        assert!(!f.config && f.codec == Codec::Ac3);
        assert_eq!(f.payload(), &[0x0b, 0x77]);
        // FFmpeg 9's second audio stream: multitrack OneTrack, mp4a, track 1. Not the stream's
        // AAC header (it must not replace track 0's), but its real codec is one call away.
        let f = Frame::parse(
            TAG_AUDIO,
            0,
            Bytes::from_static(b"\x95\x00mp4a\x01\x11\x88"),
        )
        .unwrap();
        assert!(!f.config && f.codec == Codec::OtherAudio(9));
        assert_eq!((f.track_id, f.payload()), (1, &[0x11, 0x88][..]));
        let ex = f.enhanced().unwrap();
        let t = ex.first.unwrap();
        assert_eq!(
            (ex.track_count, t.codec, t.is_config()),
            (1, Codec::Aac, true)
        );
        // Track 0 in multitrack form is the default track: its own codec and header.
        let f = Frame::parse(
            TAG_AUDIO,
            0,
            Bytes::from_static(b"\x95\x00Opus\x00OpusHead"),
        )
        .unwrap();
        assert!(f.config && f.codec == Codec::Opus && f.track_id == 0);
        let f = Frame::parse(TAG_VIDEO, 0, Bytes::from_static(b"\x96\x03hvc1\x02\x01")).unwrap();
        assert!(f.key && !f.config && f.track_id == 2 && f.codec == Codec::OtherVideo(0x80));
    }

    #[test]
    fn legacy_hevc_and_malformed_enhanced() {
        // Codec id 12: the legacy AVC layout.
        let f = Frame::parse(TAG_VIDEO, 0, Bytes::from_static(&[0x1c, 1, 0, 0, 40, 9])).unwrap();
        assert_eq!(
            (f.codec, f.cts, f.key, f.config),
            (Codec::Hevc, 40, true, false)
        );
        assert_eq!(f.payload(), &[9]);
        assert!(f.enhanced().is_none());
        // Truncated FourCC, reserved packet type: refused, not relayed half-read.
        assert!(Frame::parse(TAG_VIDEO, 0, Bytes::from_static(b"\x91hv")).is_none());
        assert!(Frame::parse(TAG_AUDIO, 0, Bytes::from_static(b"\x9fOpus")).is_none());
        assert!(Frame::parse(
            TAG_AUDIO,
            0,
            Bytes::from_static(b"\x95\x11Opus\x00\x00\x00\x09")
        )
        .is_none());
    }
}
