//! `StreamHealth`: what one stream's frames and the server's counters say about it (keyframe
//! interval, frame rate in vs declared, audio/video drift against the wall clock, timestamp jumps,
//! slow viewers, recorder state) and a green / amber / red verdict with the reason in words. It
//! keeps a fixed handful of numbers per stream; it does not sample history (`history`) or decide
//! when the server asks.

use std::fmt::Write;

use serde::Serialize;

use crate::codec::json::round;
use crate::media::{meta, Frame, MetaInfo, Track};

/// Over this keyframe interval a stream is amber: players wait up to one interval to start, and
/// HLS segments cannot be shorter than it.
pub const KEYFRAME_AMBER_MS: u64 = 4_000;
/// Over this one it is red.
pub const KEYFRAME_RED_MS: u64 = 8_000;
/// Frame rate in under this share of the declared one is amber, under `FPS_RED_SHARE` red.
pub const FPS_AMBER_SHARE: f64 = 0.8;
pub const FPS_RED_SHARE: f64 = 0.5;
/// Audio and video drifting apart by more than this (either way) is amber; `AV_DRIFT_RED_MS` red.
pub const AV_DRIFT_AMBER_MS: i64 = 1_000;
pub const AV_DRIFT_RED_MS: i64 = 3_000;
/// A track's timestamps ahead of or behind the wall clock by more than this is amber (a publisher
/// faster than real time, or an uplink that cannot keep up); `LAG_RED_MS` red.
pub const LAG_AMBER_MS: i64 = 2_000;
pub const LAG_RED_MS: i64 = 5_000;
/// No frame for this long on a live stream is red: the encoder stopped sending.
pub const STALL_RED_MS: u64 = 5_000;
/// Timestamp jumps and slow viewers count against a stream for this long after the last one.
pub const RECENT_MS: u64 = 60_000;
/// Frame rate is measured over windows of this much stream time.
const FPS_WINDOW_MS: u64 = 2_000;
/// Recorders kept per stream (FLV, HLS, fMP4 and a few to spare): the list never grows past it.
const MAX_RECORDERS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Green,
    Amber,
    Red,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Green => "green",
            Level::Amber => "amber",
            Level::Red => "red",
        }
    }
}

/// The hub's slow-viewer counters for one stream, cumulative since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ViewerCounters {
    /// Times a viewer skipped to the next keyframe.
    pub skips: u64,
    pub frames_dropped: u64,
    pub slow_disconnects: u64,
}

/// One recorder of the stream, as the server knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecorderState {
    Writing {
        bytes: u64,
    },
    /// `error` says whether it stopped on a failure (red) or because its work was done.
    Stopped {
        why: String,
        error: bool,
        bytes: u64,
    },
}

/// One track's timestamps against the wall clock, from an anchor (the first frame, or the first
/// after a jump): `drift_ms` > 0 means the track's time runs ahead of real time.
#[derive(Clone, Copy, Debug, Default)]
struct TrackClock {
    anchor: Option<(u64, u64)>,
    drift_ms: Option<i64>,
}

impl TrackClock {
    fn on_frame(&mut self, time: u64, now_ms: u64, discontinuity: bool) {
        match self.anchor {
            Some((t0, n0)) if !discontinuity => {
                // i128: both sides are u64 and either may be the larger.
                let d = (i128::from(time) - i128::from(t0)) - (i128::from(now_ms) - i128::from(n0));
                self.drift_ms = Some(d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64);
            }
            // A jump is counted once (`jumps`); the drift starts again from the new clock.
            _ => {
                self.anchor = Some((time, now_ms));
                self.drift_ms = Some(0);
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct StreamHealth {
    declared_fps: Option<f64>,
    /// Stream time of the first video picture after the start or the last jump.
    video_first: Option<u64>,
    video_last: Option<u64>,
    /// Stream time of the last keyframe since the start or the last jump.
    key_last: Option<u64>,
    /// The last complete keyframe-to-keyframe interval.
    key_interval_ms: Option<u64>,
    fps_window: Option<(u64, u32)>,
    fps_in: Option<f64>,
    audio: TrackClock,
    video: TrackClock,
    jumps: u64,
    last_jump_ms: Option<u64>,
    last_frame_ms: Option<u64>,
    viewers: ViewerCounters,
    last_slow_ms: Option<u64>,
    recorders: Vec<(String, RecorderState)>,
}

impl StreamHealth {
    pub fn new() -> StreamHealth {
        StreamHealth::default()
    }

    /// Every frame the publisher sends, in order, with the wall clock (ms) when it arrived.
    pub fn on_frame(&mut self, f: &Frame, now_ms: u64) {
        self.last_frame_ms = Some(now_ms);
        if f.discontinuity && f.track != Track::Meta {
            self.jumps = self.jumps.saturating_add(1);
            self.last_jump_ms = Some(now_ms);
        }
        match f.track {
            Track::Meta => {
                if let Some(body) = meta::on_metadata(&f.data) {
                    self.on_meta(&MetaInfo::parse(&body));
                }
            }
            // Sequence headers are not media: their timestamps say nothing about the clock.
            Track::Audio if !f.config => self.audio.on_frame(f.time, now_ms, f.discontinuity),
            Track::Video if !f.config => {
                self.video.on_frame(f.time, now_ms, f.discontinuity);
                self.on_picture(f.time, f.key, f.discontinuity);
            }
            Track::Audio | Track::Video => {}
        }
    }

    /// The declared frame rate, from `onMetaData` (the hub may pass what it parsed already).
    pub fn on_meta(&mut self, info: &MetaInfo) {
        self.declared_fps = info
            .framerate
            .filter(|r| r.is_finite() && *r > 0.0 && *r <= 1000.0);
    }

    fn on_picture(&mut self, time: u64, key: bool, discontinuity: bool) {
        if discontinuity || self.video_first.is_none() {
            // Intervals are never measured across a jump: the clocks on both sides disagree.
            self.video_first = Some(time);
            self.key_last = None;
            self.fps_window = None;
        }
        if key {
            if let Some(k) = self.key_last {
                self.key_interval_ms = Some(time.saturating_sub(k));
            }
            self.key_last = Some(time);
        }
        self.video_last = Some(time);
        self.fps_window = match self.fps_window {
            None => Some((time, 0)),
            Some((start, n)) => {
                let n = n.saturating_add(1);
                let span = time.saturating_sub(start);
                if span >= FPS_WINDOW_MS {
                    self.fps_in = Some(f64::from(n) * 1000.0 / span as f64);
                    Some((time, 0))
                } else {
                    Some((start, n))
                }
            }
        };
    }

    /// The server's slow-viewer counters for this stream (cumulative); any increase marks the
    /// stream amber for `RECENT_MS`.
    pub fn set_viewer_counters(&mut self, c: ViewerCounters, now_ms: u64) {
        let v = self.viewers;
        if c.skips > v.skips
            || c.frames_dropped > v.frames_dropped
            || c.slow_disconnects > v.slow_disconnects
        {
            self.last_slow_ms = Some(now_ms);
        }
        self.viewers = c;
    }

    /// One recorder's state, by name ("flv", "hls", "fmp4"); past `MAX_RECORDERS` names, new
    /// ones are ignored.
    pub fn set_recorder(&mut self, name: &str, state: RecorderState) {
        if let Some(r) = self.recorders.iter_mut().find(|(n, _)| n == name) {
            r.1 = state;
        } else if self.recorders.len() < MAX_RECORDERS {
            self.recorders.push((name.to_string(), state));
        }
    }

    /// The keyframe interval: the last complete one, or the GOP still open when it is already
    /// longer than that (so a 10 s interval shows before the second keyframe arrives).
    pub fn keyframe_interval_ms(&self) -> Option<u64> {
        let last = self.video_last?;
        let open = last.saturating_sub(self.key_last.or(self.video_first)?);
        match self.key_interval_ms {
            Some(i) => Some(i.max(open)),
            None if open > KEYFRAME_AMBER_MS => Some(open),
            None => None,
        }
    }

    pub fn fps_in(&self) -> Option<f64> {
        self.fps_in
    }

    pub fn declared_fps(&self) -> Option<f64> {
        self.declared_fps
    }

    /// Audio timestamps against the wall clock since the first audio frame (or the last jump).
    pub fn audio_drift_ms(&self) -> Option<i64> {
        self.audio.drift_ms
    }

    pub fn video_drift_ms(&self) -> Option<i64> {
        self.video.drift_ms
    }

    /// How far audio has drifted from video: > 0 when audio runs ahead.
    pub fn av_drift_ms(&self) -> Option<i64> {
        Some(self.audio.drift_ms?.saturating_sub(self.video.drift_ms?))
    }

    pub fn timestamp_jumps(&self) -> u64 {
        self.jumps
    }

    /// Every finding, worst first; empty when the stream is healthy.
    pub fn findings(&self, now_ms: u64) -> Vec<(Level, String)> {
        let mut out = Vec::new();
        if let Some(last) = self.last_frame_ms {
            let idle = now_ms.saturating_sub(last);
            if idle >= STALL_RED_MS {
                out.push((
                    Level::Red,
                    format!("no media for {}: the encoder stopped sending", secs(idle)),
                ));
            }
        }
        if let Some(k) = self.keyframe_interval_ms() {
            let level = if k > KEYFRAME_RED_MS {
                Level::Red
            } else {
                Level::Amber
            };
            if k > KEYFRAME_AMBER_MS {
                out.push((
                    level,
                    format!(
                        "keyframe every {}: set your encoder's keyframe interval to 2 s",
                        secs(k)
                    ),
                ));
            }
        }
        if let (Some(fps), Some(declared)) = (self.fps_in, self.declared_fps) {
            let share = fps / declared;
            if share < FPS_AMBER_SHARE {
                let level = if share < FPS_RED_SHARE {
                    Level::Red
                } else {
                    Level::Amber
                };
                out.push((
                    level,
                    format!(
                        "frame rate {fps:.0} fps, the encoder declares {declared:.0}: it is dropping frames \
                         (CPU overloaded or uplink too slow)"
                    ),
                ));
            }
        }
        if let Some(av) = self.av_drift_ms() {
            if av.unsigned_abs() > AV_DRIFT_AMBER_MS as u64 {
                let level = if av.unsigned_abs() > AV_DRIFT_RED_MS as u64 {
                    Level::Red
                } else {
                    Level::Amber
                };
                let ahead = if av > 0 { "audio ahead" } else { "video ahead" };
                out.push((
                    level,
                    format!(
                        "audio and video drift apart by {} ({ahead}): restart the encoder",
                        secs(av.unsigned_abs())
                    ),
                ));
            }
        }
        // The worse of the two tracks against the wall clock.
        let lag = [self.video.drift_ms, self.audio.drift_ms]
            .into_iter()
            .flatten()
            .max_by_key(|d| d.unsigned_abs());
        if let Some(d) = lag {
            if d.unsigned_abs() > LAG_AMBER_MS as u64 {
                let level = if d.unsigned_abs() > LAG_RED_MS as u64 {
                    Level::Red
                } else {
                    Level::Amber
                };
                let text = if d < 0 {
                    format!("the stream falls {} behind real time: the uplink is too slow for the bitrate", secs(d.unsigned_abs()))
                } else {
                    format!(
                        "the stream runs {} ahead of real time: publish in real time (ffmpeg -re)",
                        secs(d.unsigned_abs())
                    )
                };
                out.push((level, text));
            }
        }
        if let Some(t) = self
            .last_jump_ms
            .filter(|t| now_ms.saturating_sub(*t) < RECENT_MS)
        {
            out.push((
                Level::Amber,
                format!(
                    "timestamps jumped {} time{} (last {} ago): the encoder restarted or its clock skipped",
                    self.jumps,
                    if self.jumps == 1 { "" } else { "s" },
                    secs(now_ms.saturating_sub(t))
                ),
            ));
        }
        if self
            .last_slow_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < RECENT_MS)
        {
            let v = self.viewers;
            out.push((
                Level::Amber,
                format!(
                    "slow viewers: {} skips to the next keyframe, {} frames dropped, {} disconnected \
                     (their connection is slower than the stream)",
                    v.skips, v.frames_dropped, v.slow_disconnects
                ),
            ));
        }
        for (name, state) in &self.recorders {
            if let RecorderState::Stopped {
                why, error: true, ..
            } = state
            {
                out.push((Level::Red, format!("recorder {name} stopped: {why}")));
            }
        }
        // Stable: equal levels keep the order above (the likelier cause first).
        out.sort_by_key(|b| std::cmp::Reverse(b.0));
        out
    }

    /// The verdict: the worst finding's level and words, or green with what was measured.
    pub fn verdict(&self, now_ms: u64) -> (Level, String) {
        if let Some(first) = self.findings(now_ms).into_iter().next() {
            return first;
        }
        let mut text = String::from("healthy");
        let mut sep = ": ";
        if let Some(k) = self.keyframe_interval_ms() {
            let _ = write!(text, "{sep}keyframe every {}", secs(k));
            sep = ", ";
        }
        if let Some(fps) = self.fps_in {
            let _ = write!(text, "{sep}{fps:.0} fps");
        }
        (Level::Green, text)
    }

    /// The `health` object of an `/api/streams` entry (schema in the module doc of `stats`).
    pub fn report(&self, now_ms: u64) -> HealthReport {
        let (level, reason) = self.verdict(now_ms);
        let reasons = self
            .findings(now_ms)
            .into_iter()
            .map(|(level, text)| Reason { level, text })
            .collect();
        let recorders = self
            .recorders
            .iter()
            .map(|(name, s)| match s {
                RecorderState::Writing { bytes } => RecorderReport {
                    name: name.clone(),
                    state: "writing",
                    why: None,
                    error: false,
                    bytes: *bytes,
                },
                RecorderState::Stopped { why, error, bytes } => RecorderReport {
                    name: name.clone(),
                    state: "stopped",
                    why: Some(why.clone()),
                    error: *error,
                    bytes: *bytes,
                },
            })
            .collect();
        let fps = |v: Option<f64>| v.map(|f| round(f, 1));
        HealthReport {
            level,
            reason,
            reasons,
            keyframe_interval_ms: self.keyframe_interval_ms(),
            fps_in: fps(self.fps_in),
            fps_declared: fps(self.declared_fps),
            drift_ms: Drift {
                audio: self.audio.drift_ms,
                video: self.video.drift_ms,
                av: self.av_drift_ms(),
            },
            timestamp_jumps: self.jumps,
            last_frame_ago_ms: self.last_frame_ms.map(|t| now_ms.saturating_sub(t)),
            viewers: self.viewers,
            recorders,
        }
    }
}

/// The `health` object of an `/api/streams` entry, as `StreamHealth::report` makes it.
#[derive(Serialize, Debug)]
pub struct HealthReport {
    level: Level,
    reason: String,
    /// Every finding, worst first.
    reasons: Vec<Reason>,
    keyframe_interval_ms: Option<u64>,
    /// One decimal.
    fps_in: Option<f64>,
    fps_declared: Option<f64>,
    drift_ms: Drift,
    timestamp_jumps: u64,
    last_frame_ago_ms: Option<u64>,
    viewers: ViewerCounters,
    recorders: Vec<RecorderReport>,
}

#[derive(Serialize, Debug)]
struct Reason {
    level: Level,
    text: String,
}

#[derive(Serialize, Debug)]
struct Drift {
    audio: Option<i64>,
    video: Option<i64>,
    av: Option<i64>,
}

#[derive(Serialize, Debug)]
struct RecorderReport {
    name: String,
    state: &'static str,
    why: Option<String>,
    error: bool,
    bytes: u64,
}

/// "10 s", "4.5 s": whole seconds when round or long, else one decimal.
/// Seconds for people: whole within 50 ms of a whole second (a GOP measured from frame times is
/// a frame off at a looped file's seam or a dropped frame: 2,040 ms is "2 s"), else one decimal.
fn secs(ms: u64) -> String {
    let off = (ms % 1000).min(1000 - ms % 1000);
    if off <= 50 || ms >= 10_000 {
        format!("{} s", ms.saturating_add(500) / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::amf::{amf0, Value};
    use crate::media::frame::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};

    fn video(time: u64, key: bool) -> Frame {
        let first = if key { 0x17 } else { 0x27 };
        let mut f = Frame::parse(
            TAG_VIDEO,
            time as u32,
            Bytes::from(vec![first, 1, 0, 0, 0, 0x65]),
        )
        .unwrap();
        f.time = time;
        f
    }

    fn audio(time: u64) -> Frame {
        let mut f =
            Frame::parse(TAG_AUDIO, time as u32, Bytes::from_static(&[0xaf, 1, 0x21])).unwrap();
        f.time = time;
        f
    }

    fn metadata(framerate: f64) -> Frame {
        let body = amf0::encode_all(&[
            Value::String("@setDataFrame".into()),
            Value::String("onMetaData".into()),
            Value::EcmaArray(vec![("framerate".into(), Value::Number(framerate))]),
        ]);
        Frame::parse(TAG_SCRIPT, 0, Bytes::from(body)).unwrap()
    }

    /// `seconds` of 25 fps video with a keyframe every `gop_ms`, delivered in real time from wall
    /// clock `start_ms`, and AAC frames (1024 samples at 44.1 kHz, 23.2 ms) whose timestamps run
    /// `audio_fast_ppm` parts per million faster than real time.
    fn publish(
        h: &mut StreamHealth,
        start_ms: u64,
        seconds: u64,
        gop_ms: u64,
        audio_fast_ppm: u64,
    ) {
        h.on_frame(&metadata(25.0), start_ms);
        let mut next_audio = 0u64; // in microseconds of wall time
        for i in 0..seconds * 25 {
            let t = i * 40;
            while next_audio <= t * 1000 {
                let stamp = next_audio / 1000 + next_audio / 1000 * audio_fast_ppm / 1_000_000;
                h.on_frame(&audio(stamp), start_ms + next_audio / 1000);
                next_audio += 23_220;
            }
            h.on_frame(&video(t, t % gop_ms == 0), start_ms + t);
        }
    }

    #[test]
    fn keyframe_interval_and_frame_rate_from_a_known_sequence() {
        let mut h = StreamHealth::new();
        publish(&mut h, 1_000, 30, 2_000, 0);
        assert_eq!(h.keyframe_interval_ms(), Some(2_000));
        assert_eq!(h.fps_in(), Some(25.0));
        assert_eq!(h.declared_fps(), Some(25.0));
        let now = 1_000 + 29_960;
        assert_eq!(
            h.verdict(now),
            (Level::Green, "healthy: keyframe every 2 s, 25 fps".into())
        );

        let mut h = StreamHealth::new();
        publish(&mut h, 1_000, 30, 10_000, 0);
        assert_eq!(h.keyframe_interval_ms(), Some(10_000));
        let (level, reason) = h.verdict(1_000 + 29_960);
        assert_eq!(level, Level::Red);
        assert_eq!(
            reason,
            "keyframe every 10 s: set your encoder's keyframe interval to 2 s"
        );
    }

    #[test]
    fn a_long_gop_shows_before_its_second_keyframe() {
        let mut h = StreamHealth::new();
        for i in 0..=100 {
            h.on_frame(&video(i * 40, i == 0), i * 40);
        }
        // 4 s open, nothing over the threshold yet: unknown rather than a guess.
        assert_eq!(h.keyframe_interval_ms(), None);
        for i in 101..=150 {
            h.on_frame(&video(i * 40, false), i * 40);
        }
        assert_eq!(h.keyframe_interval_ms(), Some(6_000));
        assert_eq!(h.verdict(6_000).0, Level::Amber);
    }

    #[test]
    fn drift_against_the_wall_clock() {
        let mut h = StreamHealth::new();
        // Audio timestamps 2% fast: after 100 s of wall time audio is about 2 s ahead, video on time.
        publish(&mut h, 5_000, 100, 2_000, 20_000);
        let audio = h.audio_drift_ms().unwrap();
        assert!((1_970..=2_000).contains(&audio), "audio drift {audio}");
        assert_eq!(h.video_drift_ms(), Some(0));
        assert_eq!(h.av_drift_ms(), Some(audio));
        let (level, reason) = h.verdict(5_000 + 99_960);
        assert_eq!(level, Level::Amber);
        assert!(
            reason.starts_with("audio and video drift apart by 2 s (audio ahead)"),
            "{reason}"
        );

        // A publisher 3 s behind real time (an uplink that cannot keep up).
        let mut h = StreamHealth::new();
        for i in 0..250u64 {
            h.on_frame(&video(i * 40, i % 50 == 0), i * 52);
        }
        assert_eq!(h.video_drift_ms(), Some(249 * 40 - 249 * 52));
        let (level, reason) = h.verdict(249 * 52);
        assert_eq!(level, Level::Amber);
        assert!(reason.contains("behind real time"), "{reason}");
    }

    #[test]
    fn a_timestamp_jump_is_counted_and_drift_starts_again() {
        let mut h = StreamHealth::new();
        for i in 0..50u64 {
            h.on_frame(&video(i * 40, i % 50 == 0), i * 40);
        }
        let mut jumped = video(1_000_000, true);
        jumped.discontinuity = true;
        h.on_frame(&jumped, 2_000);
        h.on_frame(&video(1_000_040, false), 2_040);
        assert_eq!(h.timestamp_jumps(), 1);
        assert_eq!(h.video_drift_ms(), Some(0));
        // No interval across the jump: the only complete GOP is none.
        assert_eq!(h.keyframe_interval_ms(), None);
        let (level, reason) = h.verdict(3_000);
        assert_eq!(level, Level::Amber);
        assert!(
            reason.starts_with("timestamps jumped 1 time (last 1 s ago)"),
            "{reason}"
        );
        // A jump a minute ago no longer counts.
        for i in 2..1_503u64 {
            h.on_frame(&video(1_000_000 + i * 40, i % 50 == 0), 2_000 + i * 40);
        }
        assert_eq!(h.verdict(2_000 + 1_502 * 40).0, Level::Green);
    }

    #[test]
    fn verdict_thresholds() {
        let at = |gop: u64| {
            let mut h = StreamHealth::new();
            for t in [0, gop, 2 * gop] {
                h.on_frame(&video(t, true), t);
            }
            h.verdict(2 * gop).0
        };
        assert_eq!(at(KEYFRAME_AMBER_MS), Level::Green);
        assert_eq!(at(KEYFRAME_AMBER_MS + 1), Level::Amber);
        assert_eq!(at(KEYFRAME_RED_MS), Level::Amber);
        assert_eq!(at(KEYFRAME_RED_MS + 1), Level::Red);

        let fps = |rate: f64| {
            let mut h = StreamHealth::new();
            h.on_meta(&MetaInfo {
                framerate: Some(30.0),
                ..MetaInfo::default()
            });
            let step = (1000.0 / rate) as u64;
            for i in 0..(3000 / step) {
                h.on_frame(&video(i * step, i == 0), i * step);
            }
            (h.fps_in().unwrap().round(), h.verdict(3_000).0)
        };
        assert_eq!(fps(30.0), (30.0, Level::Green)); // 33 ms steps: 30.3 fps
        assert_eq!(fps(20.0), (20.0, Level::Amber));
        assert_eq!(fps(10.0), (10.0, Level::Red));

        let mut h = StreamHealth::new();
        h.on_frame(&audio(0), 0);
        assert_eq!(h.verdict(STALL_RED_MS - 1).0, Level::Green);
        let (level, reason) = h.verdict(STALL_RED_MS);
        assert_eq!(
            (level, reason.as_str()),
            (Level::Red, "no media for 5 s: the encoder stopped sending")
        );
    }

    #[test]
    fn slow_viewers_and_recorders() {
        let mut h = StreamHealth::new();
        h.on_frame(&audio(0), 0);
        h.set_viewer_counters(ViewerCounters::default(), 0);
        assert_eq!(h.verdict(100).0, Level::Green);
        h.set_viewer_counters(
            ViewerCounters {
                skips: 3,
                frames_dropped: 40,
                slow_disconnects: 1,
            },
            100,
        );
        h.on_frame(&audio(200), 200);
        let (level, reason) = h.verdict(200);
        assert_eq!(level, Level::Amber);
        assert!(reason.starts_with(
            "slow viewers: 3 skips to the next keyframe, 40 frames dropped, 1 disconnected"
        ));
        // The same totals a minute later: nobody was slow since.
        h.set_viewer_counters(
            ViewerCounters {
                skips: 3,
                frames_dropped: 40,
                slow_disconnects: 1,
            },
            60_000,
        );
        h.on_frame(&audio(60_100), 60_100);
        assert_eq!(h.verdict(60_100).0, Level::Green);

        h.set_recorder("hls", RecorderState::Writing { bytes: 10 });
        h.set_recorder(
            "flv",
            RecorderState::Stopped {
                why: "the stream ended".into(),
                error: false,
                bytes: 5,
            },
        );
        assert_eq!(h.verdict(60_100).0, Level::Green);
        h.set_recorder(
            "hls",
            RecorderState::Stopped {
                why: "disk full".into(),
                error: true,
                bytes: 99,
            },
        );
        assert_eq!(
            h.verdict(60_100),
            (Level::Red, "recorder hls stopped: disk full".into())
        );
        for i in 0..20 {
            h.set_recorder(&format!("r{i}"), RecorderState::Writing { bytes: 0 });
        }
        assert_eq!(h.recorders.len(), MAX_RECORDERS);
    }

    #[test]
    fn sequence_headers_and_bad_metadata_are_ignored() {
        let mut h = StreamHealth::new();
        let mut config =
            Frame::parse(TAG_VIDEO, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])).unwrap();
        config.time = 90_000;
        h.on_frame(&config, 0);
        assert_eq!(h.video_drift_ms(), None);
        assert_eq!(h.keyframe_interval_ms(), None);
        h.on_frame(
            &Frame::parse(TAG_SCRIPT, 0, Bytes::from_static(&[2, 0, 1, b'x'])).unwrap(),
            0,
        );
        h.on_frame(&metadata(f64::NAN), 0);
        assert_eq!(h.declared_fps(), None);
    }

    #[test]
    fn json_has_every_field() {
        let mut h = StreamHealth::new();
        publish(&mut h, 0, 12, 10_000, 0);
        h.set_recorder(
            "fmp4",
            RecorderState::Stopped {
                why: "bad \"codec\"".into(),
                error: true,
                bytes: 7,
            },
        );
        let j = crate::codec::json::to_string(&h.report(11_960));
        // Equal levels keep their order: the keyframe advice comes first.
        assert!(j.starts_with(
            "{\"level\":\"red\",\"reason\":\"keyframe every 10 s: set your encoder's keyframe interval to 2 s\",\"reasons\":[\
             {\"level\":\"red\",\"text\":\"keyframe every 10 s: set your encoder's keyframe interval to 2 s\"},\
             {\"level\":\"red\",\"text\":\"recorder fmp4 stopped: bad \\\"codec\\\"\"}],"
        ), "{j}");
        assert!(
            j.contains("\"keyframe_interval_ms\":10000,\"fps_in\":25.0,\"fps_declared\":25.0,"),
            "{j}"
        );
        assert!(j.contains("\"drift_ms\":{\"audio\":0,\"video\":0,\"av\":0},\"timestamp_jumps\":0,\"last_frame_ago_ms\":0,"), "{j}");
        assert!(j.ends_with(
            "\"viewers\":{\"skips\":0,\"frames_dropped\":0,\"slow_disconnects\":0},\
             \"recorders\":[{\"name\":\"fmp4\",\"state\":\"stopped\",\"why\":\"bad \\\"codec\\\"\",\"error\":true,\"bytes\":7}]}"
        ), "{j}");
        let empty = crate::codec::json::to_string(&StreamHealth::new().report(0));
        assert!(
            empty.contains("\"keyframe_interval_ms\":null,\"fps_in\":null"),
            "{empty}"
        );
        assert!(
            empty.starts_with("{\"level\":\"green\",\"reason\":\"healthy\",\"reasons\":[]"),
            "{empty}"
        );
    }
}
