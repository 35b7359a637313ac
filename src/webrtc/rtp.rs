//! RTP packetizing once per stream: a unit becomes its RTP payloads (`RtpUnit`) once, and every
//! viewer of the group sends the same payloads (`Arc<[u8]>`, shared, never copied per viewer)
//! through str0m's RTP-level API (`StreamTx::write_rtp`). Per viewer are only what must be: the
//! RTP header (its payload type, SSRC, sequence number, extensions), the NACK history (the
//! shared payloads), the RTCP sender reports (str0m maps each packet's RTP time to the wall
//! clock it was written at, as its frame API does) and SRTP.
//!
//! The groups are the codecs whose packetizer str0m exposes and whose output does not depend
//! on the viewer: H.264 in packetization mode 1 (the only mode offered: `session::add_h264`)
//! and Opus. A viewer's payload type is its own (it is in the header, not the payload), so
//! viewers that negotiated different payload types, or no audio, share the packets of what
//! they do send. Other codecs (HEVC, AV1, VP9, VP8) go through str0m's frame API per viewer
//! (`Writer::write`), as before.
//!
//! The payloads are what str0m's frame API makes of the same unit: the same packetizers, the
//! same size limit (str0m's MTU target less the SRTP tag, rounded down to the SRTP block).

use std::sync::Arc;

use str0m::unversioned::{H264Packetizer, OpusPacketizer, Packetizer};

use super::media::{MediaUnit, UnitKind};
use crate::media::frame::Codec;

/// The largest RTP payload: str0m's `Media::do_payload` rule for its default MTU (the SRTP
/// authentication tag, 16 bytes, taken off; rounded down to the 16-byte SRTP block).
pub const MAX_PAYLOAD: usize = {
    let rtp = str0m::DATAGRAM_MTU_TARGET - 16;
    rtp - rtp % 16
};

/// Viewers whose packets are the same: one packetizer per group and stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpGroup {
    /// H.264, packetization mode 1 (single NAL units, STAP-A and FU-A).
    H264Mode1,
    Opus,
}

impl RtpGroup {
    /// The group of a unit's codec; `None`: packetized per viewer.
    pub fn of(codec: Codec) -> Option<RtpGroup> {
        match codec {
            Codec::Avc => Some(RtpGroup::H264Mode1),
            Codec::Opus => Some(RtpGroup::Opus),
            _ => None,
        }
    }
}

/// One RTP payload and its marker bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPayload {
    pub data: Arc<[u8]>,
    pub marker: bool,
}

/// A unit with its RTP payloads, made once for every viewer.
#[derive(Clone, Debug)]
pub struct RtpUnit {
    pub unit: MediaUnit,
    /// `None`: the codec has no shared packetizer (or it refused the unit); each viewer
    /// packetizes `unit` itself.
    pub packets: Option<(RtpGroup, Vec<RtpPayload>)>,
    /// Whether a NACK may ask for these packets again (video; str0m's packetizers say).
    pub nackable: bool,
}

impl RtpUnit {
    /// The RTP time of the unit: its presentation time at the codec's clock (90 kHz video,
    /// 48 kHz Opus), as str0m's frame API writes it.
    pub fn rtp_time(&self) -> u32 {
        let rate = match self.unit.kind {
            UnitKind::Video => 90,
            UnitKind::Audio => 48,
        };
        self.unit.pts_ms.wrapping_mul(rate) as u32
    }
}

/// A stream's packetizers, one per group; they keep state between units (H.264's parameter
/// sets until the picture they go with), so one stream's units go through one in order.
#[derive(Debug, Default)]
pub struct Packetizers {
    h264: H264Packetizer,
    opus: OpusPacketizer,
    /// Units the packetizers refused (str0m's error), for the log.
    pub refused: u64,
}

impl Packetizers {
    pub fn new() -> Packetizers {
        Packetizers::default()
    }

    /// The unit's RTP payloads, when its codec has a group.
    pub fn packetize(&mut self, unit: MediaUnit) -> RtpUnit {
        let Some(group) = RtpGroup::of(unit.codec) else {
            return RtpUnit {
                unit,
                packets: None,
                nackable: false,
            };
        };
        let p: &mut dyn Packetizer = match group {
            RtpGroup::H264Mode1 => &mut self.h264,
            RtpGroup::Opus => &mut self.opus,
        };
        let chunks = match p.packetize(MAX_PAYLOAD, &unit.data) {
            Ok(c) => c,
            Err(e) => {
                log::debug!("webrtc: a {:?} unit was not packetized: {e}", group);
                self.refused += 1;
                return RtpUnit {
                    unit,
                    packets: None,
                    nackable: false,
                };
            }
        };
        let n = chunks.len();
        let mut packets = Vec::with_capacity(n);
        let mut previous: Option<Arc<[u8]>> = None;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let marker = p.is_marker(&chunk, previous.as_deref(), i + 1 == n);
            let data: Arc<[u8]> = chunk.into();
            previous = Some(data.clone());
            packets.push(RtpPayload { data, marker });
        }
        RtpUnit {
            unit,
            packets: Some((group, packets)),
            nackable: p.nackable(),
        }
    }
}
