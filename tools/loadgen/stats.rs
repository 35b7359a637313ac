//! Per-viewer statistics and the "full stream" rule (see the crate doc): first keyframe,
//! stalls between reads, timestamp gaps, the tail. Fed by the protocol readers; no I/O.

use std::time::{Duration, Instant};

use rtmpd::media::Track;

use crate::{STALL_LIMIT, TAIL_LIMIT, TS_GAP_LIMIT_MS};

#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) start: Instant,
    /// Until the protocol said "playing": Play.Start, HTTP 200, WebSocket 101, or first media.
    pub(crate) ready: Option<Duration>,
    pub(crate) first_video_key: Option<Duration>,
    pub(crate) first_audio: Option<Duration>,
    pub(crate) saw_video: bool,
    /// What the protocol parser got: socket bytes, or over TLS the decrypted bytes.
    pub(crate) bytes: u64,
    /// What the socket gave (over TLS: ciphertext, with the handshake and record overhead).
    pub(crate) wire_bytes: u64,
    pub(crate) frames: u64,
    pub(crate) last_media: Option<Instant>,
    pub(crate) max_stall: Duration,
    /// Last timestamp per track (audio, video), from the first frame after the sequence headers.
    pub(crate) last_dts: [Option<u32>; 2],
    /// Largest forward step between consecutive timestamps of one track, in ms.
    pub(crate) max_ts_gap: u32,
    /// Set by the frame callbacks, consumed per read to measure stalls between reads.
    pub(crate) media_in_read: bool,
    pub(crate) error: Option<String>,
}

impl Stats {
    pub(crate) fn new(start: Instant) -> Stats {
        Stats {
            start,
            ready: None,
            first_video_key: None,
            first_audio: None,
            saw_video: false,
            bytes: 0,
            wire_bytes: 0,
            frames: 0,
            last_media: None,
            max_stall: Duration::ZERO,
            last_dts: [None, None],
            max_ts_gap: 0,
            media_in_read: false,
            error: None,
        }
    }

    pub(crate) fn mark_ready(&mut self, now: Instant) {
        if self.ready.is_none() {
            self.ready = Some(now - self.start);
        }
    }

    pub(crate) fn on_frame(
        &mut self,
        track: Track,
        key: bool,
        config: bool,
        dts: u32,
        now: Instant,
    ) {
        let slot = match track {
            Track::Audio => 0,
            Track::Video => 1,
            Track::Meta => return,
        };
        // Sequence headers may carry any timestamp (a late joiner's are from the stream start).
        if !config {
            if let Some(prev) = self.last_dts[slot] {
                // Wrapping, as RTMP time wraps at 2^32 ms; a step back counts as no gap.
                let step = dts.wrapping_sub(prev);
                if step < u32::MAX / 2 {
                    self.max_ts_gap = self.max_ts_gap.max(step);
                }
            }
            self.last_dts[slot] = Some(dts);
        }
        match track {
            Track::Video => {
                self.saw_video = true;
                self.frames += 1;
                self.media_in_read = true;
                if key && !config && self.first_video_key.is_none() {
                    self.first_video_key = Some(now - self.start);
                }
            }
            Track::Audio => {
                self.frames += 1;
                self.media_in_read = true;
                if !config && self.first_audio.is_none() {
                    self.first_audio = Some(now - self.start);
                }
            }
            Track::Meta => {}
        }
    }

    /// After each read: a read that carried media ends the current gap.
    pub(crate) fn end_read(&mut self, now: Instant) {
        if !std::mem::take(&mut self.media_in_read) {
            return;
        }
        self.mark_ready(now);
        if let Some(last) = self.last_media {
            self.max_stall = self.max_stall.max(now - last);
        }
        self.last_media = Some(now);
    }

    /// Time to first keyframe; first audio frame for a stream without video.
    pub(crate) fn ttfk(&self) -> Option<Duration> {
        if self.saw_video {
            self.first_video_key
        } else {
            self.first_audio
        }
    }

    pub(crate) fn full(&self, end: Instant) -> bool {
        self.error.is_none()
            && self.ttfk().is_some()
            && self.max_stall <= STALL_LIMIT
            && self.max_ts_gap <= TS_GAP_LIMIT_MS
            && self
                .last_media
                .is_some_and(|t| end.saturating_duration_since(t) <= TAIL_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_stream_rules() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        s.on_frame(Track::Video, true, false, 0, t0 + Duration::from_millis(10));
        s.end_read(t0 + Duration::from_millis(10));
        s.on_frame(
            Track::Video,
            false,
            false,
            0,
            t0 + Duration::from_millis(1500),
        );
        s.end_read(t0 + Duration::from_millis(1500));
        assert!(s.full(t0 + Duration::from_millis(2000)));
        // The last media is more than a second before the end.
        assert!(!s.full(t0 + Duration::from_millis(2600)));
        // A stall over 2 s.
        s.on_frame(
            Track::Video,
            false,
            false,
            0,
            t0 + Duration::from_millis(3600),
        );
        s.end_read(t0 + Duration::from_millis(3600));
        assert_eq!(s.max_stall, Duration::from_millis(2100));
        assert!(!s.full(t0 + Duration::from_millis(3700)));
    }

    #[test]
    fn dropped_frames_are_not_the_full_stream() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        let at = |s: &mut Stats, track, key, config, dts, ms| {
            let now = t0 + Duration::from_millis(ms);
            s.on_frame(track, key, config, dts, now);
            s.end_read(now);
        };
        // A late joiner's sequence header carries the stream's first timestamp: no gap.
        at(&mut s, Track::Video, true, true, 0, 1);
        at(&mut s, Track::Video, true, false, 90_000, 2);
        at(&mut s, Track::Audio, true, false, 90_010, 3);
        at(&mut s, Track::Video, false, false, 90_040, 40);
        at(&mut s, Track::Audio, true, false, 90_033, 41);
        assert_eq!(s.max_ts_gap, 40);
        assert!(s.full(t0 + Duration::from_millis(100)));
        // A skip to the next keyframe two seconds on.
        at(&mut s, Track::Video, true, false, 92_000, 80);
        assert_eq!(s.max_ts_gap, 1960);
        assert!(!s.full(t0 + Duration::from_millis(100)));
        // Timestamps wrap at 2^32 ms without counting as a gap.
        let mut w = Stats::new(t0);
        at(&mut w, Track::Audio, true, false, u32::MAX - 10, 1);
        at(&mut w, Track::Audio, true, false, 13, 2);
        assert_eq!(w.max_ts_gap, 24);
    }

    #[test]
    fn audio_only_ttfk_is_first_audio() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        s.on_frame(Track::Audio, true, true, 0, t0 + Duration::from_millis(5));
        assert!(s.ttfk().is_none());
        s.on_frame(Track::Audio, true, false, 0, t0 + Duration::from_millis(7));
        assert_eq!(s.ttfk(), Some(Duration::from_millis(7)));
    }
}
