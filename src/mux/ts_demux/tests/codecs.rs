//! The TS demuxer's codecs: H.264, HEVC, AAC, MP3, AC-3 and E-AC-3 round trips through our
//! muxer and out of FFmpeg's files (ffprobe's counts), Annex B splitting, an H.264 parameter set
//! change, and FFmpeg 9 decoding what came out. Not PSI, PES framing or timestamps.

use super::*;

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
