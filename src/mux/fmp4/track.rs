//! What a frame gives an fMP4 track: the sample description a track starts with (`track_config`)
//! and the sample payload of a media frame (`media_payload`), for every codec the recorders and
//! the LL-HLS window hold. No timeline (`line`) and no boxes (`mux::fmp4`, `sample_entry`).

use bytes::Bytes;

use super::{AudioConfig, TrackConfig, VideoConfig};
use crate::media::aac::AudioSpecificConfig;
use crate::media::avc::AvcConfig;
use crate::media::enhanced::PacketType;
use crate::media::{ac3::SyncFrame, av1::Av1Config, hevc::HevcConfig, mp3, opus::OpusHead};
use crate::media::{vp9::Vp9Config, Codec, Frame};
use crate::mux::sample_entry::SampleEntry;

/// Codec payload of a recordable media frame (AVC/HEVC length-prefixed NAL units, AV1 OBUs,
/// VP9 frames, raw AAC, Opus packets, MP3 and AC-3 frames), `None` for anything else: other
/// codecs and tracks, sequence headers and ends, empty frames.
pub fn media_payload(frame: &Frame) -> Option<Bytes> {
    if frame.config || frame.track_id != 0 {
        return None;
    }
    let range = if let Some(tag) = frame.enhanced() {
        let t = tag.first?;
        if !matches!(
            t.packet_type,
            PacketType::CodedFrames | PacketType::CodedFramesX
        ) {
            return None;
        }
        t.payload
    } else {
        let skip = match (frame.codec, frame.data.get(1)) {
            (Codec::Avc | Codec::Hevc, Some(1)) => 5,
            (Codec::Aac, Some(1)) => 2,
            (Codec::Mp3, Some(_)) => 1,
            _ => return None,
        };
        skip..frame.data.len()
    };
    if !recordable(frame.codec) || range.start >= range.end || range.end > frame.data.len() {
        return None;
    }
    Some(frame.data.slice(range))
}

/// Codecs an fMP4 track can hold (the default track only; see `track_config`).
pub fn recordable(codec: Codec) -> bool {
    matches!(
        codec,
        Codec::Avc
            | Codec::Hevc
            | Codec::Av1
            | Codec::Vp9
            | Codec::Aac
            | Codec::Mp3
            | Codec::Opus
            | Codec::Ac3
            | Codec::Eac3
    )
}

/// The sample description a frame starts a track with: a sequence header for the codecs that
/// have one, the first frame itself for MP3 and AC-3 (their frame headers are the description).
/// `None` for anything else or for a configuration that does not parse.
pub fn track_config(frame: &Frame, payload: &Bytes) -> Option<TrackConfig> {
    track_config_of(frame.codec, frame.config, payload)
}

/// `track_config` from the codec and whether `payload` is a sequence header.
pub fn track_config_of(codec: Codec, is_header: bool, payload: &Bytes) -> Option<TrackConfig> {
    if !is_header {
        return match codec {
            Codec::Mp3 => {
                mp3::FrameHeader::parse(payload).map(|h| TrackConfig::Other(SampleEntry::Mp3(h)))
            }
            Codec::Ac3 | Codec::Eac3 => {
                SyncFrame::parse(payload).map(|f| TrackConfig::Other(SampleEntry::Ac3(f)))
            }
            _ => None,
        };
    }
    Some(match codec {
        Codec::Avc => {
            let avc = AvcConfig::parse(payload)?;
            TrackConfig::Avc(VideoConfig {
                avcc: payload.clone(),
                width: avc.width,
                height: avc.height,
            })
        }
        Codec::Aac => {
            let asc = AudioSpecificConfig::parse(payload)?;
            TrackConfig::Aac(AudioConfig {
                asc: payload.clone(),
                sample_rate: asc.sample_rate.max(1),
                channels: if asc.channels == 0 { 2 } else { asc.channels },
            })
        }
        Codec::Hevc => TrackConfig::Other(SampleEntry::Hevc {
            config: HevcConfig::parse(payload)?,
            record: payload.clone(),
        }),
        Codec::Av1 => {
            let config = Av1Config::parse(payload)?;
            let (width, height) = config.dimensions(payload).unwrap_or((0, 0));
            TrackConfig::Other(SampleEntry::Av1 {
                record: payload.clone(),
                config,
                width,
                height,
            })
        }
        Codec::Vp9 => TrackConfig::Other(SampleEntry::Vp9 {
            config: Vp9Config::parse(payload)?,
            // vpcC carries no size: `start` takes it from the first keyframe.
            width: 0,
            height: 0,
        }),
        Codec::Opus => TrackConfig::Other(SampleEntry::Opus(OpusHead::parse(payload)?)),
        _ => return None,
    })
}
