//! MPEG-TS (ISO/IEC 13818-1) demuxer for ingest (SRT): bytes in, `media::Frame`s out, exactly as
//! the RTMP ingest would have produced them, so the hub, every output and every recorder take a TS
//! publisher as they take an RTMP one.
//!
//! What it owns: packet sync (resync on 0x47 within the bytes given, counted), PAT and PMT (CRC
//! checked, sections across packets), continuity counters, PES reassembly with a size cap, and the
//! codec framing back to FLV/RTMP tag bodies:
//!
//! - H.264 Annex B -> AVCC access units (legacy FLV video tags) plus an
//!   AVCDecoderConfigurationRecord config frame from the in-band SPS/PPS, again whenever they
//!   change. AUD, SPS, PPS and filler NAL units leave the access unit (the parameter sets live in
//!   the config); the keyframe flag is "has an IDR slice".
//! - H.265 -> Enhanced RTMP `hvc1` tags (CodedFrames, or CodedFramesX when PTS = DTS, as FFmpeg
//!   writes them) plus an HEVCDecoderConfigurationRecord from the VPS/SPS/PPS; key = IRAP.
//! - AAC in ADTS -> an AudioSpecificConfig config frame (again when it changes) and one raw AAC
//!   frame per ADTS frame; MP3 -> legacy MP3 tags, one per MPEG audio frame; AC-3 and E-AC-3 ->
//!   Enhanced RTMP `ac-3`/`ec-3` tags, one per sync frame (an E-AC-3 frame keeps its dependent
//!   substreams); Opus (stream type 0x06 with the `Opus` registration descriptor, the Opus-in-TS
//!   control-header framing) -> an OpusHead config and one `Opus` tag per packet. Every audio frame
//!   of a PES gets its own time: the PES PTS plus the samples before it.
//! - Timestamps: milliseconds from PTS/DTS (90 kHz), composition time = PTS - DTS, the 33-bit
//!   wrap unwrapped, counted from the first timestamp seen plus `START_MS` (so a stream starts
//!   near 0 as an RTMP publisher's does, and the other track's first frames, which may be a little
//!   earlier, are not negative: video DTS trails audio PTS by the reordering delay when the first
//!   PES to end is audio). The PCR is not used: the hub's normaliser (`media::time`) is the one
//!   place that judges jumps and skew.
//!
//! Bounds: one program (the first of the PAT), one video and one audio stream (the first of each
//! kind the PMT lists that we understand; others are ignored), a PES over its cap
//! (`MAX_VIDEO_PES`, `MAX_AUDIO_PES`) is dropped and the stream waits for the next unit start,
//! sections over `MAX_SECTION` are dropped, at most `MAX_PARAM_SETS` parameter sets of a kind.
//! Hostile input is counted (`Stats`) and reported (`poll_error`, a bounded queue), never a panic.
//! Video before the first config and keyframe is dropped (counted), as a player could not use it.
//! A PES that states its length is released as soon as it is whole; one without (what encoders
//! write for video) when the next one starts, so video leaves one frame late, as from any TS
//! demuxer; `flush` releases the last.
//!
//! What it does not do: sockets, SRT, clocks, logging (the caller logs what `poll_error` gives),
//! timestamp policy (the normaliser's), PES split across several access units (one PES is one
//! access unit, as every muxer we know writes video), teletext, SCTE-35, or a second program.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

use crate::media::avc::{self, BitReader};
use crate::media::frame::{Frame, TAG_AUDIO, TAG_VIDEO};
use crate::media::{ac3, hevc, mp3, opus};
use crate::mux::ts::{crc32_mpeg2, PACKET_LEN, TS_MASK};

const SYNC: u8 = 0x47;
const PID_PAT: u16 = 0;
const PID_NULL: u16 = 0x1fff;
/// The largest video PES kept (header included); a bigger one is dropped.
pub const MAX_VIDEO_PES: usize = 8 << 20;
/// The largest audio PES kept: what a PES with a length field can hold.
pub const MAX_AUDIO_PES: usize = 6 + 0xffff;
/// PAT and PMT sections are at most 1024 bytes (section_length <= 1021).
pub const MAX_SECTION: usize = 1024;
/// Parameter sets of one kind kept for the config record.
pub const MAX_PARAM_SETS: usize = 16;
/// Errors queued for `poll_error`; more are counted in `Stats::errors` only.
const MAX_QUEUED_ERRORS: usize = 32;
/// Filler data NAL unit types (H.264 Table 7-1, H.265 Table 7-1).
const NAL_AVC_FILLER: u8 = 12;
const NAL_HEVC_FILLER: u8 = 38;
/// The time of the first timestamp seen, in ms: room for frames stamped up to 1 s before it.
pub const START_MS: i64 = 1000;
/// 2^33: the PTS/DTS period.
const TS_PERIOD: i64 = 1 << 33;

/// One thing wrong with the input. Each is counted; the demuxer goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsError {
    /// Bytes skipped to find the next sync byte.
    LostSync { skipped: usize },
    /// A packet with transport_error_indicator set.
    TransportError { pid: u16 },
    /// An adaptation field longer than the packet.
    BadAdaptationField { pid: u16 },
    /// A continuity counter skipped: packets were lost; the PES in progress is dropped.
    Continuity { pid: u16 },
    /// A PAT or PMT section with a bad CRC, a bad length or bad contents.
    BadSection { pid: u16 },
    /// A PES without a start code, with a malformed header, no PTS, or shorter than it says.
    BadPes { pid: u16 },
    /// A PES over the cap for its kind: dropped.
    PesTooLarge { pid: u16 },
    /// Elementary stream data that does not parse as its codec (no ADTS/MPEG/AC-3 sync, a bad
    /// Opus control header, an unusable parameter set, a frame cut by the PES end).
    BadAccessUnit { pid: u16 },
    /// MPEG audio that is not layer 3: RTMP has no tag for it.
    UnsupportedCodec { pid: u16 },
}

impl fmt::Display for TsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TsError::LostSync { skipped } => {
                write!(f, "MPEG-TS sync lost: {skipped} bytes skipped")
            }
            TsError::TransportError { pid } => {
                write!(
                    f,
                    "MPEG-TS packet on PID {pid:#x} has the transport error flag"
                )
            }
            TsError::BadAdaptationField { pid } => {
                write!(
                    f,
                    "MPEG-TS adaptation field on PID {pid:#x} overruns the packet"
                )
            }
            TsError::Continuity { pid } => {
                write!(f, "MPEG-TS continuity error on PID {pid:#x}: packets lost")
            }
            TsError::BadSection { pid } => write!(f, "MPEG-TS bad PSI section on PID {pid:#x}"),
            TsError::BadPes { pid } => write!(f, "MPEG-TS bad PES on PID {pid:#x}"),
            TsError::PesTooLarge { pid } => {
                write!(f, "MPEG-TS PES on PID {pid:#x} over the size cap: dropped")
            }
            TsError::BadAccessUnit { pid } => {
                write!(
                    f,
                    "MPEG-TS elementary stream data on PID {pid:#x} does not parse"
                )
            }
            TsError::UnsupportedCodec { pid } => {
                write!(
                    f,
                    "MPEG-TS audio on PID {pid:#x} is not MP3 (layer 1/2): dropped"
                )
            }
        }
    }
}

impl std::error::Error for TsError {}

/// Counters for the API and the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// 188-byte packets read.
    pub packets: u64,
    /// Bytes skipped while out of sync.
    pub skipped_bytes: u64,
    /// Every error (each `TsError`), whether or not it was still queued for `poll_error`.
    pub errors: u64,
    /// Frames produced (configs included).
    pub frames: u64,
    /// Video access units dropped before the first config and keyframe.
    pub dropped_before_key: u64,
}

/// The codecs we turn into frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    H264,
    Hevc,
    Aac,
    Mp3,
    Ac3,
    Eac3,
    Opus { channels: u8 },
}

impl Kind {
    fn is_video(self) -> bool {
        matches!(self, Kind::H264 | Kind::Hevc)
    }

    fn max_pes(self) -> usize {
        if self.is_video() {
            MAX_VIDEO_PES
        } else {
            MAX_AUDIO_PES
        }
    }

    /// The kind a PMT entry describes: its stream type, and for 0x06 (private data) its
    /// descriptors. `None` for what we do not carry.
    fn from_pmt(stream_type: u8, descriptors: &[u8]) -> Option<Kind> {
        match stream_type {
            0x1b => return Some(Kind::H264),
            0x24 => return Some(Kind::Hevc),
            0x0f => return Some(Kind::Aac),
            0x03 | 0x04 => return Some(Kind::Mp3),
            0x81 => return Some(Kind::Ac3),
            0x87 => return Some(Kind::Eac3),
            0x06 => {}
            _ => return None,
        }
        let mut registration = None;
        let mut opus_channels = None;
        let mut dvb = None;
        for (tag, body) in Descriptors(descriptors) {
            match (tag, body) {
                (0x05, [a, b, c, d, ..]) => registration = Some([*a, *b, *c, *d]),
                // DVB extension descriptor, tag 0x80: the Opus channel_config_code.
                (0x7f, [0x80, code, ..]) => opus_channels = Some(*code),
                (0x6a, _) => dvb = Some(Kind::Ac3),
                (0x7a, _) => dvb = Some(Kind::Eac3),
                _ => {}
            }
        }
        match registration.as_ref() {
            Some(b"Opus") => match opus_channels.unwrap_or(2) {
                // 1..=8 channels in the Vorbis order; dual mono (0) and explicit maps (0x80..)
                // have no OpusHead of family 0/1.
                c @ 1..=8 => Some(Kind::Opus { channels: c }),
                _ => None,
            },
            Some(b"AC-3") => Some(Kind::Ac3),
            Some(b"EAC3") => Some(Kind::Eac3),
            _ => dvb,
        }
    }
}

/// (tag, body) of each descriptor in a descriptor loop; stops at a truncated one.
struct Descriptors<'a>(&'a [u8]);

impl<'a> Iterator for Descriptors<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let [tag, len, rest @ ..] = self.0 else {
            return None;
        };
        let len = usize::from(*len);
        let Some(body) = rest.get(..len) else {
            self.0 = &[];
            return None;
        };
        self.0 = &rest[len..];
        Some((*tag, body))
    }
}

/// A PSI section being assembled from the packets of one PID.
#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    active: bool,
    cc: Option<u8>,
}

/// One elementary stream: its PES in assembly and its codec state.
#[derive(Debug)]
struct Stream {
    pid: u16,
    kind: Kind,
    cc: Option<u8>,
    pes: Vec<u8>,
    /// Collecting a PES since its unit start (false: waiting for one).
    collecting: bool,
    /// Parameter sets in force (VPS for HEVC only) and whether they changed since the last config.
    vps: Vec<Bytes>,
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    sets_changed: bool,
    /// The last config frame body sent (`None`: none yet).
    config: Option<Bytes>,
    /// Video: a keyframe has gone out (inter frames before it are dropped).
    started: bool,
    /// The last packet of this PID was padded with adaptation-field stuffing: muxers pad the
    /// packet that ends a PES, so the PES being collected is very likely whole.
    stuffed: bool,
}

impl Stream {
    fn new(pid: u16, kind: Kind) -> Stream {
        Stream {
            pid,
            kind,
            cc: None,
            pes: Vec::new(),
            collecting: false,
            vps: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
            sets_changed: false,
            config: None,
            started: false,
            stuffed: false,
        }
    }
}

/// PTS/DTS to stream time in 90 kHz ticks: the 33-bit wrap unwrapped against the last value seen,
/// counted from the first value seen, which is at `START_MS`.
#[derive(Debug, Default)]
struct Clock {
    /// (first value, last unwrapped value), 90 kHz.
    state: Option<(i64, i64)>,
}

impl Clock {
    /// The 90 kHz time of `ts` (33 bits): since the first timestamp, unwrapped, plus `START_MS`.
    fn ticks(&mut self, ts: u64) -> i64 {
        let ts = (ts & TS_MASK) as i64;
        let (base, last) = *self.state.get_or_insert((ts, ts));
        // The signed 33-bit step from the last value: a wrap is a small step forward.
        let mut step = (ts - last).rem_euclid(TS_PERIOD);
        if step >= TS_PERIOD / 2 {
            step -= TS_PERIOD;
        }
        // Saturating: only a hostile stream of billions of maximal jumps could reach the ends.
        let now = last.saturating_add(step);
        self.state = Some((base, now));
        now.saturating_sub(base).saturating_add(START_MS * 90)
    }
}

/// Milliseconds (floored) of a 90 kHz count.
fn ms(ticks: i64) -> i64 {
    ticks.div_euclid(90)
}

/// The sans-IO TS demuxer: `push` bytes split anywhere, then drain `poll_frame` (and
/// `poll_error`); `flush` at the end of the stream releases the last video access unit.
///
/// ```
/// use rtmpd::mux::ts_demux::TsDemuxer;
///
/// let mut demuxer = TsDemuxer::new();
/// let received: &[u8] = &[0x47, 0x1f, 0xff, 0x10]; // what the socket gave: any piece
/// demuxer.push(received);
/// while let Some(frame) = demuxer.poll_frame() {
///     // The hub takes it as it takes an RTMP publisher's frame.
///     let _ = frame;
/// }
/// while let Some(e) = demuxer.poll_error() {
///     eprintln!("{e}"); // one log line each (rate-limit them: a broken stream makes many)
/// }
/// assert_eq!(demuxer.stats().packets, 0, "a partial packet waits for the rest");
/// ```
#[derive(Debug, Default)]
pub struct TsDemuxer {
    /// A partial packet (starts with the sync byte) carried between pushes.
    carry: Vec<u8>,
    /// Skipping bytes to find a sync byte: how many so far in this run.
    skipping: Option<usize>,
    pat: Section,
    program: Option<u16>,
    pmt_pid: Option<u16>,
    pmt: Section,
    /// Boxed: every packet takes its stream out and puts it back (a pointer moved, not the
    /// struct).
    video: Option<Box<Stream>>,
    audio: Option<Box<Stream>>,
    clock: Clock,
    frames: VecDeque<Frame>,
    errors: VecDeque<TsError>,
    stats: Stats,
}

impl TsDemuxer {
    pub fn new() -> TsDemuxer {
        TsDemuxer::default()
    }

    /// Reads bytes, split anywhere (mid-packet included). Frames and errors queue up for
    /// `poll_frame`/`poll_error`; the demuxer holds at most one partial packet of input, one PES
    /// per stream and the frames this call produced.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if !self.carry.is_empty() {
                let take = (PACKET_LEN - self.carry.len()).min(data.len());
                self.carry.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.carry.len() == PACKET_LEN {
                    let packet = std::mem::take(&mut self.carry);
                    self.packet(&packet);
                    self.carry = packet;
                    self.carry.clear();
                }
                continue;
            }
            if data[0] != SYNC {
                // Out of sync: skip to the next sync byte in what we were given.
                let skip = data.iter().position(|&b| b == SYNC).unwrap_or(data.len());
                *self.skipping.get_or_insert(0) += skip;
                self.stats.skipped_bytes += skip as u64;
                data = &data[skip..];
                continue;
            }
            if let Some(skipped) = self.skipping.take() {
                self.error(TsError::LostSync { skipped });
            }
            if data.len() < PACKET_LEN {
                self.carry.extend_from_slice(data);
                return;
            }
            let (packet, rest) = data.split_at(PACKET_LEN);
            self.packet(packet);
            data = rest;
        }
    }

    /// End of stream: a PES waiting for the next unit start to end (video with length 0) is
    /// complete now. A partial packet is dropped.
    pub fn flush(&mut self) {
        self.carry.clear();
        if let Some(skipped) = self.skipping.take() {
            self.error(TsError::LostSync { skipped });
        }
        for video in [true, false] {
            let Some(mut s) = self.take_stream(video) else {
                continue;
            };
            if s.collecting {
                s.collecting = false;
                self.finish_pes(&mut s);
            }
            self.put_stream(video, s);
        }
    }

    /// A live stream ended and may have been cut anywhere (an SRT caller in live mode drops what
    /// it has not sent when it closes): an unbounded PES (video) still being collected is taken
    /// only when its last packet was padded, the mark of a PES's end; else it is dropped rather
    /// than passed on as a cut picture. Bounded PES end by themselves; a cut ADTS frame is
    /// dropped by its length check.
    pub fn end_live(&mut self) {
        if let Some(s) = self.video.as_mut().filter(|s| !s.stuffed) {
            s.collecting = false;
            s.pes.clear();
        }
        self.flush();
    }

    /// The next frame, in stream order.
    #[must_use]
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// The next error to log (the first `MAX_QUEUED_ERRORS` not yet polled; `Stats::errors`
    /// counts every one).
    #[must_use]
    pub fn poll_error(&mut self) -> Option<TsError> {
        self.errors.pop_front()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn error(&mut self, e: TsError) {
        self.stats.errors += 1;
        if self.errors.len() < MAX_QUEUED_ERRORS {
            self.errors.push_back(e);
        }
    }

    fn take_stream(&mut self, video: bool) -> Option<Box<Stream>> {
        if video {
            self.video.take()
        } else {
            self.audio.take()
        }
    }

    fn put_stream(&mut self, video: bool, s: Box<Stream>) {
        if video {
            self.video = Some(s);
        } else {
            self.audio = Some(s);
        }
    }

    /// One 188-byte packet starting with the sync byte.
    fn packet(&mut self, p: &[u8]) {
        self.stats.packets += 1;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        if p[1] & 0x80 != 0 {
            self.error(TsError::TransportError { pid });
            return;
        }
        if pid == PID_NULL {
            return;
        }
        let unit_start = p[1] & 0x40 != 0;
        let control = (p[3] >> 4) & 3;
        let cc = p[3] & 0x0f;
        let mut at = 4;
        let mut discontinuity = false;
        let mut stuffed = false;
        if control & 2 != 0 {
            let len = usize::from(p[4]);
            if 5 + len > PACKET_LEN {
                self.error(TsError::BadAdaptationField { pid });
                return;
            }
            discontinuity = len > 0 && p[5] & 0x80 != 0;
            stuffed = len == 0 || p[4 + len] == 0xff && len > adaptation_needs(p[5]);
            at = 5 + len;
        }
        if control & 1 == 0 {
            // No payload: the continuity counter does not move.
            return;
        }
        let payload = &p[at..];
        if pid == PID_PAT {
            let mut sec = std::mem::take(&mut self.pat);
            self.psi(&mut sec, pid, unit_start, cc, discontinuity, payload);
            self.pat = sec;
        } else if Some(pid) == self.pmt_pid {
            let mut sec = std::mem::take(&mut self.pmt);
            self.psi(&mut sec, pid, unit_start, cc, discontinuity, payload);
            self.pmt = sec;
        } else {
            for video in [true, false] {
                let Some(mut s) = self.take_stream(video) else {
                    continue;
                };
                if s.pid == pid {
                    s.stuffed = stuffed;
                    self.es_packet(&mut s, unit_start, cc, discontinuity, payload);
                }
                self.put_stream(video, s);
            }
        }
    }

    /// Checks a continuity counter: `Some(lost)` for a packet to use, `None` for a duplicate.
    fn continuity(last: &mut Option<u8>, cc: u8, discontinuity: bool) -> Option<bool> {
        let prev = last.replace(cc);
        match prev {
            Some(p) if !discontinuity && p == cc => None,
            Some(p) if !discontinuity => Some(cc != (p + 1) & 0x0f),
            _ => Some(false),
        }
    }

    fn psi(
        &mut self,
        sec: &mut Section,
        pid: u16,
        unit_start: bool,
        cc: u8,
        discontinuity: bool,
        payload: &[u8],
    ) {
        let Some(lost) = Self::continuity(&mut sec.cc, cc, discontinuity) else {
            return;
        };
        if lost && sec.active {
            sec.active = false;
            sec.buf.clear();
            self.error(TsError::Continuity { pid });
        }
        if unit_start {
            let Some((&pointer, rest)) = payload.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            let Some(tail) = rest.get(..pointer) else {
                self.error(TsError::BadSection { pid });
                sec.active = false;
                sec.buf.clear();
                return;
            };
            if sec.active {
                sec.buf.extend_from_slice(tail);
                self.sections(sec, pid);
            }
            sec.buf.clear();
            sec.buf.extend_from_slice(&rest[pointer..]);
            sec.active = true;
        } else if sec.active {
            sec.buf.extend_from_slice(payload);
        }
        self.sections(sec, pid);
    }

    /// Handles every complete section at the front of `sec.buf`.
    fn sections(&mut self, sec: &mut Section, pid: u16) {
        while sec.active && sec.buf.len() >= 3 {
            if sec.buf[0] == 0xff {
                // Stuffing: nothing more in this packet.
                sec.active = false;
                sec.buf.clear();
                return;
            }
            let len = 3 + ((usize::from(sec.buf[1] & 0x0f) << 8) | usize::from(sec.buf[2]));
            if len > MAX_SECTION {
                self.error(TsError::BadSection { pid });
                sec.active = false;
                sec.buf.clear();
                return;
            }
            if sec.buf.len() < len {
                return;
            }
            let section: Vec<u8> = sec.buf.drain(..len).collect();
            if !self.section(pid, &section) {
                self.error(TsError::BadSection { pid });
            }
        }
    }

    /// One complete section (CRC included); false when it is bad.
    fn section(&mut self, pid: u16, s: &[u8]) -> bool {
        // Long form: table_id, length (2), id (2), version (1), numbers (2), ..., CRC (4).
        if s.len() < 12 || s[1] & 0x80 == 0 || crc32_mpeg2(s) != 0 {
            return false;
        }
        if s[5] & 1 == 0 {
            // Not yet current: ignored.
            return true;
        }
        let body = &s[8..s.len() - 4];
        match (pid, s[0]) {
            (PID_PAT, 0x00) => {
                self.pat(body);
                true
            }
            (PID_PAT, _) => false,
            (_, 0x02) => self.pmt(u16::from_be_bytes([s[3], s[4]]), body),
            // Other tables on the PMT PID (none are defined) are not ours.
            _ => true,
        }
    }

    fn pat(&mut self, body: &[u8]) {
        let first = body
            .chunks_exact(4)
            .map(|e| {
                let number = u16::from_be_bytes([e[0], e[1]]);
                (number, (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]))
            })
            // Program 0 names the network PID, not a program.
            .find(|&(number, _)| number != 0);
        if let Some((number, pid)) = first {
            if self.pmt_pid != Some(pid) || self.program != Some(number) {
                self.pmt_pid = Some(pid);
                self.program = Some(number);
                self.pmt = Section::default();
            }
        }
    }

    /// A PMT section body (after the 8-byte header, before the CRC); false when malformed.
    fn pmt(&mut self, number: u16, body: &[u8]) -> bool {
        if Some(number) != self.program {
            // Another program sharing the PID: not ours.
            return true;
        }
        if body.len() < 4 {
            return false;
        }
        let info_len = (usize::from(body[2] & 0x0f) << 8) | usize::from(body[3]);
        let Some(mut rest) = body.get(4 + info_len..) else {
            return false;
        };
        let (mut video, mut audio) = (None, None);
        while !rest.is_empty() {
            let [ty, p0, p1, l0, l1, tail @ ..] = rest else {
                return false;
            };
            let pid = (u16::from(p0 & 0x1f) << 8) | u16::from(*p1);
            let len = (usize::from(l0 & 0x0f) << 8) | usize::from(*l1);
            let Some(descriptors) = tail.get(..len) else {
                return false;
            };
            rest = &tail[len..];
            let Some(kind) = Kind::from_pmt(*ty, descriptors) else {
                continue;
            };
            let slot = if kind.is_video() {
                &mut video
            } else {
                &mut audio
            };
            if slot.is_none() && pid != PID_PAT && pid != PID_NULL {
                *slot = Some((pid, kind));
            }
        }
        for (is_video, found) in [(true, video), (false, audio)] {
            let current = if is_video { &self.video } else { &self.audio };
            let same = matches!((current, found), (Some(s), Some((pid, kind))) if s.pid == pid && s.kind == kind);
            if !same {
                let s = found.map(|(pid, kind)| Box::new(Stream::new(pid, kind)));
                if is_video {
                    self.video = s;
                } else {
                    self.audio = s;
                }
            }
        }
        true
    }

    fn es_packet(
        &mut self,
        s: &mut Stream,
        unit_start: bool,
        cc: u8,
        discontinuity: bool,
        payload: &[u8],
    ) {
        let Some(lost) = Self::continuity(&mut s.cc, cc, discontinuity) else {
            return;
        };
        if lost {
            self.error(TsError::Continuity { pid: s.pid });
            s.collecting = false;
            s.pes.clear();
        }
        if unit_start {
            if s.collecting {
                s.collecting = false;
                self.finish_pes(s);
            }
            s.pes.clear();
            s.collecting = true;
        } else if !s.collecting {
            return;
        }
        if s.pes.len() + payload.len() > s.kind.max_pes() {
            self.error(TsError::PesTooLarge { pid: s.pid });
            s.collecting = false;
            s.pes.clear();
            return;
        }
        s.pes.extend_from_slice(payload);
        // A PES that says how long it is ends as soon as it is all here.
        if s.pes.len() >= 6 {
            let declared = usize::from(u16::from_be_bytes([s.pes[4], s.pes[5]]));
            if declared != 0 && s.pes.len() >= 6 + declared {
                s.pes.truncate(6 + declared);
                s.collecting = false;
                self.finish_pes(s);
            }
        }
    }

    /// A PES has ended (collecting already false): checks it and turns it into frames.
    fn finish_pes(&mut self, s: &mut Stream) {
        let pes = std::mem::take(&mut s.pes);
        match parse_pes(&pes) {
            Some((pts, dts, start)) => {
                let dts = self.clock.ticks(dts.unwrap_or(pts));
                let pts = self.clock.ticks(pts);
                self.access_unit(s, &pes[start..], pts, dts);
            }
            None => self.error(TsError::BadPes { pid: s.pid }),
        }
        s.pes = pes;
        s.pes.clear();
    }

    fn access_unit(&mut self, s: &mut Stream, es: &[u8], pts: i64, dts: i64) {
        match s.kind {
            Kind::H264 | Kind::Hevc => self.video_au(s, es, pts, dts),
            Kind::Aac => self.adts(s, es, pts),
            Kind::Mp3 => self.mpeg_audio(s, es, pts),
            Kind::Ac3 | Kind::Eac3 => self.ac3(s, es, pts),
            Kind::Opus { channels } => self.opus(s, es, pts, channels),
        }
    }

    fn emit(&mut self, tag: u8, ticks: i64, body: Vec<u8>) {
        // RTMP time is 32-bit milliseconds and wraps; the normaliser unwraps it.
        let dts = ms(ticks) as u32;
        if let Some(f) = Frame::parse(tag, dts, Bytes::from(body)) {
            self.stats.frames += 1;
            self.frames.push_back(f);
        }
    }

    fn video_au(&mut self, s: &mut Stream, es: &[u8], pts: i64, dts: i64) {
        let hevc = s.kind == Kind::Hevc;
        // The tag body is built in place: its header first (the frame type byte is set once the
        // NAL units have said whether this is a keyframe), then the NAL units with their lengths.
        let cts = cts24(ms(pts) - ms(dts));
        let mut body = Vec::with_capacity(8 + es.len() + 16);
        if hevc {
            // CodedFramesX (no composition time) when PTS = DTS, as FFmpeg writes them.
            body.push(if cts == [0; 3] { 3 } else { 1 });
            body.extend_from_slice(b"hvc1");
            if cts != [0; 3] {
                body.extend_from_slice(&cts);
            }
        } else {
            body.extend_from_slice(&[0, 1, cts[0], cts[1], cts[2]]);
        }
        let header_len = body.len();
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut key = false;
        for nal in annex_b(es) {
            let (ty, sets) = if hevc {
                let t = hevc::nal_type(nal);
                let sets = match t {
                    hevc::NAL_VPS => Some(&mut vps),
                    hevc::NAL_SPS => Some(&mut sps),
                    hevc::NAL_PPS => Some(&mut pps),
                    _ => None,
                };
                key |= hevc::is_irap(t);
                (t, sets)
            } else {
                let t = avc::nal_type(nal);
                let sets = match t {
                    avc::NAL_SPS => Some(&mut sps),
                    avc::NAL_PPS => Some(&mut pps),
                    _ => None,
                };
                key |= t == avc::NAL_IDR;
                (t, sets)
            };
            if let Some(sets) = sets {
                if sets.len() < MAX_PARAM_SETS && nal.len() <= usize::from(u16::MAX) {
                    sets.push(nal);
                }
                continue;
            }
            // Delimiters mean nothing in AVCC, and filler data (CBR encoders send a lot) is waste.
            let (aud, filler) = if hevc {
                (hevc::NAL_AUD, NAL_HEVC_FILLER)
            } else {
                (avc::NAL_AUD, NAL_AVC_FILLER)
            };
            if ty == aud || ty == filler {
                continue;
            }
            body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            body.extend_from_slice(nal);
        }
        for (new, cur) in [(vps, &mut s.vps), (sps, &mut s.sps), (pps, &mut s.pps)] {
            if !new.is_empty() && new.iter().map(|n| &n[..]).ne(cur.iter().map(|n| &n[..])) {
                *cur = new.into_iter().map(Bytes::copy_from_slice).collect();
                s.sets_changed = true;
            }
        }
        if s.sets_changed && !s.sps.is_empty() && !s.pps.is_empty() {
            s.sets_changed = false;
            let record = if hevc {
                hevc_record(&s.vps, &s.sps, &s.pps).map(|r| enhanced_video(0x90, 0, None, &r))
            } else {
                avc_record(&s.sps, &s.pps).map(|r| {
                    let mut b = vec![0x17, 0, 0, 0, 0];
                    b.extend_from_slice(&r);
                    b
                })
            };
            match record {
                Some(b) if s.config.as_deref() != Some(&b[..]) => {
                    s.config = Some(Bytes::copy_from_slice(&b));
                    self.emit(TAG_VIDEO, dts, b);
                }
                Some(_) => {}
                None => self.error(TsError::BadAccessUnit { pid: s.pid }),
            }
        }
        if body.len() == header_len {
            return;
        }
        if s.config.is_none() || !(s.started || key) {
            self.stats.dropped_before_key += 1;
            return;
        }
        s.started = true;
        body[0] |= match (hevc, key) {
            (true, true) => 0x90,
            (true, false) => 0xa0,
            (false, true) => 0x17,
            (false, false) => 0x27,
        };
        self.emit(TAG_VIDEO, dts, body);
    }

    /// Sends `asc`/`head` as the stream's config frame when it differs from the last one.
    fn audio_config(&mut self, s: &mut Stream, ticks: i64, body: Vec<u8>) {
        if s.config.as_deref() != Some(&body[..]) {
            s.config = Some(Bytes::copy_from_slice(&body));
            self.emit(TAG_AUDIO, ticks, body);
        }
    }

    fn adts(&mut self, s: &mut Stream, es: &[u8], pts: i64) {
        let mut pos = 0;
        let mut samples = 0u64;
        while pos < es.len() {
            let h = &es[pos..];
            let Some(f) = AdtsFrame::parse(h) else {
                self.error(TsError::BadAccessUnit { pid: s.pid });
                return;
            };
            let t = pts + at_rate(samples, f.rate);
            let asc = f.audio_specific_config();
            self.audio_config(s, t, vec![0xaf, 0, asc[0], asc[1]]);
            let raw = &h[f.header_len..f.len];
            if !raw.is_empty() {
                let mut body = Vec::with_capacity(2 + raw.len());
                body.extend_from_slice(&[0xaf, 1]);
                body.extend_from_slice(raw);
                self.emit(TAG_AUDIO, t, body);
            }
            samples += u64::from(f.samples);
            pos += f.len;
        }
    }

    fn mpeg_audio(&mut self, s: &mut Stream, es: &[u8], pts: i64) {
        let mut pos = 0;
        let mut samples = 0u64;
        while pos < es.len() {
            let h = mp3::FrameHeader::parse(&es[pos..]);
            let Some(h) = h.filter(|h| h.frame_len >= 4 && pos + h.frame_len <= es.len()) else {
                self.error(TsError::BadAccessUnit { pid: s.pid });
                return;
            };
            if h.layer != 3 {
                self.error(TsError::UnsupportedCodec { pid: s.pid });
                return;
            }
            let rate_bits = match h.sample_rate {
                44_100.. => 3,
                22_050.. => 2,
                11_025.. => 1,
                _ => 0,
            };
            let lead = 0x20 | (rate_bits << 2) | 0x02 | u8::from(h.channels == 2);
            let mut body = Vec::with_capacity(1 + h.frame_len);
            body.push(lead);
            body.extend_from_slice(&es[pos..pos + h.frame_len]);
            self.emit(TAG_AUDIO, pts + at_rate(samples, h.sample_rate), body);
            samples += u64::from(h.samples);
            pos += h.frame_len;
        }
    }

    fn ac3(&mut self, s: &mut Stream, es: &[u8], pts: i64) {
        let mut pos = 0;
        let mut samples = 0u64;
        while pos < es.len() {
            let f = ac3::SyncFrame::parse(&es[pos..])
                .filter(|f| f.frame_len >= 6 && pos + f.frame_len <= es.len());
            let Some(f) = f else {
                self.error(TsError::BadAccessUnit { pid: s.pid });
                return;
            };
            let mut len = f.frame_len;
            if f.enhanced {
                // Dependent substreams belong to the access unit of the independent one before.
                while let Some(d) = es.get(pos + len..).and_then(eac3_dependent_len) {
                    if pos + len + d > es.len() {
                        break;
                    }
                    len += d;
                }
            }
            let mut body = Vec::with_capacity(5 + len);
            body.push(0x91);
            body.extend_from_slice(if f.enhanced { b"ec-3" } else { b"ac-3" });
            body.extend_from_slice(&es[pos..pos + len]);
            self.emit(TAG_AUDIO, pts + at_rate(samples, f.sample_rate), body);
            samples += u64::from(f.samples);
            pos += len;
        }
    }

    fn opus(&mut self, s: &mut Stream, es: &[u8], pts: i64, channels: u8) {
        let mut pos = 0;
        let mut samples = 0u64;
        while pos < es.len() {
            let Some((packet, start_trim, next)) = opus_access_unit(es, pos) else {
                self.error(TsError::BadAccessUnit { pid: s.pid });
                return;
            };
            let t = pts + at_rate(samples, opus::SAMPLE_RATE);
            if s.config.is_none() {
                let mut body = vec![0x90];
                body.extend_from_slice(b"Opus");
                body.extend_from_slice(&opus_head(channels, start_trim.unwrap_or(0)));
                self.audio_config(s, t, body);
            }
            let mut body = Vec::with_capacity(5 + packet.len());
            body.push(0x91);
            body.extend_from_slice(b"Opus");
            body.extend_from_slice(packet);
            self.emit(TAG_AUDIO, t, body);
            samples += u64::from(opus::packet_samples(packet).unwrap_or(960));
            pos = next;
        }
    }
}

/// `samples` at `rate` Hz in 90 kHz ticks.
/// The adaptation-field bytes (after its length byte) its flags ask for: the flags byte, PCR,
/// OPCR, splice countdown; private data and extensions count as all the rest (no stuffing seen).
fn adaptation_needs(flags: u8) -> usize {
    if flags & 0x03 != 0 {
        return usize::MAX;
    }
    1 + 6 * usize::from(flags & 0x10 != 0)
        + 6 * usize::from(flags & 0x08 != 0)
        + usize::from(flags & 0x04 != 0)
}

fn at_rate(samples: u64, rate: u32) -> i64 {
    (samples * 90_000 / u64::from(rate.max(1))) as i64
}

/// A signed 24-bit big-endian composition time, clamped.
fn cts24(ms: i64) -> [u8; 3] {
    let v = ms.clamp(-0x80_0000, 0x7f_ffff) as i32 as u32;
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// An Enhanced RTMP `hvc1` video tag body.
pub(crate) fn enhanced_video(
    frame_type: u8,
    packet_type: u8,
    cts: Option<[u8; 3]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + payload.len());
    b.push(frame_type | packet_type);
    b.extend_from_slice(b"hvc1");
    if let Some(c) = cts {
        b.extend_from_slice(&c);
    }
    b.extend_from_slice(payload);
    b
}

/// The PES header: (PTS, DTS when present, where the payload starts). `None` when malformed or
/// without a PTS (a frame we could not place in time).
fn parse_pes(pes: &[u8]) -> Option<(u64, Option<u64>, usize)> {
    if pes.len() < 9 || pes[..3] != [0, 0, 1] || pes[6] & 0xc0 != 0x80 {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
    if declared != 0 && pes.len() < 6 + declared {
        return None;
    }
    let flags = pes[7] >> 6;
    let start = 9 + usize::from(pes[8]);
    let need = match flags {
        2 => 14,
        3 => 19,
        _ => return None,
    };
    if start < need || start > pes.len() {
        return None;
    }
    let pts = timestamp(&pes[9..14]);
    let dts = (flags == 3).then(|| timestamp(&pes[14..19]));
    Some((pts, dts, start))
}

/// A 33-bit PTS/DTS from its 5 bytes (marker bits ignored).
fn timestamp(b: &[u8]) -> u64 {
    (u64::from((b[0] >> 1) & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// The NAL units of an Annex B byte stream (start codes and trailing zero bytes removed).
pub(crate) fn annex_b(es: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start_code(es, 0).map(|s| s + 3);
    std::iter::from_fn(move || loop {
        let start = pos?;
        let next = find_start_code(es, start);
        let end = next.unwrap_or(es.len());
        pos = next.map(|n| n + 3);
        let mut nal = &es[start..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

/// Where the next 00 00 01 at or after `from` starts. `memchr` finds the candidate 01 bytes (rare
/// in coded video) many bytes at a time.
fn find_start_code(es: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= es.len() {
        let one = i + 2 + memchr::memchr(1, &es[i + 2..])?;
        if es[one - 1] == 0 && es[one - 2] == 0 {
            return Some(one - 2);
        }
        i = one - 1;
    }
    None
}

/// An AVCDecoderConfigurationRecord (4-byte lengths) from SPS and PPS NAL units.
pub(crate) fn avc_record(sps: &[Bytes], pps: &[Bytes]) -> Option<Vec<u8>> {
    let first = sps.first().filter(|s| s.len() >= 4)?;
    let mut r = vec![
        1,
        first[1],
        first[2],
        first[3],
        0xff,
        0xe0 | sps.len() as u8,
    ];
    for s in sps {
        r.extend_from_slice(&(s.len() as u16).to_be_bytes());
        r.extend_from_slice(s);
    }
    r.push(pps.len() as u8);
    for p in pps {
        r.extend_from_slice(&(p.len() as u16).to_be_bytes());
        r.extend_from_slice(p);
    }
    Some(r)
}

/// What an HEVCDecoderConfigurationRecord takes from the SPS.
struct HevcSpsInfo {
    /// general_profile_space .. general_level_idc: the 12 bytes of the general profile_tier_level.
    ptl: [u8; 12],
    sub_layers: u8,
    temporal_id_nested: bool,
    chroma_format: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
}

/// Reads the SPS (2-byte NAL header included) up to the bit depths.
fn hevc_sps_info(sps: &[u8]) -> Option<HevcSpsInfo> {
    let rbsp = avc::unescape(sps.get(2..)?);
    let mut ptl = [0u8; 12];
    ptl.copy_from_slice(rbsp.get(1..13)?);
    let mut b = BitReader::new(&rbsp);
    b.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits(3)? as usize;
    let temporal_id_nested = b.bit()?;
    b.bits(32)?;
    b.bits(32)?;
    b.bits(32)?;
    let mut sub_profile = [false; 8];
    let mut sub_level = [false; 8];
    for i in 0..max_sub_layers_minus1 {
        sub_profile[i] = b.bit()?;
        sub_level[i] = b.bit()?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            b.bits(2)?;
        }
    }
    for i in 0..max_sub_layers_minus1 {
        if sub_profile[i] {
            b.bits(32)?;
            b.bits(32)?;
            b.bits(24)?;
        }
        if sub_level[i] {
            b.bits(8)?;
        }
    }
    b.ue()?; // sps_seq_parameter_set_id
    let chroma_format = b.ue()?;
    if chroma_format == 3 {
        b.bit()?; // separate_colour_plane_flag
    }
    b.ue()?; // pic_width_in_luma_samples
    b.ue()?; // pic_height_in_luma_samples
    if b.bit()? {
        for _ in 0..4 {
            b.ue()?; // conformance window offsets
        }
    }
    let luma = b.ue()?;
    let chroma = b.ue()?;
    if chroma_format > 3 || luma > 8 || chroma > 8 {
        return None;
    }
    Some(HevcSpsInfo {
        ptl,
        sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nested,
        chroma_format: chroma_format as u8,
        bit_depth_luma_minus8: luma as u8,
        bit_depth_chroma_minus8: chroma as u8,
    })
}

/// An HEVCDecoderConfigurationRecord (4-byte lengths, complete arrays) from VPS, SPS and PPS.
pub(crate) fn hevc_record(vps: &[Bytes], sps: &[Bytes], pps: &[Bytes]) -> Option<Vec<u8>> {
    let info = hevc_sps_info(sps.first()?)?;
    let mut r = vec![1];
    r.extend_from_slice(&info.ptl);
    r.extend_from_slice(&[
        0xf0, // min_spatial_segmentation_idc 0
        0x00,
        0xfc, // parallelismType 0
        0xfc | info.chroma_format,
        0xf8 | info.bit_depth_luma_minus8,
        0xf8 | info.bit_depth_chroma_minus8,
        0, // avgFrameRate 0
        0,
        (info.sub_layers << 3) | (u8::from(info.temporal_id_nested) << 2) | 3,
    ]);
    let arrays = [
        (hevc::NAL_VPS, vps),
        (hevc::NAL_SPS, sps),
        (hevc::NAL_PPS, pps),
    ];
    r.push(arrays.iter().filter(|(_, a)| !a.is_empty()).count() as u8);
    for (ty, units) in arrays {
        if units.is_empty() {
            continue;
        }
        r.push(0x80 | ty);
        r.extend_from_slice(&(units.len() as u16).to_be_bytes());
        for u in units {
            r.extend_from_slice(&(u.len() as u16).to_be_bytes());
            r.extend_from_slice(u);
        }
    }
    Some(r)
}

/// One ADTS frame header.
struct AdtsFrame {
    /// object type - 1 (0 Main, 1 LC, 2 SSR, 3 LTP).
    profile: u8,
    rate_index: u8,
    rate: u32,
    channels: u8,
    header_len: usize,
    /// The whole frame, header included.
    len: usize,
    samples: u32,
}

impl AdtsFrame {
    /// The frame at the start of `b`, when it is whole.
    fn parse(b: &[u8]) -> Option<AdtsFrame> {
        let h = b.get(..7)?;
        if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
            return None;
        }
        let rate_index = (h[2] >> 2) & 0x0f;
        let rate = *crate::media::aac::SAMPLE_RATES.get(usize::from(rate_index))?;
        let header_len = if h[1] & 1 != 0 { 7 } else { 9 };
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        if len < header_len || len > b.len() {
            return None;
        }
        Some(AdtsFrame {
            profile: h[2] >> 6,
            rate_index,
            rate,
            channels: ((h[2] & 1) << 2) | (h[3] >> 6),
            header_len,
            len,
            samples: crate::media::aac::SAMPLES_PER_FRAME * (u32::from(h[6] & 3) + 1),
        })
    }

    /// The 2-byte AudioSpecificConfig ADTS implies.
    fn audio_specific_config(&self) -> [u8; 2] {
        let object_type = self.profile + 1;
        [
            (object_type << 3) | (self.rate_index >> 1),
            ((self.rate_index & 1) << 7) | (self.channels << 3),
        ]
    }
}

/// The length of an E-AC-3 dependent substream frame at the start of `b`, if one is there.
fn eac3_dependent_len(b: &[u8]) -> Option<usize> {
    let h = b.get(..6)?;
    let strmtyp = h[2] >> 6;
    let bsid = h[5] >> 3;
    if h[..2] != [0x0b, 0x77] || strmtyp != 1 || !(11..=16).contains(&bsid) {
        return None;
    }
    Some((((usize::from(h[2] & 0x07) << 8) | usize::from(h[3])) + 1) * 2)
}

/// One Opus access unit at `pos` (the Opus-in-MPEG-TS mapping: 0x7FE0 control header,
/// 0xFF-run size, optional trims and extension): (packet, start trim, where the next starts).
fn opus_access_unit(es: &[u8], mut pos: usize) -> Option<(&[u8], Option<u16>, usize)> {
    let h = es.get(pos..pos + 2)?;
    if h[0] != 0x7f || h[1] & 0xe0 != 0xe0 {
        return None;
    }
    let flags = h[1];
    pos += 2;
    let mut size = 0usize;
    loop {
        let b = *es.get(pos)?;
        pos += 1;
        size += usize::from(b);
        if b != 0xff {
            break;
        }
    }
    let mut start_trim = None;
    if flags & 0x10 != 0 {
        let t = es.get(pos..pos + 2)?;
        start_trim = Some(u16::from_be_bytes([t[0], t[1]]) & 0x1fff);
        pos += 2;
    }
    if flags & 0x08 != 0 {
        pos += 2;
    }
    if flags & 0x04 != 0 {
        pos += 1 + usize::from(*es.get(pos)?);
    }
    let end = pos.checked_add(size)?;
    let packet = es.get(pos..end)?;
    if packet.is_empty() {
        return None;
    }
    Some((packet, start_trim, end))
}

/// The OpusHead for a TS Opus stream: family 0 up to stereo, else family 1 in the Vorbis order
/// (the channel maps of the TS Opus specification).
pub(crate) fn opus_head(channels: u8, pre_skip: u16) -> Vec<u8> {
    const STREAMS: [u8; 8] = [1, 1, 2, 2, 3, 4, 4, 5];
    const COUPLED: [u8; 8] = [0, 1, 1, 2, 2, 2, 3, 3];
    const MAPS: [&[u8]; 8] = [
        &[0],
        &[0, 1],
        &[0, 2, 1],
        &[0, 1, 2, 3],
        &[0, 4, 1, 2, 3],
        &[0, 4, 1, 2, 3, 5],
        &[0, 4, 1, 2, 3, 5, 6],
        &[0, 6, 1, 2, 3, 4, 5, 7],
    ];
    let i = usize::from(channels.clamp(1, 8) - 1);
    opus::OpusHead {
        channels: channels.clamp(1, 8),
        pre_skip,
        input_sample_rate: opus::SAMPLE_RATE,
        output_gain: 0,
        mapping_family: u8::from(channels > 2),
        stream_count: STREAMS[i],
        coupled_count: COUPLED[i],
        mapping: if channels > 2 {
            MAPS[i].to_vec()
        } else {
            Vec::new()
        },
    }
    .to_id_header()
}

#[cfg(test)]
mod tests;
