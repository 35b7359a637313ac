//! Tests of `llhls::window`: part and segment cutting, INDEPENDENT, the byte cap, lookups,
//! discontinuities and codec changes, hostile clocks, and a real decoder over the fixture.

use super::*;
use crate::media::frame::{TAG_AUDIO, TAG_VIDEO};
use crate::mux::bmff::boxes;
use crate::mux::flv_demux::read_all;
use crate::testutil::TempDir;
use std::process::Command;

pub(crate) fn fixture_frames() -> Vec<Frame> {
    let path = format!("{}/tests/data/fixture.flv", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    read_all(&data).unwrap().2
}

/// The fixture's real sequence headers (H.264 320x240, AAC 44.1 kHz stereo).
pub(crate) fn configs() -> (Frame, Frame) {
    let frames = fixture_frames();
    let v = frames
        .iter()
        .find(|f| f.config && f.track == Track::Video)
        .unwrap();
    let a = frames
        .iter()
        .find(|f| f.config && f.track == Track::Audio)
        .unwrap();
    (at(v, 0), at(a, 0))
}

pub(crate) fn at(f: &Frame, time: u64) -> Frame {
    let mut f = f.clone();
    f.time = time;
    f.dts = time as u32;
    f
}

pub(crate) fn video(time: u64, key: bool, size: usize) -> Frame {
    let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.resize(5 + size, 0x55);
    Frame::parse(TAG_VIDEO, time as u32, Bytes::from(body)).unwrap()
}

pub(crate) fn audio(time: u64) -> Frame {
    let mut body = vec![0xaf, 1];
    body.resize(2 + 20, 0x33);
    Frame::parse(TAG_AUDIO, time as u32, Bytes::from(body)).unwrap()
}

/// A window fed video only: 25 fps, a keyframe every 50 frames (2 s), `frames` of them.
pub(crate) fn video_window(cfg: WindowConfig, frames: u64) -> LiveWindow {
    let (vc, _) = configs();
    let mut w = LiveWindow::new(cfg);
    let _ = w.push(&vc);
    for i in 0..frames {
        let _ = w.push(&video(i * 40, i.is_multiple_of(50), 100));
    }
    w
}

fn top_boxes(data: &[u8]) -> Vec<String> {
    boxes(data)
        .map(|b| String::from_utf8_lossy(&b.unwrap().0).into_owned())
        .collect()
}

#[test]
fn parts_stay_under_the_target_and_segments_start_at_keyframes() {
    // Held until the first media frame arrives, then 4.4 s of video.
    let w = video_window(WindowConfig::default(), 110);
    let segs: Vec<&Segment> = w.segments().collect();
    assert_eq!(segs.len(), 3);
    let durations = |s: &Segment| s.parts.iter().map(|p| p.duration_ms).collect::<Vec<_>>();
    assert_eq!(durations(segs[0]), vec![320, 320, 320, 320, 320, 320, 80]);
    assert_eq!(durations(segs[1]), vec![320, 320, 320, 320, 320, 320, 80]);
    assert_eq!(durations(segs[2]), vec![320]);
    assert!(segs[0].complete && segs[1].complete && !segs[2].complete);
    assert_eq!(segs[1].start_time, 2000);
    let ids: Vec<u64> = segs
        .iter()
        .flat_map(|s| s.parts.iter().map(|p| p.id))
        .collect();
    assert_eq!(ids, (0..15).collect::<Vec<_>>());
    for s in &segs {
        // INDEPENDENT exactly on the part that starts with the keyframe.
        let ind: Vec<bool> = s.parts.iter().map(|p| p.independent).collect();
        assert!(ind[0] && ind[1..].iter().all(|i| !i), "{ind:?}");
        // The first part carries the styp; the others are moof+mdat, so they concatenate.
        assert_eq!(top_boxes(&s.parts[0].data), ["styp", "moof", "mdat"]);
        for p in &s.parts[1..] {
            assert_eq!(top_boxes(&p.data), ["moof", "mdat"]);
        }
    }
    assert_eq!(
        w.edge(),
        Edge {
            complete: Some(1),
            last_part: Some((2, 0))
        }
    );
    assert_eq!(w.preload_hint(), Some(15));
    assert_eq!(
        w.hint_want(),
        Want::Block {
            msn: 2,
            part: Some(1)
        }
    );
}

#[test]
fn parts_with_audio_and_video_are_independent_only_at_keyframes() {
    let (vc, ac) = configs();
    let mut w = LiveWindow::new(WindowConfig::default());
    let _ = w.push(&vc);
    let _ = w.push(&ac);
    // 30 fps video (keyframe each second), 44.1 kHz AAC frames, interleaved by time.
    let mut events: Vec<Frame> = (0..180u64)
        .map(|i| video(i * 1000 / 30, i.is_multiple_of(30), 200))
        .collect();
    events.extend((0..260u64).map(|i| audio(i * 1024 * 1000 / 44_100)));
    events.sort_by_key(|f| f.time);
    for f in &events {
        let _ = w.push(f);
    }
    let mut parts = 0;
    for s in w.segments() {
        for (k, p) in s.parts.iter().enumerate() {
            assert!(p.duration_ms <= 333 || k + 1 == s.parts.len(), "{p:?}");
            let moof = crate::mux::bmff::find(&p.data, b"moof").unwrap();
            assert!(moof.is_some());
            assert_eq!(p.independent, k == 0, "segment {} part {k}", s.msn);
            // Both tracks in every part, audio included.
            let trafs = boxes(moof.unwrap())
                .filter(|b| b.as_ref().unwrap().0 == *b"traf")
                .count();
            assert_eq!(trafs, 2);
            parts += 1;
        }
        // Segments end at the first keyframe after 2 s: 2 s each with a GOP of 1 s.
        if s.complete {
            assert_eq!(s.duration_ms(), 2000, "{}", s.msn);
        }
    }
    assert!(parts > 12);
    assert_eq!(w.segments().filter(|s| s.complete).count(), 2);
}

#[test]
fn audio_only_parts_are_all_independent_and_segments_cut_on_time() {
    let (_, ac) = configs();
    let mut w = LiveWindow::new(WindowConfig::default());
    let _ = w.push(&ac);
    // 44.1 kHz AAC: 1024 samples = 23.2 ms a frame, 6 s of it.
    for i in 0..259u64 {
        let _ = w.push(&audio(i * 1024 * 1000 / 44_100));
    }
    assert!(!w.has_video());
    let segs: Vec<&Segment> = w.segments().collect();
    assert_eq!(segs.iter().filter(|s| s.complete).count(), 2);
    for s in &segs {
        assert!(s
            .parts
            .iter()
            .all(|p| p.independent && p.duration_ms <= 333));
        if s.complete {
            assert!(s.duration_ms().abs_diff(2000) <= 24, "{}", s.duration_ms());
        }
    }
}

#[test]
fn keeps_four_segments_and_never_goes_over_the_byte_cap() {
    let (vc, ac) = configs();
    let cfg = WindowConfig {
        max_bytes: 300_000,
        ..WindowConfig::default()
    };
    let mut w = LiveWindow::new(cfg);
    let _ = w.push(&vc);
    let _ = w.push(&ac);
    let mut rng = crate::testutil::Rng::new(7);
    let mut last_front = 0;
    for i in 0..1500u64 {
        // Frame sizes from 100 B to 12 kB: about 1.2 MB per 2 s segment at the top.
        let size = 100 + rng.below(12_000);
        let _ = w.push(&video(i * 40, i.is_multiple_of(50), size));
        let _ = w.push(&audio(i * 40 + 3));
        assert!(w.bytes() <= 300_000, "{} bytes at frame {i}", w.bytes());
        let held: usize = w.segments().map(|s| s.bytes()).sum::<usize>()
            + w.inits.iter().map(|(_, b)| b.len()).sum::<usize>();
        assert_eq!(held, w.bytes());
        assert!(w.segments().filter(|s| s.complete).count() <= 4);
        // Oldest first: the head only moves forward and the MSNs stay contiguous.
        let msns: Vec<u64> = w.segments().map(|s| s.msn).collect();
        if let Some(&front) = msns.first() {
            assert!(front >= last_front);
            last_front = front;
            assert!(msns.windows(2).all(|p| p[1] == p[0] + 1), "{msns:?}");
        }
    }
    assert!(last_front > 10);
    // An uncapped window of the same stream keeps 4 complete segments behind the open one.
    let w = video_window(WindowConfig::default(), 1500);
    let msns: Vec<u64> = w.segments().map(|s| s.msn).collect();
    assert_eq!(msns, vec![25, 26, 27, 28, 29]);
}

#[test]
fn an_open_segment_over_the_cap_is_dropped_and_the_next_starts_clean() {
    let (vc, _) = configs();
    let mut w = LiveWindow::new(WindowConfig {
        max_bytes: 0, // clamped to the minimum
        ..WindowConfig::default()
    });
    let _ = w.push(&vc);
    // A 20 s GOP of 30 kB frames: the open segment passes the cap long before it could close.
    for i in 0..507u64 {
        let _ = w.push(&video(i * 40, i.is_multiple_of(500), 30_000));
        assert!(w.bytes() <= MIN_BYTES);
    }
    // After the drop, video waits for a keyframe: the segment after it starts independent.
    let first = w.segments().next().unwrap();
    assert!(first.msn == 1 && first.discontinuity, "{first:?}");
    assert_eq!(first.start_time, 20_000);
    assert!(first.parts[0].independent);
}

#[test]
fn names_resolve_to_shared_bytes_and_everything_else_is_missing() {
    let w = video_window(WindowConfig::default(), 110);
    let (_, init) = w.init().unwrap();
    assert_eq!(w.lookup("init.mp4"), Lookup::Found(vec![init.clone()]));
    assert_eq!(top_boxes(init), ["ftyp", "moov"]);
    let seg0: Vec<Bytes> = w
        .segments()
        .next()
        .unwrap()
        .parts
        .iter()
        .map(|p| p.data.clone())
        .collect();
    let Lookup::Found(chunks) = w.lookup("seg0.m4s") else {
        panic!("seg0");
    };
    assert_eq!(chunks, seg0);
    // The chunks are the parts themselves, not copies.
    assert_eq!(chunks[3].as_ptr(), seg0[3].as_ptr());
    let joined: Vec<u8> = chunks.concat();
    assert_eq!(top_boxes(&joined)[..3], ["styp", "moof", "mdat"]);
    assert_eq!(w.lookup("part3.m4s"), Lookup::Found(vec![seg0[3].clone()]));
    // The open segment and the hinted part wait; the part after the hint is not known yet.
    assert_eq!(
        w.lookup("seg2.m4s"),
        Lookup::Pending(Want::Block { msn: 2, part: None })
    );
    assert_eq!(w.lookup("part15.m4s"), Lookup::Pending(w.hint_want()));
    for name in [
        "part16.m4s",
        "seg3.m4s",
        "init1.mp4",
        "init0.mp4",
        "seg-1.m4s",
        "seg+1.m4s",
        "part.m4s",
        "seg1.m4s.m4s",
        "seg99999999999999999999.m4s",
        "index.m3u8",
        "",
    ] {
        assert_eq!(w.lookup(name), Lookup::Missing, "{name}");
    }
    // Evicted parts and segments are gone.
    let w = video_window(WindowConfig::default(), 1500);
    assert_eq!(w.lookup("seg0.m4s"), Lookup::Missing);
    assert_eq!(w.lookup("part0.m4s"), Lookup::Missing);
    assert!(matches!(w.lookup("seg25.m4s"), Lookup::Found(_)));
}

#[test]
fn a_discontinuity_starts_a_new_segment_with_the_flag() {
    let (vc, _) = configs();
    let mut w = LiveWindow::new(WindowConfig::default());
    let _ = w.push(&vc);
    for i in 0..30u64 {
        let mut f = video(i * 40, i.is_multiple_of(50), 100);
        // The source's clock jumped at frame 20 (time stays continuous: `media::time`).
        f.discontinuity = i == 20;
        let _ = w.push(&f);
    }
    let segs: Vec<&Segment> = w.segments().collect();
    assert_eq!(segs.len(), 2);
    assert!(segs[0].complete && !segs[0].discontinuity);
    assert_eq!(segs[0].duration_ms(), 800);
    assert!(segs[1].discontinuity && segs[1].start_time == 800);
    assert_eq!(segs[1].init, 0);
}

#[test]
fn a_codec_change_brings_a_new_init_and_a_discontinuity() {
    let (vc, ac) = configs();
    let mut w = LiveWindow::new(WindowConfig::default());
    let _ = w.push(&vc);
    let _ = w.push(&ac);
    let mut n = 0u64;
    let mut feed = |w: &mut LiveWindow, frames: u64| {
        for _ in 0..frames {
            let _ = w.push(&video(n * 40, n.is_multiple_of(50), 100));
            let _ = w.push(&audio(n * 40 + 1));
            n += 1;
        }
    };
    feed(&mut w, 60);
    // The same header again changes nothing; a different one (other SPS bytes) does.
    let _ = w.push(&at(&vc, 2400));
    assert_eq!(w.init().unwrap().0, 0);
    let mut other = vc.data.to_vec();
    let last = other.len() - 1;
    other[last] ^= 1;
    let changed = Frame::parse(TAG_VIDEO, 2400, Bytes::from(other)).unwrap();
    let _ = w.push(&changed);
    assert_eq!(w.init().unwrap().0, 1);
    // Inter frames until the next keyframe are dropped (the new decoder needs one first).
    feed(&mut w, 60);
    let segs: Vec<&Segment> = w.segments().collect();
    let after = segs.iter().find(|s| s.init == 1).unwrap();
    assert!(after.discontinuity && after.parts[0].independent);
    assert!(matches!(w.lookup("init1.mp4"), Lookup::Found(_)));
    assert!(matches!(w.lookup("init.mp4"), Lookup::Found(_)));
    // Once no segment needs init 0 it leaves.
    feed(&mut w, 600);
    assert_eq!(w.lookup("init.mp4"), Lookup::Missing);
    assert_eq!(w.inits.len(), 1);
}

#[test]
fn a_clock_that_stands_still_cannot_grow_memory() {
    let (vc, ac) = configs();
    let mut w = LiveWindow::new(WindowConfig {
        max_bytes: 1 << 20,
        ..WindowConfig::default()
    });
    let _ = w.push(&vc);
    let _ = w.push(&ac);
    for i in 0..20_000u64 {
        let _ = w.push(&video(0, i == 0, 300));
        let _ = w.push(&audio(0));
        assert!(w.bytes() <= 1 << 20);
        assert!(w.open_part_samples <= MAX_PART_SAMPLES);
    }
    // A stream with nothing describable holds a bounded prelude only.
    let mut w = LiveWindow::new(WindowConfig::default());
    for i in 0..5000u64 {
        let _ = w.push(&video(i, true, 10));
        assert!(w.held.len() <= MAX_HELD_FRAMES);
    }
    assert!(w.segments().next().is_none() && w.preload_hint().is_none());
}

#[test]
fn finish_closes_the_last_part_and_segment() {
    let mut w = video_window(WindowConfig::default(), 110);
    w.finish();
    let last = w.segments().last().unwrap();
    assert!(last.complete && w.ended());
    assert_eq!(last.duration_ms(), 400);
    assert_eq!(w.preload_hint(), None);
    assert_eq!(w.lookup("part15.m4s").clone(), {
        let p = &last.parts[1];
        assert_eq!(p.id, 15);
        Lookup::Found(vec![p.data.clone()])
    });
    assert!(!w.push(&video(5000, true, 10)));
}

/// Hostile timing and content: random clock jumps both ways, random keyframes, repeated and
/// changed sequence headers, discontinuities, empty and huge frames. No panic, the cap holds,
/// and every URI the playlist names resolves (or is the hinted part).
#[test]
fn random_streams_keep_every_invariant() {
    let (vc, ac) = configs();
    for seed in 1..=12u64 {
        let mut rng = crate::testutil::Rng::new(seed);
        let mut w = LiveWindow::new(WindowConfig {
            max_bytes: 400_000,
            ..WindowConfig::default()
        });
        let mut t = 0u64;
        for _ in 0..3000 {
            t = match rng.below(100) {
                0 => t.saturating_sub(rng.below(5000) as u64),
                1 => t + rng.below(100_000) as u64,
                2..=9 => t,
                _ => t + rng.below(60) as u64,
            };
            let mut f = match rng.below(40) {
                0 => at(&vc, t),
                1 => at(&ac, t),
                2 => {
                    let mut other = vc.data.to_vec();
                    let last = other.len() - 1;
                    other[last] ^= rng.below(256) as u8;
                    Frame::parse(TAG_VIDEO, t as u32, Bytes::from(other)).unwrap()
                }
                3 => video(t, false, 0),
                4 => video(t, rng.below(2) == 0, 40_000 + rng.below(40_000)),
                5..=20 => audio(t),
                _ => video(t, rng.below(30) == 0, rng.below(3000)),
            };
            f.time = t;
            f.discontinuity = rng.below(200) == 0;
            let _ = w.push(&f);
            assert!(w.bytes() <= 400_000, "seed {seed}: {} bytes", w.bytes());
            if rng.below(50) == 0 {
                let Some(text) = super::super::playlist::render(&w, Some(0)) else {
                    continue;
                };
                for uri in text
                    .lines()
                    .filter_map(|l| {
                        l.split("URI=\"")
                            .nth(1)
                            .map(|r| r.split('"').next().unwrap_or(""))
                    })
                    .chain(text.lines().filter(|l| l.starts_with("seg")))
                {
                    let hinted = w.preload_hint().map(part_name).as_deref() == Some(uri);
                    let found = matches!(w.lookup(uri), Lookup::Found(_));
                    assert!(found || hinted, "seed {seed}: {uri} in\n{text}");
                }
            }
        }
        w.finish();
        assert!(w.bytes() <= 400_000);
        assert!(w.next_part > 50, "seed {seed}: only {} parts", w.next_part);
    }
}

/// ffmpeg and ffprobe present? Without them the decoder test skips, unless
/// RTMPD_REQUIRE_TOOLS=1 makes that a failure.
fn tools() -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|t| {
        Command::new(t)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        assert!(
            std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "ffmpeg/ffprobe required (RTMPD_REQUIRE_TOOLS=1)"
        );
        println!("skipped: ffmpeg not found");
    }
    ok
}

/// `frames` through a window that keeps them all, written to `dir` with the static playlist
/// (init, segments and parts): the playlist's path.
fn write_out(frames: &[Frame], dir: &TempDir) -> std::path::PathBuf {
    let mut w = LiveWindow::new(WindowConfig {
        segments: 8,
        ..WindowConfig::default()
    });
    let parts: u32 = frames.iter().map(|f| w.push(f) as u32).sum();
    w.finish();
    assert!(parts >= 9, "{parts} parts");
    assert_eq!(
        w.segments().next().unwrap().msn,
        0,
        "the whole input is kept"
    );
    let text = super::super::playlist::render(&w, Some(1_780_000_000_000)).unwrap();
    assert!(text.contains("#EXT-X-PART:") && text.ends_with("#EXT-X-ENDLIST\n"));
    let playlist = dir.write("index.m3u8", text.as_bytes());
    let (_, init) = w.init().unwrap();
    dir.write("init.mp4", init);
    for s in w.segments() {
        let Lookup::Found(chunks) = w.lookup(&segment_name(s.msn)) else {
            panic!("seg{}", s.msn);
        };
        dir.write(&segment_name(s.msn), &chunks.concat());
        for p in &s.parts {
            dir.write(&part_name(p.id), &p.data);
        }
    }
    playlist
}

/// FFmpeg's error output decoding `input`.
fn decode_errors(input: &std::path::Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(input)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        errors
    } else {
        format!("exit {:?}: {errors}", out.status)
    }
}

/// ffprobe's count of `what` (`frames` or `packets`) in stream `sel` of `input`.
fn count(input: &std::path::Path, what: &str, sel: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            &format!("-count_{what}"),
            "-select_streams",
            sel,
        ])
        .args([
            "-show_entries",
            &format!("stream=nb_read_{what}"),
            "-of",
            "csv=p=0",
        ])
        .arg(input)
        .output()
        .unwrap();
    // One line per program and per stream (some with a trailing field): the first number is
    // the stream's.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let first = line.split(',').next().unwrap_or("");
    first
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sel}: {text:?}"))
}

/// The fixture through a window, written out with a static playlist: FFmpeg reads the playlist,
/// decodes every segment without an error, and finds every video and audio frame.
#[test]
fn ffmpeg_decodes_the_window_of_the_fixture() {
    if !tools() {
        return;
    }
    let dir = TempDir::new("llhls");
    let playlist = write_out(&fixture_frames(), &dir);
    let errors = decode_errors(&playlist);
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(count(&playlist, "frames", "v:0"), 250);
    assert_eq!(count(&playlist, "frames", "a:0"), 432);
}

/// HEVC, AV1, VP9, Opus, MP3 and AC-3 (tests/data/codecs) go through the window the same way.
#[test]
fn ffmpeg_decodes_the_window_of_every_codec_fixture() {
    if !tools() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/codecs");
    let facts = std::fs::read_to_string(root.join("facts.txt")).unwrap();
    for name in [
        "hevc_aac.flv",
        "av1_opus.flv",
        "vp9_opus.flv",
        "h264_mp3.flv",
        "h264_ac3.flv",
    ] {
        let data = std::fs::read(root.join(name)).unwrap();
        let frames = read_all(&data).unwrap().2;
        let dir = TempDir::new("llhls-codec");
        let playlist = write_out(&frames, &dir);
        let errors = decode_errors(&playlist);
        assert!(errors.trim().is_empty(), "{name}: {errors}");
        let fact = |k: &str| crate::mux::sample_entry::fact(&facts, &format!("{name}.{k}")) as u64;
        let (v, a) = (
            count(&playlist, "packets", "v:0"),
            count(&playlist, "packets", "a:0"),
        );
        // As the fMP4 recorder's test: packets within one (video) or two (audio priming).
        assert!(v.abs_diff(fact("frames.0")) <= 1, "{name}: video {v}");
        assert!(a.abs_diff(fact("frames.1")) <= 2, "{name}: audio {a}");
    }
}
