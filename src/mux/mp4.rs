//! Progressive MP4 from fMP4 segments (the merge): pass 1 reads only each segment's `moof` and
//! keeps per-track aggregates (counts, durations, flags) and one chunk record per segment run, so
//! memory follows the number of segments, never the samples or media bytes; pass 2 measures the
//! `moov`, then writes `ftyp` + `moov` (faststart) straight to the output, streaming the big
//! tables (`stts`, `ctts`, `stss`, `stsz`) from each segment's `moof` read again, then the `mdat`,
//! copying the payloads from the segments in bounded pieces. Readers and writers are passed in;
//! this module opens no files itself.

use super::bmff::{self, boxes, find, BmffError, BoxHeader, BoxWriter, Reader};
use super::fmp4::{
    write_hdlr, write_mdhd, write_media_header_and_dinf, write_mvhd, write_tkhd, Sample,
    MOVIE_TIMESCALE, SAMPLE_SYNC,
};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// A `moof` larger than this is not one of ours and not trusted.
const MAX_MOOF: u64 = 64 << 20;

/// What the merge keeps of an init segment's track: identity, timescale, size, and the sample
/// description (`stsd`) copied verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInit {
    pub track_id: u32,
    pub audio: bool,
    pub timescale: u32,
    pub width: u32,
    pub height: u32,
    /// The whole `stsd` box, header included.
    pub stsd: Vec<u8>,
}

/// Reads the audio and video tracks of an init segment (`ftyp` + `moov`).
pub fn parse_init(init: &[u8]) -> Result<Vec<TrackInit>, BmffError> {
    let moov = find(init, b"moov")?.ok_or(BmffError::Truncated)?;
    let mut out = Vec::new();
    for child in boxes(moov) {
        let (kind, trak) = child?;
        if &kind != b"trak" {
            continue;
        }
        let tkhd = find(trak, b"tkhd")?.ok_or(BmffError::Truncated)?;
        let mut r = Reader::new(tkhd);
        let (version, _) = r.full_header()?;
        r.skip(if version == 1 { 16 } else { 8 })?;
        let track_id = r.u32()?;
        let mut r = Reader::new(tkhd);
        r.skip(tkhd.len().checked_sub(8).ok_or(BmffError::Truncated)?)?;
        let width = r.u32()? >> 16;
        let height = r.u32()? >> 16;
        let mdia = find(trak, b"mdia")?.ok_or(BmffError::Truncated)?;
        let mdhd = find(mdia, b"mdhd")?.ok_or(BmffError::Truncated)?;
        let mut r = Reader::new(mdhd);
        let (version, _) = r.full_header()?;
        r.skip(if version == 1 { 16 } else { 8 })?;
        let timescale = r.u32()?;
        let hdlr = find(mdia, b"hdlr")?.ok_or(BmffError::Truncated)?;
        let mut r = Reader::new(hdlr);
        r.skip(8)?;
        let handler = r.take(4)?;
        let audio = match handler {
            b"soun" => true,
            b"vide" => false,
            _ => continue,
        };
        let minf = find(mdia, b"minf")?.ok_or(BmffError::Truncated)?;
        let stbl = find(minf, b"stbl")?.ok_or(BmffError::Truncated)?;
        let stsd_body = find(stbl, b"stsd")?.ok_or(BmffError::Truncated)?;
        let mut stsd = ((stsd_body.len() + 8) as u32).to_be_bytes().to_vec();
        stsd.extend_from_slice(b"stsd");
        stsd.extend_from_slice(stsd_body);
        if timescale == 0 {
            return Err(BmffError::BadValue);
        }
        out.push(TrackInit {
            track_id,
            audio,
            timescale,
            width,
            height,
            stsd,
        });
    }
    Ok(out)
}

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
            (None, Some(_)) => self.last_dt + self.last_dur as u64,
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
            Some(_) => self.last_dt + self.last_dur as u64,
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
    chunks: u32,
}

impl Table {
    fn samples(&self) -> u64 {
        self.time.samples
    }

    fn duration(&self) -> u64 {
        self.done_duration
            + if self.samples() > 0 {
                self.time.last_dur as u64
            } else {
                0
            }
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

    /// Where this track's presentation starts, in movie time (ms from decode time 0).
    fn start_ms(&self) -> u64 {
        let ticks = self.time.first_dt.unwrap_or(0) + self.min_pts.max(0) as u64;
        ticks * MOVIE_TIMESCALE as u64 / self.init.timescale as u64
    }

    /// The edit: an empty edit (movie time) so that the track starts where it started relative
    /// to the earliest track, and the media time where presentation begins (the first composition
    /// time, which B-frames push past 0).
    fn edit(&self, movie_start_ms: u64) -> (u64, u64) {
        let empty = self.start_ms().saturating_sub(movie_start_ms);
        let media_time = (self.min_pts.max(0) as u64).min(self.duration());
        (empty, media_time)
    }

    /// The track duration in movie time, after the edit.
    fn edited_duration(&self, movie_start_ms: u64) -> u64 {
        let (empty, _) = self.edit(movie_start_ms);
        empty + self.duration() * MOVIE_TIMESCALE as u64 / self.init.timescale as u64
    }
}

/// The bytes before the `moov` and the `moov`'s measured box sizes.
struct Layout {
    ftyp: Vec<u8>,
    /// The `mdat` header (8 bytes, or 16 past 4 GiB).
    mdat: Vec<u8>,
    /// Box sizes of the `moov`, in the order the boxes begin (a few dozen).
    sizes: Vec<u64>,
    /// File offset of the first media byte.
    base: u64,
    co64: bool,
}

/// What pass 1 found in one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentScan {
    /// Whole samples taken from it.
    pub samples: u64,
    /// Samples its tables announce whose bytes are missing (a segment cut short by a crash).
    pub dropped: u64,
}

/// A parsed `trun` before its bytes are checked against the file.
#[derive(Clone, Debug)]
struct ParsedRun {
    track_id: u32,
    decode_time: Option<u64>,
    offset: u64,
    samples: Vec<Sample>,
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

    /// The presentation duration in milliseconds (the longest track).
    pub fn duration_ms(&self) -> u64 {
        let start = self.movie_start_ms();
        self.tracks()
            .map(|(_, t)| t.edited_duration(start))
            .max()
            .unwrap_or(0)
    }

    /// The earliest presentation start of any track: movie time 0.
    fn movie_start_ms(&self) -> u64 {
        self.tracks().map(|(_, t)| t.start_ms()).min().unwrap_or(0)
    }

    /// Pass 1 for the next segment (its index is the number of earlier calls; `write` passes that
    /// index back to `open`). Only `moof` boxes are read. Samples whose bytes lie past the end of
    /// their `mdat` or of the file are dropped, and so is a `moof` without an `mdat`; damage of
    /// this kind is reported in the result, not as an error. Errors are I/O errors only.
    pub fn add_segment<R: Read + Seek>(&mut self, r: &mut R, len: u64) -> io::Result<SegmentScan> {
        let source = self.sources;
        self.sources += 1;
        let mut scan = SegmentScan::default();
        let mut pos = 0u64;
        let mut pending: Vec<(ParsedRun, RunAt)> = Vec::new();
        let mut body = Vec::new();
        while pos + 8 <= len {
            r.seek(SeekFrom::Start(pos))?;
            let mut head = [0u8; 16];
            let n = read_up_to(r, &mut head[..(len - pos).min(16) as usize])?;
            let header = match BoxHeader::parse(&head[..n]) {
                Ok(Some(h)) => h,
                _ => break,
            };
            let end = header.size.map_or(len, |s| pos.saturating_add(s));
            let body_at = pos + header.header_len as u64;
            match &header.kind {
                b"moof" => {
                    // Runs of an earlier moof that never found their mdat are lost.
                    scan.dropped += dropped_in(&pending);
                    pending.clear();
                    if end > len || end - pos > MAX_MOOF {
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
                        Err(_) => break,
                    }
                }
                b"mdat" => {
                    let data_end = end.min(len);
                    for (run, at) in pending.drain(..) {
                        let (kept, dropped) = self.push_run(&run, at, source, body_at, data_end);
                        scan.samples += kept;
                        scan.dropped += dropped;
                    }
                }
                _ => {}
            }
            if end <= pos {
                break;
            }
            pos = end;
        }
        scan.dropped += dropped_in(&pending);
        Ok(scan)
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
            if end + s.size as u64 > data_end {
                break;
            }
            end += s.size as u64;
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
                t.done_duration += d as u64;
                t.stts.push(d);
            }
            t.ctts.push(s.cto);
            t.any_cto |= s.cto != 0;
            t.negative_cto |= s.cto < 0;
            t.syncs += s.is_sync() as u64;
            let pts = (dt - first) as i64 + s.cto as i64;
            t.min_pts = t.min_pts.min(pts);
            dt += s.duration as u64;
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

    /// Writes (or, with a measuring `BoxOut`, sizes) the `moov` for `mdat` data starting at file
    /// offset `base`. `runs` reads a chunk's run again (not called while measuring).
    fn write_moov(
        &self,
        o: &mut BoxOut,
        base: u64,
        co64: bool,
        runs: &mut dyn FnMut(&Chunk) -> io::Result<ParsedRun>,
    ) -> io::Result<()> {
        o.begin(b"moov")?;
        let next_id = self
            .tables
            .iter()
            .map(|t| t.init.track_id)
            .max()
            .unwrap_or(0)
            + 1;
        let mut w = BoxWriter::new();
        write_mvhd(&mut w, self.duration_ms(), next_id);
        o.bytes(&w.into_inner())?;
        let start = self.movie_start_ms();
        for (i, t) in self.tracks() {
            self.write_trak(o, i, t, start, base, co64, runs)?;
        }
        o.end()
    }

    /// Decides the layout: `ftyp`, the `moov`'s size (with `co64` only when a chunk starts past
    /// 4 GiB, decided from the `moov` size measured first), and the `mdat` header.
    fn layout(&self) -> Result<Layout, BmffError> {
        if self.tracks().next().is_none() {
            return Err(BmffError::BadValue);
        }
        let mut w = BoxWriter::new();
        w.file_type(
            b"ftyp",
            b"isom",
            0x200,
            &[b"isom", b"iso2", b"avc1", b"mp41"],
        );
        let ftyp = w.into_inner();
        let payload: u64 = self.chunks.iter().map(|c| c.len).sum();
        let mdat = bmff::mdat_header(payload);
        let last_chunk = self.chunks.last().map_or(0, |c| payload - c.len);
        let measure = |co64: bool| -> Result<Vec<u64>, BmffError> {
            let mut o = BoxOut::measure();
            self.write_moov(&mut o, 0, co64, &mut |_: &Chunk| Err(changed()))
                .map_err(|_| BmffError::BadValue)?;
            Ok(o.sizes)
        };
        let sizes = measure(false)?;
        let base = (ftyp.len() as u64) + sizes[0] + mdat.len() as u64;
        if base + last_chunk <= u32::MAX as u64 {
            return Ok(Layout {
                ftyp,
                mdat,
                sizes,
                base,
                co64: false,
            });
        }
        let sizes = measure(true)?;
        let base = (ftyp.len() as u64) + sizes[0] + mdat.len() as u64;
        Ok(Layout {
            ftyp,
            mdat,
            sizes,
            base,
            co64: true,
        })
    }

    /// Pass 2: writes the progressive MP4 to `out`, opening source segment `i` with `open(i)`.
    /// The sample tables go straight to `out` as each segment's `moof` is read again (one at a
    /// time), the media data in bounded pieces. Returns the bytes written.
    pub fn write<W: Write, R: Read + Seek>(
        &self,
        out: &mut W,
        mut open: impl FnMut(u32) -> io::Result<R>,
    ) -> io::Result<u64> {
        let layout = self.layout()?;
        out.write_all(&layout.ftyp)?;
        let mut current: Option<(u32, R)> = None;
        let mut body = Vec::new();
        {
            let mut o = BoxOut::write(out, layout.sizes);
            let mut runs = |c: &Chunk| -> io::Result<ParsedRun> {
                let r = source(&mut current, c.source, &mut open)?;
                if c.run.body_len > MAX_MOOF {
                    return Err(changed());
                }
                body.resize(c.run.body_len as usize, 0);
                r.seek(SeekFrom::Start(c.run.body_at))?;
                r.read_exact(&mut body)?;
                let run = parse_moof(&body, c.run.moof_at)
                    .map_err(|_| changed())?
                    .into_iter()
                    .nth(c.run.index as usize)
                    .ok_or_else(changed)?;
                if run.offset != c.offset || run.samples.len() < c.samples as usize {
                    return Err(changed());
                }
                Ok(run)
            };
            self.write_moov(&mut o, layout.base, layout.co64, &mut runs)?;
            o.finish()?;
        }
        out.write_all(&layout.mdat)?;
        let mut written = layout.base;
        let mut buf = vec![0u8; 256 * 1024];
        for c in &self.chunks {
            let r = source(&mut current, c.source, &mut open)?;
            r.seek(SeekFrom::Start(c.offset))?;
            let mut left = c.len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                r.read_exact(&mut buf[..n])?;
                out.write_all(&buf[..n])?;
                left -= n as u64;
            }
            written += c.len;
        }
        Ok(written)
    }

    /// The chunks of table `ti` with their runs read again, each cut to the samples taken.
    fn for_each_run(
        &self,
        ti: usize,
        runs: &mut dyn FnMut(&Chunk) -> io::Result<ParsedRun>,
        mut f: impl FnMut(&ParsedRun, &[Sample]) -> io::Result<()>,
    ) -> io::Result<()> {
        for c in self.chunks.iter().filter(|c| c.table == ti) {
            let run = runs(c)?;
            let taken = run.samples.get(..c.samples as usize).ok_or_else(changed)?;
            f(&run, taken)?;
        }
        Ok(())
    }

    /// `stsc` entries of table `ti`: (first chunk, samples per chunk) where that number changes.
    fn stsc(&self, ti: usize) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut prev = None;
        self.chunks
            .iter()
            .filter(move |c| c.table == ti)
            .enumerate()
            .filter_map(move |(i, c)| {
                if prev == Some(c.samples) {
                    return None;
                }
                prev = Some(c.samples);
                Some((i as u32 + 1, c.samples))
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn write_trak(
        &self,
        o: &mut BoxOut,
        ti: usize,
        t: &Table,
        movie_start_ms: u64,
        base: u64,
        co64: bool,
        runs: &mut dyn FnMut(&Chunk) -> io::Result<ParsedRun>,
    ) -> io::Result<()> {
        let init = &t.init;
        o.begin(b"trak")?;
        let mut w = BoxWriter::new();
        write_tkhd(
            &mut w,
            init.track_id,
            t.edited_duration(movie_start_ms),
            init.audio,
            init.width,
            init.height,
        );
        let (empty, media_time) = t.edit(movie_start_ms);
        if empty > 0 || media_time > 0 {
            let edts = w.begin(b"edts");
            let elst = w.begin_full(b"elst", 0, 0);
            w.u32(if empty > 0 { 2 } else { 1 });
            if empty > 0 {
                w.u32(empty.min(u32::MAX as u64) as u32);
                w.i32(-1);
                w.u32(0x0001_0000);
            }
            let edited = t.duration() * MOVIE_TIMESCALE as u64 / init.timescale as u64;
            w.u32(edited.min(u32::MAX as u64) as u32);
            w.i32(media_time.min(i32::MAX as u64) as i32);
            w.u32(0x0001_0000);
            w.end(elst);
            w.end(edts);
        }
        o.bytes(&w.into_inner())?;
        o.begin(b"mdia")?;
        let mut w = BoxWriter::new();
        write_mdhd(&mut w, init.timescale, t.duration());
        write_hdlr(&mut w, init.audio);
        o.bytes(&w.into_inner())?;
        o.begin(b"minf")?;
        let mut w = BoxWriter::new();
        write_media_header_and_dinf(&mut w, init.audio);
        o.bytes(&w.into_inner())?;
        o.begin(b"stbl")?;
        o.bytes(&init.stsd)?;

        // stts: the durations replayed through the same timeline as pass 1.
        let entries = t.stts_entries();
        o.begin_full(b"stts", 0, 0)?;
        o.u32(count32(entries)?)?;
        if o.measuring() {
            o.skip(entries * 8);
        } else {
            let mut time = Timeline::default();
            let mut rle = Rle::default();
            let put = |o: &mut BoxOut, run: Option<(u32, u32)>| -> io::Result<()> {
                if let Some((n, d)) = run {
                    o.u32(n)?;
                    o.u32(d)?;
                }
                Ok(())
            };
            self.for_each_run(ti, runs, |run, taken| {
                let mut dt = time.start_run(run.decode_time);
                for s in taken {
                    if let Some(d) = time.push(dt, s.duration) {
                        put(o, rle.push(d))?;
                    }
                    dt += s.duration as u64;
                }
                Ok(())
            })?;
            if time.samples != t.samples() {
                return Err(changed());
            }
            put(o, rle.push(time.last_dur))?;
            put(o, rle.run.take())?;
            if rle.entries != entries {
                return Err(changed());
            }
        }
        o.end()?;

        if t.any_cto {
            let entries = t.ctts.entries;
            o.begin_full(b"ctts", t.negative_cto as u8, 0)?;
            o.u32(count32(entries)?)?;
            if o.measuring() {
                o.skip(entries * 8);
            } else {
                let mut rle = Rle::default();
                let put = |o: &mut BoxOut, run: Option<(u32, i32)>| -> io::Result<()> {
                    if let Some((n, c)) = run {
                        o.u32(n)?;
                        o.i32(c)?;
                    }
                    Ok(())
                };
                self.for_each_run(ti, runs, |_, taken| {
                    for s in taken {
                        put(o, rle.push(s.cto))?;
                    }
                    Ok(())
                })?;
                put(o, rle.run.take())?;
                if rle.entries != entries {
                    return Err(changed());
                }
            }
            o.end()?;
        }

        if !t.all_sync() {
            o.begin_full(b"stss", 0, 0)?;
            o.u32(count32(t.syncs)?)?;
            if o.measuring() {
                o.skip(t.syncs * 4);
            } else {
                let mut n = 0u32;
                let mut found = 0u64;
                self.for_each_run(ti, runs, |_, taken| {
                    for s in taken {
                        n = n.wrapping_add(1);
                        if s.is_sync() {
                            o.u32(n)?;
                            found += 1;
                        }
                    }
                    Ok(())
                })?;
                if found != t.syncs {
                    return Err(changed());
                }
            }
            o.end()?;
        }

        // stsc: one entry wherever the samples per chunk change (O(chunks)).
        o.begin_full(b"stsc", 0, 0)?;
        o.u32(count32(self.stsc(ti).count() as u64)?)?;
        for (first, n) in self.stsc(ti) {
            o.u32(first)?;
            o.u32(n)?;
            o.u32(1)?;
        }
        o.end()?;

        o.begin_full(b"stsz", 0, 0)?;
        o.u32(0)?;
        o.u32(count32(t.samples())?)?;
        if o.measuring() {
            o.skip(t.samples() * 4);
        } else {
            let mut n = 0u64;
            self.for_each_run(ti, runs, |_, taken| {
                for s in taken {
                    o.u32(s.size)?;
                }
                n += taken.len() as u64;
                Ok(())
            })?;
            if n != t.samples() {
                return Err(changed());
            }
        }
        o.end()?;

        // Chunk offsets: the chunks are laid out in `self.chunks` order from `base`.
        o.begin_full(if co64 { b"co64" } else { b"stco" }, 0, 0)?;
        o.u32(t.chunks)?;
        let mut at = base;
        for c in &self.chunks {
            if c.table == ti {
                if co64 {
                    o.u64(at)?;
                } else {
                    o.u32(at as u32)?;
                }
            }
            at += c.len;
        }
        o.end()?;

        o.end()?; // stbl
        o.end()?; // minf
        o.end()?; // mdia
        o.end() // trak
    }
}

fn dropped_in(pending: &[(ParsedRun, RunAt)]) -> u64 {
    pending.iter().map(|(p, _)| p.samples.len() as u64).sum()
}

fn count32(n: u64) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| BmffError::BadValue.into())
}

/// The open source segment, reopened only when the segment changes.
fn source<'a, R>(
    current: &'a mut Option<(u32, R)>,
    index: u32,
    open: &mut impl FnMut(u32) -> io::Result<R>,
) -> io::Result<&'a mut R> {
    if current.as_ref().map(|(s, _)| *s) != Some(index) {
        *current = Some((index, open(index)?));
    }
    match current {
        Some((_, r)) => Ok(r),
        None => Err(changed()),
    }
}

/// Writes boxes whose sizes were measured first: run once measuring (sizes recorded in the
/// order the boxes begin, big tables counted without being read), then writing with those
/// sizes, so that the `moov` goes straight to the output with no copy of it in memory.
struct BoxOut<'a> {
    out: Option<&'a mut dyn Write>,
    /// Bytes so far (measured or written).
    pos: u64,
    sizes: Vec<u64>,
    /// Boxes begun and not ended: (index into `sizes`, start position).
    open: Vec<(usize, u64)>,
    next: usize,
    /// Small writes gathered before they go to `out` (bounded: flushed at `FLUSH_AT`).
    buf: Vec<u8>,
}

const FLUSH_AT: usize = 64 * 1024;

impl<'a> BoxOut<'a> {
    fn measure() -> BoxOut<'a> {
        BoxOut {
            out: None,
            pos: 0,
            sizes: Vec::new(),
            open: Vec::new(),
            next: 0,
            buf: Vec::new(),
        }
    }

    fn write(out: &'a mut dyn Write, sizes: Vec<u64>) -> BoxOut<'a> {
        BoxOut {
            out: Some(out),
            pos: 0,
            sizes,
            open: Vec::new(),
            next: 0,
            buf: Vec::with_capacity(FLUSH_AT + 64),
        }
    }

    fn measuring(&self) -> bool {
        self.out.is_none()
    }

    fn skip(&mut self, n: u64) {
        self.pos += n;
    }

    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.pos += b.len() as u64;
        if let Some(out) = self.out.as_mut() {
            self.buf.extend_from_slice(b);
            if self.buf.len() >= FLUSH_AT {
                out.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        Ok(())
    }

    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.bytes(&v.to_be_bytes())
    }

    fn i32(&mut self, v: i32) -> io::Result<()> {
        self.bytes(&v.to_be_bytes())
    }

    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.bytes(&v.to_be_bytes())
    }

    fn begin(&mut self, kind: &[u8; 4]) -> io::Result<()> {
        let index = if self.measuring() {
            self.sizes.push(0);
            self.sizes.len() - 1
        } else {
            self.next += 1;
            self.next - 1
        };
        self.open.push((index, self.pos));
        let size = if self.measuring() {
            0
        } else {
            let s = *self.sizes.get(index).ok_or_else(changed)?;
            u32::try_from(s).map_err(|_| io::Error::from(BmffError::BadValue))?
        };
        self.u32(size)?;
        self.bytes(kind)
    }

    fn begin_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> io::Result<()> {
        self.begin(kind)?;
        self.u32((version as u32) << 24 | (flags & 0x00ff_ffff))
    }

    /// Ends the innermost box; when writing, checks that it came out at its measured size.
    fn end(&mut self) -> io::Result<()> {
        let (index, start) = self.open.pop().ok_or_else(changed)?;
        let size = self.pos - start;
        if self.measuring() {
            self.sizes[index] = size;
        } else if self.sizes.get(index) != Some(&size) {
            return Err(changed());
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The runs of a `moof` body (the moof starts at file offset `moof_at`), with absolute data offsets.
fn parse_moof(moof: &[u8], moof_at: u64) -> Result<Vec<ParsedRun>, BmffError> {
    let mut runs = Vec::new();
    for child in boxes(moof) {
        let (kind, traf) = child?;
        if &kind != b"traf" {
            continue;
        }
        let tfhd = find(traf, b"tfhd")?.ok_or(BmffError::Truncated)?;
        let mut r = Reader::new(tfhd);
        let (_, flags) = r.full_header()?;
        let track_id = r.u32()?;
        let base = if flags & 0x01 != 0 { r.u64()? } else { moof_at };
        if flags & 0x02 != 0 {
            r.u32()?;
        }
        let default_duration = if flags & 0x08 != 0 { r.u32()? } else { 0 };
        let default_size = if flags & 0x10 != 0 { r.u32()? } else { 0 };
        let default_flags = if flags & 0x20 != 0 {
            r.u32()?
        } else {
            SAMPLE_SYNC
        };
        let decode_time = match find(traf, b"tfdt")? {
            Some(tfdt) => {
                let mut r = Reader::new(tfdt);
                let (version, _) = r.full_header()?;
                Some(if version == 1 {
                    r.u64()?
                } else {
                    r.u32()? as u64
                })
            }
            None => None,
        };
        let mut next_offset = base;
        let mut first_run = true;
        for child in boxes(traf) {
            let (kind, trun) = child?;
            if &kind != b"trun" {
                continue;
            }
            let mut r = Reader::new(trun);
            let (_, flags) = r.full_header()?;
            let count = r.u32()? as usize;
            let offset = if flags & 0x01 != 0 {
                let o = r.u32()? as i32 as i64;
                u64::try_from(base as i64 + o).map_err(|_| BmffError::BadValue)?
            } else {
                next_offset
            };
            let first_flags = if flags & 0x04 != 0 {
                Some(r.u32()?)
            } else {
                None
            };
            let per = [0x100, 0x200, 0x400, 0x800]
                .iter()
                .filter(|f| flags & **f != 0)
                .count()
                * 4;
            if per > 0 && count > r.remaining() / per {
                return Err(BmffError::BadValue);
            }
            if per == 0 && count > 1 << 20 {
                return Err(BmffError::BadValue);
            }
            let mut samples = Vec::with_capacity(count);
            let mut bytes = 0u64;
            for i in 0..count {
                let duration = if flags & 0x100 != 0 {
                    r.u32()?
                } else {
                    default_duration
                };
                let size = if flags & 0x200 != 0 {
                    r.u32()?
                } else {
                    default_size
                };
                let mut sflags = if flags & 0x400 != 0 {
                    r.u32()?
                } else {
                    default_flags
                };
                if i == 0 {
                    if let Some(f) = first_flags {
                        sflags = f;
                    }
                }
                let cto = if flags & 0x800 != 0 {
                    r.u32()? as i32
                } else {
                    0
                };
                bytes += size as u64;
                samples.push(Sample {
                    duration,
                    size,
                    flags: sflags,
                    cto,
                });
            }
            next_offset = offset + bytes;
            runs.push(ParsedRun {
                track_id,
                // Only the first run of a traf starts at the tfdt; later ones follow on.
                decode_time: if first_run { decode_time } else { None },
                offset,
                samples,
            });
            first_run = false;
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::fmp4::{
        init_segment, media_segment, AudioConfig, Run, VideoConfig, SAMPLE_NON_SYNC,
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

    #[test]
    fn init_round_trip() {
        let a = AudioConfig {
            asc: Bytes::from_static(&[0x12, 0x10]),
            sample_rate: 44100,
            channels: 2,
        };
        let tracks = parse_init(&init_segment(None, Some(&a))).unwrap();
        assert_eq!(tracks.len(), 1);
        assert!(tracks[0].audio);
        assert_eq!(tracks[0].timescale, 44100);
        assert_eq!(tracks[0].track_id, 2);
        assert_eq!(&tracks[0].stsd[4..8], b"stsd");
        let v = video_init();
        assert_eq!(
            (v[0].width, v[0].height, v[0].timescale),
            (320, 240, 90_000)
        );
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
        assert_eq!(
            scan,
            SegmentScan {
                samples: 1,
                dropped: 2
            }
        );
        // A segment cut inside its moof gives nothing, and no error.
        let cut = &seg[..60];
        let scan = m
            .add_segment(&mut Cursor::new(cut), cut.len() as u64)
            .unwrap();
        assert_eq!(scan.samples, 0);
        let mut out = Vec::new();
        let owned = seg.clone();
        m.write(&mut out, |_| Ok(Cursor::new(owned.clone())))
            .unwrap();
        let moov = find(&out, b"moov").unwrap().unwrap();
        assert_eq!(&table(moov, b"stsz").unwrap()[8..12], &1u32.to_be_bytes());
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
}
