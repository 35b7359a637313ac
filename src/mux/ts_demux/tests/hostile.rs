//! The TS demuxer against hostile or broken input: a lost packet, garbage between packets,
//! random bytes and mutated fixtures (bounded state, no panic), a fuzz regression, joining
//! mid-stream, and the errors' one-line messages.

use super::*;

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

/// fuzz/regressions/ts_demux/crash-e8f5b4d4...: a piece of mostly 0xff with a sync byte here and
/// there made more errors than the queue holds (35) in one push. The target wrongly expected every
/// error queued; the demuxer was right: the counter has them all, the queue the first 32, and
/// frames and counters do not depend on the split.
#[test]
fn fuzz_ts_demux_crash_e8f5b4d4_more_errors_in_one_push_than_the_queue_holds() {
    let input = include_bytes!(
        "../../../../fuzz/regressions/ts_demux/crash-e8f5b4d4be71fc5e156cc6d2f7b8adc217468300"
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
