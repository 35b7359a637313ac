//! WHIP ingest, after str0m: its depacketized frames (H.264 and HEVC as Annex B, AV1 as OBUs,
//! Opus packets) become the hub's `Frame`s (AVCC with the parameter sets as the stream's
//! configuration record, Enhanced RTMP `hvc1`, `av01` with its `av1C`, and `Opus` tags), stamped on one stream clock. Pure: no str0m types, no
//! clock reads; the session hands each frame in with its RTP time, its arrival and the track's
//! last RTCP sender report.
//!
//! # Loss
//!
//! str0m reorders, NACKs and reassembles (bounded: see `ingest`). A frame it reports as not
//! contiguous with the one before (packets given up on), or one over `MAX_FRAME_BYTES`, breaks
//! the picture: it and every video frame after it are dropped until the next keyframe, and
//! `Pushed::want_keyframe` asks the session for a PLI. Video also waits for its first keyframe
//! and parameter sets. Recordings and players never get a picture that references a lost one.
//!
//! # Time
//!
//! Each track's RTP time (90 kHz video, 48 kHz Opus, extended past wraps by str0m) counts from
//! the arrival of the track's first frame, so the first frames already line up within the
//! network's jitter. Once both tracks have had an RTCP sender report (the sender's NTP time for an
//! RTP time), audio is moved onto video's timeline by the difference of the two reports' clocks,
//! and again at every later report (drift): audio and video in sync to the millisecond. The
//! result is a 32-bit millisecond timestamp like an RTMP publisher's; the hub's ingest
//! normaliser makes stream time of it (wraps, jumps and small steps back handled there).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::media::frame::{TAG_AUDIO, TAG_VIDEO};
use crate::media::{av1, avc, hevc, Frame};
use crate::mux::ts_demux::{annex_b, avc_record, enhanced_video, hevc_record, opus_head};

/// The largest video frame taken (bytes); a larger one is dropped like a lost one. str0m holds
/// at most 4096 packets per stream, so its frames are bounded anyway; this keeps one frame from
/// filling a recorder's queue.
pub const MAX_FRAME_BYTES: usize = 4 << 20;
/// Parameter sets of a kind kept (as the TS demuxer).
const MAX_PARAM_SETS: usize = 16;
/// Sender reports further than this from the arrival-based timeline are ignored (a broken
/// sender clock must not move a track by minutes).
const MAX_SR_CORRECTION_US: i64 = 5_000_000;
/// Corrections smaller than this are left alone (no churn on every report).
const MIN_SR_CORRECTION_US: i64 = 1_000;

/// The video codecs taken from WHIP publishers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
    Av1,
}

/// A track's RTCP sender report: the sender's wall clock at an RTP time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderReport {
    pub ntp: SystemTime,
    /// The RTP timestamp of the report (32 bits; compared with wrapping arithmetic).
    pub rtp: u32,
}

/// One depacketized frame as str0m gave it.
#[derive(Clone, Copy, Debug)]
pub struct RtpFrame<'a> {
    /// Its RTP time, extended to 64 bits.
    pub rtp: u64,
    pub arrival: Instant,
    /// str0m saw no gap in sequence numbers since the frame before.
    pub contiguous: bool,
    pub sender: Option<SenderReport>,
    pub data: &'a [u8],
}

/// What one frame gave.
#[derive(Debug, Default)]
pub struct Pushed {
    /// For the hub, in order (a configuration record before the frame that brought it).
    pub frames: Vec<Frame>,
    /// The picture is broken or not started: ask the publisher for a keyframe.
    pub want_keyframe: bool,
}

/// Counters of one publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepackStats {
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Video frames dropped: before the first keyframe, after a gap until the next one, too large.
    pub video_dropped: u64,
    /// Gaps str0m reported (frames given up on).
    pub gaps: u64,
    pub too_large: u64,
}

#[derive(Debug)]
struct TrackClock {
    rate: u32,
    rtp0: u64,
    /// Microseconds on the stream timeline of `rtp0`.
    anchor_us: i64,
    /// Sender wall clock (µs since the epoch) minus our timeline at the last report.
    skew_us: Option<i64>,
}

impl TrackClock {
    fn local_us(&self, rtp: u64) -> i64 {
        let ticks = rtp.wrapping_sub(self.rtp0) as i64;
        self.anchor_us + (ticks as i128 * 1_000_000 / i128::from(self.rate)) as i64
    }
}

/// One stream clock for a publish's two tracks (see the module doc).
#[derive(Debug, Default)]
struct SyncClock {
    base: Option<Instant>,
    video: Option<TrackClock>,
    audio: Option<TrackClock>,
}

impl SyncClock {
    /// The frame's timestamp in ms.
    fn stamp(&mut self, video: bool, rate: u32, f: &RtpFrame) -> u32 {
        let base = *self.base.get_or_insert(f.arrival);
        let slot = if video {
            &mut self.video
        } else {
            &mut self.audio
        };
        let track = slot.get_or_insert_with(|| TrackClock {
            rate,
            rtp0: f.rtp,
            anchor_us: f.arrival.saturating_duration_since(base).as_micros() as i64,
            skew_us: None,
        });
        let mut local = track.local_us(f.rtp);
        if let Some(sr) = f.sender {
            let ticks = i64::from((f.rtp as u32).wrapping_sub(sr.rtp) as i32);
            let ntp_us = sr
                .ntp
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            let wall = ntp_us + ticks * 1_000_000 / i64::from(rate.max(1));
            track.skew_us = Some(wall - local);
        }
        if !video {
            // Audio follows video's report clock.
            let want = self.video.as_ref().and_then(|v| v.skew_us);
            if let (Some(a), Some(v)) = (self.audio.as_mut(), want) {
                if let Some(skew) = a.skew_us {
                    let fix = skew - v;
                    if fix.abs() >= MIN_SR_CORRECTION_US && fix.abs() <= MAX_SR_CORRECTION_US {
                        a.anchor_us += fix;
                        a.skew_us = Some(v);
                        local += fix;
                    }
                }
            }
        }
        local.div_euclid(1000) as u32
    }
}

#[derive(Debug, Default)]
struct VideoState {
    vps: Vec<Bytes>,
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    config: Option<Bytes>,
    /// AV1: the last sequence header OBU's payload and whether it has a reduced still picture
    /// header (frame headers are read with it).
    av1_sequence: Option<(Bytes, bool)>,
    /// Dropping until a keyframe (from the start, after a gap).
    waiting: bool,
    started: bool,
}

/// A publish's frames from str0m's: see the module doc.
#[derive(Debug)]
pub struct Depacketizer {
    video_codec: Option<VideoCodec>,
    video: VideoState,
    audio_config_sent: bool,
    clock: SyncClock,
    pub stats: DepackStats,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer {
    pub fn new() -> Depacketizer {
        Depacketizer {
            video_codec: None,
            video: VideoState {
                waiting: true,
                ..VideoState::default()
            },
            audio_config_sent: false,
            clock: SyncClock::default(),
            stats: DepackStats::default(),
        }
    }

    /// True while video waits for a keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.video_codec.is_some() && self.video.waiting
    }

    /// One Opus packet.
    pub fn push_audio(&mut self, f: &RtpFrame) -> Pushed {
        let mut out = Pushed::default();
        if f.data.is_empty() {
            return out;
        }
        let dts = self.clock.stamp(false, 48_000, f);
        if !self.audio_config_sent {
            self.audio_config_sent = true;
            let mut body = vec![0x90];
            body.extend_from_slice(b"Opus");
            // WebRTC's Opus is always signalled as two channels (RFC 7587); a mono stream
            // decodes as stereo.
            body.extend_from_slice(&opus_head(2, 0));
            out.frames
                .extend(Frame::parse(TAG_AUDIO, dts, Bytes::from(body)));
        }
        let mut body = Vec::with_capacity(5 + f.data.len());
        body.push(0x91);
        body.extend_from_slice(b"Opus");
        body.extend_from_slice(f.data);
        out.frames
            .extend(Frame::parse(TAG_AUDIO, dts, Bytes::from(body)));
        self.stats.audio_frames += 1;
        out
    }

    /// One video access unit (Annex B) of `codec`. The first video frame sets the publish's
    /// video codec; frames of another one are dropped.
    pub fn push_video(&mut self, codec: VideoCodec, f: &RtpFrame) -> Pushed {
        let mut out = Pushed::default();
        if *self.video_codec.get_or_insert(codec) != codec {
            self.stats.video_dropped += 1;
            return out;
        }
        let dts = self.clock.stamp(true, 90_000, f);
        let v = &mut self.video;
        if f.data.len() > MAX_FRAME_BYTES {
            self.stats.too_large += 1;
            self.stats.video_dropped += 1;
            v.waiting = true;
            out.want_keyframe = true;
            return out;
        }
        if !f.contiguous && v.started {
            self.stats.gaps += 1;
            v.waiting = true;
        }
        if codec == VideoCodec::Av1 {
            return self.push_av1(dts, f.data, out);
        }
        let hevc = codec == VideoCodec::H265;
        let mut avcc = Vec::with_capacity(f.data.len() + 16);
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut key = false;
        for nal in annex_b(f.data) {
            let (ty, sets, aud) = if hevc {
                let t = hevc::nal_type(nal);
                key |= hevc::is_irap(t);
                let sets = match t {
                    hevc::NAL_VPS => Some(&mut vps),
                    hevc::NAL_SPS => Some(&mut sps),
                    hevc::NAL_PPS => Some(&mut pps),
                    _ => None,
                };
                (t, sets, hevc::NAL_AUD)
            } else {
                let t = avc::nal_type(nal);
                key |= t == avc::NAL_IDR;
                let sets = match t {
                    avc::NAL_SPS => Some(&mut sps),
                    avc::NAL_PPS => Some(&mut pps),
                    _ => None,
                };
                (t, sets, avc::NAL_AUD)
            };
            if let Some(sets) = sets {
                if sets.len() < MAX_PARAM_SETS && nal.len() <= usize::from(u16::MAX) {
                    sets.push(Bytes::copy_from_slice(nal));
                }
                continue;
            }
            if ty == aud {
                continue;
            }
            avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            avcc.extend_from_slice(nal);
        }
        let mut changed = false;
        for (new, cur) in [(vps, &mut v.vps), (sps, &mut v.sps), (pps, &mut v.pps)] {
            if !new.is_empty() && new != *cur {
                *cur = new;
                changed = true;
            }
        }
        if changed && !v.sps.is_empty() && !v.pps.is_empty() {
            let body = if hevc {
                hevc_record(&v.vps, &v.sps, &v.pps).map(|r| enhanced_video(0x90, 0, None, &r))
            } else {
                avc_record(&v.sps, &v.pps).map(|r| {
                    let mut b = vec![0x17, 0, 0, 0, 0];
                    b.extend_from_slice(&r);
                    b
                })
            };
            if let Some(b) = body.filter(|b| v.config.as_deref() != Some(&b[..])) {
                let b = Bytes::from(b);
                v.config = Some(b.clone());
                out.frames.extend(Frame::parse(TAG_VIDEO, dts, b));
            }
        }
        if avcc.is_empty() {
            return out;
        }
        if v.config.is_none() || (v.waiting && !key) {
            self.stats.video_dropped += 1;
            out.want_keyframe = true;
            return out;
        }
        v.waiting = false;
        v.started = true;
        let body = if hevc {
            enhanced_video(if key { 0x90 } else { 0xa0 }, 3, None, &avcc)
        } else {
            let mut b = Vec::with_capacity(5 + avcc.len());
            b.extend_from_slice(&[if key { 0x17 } else { 0x27 }, 1, 0, 0, 0]);
            b.extend_from_slice(&avcc);
            b
        };
        out.frames
            .extend(Frame::parse(TAG_VIDEO, dts, Bytes::from(body)));
        self.stats.video_frames += 1;
        out
    }

    /// One AV1 temporal unit as str0m gives it (OBUs in the low-overhead format, each with its
    /// size field): temporal delimiters, tile lists and padding are left out (AV1-ISOBMFF 2.4),
    /// a new sequence header becomes the `av1C` configuration record, and a frame (header) OBU
    /// with `frame_type` KEY_FRAME makes it a keyframe.
    fn push_av1(&mut self, dts: u32, data: &[u8], mut out: Pushed) -> Pushed {
        let v = &mut self.video;
        let mut obus = Vec::with_capacity(data.len());
        let mut key = false;
        let mut sequence: Option<(&[u8], &[u8])> = None;
        let mut rest = data;
        while !rest.is_empty() {
            let Some((ty, whole, payload)) = av1_obu(rest) else {
                // A broken temporal unit: the picture is broken too.
                self.stats.video_dropped += 1;
                v.waiting = true;
                out.want_keyframe = true;
                return out;
            };
            rest = &rest[whole.len()..];
            match ty {
                av1::OBU_SEQUENCE_HEADER => sequence = Some((whole, payload)),
                OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING => continue,
                OBU_FRAME_HEADER | OBU_FRAME => {
                    let reduced = v.av1_sequence.as_ref().is_some_and(|s| s.1)
                        || sequence
                            .and_then(|(_, p)| av1::sequence_info(p))
                            .is_some_and(|s| s.reduced_still_picture_header);
                    key |= av1_is_key_frame(payload, reduced);
                }
                _ => {}
            }
            obus.extend_from_slice(whole);
        }
        if let Some((whole, payload)) = sequence {
            if v.av1_sequence.as_ref().map(|s| &s.0[..]) != Some(payload) {
                match av1::av1c_record(whole, payload) {
                    Some(rec) => {
                        let reduced = av1::sequence_info(payload)
                            .is_some_and(|s| s.reduced_still_picture_header);
                        v.av1_sequence = Some((Bytes::copy_from_slice(payload), reduced));
                        let b = Bytes::from(av1_tag(0x90, 0, &rec));
                        v.config = Some(b.clone());
                        out.frames.extend(Frame::parse(TAG_VIDEO, dts, b));
                    }
                    None => {
                        self.stats.video_dropped += 1;
                        v.waiting = true;
                        out.want_keyframe = true;
                        return out;
                    }
                }
            }
        }
        if obus.is_empty() {
            return out;
        }
        if v.config.is_none() || (v.waiting && !key) {
            self.stats.video_dropped += 1;
            out.want_keyframe = true;
            return out;
        }
        v.waiting = false;
        v.started = true;
        let body = av1_tag(if key { 0x90 } else { 0xa0 }, 1, &obus);
        out.frames
            .extend(Frame::parse(TAG_VIDEO, dts, Bytes::from(body)));
        self.stats.video_frames += 1;
        out
    }
}

const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_FRAME_HEADER: u8 = 3;
const OBU_FRAME: u8 = 6;
const OBU_TILE_LIST: u8 = 8;
const OBU_PADDING: u8 = 15;

/// The first OBU of `b` (low-overhead format; one without a size field runs to the end):
/// its type, its bytes and its payload. `None` when malformed.
fn av1_obu(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let header = *b.first()?;
    if header & 0x80 != 0 {
        return None; // obu_forbidden_bit
    }
    let ty = (header >> 3) & 0x0f;
    let mut pos = 1 + usize::from((header >> 2) & 1);
    let size = if header & 0x02 != 0 {
        let mut v = 0u64;
        let mut n = 0;
        loop {
            let byte = *b.get(pos + n)?;
            v |= u64::from(byte & 0x7f) << (7 * n);
            n += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if n == 8 {
                return None;
            }
        }
        pos += n;
        usize::try_from(v).ok()?
    } else {
        b.len().checked_sub(pos)?
    };
    let end = pos.checked_add(size)?;
    Some((ty, b.get(..end)?, b.get(pos..end)?))
}

/// Whether a frame header (or frame OBU) payload starts a KEY_FRAME (AV1 5.9.2): not
/// `show_existing_frame` and `frame_type` 0; always with a reduced still picture header.
fn av1_is_key_frame(payload: &[u8], reduced_still_picture_header: bool) -> bool {
    if reduced_still_picture_header {
        return true;
    }
    payload
        .first()
        .is_some_and(|b| b & 0x80 == 0 && (b >> 5) & 0x03 == 0)
}

/// An Enhanced RTMP `av01` video tag body.
fn av1_tag(frame_type: u8, packet_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + payload.len());
    b.push(frame_type | packet_type);
    b.extend_from_slice(b"av01");
    b.extend_from_slice(payload);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Track;
    use std::time::Duration;

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        v
    }

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn frame(rtp: u64, at: Instant, contiguous: bool, data: &[u8]) -> RtpFrame<'_> {
        RtpFrame {
            rtp,
            arrival: at,
            contiguous,
            sender: None,
            data,
        }
    }

    #[test]
    fn h264_starts_at_a_keyframe_with_its_record_and_waits_after_a_gap() {
        let t0 = Instant::now();
        let mut d = Depacketizer::new();
        // A P-frame first: dropped, a keyframe asked for.
        let p = annexb(&[&[0x41, 0x9a, 1, 2]]);
        let r = d.push_video(VideoCodec::H264, &frame(1000, t0, true, &p));
        assert!(r.frames.is_empty() && r.want_keyframe);
        // The keyframe with its sets: the record, then the frame in AVCC.
        let idr = annexb(&[SPS, PPS, &[0x09, 0x10], &[0x65, 0x88, 3, 4]]);
        let r = d.push_video(
            VideoCodec::H264,
            &frame(1000 + 3000, t0 + Duration::from_millis(33), true, &idr),
        );
        assert_eq!(r.frames.len(), 2);
        let (cfg, key) = (&r.frames[0], &r.frames[1]);
        assert!(cfg.config && cfg.codec == crate::media::Codec::Avc);
        assert_eq!(
            crate::media::avc::AvcConfig::parse(&cfg.data[5..])
                .unwrap()
                .sps,
            vec![SPS.to_vec()]
        );
        assert!(key.key && !key.config);
        assert_eq!(
            &key.data[5..],
            &[0, 0, 0, 4, 0x65, 0x88, 3, 4][..],
            "AUD left out, 4-byte length"
        );
        assert_eq!(key.dts, 33);
        // Next P-frame passes, 1 frame at 90 kHz later.
        let r = d.push_video(
            VideoCodec::H264,
            &frame(7000, t0 + Duration::from_millis(66), true, &p),
        );
        assert_eq!(r.frames.len(), 1);
        assert_eq!(r.frames[0].dts, 66);
        // A gap: the frame after it and the next ones are dropped until a keyframe.
        let r = d.push_video(VideoCodec::H264, &frame(10000, t0, false, &p));
        assert!(r.frames.is_empty() && r.want_keyframe);
        let r = d.push_video(VideoCodec::H264, &frame(13000, t0, true, &p));
        assert!(r.frames.is_empty());
        let idr2 = annexb(&[&[0x65, 0x88, 5]]);
        let r = d.push_video(VideoCodec::H264, &frame(16000, t0, true, &idr2));
        assert_eq!(r.frames.len(), 1, "same sets: no new record");
        assert!(r.frames[0].key);
        assert_eq!(d.stats.gaps, 1);
        assert_eq!(d.stats.video_dropped, 3);
        // Too large: dropped, waits again.
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(
            d.push_video(VideoCodec::H264, &frame(19000, t0, true, &big))
                .want_keyframe
        );
        assert!(d.waiting_for_keyframe());
    }

    #[test]
    fn opus_gets_its_head_once() {
        let t0 = Instant::now();
        let mut d = Depacketizer::new();
        let r = d.push_audio(&frame(0, t0, true, &[0xfc, 1, 2]));
        assert_eq!(r.frames.len(), 2);
        assert!(r.frames[0].config && r.frames[0].codec == crate::media::Codec::Opus);
        assert_eq!(r.frames[1].track, Track::Audio);
        assert_eq!(&r.frames[1].data[5..], &[0xfc, 1, 2]);
        let r = d.push_audio(&frame(960, t0, true, &[0xfc, 3]));
        assert_eq!((r.frames.len(), r.frames[0].dts), (1, 20));
    }

    #[test]
    fn sender_reports_put_audio_on_videos_clock() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut d = Depacketizer::new();
        let idr = annexb(&[SPS, PPS, &[0x65, 0x88]]);
        // Video captured at `wall`, arriving at t0; its RTP time 90_000 at `wall`.
        let mut v = frame(90_000, t0, true, &idr);
        v.sender = Some(SenderReport {
            ntp: wall,
            rtp: 90_000,
        });
        let vf = d.push_video(VideoCodec::H264, &v).frames;
        assert_eq!(vf[1].dts, 0);
        // Audio captured at the same instant, but its first packet arrived 60 ms later
        // (arrival alone would put it 60 ms late).
        let mut a = frame(5_000, t0 + Duration::from_millis(60), true, &[0xfc]);
        let r = d.push_audio(&a);
        assert_eq!(r.frames[1].dts, 60);
        a.sender = Some(SenderReport {
            ntp: wall,
            rtp: 5_000,
        });
        a.rtp = 5_000 + 960;
        let r = d.push_audio(&a);
        assert_eq!(r.frames[0].dts, 20, "in sync with video once both reported");
    }

    #[test]
    fn hostile_av1_temporal_units_are_dropped_not_panicked_on() {
        let t0 = Instant::now();
        let mut d = Depacketizer::new();
        let mut seed = 0x1234_5678u32;
        let mut seen_config = false;
        for i in 0..2000u64 {
            let len = (i % 64) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let r = d.push_video(VideoCodec::Av1, &frame(i * 3000, t0, true, &data));
            // No picture before a record; every tag is av01.
            for f in &r.frames {
                assert_eq!(f.codec, crate::media::Codec::Av1);
                assert!(f.data.len() >= 5 && &f.data[1..5] == b"av01");
                seen_config |= f.config;
                assert!(f.config || seen_config);
            }
        }
        // A size field running past the end is a gap, and asks for a keyframe.
        let r = d.push_video(VideoCodec::Av1, &frame(0, t0, true, &[0x32, 0x7f, 1, 2]));
        assert!(r.frames.is_empty() && r.want_keyframe);
    }

    #[test]
    fn hevc_becomes_an_enhanced_rtmp_record_and_frames() {
        use crate::media::hevc::HevcConfig;
        let path = format!(
            "{}/tests/data/codecs/hevc_aac.flv",
            env!("CARGO_MANIFEST_DIR")
        );
        let frames = crate::mux::flv_demux::read_all(&std::fs::read(path).unwrap())
            .unwrap()
            .2;
        let cfg = frames
            .iter()
            .find(|f| f.config && f.track == Track::Video)
            .unwrap();
        let rec = HevcConfig::parse(&cfg.data[5..]).unwrap();
        let sets: Vec<Vec<u8>> = [32, 33, 34]
            .iter()
            .map(|t| rec.units(*t).next().unwrap().to_vec())
            .collect();
        let idr: &[u8] = &[0x26, 0x01, 0xaf, 0x11, 0x22];
        let mut au: Vec<&[u8]> = sets.iter().map(|s| &s[..]).collect();
        au.push(idr);
        let t0 = Instant::now();
        let mut d = Depacketizer::new();
        let r = d.push_video(VideoCodec::H265, &frame(0, t0, true, &annexb(&au)));
        assert_eq!(r.frames.len(), 2);
        let (c, k) = (&r.frames[0], &r.frames[1]);
        assert!(c.config && c.codec == crate::media::Codec::Hevc);
        let got = HevcConfig::parse(&c.data[5..]).unwrap();
        for (t, want) in [32u8, 33, 34].iter().zip(&sets) {
            assert_eq!(&got.units(*t).next().unwrap()[..], &want[..]);
        }
        assert!(k.key && !k.config && k.codec == crate::media::Codec::Hevc);
        assert_eq!(&k.data[..5], b"\x93hvc1");
        assert_eq!(
            &k.data[5..],
            &[0, 0, 0, 5, 0x26, 0x01, 0xaf, 0x11, 0x22][..]
        );
        // A delta frame (TRAIL_R), and a frame of another codec in the same publish: dropped.
        let r = d.push_video(
            VideoCodec::H265,
            &frame(3000, t0, true, &annexb(&[&[0x02, 0x01, 9]])),
        );
        assert_eq!(&r.frames[0].data[..5], b"\xa3hvc1");
        assert!(!r.frames[0].key);
        let r = d.push_video(
            VideoCodec::H264,
            &frame(6000, t0, true, &annexb(&[&[0x65, 1]])),
        );
        assert!(r.frames.is_empty());
    }
}
