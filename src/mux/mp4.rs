//! Progressive MP4 from fMP4 segments (the merge): pass 1 reads only each segment's `moof` and
//! keeps per-track aggregates (counts, durations, flags) and one chunk record per segment run, so
//! memory follows the number of segments, never the samples or media bytes; pass 2 measures the
//! `moov`, then writes `ftyp` + `moov` (faststart) straight to the output, streaming the big
//! tables (`stts`, `ctts`, `stss`, `stsz`) from each segment's `moof` read again, then the `mdat`,
//! copying the payloads from the segments in bounded pieces. Readers and writers are passed in;
//! this module opens no files itself. Here: the merge state and pass 1 (`Merger::add_segment`);
//! `read` parses init segments and `moof`s, `moov` lays out and writes pass 2. Every length and
//! offset from a file is checked: a bad one ends the scan or fails the write, never wraps.

mod moov;
mod read;

pub use read::{parse_init, TrackInit};

use super::bmff::{BmffError, BoxHeader};
use super::fmp4::MOVIE_TIMESCALE;
use read::{parse_moof, read_up_to, ParsedRun, MAX_MOOF};
use std::io::{self, Read, Seek, SeekFrom};

/// Where a run's `trun` lives in its segment, so that pass 2 can read it again.
#[derive(Clone, Copy, Debug, Default)]
struct RunAt {
    /// File offset of the `moof` box (data offsets are relative to it).
    moof_at: u64,
    /// File offset and length of the `moof` body.
    body_at: u64,
    body_len: u64,
    /// Index of the run among the runs of the `moof`, in `parse_moof` order.
    index: u32,
}

/// One run of contiguous samples in a source segment; it becomes one chunk of the output.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    source: u32,
    run: RunAt,
    offset: u64,
    len: u64,
    table: usize,
    /// The first `samples` samples of the run are taken (the rest lie past the file's end).
    samples: u32,
}

/// The decode timeline of a track as samples are appended. Shared by pass 1 (which only counts)
/// and pass 2 (which writes `stts`), so that both see the same durations.
#[derive(Clone, Copy, Debug, Default)]
struct Timeline {
    samples: u64,
    first_dt: Option<u64>,
    last_dt: u64,
    /// The duration of the last sample so far: still pending, because the next run's `tfdt`
    /// may change it.
    last_dur: u32,
}

impl Timeline {
    /// Starts a run with this `tfdt` (if any); returns the decode time of its first sample.
    fn start_run(&mut self, decode_time: Option<u64>) -> u64 {
        let dt = match (decode_time, self.first_dt) {
            (Some(d), _) => d,
            (None, None) => 0,
            (None, Some(_)) => self.last_dt.saturating_add(self.last_dur as u64),
        };
        match self.first_dt {
            None => {
                self.first_dt = Some(dt);
                dt
            }
            // The segment's tfdt is the truth: the previous sample lasts until it.
            Some(_) if dt > self.last_dt => {
                self.last_dur = (dt - self.last_dt).min(u32::MAX as u64) as u32;
                dt
            }
            Some(_) => self.last_dt.saturating_add(self.last_dur as u64),
        }
    }

    /// Appends a sample at decode time `dt`; returns the now final duration of the one before.
    fn push(&mut self, dt: u64, duration: u32) -> Option<u32> {
        let before = (self.samples > 0).then_some(self.last_dur);
        self.samples += 1;
        self.last_dt = dt;
        self.last_dur = duration;
        before
    }
}

/// Run-length coding of a value stream, one pending run (`stts` and `ctts` entries).
#[derive(Clone, Copy, Debug, Default)]
struct Rle<T> {
    run: Option<(u32, T)>,
    /// Runs started so far, the pending one included.
    entries: u64,
}

impl<T: Copy + PartialEq> Rle<T> {
    /// Adds a value; returns the run it ended, if it started a new one.
    fn push(&mut self, v: T) -> Option<(u32, T)> {
        match &mut self.run {
            Some((n, x)) if *x == v && *n < u32::MAX => {
                *n += 1;
                None
            }
            _ => {
                self.entries += 1;
                self.run.replace((1, v))
            }
        }
    }
}

/// Pass 1's aggregates of one track: O(1) memory whatever the number of samples. The tables
/// themselves are written in pass 2 from the segments' `trun`s, read again.
#[derive(Debug)]
struct Table {
    init: TrackInit,
    time: Timeline,
    /// Sum of the final durations (all but the last sample's, which is `time.last_dur`).
    done_duration: u64,
    /// `stts` entries of the final durations so far.
    stts: Rle<u32>,
    /// `ctts` entries over every sample (zeros included).
    ctts: Rle<i32>,
    any_cto: bool,
    negative_cto: bool,
    syncs: u64,
    /// Earliest composition time relative to the first decode time.
    min_pts: i64,
    /// Latest presentation end (composition time plus duration, relative to the first decode
    /// time) of the samples whose duration is final: all but the last.
    pts_end_done: i64,
    /// Composition time of the last sample so far (its duration is `time.last_dur`, still pending).
    last_pts: i64,
    chunks: u32,
}

impl Table {
    fn samples(&self) -> u64 {
        self.time.samples
    }

    fn duration(&self) -> u64 {
        let last = if self.samples() > 0 {
            self.time.last_dur as u64
        } else {
            0
        };
        self.done_duration.saturating_add(last)
    }

    fn stts_entries(&self) -> u64 {
        let mut rle = self.stts;
        if self.samples() > 0 {
            rle.push(self.time.last_dur);
        }
        rle.entries
    }

    fn all_sync(&self) -> bool {
        self.syncs == self.samples()
    }

    /// Where this track's presentation starts, in movie time (ms from decode time 0); `None`
    /// when a `tfdt` from the file puts it beyond what the movie time can hold.
    fn start_ms(&self) -> Option<u64> {
        let ticks = self
            .time
            .first_dt
            .unwrap_or(0)
            .checked_add(self.min_pts.max(0) as u64)?;
        to_movie_time(ticks, self.init.timescale)
    }

    /// The edit: an empty edit (movie time) so that the track starts where it started relative
    /// to the earliest track, and the media time where presentation begins (the first composition
    /// time, which B-frames push past 0).
    fn edit(&self, movie_start_ms: u64) -> Option<(u64, u64)> {
        let empty = self.start_ms()?.saturating_sub(movie_start_ms);
        let media_time = (self.min_pts.max(0) as u64).min(self.duration());
        Some((empty, media_time))
    }

    /// Where the last presented frame ends (relative to the first decode time): with B-frames
    /// and a gap in presentation (a dropped frame) that frame is not the last decoded one, and
    /// it ends after the sum of the decode durations. Never before that sum, though (a timeline
    /// that a `tfdt` near 2^64 saturated still lasts its durations).
    fn pts_end(&self) -> i64 {
        let last = self.last_pts.saturating_add(self.time.last_dur as i64);
        let decoded = i64::try_from(self.duration()).unwrap_or(i64::MAX);
        self.pts_end_done
            .max(last)
            .max(self.min_pts.max(0).saturating_add(decoded))
    }

    /// The presented span in movie time, the edit's duration: from the first presentation time
    /// to the end of the last presented frame, rounded up so that the edit never ends inside it
    /// (a player discards a frame that starts at or after the edit's end).
    fn presented_ms(&self) -> Option<u64> {
        let ticks = self.pts_end().saturating_sub(self.min_pts.max(0)).max(0) as u64;
        to_movie_time_ceil(ticks, self.init.timescale)
    }

    /// The track duration in movie time, after the edit.
    fn edited_duration(&self, movie_start_ms: u64) -> Option<u64> {
        let (empty, _) = self.edit(movie_start_ms)?;
        empty.checked_add(self.presented_ms()?)
    }
}

/// `ticks` of a track's `timescale` in movie time (ms), or `None` when it does not fit in 64 bits
/// (the times come from the file: a `tfdt` near 2^64 must fail the merge, not wrap).
fn to_movie_time(ticks: u64, timescale: u32) -> Option<u64> {
    let ms = ticks as u128 * MOVIE_TIMESCALE as u128 / timescale.max(1) as u128;
    u64::try_from(ms).ok()
}

/// `to_movie_time`, rounded up.
fn to_movie_time_ceil(ticks: u64, timescale: u32) -> Option<u64> {
    let ms = (ticks as u128 * MOVIE_TIMESCALE as u128).div_ceil(timescale.max(1) as u128);
    u64::try_from(ms).ok()
}

/// What pass 1 found in one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentScan {
    /// Whole samples taken from it.
    pub samples: u64,
    /// Samples its tables announce whose bytes are missing (a segment cut short by a crash).
    pub dropped: u64,
    /// The first thing found wrong with it, if any.
    pub problem: Option<Damage>,
}

impl SegmentScan {
    /// Cut short or unusable: samples dropped, or none at all.
    pub fn damaged(&self) -> bool {
        self.dropped > 0 || self.samples == 0
    }

    /// What was wrong, when `damaged`: the first problem found, else that nothing was usable.
    pub fn damage(&self) -> Option<Damage> {
        if !self.damaged() {
            return None;
        }
        Some(self.problem.unwrap_or(Damage::NoSamples))
    }

    fn note(&mut self, d: Damage) {
        self.problem.get_or_insert(d);
    }
}

/// What was wrong with a segment, for the merge's warning (byte offsets are into the segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// A box whose announced size runs past the end of the file (a segment cut short).
    BoxPastEnd {
        kind: [u8; 4],
        at: u64,
        size: u64,
        len: u64,
    },
    /// Bytes that are not a box header (or a header cut off by the end of the file).
    BadBoxHeader { at: u64 },
    /// A `moof` larger than any we write.
    MoofTooLarge { at: u64, size: u64 },
    /// A `moof` whose tables do not parse.
    BadMoof { at: u64, error: BmffError },
    /// A `moof` with no `mdat` after it: its samples are lost.
    MoofWithoutMdat { at: u64, samples: u64 },
    /// A run for a track the init segment does not have.
    UnknownTrack { track_id: u32 },
    /// A run whose data offset points before its `mdat`'s payload.
    RunOutsideMdat { at: u64 },
    /// Samples whose bytes lie past the end of their `mdat` or of the file.
    SamplesPastEnd { kept: u64, announced: u64 },
    /// No `moof` with samples at all.
    NoSamples,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |k: &[u8; 4]| String::from_utf8_lossy(k).escape_debug().to_string();
        match *self {
            Damage::BoxPastEnd {
                kind,
                at,
                size,
                len,
            } => write!(
                f,
                "cut short: the '{}' box at byte {at} announces {size} bytes, the file ends at byte {len}",
                name(&kind)
            ),
            Damage::BadBoxHeader { at } => write!(f, "no valid box header at byte {at}"),
            Damage::MoofTooLarge { at, size } => {
                write!(f, "the moof at byte {at} is {size} bytes, too large to be ours")
            }
            Damage::BadMoof { at, error } => {
                write!(f, "the moof at byte {at} does not parse ({error})")
            }
            Damage::MoofWithoutMdat { at, samples } => write!(
                f,
                "the moof at byte {at} has no mdat after it ({samples} samples lost)"
            ),
            Damage::UnknownTrack { track_id } => {
                write!(f, "samples of track {track_id}, which init.mp4 does not have")
            }
            Damage::RunOutsideMdat { at } => write!(
                f,
                "the moof at byte {at} points its samples outside the mdat"
            ),
            Damage::SamplesPastEnd { kept, announced } => write!(
                f,
                "cut short: {kept} of {announced} samples of a run are whole, the rest lie past the end of the data"
            ),
            Damage::NoSamples => f.write_str("no moof with samples (not a media segment)"),
        }
    }
}

fn changed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a segment changed between the passes of the merge",
    )
}

/// Pass 1 state: per-track aggregates and the list of chunks to copy (one per segment run, so
/// memory follows the number of segments, not of samples).
#[derive(Debug)]
pub struct Merger {
    tables: Vec<Table>,
    chunks: Vec<Chunk>,
    sources: u32,
}

impl Merger {
    pub fn new(tracks: Vec<TrackInit>) -> Merger {
        Merger {
            tables: tracks
                .into_iter()
                .map(|init| Table {
                    init,
                    time: Timeline::default(),
                    done_duration: 0,
                    stts: Rle::default(),
                    ctts: Rle::default(),
                    any_cto: false,
                    negative_cto: false,
                    syncs: 0,
                    min_pts: i64::MAX,
                    pts_end_done: i64::MIN,
                    last_pts: 0,
                    chunks: 0,
                })
                .collect(),
            chunks: Vec::new(),
            sources: 0,
        }
    }

    /// Total samples per track id.
    pub fn sample_counts(&self) -> Vec<(u32, usize)> {
        self.tables
            .iter()
            .map(|t| (t.init.track_id, t.samples() as usize))
            .collect()
    }

    /// The presentation duration in milliseconds (the longest track); `u64::MAX` when the
    /// segments' times do not fit (then `write` fails).
    pub fn duration_ms(&self) -> u64 {
        self.checked_duration_ms().unwrap_or(u64::MAX)
    }

    /// The presentation duration, `None` when a track's times overflow the movie time.
    fn checked_duration_ms(&self) -> Option<u64> {
        let start = self.movie_start_ms()?;
        self.tracks()
            .map(|(_, t)| t.edited_duration(start))
            .try_fold(0, |max, d| Some(d?.max(max)))
    }

    /// The earliest presentation start of any track: movie time 0.
    fn movie_start_ms(&self) -> Option<u64> {
        self.tracks()
            .map(|(_, t)| t.start_ms())
            .try_fold(None, |min: Option<u64>, s| {
                let s = s?;
                Some(Some(min.map_or(s, |m| m.min(s))))
            })
            .map(|m| m.unwrap_or(0))
    }

    /// Pass 1 for the next segment (its index is the number of earlier calls; `write` passes that
    /// index back to `open`). Only `moof` boxes are read. Samples whose bytes lie past the end of
    /// their `mdat` or of the file are dropped, and so is a `moof` without an `mdat`; damage of
    /// this kind is reported in the result, not as an error. Errors are I/O errors only.
    pub fn add_segment<R: Read + Seek>(&mut self, r: &mut R, len: u64) -> io::Result<SegmentScan> {
        let source = self.sources;
        self.sources = self
            .sources
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "more than 2^32 segments"))?;
        let mut scan = SegmentScan::default();
        let mut pos = 0u64;
        let mut pending: Vec<(ParsedRun, RunAt)> = Vec::new();
        let mut body = Vec::new();
        // `pos < len` inside the loop; a box's end may lie past `len` (a segment cut short, or a
        // size such as largesize 2^64 - 1), which ends the scan after that box.
        while len.saturating_sub(pos) >= 8 {
            r.seek(SeekFrom::Start(pos))?;
            let mut head = [0u8; 16];
            let n = read_up_to(r, &mut head[..(len - pos).min(16) as usize])?;
            let header = match BoxHeader::parse(&head[..n]) {
                Ok(Some(h)) => h,
                _ => {
                    scan.note(Damage::BadBoxHeader { at: pos });
                    break;
                }
            };
            let past_end = Damage::BoxPastEnd {
                kind: header.kind,
                at: pos,
                size: header.size.unwrap_or(len - pos),
                len,
            };
            let Some(end) = header.size.map_or(Some(len), |s| pos.checked_add(s)) else {
                scan.note(past_end);
                break;
            };
            if end > len {
                scan.note(past_end);
            }
            // `BoxHeader::parse` refuses sizes below the header length, so `body_at <= end`.
            let body_at = pos + header.header_len as u64;
            match &header.kind {
                b"moof" => {
                    // Runs of an earlier moof that never found their mdat are lost.
                    lost_runs(&mut scan, &pending);
                    pending.clear();
                    if end - pos > MAX_MOOF {
                        scan.note(Damage::MoofTooLarge {
                            at: pos,
                            size: end - pos,
                        });
                    }
                    if end > len || end - pos > MAX_MOOF || body_at > end {
                        break;
                    }
                    body.resize((end - body_at) as usize, 0);
                    r.seek(SeekFrom::Start(body_at))?;
                    r.read_exact(&mut body)?;
                    match parse_moof(&body, pos) {
                        Ok(runs) => {
                            pending = runs
                                .into_iter()
                                .enumerate()
                                .map(|(i, run)| {
                                    let at = RunAt {
                                        moof_at: pos,
                                        body_at,
                                        body_len: end - body_at,
                                        index: i as u32,
                                    };
                                    (run, at)
                                })
                                .collect()
                        }
                        Err(error) => {
                            scan.note(Damage::BadMoof { at: pos, error });
                            break;
                        }
                    }
                }
                b"mdat" => {
                    let data_end = end.min(len);
                    for (run, at) in pending.drain(..) {
                        let (kept, dropped) = self.push_run(&run, at, source, body_at, data_end);
                        scan.samples += kept;
                        scan.dropped += dropped;
                        if dropped > 0 {
                            scan.note(self.why_dropped(&run, at, body_at, kept));
                        }
                    }
                }
                _ => {}
            }
            if end <= pos || end >= len {
                break;
            }
            pos = end;
        }
        lost_runs(&mut scan, &pending);
        Ok(scan)
    }

    /// Why `push_run` kept only `kept` samples of `run` (the checks it makes, in its order).
    fn why_dropped(&self, run: &ParsedRun, at: RunAt, data_start: u64, kept: u64) -> Damage {
        if !self.tables.iter().any(|t| t.init.track_id == run.track_id) {
            Damage::UnknownTrack {
                track_id: run.track_id,
            }
        } else if run.offset < data_start {
            Damage::RunOutsideMdat { at: at.moof_at }
        } else {
            Damage::SamplesPastEnd {
                kept,
                announced: run.samples.len() as u64,
            }
        }
    }

    /// Takes the whole samples of `run` that lie within `[data_start, data_end)` into the
    /// aggregates; returns (kept, dropped).
    fn push_run(
        &mut self,
        run: &ParsedRun,
        at: RunAt,
        source: u32,
        data_start: u64,
        data_end: u64,
    ) -> (u64, u64) {
        let total = run.samples.len() as u64;
        let Some(ti) = self
            .tables
            .iter()
            .position(|t| t.init.track_id == run.track_id)
        else {
            return (0, total);
        };
        if run.offset < data_start {
            return (0, total);
        }
        let mut end = run.offset;
        let mut keep = 0usize;
        for s in &run.samples {
            match end.checked_add(s.size as u64) {
                Some(e) if e <= data_end => end = e,
                _ => break,
            }
            keep += 1;
        }
        if keep == 0 {
            return (0, total);
        }
        let t = &mut self.tables[ti];
        let mut dt = t.time.start_run(run.decode_time);
        let first = t.time.first_dt.unwrap_or(0);
        for s in &run.samples[..keep] {
            if let Some(d) = t.time.push(dt, s.duration) {
                t.done_duration = t.done_duration.saturating_add(d as u64);
                t.stts.push(d);
                // The sample before is final now: where it ends on screen.
                t.pts_end_done = t.pts_end_done.max(t.last_pts.saturating_add(d as i64));
            }
            t.ctts.push(s.cto);
            t.any_cto |= s.cto != 0;
            t.negative_cto |= s.cto < 0;
            t.syncs += s.is_sync() as u64;
            // `dt >= first` (the timeline never goes back before its first sample).
            let since_first = i64::try_from(dt - first).unwrap_or(i64::MAX);
            t.last_pts = since_first.saturating_add(s.cto as i64);
            t.min_pts = t.min_pts.min(t.last_pts);
            dt = dt.saturating_add(s.duration as u64);
        }
        t.chunks += 1;
        self.chunks.push(Chunk {
            source,
            run: at,
            offset: run.offset,
            len: end - run.offset,
            table: ti,
            samples: keep as u32,
        });
        (keep as u64, total - keep as u64)
    }

    fn tracks(&self) -> impl Iterator<Item = (usize, &Table)> {
        self.tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.samples() > 0)
    }
}

/// The runs of a `moof` that found no `mdat`: their samples are dropped.
fn lost_runs(scan: &mut SegmentScan, pending: &[(ParsedRun, RunAt)]) {
    let samples: u64 = pending.iter().map(|(p, _)| p.samples.len() as u64).sum();
    if samples > 0 {
        scan.dropped += samples;
        scan.note(Damage::MoofWithoutMdat {
            at: pending[0].1.moof_at,
            samples,
        });
    }
}

/// One run of a segment as the cut reads it: whole samples only (those whose bytes lie within their
/// `mdat` and the file), with the absolute file offset of the first sample's bytes.
#[derive(Clone, Debug)]
pub struct SegmentRun {
    pub track_id: u32,
    pub decode_time: Option<u64>,
    pub offset: u64,
    pub samples: Vec<crate::mux::fmp4::Sample>,
}

/// The runs of every `moof` of a segment of `len` bytes, in file order, cut to their whole samples (the
/// same checks as the merge's pass 1; a damaged tail ends the list, never an error). Errors: I/O only.
pub fn segment_runs<R: Read + Seek>(r: &mut R, len: u64) -> io::Result<Vec<SegmentRun>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let mut pending: Vec<ParsedRun> = Vec::new();
    let mut body = Vec::new();
    while len.saturating_sub(pos) >= 8 {
        r.seek(SeekFrom::Start(pos))?;
        let mut head = [0u8; 16];
        let n = read_up_to(r, &mut head[..(len - pos).min(16) as usize])?;
        let header = match BoxHeader::parse(&head[..n]) {
            Ok(Some(h)) => h,
            _ => break,
        };
        let Some(end) = header.size.map_or(Some(len), |s| pos.checked_add(s)) else {
            break;
        };
        let body_at = pos + header.header_len as u64;
        match &header.kind {
            b"moof" => {
                pending.clear();
                if end > len || end - pos > MAX_MOOF || body_at > end {
                    break;
                }
                body.resize((end - body_at) as usize, 0);
                r.seek(SeekFrom::Start(body_at))?;
                r.read_exact(&mut body)?;
                match parse_moof(&body, pos) {
                    Ok(runs) => pending = runs,
                    Err(_) => break,
                }
            }
            b"mdat" => {
                let data_end = end.min(len);
                for run in pending.drain(..) {
                    if run.offset < body_at {
                        continue;
                    }
                    let mut at = run.offset;
                    let mut keep = 0;
                    for s in &run.samples {
                        match at.checked_add(s.size as u64) {
                            Some(e) if e <= data_end => at = e,
                            _ => break,
                        }
                        keep += 1;
                    }
                    let mut samples = run.samples;
                    samples.truncate(keep);
                    if !samples.is_empty() {
                        out.push(SegmentRun {
                            track_id: run.track_id,
                            decode_time: run.decode_time,
                            offset: run.offset,
                            samples,
                        });
                    }
                }
            }
            _ => {}
        }
        if end <= pos || end >= len {
            break;
        }
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::moov::BoxOut;
    use super::*;
    use crate::mux::bmff::{boxes, find};
    use crate::mux::fmp4::{
        init_segment, media_segment, Run, Sample, VideoConfig, SAMPLE_NON_SYNC, SAMPLE_SYNC,
        VIDEO_TIMESCALE,
    };
    use bytes::Bytes;
    use std::io::Cursor;

    fn video_init() -> Vec<TrackInit> {
        let v = VideoConfig {
            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]),
            width: 320,
            height: 240,
        };
        parse_init(&init_segment(Some(&v), None)).unwrap()
    }

    fn sample(duration: u32, size: u32, sync: bool, cto: i32) -> Sample {
        Sample {
            duration,
            size,
            flags: if sync { SAMPLE_SYNC } else { SAMPLE_NON_SYNC },
            cto,
        }
    }

    fn run(decode_time: u64, samples: Vec<Sample>) -> Run {
        let data = samples
            .iter()
            .map(|s| Bytes::from(vec![s.size as u8; s.size as usize]))
            .collect();
        Run {
            track_id: 1,
            timescale: VIDEO_TIMESCALE,
            decode_time,
            samples,
            data,
        }
    }

    fn table<'a>(moov: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
        let trak = find(moov, b"trak").unwrap()?;
        let stbl = find(
            find(find(trak, b"mdia").unwrap()?, b"minf").unwrap()?,
            b"stbl",
        )
        .unwrap()?;
        find(stbl, kind).unwrap()
    }

    /// B-frames: I P B B with composition offsets; the merge keeps them in `ctts`, marks the
    /// keyframes in `stss`, and writes one chunk per segment run.
    #[test]
    fn tables_with_ctts_stss_and_stsc() {
        let seg1 = media_segment(
            1,
            &[&run(
                0,
                vec![
                    sample(3600, 10, true, 7200),
                    sample(3600, 11, false, 14400),
                    sample(3600, 12, false, 0),
                    sample(3600, 13, false, 3600),
                ],
            )],
        );
        // The second segment starts 1 tick late: the previous last duration stretches to it.
        let seg2 = media_segment(
            2,
            &[&run(
                14401,
                vec![sample(3600, 14, true, 7200), sample(3600, 15, false, -3600)],
            )],
        );
        let mut m = Merger::new(video_init());
        for s in [&seg1, &seg2] {
            let scan = m.add_segment(&mut Cursor::new(s), s.len() as u64).unwrap();
            assert_eq!(scan.dropped, 0);
        }
        let mut out = Vec::new();
        let segs = [seg1.clone(), seg2.clone()];
        m.write(&mut out, |i| Ok(Cursor::new(segs[i as usize].clone())))
            .unwrap();
        let kinds: Vec<[u8; 4]> = boxes(&out).map(|b| b.unwrap().0).collect();
        assert_eq!(kinds, vec![*b"ftyp", *b"moov", *b"mdat"]);
        let moov = find(&out, b"moov").unwrap().unwrap();
        assert_eq!(
            table(moov, b"stts").unwrap(),
            &[
                0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0x0e, 0x10, 0, 0, 0, 1, 0, 0, 0x0e, 0x11,
                0, 0, 0, 2, 0, 0, 0x0e, 0x10
            ]
        );
        let ctts = table(moov, b"ctts").unwrap();
        assert_eq!(ctts[0], 1, "negative offsets need ctts version 1");
        assert_eq!(&ctts[4..8], &6u32.to_be_bytes());
        assert_eq!(&ctts[ctts.len() - 4..], &(-3600i32).to_be_bytes());
        assert_eq!(
            table(moov, b"stss").unwrap(),
            &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 5]
        );
        assert_eq!(
            table(moov, b"stsc").unwrap(),
            &[
                0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2,
                0, 0, 0, 1
            ]
        );
        let stco = table(moov, b"stco").unwrap();
        let first = u32::from_be_bytes(stco[8..12].try_into().unwrap()) as usize;
        let second = u32::from_be_bytes(stco[12..16].try_into().unwrap()) as usize;
        assert_eq!(&out[first..first + 10], &[10; 10]);
        assert_eq!(second, first + 46);
        assert_eq!(&out[second..second + 14], &[14; 14]);
        assert_eq!(out.len(), second + 29);
        // Presentation starts at the first keyframe's composition time: an edit list says so.
        let trak = find(moov, b"trak").unwrap().unwrap();
        let elst = find(find(trak, b"edts").unwrap().unwrap(), b"elst")
            .unwrap()
            .unwrap();
        assert_eq!(&elst[4..8], &1u32.to_be_bytes());
        assert_eq!(&elst[12..16], &7200i32.to_be_bytes()); // min pts: the first keyframe
    }

    /// Issue 24 item 3: the edit list lasted the sum of the decode durations, so with B-frames
    /// and a gap in presentation (a non-reference B-frame dropped) the frame presented last
    /// started at or after the edit's end and players discarded it. The edit now spans from the
    /// first presentation time to the end of the last presented frame, and tkhd/mvhd with it.
    #[test]
    fn issue24_item3_the_edit_list_spans_to_the_end_of_the_last_presented_frame() {
        // Decode order I1 P4 B2 B3 P7 B5 (presentation slots of 3000 ticks; B6 was dropped).
        let seg = media_segment(
            1,
            &[&run(
                0,
                vec![
                    sample(3000, 10, true, 3000),
                    sample(3000, 11, false, 9000),
                    sample(3000, 12, false, 0),
                    sample(3000, 13, false, 0),
                    sample(3000, 14, false, 9000),
                    sample(3000, 15, false, 0),
                ],
            )],
        );
        let mut m = Merger::new(video_init());
        m.add_segment(&mut Cursor::new(&seg), seg.len() as u64)
            .unwrap();
        // P7 shows from tick 21000 to 24000; presentation starts at 3000 (I1): 21000 ticks,
        // 233.3 ms, rounded up. The decode durations sum to 18000 ticks (200 ms), short of P7.
        assert_eq!(m.duration_ms(), 234);
        let mut out = Vec::new();
        m.write(&mut out, |_| Ok(Cursor::new(seg.clone()))).unwrap();
        let moov = find(&out, b"moov").unwrap().unwrap();
        let trak = find(moov, b"trak").unwrap().unwrap();
        let elst = find(find(trak, b"edts").unwrap().unwrap(), b"elst")
            .unwrap()
            .unwrap();
        assert_eq!(&elst[4..8], &1u32.to_be_bytes(), "one edit, no empty one");
        assert_eq!(&elst[8..12], &234u32.to_be_bytes(), "segment duration (ms)");
        assert_eq!(&elst[12..16], &3000i32.to_be_bytes(), "media time: I1's");
        let tkhd = find(trak, b"tkhd").unwrap().unwrap();
        assert_eq!(&tkhd[20..24], &234u32.to_be_bytes(), "tkhd duration");
        let mvhd = find(moov, b"mvhd").unwrap().unwrap();
        assert_eq!(&mvhd[16..20], &234u32.to_be_bytes(), "mvhd duration");
        // The media itself still lasts the decode durations.
        let mdia = find(trak, b"mdia").unwrap().unwrap();
        let mdhd = find(mdia, b"mdhd").unwrap().unwrap();
        assert_eq!(
            &mdhd[16..20],
            &18000u32.to_be_bytes(),
            "mdhd duration (ticks)"
        );
    }

    #[test]
    fn no_ctts_without_offsets() {
        let seg = media_segment(
            1,
            &[&run(
                0,
                vec![sample(3600, 5, true, 0), sample(3600, 5, true, 0)],
            )],
        );
        let mut m = Merger::new(video_init());
        m.add_segment(&mut Cursor::new(&seg), seg.len() as u64)
            .unwrap();
        let mut out = Vec::new();
        m.write(&mut out, |_| Ok(Cursor::new(seg.clone()))).unwrap();
        let moov = find(&out, b"moov").unwrap().unwrap();
        assert!(table(moov, b"ctts").is_none());
        assert!(table(moov, b"stss").is_none(), "all samples sync: no stss");
    }

    /// The `moov` pass 2 writes, with runs read from `runs[chunk.source]` instead of files.
    fn moov_of(m: &Merger, runs: &[ParsedRun]) -> (Vec<u8>, Vec<u8>) {
        let layout = m.layout().unwrap();
        let mut out = Vec::new();
        let mut o = BoxOut::write(&mut out, layout.sizes.clone());
        m.write_moov(&mut o, layout.base, layout.co64, &mut |c: &Chunk| {
            Ok(runs[c.source as usize].clone())
        })
        .unwrap();
        o.finish().unwrap();
        drop(o);
        assert_eq!(out.len() as u64, layout.sizes[0]);
        (out, layout.mdat)
    }

    #[test]
    fn co64_when_a_chunk_starts_past_4_gib() {
        let mut m = Merger::new(video_init());
        let big = ParsedRun {
            track_id: 1,
            decode_time: Some(0),
            offset: 0,
            samples: vec![sample(3600, u32::MAX, true, 0); 2],
        };
        m.push_run(&big, RunAt::default(), 0, 0, u64::MAX);
        let small = ParsedRun {
            track_id: 1,
            decode_time: Some(7200),
            offset: 0,
            samples: vec![sample(3600, 1, false, 0)],
        };
        m.push_run(&small, RunAt::default(), 1, 0, u64::MAX);
        let (moov, mdat) = moov_of(&m, &[big, small]);
        assert!(table(find(&moov, b"moov").unwrap().unwrap(), b"stco").is_none());
        assert_eq!(
            mdat.len(),
            16,
            "an mdat past 4 GiB needs a largesize header"
        );
        let co = table(find(&moov, b"moov").unwrap().unwrap(), b"co64").unwrap();
        let first = u64::from_be_bytes(co[8..16].try_into().unwrap());
        let second = u64::from_be_bytes(co[16..24].try_into().unwrap());
        assert_eq!(second - first, 2 * u32::MAX as u64);
        assert_eq!(first, 32 + moov.len() as u64 + 16);
        let stsz = table(find(&moov, b"moov").unwrap().unwrap(), b"stsz").unwrap();
        assert_eq!(&stsz[8..12], &3u32.to_be_bytes());
        assert_eq!(&stsz[12..16], &u32::MAX.to_be_bytes());
        assert_eq!(&stsz[20..24], &1u32.to_be_bytes());

        let mut m = Merger::new(video_init());
        let r = ParsedRun {
            track_id: 1,
            decode_time: Some(0),
            offset: 0,
            samples: vec![sample(3600, 1000, true, 0)],
        };
        m.push_run(&r, RunAt::default(), 0, 0, u64::MAX);
        let (moov, _) = moov_of(&m, &[r]);
        let moov = find(&moov, b"moov").unwrap().unwrap();
        assert!(table(moov, b"co64").is_none());
        assert!(table(moov, b"stco").is_some());
    }

    #[test]
    fn truncated_segment_keeps_whole_samples() {
        let seg = media_segment(
            1,
            &[&run(
                0,
                vec![
                    sample(3600, 100, true, 0),
                    sample(3600, 100, false, 0),
                    sample(3600, 100, false, 0),
                ],
            )],
        );
        let cut = &seg[..seg.len() - 150];
        let mut m = Merger::new(video_init());
        let scan = m
            .add_segment(&mut Cursor::new(cut), cut.len() as u64)
            .unwrap();
        assert_eq!((scan.samples, scan.dropped), (1, 2));
        let why = scan.damage().expect("damaged").to_string();
        assert!(
            why.starts_with("cut short: the 'mdat' box at byte "),
            "{why}"
        );
        assert!(
            why.ends_with(&format!("the file ends at byte {}", cut.len())),
            "{why}"
        );
        // A segment cut inside its moof gives nothing, and no error.
        let cut = &seg[..60];
        let scan = m
            .add_segment(&mut Cursor::new(cut), cut.len() as u64)
            .unwrap();
        assert_eq!(scan.samples, 0);
        let why = scan.damage().expect("damaged").to_string();
        assert!(
            why.starts_with("cut short: the 'moof' box at byte "),
            "{why}"
        );
        let mut out = Vec::new();
        let owned = seg.clone();
        m.write(&mut out, |_| Ok(Cursor::new(owned.clone())))
            .unwrap();
        let moov = find(&out, b"moov").unwrap().unwrap();
        assert_eq!(&table(moov, b"stsz").unwrap()[8..12], &1u32.to_be_bytes());
    }

    /// Issue 24 item 4: the merge said "1 damaged segments" without saying what was wrong. Each
    /// kind of damage a scan meets is named, with where in the segment it is.
    #[test]
    fn issue24_item4_each_damaged_segment_says_what_was_wrong() {
        let seg = media_segment(
            1,
            &[&run(
                0,
                vec![sample(3600, 100, true, 0), sample(3600, 100, false, 0)],
            )],
        );
        let size_at = |at: usize| u32::from_be_bytes(seg[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(&seg[size_at(0) + 4..size_at(0) + 8], b"moof");
        let moof_end = size_at(0) + size_at(size_at(0));
        let mut other_track = run(0, vec![sample(3600, 100, true, 0)]);
        other_track.track_id = 9;
        let mut huge = 1u32.to_be_bytes().to_vec();
        huge.extend_from_slice(b"mdat");
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("whole", seg.clone(), ""),
            (
                "moof only",
                seg[..moof_end].to_vec(),
                "has no mdat after it (2 samples lost)",
            ),
            (
                "largesize",
                huge,
                "the 'mdat' box at byte 0 announces 18446744073709551615 bytes",
            ),
            (
                "junk",
                b"\0\0\0\x03junkjunk".to_vec(),
                "no valid box header at byte 0",
            ),
            (
                "unknown track",
                media_segment(1, &[&other_track]),
                "samples of track 9, which init.mp4 does not have",
            ),
            (
                "empty free box",
                b"\0\0\0\x08free".to_vec(),
                "no moof with samples",
            ),
        ];
        for (what, bytes, want) in cases {
            let mut m = Merger::new(video_init());
            let scan = m
                .add_segment(&mut Cursor::new(&bytes), bytes.len() as u64)
                .unwrap();
            match scan.damage() {
                None => assert!(want.is_empty(), "{what}: not reported as damaged"),
                Some(d) => {
                    let d = d.to_string();
                    assert!(!want.is_empty() && d.contains(want), "{what}: {d}");
                }
            }
        }
    }

    #[test]
    fn garbage_is_not_an_error() {
        let mut m = Merger::new(video_init());
        for junk in [
            &b""[..],
            b"\x00\x00\x00\x10moof\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x00\x00\x00\x01mdat\x00",
        ] {
            let scan = m
                .add_segment(&mut Cursor::new(junk), junk.len() as u64)
                .unwrap();
            assert_eq!(scan.samples, 0);
        }
        assert!(m.layout().is_err(), "nothing to write");
    }

    /// The timeline both passes share: a run's tfdt stretches or shrinks the sample before it,
    /// a tfdt going backwards is ignored, a run without one follows on.
    #[test]
    fn timeline_takes_the_tfdt_as_the_truth() {
        let mut t = Timeline::default();
        let mut final_durations = Vec::new();
        let mut run = |t: &mut Timeline, tfdt: Option<u64>, durations: &[u32]| {
            let mut dt = t.start_run(tfdt);
            let first = dt;
            for d in durations {
                final_durations.extend(t.push(dt, *d));
                dt += *d as u64;
            }
            first
        };
        assert_eq!(run(&mut t, Some(100), &[3000, 3000, 3000]), 100);
        assert_eq!(run(&mut t, Some(10600), &[3000]), 10600); // gap: 3000 -> 4500
        assert_eq!(run(&mut t, Some(12600), &[3000]), 12600); // overlap: 3000 -> 2000
        assert_eq!(run(&mut t, Some(5), &[3000]), 15600); // backwards: follows on
        assert_eq!(run(&mut t, None, &[1000]), 18600);
        assert_eq!(final_durations, vec![3000, 3000, 4500, 2000, 3000, 3000]);
        assert_eq!((t.samples, t.last_dur, t.first_dt), (7, 1000, Some(100)));

        let mut rle = Rle::default();
        let mut runs: Vec<(u32, u32)> = [3000, 3000, 4500, 3000]
            .into_iter()
            .filter_map(|d| rle.push(d))
            .collect();
        runs.extend(rle.run.take());
        assert_eq!(runs, vec![(2, 3000), (1, 4500), (1, 3000)]);
        assert_eq!(rle.entries, 3);
    }

    /// A box header: size 1 and a 64-bit largesize, as `BoxHeader::parse` reads it.
    fn large_box(kind: &[u8; 4], largesize: u64) -> Vec<u8> {
        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(&largesize.to_be_bytes());
        b
    }

    /// Issue 13 hole 4: a box of size 1 with largesize 2^64 - 1 made `pos + 8` overflow in
    /// `add_segment`. It now ends the scan, keeping what came before it.
    #[test]
    fn largesize_2_pow_64_minus_1_ends_the_scan() {
        let seg = media_segment(1, &[&run(0, vec![sample(3600, 100, true, 0)])]);
        for kind in [b"free", b"mdat", b"moof"] {
            let mut m = Merger::new(video_init());
            let junk = large_box(kind, u64::MAX);
            let scan = m
                .add_segment(&mut Cursor::new(&junk), junk.len() as u64)
                .unwrap();
            assert_eq!(scan.samples, 0, "{kind:?} alone");
            let mut bytes = seg.clone();
            bytes.extend_from_slice(&junk);
            bytes.extend_from_slice(&[0; 64]);
            let scan = m
                .add_segment(&mut Cursor::new(&bytes), bytes.len() as u64)
                .unwrap();
            assert_eq!(scan.samples, 1, "{kind:?} after a whole segment");
            // Sizes that end past the file but do not overflow: the same.
            let junk = large_box(kind, u64::MAX - bytes.len() as u64);
            let mut bytes = seg.clone();
            bytes.extend_from_slice(&junk);
            let scan = m
                .add_segment(&mut Cursor::new(&bytes), bytes.len() as u64)
                .unwrap();
            assert_eq!(scan.samples, 1, "{kind:?} near 2^64");
        }
    }

    /// A `len` larger than the reader's bytes (the caller's metadata lied) is no panic either.
    #[test]
    fn a_length_past_the_bytes_is_no_panic() {
        let seg = media_segment(1, &[&run(0, vec![sample(3600, 100, true, 0)])]);
        let mut m = Merger::new(video_init());
        for len in [seg.len() as u64 + 1, u64::MAX - 7, u64::MAX] {
            let _ = m.add_segment(&mut Cursor::new(&seg), len);
        }
    }

    /// Issue 13 hole 4: `ticks * MOVIE_TIMESCALE` overflowed (wrapped in release) for a large
    /// `tfdt`. Movie time is now computed in 128 bits: a 90 kHz `tfdt` near 2^64 merges right,
    /// and one whose movie time cannot fit in 64 bits fails the merge instead of wrapping.
    #[test]
    fn tfdt_near_2_pow_64_merges_or_fails_never_wraps() {
        for tfdt in [u64::MAX, u64::MAX - 3600, u64::MAX / 1000 * 90] {
            let seg = media_segment(
                1,
                &[&run(
                    tfdt,
                    vec![sample(3600, 10, true, 0), sample(3600, 10, true, 0)],
                )],
            );
            let mut m = Merger::new(video_init());
            let scan = m
                .add_segment(&mut Cursor::new(&seg), seg.len() as u64)
                .unwrap();
            assert_eq!(scan.samples, 2);
            assert_eq!(m.duration_ms(), 80, "tfdt {tfdt}");
            let mut out = Vec::new();
            m.write(&mut out, |_| Ok(Cursor::new(seg.clone()))).unwrap();
        }
        // A timescale of 1: tfdt seconds in milliseconds need more than 64 bits.
        let mut init = video_init();
        init[0].timescale = 1;
        let seg = media_segment(1, &[&run(u64::MAX / 10, vec![sample(1, 10, true, 0)])]);
        let mut m = Merger::new(init);
        m.add_segment(&mut Cursor::new(&seg), seg.len() as u64)
            .unwrap();
        assert_eq!(m.duration_ms(), u64::MAX);
        assert!(m.layout().is_err());
        let mut out = Vec::new();
        let err = m
            .write(&mut out, |_| Ok(Cursor::new(seg.clone())))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(out.is_empty(), "nothing written before the error");
    }

    #[test]
    fn movie_time_is_computed_in_128_bits() {
        assert_eq!(to_movie_time(90_000, 90_000), Some(1000));
        assert_eq!(to_movie_time(u64::MAX, 90_000), Some(u64::MAX / 90));
        assert_eq!(to_movie_time(u64::MAX, 1000), Some(u64::MAX));
        assert_eq!(to_movie_time(u64::MAX / 999, 1), None);
    }

    /// The mp4_merge fuzz target's kept crash (fuzz/regressions/mp4_merge/crash-d8fad070...): an
    /// init whose `stbl` holds a child announcing 3.9 GB, and segments whose runs announce samples
    /// whose bytes are not there. Replayed as the target does: each segment keeps its whole
    /// samples, and the merged file is as long as `write` says, its top-level boxes tiling it.
    #[test]
    fn fuzz_mp4_merge_crash_d8fad070_keeps_whole_samples_and_tiles() {
        let input: &[u8] = include_bytes!(
            "../../fuzz/regressions/mp4_merge/crash-d8fad070c81796e3578f464f137ccd18c3369f4a"
        );
        let mut parts = Vec::new();
        let mut rest = input;
        while let Some(i) = rest.windows(5).position(|w| w == b"#SEP#") {
            parts.push(&rest[..i]);
            rest = &rest[i + 5..];
        }
        parts.push(rest);
        assert_eq!(parts.len(), 3, "an init and two segments");
        let tracks = parse_init(parts[0]).expect("the init parses");
        let segments = &parts[1..];
        let mut m = Merger::new(tracks);
        for seg in segments {
            // Whole samples are kept, the ones whose bytes the bogus box swallowed are dropped.
            let scan = m
                .add_segment(&mut Cursor::new(*seg), seg.len() as u64)
                .expect("a bad box ends the scan, it is no error");
            assert_eq!((scan.samples, scan.dropped), (3, 4));
        }
        assert_eq!(m.sample_counts(), [(1, 6)]);
        // Six samples of 40 ms, but the fourth's composition offset (6291456 ticks) presents it
        // at 70 s: the edit lasts until it ends (issue 24 item 3), 10800 + 6291456 + 3600 ticks.
        assert_eq!(m.duration_ms(), 70_066);
        let mut out = Vec::new();
        let n = m
            .write(&mut out, |i| {
                segments
                    .get(i as usize)
                    .map(|s| Cursor::new(*s))
                    .ok_or_else(|| io::Error::other("no such segment"))
            })
            .expect("the whole samples merge");
        assert_eq!(n, out.len() as u64);
        let mut pos = 0;
        for child in boxes(&out) {
            let (_, body) = child.expect("top-level boxes tile the file");
            pos = body.as_ptr() as usize - out.as_ptr() as usize + body.len();
        }
        assert_eq!(pos, out.len());
    }
}
