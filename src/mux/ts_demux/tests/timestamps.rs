//! The TS demuxer's times: PTS/DTS across the 33-bit wrap (ours and FFmpeg's files), several
//! audio frames in one PES timed apart, video a little before the first frame, and the frames
//! passing the hub's ingest normaliser. Not codecs or framing.

use super::*;

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
