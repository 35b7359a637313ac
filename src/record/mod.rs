//! Recordings: the worker pool that takes each stream's frames off the event loop (`pool`), the
//! `Sink` trait every recorder implements, the list of recorders to run per session, crash repair
//! at start, and the sinks themselves (`flv`, `hls`; fMP4 plugs in the same way). The event loop
//! only ever calls `Recorders` (to open a recording) and the hub feeds each open recording as
//! a reader (`RecorderReader`); every file is written on a worker thread.

pub mod cut;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod index;
pub mod merge;
pub mod paths;
pub mod pool;
pub mod retention;
pub mod upload;

pub use pool::{RecorderReader, Recorders, RecordingId};

use crate::media::{Frame, StreamKey, Track};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub data_dir: PathBuf,
    pub flv: bool,
    pub hls: bool,
    pub mp4: bool,
    /// Target HLS segment length (cut at the first keyframe at or after it).
    pub hls_fragment_ms: u32,
    /// Segments in the live playlist; 0 keeps all.
    pub hls_window: usize,
    pub mp4_fragment_ms: u32,
    /// Worker threads (at least 1 is used).
    pub workers: usize,
    /// Frames queued per recording before its publisher is held back (no longer read) until
    /// the worker catches up; twice that and frames are dropped (counted).
    pub queue_len: usize,
    /// A held-back recording whose worker makes no progress this long (a stuck disk) stops.
    pub stall_ms: u64,
    /// `--record-keep-days`, `--record-max-size`, `--record-min-free` (`retention`).
    pub retention: retention::Bounds,
    /// `--upload`: recordings copied to an S3-compatible bucket (`upload`).
    pub upload: Option<Box<upload::UploadConfig>>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            data_dir: PathBuf::from("."),
            flv: true,
            hls: true,
            mp4: true,
            hls_fragment_ms: 4000,
            hls_window: 0,
            mp4_fragment_ms: 4000,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue_len: 4096,
            stall_ms: 10_000,
            retention: retention::Bounds::default(),
            upload: None,
        }
    }
}

/// One recorder kind for one stream session; runs on a worker thread. An error from `frame`
/// stops only this sink (the worker logs it with `describe`, then calls `finish` once).
pub trait Sink: Send {
    fn frame(&mut self, frame: &Frame) -> io::Result<()>;
    /// Takes the audio bridge's AAC of an Opus stream (`Frame::bridged`); the sinks that do
    /// not get only the frames as published.
    fn takes_bridged(&self) -> bool {
        false
    }
    /// Finalises the files (metadata patched, playlist ended, ...). Called exactly once.
    fn finish(&mut self) -> io::Result<()>;
    /// What and where, for logs: e.g. `FLV live/cam -> data/flv/live/cam/20260101_120000.flv`.
    fn describe(&self) -> String;
    /// Pushes buffered bytes to the file; the worker calls it when about a second has passed
    /// without one (a stalled publisher), so that a crash loses at most that second.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a sink constructor gets to know about the session it records.
#[derive(Clone, Copy, Debug)]
pub struct SessionInfo<'a> {
    pub config: &'a RecordConfig,
    pub key: &'a StreamKey,
    /// Wall-clock time the publish began.
    pub started: SystemTime,
    /// The uploader (`--upload`), told of each segment as it closes.
    pub upload: Option<&'a upload::Uploader>,
}

impl SessionInfo<'_> {
    /// `{data_dir}/{kind}/{app}/{stream}`.
    pub fn stream_dir(&self, kind: &str) -> PathBuf {
        paths::stream_dir(&self.config.data_dir, kind, self.key)
    }
}

type MakeSink = dyn Fn(&SessionInfo) -> io::Result<Box<dyn Sink>> + Send + Sync;

/// A named sink constructor; the pool runs every maker for every new session.
pub struct SinkMaker {
    pub name: &'static str,
    make: Box<MakeSink>,
}

impl SinkMaker {
    pub fn new(
        name: &'static str,
        make: impl Fn(&SessionInfo) -> io::Result<Box<dyn Sink>> + Send + Sync + 'static,
    ) -> SinkMaker {
        SinkMaker {
            name,
            make: Box::new(make),
        }
    }

    pub fn make(&self, session: &SessionInfo) -> io::Result<Box<dyn Sink>> {
        (self.make)(session)
    }
}

/// The recorders switched on in `config`. Each recorder kind adds its one line here.
pub fn sink_makers(config: &RecordConfig) -> Vec<SinkMaker> {
    let mut makers = Vec::new();
    if config.flv {
        makers.push(SinkMaker::new("flv", |s| {
            Ok(Box::new(flv::FlvSink::create(
                &s.stream_dir("flv"),
                s.key,
                s.started,
            )?))
        }));
    }
    if config.hls {
        makers.push(SinkMaker::new("hls", |s| {
            let mut sink = hls::HlsSink::create(
                &s.stream_dir("hls"),
                s.key,
                s.started,
                hls::HlsOptions {
                    fragment_ms: s.config.hls_fragment_ms,
                    window: s.config.hls_window,
                },
            )?;
            sink.upload = s.upload.cloned();
            Ok(Box::new(sink))
        }));
    }
    if config.mp4 {
        makers.push(SinkMaker::new("mp4", |s| {
            let mut sink =
                fmp4::Fmp4Sink::create(&s.stream_dir("mp4"), s.config.mp4_fragment_ms, s.started)?;
            sink.upload = s.upload.cloned();
            Ok(Box::new(sink))
        }));
    }
    makers
}

/// Tracks a recorder could not hold (once per recorder, stream session and track), for
/// `rtmpd_recorder_skipped_tracks_total`.
static SKIPPED_TRACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn note_skipped_track() {
    SKIPPED_TRACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

pub fn skipped_tracks() -> u64 {
    SKIPPED_TRACKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Crash repair before any recording starts: every recorder kind cleans up after a previous
/// process that was killed (each kind adds its one line here). Logs what it repaired.
pub fn repair(data_dir: &Path) {
    if let Err(e) = hls::repair(data_dir) {
        log::error!("HLS crash repair under {}: {e}", data_dir.display());
    }
    for line in fmp4::repair(data_dir)
        .into_iter()
        .chain(flv::repair(data_dir))
    {
        log::info!("{line}");
    }
}

/// Holds the first frames of a session until the tracks are known: both sequence headers seen,
/// or about a second of media after the first media frame, or a size cap. Recorders that must
/// declare their tracks up front (FLV header flags, the TS program) start from what it saw.
#[derive(Debug, Default)]
pub struct Prelude {
    frames: Vec<Frame>,
    bytes: usize,
    /// An audio or video frame (sequence headers included) arrived.
    any_media: bool,
    /// Stream times (`Frame::time`) of the first media frame that is not a sequence header
    /// (headers carry no media time) and of the earliest such frame (interleaving goes back).
    times: Option<(u64, u64)>,
    audio: bool,
    video: bool,
    audio_config: bool,
    video_config: bool,
}

/// What the prelude saw when it was released.
#[derive(Debug)]
pub struct PreludeOut {
    pub frames: Vec<Frame>,
    pub has_audio: bool,
    pub has_video: bool,
    /// The earliest media stream time (`Frame::time`): the session's time 0.
    pub first_time: u64,
}

impl Prelude {
    /// Media time to wait for the second track after the first media frame.
    pub const WAIT_MS: u64 = 1000;
    pub const MAX_BYTES: usize = 16 << 20;
    pub const MAX_FRAMES: usize = 2048;

    /// Buffers `frame`; true when the prelude should be released now.
    pub fn push(&mut self, frame: &Frame) -> bool {
        self.bytes += frame.data.len();
        self.frames.push(frame.clone());
        let mut waited = 0;
        match frame.track {
            Track::Meta => {}
            track => {
                self.any_media = true;
                if !frame.config {
                    let (first, min) = self.times.get_or_insert((frame.time, frame.time));
                    *min = (*min).min(frame.time);
                    waited = frame.time.saturating_sub(*first);
                }
                if track == Track::Audio {
                    self.audio = true;
                    self.audio_config |= frame.config;
                } else {
                    self.video = true;
                    self.video_config |= frame.config;
                }
            }
        }
        (self.audio_config && self.video_config)
            || waited >= Self::WAIT_MS
            || self.bytes >= Self::MAX_BYTES
            || self.frames.len() >= Self::MAX_FRAMES
    }

    /// True when no media frame has arrived yet.
    pub fn is_empty(&self) -> bool {
        !self.any_media
    }

    pub fn take(&mut self) -> PreludeOut {
        let out = PreludeOut {
            // Headers only: their time (the stream clock's) is as good as any.
            first_time: self.times.map_or_else(
                || self.frames.iter().map(|f| f.time).min().unwrap_or(0),
                |(_, min)| min,
            ),
            frames: std::mem::take(&mut self.frames),
            has_audio: self.audio,
            has_video: self.video,
        };
        *self = Prelude::default();
        out
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::media::Frame;
    use bytes::Bytes;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    pub use crate::testutil::temp_dir;

    /// True when `tool` (ffmpeg, ffprobe) runs. When it does not, the test is skipped with a
    /// message, unless RTMPD_REQUIRE_TOOLS=1 makes that a failure.
    pub fn have_tool(tool: &str) -> bool {
        let ok = Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            if std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("{tool} not found and RTMPD_REQUIRE_TOOLS=1");
            }
            println!("skipped: {tool} not found");
        }
        ok
    }

    /// Runs ffmpeg with `args` (after `-v error -y`), panicking on failure.
    pub fn ffmpeg(args: &[&str]) {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-nostdin"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ffmpeg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A test FLV made by ffmpeg: `inputs` are lavfi sources and codec options.
    pub fn make_flv(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-f", "flv", path.to_str().unwrap()]);
        ffmpeg(&all);
        path
    }

    /// The standard fixture: 6 s of 320x240 H.264 with B-frames (GOP 2 s) and AAC.
    pub const AV_ARGS: &[&str] = &[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-t",
        "6",
        "-c:v",
        "libx264",
        "-bf",
        "2",
        "-g",
        "50",
        "-c:a",
        "aac",
    ];

    /// Every tag of an FLV file as a `Frame` (a private reader: tests do not depend on the
    /// shared demuxer).
    pub fn read_flv(file: &[u8]) -> Vec<Frame> {
        assert_eq!(&file[..3], b"FLV");
        let mut pos = u32::from_be_bytes(file[5..9].try_into().unwrap()) as usize + 4;
        let mut frames = Vec::new();
        while pos + 11 <= file.len() {
            let ty = file[pos];
            let len = u32::from_be_bytes([0, file[pos + 1], file[pos + 2], file[pos + 3]]) as usize;
            let ts =
                u32::from_be_bytes([file[pos + 7], file[pos + 4], file[pos + 5], file[pos + 6]]);
            let Some(body) = file.get(pos + 11..pos + 11 + len) else {
                break;
            };
            if let Some(f) = Frame::parse(ty, ts, Bytes::copy_from_slice(body)) {
                frames.push(f);
            }
            pos += 15 + len;
        }
        frames
    }

    /// Checks a finished playlist and its segments: header, EXTINF <= TARGETDURATION, contiguous
    /// numbering, ENDLIST, and each segment starting with PAT, PMT and (with video) a keyframe.
    pub fn check_playlist(path: &Path, video: bool) -> usize {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"), "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        let value = |tag: &str| -> u64 {
            let line = text.lines().find_map(|l| l.strip_prefix(tag)).unwrap();
            line.parse().unwrap()
        };
        let target = value("#EXT-X-TARGETDURATION:") as f64;
        let mut number = value("#EXT-X-MEDIA-SEQUENCE:");
        let lines: Vec<&str> = text.lines().collect();
        let mut count = 0;
        for (i, l) in lines.iter().enumerate() {
            if let Some(d) = l.strip_prefix("#EXTINF:") {
                let d: f64 = d.trim_end_matches(',').parse().unwrap();
                assert!(d > 0.0 && d <= target, "EXTINF {d} > {target}\n{text}");
                assert_eq!(lines[i + 1], format!("segment_{number}.ts"), "{text}");
                let seg = std::fs::read(path.with_file_name(lines[i + 1])).unwrap();
                check_segment(&seg, video);
                number += 1;
                count += 1;
            }
        }
        assert!(count > 0);
        count
    }

    fn pid(p: &[u8]) -> u16 {
        ((p[1] as u16 & 0x1f) << 8) | p[2] as u16
    }

    /// PAT, then PMT, then (with video) a first video PES that is a random access point holding
    /// an IDR slice.
    pub fn check_segment(ts: &[u8], video: bool) {
        assert!(!ts.is_empty() && ts.len().is_multiple_of(188));
        let packets: Vec<&[u8]> = ts.chunks(188).collect();
        assert!(packets.iter().all(|p| p[0] == 0x47));
        assert_eq!(pid(packets[0]), 0);
        assert_eq!(pid(packets[1]), 0x1000);
        if !video {
            return;
        }
        let first_es = packets[2..]
            .iter()
            .find(|p| pid(p) == 0x100 || pid(p) == 0x101)
            .unwrap();
        assert_eq!(pid(first_es), 0x100, "segment starts with video");
        let mut pes = Vec::new();
        for (i, p) in packets.iter().filter(|p| pid(p) == 0x100).enumerate() {
            let pusi = p[1] & 0x40 != 0;
            if i == 0 {
                assert!(pusi);
                assert!(p[3] & 0x20 != 0 && p[5] & 0x40 != 0, "random access flag");
            } else if pusi {
                break;
            }
            let start = if p[3] & 0x20 != 0 {
                5 + p[4] as usize
            } else {
                4
            };
            pes.extend_from_slice(&p[start..]);
        }
        assert!(
            pes.windows(4).any(|w| w == [0, 0, 1, 0x65]),
            "IDR in first PES"
        );
    }

    /// stderr of `ffmpeg -v error -i input -f null -` (empty when the file decodes cleanly).
    pub fn decode_errors(input: &Path) -> String {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(input)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        let mut s = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            s.push_str(&format!("\nexit status {}", out.status));
        }
        s
    }

    /// `ffprobe -count_frames` (or packets) of the first stream of `kind` ("v" or "a").
    pub fn probe_count(input: &Path, kind: &str, what: &str) -> u64 {
        let (flag, entry) = match what {
            "frames" => ("-count_frames", "stream=nb_read_frames"),
            _ => ("-count_packets", "stream=nb_read_packets"),
        };
        let out = Command::new("ffprobe")
            .args(["-v", "error", flag, "-select_streams", &format!("{kind}:0")])
            .args(["-show_entries", entry, "-of", "csv=p=0"])
            .arg(input)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // HLS inputs list the stream once per program too: the first number is the stream's.
        text.lines()
            .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(dts: u32, config: bool) -> Frame {
        let b = if config { 0 } else { 1 };
        Frame::parse(9, dts, Bytes::from(vec![0x17, b, 0, 0, 0])).unwrap()
    }

    fn audio(dts: u32, config: bool) -> Frame {
        let b = if config { 0 } else { 1 };
        Frame::parse(8, dts, Bytes::from(vec![0xaf, b, 0x12])).unwrap()
    }

    #[test]
    fn prelude_releases_when_both_headers_arrived() {
        let mut p = Prelude::default();
        assert!(!p.push(&video(0, true)));
        assert!(!p.push(&video(0, false)));
        assert!(p.push(&audio(0, true)));
        let out = p.take();
        assert!(out.has_audio && out.has_video);
        assert_eq!(out.frames.len(), 3);
        assert!(p.is_empty());
    }

    #[test]
    fn prelude_waits_a_second_for_a_missing_track() {
        let mut p = Prelude::default();
        assert!(!p.push(&audio(5000, true)));
        for t in (5000..5990).step_by(23) {
            assert!(!p.push(&audio(t, false)));
        }
        assert!(p.push(&audio(6000, false)));
        let out = p.take();
        assert!(out.has_audio && !out.has_video);
        assert_eq!(out.first_time, 5000);
    }

    #[test]
    fn prelude_first_time_is_the_earliest() {
        let mut p = Prelude::default();
        p.push(&video(100, false));
        p.push(&audio(80, false));
        assert_eq!(p.take().first_time, 80);
        // Across the 32-bit wrap, once normalised; sequence headers carry no media time.
        let mut n = crate::media::Normaliser::new();
        let mut p = Prelude::default();
        for mut f in [video(0, true), video(5, false), audio(u32::MAX - 5, false)] {
            n.normalise(&mut f);
            p.push(&f);
        }
        assert_eq!(p.take().first_time, crate::media::time::START - 11);
    }
}
