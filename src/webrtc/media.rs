//! From the hub's frames to what str0m's packetizers take, once per stream: every viewer of the
//! stream is sent the same `MediaUnit` (its payload is shared, `Arc<[u8]>`), packetized once
//! for all of them where the codec allows (`rtp`: H.264 and Opus); per viewer are the RTP
//! header and SRTP (and, for other codecs, the packetizing).
//!
//! - H.264: AVCC (length-prefixed NAL units) to Annex B (4-byte start codes), with the SPS and
//!   PPS of the last sequence header before every keyframe that does not carry its own; AUDs
//!   dropped (RTP marks the access unit's end).
//! - H.265: the same, with VPS, SPS and PPS before IRAP pictures.
//! - AV1 (OBUs as Enhanced RTMP carries them), VP9, VP8 and Opus: the payload unchanged.
//! - AAC, MP3 and the rest: nothing here (AAC reaches viewers as Opus through `crate::audio`,
//!   which `server::webrtc` runs beside the packager).
//!
//! B-frames: browsers' WebRTC decoders do not reorder (Chromium's H.264 decoder fails on the
//! first picture that would need it, then waits for the next keyframe), so H.264/H.265 pictures
//! that come out of presentation order are dropped here (`Packager::push`): what is sent is in
//! decode order with rising presentation times, every picture decodable and shown at once.

use std::sync::Arc;

use crate::media::avc::{self, AvcConfig};
use crate::media::enhanced::PacketType;
use crate::media::frame::{Codec, Frame, Track};
use crate::media::hevc::{self, HevcConfig};

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    Video,
    Audio,
}

/// One access unit (video) or packet (audio), ready for any viewer's packetizer.
#[derive(Clone, Debug)]
pub struct MediaUnit {
    pub kind: UnitKind,
    pub codec: Codec,
    /// A random access point (always true for audio).
    pub key: bool,
    /// Presentation time in stream milliseconds (`Frame::time` + composition offset).
    pub pts_ms: u64,
    pub data: Arc<[u8]>,
}

/// What the stream carries, as the SDP negotiation needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCodecs {
    /// The stream's video codec, when it has video.
    pub video: Option<Codec>,
    /// H.264's profile-level-id (profile_idc, constraint flags, level_idc) from the SPS.
    pub h264_profile_level_id: Option<u32>,
    /// The stream's audio codec, when it has audio (AAC is named here but not sent).
    pub audio: Option<Codec>,
    /// H.264/H.265 pictures with a composition offset were seen: maybe B-frames. Browsers'
    /// WebRTC decoders do not reorder, so the pictures that would need it are not sent
    /// (`Packager::push`): such a stream plays at the rate of its other pictures.
    pub b_frames: bool,
}

/// What `Packager` dropped to keep the pictures in presentation order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReorderDrops {
    /// Pictures dropped because they would need reordering (B-frames).
    pub pictures: u64,
    /// Of those, reference pictures (B-pyramid): a later picture may predict from one, and
    /// shows errors until the next keyframe.
    pub references: u64,
}

impl StreamCodecs {
    /// The codec names for an error message: "H.264 + AAC".
    pub fn describe(&self) -> String {
        let names: Vec<&str> = [self.video, self.audio]
            .into_iter()
            .flatten()
            .map(codec_name)
            .collect();
        if names.is_empty() {
            "no audio or video yet".into()
        } else {
            names.join(" + ")
        }
    }
}

/// A codec's name as users know it.
pub fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::Avc => "H.264",
        Codec::Hevc => "H.265",
        Codec::Av1 => "AV1",
        Codec::Vp9 => "VP9",
        Codec::Vp8 => "VP8",
        Codec::OtherVideo(_) => "an FLV-only video codec",
        Codec::Aac => "AAC",
        Codec::Mp3 => "MP3",
        Codec::Opus => "Opus",
        Codec::Ac3 => "AC-3",
        Codec::Eac3 => "E-AC-3",
        Codec::Flac => "FLAC",
        Codec::OtherAudio(_) => "an FLV-only audio codec",
        Codec::Script => "script data",
    }
}

/// Video codecs a viewer can be sent.
pub fn sendable_video(c: Codec) -> bool {
    matches!(
        c,
        Codec::Avc | Codec::Hevc | Codec::Av1 | Codec::Vp9 | Codec::Vp8
    )
}

/// Audio codecs a viewer can be sent.
pub fn sendable_audio(c: Codec) -> bool {
    c == Codec::Opus
}

/// Per-stream conversion state: the last codec configuration, and the stream's codecs.
#[derive(Debug, Default)]
pub struct Packager {
    avc: Option<AvcConfig>,
    hevc: Option<HevcConfig>,
    codecs: StreamCodecs,
    /// The presentation time of the last H.264/H.265 picture sent since the last keyframe.
    last_pts: Option<u64>,
    dropped: ReorderDrops,
}

impl Packager {
    pub fn new() -> Packager {
        Packager::default()
    }

    /// The stream's codecs as seen so far (from sequence headers and frames).
    pub fn codecs(&self) -> &StreamCodecs {
        &self.codecs
    }

    /// The pictures dropped so far because they came out of presentation order.
    pub fn reorder_drops(&self) -> ReorderDrops {
        self.dropped
    }

    /// Takes one frame of the stream (the cached sequence headers and GOP first for a new
    /// stream, then every live frame), returns the unit to send to every viewer, if any.
    /// Configuration records update the state and return `None`, as do frames a browser cannot
    /// be sent, and H.264/H.265 pictures before their sequence header (no NAL length size).
    pub fn push(&mut self, frame: &Frame) -> Option<MediaUnit> {
        if frame.track_id != 0 {
            return None;
        }
        if !frame.config && !is_coded_frame(frame) {
            return None;
        }
        match frame.track {
            Track::Video => self.push_video(frame),
            Track::Audio => self.push_audio(frame),
            Track::Meta => None,
        }
    }

    fn push_video(&mut self, frame: &Frame) -> Option<MediaUnit> {
        if !sendable_video(frame.codec) {
            self.codecs.video = Some(frame.codec);
            return None;
        }
        if self.codecs.video != Some(frame.codec) {
            self.codecs.video = Some(frame.codec);
            self.codecs.h264_profile_level_id = None;
        }
        let payload = frame.payload();
        if frame.config {
            match frame.codec {
                Codec::Avc => {
                    self.avc = AvcConfig::parse(payload);
                    self.codecs.h264_profile_level_id = self
                        .avc
                        .as_ref()
                        .and_then(|c| c.sps.first())
                        .and_then(|sps| sps.get(1..4))
                        .map(|p| u32::from_be_bytes([0, p[0], p[1], p[2]]));
                }
                Codec::Hevc => self.hevc = HevcConfig::parse(payload),
                _ => {}
            }
            return None;
        }
        if payload.is_empty() {
            return None;
        }
        if frame.cts != 0 {
            self.codecs.b_frames = true;
        }
        if matches!(frame.codec, Codec::Avc | Codec::Hevc) && !self.in_order(frame) {
            return None;
        }
        let data: Vec<u8> = match frame.codec {
            Codec::Avc => {
                let config = self.avc.as_ref()?;
                avc_annex_b(payload, config, frame.key)
            }
            Codec::Hevc => {
                let config = self.hevc.as_ref()?;
                hevc_annex_b(payload, config, frame.key)
            }
            _ => payload.to_vec(),
        };
        if data.is_empty() {
            return None;
        }
        Some(MediaUnit {
            kind: UnitKind::Video,
            codec: frame.codec,
            key: frame.key,
            pts_ms: pts_ms(frame),
            data: data.into(),
        })
    }

    /// Whether an H.264/H.265 picture comes in presentation order (its presentation time not
    /// before that of the last picture sent since the keyframe): a B-frame does not, and is
    /// counted as dropped. A keyframe starts over. Without B-frames every picture does.
    fn in_order(&mut self, frame: &Frame) -> bool {
        let pts = pts_ms(frame);
        if !frame.key && self.last_pts.is_some_and(|last| pts < last) {
            self.dropped.pictures += 1;
            if self.is_reference(frame) {
                self.dropped.references += 1;
            }
            return false;
        }
        self.last_pts = Some(pts);
        true
    }

    /// Whether a picture may be a reference for later ones: an H.264 slice with nal_ref_idc
    /// above 0, an H.265 slice of a reference NAL unit type (odd below 16, or IRAP).
    fn is_reference(&self, frame: &Frame) -> bool {
        let (codec, nls) = match (frame.codec, &self.avc, &self.hevc) {
            (Codec::Avc, Some(c), _) => (Codec::Avc, c.nal_length_size),
            (Codec::Hevc, _, Some(c)) => (Codec::Hevc, c.nal_length_size),
            _ => return true,
        };
        avc::nal_units(frame.payload(), nls).any(|n| match codec {
            Codec::Avc => {
                let t = avc::nal_type(n);
                (1..=5).contains(&t) && n[0] & 0x60 != 0
            }
            _ => {
                let t = hevc::nal_type(n);
                t <= hevc::NAL_IRAP_LAST && (t % 2 == 1 || hevc::is_irap(t))
            }
        })
    }

    fn push_audio(&mut self, frame: &Frame) -> Option<MediaUnit> {
        self.codecs.audio = Some(frame.codec);
        if frame.config {
            return None;
        }
        match frame.codec {
            Codec::Opus => {
                let payload = frame.payload();
                if payload.is_empty() {
                    return None;
                }
                Some(MediaUnit {
                    kind: UnitKind::Audio,
                    codec: Codec::Opus,
                    key: true,
                    pts_ms: pts_ms(frame),
                    data: payload.into(),
                })
            }
            // AAC is bridged to Opus off the loop (`crate::audio`, fed by `server::webrtc`).
            _ => None,
        }
    }
}

/// Whether a frame that is not a configuration record carries coded media: not an Enhanced
/// RTMP metadata (`colorInfo`), end-of-sequence or channel-layout packet, nor a legacy AVC/HEVC
/// end-of-sequence (AVCPacketType 2).
fn is_coded_frame(frame: &Frame) -> bool {
    if let Some(tag) = frame.enhanced() {
        return tag.first.is_some_and(|t| {
            matches!(
                t.packet_type,
                PacketType::CodedFrames | PacketType::CodedFramesX
            )
        });
    }
    match frame.codec {
        Codec::Avc | Codec::Hevc => frame.data.get(1) == Some(&1),
        _ => true,
    }
}

fn pts_ms(frame: &Frame) -> u64 {
    (frame.time as i64).saturating_add(frame.cts as i64).max(0) as u64
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// One H.264 access unit in Annex B: SPS and PPS first on a keyframe (or IDR) that does not
/// carry its own, AUDs dropped. Truncated NAL units end the walk (`nal_units` stops there).
pub fn avc_annex_b(payload: &[u8], config: &AvcConfig, key: bool) -> Vec<u8> {
    let nals = || avc::nal_units(payload, config.nal_length_size);
    let has_ps = nals().any(|n| avc::nal_type(n) == avc::NAL_SPS);
    let idr = nals().any(|n| avc::nal_type(n) == avc::NAL_IDR);
    let mut out = Vec::with_capacity(payload.len() + 64);
    if (key || idr) && !has_ps {
        for ps in config.sps.iter().chain(config.pps.iter()) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(ps);
        }
    }
    for nal in nals().filter(|n| !n.is_empty() && avc::nal_type(n) != avc::NAL_AUD) {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    out
}

/// One H.265 access unit in Annex B: VPS, SPS and PPS first before an IRAP picture (or on a
/// keyframe) that does not carry its own, AUDs dropped.
pub fn hevc_annex_b(payload: &[u8], config: &HevcConfig, key: bool) -> Vec<u8> {
    let nals = || avc::nal_units(payload, config.nal_length_size);
    let has_ps = nals().any(|n| hevc::nal_type(n) == hevc::NAL_SPS);
    let irap = nals().any(|n| hevc::is_irap(hevc::nal_type(n)));
    let mut out = Vec::with_capacity(payload.len() + 128);
    if (key || irap) && !has_ps {
        for ps in config.parameter_sets() {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(ps);
        }
    }
    for nal in nals().filter(|n| !n.is_empty() && hevc::nal_type(n) != hevc::NAL_AUD) {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    out
}
