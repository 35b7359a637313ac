//! Playback cuts: any wall-clock range of a stream's recordings as one MP4 (progressive, `moov` first)
//! or one fragmented MP4, taken from the sessions' fMP4 segments (`output_merge/`) without re-encoding.
//! The cut starts at the video keyframe at or before the asked start and ends before `start + duration`;
//! it runs across session boundaries (the next session continues where the previous one ended on the
//! output timeline) while their tracks are the same. It streams: one segment's `moof` in memory at a
//! time, payloads copied in bounded pieces into a temporary file that is unlinked at once, then (for
//! the progressive form) the merge's two passes over it (`mux::mp4::Merger`). It runs on its own
//! thread (`CutWorker`, a bounded queue), never on the event loop; it knows nothing about HTTP.

use super::index::Session;
use super::merge::segment_files;
use super::paths::{INIT_NAME, MERGE_DIR, MUXED_PREFIX};
use crate::mux::bmff::{mdat_header, BoxWriter};
use crate::mux::fmp4::{write_traf, Sample};
use crate::mux::mp4::{parse_init, segment_runs, Merger, TrackInit};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;

/// The longest range one request may cut.
pub const MAX_DURATION_MS: u64 = 6 * 3600 * 1000;
const MAX_INIT: u64 = 4 << 20;
/// Cuts waiting for the cutter thread; over it the loop answers 503.
const QUEUE: usize = 8;

#[derive(Clone, Debug)]
pub struct CutRequest {
    pub data_dir: PathBuf,
    /// The stream's sessions that overlap the range and have fMP4 recordings, oldest first.
    pub sessions: Vec<Session>,
    /// Wall clock, Unix ms.
    pub start_ms: i64,
    pub duration_ms: u64,
    /// Fragmented MP4 (init + fragments) instead of the progressive one.
    pub fragmented: bool,
    /// `--upload`'s bucket: segments whose local copy is gone (`--upload-delete-local`) come from it.
    pub remote: Option<super::upload::Remote>,
}

/// A finished cut: an unlinked temporary file holding it, ready to be served.
#[derive(Debug)]
pub struct CutOutput {
    pub file: File,
    pub len: u64,
    /// Wall clock of its first video keyframe (or first sample), Unix ms.
    pub first_ms: i64,
    /// Its length on the output timeline.
    pub duration_ms: u64,
}

#[derive(Debug)]
pub enum CutError {
    /// No samples in the range (no fMP4 recording there).
    Empty,
    Io(io::Error),
}

impl std::fmt::Display for CutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CutError::Empty => f.write_str("no recorded media in that range"),
            CutError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for CutError {
    fn from(e: io::Error) -> Self {
        CutError::Io(e)
    }
}

/// A file created in the data dir's `index/` folder (else the system temp folder) and unlinked at once:
/// it lives as long as its handle.
fn scratch_file(data_dir: &Path) -> io::Result<File> {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        ".cut-{}-{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let dir = data_dir.join(super::index::INDEX_DIR);
    let try_in = |d: &Path| -> io::Result<File> {
        fs::create_dir_all(d)?;
        let p = d.join(&name);
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)?;
        let _ = fs::remove_file(&p);
        Ok(f)
    };
    try_in(&dir).or_else(|_| try_in(&std::env::temp_dir()))
}

/// One kept run of a source segment: where its bytes are and what it becomes.
struct Kept {
    track_id: u32,
    decode_time: u64,
    samples: Vec<Sample>,
    src_offset: u64,
    bytes: u64,
}

/// Ticks -> ms and back in a track's timescale (u128: times come from files).
fn ms_of(ticks: u64, ts: u32) -> i64 {
    (ticks as u128 * 1000 / ts.max(1) as u128).min(i64::MAX as u128) as i64
}

fn ticks_of(ms: i64, ts: u32) -> u64 {
    (ms.max(0) as u128 * ts as u128 / 1000).min(u64::MAX as u128) as u64
}

fn read_init(dir: &Path) -> io::Result<(Vec<u8>, Vec<TrackInit>)> {
    let path = dir.join(INIT_NAME);
    let mut buf = Vec::new();
    File::open(&path)
        .map_err(|e| super::paths::with_path(e, &path))?
        .take(MAX_INIT)
        .read_to_end(&mut buf)?;
    let tracks = parse_init(&buf).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    Ok((buf, tracks))
}

/// Same tracks, same sample descriptions: one `moov` holds both sessions.
fn same_tracks(a: &[TrackInit], b: &[TrackInit]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.track_id == y.track_id && x.timescale == y.timescale && x.stsd == y.stsd
        })
}

/// Writes one fragment (`moof` + `mdat`) of the kept runs, copying their bytes from `src`.
fn write_fragment(
    out: &mut impl Write,
    seq: u32,
    kept: &[Kept],
    src: &mut File,
    copy_buf: &mut [u8],
) -> io::Result<u64> {
    let mut w =
        BoxWriter::with_capacity(256 + kept.iter().map(|k| k.samples.len() * 16).sum::<usize>());
    let moof = w.begin(b"moof");
    let mfhd = w.begin_full(b"mfhd", 0, 0);
    w.u32(seq);
    w.end(mfhd);
    let mut slots = Vec::with_capacity(kept.len());
    for k in kept {
        slots.push(write_traf(&mut w, k.track_id, k.decode_time, &k.samples));
    }
    w.end(moof);
    let payload: u64 = kept.iter().map(|k| k.bytes).sum();
    let header = mdat_header(payload);
    let mut moof_bytes = w.into_inner();
    let mut offset = moof_bytes.len() as u64 + header.len() as u64;
    for (slot, k) in slots.iter().zip(kept) {
        let o = u32::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a fragment over 4 GiB"))?;
        moof_bytes[*slot..*slot + 4].copy_from_slice(&o.to_be_bytes());
        offset += k.bytes;
    }
    out.write_all(&moof_bytes)?;
    out.write_all(&header)?;
    for k in kept {
        src.seek(SeekFrom::Start(k.src_offset))?;
        let mut left = k.bytes;
        while left > 0 {
            let n = (left as usize).min(copy_buf.len());
            src.read_exact(&mut copy_buf[..n])?;
            out.write_all(&copy_buf[..n])?;
            left -= n as u64;
        }
    }
    Ok(moof_bytes.len() as u64 + header.len() as u64 + payload)
}

/// The first decode time (ms) of the first run of `track` (or any track) in segment `path`.
fn segment_first_ms(
    path: &Path,
    tracks: &[TrackInit],
    video: Option<u32>,
) -> io::Result<Option<i64>> {
    segment_first_ms_of(&mut File::open(path)?, tracks, video)
}

/// `segment_first_ms` of an open segment.
fn segment_first_ms_of(
    f: &mut File,
    tracks: &[TrackInit],
    video: Option<u32>,
) -> io::Result<Option<i64>> {
    let len = f.metadata()?.len();
    let runs = segment_runs(f, len)?;
    let run = runs
        .iter()
        .find(|r| video.is_none_or(|v| r.track_id == v))
        .or(runs.first());
    Ok(run.and_then(|r| {
        let ts = tracks.iter().find(|t| t.track_id == r.track_id)?.timescale;
        Some(ms_of(r.decode_time?, ts))
    }))
}

/// The muxed segments of a session folder, local or listed by its playlist (their local copies deleted
/// once stored: `--upload-delete-local`), and the playlist's start (ms) of each.
#[allow(clippy::type_complexity)]
fn session_segments(
    dir: &Path,
) -> io::Result<(Vec<(u32, PathBuf)>, std::collections::HashMap<u32, i64>)> {
    let mut segments = segment_files(dir, MUXED_PREFIX)?;
    let mut starts = std::collections::HashMap::new();
    let text = fs::read_to_string(dir.join(super::paths::MUXED_PLAYLIST)).unwrap_or_default();
    let mut at = 0f64;
    let mut dur = 0f64;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            dur = d.trim_end_matches(',').parse().unwrap_or(0.0);
            continue;
        }
        let n = line
            .strip_prefix(MUXED_PREFIX)
            .and_then(|r| r.strip_prefix('_'))
            .and_then(|r| r.strip_suffix(".m4s"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = n {
            starts.insert(n, (at * 1000.0) as i64);
            at += dur.max(0.0);
            if !segments.iter().any(|(m, _)| *m == n) {
                segments.push((n, dir.join(line)));
            }
        }
    }
    segments.sort();
    Ok((segments, starts))
}

/// The segment at `path`, or (gone from the disk, stored in the bucket) its object, fetched into an
/// unlinked temporary file.
fn open_segment(req: &CutRequest, s: &Session, path: &Path) -> io::Result<File> {
    match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(remote) = &req.remote else {
                return Err(super::paths::with_path(e, path));
            };
            let rel = path
                .strip_prefix(&req.data_dir)
                .ok()
                .and_then(|r| r.to_str())
                .map(|r| r.replace('\\', "/"))
                .ok_or_else(|| super::paths::with_path(e, path))?;
            let rel = super::upload::archived_rel(&rel, &s.id);
            let mut f = scratch_file(&req.data_dir)?;
            let agent = super::upload::agent();
            remote.fetch(&agent, &rel, 1 << 30, &mut f)?;
            f.seek(SeekFrom::Start(0))?;
            Ok(f)
        }
        r => r,
    }
}

/// Cuts `req` into an unlinked temporary file.
pub fn cut(req: &CutRequest) -> Result<CutOutput, CutError> {
    let end_ms = req
        .start_ms
        .saturating_add(req.duration_ms.min(MAX_DURATION_MS) as i64);
    let mut frag = BufWriter::with_capacity(1 << 20, scratch_file(&req.data_dir)?);
    let mut first: Option<(Vec<u8>, Vec<TrackInit>)> = None;
    let mut copy_buf = vec![0u8; 256 * 1024];
    let mut seq = 1u32;
    let mut out_base_ms: i64 = 0;
    let mut first_ms: Option<i64> = None;
    let mut frag_len = 0u64;
    for s in &req.sessions {
        let Some(mp4) = &s.mp4 else { continue };
        let dir = req.data_dir.join(mp4).join(MERGE_DIR);
        let (init, tracks) = read_init(&dir)?;
        match &first {
            None => {
                if req.fragmented {
                    frag.write_all(&init)?;
                    frag_len += init.len() as u64;
                }
                first = Some((init, tracks.clone()));
            }
            Some((_, t0)) if !same_tracks(t0, &tracks) => break,
            Some(_) => {}
        }
        let rel_a = (req.start_ms - s.start_ms).max(0);
        let rel_b = end_ms - s.start_ms;
        if rel_b <= rel_a || s.media_end_ms().is_some_and(|e| e <= req.start_ms) {
            continue;
        }
        let video = tracks.iter().find(|t| !t.audio).map(|t| t.track_id);
        let (segments, estimates) = session_segments(&dir)?;
        // The last segment that starts at or before the start: it holds the keyframe (segments
        // start on one). A segment only in the bucket is placed by its playlist's durations (one
        // segment earlier, as that is an estimate) rather than fetched.
        let mut from = 0;
        let mut estimated = false;
        for (i, (n, p)) in segments.iter().enumerate() {
            let first = if p.is_file() || req.remote.is_none() {
                segment_first_ms(p, &tracks, video)?
            } else {
                estimated = true;
                estimates.get(n).copied()
            };
            match first {
                Some(t) if t <= rel_a => from = i,
                Some(_) => break,
                None => {}
            }
        }
        if estimated {
            // The estimate is close, not exact: the segments around it are looked at for real.
            let lo = from.saturating_sub(1);
            let hi = (from + 2).min(segments.len());
            from = lo;
            for (i, (_, p)) in segments.iter().enumerate().take(hi).skip(lo) {
                let mut f = open_segment(req, s, p)?;
                match segment_first_ms_of(&mut f, &tracks, video)? {
                    Some(t) if t <= rel_a => from = i,
                    Some(_) => break,
                    None => {}
                }
            }
        }
        // The session-relative start: a video keyframe's decode time (exact, per track ticks) or ms.
        let mut base: Option<(u64, i64)> = None;
        let mut part_end_ms = 0i64;
        for (_, path) in &segments[from..] {
            let mut src = open_segment(req, s, path)?;
            let len = src.metadata()?.len();
            let runs = segment_runs(&mut src, len)?;
            if base.is_none() {
                base = find_base(&runs, &tracks, video, rel_a);
            }
            let Some((base_dt, base_ms)) = base else {
                continue;
            };
            let mut kept = Vec::new();
            let mut past_end = true;
            for run in &runs {
                let Some(t) = tracks.iter().find(|t| t.track_id == run.track_id) else {
                    continue;
                };
                let ts = t.timescale;
                let is_video = Some(run.track_id) == video;
                let mut dts = Vec::with_capacity(run.samples.len());
                let mut dt = run.decode_time.unwrap_or(0);
                for smp in &run.samples {
                    dts.push(dt);
                    dt = dt.saturating_add(smp.duration as u64);
                }
                let keep = |i: usize| {
                    let t_ms = ms_of(dts[i], ts);
                    (if is_video {
                        dts[i] >= base_dt
                    } else {
                        t_ms >= base_ms
                    }) && t_ms < rel_b
                };
                if dts.iter().any(|&d| ms_of(d, ts) < rel_b) {
                    past_end = false;
                }
                let range = (0..dts.len()).position(keep).map(|i0| {
                    let n = (i0..dts.len()).take_while(|&i| keep(i)).count();
                    (i0, i0 + n)
                });
                // Video ends where no frame left out would be shown before one kept (B-frames decode
                // after the frame they precede): else the cut would skip pictures at its end.
                let range = range.and_then(|(i0, mut i1)| {
                    if is_video {
                        let pts = |i: usize| dts[i] as i128 + run.samples[i].cto as i128;
                        while i1 > i0 {
                            let max = (i0..i1).map(pts).max().unwrap_or(i128::MIN);
                            if (i1..dts.len()).any(|i| pts(i) < max) {
                                i1 -= 1;
                            } else {
                                break;
                            }
                        }
                    }
                    (i1 > i0).then_some((i0, i1, dts[i0]))
                });
                let bytes_before: u64 = range.map_or(0, |(i0, _, _)| {
                    run.samples[..i0].iter().map(|s| s.size as u64).sum()
                });
                if let Some((_, i1, _)) = range {
                    let last = i1 - 1;
                    let end = dts[last].saturating_add(run.samples[last].duration as u64);
                    part_end_ms = part_end_ms.max(ms_of(end, ts) - base_ms);
                }
                if let Some((i0, i1, dt0)) = range {
                    let samples = run.samples[i0..i1].to_vec();
                    let bytes = samples.iter().map(|s| s.size as u64).sum();
                    let shift = if Some(run.track_id) == video {
                        base_dt
                    } else {
                        ticks_of(base_ms, ts)
                    };
                    kept.push(Kept {
                        track_id: run.track_id,
                        decode_time: dt0.saturating_sub(shift) + ticks_of(out_base_ms, ts),
                        samples,
                        src_offset: run.offset + bytes_before,
                        bytes,
                    });
                }
            }
            if !kept.is_empty() {
                first_ms.get_or_insert(s.start_ms + base_ms);
                frag_len += write_fragment(&mut frag, seq, &kept, &mut src, &mut copy_buf)?;
                seq = seq.wrapping_add(1);
            }
            if past_end {
                break;
            }
        }
        out_base_ms += part_end_ms;
        if s.media_end_ms().is_none_or(|e| e >= end_ms) {
            break;
        }
    }
    let (Some((_, tracks)), Some(first_ms)) = (first, first_ms) else {
        return Err(CutError::Empty);
    };
    frag.flush()?;
    let mut frag = frag.into_inner().map_err(|e| e.into_error())?;
    if req.fragmented {
        return Ok(CutOutput {
            file: frag,
            len: frag_len,
            first_ms,
            duration_ms: out_base_ms.max(0) as u64,
        });
    }
    let mut merger = Merger::new(tracks);
    frag.seek(SeekFrom::Start(0))?;
    let scan = merger.add_segment(&mut frag, frag_len)?;
    if scan.samples == 0 {
        return Err(CutError::Empty);
    }
    let mut out = BufWriter::with_capacity(1 << 20, scratch_file(&req.data_dir)?);
    let len = merger.write(&mut out, |_| frag.try_clone())?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    Ok(CutOutput {
        file,
        len,
        first_ms,
        duration_ms: merger.duration_ms(),
    })
}

/// Where the cut starts in a session's first segment: the last video keyframe at or before `rel_a`
/// (or the first keyframe when the segment starts later), as (decode time in video ticks, ms); without
/// video, `rel_a` itself.
fn find_base(
    runs: &[crate::mux::mp4::SegmentRun],
    tracks: &[TrackInit],
    video: Option<u32>,
    rel_a: i64,
) -> Option<(u64, i64)> {
    let Some(v) = video else {
        return Some((0, rel_a));
    };
    let ts = tracks.iter().find(|t| t.track_id == v)?.timescale;
    let mut best: Option<(u64, i64)> = None;
    for run in runs.iter().filter(|r| r.track_id == v) {
        let mut dt = run.decode_time.unwrap_or(0);
        for s in &run.samples {
            let t = ms_of(dt, ts);
            if s.is_sync() {
                if t <= rel_a || best.is_none() {
                    best = Some((dt, t));
                }
                if t > rel_a {
                    return best;
                }
            }
            dt = dt.saturating_add(s.duration as u64);
        }
    }
    best
}

// ---------------------------------------------------------------------------------------------
// The cutter thread.

/// Wakes the event loop when a cut is done.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

struct Job {
    token: usize,
    id: u64,
    req: CutRequest,
}

/// A finished job: the connection it was for, its id, and the cut.
pub struct Done {
    pub token: usize,
    pub id: u64,
    pub result: Result<CutOutput, CutError>,
}

/// The cutter thread: jobs in through a bounded queue (`submit` never blocks), results out through
/// `poll` after a wake-up.
pub struct CutWorker {
    tx: SyncSender<Job>,
    done: Receiver<Done>,
}

impl CutWorker {
    pub fn start(wake: Wake) -> io::Result<CutWorker> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (done_tx, done) = mpsc::channel();
        thread::Builder::new()
            .name("playback-cutter".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let result = cut(&job.req);
                    if done_tx
                        .send(Done {
                            token: job.token,
                            id: job.id,
                            result,
                        })
                        .is_err()
                    {
                        return;
                    }
                    wake();
                }
            })?;
        Ok(CutWorker { tx, done })
    }

    /// Queues a cut for connection `token`; false when the queue is full (answer 503).
    pub fn submit(&self, token: usize, id: u64, req: CutRequest) -> bool {
        match self.tx.try_send(Job { token, id, req }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// A finished cut, if any.
    pub fn poll(&self) -> Option<Done> {
        self.done.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::fmp4::{
        init_segment, media_segment, Run, VideoConfig, SAMPLE_NON_SYNC, SAMPLE_SYNC,
    };
    use bytes::Bytes;

    /// A session of 10 segments of 25 frames at 25 fps, keyframes every 25 frames... and one mid-way.
    fn session(root: &Path, id: &str, start_ms: i64) -> Session {
        let dir = root.join("mp4/live/cam").join(id).join(MERGE_DIR);
        fs::create_dir_all(&dir).unwrap();
        let v = VideoConfig {
            avcc: Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
            width: 16,
            height: 16,
        };
        fs::write(dir.join("init.mp4"), init_segment(Some(&v), None)).unwrap();
        for seq in 1..=10u32 {
            let samples: Vec<Sample> = (0..50)
                .map(|i| Sample {
                    duration: 3600,
                    size: 10,
                    flags: if i % 25 == 0 {
                        SAMPLE_SYNC
                    } else {
                        SAMPLE_NON_SYNC
                    },
                    cto: 0,
                })
                .collect();
            let data = (0..50)
                .map(|i| Bytes::from(vec![(seq * 50 + i) as u8; 10]))
                .collect();
            let run = Run {
                track_id: 1,
                timescale: 90_000,
                decode_time: (seq as u64 - 1) * 50 * 3600,
                data,
                samples,
            };
            fs::write(
                dir.join(format!("segment_{seq}.m4s")),
                media_segment(seq, &[&run]),
            )
            .unwrap();
        }
        Session {
            id: id.into(),
            start_ms,
            end_ms: Some(start_ms + 20_000),
            mp4: Some(format!("mp4/live/cam/{id}")),
            ..Session::default()
        }
    }

    fn request(
        root: &Path,
        sessions: Vec<Session>,
        start_ms: i64,
        dur: u64,
        fragmented: bool,
    ) -> CutRequest {
        CutRequest {
            remote: None,
            data_dir: root.to_path_buf(),
            sessions,
            start_ms,
            duration_ms: dur,
            fragmented,
        }
    }

    fn read_all(mut o: CutOutput) -> Vec<u8> {
        let mut v = Vec::new();
        o.file.seek(SeekFrom::Start(0)).unwrap();
        o.file.read_to_end(&mut v).unwrap();
        assert_eq!(v.len() as u64, o.len);
        v
    }

    #[test]
    fn cuts_from_the_keyframe_before_the_start_for_the_duration() {
        let root = crate::testutil::temp_dir("cut-one");
        let s = session(&root, "20260101_000000", 1_000_000);
        // 5.5 s in: the keyframe at 5 s; 3 s asked: 5.0 .. 8.5 s, 88 frames (the last starts at 8.48).
        let out = cut(&request(&root, vec![s.clone()], 1_005_500, 3000, true)).unwrap();
        assert_eq!(out.first_ms, 1_005_000);
        let bytes = read_all(out);
        let mut cursor = io::Cursor::new(&bytes);
        let runs = segment_runs(&mut cursor, bytes.len() as u64).unwrap();
        let n: usize = runs.iter().map(|r| r.samples.len()).sum();
        assert_eq!(n, 88);
        assert!(runs[0].samples[0].is_sync());
        assert_eq!(runs[0].decode_time, Some(0));
        // The first payload is frame 125 (segment 3, frame 25): byte value 3 * 50 + 25.
        assert_eq!(bytes[runs[0].offset as usize], (3 * 50 + 25) as u8);
        // The progressive form holds the same samples, moov first.
        let out = cut(&request(&root, vec![s], 1_005_500, 3000, false)).unwrap();
        assert!(
            (3500..=3600).contains(&out.duration_ms),
            "{}",
            out.duration_ms
        );
        let mp4 = read_all(out);
        let kinds: Vec<[u8; 4]> = crate::mux::bmff::boxes(&mp4)
            .map(|b| b.unwrap().0)
            .collect();
        assert_eq!(kinds, vec![*b"ftyp", *b"moov", *b"mdat"]);
        fs::remove_dir_all(&root).unwrap();
    }

    /// The bug the frame hashes found: cut by decode time, the end kept a P-frame whose B-frames (shown
    /// before it, decoded after it) were left out, so the cut skipped pictures at its end.
    #[test]
    fn the_end_never_keeps_a_frame_shown_after_one_left_out() {
        let root = crate::testutil::temp_dir("cut-bframes");
        let dir = root.join("mp4/live/cam/20260101_000000").join(MERGE_DIR);
        fs::create_dir_all(&dir).unwrap();
        let v = VideoConfig {
            avcc: Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
            width: 16,
            height: 16,
        };
        fs::write(dir.join("init.mp4"), init_segment(Some(&v), None)).unwrap();
        // Decode order I0 P3 B1 B2 P6 B4 B5 ...: (sync, composition offset in frames).
        let mut pattern = vec![(true, 1)];
        for _ in 0..8 {
            pattern.extend([(false, 3), (false, 0), (false, 0)]);
        }
        let samples: Vec<Sample> = pattern
            .iter()
            .map(|&(sync, cto)| Sample {
                duration: 3600,
                size: 10,
                flags: if sync { SAMPLE_SYNC } else { SAMPLE_NON_SYNC },
                cto: cto * 3600,
            })
            .collect();
        let run = Run {
            track_id: 1,
            timescale: 90_000,
            decode_time: 0,
            data: (0..samples.len())
                .map(|i| Bytes::from(vec![i as u8; 10]))
                .collect(),
            samples,
        };
        fs::write(dir.join("segment_1.m4s"), media_segment(1, &[&run])).unwrap();
        let s = Session {
            id: "20260101_000000".into(),
            start_ms: 1_000_000,
            end_ms: Some(1_001_000),
            duration_ms: 1000,
            mp4: Some("mp4/live/cam/20260101_000000".into()),
            ..Session::default()
        };
        // The end at 180 ms (decode times 0..160 ms in: I0 P3 B1 B2 P6): P6 is shown at 280 ms, after
        // B4 and B5 that are left out, so it goes too.
        let out = cut(&request(&root, vec![s], 1_000_000, 180, true)).unwrap();
        let bytes = read_all(out);
        let mut cursor = io::Cursor::new(&bytes);
        let runs = segment_runs(&mut cursor, bytes.len() as u64).unwrap();
        let kept: Vec<i32> = runs[0].samples.iter().map(|s| s.cto / 3600).collect();
        assert_eq!(kept, [1, 3, 0, 0]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn crosses_into_the_next_session_and_refuses_an_empty_range() {
        let root = crate::testutil::temp_dir("cut-two");
        let a = session(&root, "20260101_000000", 1_000_000);
        let b = session(&root, "20260101_000100", 1_060_000);
        // The last 2 s of a, then (after the gap) b from its start to the end asked, its end.
        let out = cut(&request(
            &root,
            vec![a.clone(), b.clone()],
            1_018_000,
            62_000,
            true,
        ))
        .unwrap();
        let bytes = read_all(out);
        let mut cursor = io::Cursor::new(&bytes);
        let runs = segment_runs(&mut cursor, bytes.len() as u64).unwrap();
        let n: usize = runs.iter().map(|r| r.samples.len()).sum();
        assert_eq!(n, 50 + 500);
        // b continues right after a on the output timeline.
        let b_first = runs
            .iter()
            .find(|r| bytes[r.offset as usize] == 50)
            .unwrap();
        assert_eq!(b_first.decode_time, Some(50 * 3600));
        assert!(matches!(
            cut(&request(&root, vec![a, b], 2_000_000, 1000, false)),
            Err(CutError::Empty)
        ));
        fs::remove_dir_all(&root).unwrap();
    }
}
