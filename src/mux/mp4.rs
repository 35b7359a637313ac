//! Progressive MP4 from fMP4 segments (the merge): pass 1 reads only each segment's `moof` tables
//! into sample tables (memory grows with the sample count, never with media bytes); pass 2 writes
//! `ftyp` + `moov` (faststart) + `mdat`, copying the payloads from the segments in bounded pieces.
//! Readers and writers are passed in; this module opens no files itself.

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

/// One run of contiguous samples in a source segment; it becomes one chunk of the output.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    source: u32,
    offset: u64,
    len: u64,
    table: usize,
    samples: u32,
}

#[derive(Debug)]
struct Table {
    init: TrackInit,
    sizes: Vec<u32>,
    /// Sample durations as (count, duration) runs: nearly constant, so a few runs per segment
    /// instead of 4 bytes per sample (the merge's memory follows these tables).
    durations: Vec<(u32, u32)>,
    /// Composition offsets; empty while every one so far was 0 (audio, video without B-frames),
    /// else one per sample.
    ctos: Vec<i32>,
    /// 1-based numbers of sync samples; empty while every sample so far was sync (`all_sync`).
    sync: Vec<u32>,
    all_sync: bool,
    first_dt: Option<u64>,
    last_dt: u64,
    /// Earliest composition time relative to the first decode time.
    min_pts: i64,
    chunks: u32,
}

impl Table {
    fn duration(&self) -> u64 {
        self.durations
            .iter()
            .map(|&(n, d)| n as u64 * d as u64)
            .sum()
    }

    fn last_duration(&self) -> u32 {
        self.durations.last().map_or(0, |r| r.1)
    }

    fn push_duration(&mut self, d: u32) {
        match self.durations.last_mut() {
            Some((n, x)) if *x == d => *n += 1,
            _ => self.durations.push((1, d)),
        }
    }

    /// Changes the last sample's duration, keeping the runs merged (as `stts` wants them).
    fn set_last_duration(&mut self, d: u32) {
        let Some(&(n, x)) = self.durations.last() else {
            return;
        };
        if x == d {
            return;
        }
        if n == 1 {
            self.durations.pop();
        } else if let Some(last) = self.durations.last_mut() {
            last.0 -= 1;
        }
        self.push_duration(d);
    }

    /// Where this track's presentation starts, in movie time (ms from decode time 0).
    fn start_ms(&self) -> u64 {
        let ticks = self.first_dt.unwrap_or(0) + self.min_pts.max(0) as u64;
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

/// The bytes before the media data of the output file.
struct Layout {
    ftyp: Vec<u8>,
    moov: Vec<u8>,
    /// The `mdat` header (8 bytes, or 16 past 4 GiB).
    mdat: Vec<u8>,
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
struct ParsedRun {
    track_id: u32,
    decode_time: Option<u64>,
    offset: u64,
    samples: Vec<Sample>,
}

/// Pass 1 state: the sample tables of every track and the list of chunks to copy.
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
                    sizes: Vec::new(),
                    durations: Vec::new(),
                    ctos: Vec::new(),
                    sync: Vec::new(),
                    all_sync: true,
                    first_dt: None,
                    last_dt: 0,
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
            .map(|t| (t.init.track_id, t.sizes.len()))
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
        let mut pending: Vec<ParsedRun> = Vec::new();
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
                    scan.dropped += pending.iter().map(|p| p.samples.len() as u64).sum::<u64>();
                    pending.clear();
                    if end > len || end - pos > MAX_MOOF {
                        break;
                    }
                    let mut body = vec![0u8; (end - body_at) as usize];
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
                        let (kept, dropped) = self.push_run(run, source, body_at, data_end);
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
        scan.dropped += pending.iter().map(|p| p.samples.len() as u64).sum::<u64>();
        Ok(scan)
    }

    /// Takes the whole samples of `run` that lie within `[data_start, data_end)`; returns
    /// (kept, dropped).
    fn push_run(
        &mut self,
        run: ParsedRun,
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
        let mut dt = match (run.decode_time, t.first_dt) {
            (Some(d), _) => d,
            (None, None) => 0,
            (None, Some(_)) => t.last_dt + t.last_duration() as u64,
        };
        match t.first_dt {
            None => t.first_dt = Some(dt),
            Some(_) => {
                // The segment's tfdt is the truth: the previous sample lasts until it.
                if dt > t.last_dt {
                    t.set_last_duration((dt - t.last_dt).min(u32::MAX as u64) as u32);
                } else {
                    dt = t.last_dt + t.last_duration() as u64;
                }
            }
        }
        let first = t.first_dt.unwrap_or(0);
        for s in &run.samples[..keep] {
            t.sizes.push(s.size);
            t.push_duration(s.duration);
            let n = t.sizes.len();
            if !t.ctos.is_empty() {
                t.ctos.push(s.cto);
            } else if s.cto != 0 {
                // The first non-zero offset: the zeros before it become explicit.
                t.ctos.resize(n - 1, 0);
                t.ctos.push(s.cto);
            }
            if !t.all_sync {
                if s.is_sync() {
                    t.sync.push(n as u32);
                }
            } else if !s.is_sync() {
                // The first non-sync sample: every sample before it was sync.
                t.all_sync = false;
                t.sync = (1..n as u32).collect();
            }
            let pts = (dt - first) as i64 + s.cto as i64;
            t.min_pts = t.min_pts.min(pts);
            t.last_dt = dt;
            dt += s.duration as u64;
        }
        t.chunks += 1;
        self.chunks.push(Chunk {
            source,
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
            .filter(|(_, t)| !t.sizes.is_empty())
    }

    /// The `moov` for `mdat` data starting at file offset `base`, with 64-bit chunk offsets or not.
    fn moov(&self, base: u64, co64: bool) -> Vec<u8> {
        // Chunk offsets per table, in output order.
        let mut offsets: Vec<Vec<u64>> = vec![Vec::new(); self.tables.len()];
        let mut spc: Vec<Vec<u32>> = vec![Vec::new(); self.tables.len()];
        let mut at = base;
        for c in &self.chunks {
            offsets[c.table].push(at);
            spc[c.table].push(c.samples);
            at += c.len;
        }
        let mut w = BoxWriter::with_capacity(
            4096 + self
                .tables
                .iter()
                .map(|t| t.sizes.len() * 12)
                .sum::<usize>()
                + self.chunks.len() * 8,
        );
        let moov = w.begin(b"moov");
        let next_id = self
            .tables
            .iter()
            .map(|t| t.init.track_id)
            .max()
            .unwrap_or(0)
            + 1;
        write_mvhd(&mut w, self.duration_ms(), next_id);
        let start = self.movie_start_ms();
        for (i, t) in self.tracks() {
            write_trak(&mut w, t, start, &offsets[i], &spc[i], co64);
        }
        w.end(moov);
        w.into_inner()
    }

    /// Decides the layout: `ftyp`, the `moov` (with `co64` only when a chunk starts past 4 GiB,
    /// decided from the `moov` size computed first), and the `mdat` header.
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
        // Only the size of this first `moov` is needed: it is dropped at once, so that the peak
        // memory holds one `moov`, not two.
        let moov_len = self.moov(0, false).len();
        let base = (ftyp.len() + moov_len + mdat.len()) as u64;
        if base + last_chunk <= u32::MAX as u64 {
            let moov = self.moov(base, false);
            return Ok(Layout { ftyp, moov, mdat });
        }
        let size64 = self.moov(0, true).len();
        let base = (ftyp.len() + size64 + mdat.len()) as u64;
        Ok(Layout {
            ftyp,
            moov: self.moov(base, true),
            mdat,
        })
    }

    /// Pass 2: writes the progressive MP4 to `out`, opening source segment `i` with `open(i)`.
    /// Returns the bytes written.
    pub fn write<W: Write, R: Read + Seek>(
        &self,
        out: &mut W,
        mut open: impl FnMut(u32) -> io::Result<R>,
    ) -> io::Result<u64> {
        let Layout {
            ftyp, moov, mdat, ..
        } = self.layout()?;
        out.write_all(&ftyp)?;
        out.write_all(&moov)?;
        out.write_all(&mdat)?;
        let mut written = (ftyp.len() + moov.len() + mdat.len()) as u64;
        let mut current: Option<(u32, R)> = None;
        let mut buf = vec![0u8; 256 * 1024];
        for c in &self.chunks {
            if current.as_ref().map(|(s, _)| *s) != Some(c.source) {
                current = Some((c.source, open(c.source)?));
            }
            let Some((_, r)) = current.as_mut() else {
                continue;
            };
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

/// Run-length pairs of equal consecutive values, computed as they are written (a collected list
/// would cost 8 bytes per B-frame sample on top of the tables at the merge's peak).
fn runs_of<T: Copy + PartialEq>(v: &[T]) -> impl Iterator<Item = (u32, T)> + '_ {
    v.chunk_by(|a, b| a == b).map(|c| (c.len() as u32, c[0]))
}

fn write_trak(
    w: &mut BoxWriter,
    t: &Table,
    movie_start_ms: u64,
    offsets: &[u64],
    spc: &[u32],
    co64: bool,
) {
    let init = &t.init;
    let trak = w.begin(b"trak");
    write_tkhd(
        w,
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
    let mdia = w.begin(b"mdia");
    write_mdhd(w, init.timescale, t.duration());
    write_hdlr(w, init.audio);
    let minf = w.begin(b"minf");
    write_media_header_and_dinf(w, init.audio);
    let stbl = w.begin(b"stbl");
    w.bytes(&init.stsd);

    let at = w.begin_full(b"stts", 0, 0);
    w.u32(t.durations.len() as u32);
    for &(n, d) in &t.durations {
        w.u32(n);
        w.u32(d);
    }
    w.end(at);

    if !t.ctos.is_empty() {
        let negative = t.ctos.iter().any(|c| *c < 0);
        let at = w.begin_full(b"ctts", negative as u8, 0);
        w.u32(runs_of(&t.ctos).count() as u32);
        for (n, c) in runs_of(&t.ctos) {
            w.u32(n);
            w.i32(c);
        }
        w.end(at);
    }

    if !t.all_sync {
        let at = w.begin_full(b"stss", 0, 0);
        w.u32(t.sync.len() as u32);
        for s in &t.sync {
            w.u32(*s);
        }
        w.end(at);
    }

    let at = w.begin_full(b"stsc", 0, 0);
    let stsc: Vec<(u32, u32)> = {
        let mut v = Vec::new();
        let mut prev = None;
        for (i, n) in spc.iter().enumerate() {
            if prev != Some(*n) {
                v.push((i as u32 + 1, *n));
                prev = Some(*n);
            }
        }
        v
    };
    w.u32(stsc.len() as u32);
    for (first, n) in stsc {
        w.u32(first);
        w.u32(n);
        w.u32(1);
    }
    w.end(at);

    let at = w.begin_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(t.sizes.len() as u32);
    for s in &t.sizes {
        w.u32(*s);
    }
    w.end(at);

    let at = w.begin_full(if co64 { b"co64" } else { b"stco" }, 0, 0);
    w.u32(offsets.len() as u32);
    for o in offsets {
        if co64 {
            w.u64(*o);
        } else {
            w.u32(*o as u32);
        }
    }
    w.end(at);

    w.end(stbl);
    w.end(minf);
    w.end(mdia);
    w.end(trak);
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

    #[test]
    fn co64_when_a_chunk_starts_past_4_gib() {
        let mut m = Merger::new(video_init());
        let big = ParsedRun {
            track_id: 1,
            decode_time: Some(0),
            offset: 0,
            samples: vec![sample(3600, u32::MAX, true, 0); 2],
        };
        m.push_run(big, 0, 0, u64::MAX);
        let small = ParsedRun {
            track_id: 1,
            decode_time: Some(7200),
            offset: 0,
            samples: vec![sample(3600, 1, false, 0)],
        };
        m.push_run(small, 1, 0, u64::MAX);
        let Layout { moov, mdat, .. } = m.layout().unwrap();
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

        let mut m = Merger::new(video_init());
        let r = ParsedRun {
            track_id: 1,
            decode_time: Some(0),
            offset: 0,
            samples: vec![sample(3600, 1000, true, 0)],
        };
        m.push_run(r, 0, 0, u64::MAX);
        let moov = m.layout().unwrap().moov;
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

    #[test]
    fn duration_runs_stay_merged_when_the_last_one_changes() {
        let mut m = Merger::new(video_init());
        let t = &mut m.tables[0];
        for d in [3000, 3000, 3000] {
            t.push_duration(d);
        }
        // A tfdt gap stretches the last sample: a run of its own...
        t.set_last_duration(4500);
        assert_eq!(t.durations, vec![(2, 3000), (1, 4500)]);
        // ...which merges back when it is set to the run before it.
        t.set_last_duration(3000);
        assert_eq!(t.durations, vec![(3, 3000)]);
        t.push_duration(4500);
        t.set_last_duration(3000);
        assert_eq!(t.durations, vec![(4, 3000)]);
        assert_eq!(t.duration(), 12000);
        assert_eq!(t.last_duration(), 3000);
    }
}
