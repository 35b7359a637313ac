//! Pass 2 of the merge: the layout (`ftyp`, the measured `moov`, the `mdat` header, `stco` or
//! `co64`), the `moov` writer that streams the sample tables from each segment's `moof` read
//! again, and the copy of the media data in bounded pieces. The aggregates it writes from are
//! pass 1's (`super::Merger`); it parses nothing itself (`super::read`).

use super::read::{parse_moof, ParsedRun, MAX_MOOF};
use super::{changed, Chunk, Merger, Rle, Table, Timeline};
use crate::mux::bmff::{self, BmffError, BoxWriter};
use crate::mux::fmp4::{
    write_hdlr, write_mdhd, write_media_header_and_dinf, write_mvhd, write_tkhd, Sample,
};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// The bytes before the `moov` and the `moov`'s measured box sizes.
pub(super) struct Layout {
    pub(super) ftyp: Vec<u8>,
    /// The `mdat` header (8 bytes, or 16 past 4 GiB).
    pub(super) mdat: Vec<u8>,
    /// Box sizes of the `moov`, in the order the boxes begin (a few dozen).
    pub(super) sizes: Vec<u64>,
    /// File offset of the first media byte.
    pub(super) base: u64,
    pub(super) co64: bool,
}

impl Merger {
    /// Writes (or, with a measuring `BoxOut`, sizes) the `moov` for `mdat` data starting at file
    /// offset `base`. `runs` reads a chunk's run again (not called while measuring).
    pub(super) fn write_moov(
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
            .saturating_add(1);
        let duration = self.checked_duration_ms().ok_or(BmffError::BadValue)?;
        let mut w = BoxWriter::new();
        write_mvhd(&mut w, duration, next_id);
        o.bytes(&w.into_inner())?;
        let start = self.movie_start_ms().ok_or(BmffError::BadValue)?;
        for (i, t) in self.tracks() {
            self.write_trak(o, i, t, start, base, co64, runs)?;
        }
        o.end()
    }

    /// Decides the layout: `ftyp`, the `moov`'s size (with `co64` only when a chunk starts past
    /// 4 GiB, decided from the `moov` size measured first), and the `mdat` header.
    pub(super) fn layout(&self) -> Result<Layout, BmffError> {
        // Nothing to write, or times from the file that the movie time cannot hold.
        if self.tracks().next().is_none() || self.checked_duration_ms().is_none() {
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
        let payload = self
            .chunks
            .iter()
            .try_fold(0u64, |sum, c| sum.checked_add(c.len))
            .ok_or(BmffError::BadSize)?;
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
        if base.checked_add(last_chunk).ok_or(BmffError::BadSize)? <= u32::MAX as u64 {
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
        base.checked_add(payload).ok_or(BmffError::BadSize)?;
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
            t.edited_duration(movie_start_ms)
                .ok_or(BmffError::BadValue)?,
            init.audio,
            (init.width, init.height),
            init.enabled,
        );
        let (empty, media_time) = t.edit(movie_start_ms).ok_or(BmffError::BadValue)?;
        if empty > 0 || media_time > 0 {
            let edts = w.begin(b"edts");
            let elst = w.begin_full(b"elst", 0, 0);
            w.u32(if empty > 0 { 2 } else { 1 });
            if empty > 0 {
                w.u32(empty.min(u32::MAX as u64) as u32);
                w.i32(-1);
                w.u32(0x0001_0000);
            }
            let edited = t.presented_ms().ok_or(BmffError::BadValue)?;
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
                    dt = dt.saturating_add(s.duration as u64);
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
pub(super) struct BoxOut<'a> {
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

    pub(super) fn write(out: &'a mut dyn Write, sizes: Vec<u64>) -> BoxOut<'a> {
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

    pub(super) fn finish(&mut self) -> io::Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}
