//! HLS policy and playlist: where segments are cut, and what the playlist lists (window, target
//! duration, program date time, discontinuities, ENDLIST; the text itself is `mux::m3u8`). Times
//! come normalised (`media::time` decides what a wrap or a jump is). No files here: `record::hls`
//! decides where bytes go and when the playlist is replaced.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::media::Track;
use crate::mux::m3u8::{self, Header, MediaPlaylist, Segment};
use std::collections::VecDeque;

/// Where segments are cut: at the first video keyframe at or after the target duration, or on
/// time for audio-only programs.
#[derive(Debug, Clone, Copy)]
pub struct CutPolicy {
    pub target_ms: i64,
}

impl CutPolicy {
    /// Should a new segment start with this frame? `has_video`: the program has a video track.
    pub fn cut_here(
        &self,
        segment_start: i64,
        t: i64,
        track: Track,
        key: bool,
        has_video: bool,
    ) -> bool {
        if t - segment_start < self.target_ms {
            return false;
        }
        if has_video {
            track == Track::Video && key
        } else {
            track == Track::Audio
        }
    }
}

/// One closed segment as the playlist lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    /// `segment_{number}.ts`, counting from 1.
    pub number: u64,
    pub duration_ms: u64,
    /// Wall-clock time of the segment's first frame, Unix milliseconds.
    pub program_date_ms: i64,
    /// Preceded by `#EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
}

impl SegmentEntry {
    pub fn file_name(&self) -> String {
        segment_name(self.number)
    }
}

pub fn segment_name(number: u64) -> String {
    format!("segment_{number}.ts")
}

/// An fMP4 media segment of an HLS recording (AV1, VP9, Opus: what MPEG-TS cannot carry).
pub fn fmp4_segment_name(number: u64) -> String {
    format!("segment_{number}.m4s")
}

/// The media playlist of one session.
#[derive(Debug, Clone)]
pub struct Playlist {
    /// Segments listed at most (0 = all).
    window: usize,
    listed: VecDeque<SegmentEntry>,
    /// Segments that left the playlist but are kept for a grace period (players may still be
    /// downloading them); numbers, oldest first.
    leaving: VecDeque<u64>,
    /// Only grows: the target duration must never decrease during a session.
    max_duration_ms: u64,
    /// Floor for the target duration (the configured fragment length).
    min_target_ms: u64,
    discontinuity_sequence: u64,
    ended: bool,
    /// Session start, Unix milliseconds (a comment in the playlist, used when archiving).
    session_start_ms: i64,
    /// fMP4 segments (`segment_N.m4s`) behind this init segment (`#EXT-X-MAP`), VERSION 7.
    map: Option<String>,
}

/// The comment line that records the session start (Unix ms) in our playlists.
pub const SESSION_START_TAG: &str = "#RTMPD-SESSION-START:";

impl Playlist {
    pub fn new(window: usize, min_target_ms: u64, session_start_ms: i64) -> Playlist {
        Playlist {
            window,
            listed: VecDeque::new(),
            leaving: VecDeque::new(),
            max_duration_ms: 0,
            min_target_ms,
            discontinuity_sequence: 0,
            ended: false,
            session_start_ms,
            map: None,
        }
    }

    /// Lists fMP4 segments (`segment_N.m4s`) with `#EXT-X-MAP:URI="{init}"` from now on.
    pub fn set_fmp4(&mut self, init: &str) {
        self.map = Some(init.to_string());
    }

    /// The file name of segment `number` in this playlist's format.
    pub fn file_name(&self, number: u64) -> String {
        match self.map {
            Some(_) => fmp4_segment_name(number),
            None => segment_name(number),
        }
    }

    /// Adds a closed segment. Returns the numbers of segments to delete now: those that left
    /// the window more than a grace of `max(window, 2)` segments ago.
    pub fn push(&mut self, entry: SegmentEntry) -> Vec<u64> {
        self.max_duration_ms = self.max_duration_ms.max(entry.duration_ms);
        self.listed.push_back(entry);
        if self.window == 0 {
            return Vec::new();
        }
        while self.listed.len() > self.window {
            if let Some(old) = self.listed.pop_front() {
                self.leaving.push_back(old.number);
            }
            // The tag on the new first segment disappears from view with the one that left;
            // players track it through the discontinuity sequence.
            if self.listed.front().is_some_and(|s| s.discontinuity) {
                self.discontinuity_sequence += 1;
                if let Some(front) = self.listed.front_mut() {
                    front.discontinuity = false;
                }
            }
        }
        let grace = self.window.max(2);
        let mut delete = Vec::new();
        while self.leaving.len() > grace {
            if let Some(n) = self.leaving.pop_front() {
                delete.push(n);
            }
        }
        delete
    }

    /// Marks the playlist complete (ENDLIST). Returns every segment still waiting to be deleted:
    /// nobody reads a finished live window's past.
    pub fn end(&mut self) -> Vec<u64> {
        self.ended = true;
        self.leaving.drain(..).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    pub fn segments(&self) -> impl Iterator<Item = &SegmentEntry> {
        self.listed.iter()
    }

    /// `#EXT-X-TARGETDURATION`: whole seconds, at least every EXTINF ever listed.
    pub fn target_duration(&self) -> u64 {
        self.max_duration_ms
            .max(self.min_target_ms)
            .div_ceil(1000)
            .max(1)
    }

    pub fn render(&self) -> String {
        let mut p = MediaPlaylist::new(
            &Header {
                // EXT-X-MAP without I-FRAMES-ONLY needs version 6; fMP4 segments, 7.
                version: if self.map.is_some() { 7 } else { 3 },
                map: self.map.as_deref(),
                target_duration: self.target_duration(),
                media_sequence: self.listed.front().map_or(1, |e| e.number),
                discontinuity_sequence: self.discontinuity_sequence,
                // Every segment stays listed: players may seek back to the start.
                event: self.window == 0,
                ..Header::default()
            },
            self.listed.len(),
        );
        p.tag(&format!("{SESSION_START_TAG}{}", self.session_start_ms));
        for e in &self.listed {
            p.segment(&Segment {
                duration_secs: m3u8::secs_of_ms(e.duration_ms),
                uri: &self.file_name(e.number),
                discontinuity: e.discontinuity,
                program_date_time: Some(&format_iso8601(e.program_date_ms)),
            });
        }
        p.finish(self.ended)
    }
}

/// True when playlist text is complete (has `#EXT-X-ENDLIST`).
pub fn has_endlist(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "#EXT-X-ENDLIST")
}

/// The session start recorded in one of our playlists, else the first program date time.
pub fn playlist_start_ms(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(SESSION_START_TAG)?.trim().parse().ok())
        .or_else(|| {
            text.lines()
                .find_map(|l| parse_iso8601(l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")?.trim()))
        })
}

/// `2026-11-24T01:08:29.007Z`: the program date time of playlists, UTC to the millisecond.
const ISO8601_MS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
/// What `parse_iso8601` takes: the same, any fraction of a second or none.
const ISO8601_IN: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]Z");

/// `unix_ms` as `ISO8601_MS`; outside the years `time` holds (1-9999 here), the epoch.
pub fn format_iso8601(unix_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(ISO8601_MS)
        // Fails only for a description asking for what the value lacks; this one does not.
        .unwrap_or_default()
}

/// Parses what `format_iso8601` writes (UTC, a fraction of any length or none, kept to the
/// millisecond). Other offsets are refused.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let t = PrimitiveDateTime::parse(s, ISO8601_IN).ok()?.assume_utc();
    Some(t.unix_timestamp() * 1000 + i64::from(t.millisecond()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_iso8601_survives_fuzz_case_negative_time_fields() {
        // fuzz/regressions/hls_playlist/crash-706c45b9059b46dc64ce721e228ba935562d9f42
        assert_eq!(parse_iso8601("17-11-2T-21717177:-1:-122Z"), None);
        assert_eq!(parse_iso8601("9223372036854775807-01-01T00:00:00Z"), None);
        assert_eq!(
            parse_iso8601("2026-12-03T14:40:00.5Z"),
            Some(1_796_308_800_500)
        );
    }

    fn entry(number: u64, duration_ms: u64, discontinuity: bool) -> SegmentEntry {
        SegmentEntry {
            number,
            duration_ms,
            program_date_ms: 1_795_000_000_000 + number as i64 * 4000,
            discontinuity,
        }
    }

    fn extinfs(text: &str) -> Vec<f64> {
        text.lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .map(|v| v.trim_end_matches(',').parse().unwrap())
            .collect()
    }

    fn tag_value(text: &str, tag: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn target_duration_covers_every_extinf_and_never_shrinks() {
        let mut p = Playlist::new(0, 4000, 0);
        for (i, d) in [4000u64, 4001, 6500, 3000].into_iter().enumerate() {
            p.push(entry(i as u64 + 1, d, false));
            let text = p.render();
            let target = tag_value(&text, "#EXT-X-TARGETDURATION:").unwrap();
            for e in extinfs(&text) {
                assert!(e <= target as f64, "{e} > {target}\n{text}");
            }
        }
        assert_eq!(p.target_duration(), 7);
        assert!(p.render().contains("#EXTINF:4.001,\nsegment_2.ts\n"));
    }

    #[test]
    fn live_then_endlist() {
        let mut p = Playlist::new(0, 4000, 1234);
        p.push(entry(1, 4000, false));
        let live = p.render();
        assert!(!has_endlist(&live));
        assert!(live.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n"));
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
        assert!(live.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(live.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-18T"));
        assert_eq!(playlist_start_ms(&live), Some(1234));
        assert!(p.end().is_empty());
        let done = p.render();
        assert!(done.ends_with("segment_1.ts\n#EXT-X-ENDLIST\n"));
        assert!(has_endlist(&done));
    }

    #[test]
    fn window_slides_and_deletes_after_grace() {
        let mut p = Playlist::new(3, 4000, 0);
        let mut deleted = Vec::new();
        for n in 1..=10 {
            deleted.extend(p.push(entry(n, 4000, n == 5)));
            let listed: Vec<u64> = p.segments().map(|s| s.number).collect();
            let first = n.saturating_sub(2).max(1);
            assert_eq!(listed, (first..=n).collect::<Vec<_>>());
            let text = p.render();
            assert_eq!(tag_value(&text, "#EXT-X-MEDIA-SEQUENCE:"), Some(first));
            assert!(!text.contains("PLAYLIST-TYPE"));
        }
        // Segments 1..=7 left the window; the 3 most recent of them are still kept.
        assert_eq!(deleted, vec![1, 2, 3, 4]);
        // Segment 5's tag was dropped when it became the first listed: counted in the sequence.
        let text = p.render();
        assert_eq!(
            tag_value(&text, "#EXT-X-DISCONTINUITY-SEQUENCE:"),
            Some(1),
            "{text}"
        );
        assert_eq!(p.end(), vec![5, 6, 7]);
    }

    #[test]
    fn discontinuity_tag_precedes_its_segment() {
        let mut p = Playlist::new(0, 4000, 0);
        p.push(entry(1, 4000, false));
        p.push(entry(2, 4000, true));
        let text = p.render();
        let i = text.find("#EXT-X-DISCONTINUITY\n").unwrap();
        let j = text.find("segment_1.ts").unwrap();
        let k = text.find("segment_2.ts").unwrap();
        assert!(j < i && i < k);
    }

    #[test]
    fn cut_policy() {
        let p = CutPolicy { target_ms: 4000 };
        assert!(!p.cut_here(0, 3999, Track::Video, true, true));
        assert!(p.cut_here(0, 4000, Track::Video, true, true));
        assert!(!p.cut_here(0, 6000, Track::Video, false, true));
        assert!(!p.cut_here(0, 6000, Track::Audio, true, true));
        assert!(p.cut_here(0, 4010, Track::Audio, true, false));
    }

    #[test]
    fn dates() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            format_iso8601(1_795_482_509_007),
            "2026-11-24T01:08:29.007Z"
        );
        for ms in [0i64, 951_782_400_123, 1_795_482_509_007, 4_102_444_799_999] {
            assert_eq!(parse_iso8601(&format_iso8601(ms)), Some(ms));
        }
        assert_eq!(
            parse_iso8601("2026-11-24T01:48:29Z"),
            Some(1_795_484_909_000)
        );
        assert_eq!(
            parse_iso8601("2026-11-24T01:48:29.1239Z"),
            Some(1_795_484_909_123)
        );
        assert_eq!(parse_iso8601("2026-11-24T01:48:29+01:00"), None);
        assert_eq!(parse_iso8601("2026-11-24T01:48:29.Z"), None);
        assert_eq!(parse_iso8601("2026-02-30T01:48:29Z"), None);
        assert_eq!(parse_iso8601("garbage"), None);
        // Outside what `time` holds: the epoch, no panic.
        assert_eq!(format_iso8601(i64::MAX), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso8601(i64::MIN), "1970-01-01T00:00:00.000Z");
    }
}
