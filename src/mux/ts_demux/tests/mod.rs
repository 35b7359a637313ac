//! The TS demuxer's tests, by what they test: `psi` (PAT and PMT), `pes` (PES assembly, its caps,
//! every split point, the end of a live stream), `codecs` (each codec through our muxer and
//! FFmpeg's files, parameter set changes), `timestamps` (the 33-bit wrap, audio timing, the
//! ingest normaliser) and `hostile` (loss, garbage, random and mutated input, fuzz regressions).
//! This file holds what they share: the fixtures (tests/data/ts, tools/make-ts-fixtures.sh) with
//! ffprobe's counts, a TS muxer the way the HLS recorder writes, the round trip, packet builders.

use super::*;
use crate::media::aac::AudioSpecificConfig;
use crate::media::avc::AvcConfig;
use crate::media::hevc::HevcConfig;
use crate::media::{Codec, Normaliser, Track};
use crate::mux::flv_demux::read_all;
use crate::mux::ts::{
    adts_frame, avc_access_unit, hevc_access_unit, Es, Pes, Program, StreamType, TsWriter,
};
use crate::testutil::Rng;

mod codecs;
mod hostile;
mod pes;
mod psi;
mod timestamps;

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Everything a consumer reads from a frame.
type Key = (Track, u32, i32, bool, bool, Codec, Bytes);

fn keys(frames: &[Frame]) -> Vec<Key> {
    frames
        .iter()
        .map(|f| {
            (
                f.track,
                f.dts,
                f.cts,
                f.key,
                f.config,
                f.codec,
                f.data.clone(),
            )
        })
        .collect()
}

/// Feeds `ts` in pieces ending at `cuts`, then flushes; the frames and the demuxer.
fn demux_cuts(ts: &[u8], cuts: &[usize]) -> (Vec<Frame>, TsDemuxer) {
    let mut d = TsDemuxer::new();
    let mut frames = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&ts.len())) {
        d.push(&ts[start..end]);
        start = end;
        while let Some(f) = d.poll_frame() {
            frames.push(f);
        }
    }
    d.flush();
    while let Some(f) = d.poll_frame() {
        frames.push(f);
    }
    (frames, d)
}

fn demux(ts: &[u8]) -> (Vec<Frame>, TsDemuxer) {
    demux_cuts(ts, &[])
}

fn errors(d: &mut TsDemuxer) -> Vec<TsError> {
    std::iter::from_fn(|| d.poll_error()).collect()
}

/// The media frames of one track (configs left out).
fn media(frames: &[Frame], track: Track) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| f.track == track && !f.config)
        .collect()
}

/// The default-track audio/video frames of an FLV fixture that TS carries: no metadata, no AVC
/// end-of-sequence, no Enhanced RTMP metadata or multichannel config.
fn flv_frames(flv: &[u8]) -> Vec<Frame> {
    let (_, _, frames) = read_all(flv).unwrap();
    frames
        .into_iter()
        .filter(|f| f.track != Track::Meta && f.track_id == 0)
        .filter(|f| !(f.codec == Codec::Avc && f.data[1] == 2))
        .filter(|f| {
            f.enhanced().and_then(|t| t.first).is_none_or(|t| {
                use crate::media::enhanced::PacketType::*;
                matches!(t.packet_type, CodedFrames | CodedFramesX | SequenceStart)
            })
        })
        // FFmpeg 9 sends AC-3 with an empty SequenceStart: there is nothing to carry.
        .filter(|f| !(f.config && f.payload().is_empty()))
        .collect()
}

/// Muxes frames into TS the way the HLS recorder does (tables before each keyframe, one PES
/// per frame, AAC as ADTS, PCR on video keyframes); times are `start` + dts in 90 kHz.
fn mux(frames: &[Frame], start: u64) -> Vec<u8> {
    let video = frames
        .iter()
        .find(|f| f.track == Track::Video)
        .map(|f| match f.codec {
            Codec::Hevc => StreamType::Hevc,
            _ => StreamType::H264,
        });
    let audio = frames
        .iter()
        .find(|f| f.track == Track::Audio && !f.config)
        .map(|f| match f.codec {
            Codec::Aac => StreamType::Aac,
            Codec::Mp3 => StreamType::for_mp3(&mp3::FrameHeader::parse(f.payload()).unwrap()),
            Codec::Ac3 => StreamType::Ac3,
            c => panic!("{c:?}"),
        });
    let mut w = TsWriter::new(Program { video, audio });
    let mut out = Vec::new();
    w.write_tables(&mut out);
    let (mut avc_cfg, mut hevc_cfg, mut asc) = (None, None, None);
    let mut es = Vec::new();
    for f in frames {
        let p = f.payload();
        if f.config {
            match f.codec {
                Codec::Avc => avc_cfg = AvcConfig::parse(p),
                Codec::Hevc => hevc_cfg = HevcConfig::parse(p),
                Codec::Aac => asc = AudioSpecificConfig::parse(p),
                _ => {}
            }
            continue;
        }
        es.clear();
        let e = match f.codec {
            Codec::Avc => {
                avc_access_unit(p, avc_cfg.as_ref().unwrap(), f.key, &mut es);
                Es::Video
            }
            Codec::Hevc => {
                hevc_access_unit(p, hevc_cfg.as_ref().unwrap(), f.key, &mut es);
                Es::Video
            }
            Codec::Aac => {
                assert!(adts_frame(asc.as_ref().unwrap(), p, &mut es));
                Es::Audio
            }
            _ => {
                es.extend_from_slice(p);
                Es::Audio
            }
        };
        if e == Es::Video && f.key {
            w.write_tables(&mut out);
        }
        let dts = start + u64::from(f.dts) * 90;
        let pts = start.wrapping_add_signed(f.pts() * 90);
        w.write_pes(
            &mut out,
            &Pes {
                es: e,
                pts,
                dts,
                random_access: f.key,
                pcr: (e == Es::Video && f.key).then_some(dts.saturating_sub(9000)),
                payload: &es,
            },
        );
    }
    out
}

/// The configs of a track must say the same thing (the bytes may differ: FFmpeg's avcC has the
/// High profile extension, its ASC an SBR extension, its hvcC other completeness flags).
fn same_config(a: &Frame, b: &Frame) {
    assert_eq!(a.codec, b.codec);
    match a.codec {
        Codec::Avc => assert_eq!(
            AvcConfig::parse(a.payload()).unwrap(),
            AvcConfig::parse(b.payload()).unwrap()
        ),
        Codec::Hevc => {
            let (x, y) = (
                HevcConfig::parse(a.payload()).unwrap(),
                HevcConfig::parse(b.payload()).unwrap(),
            );
            assert_eq!(x.codec_string(), y.codec_string());
            assert_eq!((x.width, x.height), (y.width, y.height));
            assert_eq!(
                (x.chroma_format, x.bit_depth_luma, x.bit_depth_chroma),
                (y.chroma_format, y.bit_depth_luma, y.bit_depth_chroma)
            );
            assert_eq!(
                x.parameter_sets().collect::<Vec<_>>(),
                y.parameter_sets().collect::<Vec<_>>()
            );
        }
        Codec::Aac => assert_eq!(
            AudioSpecificConfig::parse(a.payload()).unwrap(),
            AudioSpecificConfig::parse(b.payload()).unwrap()
        ),
        c => panic!("no config expected for {c:?}"),
    }
}

/// `input` muxed at `start` and demuxed gives the same frames: payloads bit for bit (whole tag
/// bodies), keyframe flags, composition times, configs saying the same, and every timestamp at
/// the same distance from the first frame's (within 1 ms). Returns the demuxed frames.
fn round_trip(input: &[Frame], start: u64) -> Vec<Frame> {
    let ts = mux(input, start);
    let (out, mut d) = demux(&ts);
    assert_eq!(errors(&mut d), vec![], "no error on our own muxer's output");
    // Timestamps count from the first PES; the input's first frame is at dts 0.
    let offset = input[0].dts.wrapping_sub(out[0].dts);
    for track in [Track::Video, Track::Audio] {
        let want: Vec<&Frame> = input.iter().filter(|f| f.track == track).collect();
        let got: Vec<&Frame> = out.iter().filter(|f| f.track == track).collect();
        let (wm, gm): (Vec<_>, Vec<_>) = (
            want.iter().filter(|f| !f.config).collect(),
            got.iter().filter(|f| !f.config).collect(),
        );
        assert_eq!(gm.len(), wm.len(), "{track:?} frames");
        for (i, (g, w)) in gm.iter().zip(&wm).enumerate() {
            assert_eq!(g.data, w.data, "{track:?} frame {i} body");
            assert_eq!((g.key, g.codec), (w.key, w.codec), "{track:?} frame {i}");
            let dt = i64::from(g.dts.wrapping_add(offset) as i32) - i64::from(w.dts as i32);
            assert!(
                dt.abs() <= 1,
                "{track:?} frame {i}: dts {} vs {}",
                g.dts,
                w.dts
            );
            assert!((g.cts - w.cts).abs() <= 1, "{track:?} frame {i} cts");
        }
        let (wc, gc): (Vec<_>, Vec<_>) = (
            want.iter().filter(|f| f.config).collect(),
            got.iter().filter(|f| f.config).collect(),
        );
        assert_eq!(gc.len(), wc.len().min(1), "{track:?} configs");
        if let (Some(g), Some(w)) = (gc.first(), wc.first()) {
            same_config(g, w);
            // The config comes before the first frame of its track.
            assert!(got[0].config, "{track:?} config first");
        }
    }
    out
}

/// ffprobe's counts for the FFmpeg-made fixtures (`sh tools/make-ts-fixtures.sh` prints them:
/// `ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets`,
/// and `-count_frames ... nb_read_frames`, equal here), with what each must demux to.
const FIXTURES: [(&str, Codec, Codec, usize, usize); 5] = [
    ("h264_aac", Codec::Avc, Codec::Aac, 50, 95),
    ("hevc_aac", Codec::Hevc, Codec::Aac, 50, 88),
    ("h264_mp3", Codec::Avc, Codec::Mp3, 50, 78),
    ("h264_ac3", Codec::Avc, Codec::Ac3, 50, 63),
    ("h264_opus", Codec::Avc, Codec::Opus, 50, 101),
];

/// Every fixture's name: the five above and two audio-only ones.
fn all_fixtures() -> impl Iterator<Item = &'static str> {
    FIXTURES.iter().map(|f| f.0).chain(["eac3", "ac3_dvb"])
}

/// Every piece of state is within its bound (called after hostile input).
fn assert_bounded(d: &TsDemuxer) {
    assert!(d.carry.len() < PACKET_LEN);
    assert!(d.pat.buf.len() <= MAX_SECTION + PACKET_LEN);
    assert!(d.pmt.buf.len() <= MAX_SECTION + PACKET_LEN);
    for s in d.video.iter().chain(&d.audio) {
        assert!(s.pes.len() <= s.kind.max_pes());
        assert!(s.sps.len() <= MAX_PARAM_SETS && s.pps.len() <= MAX_PARAM_SETS);
    }
    assert!(d.errors.len() <= MAX_QUEUED_ERRORS);
}

/// Builds one TS packet: PID, unit start, counter, payload (stuffed with an adaptation field).
fn packet(pid: u16, start: bool, cc: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 184);
    let mut p = vec![0x47, (u8::from(start) << 6) | (pid >> 8) as u8, pid as u8];
    let stuffing = 184 - payload.len();
    if stuffing == 0 {
        p.push(0x10 | cc);
    } else {
        p.push(0x30 | cc);
        p.push(stuffing as u8 - 1);
        if stuffing > 1 {
            p.push(0);
            p.extend(std::iter::repeat_n(0xff, stuffing - 2));
        }
    }
    p.extend_from_slice(payload);
    p
}

/// The first PAT and PMT packets of a fixture (H.264 on 0x100, audio on 0x101).
fn tables(ts: &[u8]) -> Vec<u8> {
    ts.chunks(PACKET_LEN)
        .filter(|p| {
            let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
            pid == 0 || pid == 0x1000
        })
        .take(2)
        .flatten()
        .copied()
        .collect()
}
