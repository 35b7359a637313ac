//! The audio bridge end to end in memory: a 1 kHz stereo AAC tone, as frames a publisher sends,
//! through the bridge's worker thread, then with H.264 video over a WHEP session to a str0m
//! client on a fake clock. The client's Opus must decode to the tone (frequency within 1%,
//! level within 1 dB, no quiet 10 ms window) that starts at its stream time against the video's
//! RTP times (within 20 ms).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::tests::{h264_opus_units, Net, Pair};
use super::*;
use crate::audio::testing::{aac_tone, decode_opus, measure};
use crate::audio::worker::{Bridge, BridgeOutput};
use crate::media::frame::{Codec, Frame, TAG_AUDIO};

/// The tone starts here (stream ms): a video frame's time in fixture.flv (80 + 23 x 40).
const ONSET_MS: u64 = 1000;

fn aac_frame(time: u64, config: bool, payload: &[u8]) -> Frame {
    let mut data = vec![0xAF, if config { 0 } else { 1 }];
    data.extend_from_slice(payload);
    let mut f = Frame::parse(TAG_AUDIO, time as u32, Bytes::from(data)).unwrap();
    f.time = time;
    f
}

/// Waits (real time, bounded) until the worker has taken `n` frames, then takes its packets.
fn drain(bridge: &Bridge, n: u64, out: &mut Vec<MediaUnit>) {
    let until = Instant::now() + Duration::from_secs(20);
    while bridge
        .shared()
        .frames_in
        .load(std::sync::atomic::Ordering::SeqCst)
        < n
    {
        assert!(Instant::now() < until, "the bridge's worker stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Its packets for those frames were queued before frames_in moved on.
    while let Some(BridgeOutput::Packet(p)) = bridge.poll() {
        out.push(MediaUnit {
            kind: UnitKind::Audio,
            codec: Codec::Opus,
            key: true,
            pts_ms: p.time_ms,
            data: p.data.into(),
        });
    }
}

#[test]
fn an_aac_tone_reaches_a_webrtc_viewer_as_opus_in_time_with_the_video() {
    let (packager, video, _) = h264_opus_units();
    let mut codecs = packager.codecs().clone();
    // The stream is H.264 + AAC; the session is answered with Opus for it (server::webrtc).
    codecs.audio = Some(Codec::Opus);
    let mut pair = Pair::new(Net::Udp, &codecs);
    pair.connect();

    // 1 s of silence from stream time 0, then 1.6 s of tone, AAC-LC at 44.1 kHz.
    let (asc, units) = aac_tone(44_100, ONSET_MS, 1600, 0);
    let bridge = Bridge::start("test/tone".into(), None, Arc::new(|| {})).unwrap();
    assert!(bridge.push(&aac_frame(0, true, &asc)));
    let mut fed = 1;
    let mut units = units.into_iter().peekable();
    let mut video = video.iter().peekable();
    let mut opus = Vec::new();
    // Real time, 20 ms a step: what the publisher sent by then goes in, what came out is sent.
    for step in 0..(2700 / 20) {
        let t = step * 20;
        while let Some(v) = video.next_if(|v| v.pts_ms <= t) {
            pair.send(v);
        }
        while let Some((time, u)) = units.next_if(|(time, _)| *time <= t) {
            assert!(
                bridge.push(&aac_frame(time, false, &u)),
                "the in-queue is bounded at 64"
            );
            fed += 1;
        }
        drain(&bridge, fed, &mut opus);
        for u in opus.drain(..) {
            pair.send(&u);
        }
        pair.now += Duration::from_millis(20);
        pair.tick();
    }
    pair.run_until(Duration::from_secs(1), |_| false);

    let audio = pair.received_timed(pair.client_audio);
    let video = pair.received_timed(pair.client_video);
    assert!(audio.len() > 100, "{} Opus packets", audio.len());
    // No packet missing: RTP times 20 ms apart throughout.
    for w in audio.windows(2) {
        assert!(
            (w[1].0 - w[0].0 - 20.0).abs() < 0.01,
            "a gap: {} -> {}",
            w[0].0,
            w[1].0
        );
    }
    let packets: Vec<&[u8]> = audio.iter().map(|(_, d)| *d).collect();
    let pcm = decode_opus(&packets);
    // The video frame that is shown when the tone starts.
    let frame_at_onset = video
        .iter()
        .map(|(t, _)| *t)
        .find(|t| (*t - ONSET_MS as f64).abs() < 0.5)
        .expect("a video frame at the tone's start");
    for ch in 0..2 {
        let r = measure(&pcm, ch);
        let onset = audio[0].0 + r.onset_ms;
        let offset = onset - frame_at_onset;
        eprintln!(
            "channel {ch}: {:.3} Hz, level {:+.3} dB, quietest 10 ms window {:+.3} dB, \
             onset {onset:.1} ms, offset against the video {offset:+.1} ms",
            r.frequency, r.level_db, r.min_window_db
        );
        assert!((r.frequency - 1000.0).abs() < 10.0, "{r:?}");
        assert!(r.level_db.abs() < 1.0, "{r:?}");
        assert!(r.min_window_db > -3.0, "a gap: {r:?}");
        assert!(offset.abs() <= 20.0, "audio {offset} ms off the video");
    }
}
