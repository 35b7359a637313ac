//! The ingest normaliser: THE one place that turns a publisher's (or an upstream's) 32-bit
//! millisecond clock into the stream's monotonic time, and decides what a wrap, a jump and a
//! track skew are. Pure and sans-IO: no clock reads, no I/O; the hub runs one per stream on every
//! frame that enters it, before the fan-out and the recorders. It does not cut segments or
//! write timestamps into containers; the consumers read `Frame::time` and `Frame::discontinuity`.
//!
//! # Policy
//!
//! (Written so that it can be pasted into the README.)
//!
//! Every audio and video frame gets a *stream time* in milliseconds (`Frame::time`, u64), counted
//! from the stream's first media frame (which is at `START`; only differences mean anything).
//! Until something goes wrong, stream time is the publisher's clock, unwrapped.
//!
//! - **Wraps.** RTMP timestamps are 32-bit milliseconds and wrap after 49.7 days. Each timestamp
//!   is read as a signed step from the previous one, so a wrap past 2^32 ms is time passing
//!   (continuity), never a jump.
//! - **One stream clock.** Audio and video are judged against one clock, the latest stream time
//!   of either track. A frame more than 10 s ahead of it is a *jump forward*; a frame more than 1 s
//!   before the previous frame of its own track, or more than 10 s behind the stream clock, is a
//!   *jump back*. A source may also say that its clock restarted (the FLV gateway does after an
//!   upstream reconnect): its next media frame is then a jump whatever its timestamp.
//! - **Skew.** Audio and video may trail each other by up to 10 s (normal interleaving is a few
//!   hundred ms, some encoders keep a fixed offset) without anything being flagged, and each
//!   keeps its own relative timing. Within a track a step back of up to 1 s is held at that
//!   track's previous time, so every track's stream time never decreases. After a jump the other
//!   track follows the same rebase when its timestamps jumped too (one flag for one jump); a
//!   track whose own clock did not jump keeps following it, unflagged.
//! - **Jumps.** At a jump the frame gets `discontinuity = true` and the stream time continues from
//!   the stream clock plus one frame duration (the track's last step, else the other track's, else
//!   40 ms). Later frames follow the publisher's clock again from there, so the jump's size
//!   (hours forward, a restart at 0) never reaches any output: every consumer sees a monotonic
//!   time, and the HLS recorder starts a new segment after an `#EXT-X-DISCONTINUITY`. A pause
//!   longer than 10 s with correct timestamps is treated the same way (the outputs do not pause).
//! - **Players** receive the publisher's timestamps as they are (`Frame::dts`) until the first
//!   jump; from then on they receive the continued stream time truncated to 32 bits, so a player
//!   never sees a jump. A within-track step back (held, above) reaches players held as well.
//! - **Headers and metadata** (sequence headers, `onMetaData`) carry no media time: they take the
//!   stream clock as their stream time and never move it nor count as a jump. Players get their
//!   timestamp as sent when it is within 10 s of the stream clock, else the stream clock's.

use super::frame::{Frame, Track};

/// The stream time of the first media frame. The room below it keeps frames stamped a little
/// before the first one (the other track, interleaved) representable; it is 2^32 so that the
/// player timestamp is the stream time's low 32 bits plus the first frame's own timestamp.
pub const START: u64 = 1 << 32;
/// A frame further ahead of the stream clock than this is a jump forward.
pub const JUMP_FORWARD_MS: i64 = 10_000;
/// A frame further before its own track's previous frame than this is a jump back; smaller
/// steps back are held.
pub const JUMP_BACK_MS: i64 = 1_000;
/// Audio and video may trail the stream clock by this much (interleaving, fixed offsets).
pub const MAX_SKEW_MS: i64 = 10_000;
/// Steps between two frames of a track longer than this are gaps, not frame durations.
const MAX_STEP_MS: u64 = 1_000;
/// The frame duration assumed before the stream has shown one.
const DEFAULT_STEP_MS: u64 = 40;

/// What the normaliser decided for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Monotonic stream time, ms.
    pub time: u64,
    /// The timestamp players receive.
    pub dts: u32,
    /// The source's clock jumped just before this frame.
    pub discontinuity: bool,
}

/// One track's last frame: its raw timestamp, its stream time and its last frame duration.
#[derive(Clone, Copy, Debug, Default)]
struct TrackClock {
    last: Option<(u32, i64)>,
    step: u64,
}

/// The per-stream normaliser (see the module doc for the policy).
#[derive(Clone, Debug, Default)]
pub struct Normaliser {
    /// The stream's map from source clock to stream time: a raw timestamp and its stream time.
    /// Moved along by every frame that follows it; re-anchored at a jump.
    anchor: Option<(u32, i64)>,
    /// The stream clock: the latest stream time of any media frame.
    head: i64,
    audio: TrackClock,
    video: TrackClock,
    /// The source said its clock restarted; the next media frame is a jump.
    restart: bool,
    /// The first media frame's own timestamp: what players get is `time - START` plus this.
    dts_base: u32,
}

/// `base` moved by the signed 32-bit step from `from_raw` to `raw` (a wrap is a small step).
fn follow((from_raw, base): (u32, i64), raw: u32) -> i64 {
    base + raw.wrapping_sub(from_raw) as i32 as i64
}

impl Normaliser {
    pub fn new() -> Normaliser {
        Normaliser::default()
    }

    /// The stream clock (`START` before the first media frame).
    pub fn now(&self) -> u64 {
        if self.anchor.is_none() {
            return START;
        }
        self.head.max(0) as u64
    }

    /// The timestamp players get for the stream time `t` (START is 0 modulo 2^32).
    fn player_dts(&self, t: i64) -> u32 {
        (t as u32).wrapping_add(self.dts_base)
    }

    /// The source's clock restarts (an upstream reconnected): its next media frame continues
    /// the stream time one frame duration on, whatever its timestamp.
    pub fn restart(&mut self) {
        if self.anchor.is_some() {
            self.restart = true;
        }
    }

    /// Normalises `frame` in place: sets `time`, `discontinuity` and the `dts` players get. A
    /// `discontinuity` already set on the way in means the source's clock restarted.
    pub fn normalise(&mut self, frame: &mut Frame) {
        if frame.discontinuity {
            self.restart();
        }
        let s = self.stamp(frame.track, frame.config, frame.dts);
        frame.time = s.time;
        frame.dts = s.dts;
        frame.discontinuity = s.discontinuity;
    }

    /// The decision for one frame of `track` with the source timestamp `raw`; `config` marks a
    /// sequence header.
    pub fn stamp(&mut self, track: Track, config: bool, raw: u32) -> Stamp {
        let Some(anchor) = self.anchor else {
            return self.first(track, config, raw);
        };
        let head = self.head;
        if track == Track::Meta || config {
            // Timeless: the stream clock's time; the timestamp as sent when it is plausible.
            let cand = follow(anchor, raw);
            let plausible = !self.restart && (cand - head).abs() <= JUMP_FORWARD_MS;
            return Stamp {
                time: self.now(),
                dts: self.player_dts(if plausible { cand } else { head }),
                discontinuity: false,
            };
        }
        let (own, other) = match track {
            Track::Audio => (&mut self.audio, &self.video),
            _ => (&mut self.video, &self.audio),
        };
        let last = own.last.map(|(_, t)| t);
        let fits = |c: i64| {
            c <= head + JUMP_FORWARD_MS
                && c >= head - MAX_SKEW_MS
                && last.is_none_or(|l| c >= l - JUMP_BACK_MS)
        };
        let by_stream = follow(anchor, raw);
        let by_track = own.last.map(|l| follow(l, raw));
        let (time, discontinuity) = if self.restart {
            (None, true)
        } else if fits(by_stream) {
            // The stream's map moves along with the frames that follow it.
            self.anchor = Some((raw, by_stream));
            (Some(by_stream), false)
        } else if let Some(t) = by_track.filter(|&t| fits(t)) {
            // This track keeps its own clock (it was not in the last jump): follow it alone.
            (Some(t), false)
        } else {
            (None, true)
        };
        let time = match time {
            // Held at the track's last time when it stepped back a little; never below 0.
            Some(t) => t.max(last.unwrap_or(0)).max(0),
            None => {
                let step = [own.step, other.step]
                    .into_iter()
                    .find(|&s| s > 0)
                    .unwrap_or(DEFAULT_STEP_MS);
                let t = head.max(last.unwrap_or(0)) + step as i64;
                self.anchor = Some((raw, t));
                self.restart = false;
                t
            }
        };
        if let Some(l) = last {
            let d = (time - l) as u64;
            if d > 0 && d <= MAX_STEP_MS && !discontinuity {
                own.step = d;
            }
        }
        own.last = Some((raw, time));
        self.head = self.head.max(time);
        Stamp {
            time: time as u64,
            dts: self.player_dts(time),
            discontinuity,
        }
    }

    /// Before the first media frame: headers pass as they are, at `START`; the first media frame
    /// is at `START`.
    fn first(&mut self, track: Track, config: bool, raw: u32) -> Stamp {
        if track == Track::Meta || config {
            return Stamp {
                time: START,
                dts: raw,
                discontinuity: false,
            };
        }
        let time = START as i64;
        self.dts_base = raw;
        self.anchor = Some((raw, time));
        self.head = time;
        let own = match track {
            Track::Audio => &mut self.audio,
            _ => &mut self.video,
        };
        own.last = Some((raw, time));
        Stamp {
            time: time as u64,
            dts: raw,
            discontinuity: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Track::{Audio as A, Meta as M, Video as V};

    /// `(track, config, raw dts, expected time, expected player dts, expected discontinuity)`;
    /// a `None` track is the source saying its clock restarted.
    type Row = (Option<Track>, bool, u32, u64, u32, bool);

    /// Expected times are written on the publisher's clock (the first media frame's at its own
    /// timestamp; headers before it at that time too); the stream time is START-based.
    fn run(rows: &[Row]) {
        let mut n = Normaliser::new();
        let mut last = [None::<u64>; 2];
        let first = rows
            .iter()
            .find(|r| matches!(r.0, Some(A) | Some(V)) && !r.1)
            .map_or(0, |r| r.3);
        for (i, &(track, config, raw, time, dts, disc)) in rows.iter().enumerate() {
            let Some(track) = track else {
                n.restart();
                continue;
            };
            let s = n.stamp(track, config, raw);
            assert_eq!(
                (s.time + first - START, s.dts, s.discontinuity),
                (time, dts, disc),
                "row {i}: {track:?} raw {raw}"
            );
            if track != M && !config {
                let slot = &mut last[(track == V) as usize];
                assert!(slot.is_none_or(|l| l <= s.time), "row {i}: went back");
                *slot = Some(s.time);
            }
        }
    }

    const R: Option<Track> = None;
    const fn a(raw: u32, time: u64, dts: u32, disc: bool) -> Row {
        (Some(A), false, raw, time, dts, disc)
    }
    const fn v(raw: u32, time: u64, dts: u32, disc: bool) -> Row {
        (Some(V), false, raw, time, dts, disc)
    }
    const fn cfg(track: Track, raw: u32, time: u64, dts: u32) -> Row {
        (Some(track), true, raw, time, dts, false)
    }
    const fn meta(raw: u32, time: u64, dts: u32) -> Row {
        (Some(M), false, raw, time, dts, false)
    }

    #[test]
    fn first_frame_nonzero_passes_through() {
        run(&[
            meta(0, 5000, 0),
            cfg(V, 0, 5000, 0),
            cfg(A, 0, 5000, 0),
            v(5000, 5000, 5000, false),
            a(5010, 5010, 5010, false),
            v(5040, 5040, 5040, false),
            meta(0, 5040, 0),
        ]);
    }

    #[test]
    fn a_wrap_is_continuity() {
        let m = u32::MAX as u64;
        run(&[
            v(u32::MAX - 20, m - 20, u32::MAX - 20, false),
            v(19, m + 20, 19, false),
            a(10, m + 11, 10, false),
            v(59, m + 60, 59, false),
            a(u32::MAX - 2, m + 11, 10, false), // a step back within the track is held
        ]);
    }

    #[test]
    fn forward_jump_by_hours_continues_one_step_on() {
        let hours = 3 * 3_600_000;
        run(&[
            v(1000, 1000, 1000, false),
            a(1010, 1010, 1010, false),
            v(1040, 1040, 1040, false),
            a(1033, 1033, 1033, false),
            v(1080, 1080, 1080, false),
            v(1080 + hours, 1120, 1120, true),
            // Audio jumped with video: it follows the new map without a second flag.
            a(1090 + hours, 1130, 1130, false),
            v(1120 + hours, 1160, 1160, false),
            // 9 s ahead is time passing, not a jump.
            v(10_120 + hours, 10_160, 10_160, false),
        ]);
    }

    #[test]
    fn back_jump_and_restart_at_zero() {
        run(&[
            v(60_000, 60_000, 60_000, false),
            a(60_010, 60_010, 60_010, false),
            v(60_040, 60_040, 60_040, false),
            // The encoder restarts at 0: headers are timeless, media continues.
            cfg(V, 0, 60_040, 60_040),
            v(0, 60_080, 60_080, true),
            a(10, 60_090, 60_090, false),
            v(40, 60_120, 60_120, false),
            // 2 s back on one track is a jump too.
            v(-2000i32 as u32, 60_160, 60_160, true),
        ]);
    }

    #[test]
    fn small_reorder_and_skew_between_tracks_is_not_a_jump() {
        run(&[
            v(0, 0, 0, false),
            a(300, 300, 300, false),
            v(40, 40, 40, false),
            a(323, 323, 323, false),
            v(80, 80, 80, false),
            // A video frame 900 ms late on its own track: held, not flagged.
            v(-820i32 as u32, 80, 80, false),
            v(120, 120, 120, false),
        ]);
    }

    #[test]
    fn fixed_offset_between_tracks_never_ping_pongs() {
        // Audio stamped 3 s behind video for the whole stream.
        let mut rows = Vec::new();
        for i in 0..50u32 {
            rows.push(v(3000 + i * 40, 3000 + i as u64 * 40, 3000 + i * 40, false));
            rows.push(a(i * 40, i as u64 * 40, i * 40, false));
        }
        run(&rows);
    }

    #[test]
    fn a_track_with_its_own_clock_keeps_it_after_the_other_jumps() {
        run(&[
            v(60_000, 60_000, 60_000, false),
            a(60_000, 60_000, 60_000, false),
            v(60_040, 60_040, 60_040, false),
            a(60_023, 60_023, 60_023, false),
            // Only video restarts at 0; audio goes on with its old clock.
            v(0, 60_080, 60_080, true),
            a(60_046, 60_046, 60_046, false),
            v(40, 60_120, 60_120, false),
            a(60_069, 60_069, 60_069, false),
            v(80, 60_160, 60_160, false),
        ]);
    }

    #[test]
    fn a_source_restart_rebases_its_next_media_frame() {
        // What the gateway relay did before the one normaliser: headers of the new session
        // take the last time, media continues one video frame on, and an outage leaves no hole.
        run(&[
            meta(0, 1000, 0),
            v(1000, 1000, 1000, false),
            a(1010, 1010, 1010, false),
            v(1040, 1040, 1040, false),
            a(1033, 1033, 1033, false),
            v(1080, 1080, 1080, false),
            (R, false, 0, 0, 0, false),
            meta(0, 1080, 1080),
            cfg(V, 0, 1080, 1080),
            v(0, 1120, 1120, true),
            a(5, 1125, 1125, false),
            v(40, 1160, 1160, false),
            (R, false, 0, 0, 0, false),
            v(90_000, 1200, 1200, true),
            a(89_990, 1190, 1190, false),
            // Never backwards within a track, even for an out-of-order frame.
            a(89_000, 1190, 1190, false),
        ]);
    }

    #[test]
    fn a_restart_across_the_wrap() {
        let m = u32::MAX as u64;
        run(&[
            v(u32::MAX - 10, m - 10, u32::MAX - 10, false),
            v(30, m + 31, 30, false),
            (R, false, 0, 0, 0, false),
            v(0, m + 72, 71, true),
        ]);
    }

    #[test]
    fn a_restart_before_any_media_is_nothing() {
        run(&[(R, false, 0, 0, 0, false), v(500, 500, 500, false)]);
    }

    #[test]
    fn audio_only_jumps() {
        run(&[
            a(0, 0, 0, false),
            a(23, 23, 23, false),
            a(46, 46, 46, false),
            a(3_600_000, 69, 69, true),
            a(3_600_023, 92, 92, false),
            a(5, 115, 115, true),
        ]);
    }

    #[test]
    fn normalise_sets_the_frame_fields() {
        use bytes::Bytes;
        let mut n = Normaliser::new();
        let mut f = Frame::parse(9, 1000, Bytes::from_static(&[0x17, 1, 0, 0, 0, 1])).unwrap();
        assert_eq!((f.time, f.discontinuity), (1000, false), "parse's defaults");
        n.normalise(&mut f);
        assert_eq!((f.time, f.dts), (START, 1000));
        let mut g = Frame::parse(9, 9_000_000, Bytes::from_static(&[0x27, 1, 0, 0, 0, 1])).unwrap();
        n.normalise(&mut g);
        assert_eq!((g.time, g.dts, g.discontinuity), (START + 40, 1040, true));
        // A source marking its frame as a restart forces a rebase.
        let mut h = Frame::parse(9, 1080, Bytes::from_static(&[0x27, 1, 0, 0, 0, 1])).unwrap();
        h.discontinuity = true;
        n.normalise(&mut h);
        assert_eq!((h.time, h.dts, h.discontinuity), (START + 80, 1080, true));
        assert_eq!(n.now(), START + 80);
    }

    #[test]
    fn hostile_timestamps_stay_monotonic_and_bounded() {
        // Pseudo-random raw clocks: every track's time never decreases, and the stream time
        // never runs more than one jump window ahead of the frames given.
        let mut n = Normaliser::new();
        let mut x: u32 = 0x1234_5678;
        let mut last = [0u64; 2];
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let track = if x & 1 == 0 { A } else { V };
            let s = n.stamp(track, x & 0x30 == 0, x);
            if x & 0x30 != 0 {
                let slot = &mut last[(track == V) as usize];
                assert!(*slot <= s.time || i == 0);
                *slot = s.time;
            }
        }
        assert!(n.now() < START + 20_000 * (JUMP_FORWARD_MS as u64 + 1));
    }
}
