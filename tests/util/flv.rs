//! FLV as the tests see it: parse what a viewer received (via `rtmpd::mux::flv_demux`) and the
//! assertions shared by every output (clean start, monotonic timestamps, same media as the
//! fixture, frame counts from fixtures.txt).

use bytes::BytesMut;
use rtmpd::media::{Codec, Frame, Track};
use rtmpd::mux::flv_demux::{self, FlvDemuxer, FlvError, FlvItem};

use super::{fixture_bytes, Facts};

#[derive(Debug)]
pub struct FlvStream {
    /// FLV file headers seen (1 for a valid stream; a second header is a parse error).
    pub headers: usize,
    pub has_audio: bool,
    pub has_video: bool,
    pub frames: Vec<Frame>,
    /// Bytes after the last whole tag (a stream cut by our time limit ends mid-tag).
    pub leftover: usize,
    pub error: Option<FlvError>,
}

/// Parses received FLV bytes, tolerating a partial last tag (reported in `leftover`).
pub fn parse_flv(bytes: &[u8]) -> FlvStream {
    let mut buf = BytesMut::from(bytes);
    let mut d = FlvDemuxer::new();
    let mut s = FlvStream {
        headers: 0,
        has_audio: false,
        has_video: false,
        frames: Vec::new(),
        leftover: 0,
        error: None,
    };
    loop {
        match d.next(&mut buf) {
            Ok(Some(FlvItem::Header {
                has_audio,
                has_video,
            })) => {
                s.headers += 1;
                s.has_audio = has_audio;
                s.has_video = has_video;
            }
            Ok(Some(FlvItem::Frame(f))) => s.frames.push(f),
            Ok(None) => break,
            Err(e) => {
                s.error = Some(e);
                break;
            }
        }
    }
    s.leftover = buf.len();
    s
}

impl FlvStream {
    /// Panics unless the bytes were one valid FLV stream: one header, no error, and (when
    /// `complete`) no partial tag at the end.
    pub fn assert_valid(&self, what: &str, complete: bool) {
        assert_eq!(self.headers, 1, "{what}: FLV headers");
        assert!(self.error.is_none(), "{what}: FLV error {:?}", self.error);
        if complete {
            assert_eq!(self.leftover, 0, "{what}: bytes after the last tag");
        }
    }
}

/// FFmpeg ends an AVC stream with an end-of-sequence tag (AVC packet type 2): not a picture.
pub fn is_end_of_sequence(f: &Frame) -> bool {
    f.track == Track::Video && f.codec == Codec::Avc && f.data.get(1) == Some(&2)
}

/// Video frames that are pictures (no sequence header, no end of sequence).
pub fn count_pictures(frames: &[Frame]) -> usize {
    frames
        .iter()
        .filter(|f| f.track == Track::Video && !f.config && !is_end_of_sequence(f))
        .count()
}

/// Audio frames that are not the AudioSpecificConfig.
pub fn count_audio(frames: &[Frame]) -> usize {
    frames
        .iter()
        .filter(|f| f.track == Track::Audio && !f.config)
        .count()
}

/// Decode timestamps never go backwards within a track (audio, video). Configuration records
/// count too: a player that gets a sequence header stamped after the keyframe that follows it
/// sees time run backwards.
pub fn assert_monotonic(frames: &[Frame], what: &str) {
    for track in [Track::Audio, Track::Video] {
        let mut last: Option<(usize, u32)> = None;
        for (i, f) in frames.iter().enumerate().filter(|(_, f)| f.track == track) {
            if let Some((j, t)) = last {
                assert!(
                    f.dts >= t,
                    "{what}: {track:?} dts goes back from {t} (frame {j}) to {} (frame {i})",
                    f.dts
                );
            }
            last = Some((i, f.dts));
        }
    }
}

/// The start a player needs: the first video tag is the AVC sequence header and the first
/// picture after it is a keyframe; the first audio tag is the AAC AudioSpecificConfig.
pub fn assert_clean_start(frames: &[Frame], what: &str) {
    let mut video = frames.iter().filter(|f| f.track == Track::Video);
    if let Some(first) = video.next() {
        assert!(
            first.config,
            "{what}: first video tag is not a sequence header (dts {})",
            first.dts
        );
        if let Some(pic) = video.find(|f| !f.config) {
            assert!(
                pic.key,
                "{what}: first picture is not a keyframe (dts {})",
                pic.dts
            );
        }
    }
    if let Some(first) = frames.iter().find(|f| f.track == Track::Audio) {
        if first.codec == Codec::Aac {
            assert!(
                first.config,
                "{what}: first audio tag is not the AAC config (dts {})",
                first.dts
            );
        }
    }
}

/// Picture and audio counts equal fixtures.txt for `fixture` (the whole stream was received).
pub fn assert_counts(frames: &[Frame], fixture: &str, what: &str) {
    let facts = Facts::get();
    let has_video = !fixture.contains("_audio");
    let has_audio = !fixture.contains("_video");
    let want_v = if has_video {
        facts.num(fixture, "video_frames") as usize
    } else {
        0
    };
    let want_a = if has_audio {
        facts.num(fixture, "audio_frames") as usize
    } else {
        0
    };
    assert_eq!(count_pictures(frames), want_v, "{what}: video frames");
    assert_eq!(count_audio(frames), want_a, "{what}: audio frames");
}

/// The fixture's frames as a publisher sends them (metadata and end of sequence left out).
pub fn fixture_media(fixture: &str) -> Vec<Frame> {
    let (_, _, frames) =
        flv_demux::read_all(&fixture_bytes(fixture)).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    frames
        .into_iter()
        .filter(|f| f.track != Track::Meta && !is_end_of_sequence(f))
        .collect()
}

/// Received media (metadata and end of sequence left out) is exactly the fixture's, frame for
/// frame per track: same payload bytes, composition time, key flag, and decode time shifted by
/// one constant offset for the whole stream (0 unless the publisher shifted it). Configuration
/// records are compared by payload only. Returns the offset.
pub fn assert_same_media(received: &[Frame], fixture: &str, what: &str) -> i64 {
    let want = fixture_media(fixture);
    let mut offset: Option<i64> = None;
    for track in [Track::Video, Track::Audio] {
        let got: Vec<&Frame> = received
            .iter()
            .filter(|f| f.track == track && !is_end_of_sequence(f))
            .collect();
        let exp: Vec<&Frame> = want.iter().filter(|f| f.track == track).collect();
        let got_cfg: Vec<_> = got.iter().filter(|f| f.config).map(|f| &f.data).collect();
        let exp_cfg: Vec<_> = exp.iter().filter(|f| f.config).map(|f| &f.data).collect();
        // A server may repeat a sequence header; every one must be the fixture's.
        for c in &got_cfg {
            assert!(
                exp_cfg.contains(c),
                "{what}: {track:?} configuration record differs from the fixture's"
            );
        }
        assert_eq!(
            got_cfg.is_empty(),
            exp_cfg.is_empty(),
            "{what}: {track:?} configuration record presence"
        );
        let got: Vec<&Frame> = got.into_iter().filter(|f| !f.config).collect();
        let exp: Vec<&Frame> = exp.into_iter().filter(|f| !f.config).collect();
        assert_eq!(got.len(), exp.len(), "{what}: {track:?} frame count");
        for (i, (g, e)) in got.iter().zip(&exp).enumerate() {
            let d = g.dts as i64 - e.dts as i64;
            let o = *offset.get_or_insert(d);
            assert_eq!(
                d, o,
                "{what}: {track:?} frame {i}: dts {} vs fixture {} (offset {o} elsewhere)",
                g.dts, e.dts
            );
            assert_eq!(
                g.cts, e.cts,
                "{what}: {track:?} frame {i}: composition time"
            );
            assert_eq!(g.key, e.key, "{what}: {track:?} frame {i}: key flag");
            assert!(
                g.data == e.data,
                "{what}: {track:?} frame {i} (dts {}): payload differs ({} vs {} bytes)",
                g.dts,
                g.data.len(),
                e.data.len()
            );
        }
    }
    offset.unwrap_or(0)
}

/// Every check for a viewer that received a whole published fixture: clean start, monotonic,
/// counts, same media. `offset`: the expected constant timestamp shift from the fixture (None:
/// any constant shift). Returns the shift found.
pub fn assert_full_stream(frames: &[Frame], fixture: &str, offset: Option<i64>, what: &str) -> i64 {
    assert_clean_start(frames, what);
    assert_monotonic(frames, what);
    assert_counts(frames, fixture, what);
    let got = assert_same_media(frames, fixture, what);
    if let Some(want) = offset {
        assert_eq!(got, want, "{what}: timestamp offset from the fixture");
    }
    got
}
