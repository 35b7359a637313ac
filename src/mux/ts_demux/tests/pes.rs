//! The TS demuxer's PES assembly: every fixture fed one byte at a time and at every split of its
//! start, PES header edge cases, the video and audio PES caps, and `end_live` with a whole or cut
//! last PES. Not the tables or hostile input.

use super::*;

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
                crate::mux::ts_demux::find_start_code(&es, from),
                naive(&es, from),
                "{es:?} from {from}"
            );
        }
    }
}
