//! The one m3u8 media-playlist writer (RFC 8216, plus the RFC 8216bis LL-HLS tags): header
//! tags, segments (with discontinuity and
//! program date time), endlist. Text only: which segments are listed, their durations and when
//! the playlist ends are decided by the callers (`mux::hls`, `record::fmp4`, `llhls::playlist`).

use std::fmt::Write;

/// The tags before the first segment, in the order they are written.
#[derive(Debug, Clone, Default)]
pub struct Header<'a> {
    /// `#EXT-X-VERSION`.
    pub version: u8,
    /// `#EXT-X-TARGETDURATION`, whole seconds.
    pub target_duration: u64,
    /// `#EXT-X-MEDIA-SEQUENCE`: the number of the first segment listed.
    pub media_sequence: u64,
    /// `#EXT-X-DISCONTINUITY-SEQUENCE`, written only when not 0.
    pub discontinuity_sequence: u64,
    /// `#EXT-X-PLAYLIST-TYPE:EVENT`: segments are only ever appended.
    pub event: bool,
    /// `#EXT-X-INDEPENDENT-SEGMENTS`.
    pub independent_segments: bool,
    /// `#EXT-X-MAP:URI="..."`, the fMP4 initialisation segment.
    pub map: Option<&'a str>,
}

/// One segment entry.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// `#EXTINF`, written with millisecond precision.
    pub duration_secs: f64,
    pub uri: &'a str,
    /// Preceded by `#EXT-X-DISCONTINUITY` (the timeline or the encoding changed here).
    pub discontinuity: bool,
    /// `#EXT-X-PROGRAM-DATE-TIME`, already formatted (ISO 8601).
    pub program_date_time: Option<&'a str>,
}

/// Writes a media playlist in order: `new` (header), `tag` (extra header lines), `segment`s,
/// then `finish`.
#[derive(Debug)]
pub struct MediaPlaylist {
    text: String,
}

impl MediaPlaylist {
    /// Starts the playlist; `segments` is a capacity hint.
    pub fn new(header: &Header<'_>, segments: usize) -> MediaPlaylist {
        let mut s = String::with_capacity(160 + segments * 96);
        let _ = writeln!(s, "#EXTM3U\n#EXT-X-VERSION:{}", header.version);
        let _ = writeln!(s, "#EXT-X-TARGETDURATION:{}", header.target_duration);
        let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{}", header.media_sequence);
        if header.discontinuity_sequence > 0 {
            let _ = writeln!(
                s,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                header.discontinuity_sequence
            );
        }
        if header.event {
            s.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n");
        }
        if header.independent_segments {
            s.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        if let Some(map) = header.map {
            let _ = writeln!(s, "#EXT-X-MAP:URI=\"{map}\"");
        }
        MediaPlaylist { text: s }
    }

    /// One more header line (a tag of our own, e.g. the session start), before any segment.
    pub fn tag(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    pub fn segment(&mut self, seg: &Segment<'_>) {
        self.segment_tags(seg.discontinuity, seg.program_date_time);
        self.extinf(seg.duration_secs, seg.uri);
    }

    /// The tags that open a segment (`#EXT-X-DISCONTINUITY`, `#EXT-X-PROGRAM-DATE-TIME`), for
    /// LL-HLS where the segment's `#EXT-X-PART` lines come between them and its `#EXTINF`.
    pub fn segment_tags(&mut self, discontinuity: bool, program_date_time: Option<&str>) {
        if discontinuity {
            self.text.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(t) = program_date_time {
            let _ = writeln!(self.text, "#EXT-X-PROGRAM-DATE-TIME:{t}");
        }
    }

    /// The `#EXTINF` line and URI that close a segment.
    pub fn extinf(&mut self, duration_secs: f64, uri: &str) {
        let _ = writeln!(self.text, "#EXTINF:{duration_secs:.3},\n{uri}");
    }

    /// `#EXT-X-MAP` between segments: the init segment changed (a new codec configuration).
    pub fn map(&mut self, uri: &str) {
        let _ = writeln!(self.text, "#EXT-X-MAP:URI=\"{uri}\"");
    }

    /// LL-HLS (RFC 8216bis) header lines: `#EXT-X-SERVER-CONTROL` with blocking reload and
    /// `PART-HOLD-BACK` of three part targets, then `#EXT-X-PART-INF`. Call before any segment.
    pub fn low_latency(&mut self, part_target_ms: u64) {
        let _ = writeln!(
            self.text,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n#EXT-X-PART-INF:PART-TARGET={:.3}",
            secs_of_ms(part_target_ms.saturating_mul(3)),
            secs_of_ms(part_target_ms)
        );
    }

    /// One `#EXT-X-PART` of the segment that follows it.
    pub fn part(&mut self, duration_secs: f64, uri: &str, independent: bool) {
        let ind = if independent { ",INDEPENDENT=YES" } else { "" };
        let _ = writeln!(
            self.text,
            "#EXT-X-PART:DURATION={duration_secs:.3},URI=\"{uri}\"{ind}"
        );
    }

    /// `#EXT-X-PRELOAD-HINT` for the next part, after the last part.
    pub fn preload_hint(&mut self, uri: &str) {
        let _ = writeln!(self.text, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{uri}\"");
    }

    /// The text; `ended` adds `#EXT-X-ENDLIST` (no segment will be added).
    pub fn finish(mut self, ended: bool) -> String {
        if ended {
            self.text.push_str("#EXT-X-ENDLIST\n");
        }
        self.text
    }
}

/// `#EXTINF` seconds of a whole number of milliseconds (written back exactly as `S.mmm`).
pub fn secs_of_ms(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tag_in_order() {
        let mut p = MediaPlaylist::new(
            &Header {
                version: 7,
                target_duration: 4,
                media_sequence: 3,
                discontinuity_sequence: 2,
                event: true,
                independent_segments: true,
                map: Some("init.mp4"),
            },
            2,
        );
        p.tag("#X-OURS:1");
        p.segment(&Segment {
            duration_secs: 3.9996,
            uri: "s_3.m4s",
            discontinuity: false,
            program_date_time: Some("2026-01-01T00:00:00.000Z"),
        });
        p.segment(&Segment {
            duration_secs: 2.0,
            uri: "s_4.m4s",
            discontinuity: true,
            program_date_time: None,
        });
        assert_eq!(
            p.finish(true),
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:3\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-PLAYLIST-TYPE:EVENT\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n#X-OURS:1\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n#EXTINF:4.000,\ns_3.m4s\n\
             #EXT-X-DISCONTINUITY\n#EXTINF:2.000,\ns_4.m4s\n#EXT-X-ENDLIST\n"
        );
        let bare = MediaPlaylist::new(&Header::default(), 0).finish(false);
        assert_eq!(
            bare,
            "#EXTM3U\n#EXT-X-VERSION:0\n#EXT-X-TARGETDURATION:0\n#EXT-X-MEDIA-SEQUENCE:0\n"
        );
    }

    #[test]
    fn low_latency_tags() {
        let mut p = MediaPlaylist::new(
            &Header {
                version: 9,
                target_duration: 2,
                map: Some("init.mp4"),
                ..Header::default()
            },
            1,
        );
        p.low_latency(333);
        p.part(0.333, "part0.m4s", true);
        p.part(0.3334, "part1.m4s", false);
        p.segment(&Segment {
            duration_secs: 0.667,
            uri: "seg0.m4s",
            discontinuity: false,
            program_date_time: None,
        });
        p.preload_hint("part2.m4s");
        assert_eq!(
            p.finish(false),
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-MAP:URI=\"init.mp4\"\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.999\n\
             #EXT-X-PART-INF:PART-TARGET=0.333\n\
             #EXT-X-PART:DURATION=0.333,URI=\"part0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.333,URI=\"part1.m4s\"\n#EXTINF:0.667,\nseg0.m4s\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part2.m4s\"\n"
        );
    }

    #[test]
    fn segment_pieces_for_parts_and_a_mid_playlist_map() {
        let mut p = MediaPlaylist::new(&Header::default(), 1);
        p.segment_tags(true, Some("2026-01-01T00:00:00.000Z"));
        p.part(0.5, "part0.m4s", true);
        p.extinf(0.5, "seg0.m4s");
        p.map("init1.mp4");
        p.segment_tags(false, None);
        p.extinf(1.25, "seg1.m4s");
        assert!(p.finish(false).ends_with(
            "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n\
             #EXT-X-PART:DURATION=0.500,URI=\"part0.m4s\",INDEPENDENT=YES\n#EXTINF:0.500,\nseg0.m4s\n\
             #EXT-X-MAP:URI=\"init1.mp4\"\n#EXTINF:1.250,\nseg1.m4s\n"
        ));
    }

    /// The HLS playlist wrote EXTINF from integer milliseconds as `ms / 1000 . ms % 1000`;
    /// the shared writer formats seconds. They must agree for every duration a segment has.
    #[test]
    fn extinf_of_milliseconds_is_byte_identical_to_the_integer_form() {
        let check = |ms: u64| {
            let mut p = MediaPlaylist::new(&Header::default(), 1);
            p.segment(&Segment {
                duration_secs: secs_of_ms(ms),
                uri: "x",
                discontinuity: false,
                program_date_time: None,
            });
            let text = p.finish(false);
            let want = format!("#EXTINF:{}.{:03},\nx\n", ms / 1000, ms % 1000);
            assert!(text.ends_with(&want), "{ms}: {text:?}");
        };
        (0..=200_000).for_each(check);
        [86_400_000, 1 << 32, 1 << 40].into_iter().for_each(check);
    }

    /// `mux::hls::Playlist` through the shared writer gives the text it rendered before the
    /// writer existed (captured from that code): live window with a discontinuity leaving it,
    /// event playlist, endlist.
    #[test]
    fn hls_playlists_are_byte_identical_to_before() {
        use crate::mux::hls::{Playlist, SegmentEntry};
        let entry = |number: u64, duration_ms: u64, discontinuity: bool| SegmentEntry {
            number,
            duration_ms,
            program_date_ms: 1_780_000_000_000 + number as i64 * 4000,
            discontinuity,
        };
        let mut live = Playlist::new(2, 2000, 1_780_000_000_123);
        let mut event = Playlist::new(0, 4000, 1_780_000_000_000);
        let mut texts = Vec::new();
        for (n, ms, disc) in [
            (1, 4000, false),
            (2, 4001, true),
            (3, 999, false),
            (4, 12_345, true),
        ] {
            live.push(entry(n, ms, disc));
            event.push(entry(n, ms, disc));
            texts.push(live.render());
        }
        live.end();
        event.end();
        texts.push(live.render());
        texts.push(event.render());
        assert_eq!(texts, GOLDEN);
    }

    const GOLDEN: [&str; 6] = [
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:1\n#RTMPD-SESSION-START:1780000000123\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:44.000Z\n#EXTINF:4.000,\nsegment_1.ts\n",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:1\n#RTMPD-SESSION-START:1780000000123\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:44.000Z\n#EXTINF:4.000,\nsegment_1.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:48.000Z\n#EXTINF:4.001,\nsegment_2.ts\n",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n#RTMPD-SESSION-START:1780000000123\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:48.000Z\n#EXTINF:4.001,\nsegment_2.ts\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:52.000Z\n#EXTINF:0.999,\nsegment_3.ts\n",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:13\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n#RTMPD-SESSION-START:1780000000123\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:52.000Z\n#EXTINF:0.999,\nsegment_3.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:56.000Z\n#EXTINF:12.345,\nsegment_4.ts\n",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:13\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n#RTMPD-SESSION-START:1780000000123\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:52.000Z\n#EXTINF:0.999,\nsegment_3.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:56.000Z\n#EXTINF:12.345,\nsegment_4.ts\n#EXT-X-ENDLIST\n",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:13\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PLAYLIST-TYPE:EVENT\n#RTMPD-SESSION-START:1780000000000\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:44.000Z\n#EXTINF:4.000,\nsegment_1.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:48.000Z\n#EXTINF:4.001,\nsegment_2.ts\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:52.000Z\n#EXTINF:0.999,\nsegment_3.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:56.000Z\n#EXTINF:12.345,\nsegment_4.ts\n#EXT-X-ENDLIST\n",
    ];
}
