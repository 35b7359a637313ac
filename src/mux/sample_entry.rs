//! ISO BMFF sample entries for the codecs beyond H.264/AAC: `hvc1`+`hvcC`, `av01`+`av1C`,
//! `vp09`+`vpcC`, `Opus`+`dOps`, `mp4a`+`esds` for MP3 (object type 0x6B/0x69), `ac-3`+`dac3`,
//! `ec-3`+`dec3`, with each one's RFC 6381 codec string and track timescale. Built from the parsed
//! configurations in `media::*`; which tracks a file has and where it goes is the muxers' business.

use bytes::Bytes;

use super::bmff::{begin_audio_sample_entry, begin_visual_sample_entry, write_esds, BoxWriter};
use crate::media::ac3::SyncFrame;
use crate::media::av1::Av1Config;
use crate::media::hevc::HevcConfig;
use crate::media::mp3::FrameHeader;
use crate::media::opus::{self, OpusHead};
use crate::media::vp9::Vp9Config;

/// Video tracks count in 90 kHz ticks (RTMP milliseconds map exactly, x90).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// One track's sample description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SampleEntry {
    /// `record` is the HEVCDecoderConfigurationRecord, which is the `hvcC` body unchanged.
    Hevc {
        record: Bytes,
        config: HevcConfig,
    },
    /// `record` is the AV1CodecConfigurationRecord (with its configOBUs), the `av1C` body.
    Av1 {
        record: Bytes,
        config: Av1Config,
        width: u32,
        height: u32,
    },
    Vp9 {
        config: Vp9Config,
        width: u32,
        height: u32,
    },
    Opus(OpusHead),
    /// MPEG-1/2 audio layer 3 (or 1/2) from its first frame header.
    Mp3(FrameHeader),
    /// AC-3 or E-AC-3 from its first sync frame.
    Ac3(SyncFrame),
}

impl SampleEntry {
    pub fn is_audio(&self) -> bool {
        matches!(
            self,
            SampleEntry::Opus(_) | SampleEntry::Mp3(_) | SampleEntry::Ac3(_)
        )
    }

    /// The `mdhd` timescale: 90 kHz for video, the sample rate for audio (48 kHz for Opus).
    pub fn timescale(&self) -> u32 {
        match self {
            SampleEntry::Hevc { .. } | SampleEntry::Av1 { .. } | SampleEntry::Vp9 { .. } => {
                VIDEO_TIMESCALE
            }
            SampleEntry::Opus(_) => opus::SAMPLE_RATE,
            SampleEntry::Mp3(h) => h.sample_rate,
            SampleEntry::Ac3(f) => f.sample_rate,
        }
    }

    /// The picture size for `tkhd` (0, 0 for audio).
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            SampleEntry::Hevc { config, .. } => (config.width, config.height),
            SampleEntry::Av1 { width, height, .. } | SampleEntry::Vp9 { width, height, .. } => {
                (*width, *height)
            }
            _ => (0, 0),
        }
    }

    /// RFC 6381 codec string for playlists and `meta.json`.
    pub fn codec_string(&self) -> String {
        match self {
            SampleEntry::Hevc { config, .. } => config.codec_string(),
            SampleEntry::Av1 { config, .. } => config.codec_string(),
            SampleEntry::Vp9 { config, .. } => config.codec_string(),
            SampleEntry::Opus(_) => "opus".into(),
            SampleEntry::Mp3(h) => h.codec_string(),
            SampleEntry::Ac3(f) if f.enhanced => "ec-3".into(),
            SampleEntry::Ac3(_) => "ac-3".into(),
        }
    }

    /// Writes the sample entry box (for `stsd`). `track_id` becomes the `esds` ES_ID.
    pub fn write(&self, w: &mut BoxWriter, track_id: u32) {
        let (width, height) = self.dimensions();
        match self {
            SampleEntry::Hevc { record, .. } => {
                let at = begin_visual_sample_entry(w, b"hvc1", width, height);
                let c = w.begin(b"hvcC");
                w.bytes(record);
                w.end(c);
                w.end(at);
            }
            SampleEntry::Av1 { record, .. } => {
                let at = begin_visual_sample_entry(w, b"av01", width, height);
                let c = w.begin(b"av1C");
                w.bytes(record);
                w.end(c);
                w.end(at);
            }
            SampleEntry::Vp9 { config, .. } => {
                let at = begin_visual_sample_entry(w, b"vp09", width, height);
                let c = w.begin_full(b"vpcC", 1, 0);
                w.bytes(&config.record());
                w.end(c);
                w.end(at);
            }
            SampleEntry::Opus(head) => {
                // Opus in ISOBMFF 4.3.1: the rate field is 48000 whatever the input rate was.
                let at =
                    begin_audio_sample_entry(w, b"Opus", head.channels as u16, opus::SAMPLE_RATE);
                let c = w.begin(b"dOps");
                w.bytes(&head.to_dops());
                w.end(c);
                w.end(at);
            }
            SampleEntry::Mp3(h) => {
                let at = begin_audio_sample_entry(w, b"mp4a", h.channels as u16, h.sample_rate);
                write_esds(w, track_id as u16, h.object_type(), &[]);
                w.end(at);
            }
            SampleEntry::Ac3(f) => {
                // ETSI TS 102 366 F.3/F.5: channelcount 2 and samplesize 16 whatever the layout
                // (dac3/dec3 is authoritative).
                let kind = if f.enhanced { b"ec-3" } else { b"ac-3" };
                let at = begin_audio_sample_entry(w, kind, 2, f.sample_rate);
                if f.enhanced {
                    let c = w.begin(b"dec3");
                    w.bytes(&f.dec3());
                    w.end(c);
                } else {
                    let c = w.begin(b"dac3");
                    w.bytes(&f.dac3());
                    w.end(c);
                }
                w.end(at);
            }
        }
    }

    /// An `stsd` holding this one entry.
    pub fn write_stsd(&self, w: &mut BoxWriter, track_id: u32) {
        let at = w.begin_full(b"stsd", 0, 0);
        w.u32(1);
        self.write(w, track_id);
        w.end(at);
    }
}

/// A number from `tests/data/codecs/facts.txt` (written by tools/make-codec-fixtures.sh).
#[cfg(test)]
pub(crate) fn fact(facts: &str, key: &str) -> usize {
    facts
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in facts.txt"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, Frame, Track};

    fn entry_bytes(e: &SampleEntry) -> Vec<u8> {
        let mut w = BoxWriter::new();
        e.write(&mut w, 2);
        w.into_inner()
    }

    /// The 28 bytes after an AudioSampleEntry's type: reserved, data_reference_index 1,
    /// reserved, channelcount, samplesize 16, pre_defined, reserved, rate 16.16.
    fn audio_fields(channels: u16, rate: u32) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(&channels.to_be_bytes());
        v.extend_from_slice(&[0, 16, 0, 0, 0, 0]);
        v.extend_from_slice(&(rate << 16).to_be_bytes());
        v
    }

    #[test]
    fn opus_entry_bytes() {
        let head =
            OpusHead::parse(b"OpusHead\x01\x02\x38\x01\x44\xac\x00\x00\x00\x00\x00").unwrap();
        let e = SampleEntry::Opus(head);
        let mut want = b"\x00\x00\x00\x37Opus".to_vec();
        want.extend(audio_fields(2, 48000));
        want.extend_from_slice(b"\x00\x00\x00\x13dOps\x00\x02\x01\x38\x00\x00\xac\x44\x00\x00\x00");
        assert_eq!(entry_bytes(&e), want);
        assert_eq!(
            (e.codec_string(), e.timescale(), e.is_audio()),
            ("opus".into(), 48000, true)
        );
    }

    #[test]
    fn ac3_and_eac3_entry_bytes() {
        let f = SyncFrame::parse(&[0x0b, 0x77, 0, 0, 0x48, 0x40, 0x2f]).unwrap();
        let e = SampleEntry::Ac3(f);
        let mut want = b"\x00\x00\x00\x2fac-3".to_vec();
        want.extend(audio_fields(2, 44100));
        want.extend_from_slice(b"\x00\x00\x00\x0bdac3\x50\x08\x80");
        assert_eq!(entry_bytes(&e), want);
        assert_eq!(e.codec_string(), "ac-3");
        let f = SyncFrame::parse(&[0x0b, 0x77, 0x00, 0xcf, 0x74, 0x87, 0xc0]).unwrap();
        let e = SampleEntry::Ac3(f);
        let mut want = b"\x00\x00\x00\x31ec-3".to_vec();
        want.extend(audio_fields(2, 44100));
        want.extend_from_slice(b"\x00\x00\x00\x0ddec3\x03\x00\x60\x04\x00");
        assert_eq!(entry_bytes(&e), want);
        assert_eq!(e.codec_string(), "ec-3");
    }

    #[test]
    fn mp3_entry_is_mp4a_with_object_type_6b() {
        let h = FrameHeader::parse(&[0xff, 0xfb, 0x90, 0xc4]).unwrap();
        let e = SampleEntry::Mp3(h);
        let mut want = b"\x00\x00\x00\x47mp4a".to_vec();
        want.extend(audio_fields(1, 44100));
        // esds: ES_Descriptor(ES_ID 2, DecoderConfigDescriptor(0x6B, audio stream), SLConfig 2),
        // no DecoderSpecificInfo.
        want.extend_from_slice(b"\x00\x00\x00\x23esds\x00\x00\x00\x00");
        want.extend_from_slice(b"\x03\x15\x00\x02\x00");
        want.extend_from_slice(b"\x04\x0d\x6b\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        want.extend_from_slice(b"\x06\x01\x02");
        assert_eq!(entry_bytes(&e), want);
        assert_eq!(e.codec_string(), "mp4a.6B");
    }

    #[test]
    fn video_entries_carry_their_config_boxes() {
        let vp9 = Vp9Config::parse(&[0, 10, 0x82, 2, 2, 2, 0, 0]).unwrap();
        let e = SampleEntry::Vp9 {
            config: vp9,
            width: 160,
            height: 120,
        };
        let b = entry_bytes(&e);
        assert_eq!(&b[4..8], b"vp09");
        assert_eq!(&b[32..36], &[0, 160, 0, 120]);
        assert_eq!(b.len(), 86 + 20);
        assert_eq!(
            &b[86..],
            b"\x00\x00\x00\x14vpcC\x01\x00\x00\x00\x00\x0a\x82\x02\x02\x02\x00\x00"
        );
        assert_eq!(
            (e.codec_string(), e.timescale()),
            ("vp09.00.10.08".into(), 90000)
        );

        let av1c = [0x81, 0x08, 0x0c, 0x00, 0x0a, 0x01, 0x00];
        let e = SampleEntry::Av1 {
            record: Bytes::copy_from_slice(&av1c),
            config: Av1Config::parse(&av1c).unwrap(),
            width: 640,
            height: 360,
        };
        let b = entry_bytes(&e);
        assert_eq!(&b[4..8], b"av01");
        assert_eq!(&b[86..94], b"\x00\x00\x00\x0fav1C");
        assert_eq!(&b[94..], &av1c);
        assert_eq!(e.codec_string(), "av01.0.08M.08");
    }

    // -----------------------------------------------------------------------------------------
    // End to end: one init segment and one media segment per codec, decoded by FFmpeg 9.

    use crate::mux::fmp4::{self, Run, Sample, SAMPLE_NON_SYNC, SAMPLE_SYNC};

    struct TrackIn {
        entry: SampleEntry,
        /// (decode time, composition offset, sync, payload) in the entry's timescale.
        samples: Vec<(u64, i32, bool, Bytes)>,
        /// Duration of the last sample (and of each audio sample).
        last_duration: u32,
    }

    fn mp4_file(tracks: &[TrackIn]) -> Vec<u8> {
        let mut w = BoxWriter::new();
        w.file_type(b"ftyp", b"iso6", 0x200, &[b"iso6", b"mp41"]);
        let moov = w.begin(b"moov");
        fmp4::write_mvhd(&mut w, 0, tracks.len() as u32 + 1);
        for (i, t) in tracks.iter().enumerate() {
            let id = i as u32 + 1;
            let audio = t.entry.is_audio();
            let (width, height) = t.entry.dimensions();
            let trak = w.begin(b"trak");
            fmp4::write_tkhd(&mut w, id, 0, audio, (width, height), true);
            let mdia = w.begin(b"mdia");
            fmp4::write_mdhd(&mut w, t.entry.timescale(), 0);
            fmp4::write_hdlr(&mut w, audio);
            let minf = w.begin(b"minf");
            fmp4::write_media_header_and_dinf(&mut w, audio);
            let stbl = w.begin(b"stbl");
            t.entry.write_stsd(&mut w, id);
            for kind in [b"stts", b"stsc", b"stco"] {
                let at = w.begin_full(kind, 0, 0);
                w.u32(0);
                w.end(at);
            }
            let at = w.begin_full(b"stsz", 0, 0);
            w.u64(0);
            w.end(at);
            w.end(stbl);
            w.end(minf);
            w.end(mdia);
            w.end(trak);
        }
        let mvex = w.begin(b"mvex");
        for i in 0..tracks.len() {
            let trex = w.begin_full(b"trex", 0, 0);
            for v in [i as u32 + 1, 1, 0, 0, 0] {
                w.u32(v);
            }
            w.end(trex);
        }
        w.end(mvex);
        w.end(moov);
        let runs: Vec<Run> = tracks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut run = Run {
                    track_id: i as u32 + 1,
                    timescale: t.entry.timescale(),
                    decode_time: t.samples.first().map_or(0, |s| s.0),
                    ..Run::default()
                };
                for (k, (dts, cto, sync, data)) in t.samples.iter().enumerate() {
                    let duration = t
                        .samples
                        .get(k + 1)
                        .map_or(t.last_duration, |n| (n.0 - dts) as u32);
                    run.samples.push(Sample {
                        duration,
                        size: data.len() as u32,
                        flags: if *sync { SAMPLE_SYNC } else { SAMPLE_NON_SYNC },
                        cto: *cto,
                    });
                    run.data.push(data.clone());
                }
                run
            })
            .collect();
        let refs: Vec<&Run> = runs.iter().collect();
        let mut out = w.into_inner();
        out.extend(fmp4::media_segment(1, &refs));
        out
    }

    /// The default-track video and audio of an FLV fixture as sample entries and samples.
    fn tracks_of(flv: &[u8], want: &[Codec]) -> Vec<TrackIn> {
        let mut out: Vec<TrackIn> = Vec::new();
        let mut audio_time = 0u64;
        for (tag, body) in crate::media::enhanced::tests::flv_tags(flv) {
            let Some(f) = Frame::parse(tag, 0, Bytes::copy_from_slice(body)) else {
                continue;
            };
            if f.track == Track::Meta || f.track_id != 0 || !want.contains(&f.codec) {
                continue;
            }
            let payload = Bytes::copy_from_slice(f.payload());
            let idx = out
                .iter()
                .position(|t| t.entry.is_audio() == (f.track == Track::Audio));
            if f.config {
                let entry = match f.codec {
                    Codec::Hevc => SampleEntry::Hevc {
                        config: HevcConfig::parse(&payload).unwrap(),
                        record: payload,
                    },
                    Codec::Av1 => {
                        let config = Av1Config::parse(&payload).unwrap();
                        let (width, height) = config.dimensions(&payload).unwrap();
                        SampleEntry::Av1 {
                            config,
                            record: payload,
                            width,
                            height,
                        }
                    }
                    // VP9's size is in its first keyframe (vp9::keyframe_dimensions, tested there).
                    Codec::Vp9 => SampleEntry::Vp9 {
                        config: Vp9Config::parse(&payload).unwrap(),
                        width: 160,
                        height: 120,
                    },
                    Codec::Opus => SampleEntry::Opus(OpusHead::parse(&payload).unwrap()),
                    // AC-3's SequenceStart is empty: the entry comes from the first frame.
                    _ => continue,
                };
                if idx.is_none() {
                    out.push(TrackIn {
                        entry,
                        samples: Vec::new(),
                        last_duration: 0,
                    });
                }
                continue;
            }
            let is_coded = f.enhanced().and_then(|t| t.first).is_none_or(|p| {
                matches!(
                    p.packet_type,
                    crate::media::enhanced::PacketType::CodedFrames
                        | crate::media::enhanced::PacketType::CodedFramesX
                )
            });
            if !is_coded || payload.is_empty() {
                continue;
            }
            let idx = match (idx, f.codec) {
                (Some(i), _) => i,
                (None, Codec::Mp3) => {
                    out.push(TrackIn {
                        entry: SampleEntry::Mp3(FrameHeader::parse(&payload).unwrap()),
                        samples: Vec::new(),
                        last_duration: 0,
                    });
                    out.len() - 1
                }
                (None, Codec::Ac3) => {
                    out.push(TrackIn {
                        entry: SampleEntry::Ac3(SyncFrame::parse(&payload).unwrap()),
                        samples: Vec::new(),
                        last_duration: 0,
                    });
                    out.len() - 1
                }
                (None, _) => continue,
            };
            let t = &mut out[idx];
            if f.track == Track::Video {
                let ms = flv_time(flv, body);
                t.samples.push((ms as u64 * 90, f.cts * 90, f.key, payload));
                t.last_duration = 90 * 1000 / 15;
            } else {
                let n = match &t.entry {
                    SampleEntry::Opus(_) => opus::packet_samples(&payload).unwrap(),
                    SampleEntry::Mp3(h) => h.samples,
                    SampleEntry::Ac3(s) => s.samples,
                    _ => unreachable!(),
                };
                t.samples.push((audio_time, 0, true, payload));
                audio_time += n as u64;
                t.last_duration = n;
            }
        }
        out
    }

    /// The timestamp of the tag whose body is `body` (a slice of `flv`).
    fn flv_time(flv: &[u8], body: &[u8]) -> u32 {
        let at = body.as_ptr() as usize - flv.as_ptr() as usize - 11;
        let h = &flv[at..at + 11];
        u32::from_be_bytes([h[7], h[4], h[5], h[6]])
    }

    use crate::testutil::ffmpeg9;

    /// Decodes `file` with FFmpeg 9, failing on any decode error; frames decoded per stream.
    fn decode(name: &str, file: &[u8]) -> Vec<usize> {
        let dir = std::env::temp_dir().join(format!("rtmpd-sample-entry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.mp4"));
        std::fs::write(&path, file).unwrap();
        let out = std::process::Command::new(ffmpeg9())
            .args(["-hide_banner", "-v", "error", "-xerror", "-i"])
            .arg(&path)
            .args(["-map", "0", "-f", "framemd5", "-"])
            .output()
            .expect("FFmpeg 9 (sh tools/fetch-ffmpeg.sh)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{name}: {stderr}"
        );
        let mut counts = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.starts_with('#') {
                continue;
            }
            let s: usize = line.split(',').next().unwrap().trim().parse().unwrap();
            if counts.len() <= s {
                counts.resize(s + 1, 0);
            }
            counts[s] += 1;
        }
        let _ = std::fs::remove_file(&path);
        counts
    }

    #[test]
    #[ignore = "needs FFmpeg 9: sh tools/fetch-ffmpeg.sh, then cargo test -- --ignored ffmpeg9"]
    fn ffmpeg9_decodes_every_entry() {
        // (fixture, codecs taken, their stream indexes in facts.txt)
        type Case = (
            &'static str,
            &'static [u8],
            &'static [Codec],
            &'static [usize],
        );
        let cases: [Case; 5] = [
            (
                "hevc_aac",
                include_bytes!("../../tests/data/codecs/hevc_aac.flv"),
                &[Codec::Hevc],
                &[0],
            ),
            (
                "av1_opus",
                include_bytes!("../../tests/data/codecs/av1_opus.flv"),
                &[Codec::Av1, Codec::Opus],
                &[0, 1],
            ),
            (
                "vp9_opus",
                include_bytes!("../../tests/data/codecs/vp9_opus.flv"),
                &[Codec::Vp9],
                &[0],
            ),
            (
                "h264_mp3",
                include_bytes!("../../tests/data/codecs/h264_mp3.flv"),
                &[Codec::Mp3],
                &[1],
            ),
            (
                "h264_ac3",
                include_bytes!("../../tests/data/codecs/h264_ac3.flv"),
                &[Codec::Ac3],
                &[1],
            ),
        ];
        let facts = include_str!("../../tests/data/codecs/facts.txt");
        for (name, flv, codecs, streams) in cases {
            let tracks = tracks_of(flv, codecs);
            assert_eq!(tracks.len(), codecs.len(), "{name}");
            let file = mp4_file(&tracks);
            let counts = decode(name, &file);
            let want: Vec<usize> = tracks.iter().map(|t| t.samples.len()).collect();
            // Every sample decodes: FFmpeg's count per stream is the number we wrote, which is
            // every frame of the source.
            assert_eq!(counts, want, "{name}");
            let source: Vec<usize> = streams
                .iter()
                .map(|s| fact(facts, &format!("{name}.flv.frames.{s}")))
                .collect();
            assert_eq!(want, source, "{name}");
        }
    }

    #[test]
    #[ignore = "needs FFmpeg 9: sh tools/fetch-ffmpeg.sh, then cargo test -- --ignored ffmpeg9"]
    fn ffmpeg9_decodes_eac3() {
        // No FLV fixture carries E-AC-3: FFmpeg 9 encodes a raw stream, we split it into frames.
        let data = crate::testutil::eac3_from_ffmpeg9();
        let first = SyncFrame::parse(&data).unwrap();
        let mut samples = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let f = SyncFrame::parse(&data[pos..]).unwrap();
            let frame = Bytes::copy_from_slice(&data[pos..pos + f.frame_len]);
            samples.push((samples.len() as u64 * f.samples as u64, 0, true, frame));
            pos += f.frame_len;
        }
        let n = samples.len();
        let file = mp4_file(&[TrackIn {
            entry: SampleEntry::Ac3(first),
            samples,
            last_duration: first.samples,
        }]);
        assert_eq!(decode("eac3", &file), vec![n]);
    }
}
