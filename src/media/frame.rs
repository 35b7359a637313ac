//! `Frame`: one audio, video or script (metadata) message, protocol-free.
//!
//! The payload is kept exactly as RTMP and FLV carry it (the FLV tag body), so relaying never
//! re-encodes and every output can share the same `Bytes`. The parsed fields (`key`, `config`,
//! `cts`, `codec`) are read once at ingest so that the hub, the players and the recorders never
//! parse the payload again for their decisions.

use bytes::Bytes;

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
    /// Any other FLV video codec id (Sorenson, VP6, ...): relayed, not recorded.
    OtherVideo(u8),
    /// AAC (FLV sound format 10).
    Aac,
    /// MP3 (FLV sound format 2).
    Mp3,
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
    /// The FLV tag body / RTMP message payload, unchanged.
    pub data: Bytes,
}

impl Frame {
    /// Classifies an RTMP message / FLV tag body. Returns `None` for an empty body or a type
    /// that is not audio, video or script data.
    pub fn parse(tag_type: u8, dts: u32, data: Bytes) -> Option<Frame> {
        let first = *data.first()?;
        match tag_type {
            TAG_AUDIO => {
                let fmt = first >> 4;
                let codec = match fmt {
                    10 => Codec::Aac,
                    2 => Codec::Mp3,
                    other => Codec::OtherAudio(other),
                };
                let config = codec == Codec::Aac && data.get(1) == Some(&0);
                Some(Frame {
                    track: Track::Audio,
                    dts,
                    time: dts as u64,
                    discontinuity: false,
                    cts: 0,
                    key: true,
                    config,
                    codec,
                    data,
                })
            }
            TAG_VIDEO => {
                // Enhanced RTMP: the high bit of the first byte says "ex header", the low nibble is
                // the packet type and bytes 1..5 a FourCC.
                if first & 0x80 != 0 {
                    return Some(Self::parse_enhanced_video(dts, data));
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
                    track: Track::Video,
                    dts,
                    time: dts as u64,
                    discontinuity: false,
                    cts,
                    key,
                    config,
                    codec,
                    data,
                })
            }
            TAG_SCRIPT => Some(Frame {
                track: Track::Meta,
                dts,
                time: dts as u64,
                discontinuity: false,
                cts: 0,
                key: true,
                config: false,
                codec: Codec::Script,
                data,
            }),
            _ => None,
        }
    }

    fn parse_enhanced_video(dts: u32, data: Bytes) -> Frame {
        let first = data[0];
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0f;
        let codec = match data.get(1..5) {
            Some(b"hvc1") => Codec::Hevc,
            Some(b"av01") => Codec::Av1,
            _ => Codec::OtherVideo(0x80 | packet_type),
        };
        let config = packet_type == 0;
        // Packet type 1 (CodedFrames) carries a 24-bit composition time after the FourCC.
        let cts = if packet_type == 1 && data.len() >= 8 {
            cts24(&data[5..8])
        } else {
            0
        };
        let key = frame_type == 1 || config;
        Frame {
            track: Track::Video,
            dts,
            time: dts as u64,
            discontinuity: false,
            cts,
            key,
            config,
            codec,
            data,
        }
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
    pub fn payload(&self) -> &[u8] {
        let skip = match self.codec {
            Codec::Avc => 5,
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
}
