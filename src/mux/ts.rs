//! MPEG-TS (ISO/IEC 13818-1) writer for HLS: PAT/PMT with CRC32 (and the AC-3 registration
//! descriptor), PES packets with PTS/DTS, PCR, continuity counters and adaptation-field stuffing,
//! plus the codec framing TS needs (H.264 and H.265 as Annex B with AUD and parameter sets before
//! each random access picture, AAC as ADTS; MP3, AC-3 and E-AC-3 frames go in as they are). Frames in,
//! 188-byte packets out; this module does not decide where segments are cut (see `mux::hls`) nor
//! write files (see `record::hls`).

use crate::media::aac::AudioSpecificConfig;
use crate::media::avc::{self, AvcConfig};
use crate::media::hevc::{self, HevcConfig};
use crate::media::mp3;

pub const PACKET_LEN: usize = 188;
pub const PID_PAT: u16 = 0x0000;
pub const PID_PMT: u16 = 0x1000;
pub const PID_VIDEO: u16 = 0x0100;
pub const PID_AUDIO: u16 = 0x0101;

/// PES stream ids.
const STREAM_ID_VIDEO: u8 = 0xe0;
const STREAM_ID_AUDIO: u8 = 0xc0;
/// private_stream_1: where ATSC (A/52 Annex A) puts AC-3.
const STREAM_ID_PRIVATE_1: u8 = 0xbd;

/// Timestamps are 33-bit at 90 kHz and wrap.
pub const TS_MASK: u64 = (1 << 33) - 1;

/// Elementary stream types in the PMT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    H264 = 0x1b,
    /// AAC in ADTS.
    Aac = 0x0f,
    /// MPEG-1 audio (MP3).
    Mp3 = 0x03,
    /// MPEG-2 audio (MP3 at 16/22.05/24 kHz, and MPEG-2.5).
    Mp2Audio = 0x04,
    /// H.265 / HEVC.
    Hevc = 0x24,
    /// AC-3 (ATSC stream type, with the `AC-3` registration descriptor).
    Ac3 = 0x81,
    /// E-AC-3 (ATSC stream type, with the `EAC3` registration descriptor).
    Eac3 = 0x87,
}

impl StreamType {
    /// The stream type for an MP3 stream, by the MPEG version of its frames.
    pub fn for_mp3(header: &mp3::FrameHeader) -> StreamType {
        match header.version {
            mp3::Version::Mpeg1 => StreamType::Mp3,
            _ => StreamType::Mp2Audio,
        }
    }

    /// The PES stream id its packets carry.
    fn stream_id(self) -> u8 {
        match self {
            StreamType::H264 | StreamType::Hevc => STREAM_ID_VIDEO,
            StreamType::Ac3 | StreamType::Eac3 => STREAM_ID_PRIVATE_1,
            StreamType::Aac | StreamType::Mp3 | StreamType::Mp2Audio => STREAM_ID_AUDIO,
        }
    }

    /// The ES_info descriptors of its PMT entry.
    fn descriptors(self) -> &'static [u8] {
        match self {
            // registration_descriptor (tag 5) with format_identifier "AC-3".
            StreamType::Ac3 => &[0x05, 0x04, b'A', b'C', b'-', b'3'],
            StreamType::Eac3 => &[0x05, 0x04, b'E', b'A', b'C', b'3'],
            _ => &[],
        }
    }
}

/// The elementary streams of the one program a segment carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Program {
    pub video: Option<StreamType>,
    pub audio: Option<StreamType>,
}

impl Program {
    /// The PID carrying the PCR: video when present, else audio.
    pub fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            PID_VIDEO
        } else {
            PID_AUDIO
        }
    }
}

/// Which elementary stream a PES belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Es {
    Video,
    Audio,
}

impl Es {
    fn pid(self) -> u16 {
        match self {
            Es::Video => PID_VIDEO,
            Es::Audio => PID_AUDIO,
        }
    }
}

/// One PES to packetise. Times are 90 kHz ticks (masked to 33 bits when written).
#[derive(Clone, Copy, Debug)]
pub struct Pes<'a> {
    pub es: Es,
    pub pts: u64,
    pub dts: u64,
    /// Marks the first packet as a random access point (keyframe, or any audio frame).
    pub random_access: bool,
    /// The PCR to put in the first packet, when this PES carries one.
    pub pcr: Option<u64>,
    pub payload: &'a [u8],
}

/// Writes packets for one program, keeping the continuity counters across calls (and across
/// segments, so that concatenated segments stay continuous).
#[derive(Debug)]
pub struct TsWriter {
    program: Program,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
}

impl TsWriter {
    pub fn new(program: Program) -> TsWriter {
        TsWriter {
            program,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            cc_audio: 0,
        }
    }

    pub fn program(&self) -> Program {
        self.program
    }

    /// Changes the program (a track appeared); the next tables describe it.
    pub fn set_program(&mut self, program: Program) {
        self.program = program;
    }

    /// Appends a PAT and a PMT packet.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let pat = pat_section();
        let cc = next_cc(&mut self.cc_pat);
        psi_packet(out, PID_PAT, cc, &pat);
        let pmt = pmt_section(&self.program);
        let cc = next_cc(&mut self.cc_pmt);
        psi_packet(out, PID_PMT, cc, &pmt);
    }

    /// Appends the packets of one PES.
    pub fn write_pes(&mut self, out: &mut Vec<u8>, pes: &Pes) {
        let mut header = Vec::with_capacity(19);
        let ty = match pes.es {
            Es::Video => self.program.video,
            Es::Audio => self.program.audio,
        };
        let stream_id = ty.map_or_else(|| default_stream_id(pes.es), StreamType::stream_id);
        pes_header_with_id(&mut header, pes, stream_id);
        let total = header.len() + pes.payload.len();
        let pid = pes.es.pid();
        let mut written = 0usize;
        let mut first = true;
        while written < total {
            let cc = match pes.es {
                Es::Video => next_cc(&mut self.cc_video),
                Es::Audio => next_cc(&mut self.cc_audio),
            };
            let start = out.len();
            out.extend_from_slice(&[
                0x47,
                (if first { 0x40 } else { 0 }) | (pid >> 8) as u8 & 0x1f,
                pid as u8,
                0, // set below once we know whether there is an adaptation field
            ]);
            // The adaptation field: PCR and the random access flag on the first packet, and
            // stuffing on the last packet so that every packet is exactly 188 bytes.
            // Adaptation field bytes after its length byte; on the stack (one per packet).
            let mut af = [0xffu8; PACKET_LEN];
            let mut af_len = 0usize;
            if first && (pes.pcr.is_some() || pes.random_access) {
                af[0] = if pes.random_access { 0x40 } else { 0 };
                af_len = 1;
                if let Some(pcr) = pes.pcr {
                    af[0] |= 0x10;
                    af[1..7].copy_from_slice(&pcr_bytes(pcr));
                    af_len = 7;
                }
            }
            let mut has_af = af_len > 0;
            let room = PACKET_LEN - 4 - if has_af { 1 + af_len } else { 0 };
            let take = (total - written).min(room);
            let mut stuffing = room - take;
            if stuffing > 0 {
                if !has_af {
                    // The length byte alone is a valid adaptation field (one byte of stuffing);
                    // a second byte must be the flags before any 0xff fill.
                    has_af = true;
                    stuffing -= 1;
                    if stuffing > 0 {
                        af[0] = 0;
                        af_len = 1;
                        stuffing -= 1;
                    }
                }
                // af[af_len..] is already 0xff.
                af_len += stuffing;
            }
            out[start + 3] = (if has_af { 0x30 } else { 0x10 }) | cc;
            if has_af {
                out.push(af_len as u8);
                out.extend_from_slice(&af[..af_len]);
            }
            // The payload spans the PES header then the elementary stream bytes.
            let mut pos = written;
            let end = written + take;
            if pos < header.len() {
                let h_end = end.min(header.len());
                out.extend_from_slice(&header[pos..h_end]);
                pos = h_end;
            }
            if pos < end {
                let p0 = pos - header.len();
                out.extend_from_slice(&pes.payload[p0..end - header.len()]);
            }
            debug_assert_eq!(out.len() - start, PACKET_LEN);
            written = end;
            first = false;
        }
    }
}

fn next_cc(cc: &mut u8) -> u8 {
    let v = *cc;
    *cc = (*cc + 1) & 0x0f;
    v
}

/// A PSI packet: pointer field 0, the section, 0xff fill.
fn psi_packet(out: &mut Vec<u8>, pid: u16, cc: u8, section: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | cc, 0]);
    out.extend_from_slice(section);
    out.resize(start + PACKET_LEN, 0xff);
}

/// PAT: transport stream 1, program 1 on `PID_PMT`.
fn pat_section() -> Vec<u8> {
    let mut s = vec![
        0x00, // table_id
        0xb0,
        0x0d, // section_syntax_indicator, length 13
        0x00,
        0x01, // transport_stream_id
        0xc1, // version 0, current
        0x00,
        0x00,
        0x00,
        0x01, // program_number 1
        0xe0 | (PID_PMT >> 8) as u8,
        PID_PMT as u8,
    ];
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

fn pmt_section(program: &Program) -> Vec<u8> {
    let mut streams = Vec::new();
    for (ty, pid) in [(program.video, PID_VIDEO), (program.audio, PID_AUDIO)] {
        if let Some(ty) = ty {
            let d = ty.descriptors();
            streams.extend_from_slice(&[
                ty as u8,
                0xe0 | (pid >> 8) as u8,
                pid as u8,
                0xf0,
                d.len() as u8,
            ]);
            streams.extend_from_slice(d);
        }
    }
    // section_length counts from after the length field to the end of the CRC.
    let len = 9 + streams.len() + 4;
    let pcr = program.pcr_pid();
    let mut s = vec![
        0x02,
        0xb0 | (len >> 8) as u8,
        len as u8,
        0x00,
        0x01, // program_number
        0xc1,
        0x00,
        0x00,
        0xe0 | (pcr >> 8) as u8,
        pcr as u8,
        0xf0,
        0x00, // program_info_length 0
    ];
    s.extend_from_slice(&streams);
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

fn default_stream_id(es: Es) -> u8 {
    match es {
        Es::Video => STREAM_ID_VIDEO,
        Es::Audio => STREAM_ID_AUDIO,
    }
}

/// The PES header with PTS, and DTS when it differs, with the stream id its kind implies.
#[cfg(test)]
fn pes_header(out: &mut Vec<u8>, pes: &Pes) {
    pes_header_with_id(out, pes, default_stream_id(pes.es));
}

/// The PES header with PTS, and DTS when it differs.
fn pes_header_with_id(out: &mut Vec<u8>, pes: &Pes, stream_id: u8) {
    let pts = pes.pts & TS_MASK;
    let dts = pes.dts & TS_MASK;
    let with_dts = pts != dts;
    let header_data = if with_dts { 10 } else { 5 };
    // PES_packet_length counts the bytes after it; 0 ("unbounded") is allowed only for video
    // and is what we use when the length does not fit in 16 bits.
    let len = 3 + header_data + pes.payload.len();
    let len = if len > 0xffff && pes.es == Es::Video {
        0
    } else {
        len.min(0xffff)
    };
    out.extend_from_slice(&[0, 0, 1, stream_id, (len >> 8) as u8, len as u8, 0x80]);
    out.push(if with_dts { 0xc0 } else { 0x80 });
    out.push(header_data as u8);
    write_timestamp(out, if with_dts { 0x3 } else { 0x2 }, pts);
    if with_dts {
        write_timestamp(out, 0x1, dts);
    }
}

fn write_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    out.extend_from_slice(&[
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ]);
}

/// PCR base (90 kHz, 33 bits), 6 reserved bits, extension 0.
fn pcr_bytes(pcr: u64) -> [u8; 6] {
    let base = pcr & TS_MASK;
    [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        ((base as u8 & 1) << 7) | 0x7e,
        0,
    ]
}

/// CRC-32/MPEG-2 (poly 0x04c11db7, init 0xffffffff, no reflection, no final xor).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Builds one H.264 access unit in Annex B from an AVCC payload: an AUD first, then, on a
/// keyframe, the SPS and PPS from `config` unless the frame carries its own. AUDs already in the
/// frame are dropped (ours is the one in front).
pub fn avc_access_unit(payload: &[u8], config: &AvcConfig, key: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 0, 1, avc::NAL_AUD, 0xf0]);
    let nals = || avc::nal_units(payload, config.nal_length_size);
    let has_ps = nals().any(|n| avc::nal_type(n) == avc::NAL_SPS);
    let idr = nals().any(|n| avc::nal_type(n) == avc::NAL_IDR);
    if (key || idr) && !has_ps {
        for ps in config.sps.iter().chain(config.pps.iter()) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(ps);
        }
    }
    for nal in nals() {
        if avc::nal_type(nal) == avc::NAL_AUD {
            continue;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
}

/// The HEVC access unit delimiter: NAL type 35, layer 0, temporal id 1; pic_type 2 (I, P or B
/// slices may follow) and the stop bit.
const HEVC_AUD: [u8; 7] = [0, 0, 0, 1, hevc::NAL_AUD << 1, 0x01, 0x50];

/// Builds one H.265 access unit in Annex B from a length-prefixed payload: an AUD first, then,
/// before an IRAP picture (or on a keyframe), the VPS, SPS and PPS from `config` unless the
/// frame carries its own. AUDs already in the frame are dropped (ours is the one in front).
pub fn hevc_access_unit(payload: &[u8], config: &HevcConfig, key: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(&HEVC_AUD);
    let nals = || avc::nal_units(payload, config.nal_length_size);
    let has_ps = nals().any(|n| hevc::nal_type(n) == hevc::NAL_SPS);
    let irap = nals().any(|n| hevc::is_irap(hevc::nal_type(n)));
    if (key || irap) && !has_ps {
        for ps in config.parameter_sets() {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(ps);
        }
    }
    for nal in nals() {
        if hevc::nal_type(nal) == hevc::NAL_AUD {
            continue;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
}

/// The largest raw AAC frame ADTS can carry: its 13-bit frame_length includes the 7-byte header.
pub const ADTS_MAX_PAYLOAD: usize = 0x1fff - 7;

/// Appends one raw AAC frame with its ADTS header. A frame too long for ADTS's length field
/// (no real AAC frame is) is not written, rather than written with a length that lies: `false`.
pub fn adts_frame(config: &AudioSpecificConfig, raw: &[u8], out: &mut Vec<u8>) -> bool {
    if raw.len() > ADTS_MAX_PAYLOAD {
        return false;
    }
    out.extend_from_slice(&config.adts_header(raw.len()));
    out.extend_from_slice(raw);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn av() -> Program {
        Program {
            video: Some(StreamType::H264),
            audio: Some(StreamType::Aac),
        }
    }

    #[test]
    fn crc_check_value() {
        // The CRC-32/MPEG-2 check value from the CRC catalogue.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn pat_and_pmt_match_ffmpeg() {
        let mut w = TsWriter::new(av());
        let mut out = Vec::new();
        w.write_tables(&mut out);
        assert_eq!(out.len(), 2 * PACKET_LEN);
        // Byte for byte what ffmpeg's mpegts muxer writes for program 1, PMT PID 0x1000,
        // H.264 on 0x100 and AAC on 0x101.
        let pat = [
            0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00,
            0x01, 0xf0, 0x00, 0x2a, 0xb1, 0x04, 0xb2,
        ];
        assert_eq!(&out[..pat.len()], &pat);
        assert!(out[pat.len()..PACKET_LEN].iter().all(|&b| b == 0xff));
        let pmt = [
            0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1,
            0x00, 0xf0, 0x00, 0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00, 0x2f,
            0x44, 0xb9, 0x9b,
        ];
        assert_eq!(&out[PACKET_LEN..PACKET_LEN + pmt.len()], &pmt);
        // Tables again: continuity counters advance.
        out.clear();
        w.write_tables(&mut out);
        assert_eq!(out[3], 0x11);
        assert_eq!(out[PACKET_LEN + 3], 0x11);
    }

    #[test]
    fn audio_only_pmt_puts_pcr_on_audio() {
        let p = Program {
            video: None,
            audio: Some(StreamType::Aac),
        };
        let s = pmt_section(&p);
        assert_eq!(&s[8..10], &[0xe1, 0x01]);
        assert_eq!(s[2] as usize, s.len() - 3);
        assert_eq!(
            crc32_mpeg2(&s[..s.len() - 4]).to_be_bytes(),
            s[s.len() - 4..]
        );
        // A section followed by its CRC has a CRC of 0 over the whole.
        assert_eq!(crc32_mpeg2(&s), 0);
    }

    #[test]
    fn pes_header_with_pts_and_dts() {
        let pes = Pes {
            es: Es::Video,
            pts: 0x1_2345_6789 & TS_MASK,
            dts: 126_000,
            random_access: true,
            pcr: None,
            payload: &[],
        };
        let mut h = Vec::new();
        pes_header(&mut h, &pes);
        assert_eq!(&h[..9], &[0, 0, 1, 0xe0, 0, 13, 0x80, 0xc0, 10]);
        assert_eq!(decode_ts(&h[9..14]), pes.pts);
        assert_eq!(h[9] >> 4, 3);
        assert_eq!(decode_ts(&h[14..19]), 126_000);
        assert_eq!(h[14] >> 4, 1);
        // ffmpeg's first video PES of a B-frame stream: PTS 1.48 s, DTS 1.4 s.
        let mut g = Vec::new();
        write_timestamp(&mut g, 3, 133_200);
        write_timestamp(&mut g, 1, 126_000);
        assert_eq!(
            g,
            [0x31, 0x00, 0x09, 0x10, 0xa1, 0x11, 0x00, 0x07, 0xd8, 0x61]
        );
    }

    #[test]
    fn pes_without_dts_when_equal() {
        let pes = Pes {
            es: Es::Audio,
            pts: 90_000,
            dts: 90_000,
            random_access: true,
            pcr: None,
            payload: &[1, 2, 3],
        };
        let mut h = Vec::new();
        pes_header(&mut h, &pes);
        assert_eq!(&h[..9], &[0, 0, 1, 0xc0, 0, 11, 0x80, 0x80, 5]);
        assert_eq!(h[9] >> 4, 2);
        assert_eq!(decode_ts(&h[9..14]), 90_000);
    }

    fn decode_ts(b: &[u8]) -> u64 {
        (((b[0] as u64 >> 1) & 7) << 30)
            | ((b[1] as u64) << 22)
            | ((b[2] as u64 >> 1) << 15)
            | ((b[3] as u64) << 7)
            | (b[4] as u64 >> 1)
    }

    /// Reassembles the payload of a PID from packets, checking sizes, sync bytes and counters.
    fn depacketise(ts: &[u8], pid: u16) -> (Vec<u8>, Vec<Vec<u8>>) {
        assert_eq!(ts.len() % PACKET_LEN, 0);
        let mut payload = Vec::new();
        let mut afs = Vec::new();
        let mut last_cc: Option<u8> = None;
        for p in ts.chunks(PACKET_LEN) {
            assert_eq!(p[0], 0x47);
            let p_pid = ((p[1] as u16 & 0x1f) << 8) | p[2] as u16;
            if p_pid != pid {
                continue;
            }
            let cc = p[3] & 0x0f;
            if let Some(l) = last_cc {
                assert_eq!(cc, (l + 1) & 0x0f, "continuity");
            }
            last_cc = Some(cc);
            let mut i = 4;
            if p[3] & 0x20 != 0 {
                let n = p[4] as usize;
                afs.push(p[5..5 + n].to_vec());
                i += 1 + n;
            }
            assert!(p[3] & 0x10 != 0);
            payload.extend_from_slice(&p[i..]);
        }
        (payload, afs)
    }

    #[test]
    fn stuffing_for_every_size() {
        // Every payload size around the packet boundaries: packets stay 188 bytes, the payload
        // comes back intact and counters are continuous.
        let mut w = TsWriter::new(av());
        for size in (0..400).chain([65_530, 70_000]) {
            let payload: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            for pcr in [None, Some(1234)] {
                let mut out = Vec::new();
                w.write_pes(
                    &mut out,
                    &Pes {
                        es: Es::Video,
                        pts: 3000,
                        dts: 3000,
                        random_access: pcr.is_some(),
                        pcr,
                        payload: &payload,
                    },
                );
                let (bytes, afs) = depacketise(&out, PID_VIDEO);
                assert_eq!(&bytes[..3], &[0, 0, 1]);
                let hdr = 9 + bytes[8] as usize;
                assert_eq!(&bytes[hdr..], &payload[..], "size {size}");
                if let Some(pcr) = pcr {
                    assert_eq!(afs[0][0], 0x50);
                    let b = &afs[0][1..7];
                    let base = ((b[0] as u64) << 25)
                        | ((b[1] as u64) << 17)
                        | ((b[2] as u64) << 9)
                        | ((b[3] as u64) << 1)
                        | (b[4] as u64 >> 7);
                    assert_eq!(base, pcr);
                }
                // The packet count is the minimum possible.
                let af_extra = if pcr.is_some() { 8 } else { 0 };
                let need = (hdr + size + af_extra).div_ceil(184);
                assert_eq!(out.len() / PACKET_LEN, need, "size {size}");
            }
        }
    }

    #[test]
    fn continuity_counters_are_per_pid() {
        let mut w = TsWriter::new(av());
        let mut out = Vec::new();
        w.write_tables(&mut out);
        for i in 0..40u64 {
            let es = if i % 3 == 0 { Es::Audio } else { Es::Video };
            w.write_pes(
                &mut out,
                &Pes {
                    es,
                    pts: i * 3600,
                    dts: i * 3600,
                    random_access: false,
                    pcr: None,
                    payload: &[0u8; 300],
                },
            );
        }
        depacketise(&out, PID_VIDEO);
        depacketise(&out, PID_AUDIO);
    }

    #[test]
    fn access_unit_gets_aud_and_parameter_sets() {
        let config = AvcConfig {
            profile: 0x42,
            compatibility: 0,
            level: 0x1e,
            nal_length_size: 4,
            sps: vec![bytes::Bytes::from_static(&[0x67, 1])],
            pps: vec![bytes::Bytes::from_static(&[0x68, 2])],
            width: 0,
            height: 0,
        };
        let frame = [0, 0, 0, 2, 0x09, 0x10, 0, 0, 0, 2, 0x65, 0xaa];
        let mut out = Vec::new();
        avc_access_unit(&frame, &config, true, &mut out);
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65,
                0xaa
            ]
        );
        out.clear();
        avc_access_unit(&[0, 0, 0, 2, 0x41, 0xbb], &config, false, &mut out);
        assert_eq!(out, [0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x41, 0xbb]);
        // In-band parameter sets are not doubled.
        out.clear();
        let inband = [0, 0, 0, 2, 0x67, 9, 0, 0, 0, 2, 0x68, 9, 0, 0, 0, 1, 0x65];
        avc_access_unit(&inband, &config, true, &mut out);
        assert_eq!(out.windows(2).filter(|w| w == &[0x67, 1]).count(), 0);
    }

    /// The fuzzer's ts_mux finding: an AAC frame longer than ADTS's 13-bit frame_length was
    /// written with the length capped, so the header lied about the bytes. Now it is refused.
    #[test]
    fn adts_refuses_a_frame_its_length_field_cannot_hold() {
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        let mut out = Vec::new();
        assert!(!adts_frame(&asc, &vec![0; ADTS_MAX_PAYLOAD + 1], &mut out));
        assert!(out.is_empty());
        assert!(adts_frame(&asc, &vec![0; ADTS_MAX_PAYLOAD], &mut out));
        let len = ((out[3] as usize & 3) << 11) | ((out[4] as usize) << 3) | (out[5] as usize >> 5);
        assert_eq!(len, out.len());
    }

    /// The codec_config fuzz target's kept input (fuzz/regressions/codec_config/crash-520164bd...):
    /// 8,220 bytes that parse as an AudioSpecificConfig. The target still expected every frame to
    /// be wrapped; the library refuses it (over ADTS's 13-bit length) and writes nothing.
    #[test]
    fn fuzz_codec_config_crash_520164bd_an_oversized_frame_is_refused_whole() {
        let input = include_bytes!(
            "../../fuzz/regressions/codec_config/crash-520164bd15b2f3c7670ef59f28fea5356b42c3e8"
        );
        let rest = &input[1..];
        let asc = AudioSpecificConfig::parse(rest).unwrap();
        let mut out = Vec::new();
        assert!(rest.len() > ADTS_MAX_PAYLOAD);
        assert!(!adts_frame(&asc, rest, &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn adts_wraps_raw_frame() {
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
        let mut out = Vec::new();
        assert!(adts_frame(&asc, &[1, 2, 3], &mut out));
        assert_eq!(out.len(), 10);
        assert_eq!(&out[..2], &[0xff, 0xf1]);
        assert_eq!(&out[7..], &[1, 2, 3]);
    }

    #[test]
    fn pmt_for_hevc_and_ac3_has_the_registration_descriptor() {
        let p = Program {
            video: Some(StreamType::Hevc),
            audio: Some(StreamType::Ac3),
        };
        let s = pmt_section(&p);
        assert_eq!(&s[12..17], &[0x24, 0xe1, 0x00, 0xf0, 0x00]);
        assert_eq!(
            &s[17..28],
            &[0x81, 0xe1, 0x01, 0xf0, 0x06, 0x05, 0x04, b'A', b'C', b'-', b'3']
        );
        assert_eq!(s[2] as usize, s.len() - 3);
        assert_eq!(crc32_mpeg2(&s), 0);
        let e = pmt_section(&Program {
            video: None,
            audio: Some(StreamType::Eac3),
        });
        assert_eq!(
            &e[12..23],
            &[0x87, 0xe1, 0x01, 0xf0, 0x06, 0x05, 0x04, b'E', b'A', b'C', b'3']
        );
        assert_eq!(StreamType::Eac3.stream_id(), 0xbd);
        // MP3 by MPEG version.
        let h1 = mp3::FrameHeader::parse(&[0xff, 0xfb, 0x90, 0x64]).unwrap();
        let h2 = mp3::FrameHeader::parse(&[0xff, 0xf3, 0x80, 0xc0]).unwrap();
        assert_eq!(StreamType::for_mp3(&h1) as u8, 0x03);
        assert_eq!(StreamType::for_mp3(&h2) as u8, 0x04);
    }

    #[test]
    fn ac3_pes_is_private_stream_1() {
        let mut w = TsWriter::new(Program {
            video: None,
            audio: Some(StreamType::Ac3),
        });
        let mut out = Vec::new();
        let pes = Pes {
            es: Es::Audio,
            pts: 90_000,
            dts: 90_000,
            random_access: true,
            pcr: Some(90_000),
            payload: &[0x0b, 0x77, 1, 2],
        };
        w.write_pes(&mut out, &pes);
        let (payload, _) = depacketise(&out, PID_AUDIO);
        assert_eq!(&payload[..4], &[0, 0, 1, 0xbd]);
        assert!(payload.ends_with(&[0x0b, 0x77, 1, 2]));
        // MPEG audio keeps the audio stream id.
        let mut w = TsWriter::new(Program {
            video: None,
            audio: Some(StreamType::Mp3),
        });
        out.clear();
        w.write_pes(&mut out, &pes);
        assert_eq!(&depacketise(&out, PID_AUDIO).0[..4], &[0, 0, 1, 0xc0]);
    }

    fn hevc_config() -> HevcConfig {
        let mut r = vec![
            0x01, 0x01, 0x60, 0, 0, 0, 0xb0, 0, 0, 0, 0, 0, 93, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0,
            0, 0x0f, 3,
        ];
        for (ty, nal) in [
            (32u8, [0x40u8, 0x01]),
            (33, [0x42, 0x01]),
            (34, [0x44, 0x01]),
        ] {
            r.extend_from_slice(&[0x80 | ty, 0, 1, 0, 2]);
            r.extend_from_slice(&nal);
        }
        HevcConfig::parse(&r).unwrap()
    }

    #[test]
    fn hevc_access_unit_gets_aud_and_parameter_sets_before_irap() {
        let c = hevc_config();
        // An AUD of the encoder's (dropped), then an IDR_W_RADL slice (type 19).
        let idr = [0, 0, 0, 3, 0x46, 0x01, 0x50, 0, 0, 0, 3, 0x26, 0x01, 0xaa];
        let mut out = Vec::new();
        hevc_access_unit(&idr, &c, false, &mut out);
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 0x46, 0x01, 0x50, // our AUD
                0, 0, 0, 1, 0x40, 0x01, 0, 0, 0, 1, 0x42, 0x01, 0, 0, 0, 1, 0x44,
                0x01, // VPS SPS PPS
                0, 0, 0, 1, 0x26, 0x01, 0xaa
            ]
        );
        // A CRA (type 21) is an IRAP too; a TRAIL_R (type 1) is not.
        out.clear();
        hevc_access_unit(&[0, 0, 0, 2, 0x2a, 0x01], &c, false, &mut out);
        assert_eq!(out.len(), 7 + 18 + 6);
        out.clear();
        hevc_access_unit(&[0, 0, 0, 2, 0x02, 0x01], &c, false, &mut out);
        assert_eq!(out, [0, 0, 0, 1, 0x46, 0x01, 0x50, 0, 0, 0, 1, 0x02, 0x01]);
        // In-band parameter sets are not doubled.
        out.clear();
        let inband = [0, 0, 0, 2, 0x42, 0x09, 0, 0, 0, 2, 0x26, 0x01];
        hevc_access_unit(&inband, &c, true, &mut out);
        assert_eq!(
            out,
            [0, 0, 0, 1, 0x46, 0x01, 0x50, 0, 0, 0, 1, 0x42, 0x09, 0, 0, 0, 1, 0x26, 0x01]
        );
    }

    /// Muxes the default-track frames of an FLV fixture into one TS, the way the HLS recorder
    /// frames them (PCR on video, 1 s offset so that B-frame PTS stay positive).
    fn mux_fixture(flv: &[u8]) -> (Vec<u8>, usize, usize) {
        use crate::media::{Codec, Frame, Track};
        use bytes::Bytes;
        let tags = crate::media::enhanced::tests::flv_tags(flv);
        let frames: Vec<Frame> = tags
            .iter()
            .filter_map(|(t, b)| {
                let at = b.as_ptr() as usize - flv.as_ptr() as usize - 11;
                let h = &flv[at..at + 11];
                let dts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
                Frame::parse(*t, dts, Bytes::copy_from_slice(b))
            })
            .filter(|f| f.track != Track::Meta && f.track_id == 0)
            .collect();
        let video = frames
            .iter()
            .find(|f| f.track == Track::Video)
            .map(|f| f.codec);
        let audio_first = frames
            .iter()
            .find(|f| f.track == Track::Audio && !f.config && !f.payload().is_empty());
        let audio = audio_first.map(|f| match f.codec {
            Codec::Aac => StreamType::Aac,
            Codec::Mp3 => StreamType::for_mp3(&mp3::FrameHeader::parse(f.payload()).unwrap()),
            Codec::Ac3 => StreamType::Ac3,
            c => panic!("{c:?}"),
        });
        let program = Program {
            video: video.map(|c| {
                if c == Codec::Hevc {
                    StreamType::Hevc
                } else {
                    StreamType::H264
                }
            }),
            audio,
        };
        let mut w = TsWriter::new(program);
        let mut out = Vec::new();
        w.write_tables(&mut out);
        let (mut hevc_cfg, mut avc_cfg, mut asc) = (None, None, None);
        let (mut nv, mut na) = (0, 0);
        let mut es = Vec::new();
        for f in &frames {
            let p = f.payload();
            if f.config {
                match f.codec {
                    Codec::Hevc => hevc_cfg = HevcConfig::parse(p),
                    Codec::Avc => avc_cfg = AvcConfig::parse(p),
                    Codec::Aac => asc = AudioSpecificConfig::parse(p),
                    _ => {}
                }
                continue;
            }
            es.clear();
            let coded = f.enhanced().and_then(|t| t.first).is_none_or(|t| {
                matches!(
                    t.packet_type,
                    crate::media::enhanced::PacketType::CodedFrames
                        | crate::media::enhanced::PacketType::CodedFramesX
                )
            });
            if !coded || p.is_empty() || (f.codec == Codec::Avc && f.data[1] != 1) {
                continue;
            }
            let e = match f.codec {
                Codec::Hevc => {
                    hevc_access_unit(p, hevc_cfg.as_ref().unwrap(), f.key, &mut es);
                    nv += 1;
                    Es::Video
                }
                Codec::Avc => {
                    avc_access_unit(p, avc_cfg.as_ref().unwrap(), f.key, &mut es);
                    nv += 1;
                    Es::Video
                }
                Codec::Aac => {
                    assert!(adts_frame(asc.as_ref().unwrap(), p, &mut es));
                    na += 1;
                    Es::Audio
                }
                _ => {
                    es.extend_from_slice(p);
                    na += 1;
                    Es::Audio
                }
            };
            let dts = 90_000 + f.dts as u64 * 90;
            let pts = (90_000 + f.pts() * 90) as u64;
            let pcr = (e == Es::Video && f.key).then_some(dts.saturating_sub(9000));
            w.write_pes(
                &mut out,
                &Pes {
                    es: e,
                    pts,
                    dts,
                    random_access: f.key,
                    pcr,
                    payload: &es,
                },
            );
        }
        (out, nv, na)
    }

    #[test]
    #[ignore = "needs FFmpeg 9: sh tools/fetch-ffmpeg.sh, then cargo test -- --ignored ffmpeg9"]
    fn ffmpeg9_decodes_hevc_mp3_ac3_ts() {
        let ffmpeg = crate::testutil::ffmpeg9();
        let dir = std::env::temp_dir().join(format!("rtmpd-ts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, &[u8], &str, &str); 3] = [
            (
                "hevc_aac",
                include_bytes!("../../tests/data/codecs/hevc_aac.flv"),
                "hevc",
                "aac",
            ),
            (
                "h264_mp3",
                include_bytes!("../../tests/data/codecs/h264_mp3.flv"),
                "h264",
                "mp3",
            ),
            (
                "h264_ac3",
                include_bytes!("../../tests/data/codecs/h264_ac3.flv"),
                "h264",
                "ac3",
            ),
        ];
        for (name, flv, vcodec, acodec) in cases {
            let (ts, nv, na) = mux_fixture(flv);
            let path = dir.join(format!("{name}.ts"));
            std::fs::write(&path, &ts).unwrap();
            let out = std::process::Command::new(&ffmpeg)
                .args(["-hide_banner", "-xerror", "-i"])
                .arg(&path)
                .args(["-map", "0", "-f", "framemd5", "-"])
                .output()
                .expect("FFmpeg 9");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{name}: {stderr}");
            assert!(
                stderr.contains(&format!("Video: {vcodec}")),
                "{name}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("Audio: {acodec}")),
                "{name}: {stderr}"
            );
            // -v info prints the stream list; any decoder complaint would show as an error line.
            assert!(!stderr.to_lowercase().contains("error"), "{name}: {stderr}");
            let text = String::from_utf8_lossy(&out.stdout);
            let count = |s: &str| text.lines().filter(|l| l.starts_with(s)).count();
            // framemd5 lines start with the stream index; video is stream 0 (PID 0x100 first).
            assert_eq!((count("0,"), count("1,")), (nv, na), "{name}");
            // Every frame of the source, as FFmpeg 9 counted it when making the fixture.
            let facts = include_str!("../../tests/data/codecs/facts.txt");
            let fact = |k: &str| crate::mux::sample_entry::fact(facts, &format!("{name}.flv.{k}"));
            assert_eq!((nv, na), (fact("frames.0"), fact("frames.1")), "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    #[ignore = "needs FFmpeg 9: sh tools/fetch-ffmpeg.sh, then cargo test -- --ignored ffmpeg9"]
    fn ffmpeg9_decodes_eac3_ts() {
        let ffmpeg = crate::testutil::ffmpeg9();
        let dir = std::env::temp_dir().join(format!("rtmpd-ts-eac3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = crate::testutil::eac3_from_ffmpeg9();
        let mut w = TsWriter::new(Program {
            video: None,
            audio: Some(StreamType::Eac3),
        });
        let mut out = Vec::new();
        w.write_tables(&mut out);
        let (mut pos, mut n, mut t) = (0, 0, 90_000u64);
        while pos < data.len() {
            let f = crate::media::ac3::SyncFrame::parse(&data[pos..]).unwrap();
            let pes = Pes {
                es: Es::Audio,
                pts: t,
                dts: t,
                random_access: true,
                pcr: Some(t),
                payload: &data[pos..pos + f.frame_len],
            };
            w.write_pes(&mut out, &pes);
            pos += f.frame_len;
            t += f.samples as u64 * 90_000 / f.sample_rate as u64;
            n += 1;
        }
        let path = dir.join("a.ts");
        std::fs::write(&path, &out).unwrap();
        let o = std::process::Command::new(&ffmpeg)
            .args(["-hide_banner", "-xerror", "-i"])
            .arg(&path)
            .args(["-map", "0", "-f", "framemd5", "-"])
            .output()
            .expect("FFmpeg 9");
        let _ = std::fs::remove_dir_all(&dir);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && stderr.contains("Audio: eac3"),
            "{stderr}"
        );
        assert!(!stderr.to_lowercase().contains("error"), "{stderr}");
        let frames = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("0,"))
            .count();
        assert_eq!(frames, n);
    }
}
