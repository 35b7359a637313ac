//! Tests of `llhls::playlist`: the exact text from a known sequence, the sliding window, maps
//! and discontinuities, the end, and blocking reload parked on and woken by real window parts.

use super::*;
use crate::llhls::park::{parse_query, Parked};
use crate::llhls::window::tests::{audio, configs, video, video_window};
use crate::llhls::window::{Lookup, WindowConfig};
use crate::media::frame::TAG_VIDEO;
use crate::media::Frame;
use bytes::Bytes;
use std::time::{Duration, Instant};

const EPOCH: i64 = 1_780_000_000_000;

fn parts(first: u64, last: u64) -> String {
    (first..=last)
        .map(|id| {
            let (dur, ind) = match (id - first, last - first) {
                (0, _) => ("0.320", ",INDEPENDENT=YES"),
                (k, n) if k == n && n == 6 => ("0.080", ""),
                _ => ("0.320", ""),
            };
            format!("#EXT-X-PART:DURATION={dur},URI=\"part{id}.m4s\"{ind}\n")
        })
        .collect()
}

#[test]
fn renders_a_known_sequence_exactly() {
    // 4.4 s of 25 fps video, a keyframe every 2 s: two complete segments and one open part.
    let w = video_window(WindowConfig::default(), 110);
    let want = format!(
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-MAP:URI=\"init.mp4\"\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.999\n\
         #EXT-X-PART-INF:PART-TARGET=0.333\n\
         #EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:40.000Z\n{}#EXTINF:2.000,\nseg0.m4s\n\
         #EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:42.000Z\n{}#EXTINF:2.000,\nseg1.m4s\n\
         #EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:44.000Z\n\
         #EXT-X-PART:DURATION=0.320,URI=\"part14.m4s\",INDEPENDENT=YES\n\
         #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part15.m4s\"\n",
        parts(0, 6),
        parts(7, 13)
    );
    assert_eq!(render(&w, Some(EPOCH)).unwrap(), want);
    // Without a wall clock, no PROGRAM-DATE-TIME.
    assert!(!render(&w, None).unwrap().contains("PROGRAM-DATE-TIME"));
    // Nothing to list before the first part.
    let (vc, _) = configs();
    let mut empty = LiveWindow::new(WindowConfig::default());
    let _ = empty.push(&vc);
    assert_eq!(render(&empty, Some(EPOCH)), None);
}

#[test]
fn the_window_slides_and_only_recent_segments_list_their_parts() {
    // 12.4 s: segments 0-5 complete, 2-5 kept, 6 open.
    let w = video_window(WindowConfig::default(), 310);
    let text = render(&w, Some(EPOCH)).unwrap();
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"));
    assert!(!text.contains("seg1.m4s") && text.contains("seg2.m4s\n"));
    // Three target durations (6 s) from the end: seg2 ends 6.32 s before it, seg3 4.32 s.
    assert!(!text.contains("URI=\"part20.m4s\""));
    assert!(text.contains("URI=\"part21.m4s\",INDEPENDENT=YES"));
    let last_seg = text.rfind("seg5.m4s").unwrap();
    let hint = text.rfind("#EXT-X-PRELOAD-HINT").unwrap();
    assert!(text[last_seg..hint].contains("URI=\"part42.m4s\",INDEPENDENT=YES"));
    assert!(text.ends_with("URI=\"part43.m4s\"\n"));
    // Every listed segment's EXTINF is the sum of its parts and the lookups serve each name.
    for s in w.segments() {
        assert!(matches!(
            w.lookup(&crate::llhls::window::segment_name(s.msn)),
            Lookup::Found(_) | Lookup::Pending(_)
        ));
    }
}

#[test]
fn long_gops_raise_the_target_duration_and_the_end_closes_the_playlist() {
    let (vc, _) = configs();
    let mut w = LiveWindow::new(WindowConfig::default());
    let _ = w.push(&vc);
    // Keyframes every 3.2 s.
    for i in 0..200u64 {
        let _ = w.push(&video(i * 40, i.is_multiple_of(80), 100));
    }
    let text = render(&w, Some(EPOCH)).unwrap();
    assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");
    assert!(text.contains("#EXTINF:3.200,\nseg0.m4s\n"));
    w.finish();
    let text = render(&w, Some(EPOCH)).unwrap();
    assert!(
        text.ends_with("#EXTINF:1.600,\nseg2.m4s\n#EXT-X-ENDLIST\n"),
        "{text}"
    );
    assert!(!text.contains("PRELOAD-HINT"));
}

#[test]
fn discontinuities_and_new_inits_are_written_where_they_happen() {
    let (vc, ac) = configs();
    let mut w = LiveWindow::new(WindowConfig::default());
    let _ = w.push(&vc);
    let _ = w.push(&ac);
    for i in 0..200u64 {
        if i == 120 {
            // New SPS bytes at 4.8 s, just before the keyframe.
            let mut other = vc.data.to_vec();
            let last = other.len() - 1;
            other[last] ^= 1;
            let _ = w.push(&Frame::parse(TAG_VIDEO, 4800, Bytes::from(other)).unwrap());
        }
        let mut f = video(i * 40, i.is_multiple_of(50) || i == 120, 100);
        f.discontinuity = i == 60; // the source's clock jumped at 2.4 s
        let _ = w.push(&f);
        let _ = w.push(&audio(i * 40 + 5));
    }
    let text = render(&w, Some(EPOCH)).unwrap();
    // seg0 0-2 s, seg1 2-2.4 s, seg2 (discontinuity) 2.4-4.8 s (the keyframe at 4 s is under
    // 2 s into it), seg3 (new init, discontinuity) from 4.8 s.
    let expect_in_order = [
        "#EXTINF:2.000,\nseg0.m4s\n",
        "#EXTINF:0.400,\nseg1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:42.400Z\n",
        "#EXTINF:2.400,\nseg2.m4s\n#EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-DISCONTINUITY\n\
         #EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:44.800Z\n#EXT-X-PART:DURATION=0.320,URI=\"part",
    ];
    let mut from = 0;
    for e in expect_in_order {
        let at = text[from..]
            .find(e)
            .unwrap_or_else(|| panic!("{e:?} in\n{text}"));
        from += at + e.len();
    }
    assert!(text.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
    assert!(!text.contains("DISCONTINUITY-SEQUENCE"));
    // Once the discontinuous segments leave the head, the sequence counts them.
    for i in 200..400u64 {
        let _ = w.push(&video(i * 40, i.is_multiple_of(50), 100));
    }
    let text = render(&w, Some(EPOCH)).unwrap();
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{text}");
    assert!(text.contains("#EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-SERVER-CONTROL"));
    assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
}

#[test]
fn blocking_reload_parks_and_wakes_on_real_parts() {
    let mut w = video_window(WindowConfig::default(), 110);
    let t0 = Instant::now();
    let mut parked = Parked::new(8, Duration::from_secs(6));
    // The edge is (msn 2, part 0); seg 1 complete.
    let ready = parse_query("_HLS_msn=2&_HLS_part=0").unwrap();
    assert_eq!(answerable(&w, ready), Verdict::Ready);
    let next = parse_query("_HLS_msn=2&_HLS_part=1").unwrap();
    assert_eq!(answerable(&w, next), Verdict::Wait);
    let seg = parse_query("_HLS_msn=2").unwrap();
    assert_eq!(answerable(&w, seg), Verdict::Wait);
    assert_eq!(
        answerable(&w, parse_query("_HLS_msn=5").unwrap()),
        Verdict::TooFar
    );
    parked.park(1, next, t0).unwrap();
    parked.park(2, seg, t0).unwrap();
    // A GET for the hinted part parks with the window's own want.
    let Lookup::Pending(hinted) = w.lookup("part15.m4s") else {
        panic!("part15 not pending");
    };
    parked.park(3, hinted, t0).unwrap();
    let mut woken: Vec<(u64, u64)> = Vec::new();
    for i in 110..160u64 {
        let added = w.push(&video(i * 40, i.is_multiple_of(50), 100));
        let ready = wake(&w, &mut parked);
        // Nothing wakes on a frame that made no part.
        assert!(added || ready.is_empty());
        woken.extend(ready.iter().map(|r| (r.id, i)));
    }
    // Part 15 (seg 2 part 1) is cut before frame 116 (4.64 s); seg 2 completes before frame 150.
    assert_eq!(woken, vec![(1, 116), (3, 116), (2, 150)]);
    assert!(matches!(w.lookup("part15.m4s"), Lookup::Found(_)));
    assert!(parked.is_empty());
    // At the end every waiting request is answered.
    parked
        .park(4, parse_query("_HLS_msn=4").unwrap(), t0)
        .unwrap();
    w.finish();
    assert_eq!(
        wake(&w, &mut parked)
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![4]
    );
}
