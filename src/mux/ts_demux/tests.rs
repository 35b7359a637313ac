//! The TS demuxer against our own TS muxer (round trips of the FLV fixtures' frames), against
//! FFmpeg-made TS files (tests/data/ts, tools/make-ts-fixtures.sh), fed at every split point, across
//! the 33-bit wrap, and against hostile input.

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

#[test]
fn round_trip_h264_aac_through_our_muxer() {
    let input = flv_frames(&data("fixture.flv"));
    assert!(input.iter().any(|f| f.cts != 0), "B-frames expected");
    let out = round_trip(&input, 90_000);
    assert_eq!(media(&out, Track::Video).len(), 250);
}

#[test]
fn round_trip_hevc_aac_through_our_muxer() {
    let input = flv_frames(&data("codecs/hevc_aac.flv"));
    let out = round_trip(&input, 90_000);
    assert!(media(&out, Track::Video)
        .iter()
        .all(|f| f.codec == Codec::Hevc));
}

#[test]
fn round_trip_h264_mp3_through_our_muxer() {
    let input = flv_frames(&data("codecs/h264_mp3.flv"));
    let out = round_trip(&input, 90_000);
    assert!(media(&out, Track::Audio)
        .iter()
        .all(|f| f.codec == Codec::Mp3));
}

#[test]
fn round_trip_h264_ac3_through_our_muxer() {
    let input = flv_frames(&data("codecs/h264_ac3.flv"));
    let out = round_trip(&input, 90_000);
    assert!(media(&out, Track::Audio)
        .iter()
        .all(|f| f.codec == Codec::Ac3));
}

/// PTS and DTS cross 2^33 (26.5 h at 90 kHz) two seconds in: the stream time goes on.
#[test]
fn round_trip_across_the_33_bit_wrap() {
    let input = flv_frames(&data("fixture.flv"));
    let start = TS_PERIOD as u64 - 2 * 90_000;
    let ts = mux(&input, start);
    // The wrap really is in the bytes: PES times near 2^33, then small ones.
    let times = pes_times(&ts);
    assert!(times[0] >= start && times.iter().any(|&t| t < 10 * 90_000));
    let out = round_trip(&input, start);
    let video = media(&out, Track::Video);
    assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
    assert!(
        video.last().unwrap().dts > 9_000,
        "10 s of video after the wrap"
    );
    let (_, d) = demux(&ts);
    assert_eq!(d.stats().errors, 0);
}

/// The PTS of every PES in a TS (the first packet of each, when it holds the header).
fn pes_times(ts: &[u8]) -> Vec<u64> {
    ts.chunks(PACKET_LEN)
        .filter(|p| p[1] & 0x40 != 0)
        .filter_map(|p| {
            let at = if p[3] & 0x20 != 0 {
                5 + usize::from(p[4])
            } else {
                4
            };
            let pes = &p[at..];
            (pes[..3] == [0, 0, 1] && pes[7] & 0x80 != 0).then(|| timestamp(&pes[9..14]))
        })
        .collect()
}

#[test]
fn clock_unwraps_33_bits_both_ways() {
    let mut c = Clock::default();
    let top = TS_PERIOD as u64 - 900;
    let start = START_MS * 90;
    assert_eq!(c.ticks(top), start);
    assert_eq!(c.ticks(top + 450), start + 450);
    // Past 2^33 the wire value is small again.
    assert_eq!(c.ticks(100), start + 1000);
    // A B-frame PTS before the wrap still reads as slightly earlier; so does one before the first.
    assert_eq!(c.ticks(top + 800), start + 800);
    assert_eq!(c.ticks(top - 9000), start - 9000);
    assert_eq!(c.ticks(5000), start + 5900);
    // A second wrap, stepping forward in 2^31 steps.
    let mut t = 5000u64;
    let mut want = start + 5900;
    for _ in 0..8 {
        t = (t + (1 << 31)) & TS_MASK;
        want += 1 << 31;
        assert_eq!(c.ticks(t), want);
    }
    assert_eq!(ms(-1), -1);
    assert_eq!(ms(-1) as u32, u32::MAX);
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

#[test]
fn ffmpeg_fixtures_demux_to_ffprobe_counts() {
    for (name, vcodec, acodec, nv, na) in FIXTURES {
        let (frames, mut d) = demux(&data(&format!("ts/{name}.ts")));
        assert_eq!(errors(&mut d), vec![], "{name}");
        let video = media(&frames, Track::Video);
        let audio = media(&frames, Track::Audio);
        assert_eq!(
            (video.len(), audio.len()),
            (nv, na),
            "{name}: video, audio frames"
        );
        assert!(video.iter().all(|f| f.codec == vcodec), "{name}");
        assert!(audio.iter().all(|f| f.codec == acodec && f.key), "{name}");
        assert!(
            video[0].key && video.iter().filter(|f| f.key).count() == 2,
            "{name}: keys"
        );
        assert!(video.iter().any(|f| f.cts > 0), "{name}: B-frames");
        assert!(
            video.windows(2).all(|w| w[1].dts > w[0].dts),
            "{name}: video dts"
        );
        assert!(
            audio.windows(2).all(|w| w[1].dts >= w[0].dts),
            "{name}: audio dts"
        );
        // 2 s at 25 fps: the last DTS about 1.96 s after the first.
        let span = video.last().unwrap().dts.wrapping_sub(video[0].dts);
        assert!((1900..=2000).contains(&span), "{name}: span {span}");
        let configs: Vec<&Frame> = frames.iter().filter(|f| f.config).collect();
        let vcfg = configs.iter().find(|f| f.track == Track::Video).unwrap();
        match vcodec {
            Codec::Avc => {
                let c = AvcConfig::parse(vcfg.payload()).unwrap();
                assert_eq!((c.width, c.height, c.profile), (160, 120, 100), "{name}");
            }
            _ => {
                let c = HevcConfig::parse(vcfg.payload()).unwrap();
                assert_eq!((c.width, c.height), (160, 120), "{name}");
                assert_eq!(c.parameter_sets().count(), 3, "{name}");
                assert!(c.codec_string().starts_with("hvc1.1.6.L"), "{name}");
            }
        }
        let acfg = configs.iter().find(|f| f.track == Track::Audio);
        match acodec {
            Codec::Aac => {
                let a = AudioSpecificConfig::parse(acfg.unwrap().payload()).unwrap();
                let (rate, ch) = if name == "hevc_aac" {
                    (44_100, 1)
                } else {
                    (48_000, 2)
                };
                assert_eq!(
                    (a.object_type, a.sample_rate, a.channels),
                    (2, rate, ch),
                    "{name}"
                );
            }
            Codec::Opus => {
                let h = opus::OpusHead::parse(acfg.unwrap().payload()).unwrap();
                assert_eq!((h.channels, h.mapping_family), (2, 0));
                assert!(h.pre_skip > 0, "FFmpeg's start trim becomes the pre-skip");
                assert!(audio
                    .iter()
                    .all(|f| opus::packet_samples(f.payload()) == Some(960)));
                // 20 ms packets, each timed on its own.
                assert_eq!(audio[5].dts.wrapping_sub(audio[4].dts), 20);
            }
            Codec::Mp3 => {
                assert!(acfg.is_none());
                let h = mp3::FrameHeader::parse(audio[0].payload()).unwrap();
                assert_eq!((h.sample_rate, h.channels, h.layer), (44_100, 2, 3));
            }
            _ => {
                assert!(acfg.is_none());
                let f = ac3::SyncFrame::parse(audio[0].payload()).unwrap();
                assert_eq!((f.sample_rate, f.channels()), (48_000, 2));
                assert_eq!(audio[1].dts.wrapping_sub(audio[0].dts), 32);
            }
        }
    }
}

/// Audio frames packed several to a PES get their own times: AAC at 48 kHz is 21.33 ms apart.
#[test]
fn aac_frames_of_one_pes_are_timed_apart() {
    let (frames, _) = demux(&data("ts/h264_aac.ts"));
    let audio = media(&frames, Track::Audio);
    for w in audio.windows(2) {
        let step = w[1].dts.wrapping_sub(w[0].dts);
        assert!((21..=22).contains(&step), "step {step}");
    }
}

/// Every fixture's name: the five above and two audio-only ones.
fn all_fixtures() -> impl Iterator<Item = &'static str> {
    FIXTURES.iter().map(|f| f.0).chain(["eac3", "ac3_dvb"])
}

/// Audio only: E-AC-3 (stream type 0x87) and AC-3 the DVB way (0x06 with descriptors); ffprobe
/// counts 32 frames in each (tools/make-ts-fixtures.sh).
#[test]
fn audio_only_eac3_and_dvb_ac3() {
    for (name, codec, channels) in [("eac3", Codec::Eac3, 2), ("ac3_dvb", Codec::Ac3, 1)] {
        let (frames, mut d) = demux(&data(&format!("ts/{name}.ts")));
        assert_eq!(errors(&mut d), vec![], "{name}");
        assert!(
            frames.iter().all(|f| f.track == Track::Audio && !f.config),
            "{name}"
        );
        assert_eq!(frames.len(), 32, "{name}");
        for f in &frames {
            assert_eq!(f.codec, codec);
            let s = ac3::SyncFrame::parse(f.payload()).unwrap();
            assert_eq!(
                (s.sample_rate, s.channels(), s.frame_len),
                (48_000, channels, f.payload().len())
            );
        }
        assert!(
            frames
                .windows(2)
                .all(|w| w[1].dts.wrapping_sub(w[0].dts) == 32),
            "{name}"
        );
    }
}

#[test]
fn pmt_stream_kinds() {
    assert_eq!(Kind::from_pmt(0x06, &[0x6a, 1, 0]), Some(Kind::Ac3));
    assert_eq!(Kind::from_pmt(0x06, &[0x7a, 1, 0]), Some(Kind::Eac3));
    assert_eq!(Kind::from_pmt(0x06, b"\x05\x04EAC3"), Some(Kind::Eac3));
    let opus = |d: &[u8]| Kind::from_pmt(0x06, d);
    assert_eq!(opus(b"\x05\x04Opus"), Some(Kind::Opus { channels: 2 }));
    assert_eq!(
        opus(b"\x05\x04Opus\x7f\x02\x80\x06"),
        Some(Kind::Opus { channels: 6 })
    );
    // Dual mono and explicit channel maps are not carried.
    assert_eq!(opus(b"\x05\x04Opus\x7f\x02\x80\x00"), None);
    assert_eq!(opus(b"\x05\x04Opus\x7f\x02\x80\x81"), None);
    // A truncated descriptor, no descriptor, MPEG-2 video, an unknown type.
    assert_eq!(opus(b"\x05\x09Opus"), None);
    assert_eq!(opus(&[]), None);
    assert_eq!(Kind::from_pmt(0x02, &[]), None);
    assert_eq!(Kind::from_pmt(0xff, &[]), None);
    // The OpusHead of a 5.1 stream: family 1 in the Vorbis order.
    let h = opus::OpusHead::parse(&opus_head(6, 312)).unwrap();
    assert_eq!(
        (
            h.channels,
            h.mapping_family,
            h.stream_count,
            h.coupled_count,
            h.pre_skip
        ),
        (6, 1, 4, 2, 312)
    );
    assert_eq!(h.mapping, [0, 4, 1, 2, 3, 5]);
    let h = opus::OpusHead::parse(&opus_head(1, 0)).unwrap();
    assert_eq!((h.channels, h.mapping_family), (1, 0));
}

#[test]
fn every_fixture_one_byte_at_a_time_and_every_split_of_the_first_4k() {
    for name in all_fixtures() {
        let ts = data(&format!("ts/{name}.ts"));
        let (whole, _) = demux(&ts);
        let cuts: Vec<usize> = (1..ts.len()).collect();
        let (bytewise, _) = demux_cuts(&ts, &cuts);
        assert_eq!(keys(&bytewise), keys(&whole), "{name} byte by byte");
        // Two pieces, cut everywhere in the first 4 KiB (tables, first PESs), of the first 8 KiB.
        let head = &ts[..8192];
        let (want, _) = demux(head);
        assert!(want.len() > 2, "{name}: frames in the first 8 KiB");
        for cut in 0..4096 {
            let (got, _) = demux_cuts(head, &[cut]);
            assert_eq!(keys(&got), keys(&want), "{name} cut at {cut}");
        }
    }
}

/// The frames go into the hub's ingest normaliser as an RTMP publisher's would: no jump, each
/// track's stream time never decreasing, spanning the 2 s of the file.
#[test]
fn frames_pass_the_ingest_normaliser_cleanly() {
    for (name, ..) in FIXTURES {
        let (frames, _) = demux(&data(&format!("ts/{name}.ts")));
        let mut n = Normaliser::new();
        let mut last = [0u64; 2];
        for mut f in frames {
            n.normalise(&mut f);
            assert!(!f.discontinuity, "{name}: jump at {}", f.time);
            if !f.config {
                let i = usize::from(f.track == Track::Audio);
                assert!(f.time >= last[i], "{name}: time went back");
                last[i] = f.time;
            }
        }
        let span = last[0] - crate::media::time::START;
        assert!((1900..=2100).contains(&span), "{name}: {span}");
    }
}

/// A TS with a 33-bit PTS wrap between two frames of FFmpeg's fixture: the DTS patched by hand.
#[test]
fn ffmpeg_fixture_with_timestamps_moved_across_the_wrap() {
    let mut ts = data("ts/h264_aac.ts");
    // Move every PTS/DTS by 2^33 - 1 s: the wrap falls 1 s in.
    let shift = TS_PERIOD as u64 - 90_000;
    for p in ts.chunks_mut(PACKET_LEN) {
        if p[1] & 0x40 == 0 || p[1] & 0x1f == 0 && p[2] < 0x20 {
            continue;
        }
        let at = if p[3] & 0x20 != 0 {
            5 + usize::from(p[4])
        } else {
            4
        };
        let pes = &mut p[at..];
        if pes[..3] != [0, 0, 1] {
            continue;
        }
        let flags = pes[7] >> 6;
        if flags < 2 {
            continue;
        }
        for (i, prefix) in [(9usize, flags), (14, 1)]
            .into_iter()
            .take(flags as usize - 1)
        {
            let t = (timestamp(&pes[i..i + 5]) + shift) & TS_MASK;
            let b = [
                (prefix << 4) | (((t >> 30) as u8 & 7) << 1) | 1,
                (t >> 22) as u8,
                ((t >> 14) as u8) | 1,
                (t >> 7) as u8,
                ((t << 1) as u8) | 1,
            ];
            pes[i..i + 5].copy_from_slice(&b);
        }
    }
    let (moved, mut d) = demux(&ts);
    assert_eq!(errors(&mut d), vec![]);
    let (orig, _) = demux(&data("ts/h264_aac.ts"));
    assert_eq!(keys(&moved), keys(&orig));
}

#[test]
fn a_lost_packet_drops_its_frame_and_is_counted() {
    let ts = data("ts/h264_aac.ts");
    let (whole, _) = demux(&ts);
    // Drop a continuation packet of the first video PES (the key frame is a few packets long).
    let video_pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8 | u16::from(p[2])) == 0x100;
    let packets: Vec<&[u8]> = ts.chunks(PACKET_LEN).collect();
    let first = packets
        .iter()
        .position(|p| video_pid(p) && p[1] & 0x40 != 0)
        .unwrap();
    let drop = first + 1;
    assert!(video_pid(packets[drop]) && packets[drop][1] & 0x40 == 0);
    let cut: Vec<u8> = packets
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != drop)
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    let (frames, mut d) = demux(&cut);
    assert_eq!(errors(&mut d), vec![TsError::Continuity { pid: 0x100 }]);
    // The key frame is gone, and so is its GOP until the next key (frames before a key are
    // dropped); the audio is untouched.
    assert_eq!(
        media(&frames, Track::Audio).len(),
        media(&whole, Track::Audio).len()
    );
    let video = media(&frames, Track::Video);
    assert_eq!(video.len(), 25);
    assert!(video[0].key);
    assert_eq!(d.stats().dropped_before_key, 24);
}

#[test]
fn garbage_between_packets_resyncs_and_is_counted() {
    let ts = data("ts/h264_mp3.ts");
    let (whole, _) = demux(&ts);
    // 100 bytes of junk without a sync byte before the first packet and between two tables.
    let junk = [0x11u8; 100];
    let mut bad = junk.to_vec();
    bad.extend_from_slice(&ts);
    let (frames, mut d) = demux(&bad);
    assert_eq!(keys(&frames), keys(&whole));
    assert_eq!(errors(&mut d), vec![TsError::LostSync { skipped: 100 }]);
    assert_eq!(d.stats().skipped_bytes, 100);
    // Split anywhere inside the junk, the same.
    for cut in [1, 50, 99, 100, 101, 300] {
        let (f, _) = demux_cuts(&bad, &[cut]);
        assert_eq!(keys(&f), keys(&whole), "cut {cut}");
    }
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

#[test]
fn random_bytes_and_mutated_fixtures_never_panic_and_stay_bounded() {
    let mut rng = Rng::new(0x7e57_d3a0);
    let mut d = TsDemuxer::new();
    for _ in 0..200 {
        let junk: Vec<u8> = (0..rng.below(5000))
            .map(|_| {
                if rng.below(20) == 0 {
                    SYNC
                } else {
                    rng.next_u64() as u8
                }
            })
            .collect();
        d.push(&junk);
        while d.poll_frame().is_some() {}
        assert_bounded(&d);
    }
    assert!(d.stats().errors > 0);
    for (name, ..) in FIXTURES {
        let ts = data(&format!("ts/{name}.ts"));
        for _ in 0..40 {
            let mut m = rng.mutate(&ts);
            // And a few bytes in the headers hit hard: lengths, pointers, flags.
            for _ in 0..rng.below(30) {
                let at = rng.below(m.len() / PACKET_LEN) * PACKET_LEN + 1 + rng.below(20);
                if at < m.len() {
                    m[at] = rng.next_u64() as u8;
                }
            }
            let mut d = TsDemuxer::new();
            let mut pos = 0;
            while pos < m.len() {
                let n = (1 + rng.below(700)).min(m.len() - pos);
                d.push(&m[pos..pos + n]);
                pos += n;
                while d.poll_frame().is_some() {}
                assert_bounded(&d);
            }
            d.flush();
        }
    }
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

#[test]
fn a_pes_that_never_ends_is_dropped_at_the_cap_and_the_stream_recovers() {
    let fixture = data("ts/h264_aac.ts");
    let mut d = TsDemuxer::new();
    d.push(&tables(&fixture));
    // A video PES of unbounded length, then 9 MiB of continuation packets.
    let mut cc = 0u8;
    let head = [0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
    d.push(&packet(0x100, true, cc, &head));
    for _ in 0..(9 << 20) / 184 {
        cc = (cc + 1) & 0x0f;
        d.push(&packet(0x100, false, cc, &[0x55; 184]));
        assert_bounded(&d);
    }
    assert_eq!(errors(&mut d), vec![TsError::PesTooLarge { pid: 0x100 }]);
    assert!(d.video.as_ref().unwrap().pes.is_empty());
    // The whole fixture after it still demuxes (its continuity counters start over: one error).
    d.push(&fixture);
    d.flush();
    let frames: Vec<Frame> = std::iter::from_fn(|| d.poll_frame()).collect();
    assert_eq!(media(&frames, Track::Video).len(), 50);
    assert!(errors(&mut d)
        .iter()
        .all(|e| matches!(e, TsError::Continuity { .. })));
}

#[test]
fn an_audio_pes_over_its_cap_is_dropped() {
    let fixture = data("ts/h264_aac.ts");
    let mut d = TsDemuxer::new();
    d.push(&tables(&fixture));
    // Audio PES announcing no length: it grows until the 64 KiB cap.
    let head = [0, 0, 1, 0xc0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
    d.push(&packet(0x101, true, 0, &head));
    for i in 1..400u32 {
        d.push(&packet(0x101, false, (i & 0x0f) as u8, &[0xff; 184]));
        assert_bounded(&d);
    }
    assert_eq!(errors(&mut d), vec![TsError::PesTooLarge { pid: 0x101 }]);
}

#[test]
fn many_pids_and_many_streams_track_one_video_and_one_audio() {
    let fixture = data("ts/h264_aac.ts");
    let mut d = TsDemuxer::new();
    // Packets on every PID: none is tracked before a PMT names it.
    for pid in 0x20..0x1fff {
        d.push(&packet(
            pid,
            true,
            0,
            &[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1],
        ));
    }
    assert!(d.video.is_none() && d.audio.is_none() && d.pmt_pid.is_none());
    // A PMT listing 16 H.264 and 16 AAC streams: the first of each is taken.
    let mut body = vec![0x02, 0, 0, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0];
    for i in 0..16u16 {
        for (ty, pid) in [(0x1b, 0x100 + 2 * i), (0x0f, 0x101 + 2 * i)] {
            body.extend_from_slice(&[ty, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]);
        }
    }
    let len = body.len() - 3 + 4;
    body[1] = 0xb0 | (len >> 8) as u8;
    body[2] = len as u8;
    let crc = crc32_mpeg2(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    assert!(body.len() < 184, "fits one packet");
    let pat = tables(&fixture)[..PACKET_LEN].to_vec();
    d.push(&pat);
    let mut pmt = vec![0];
    pmt.extend_from_slice(&body);
    d.push(&packet(0x1000, true, 0, &pmt));
    assert_eq!(errors(&mut d), vec![]);
    let (v, a) = (d.video.as_ref().unwrap(), d.audio.as_ref().unwrap());
    assert_eq!(
        (v.pid, v.kind, a.pid, a.kind),
        (0x100, Kind::H264, 0x101, Kind::Aac)
    );
}

#[test]
fn bad_crc_and_bad_section_lengths_are_errors() {
    let fixture = data("ts/h264_aac.ts");
    let mut t = tables(&fixture);
    // Flip a bit in the PMT's CRC: the PMT is refused, no stream is set up.
    t[PACKET_LEN + 5 + 20] ^= 1;
    let mut d = TsDemuxer::new();
    d.push(&t);
    assert_eq!(errors(&mut d), vec![TsError::BadSection { pid: 0x1000 }]);
    assert!(d.video.is_none());
    // A section length over 1021.
    let mut t = tables(&fixture);
    t[6] = 0xb7;
    let mut d = TsDemuxer::new();
    d.push(&t);
    assert_eq!(errors(&mut d), vec![TsError::BadSection { pid: 0 }]);
    // A pointer field past the packet.
    let mut t = tables(&fixture);
    t[4] = 200;
    let mut d = TsDemuxer::new();
    d.push(&t);
    assert_eq!(errors(&mut d), vec![TsError::BadSection { pid: 0 }]);
}

#[test]
fn pes_header_edge_cases() {
    // No PTS: refused. PTS only, PTS + DTS, header running past the data, a short PES.
    let pts_only = [0, 0, 1, 0xc0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 3, 0xaa];
    assert_eq!(parse_pes(&pts_only), Some((1, None, 14)));
    let both = [
        0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10, 0x31, 0, 1, 0, 5, 0x11, 0, 1, 0, 3, 0xbb,
    ];
    assert_eq!(parse_pes(&both), Some((2, Some(1), 19)));
    let mut none = pts_only;
    none[7] = 0;
    assert_eq!(parse_pes(&none), None);
    let mut long_header = pts_only;
    long_header[8] = 200;
    assert_eq!(parse_pes(&long_header), None);
    let mut short = pts_only;
    short[5] = 100;
    assert_eq!(parse_pes(&short), None);
    assert_eq!(parse_pes(&[0, 0, 1]), None);
}

#[test]
fn annex_b_splits_on_3_and_4_byte_start_codes() {
    let es = [
        9, 9, 0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 1, 2, 0, 0, 0, 0, 1, 0x41, 7, 0, 0, 1,
    ];
    let nals: Vec<&[u8]> = annex_b(&es).collect();
    assert_eq!(
        nals,
        vec![&[0x09, 0xf0][..], &[0x65, 1, 2][..], &[0x41, 7][..]]
    );
    assert_eq!(annex_b(&[1, 2, 3]).count(), 0);
    assert_eq!(annex_b(&[0, 0, 1]).count(), 0);
}

#[test]
fn h264_parameter_set_change_sends_a_new_config_and_leaves_the_access_unit() {
    // Two GOPs whose SPS differ (a resolution change): two configs, each before its keyframe.
    let input = flv_frames(&data("fixture.flv"));
    let ts = mux(&input, 90_000);
    let (frames, _) = demux(&ts);
    let first = frames
        .iter()
        .find(|f| f.config && f.track == Track::Video)
        .unwrap();
    let cfg = AvcConfig::parse(first.payload()).unwrap();
    let mut other = cfg.sps[0].to_vec();
    // Another level_idc: a different SPS, still parseable.
    other[3] ^= 0x03;
    let mut es = Vec::new();
    for sps in [&cfg.sps[0][..], &other[..]] {
        // With a delimiter and filler data, which leave the access unit too.
        let (aud, filler) = (&[0x09, 0xf0][..], &[0x0c, 0xff, 0xff, 0x80][..]);
        for nal in [aud, sps, &cfg.pps[0][..], filler, &[0x65, 0x88, 0x84][..]] {
            es.extend_from_slice(&[0, 0, 0, 1]);
            es.extend_from_slice(nal);
        }
    }
    let half = es.len() / 2;
    let mut w = TsWriter::new(Program {
        video: Some(StreamType::H264),
        audio: None,
    });
    let mut out = Vec::new();
    w.write_tables(&mut out);
    for (i, part) in [&es[..half], &es[half..], &es[..half]]
        .into_iter()
        .enumerate()
    {
        let t = 90_000 + i as u64 * 3600;
        let pes = Pes {
            es: Es::Video,
            pts: t,
            dts: t,
            random_access: true,
            pcr: None,
            payload: part,
        };
        w.write_pes(&mut out, &pes);
    }
    let (frames, mut d) = demux(&out);
    assert_eq!(errors(&mut d), vec![]);
    let configs: Vec<&Frame> = frames.iter().filter(|f| f.config).collect();
    assert_eq!(configs.len(), 3, "a config at each change");
    assert_eq!(
        AvcConfig::parse(configs[1].payload()).unwrap().sps[0][..],
        other[..]
    );
    let pictures = media(&frames, Track::Video);
    assert_eq!(pictures.len(), 3);
    // The parameter sets, the delimiter and the filler left the access unit: the IDR slice remains.
    assert!(pictures
        .iter()
        .all(|f| f.key && f.payload() == [0, 0, 0, 3, 0x65, 0x88, 0x84]));
}

#[test]
fn errors_display_one_line_each() {
    for e in [
        TsError::LostSync { skipped: 3 },
        TsError::TransportError { pid: 1 },
        TsError::BadAdaptationField { pid: 1 },
        TsError::Continuity { pid: 1 },
        TsError::BadSection { pid: 1 },
        TsError::BadPes { pid: 1 },
        TsError::PesTooLarge { pid: 1 },
        TsError::BadAccessUnit { pid: 1 },
        TsError::UnsupportedCodec { pid: 1 },
    ] {
        let s = e.to_string();
        assert!(s.starts_with("MPEG-TS ") && !s.contains('\n'), "{s}");
    }
}

/// When the first PES to end is audio, video whose DTS is a little earlier (the reordering delay)
/// comes out just before the start, not at a negative (wrapped) time.
#[test]
fn frames_earlier_than_the_first_one_are_not_negative() {
    let mut input = flv_frames(&data("fixture.flv"));
    // The AAC config and first AAC frame (at 46 ms or so) go first in the TS.
    let first_audio = input
        .iter()
        .position(|f| f.track == Track::Audio && !f.config)
        .unwrap();
    let audio_dts = input[first_audio].dts;
    assert!(audio_dts > 0);
    let a = input.remove(first_audio);
    let c = input.remove(
        input
            .iter()
            .position(|f| f.config && f.track == Track::Audio)
            .unwrap(),
    );
    input.splice(0..0, [c, a]);
    let (out, mut d) = demux(&mux(&input, 90_000));
    assert_eq!(errors(&mut d), vec![]);
    assert_eq!(
        out[1].dts, START_MS as u32,
        "the first frame is at START_MS"
    );
    assert_eq!(out[1].track, Track::Audio);
    let video = media(&out, Track::Video);
    assert_eq!(i64::from(video[0].dts), START_MS - i64::from(audio_dts));
    assert!(out.iter().all(|f| f.dts < 1 << 31), "no wrapped time");
}

/// FFmpeg 9 (it reads Enhanced RTMP HEVC, Opus, AC-3 and E-AC-3 in FLV) decodes what the
/// demuxer made of every fixture, written as FLV the way the FLV recorder writes frames, without
/// a complaint and with ffprobe's frame counts.
#[test]
#[ignore = "needs FFmpeg 9: sh tools/fetch-ffmpeg.sh, then cargo test -- --ignored ffmpeg9"]
fn ffmpeg9_decodes_the_demuxed_frames_as_flv() {
    let ffmpeg = crate::testutil::ffmpeg9();
    let dir = crate::testutil::TempDir::new("ts-demux");
    let counts = FIXTURES
        .iter()
        .map(|&(name, _, _, v, a)| (name, v, a))
        .chain([("eac3", 0, 32), ("ac3_dvb", 0, 32)]);
    for (name, nv, na) in counts {
        let (frames, _) = demux(&data(&format!("ts/{name}.ts")));
        let mut flv = crate::mux::flv::file_header(na > 0, nv > 0).to_vec();
        for f in &frames {
            crate::mux::flv::write_tag(&mut flv, f);
        }
        let path = dir.path().join(format!("{name}.flv"));
        std::fs::write(&path, &flv).unwrap();
        let out = std::process::Command::new(&ffmpeg)
            .args(["-hide_banner", "-xerror", "-i"])
            .arg(&path)
            .args(["-map", "0", "-f", "framemd5", "-"])
            .output()
            .expect("FFmpeg 9");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(!stderr.to_lowercase().contains("error"), "{name}: {stderr}");
        let text = String::from_utf8_lossy(&out.stdout);
        // "#media_type 0: video" names each stream's index.
        let index = |kind: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("#media_type ")?
                        .strip_suffix(&format!(": {kind}"))
                })
                .map(|i| format!("{i},"))
        };
        let count = |kind: &str| {
            index(kind).map_or(0, |i| text.lines().filter(|l| l.starts_with(&i)).count())
        };
        assert_eq!(
            (count("video"), count("audio")),
            (nv, na),
            "{name}: {stderr}"
        );
    }
}

/// fuzz/regressions/ts_demux/crash-e8f5b4d4...: a piece of mostly 0xff with a sync byte here and
/// there made more errors than the queue holds (35) in one push. The target wrongly expected every
/// error queued; the demuxer was right: the counter has them all, the queue the first 32, and
/// frames and counters do not depend on the split.
#[test]
fn fuzz_ts_demux_crash_e8f5b4d4_more_errors_in_one_push_than_the_queue_holds() {
    let input = include_bytes!(
        "../../../fuzz/regressions/ts_demux/crash-e8f5b4d4be71fc5e156cc6d2f7b8adc217468300"
    );
    let (steps, ts) = input.split_at(4);
    // The fuzz crate's feed_in_pieces: step s is s + 1 bytes, 0xff the rest.
    let mut cuts = Vec::new();
    let mut at = 0;
    for &s in steps.iter().cycle() {
        at = if s == 0xff {
            ts.len()
        } else {
            at + usize::from(s) + 1
        };
        if at >= ts.len() {
            break;
        }
        cuts.push(at);
    }
    let (whole, mut d) = demux(ts);
    let (split, mut e) = demux_cuts(ts, &cuts);
    assert_eq!(keys(&split), keys(&whole));
    assert_eq!(d.stats(), e.stats());
    assert!(d.stats().errors > MAX_QUEUED_ERRORS as u64);
    assert_eq!(errors(&mut d).len(), MAX_QUEUED_ERRORS);
    assert!(errors(&mut e).len() <= MAX_QUEUED_ERRORS);
}

/// Joining a stream mid-packet (an SRT caller connecting late): sync is found, the tables come
/// round again, and video starts at the next keyframe with its config before it.
#[test]
fn joining_mid_stream_starts_at_a_keyframe_with_its_config() {
    for name in ["h264_aac", "hevc_aac"] {
        let ts = data(&format!("ts/{name}.ts"));
        let (all, _) = demux(&ts);
        let join = ts.len() / 3 + 77;
        let (frames, mut d) = demux(&ts[join..]);
        let skipped = PACKET_LEN - join % PACKET_LEN;
        assert_eq!(
            errors(&mut d),
            vec![TsError::LostSync { skipped }],
            "{name}"
        );
        let video: Vec<&Frame> = frames.iter().filter(|f| f.track == Track::Video).collect();
        assert!(video[0].config && video[1].key, "{name}");
        assert!(d.stats().dropped_before_key > 0, "{name}");
        // From the keyframe on, the same pictures as from the start (times differ: counted from
        // the first timestamp seen).
        let tail = |f: &[&Frame]| f.iter().map(|f| f.data.clone()).collect::<Vec<_>>();
        let from_start = media(&all, Track::Video);
        let joined = media(&frames, Track::Video);
        assert_eq!(
            tail(&from_start[from_start.len() - joined.len()..]),
            tail(&joined)
        );
        assert_eq!(joined.len(), 25, "{name}: the second GOP");
    }
}

/// `end_live`: a whole stream (its last video PES ends in a stuffed packet, as FFmpeg's muxer
/// writes it) gives every frame, as `flush` does; the same stream cut inside its last video PES
/// at an SRT payload boundary (a caller that closed with data unsent) gives every frame but that
/// cut one, where `flush` would pass the cut picture on.
#[test]
fn end_live_takes_a_whole_last_video_pes_and_drops_a_cut_one() {
    let ts = data("ts/h264_aac.ts");
    let feed = |ts: &[u8], live: bool| {
        let mut d = TsDemuxer::new();
        d.push(ts);
        if live {
            d.end_live();
        } else {
            d.flush();
        }
        let frames: Vec<Frame> = std::iter::from_fn(|| d.poll_frame()).collect();
        (frames, d)
    };
    let (all, _) = feed(&ts, false);
    let (live, mut d) = feed(&ts, true);
    assert_eq!(keys(&live), keys(&all), "a whole stream loses nothing");
    assert_eq!(errors(&mut d), vec![]);
    // Cut one packet into a video PES of several packets (the last such one): what comes
    // before it is whole, it is cut.
    let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let packets: Vec<&[u8]> = ts.chunks(188).collect();
    let vpid = pid(packets
        .iter()
        .find(|p| p[1] & 0x40 != 0 && p[4..].windows(4).any(|w| w == [0, 0, 1, 0xe0]))
        .expect("a video PES"));
    let starts: Vec<usize> = (0..packets.len())
        .filter(|&i| pid(packets[i]) == vpid && packets[i][1] & 0x40 != 0)
        .collect();
    let start = *starts
        .iter()
        .rev()
        .find(|&&i| {
            packets[i + 1..]
                .iter()
                .take_while(|p| !(pid(p) == vpid && p[1] & 0x40 != 0))
                .filter(|p| pid(p) == vpid)
                .count()
                > 0
        })
        .expect("a video PES of several packets");
    let cut = &ts[..(start + 1) * 188];
    let (cut_live, mut d) = feed(cut, true);
    let (cut_flush, _) = feed(cut, false);
    assert_eq!(errors(&mut d), vec![]);
    let video = |f: &[Frame]| media(f, Track::Video).len();
    assert_eq!(
        video(&cut_live) + 1,
        video(&cut_flush),
        "the cut frame is dropped"
    );
    let prefix = |f: &[Frame]| {
        keys(
            &media(f, Track::Video)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        prefix(&cut_live)[..],
        prefix(&all)[..video(&cut_live)],
        "what is kept is whole"
    );
}

/// The start-code search (memchr for the 01, then the two zeros before it) finds what a byte by
/// byte search finds, from every start offset, in buffers dense with 00 and 01.
#[test]
fn start_code_search_matches_a_byte_by_byte_search() {
    fn naive(es: &[u8], from: usize) -> Option<usize> {
        (from..es.len().saturating_sub(2)).find(|&i| es[i..i + 3] == [0, 0, 1])
    }
    let mut seed = 0x2545_f491_u32;
    for len in 0..200 {
        let es: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                [0, 0, 0, 1, 2, 0xff][(seed % 6) as usize]
            })
            .collect();
        for from in 0..=len {
            assert_eq!(
                super::find_start_code(&es, from),
                naive(&es, from),
                "{es:?} from {from}"
            );
        }
    }
}
