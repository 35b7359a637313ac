//! The LL-HLS live window of one stream: `Frame`s in; fMP4 parts (`moof`+`mdat`, about 333 ms)
//! and segments (cut at the first keyframe after 2 s) out, kept in memory for the last few
//! segments under a hard byte cap and looked up by name. No playlist text (`playlist`), no
//! sockets, no clock: the caller passes frames and serves the shared `Bytes`.

use super::park::{Edge, Want};
use crate::media::{vp9, Codec, Frame, Track};
use crate::mux::fmp4::TrackLine as Line;
use crate::mux::fmp4::{self, Run, TrackConfig, AUDIO_TRACK_ID, VIDEO_TRACK_ID};
use crate::mux::fmp4::{media_payload, track_config};
use crate::mux::sample_entry::SampleEntry;
use bytes::Bytes;
use std::collections::VecDeque;

/// The window's policy; `clamped` keeps every field in a range that makes a valid playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    /// `PART-TARGET`: parts are cut so they stay at or under it (200-500 ms).
    pub part_target_ms: u32,
    /// A segment ends at the first keyframe at or after this (hard cut at twice it).
    pub segment_target_ms: u32,
    /// Complete segments kept (and listed) behind the open one.
    pub segments: usize,
    /// Hard cap on the bytes held: init segments plus every retained part.
    pub max_bytes: usize,
}

impl Default for WindowConfig {
    fn default() -> WindowConfig {
        WindowConfig {
            part_target_ms: 333,
            segment_target_ms: 2000,
            segments: 4,
            max_bytes: 32 << 20,
        }
    }
}

impl WindowConfig {
    pub fn clamped(self) -> WindowConfig {
        WindowConfig {
            part_target_ms: self.part_target_ms.clamp(200, 500),
            segment_target_ms: self.segment_target_ms.clamp(1000, 10_000),
            segments: self.segments.clamp(1, 32),
            // Room for the inits and at least a few parts of a small stream.
            max_bytes: self.max_bytes.max(MIN_BYTES),
        }
    }
}

const MIN_BYTES: usize = 256 << 10;
/// Frames held before the tracks are known (the hub's GOP cache starts with the configs, so
/// this only bites for a stream that never sends one).
const MAX_HELD_FRAMES: usize = 512;
const MAX_HELD_MS: u64 = 1000;
/// A part also ends at this many samples (a publisher whose clock stands still cannot grow one
/// part without bound; its bytes are bounded by `max_bytes / 8`).
const MAX_PART_SAMPLES: usize = 1024;

/// One part: `moof`+`mdat` (the first part of a segment also carries the segment's `styp`).
#[derive(Clone, Debug)]
pub struct Part {
    /// The global part number (`part{id}.m4s`), one counter across segments.
    pub id: u64,
    pub duration_ms: u64,
    /// Starts with a video keyframe (or the stream has no video).
    pub independent: bool,
    pub data: Bytes,
}

/// One segment: its parts in order; complete once the next segment started.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The media sequence number (`seg{msn}.m4s`).
    pub msn: u64,
    /// The init segment version its parts need (`init_name`).
    pub init: u64,
    /// Preceded by `#EXT-X-DISCONTINUITY` (the source's clock jumped or its codec changed).
    pub discontinuity: bool,
    /// `Frame::time` (ms) of its start, for `#EXT-X-PROGRAM-DATE-TIME`.
    pub start_time: u64,
    pub parts: Vec<Part>,
    pub complete: bool,
}

impl Segment {
    pub fn duration_ms(&self) -> u64 {
        self.parts.iter().map(|p| p.duration_ms).sum()
    }

    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }
}

/// What a name resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The body, as shared chunks written in order (a segment is its parts, not a copy).
    Found(Vec<Bytes>),
    /// The hinted part or the open segment: park the request with this `Want` (it is met when
    /// the object exists) and look again when it wakes.
    Pending(Want),
    /// Never existed, already evicted, or not hinted yet: 404.
    Missing,
}

pub fn init_name(version: u64) -> String {
    if version == 0 {
        "init.mp4".to_string()
    } else {
        format!("init{version}.mp4")
    }
}

pub fn segment_name(msn: u64) -> String {
    format!("seg{msn}.m4s")
}

pub fn part_name(id: u64) -> String {
    format!("part{id}.m4s")
}

/// The number in `{prefix}{digits}{suffix}`: digits only, so it always fits a u64.
fn number_in(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A track's description and the configuration payload it came from (a different one later is
/// a codec change).
#[derive(Clone, Debug)]
struct Slot {
    config: TrackConfig,
    source: Bytes,
}

/// The in-memory LL-HLS window of one stream. Feed it every frame of the stream (`push`); when
/// `push` says a part was added, wake the parked requests (`playlist::wake`).
#[derive(Debug)]
pub struct LiveWindow {
    cfg: WindowConfig,
    video: Option<Slot>,
    audio: Option<Slot>,
    /// Frames before the tracks are known.
    held: Vec<Frame>,
    started: bool,
    ended: bool,
    /// Init segments still referenced (and the current one last), by version.
    inits: VecDeque<(u64, Bytes)>,
    init_version: u64,
    video_line: Option<Line>,
    audio_line: Option<Line>,
    /// `Frame::time` of stream ms 0 (the first media frame taken).
    base: Option<u64>,
    segments: VecDeque<Segment>,
    next_msn: u64,
    next_part: u64,
    part_start_ms: Option<i64>,
    segment_start_ms: Option<i64>,
    open_part_bytes: usize,
    open_part_samples: usize,
    /// Video frames are dropped until a keyframe (at the start, after a codec change or a reset).
    need_key: bool,
    /// `Frame::time` of the first audio frame held back by `need_key`.
    key_wait_from: Option<u64>,
    discontinuity_next: bool,
    /// Discontinuities that left the playlist's head (`#EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuities_gone: u64,
    last_complete: Option<u64>,
    last_part: Option<(u64, u64)>,
    bytes: usize,
}

impl LiveWindow {
    pub fn new(cfg: WindowConfig) -> LiveWindow {
        LiveWindow {
            cfg: cfg.clamped(),
            video: None,
            audio: None,
            held: Vec::new(),
            started: false,
            ended: false,
            inits: VecDeque::new(),
            init_version: 0,
            video_line: None,
            audio_line: None,
            base: None,
            segments: VecDeque::new(),
            next_msn: 0,
            next_part: 0,
            part_start_ms: None,
            segment_start_ms: None,
            open_part_bytes: 0,
            open_part_samples: 0,
            need_key: false,
            key_wait_from: None,
            discontinuity_next: false,
            discontinuities_gone: 0,
            last_complete: None,
            last_part: None,
            bytes: 0,
        }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.cfg
    }

    /// Bytes held: init segments and retained parts (never over `max_bytes`).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The current init segment and its version, once the tracks are known.
    pub fn init(&self) -> Option<(u64, &Bytes)> {
        self.inits.back().map(|(v, b)| (*v, b))
    }

    /// `#EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities before the first listed segment's start,
    /// counting its own (it is written without the tag).
    pub fn discontinuity_sequence(&self) -> u64 {
        let head = self.segments.front().is_some_and(|s| s.discontinuity);
        self.discontinuities_gone + head as u64
    }

    /// The live edge for `park::judge`.
    pub fn edge(&self) -> Edge {
        Edge {
            complete: self.last_complete,
            last_part: self.last_part,
        }
    }

    /// The part `#EXT-X-PRELOAD-HINT` names, `None` before the start and after the end.
    pub fn preload_hint(&self) -> Option<u64> {
        (self.started && !self.ended).then_some(self.next_part)
    }

    /// A `Want` met exactly when the hinted part exists (it is part `k` of the open segment, or
    /// part 0 of the next one, which sorts after it).
    pub fn hint_want(&self) -> Want {
        match self.segments.back() {
            Some(s) if !s.complete => Want::Block {
                msn: s.msn,
                part: Some(s.parts.len() as u64),
            },
            _ => Want::Block {
                msn: self.next_msn,
                part: Some(0),
            },
        }
    }

    /// `init.mp4`, `init{v}.mp4`, `seg{msn}.m4s`, `part{id}.m4s`.
    pub fn lookup(&self, name: &str) -> Lookup {
        if name == "init.mp4" {
            return self.init_lookup(0);
        }
        if let Some(v) = number_in(name, "init", ".mp4") {
            // `init0.mp4` is not a name this window gives out.
            return if v == 0 {
                Lookup::Missing
            } else {
                self.init_lookup(v)
            };
        }
        if let Some(msn) = number_in(name, "seg", ".m4s") {
            return match self.segments.iter().find(|s| s.msn == msn) {
                Some(s) if s.complete => {
                    Lookup::Found(s.parts.iter().map(|p| p.data.clone()).collect())
                }
                Some(s) => Lookup::Pending(Want::Block {
                    msn: s.msn,
                    part: None,
                }),
                None => Lookup::Missing,
            };
        }
        if let Some(id) = number_in(name, "part", ".m4s") {
            if self.preload_hint() == Some(id) {
                return Lookup::Pending(self.hint_want());
            }
            let part = self
                .segments
                .iter()
                .flat_map(|s| s.parts.iter())
                .find(|p| p.id == id);
            return part.map_or(Lookup::Missing, |p| Lookup::Found(vec![p.data.clone()]));
        }
        Lookup::Missing
    }

    fn init_lookup(&self, version: u64) -> Lookup {
        self.inits
            .iter()
            .find(|(v, _)| *v == version)
            .map_or(Lookup::Missing, |(_, b)| Lookup::Found(vec![b.clone()]))
    }

    /// Takes one frame of the stream. Returns true when at least one part was added (wake the
    /// parked requests then).
    #[must_use]
    pub fn push(&mut self, frame: &Frame) -> bool {
        if self.ended || frame.track == Track::Meta || frame.track_id != 0 {
            return false;
        }
        let before = self.next_part;
        if self.describes(frame) {
            self.take_config(frame);
        }
        if !self.started {
            if frame.config {
                return false;
            }
            self.held.push(frame.clone());
            let span = frame.time.saturating_sub(self.held[0].time);
            let all = self.video.is_some() && self.audio.is_some();
            if all || span >= MAX_HELD_MS || self.held.len() >= MAX_HELD_FRAMES {
                self.start();
            }
        } else if !frame.config {
            self.media(frame);
        }
        self.next_part != before
    }

    /// A frame that may describe its track: a sequence header, or an MP3/AC-3 frame (their
    /// headers are the description).
    fn describes(&self, frame: &Frame) -> bool {
        frame.config
            || (matches!(frame.codec, Codec::Mp3 | Codec::Ac3 | Codec::Eac3)
                && self.audio.is_none())
    }

    fn take_config(&mut self, frame: &Frame) {
        let payload = Bytes::copy_from_slice(frame.payload());
        let slot = match frame.track {
            Track::Video => &self.video,
            _ => &self.audio,
        };
        if slot.as_ref().is_some_and(|s| s.source == payload) {
            return;
        }
        let Some(config) = track_config(frame, &payload) else {
            return;
        };
        if config.is_audio() != (frame.track == Track::Audio) {
            return;
        }
        let slot = Some(Slot {
            config,
            source: payload,
        });
        match frame.track {
            Track::Video => self.video = slot,
            _ => self.audio = slot,
        }
        if self.started {
            self.restart_tracks(frame.track == Track::Video);
        }
    }

    /// Leaves the waiting state: the first init, the lines, the held frames replayed.
    fn start(&mut self) {
        let held = std::mem::take(&mut self.held);
        if self.video.is_none() && self.audio.is_none() {
            // Nothing this window can describe (yet): drop what was held, keep waiting.
            return;
        }
        self.fill_vp9_size(&held);
        self.started = true;
        self.need_key = self.video.is_some();
        self.make_init();
        for f in &held {
            self.media(f);
        }
    }

    /// vpcC has no picture size; a keyframe has it.
    fn fill_vp9_size(&mut self, frames: &[Frame]) {
        if let Some(Slot {
            config: TrackConfig::Other(SampleEntry::Vp9 { width, height, .. }),
            ..
        }) = &mut self.video
        {
            let size = frames
                .iter()
                .filter(|f| f.track == Track::Video && f.key && !f.config)
                .find_map(|f| vp9::keyframe_dimensions(f.payload()));
            if let Some((w, h)) = size {
                (*width, *height) = (w, h);
            }
        }
    }

    fn make_init(&mut self) {
        let video = self.video.as_ref().map(|s| &s.config);
        let audio = self.audio.as_ref().map(|s| &s.config);
        let init = Bytes::from(fmp4::init_segment_for(video, audio));
        self.video_line = video.map(|c| Line::with_default(VIDEO_TRACK_ID, c.timescale()));
        self.audio_line = audio.map(|c| Line::with_default(AUDIO_TRACK_ID, c.timescale()));
        self.bytes += init.len();
        self.inits.push_back((self.init_version, init));
        self.enforce_cap();
    }

    /// A codec changed or a track appeared: the open segment ends, a new init follows with a
    /// discontinuity (decode times continue from the same base).
    fn restart_tracks(&mut self, video_changed: bool) {
        self.finish_lines();
        self.close_segment();
        self.segment_start_ms = None;
        self.init_version += 1;
        self.discontinuity_next = true;
        self.need_key |= video_changed;
        self.make_init();
    }

    fn media(&mut self, frame: &Frame) {
        let Some(data) = media_payload(frame) else {
            return;
        };
        if u32::try_from(data.len()).is_err() {
            return;
        }
        let has_line = match frame.track {
            Track::Video => self.video_line.is_some(),
            _ => self.audio_line.is_some(),
        };
        if !has_line {
            return;
        }
        let base = *self.base.get_or_insert(frame.time);
        let ms = frame.time.wrapping_sub(base) as i64;
        if frame.discontinuity && self.part_start_ms.is_some() {
            self.cut(frame.track, ms, true);
            self.discontinuity_next = true;
        } else {
            self.maybe_cut(frame.track, frame.key, ms);
        }
        // After the cut decision, which may itself have dropped the open segment (byte cap).
        // Audio waits for the keyframe too, so the segment starts independent, but not for
        // longer than a hard segment cut (a video track that never sends one).
        if self.need_key {
            match frame.track {
                Track::Video if frame.key => {
                    self.need_key = false;
                    self.key_wait_from = None;
                }
                Track::Video => return,
                _ => {
                    let from = *self.key_wait_from.get_or_insert(frame.time);
                    if frame.time.saturating_sub(from) < 2 * u64::from(self.cfg.segment_target_ms) {
                        return;
                    }
                }
            }
        }
        let sync = frame.track != Track::Video || frame.key;
        let line = match frame.track {
            Track::Video => self.video_line.as_mut(),
            _ => self.audio_line.as_mut(),
        };
        if let Some(line) = line {
            line.push(ms, frame.cts, sync, data.clone());
            self.open_part_bytes = self.open_part_bytes.saturating_add(data.len());
            self.open_part_samples += 1;
            self.part_start_ms.get_or_insert(ms);
            self.segment_start_ms.get_or_insert(ms);
        }
    }

    /// The track whose times decide the cuts: video once it flows, else audio.
    fn video_flows(&self) -> bool {
        self.video_line
            .as_ref()
            .is_some_and(|l| l.last_dt.is_some())
    }

    fn maybe_cut(&mut self, track: Track, key: bool, ms: i64) {
        let Some(part_start) = self.part_start_ms else {
            return;
        };
        let video_flows = self.video_flows();
        let has_video = video_flows || (track == Track::Video && self.video_line.is_some());
        if let Some(seg_start) = self.segment_start_ms {
            let elapsed = ms.saturating_sub(seg_start);
            if fmp4::should_cut(has_video, track, key, elapsed, self.cfg.segment_target_ms) {
                self.cut(track, ms, true);
                return;
            }
        }
        let clock = if has_video {
            Track::Video
        } else {
            Track::Audio
        };
        let target = self.cfg.part_target_ms as i64;
        let elapsed = ms.saturating_sub(part_start);
        let by_time = if track == clock {
            // Cut before a frame that would carry the part past the target (its own duration
            // is not known yet: the previous one of its track stands in).
            let line = match clock {
                Track::Video => self.video_line.as_ref(),
                _ => self.audio_line.as_ref(),
            };
            let next = line.map_or(0, |l| l.last_duration_ms());
            // At the target counts as past it: integer-ms frame times jitter by one.
            elapsed > 0 && elapsed.saturating_add(next) >= target
        } else {
            elapsed >= 2 * target
        };
        let by_size = self.open_part_samples >= MAX_PART_SAMPLES
            || self.open_part_bytes >= self.cfg.max_bytes / 8;
        if by_time || by_size {
            self.cut(track, ms, false);
        }
    }

    /// Ends the open part before a frame of `track` at `ms` (and the segment with it).
    fn cut(&mut self, track: Track, ms: i64, segment: bool) {
        let line = match track {
            Track::Video => self.video_line.as_mut(),
            _ => self.audio_line.as_mut(),
        };
        if let Some(line) = line {
            let dt = line.ticks(ms);
            line.settle(Some(dt));
        }
        let start = self.part_start_ms.replace(ms);
        if segment {
            self.segment_start_ms = Some(ms);
        }
        self.emit_part(start, ms);
        if segment {
            self.close_segment();
        }
    }

    /// Settles every pending sample with its track's previous duration and emits the last part.
    fn finish_lines(&mut self) {
        let mut ends = [None, None];
        for (line, end) in [self.video_line.as_mut(), self.audio_line.as_mut()]
            .into_iter()
            .zip(ends.iter_mut())
        {
            let Some(line) = line else { continue };
            if line.last_dt.is_none() {
                line.last_duration = line.default_duration;
            }
            line.settle(None);
            if !line.run.samples.is_empty() {
                *end = Some(line.end_ms());
            }
        }
        // The part ends where the clock track's samples end (video when it has any), as a cut would.
        let end = ends[0]
            .or(ends[1])
            .unwrap_or(0)
            .max(self.part_start_ms.unwrap_or(0));
        let start = self.part_start_ms.take();
        self.emit_part(start, end);
    }

    fn emit_part(&mut self, start_ms: Option<i64>, end_ms: i64) {
        let start_ms = start_ms.unwrap_or(end_ms);
        self.open_part_bytes = 0;
        self.open_part_samples = 0;
        let video = self.video_line.as_mut().and_then(|l| l.take_run());
        let audio = self.audio_line.as_mut().and_then(|l| l.take_run());
        let runs: Vec<&Run> = video.iter().chain(audio.iter()).collect();
        if runs.is_empty() {
            return;
        }
        let independent = match &video {
            Some(v) => v.samples.first().is_some_and(|s| s.is_sync()),
            None => self.video_line.is_none(),
        };
        if self.segments.back().is_none_or(|s| s.complete) {
            let msn = self.next_msn;
            self.next_msn += 1;
            self.segments.push_back(Segment {
                msn,
                init: self.init_version,
                discontinuity: std::mem::take(&mut self.discontinuity_next),
                start_time: self
                    .base
                    .unwrap_or(0)
                    .saturating_add(start_ms.max(0) as u64),
                parts: Vec::new(),
                complete: false,
            });
        }
        let id = self.next_part;
        self.next_part += 1;
        let mut data = Bytes::from(fmp4::media_segment((id as u32).wrapping_add(1), &runs));
        let Some(open) = self.segments.back_mut() else {
            return;
        };
        if !open.parts.is_empty() {
            // Only the segment's first part keeps the `styp`, so the parts concatenate into
            // one well-formed segment.
            let styp = data
                .get(..4)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            if data.get(4..8) == Some(b"styp") && styp <= data.len() {
                data = data.slice(styp..);
            }
        }
        self.bytes += data.len();
        open.parts.push(Part {
            id,
            duration_ms: end_ms.saturating_sub(start_ms).max(0) as u64,
            independent,
            data,
        });
        self.last_part = Some((open.msn, open.parts.len() as u64 - 1));
        self.enforce_cap();
    }

    fn close_segment(&mut self) {
        if let Some(open) = self.segments.back_mut().filter(|s| !s.complete) {
            open.complete = true;
            self.last_complete = Some(open.msn);
        }
        self.enforce_cap();
    }

    /// Oldest segments leave first; if the open segment alone is over the cap it is dropped and
    /// the next part starts a new segment (at a keyframe, after a discontinuity).
    fn enforce_cap(&mut self) {
        while self.segments.iter().filter(|s| s.complete).count() > self.cfg.segments {
            self.pop_front();
        }
        while self.bytes > self.cfg.max_bytes && !self.segments.is_empty() {
            if self.segments.front().is_some_and(|s| !s.complete) {
                // What the lines hold belongs to the dropped segment: the next one starts
                // from nothing, at a keyframe.
                self.discontinuity_next = true;
                self.need_key = self.video.is_some();
                for line in [self.video_line.as_mut(), self.audio_line.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    line.pending = None;
                    let _ = line.take_run();
                }
                self.part_start_ms = None;
                self.segment_start_ms = None;
                self.open_part_bytes = 0;
                self.open_part_samples = 0;
            }
            self.pop_front();
        }
        // Inits no retained segment needs, except the current one, go too.
        let current = self.init_version;
        let segments = &self.segments;
        let mut freed = 0;
        self.inits.retain(|(v, b)| {
            let keep = *v == current || segments.iter().any(|s| s.init == *v);
            if !keep {
                freed += b.len();
            }
            keep
        });
        self.bytes -= freed;
    }

    fn pop_front(&mut self) {
        if let Some(s) = self.segments.pop_front() {
            self.bytes -= s.bytes();
            self.discontinuities_gone += s.discontinuity as u64;
        }
    }

    /// The stream ended: the last samples make the last part, the open segment completes, and
    /// the playlist gets `#EXT-X-ENDLIST` (no more hints).
    pub fn finish(&mut self) {
        if self.ended {
            return;
        }
        if !self.started && !self.held.is_empty() {
            self.start();
        }
        if self.started {
            self.finish_lines();
            self.close_segment();
        }
        self.ended = true;
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
pub(crate) mod tests;
