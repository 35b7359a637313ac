//! The fMP4 recorder sink: waits for the sequence headers, slices frames into segments (via
//! `mux::fmp4::Fragmenter`), writes the muxed (`output_merge/`) and separate (`output_separate/`)
//! forms with their playlists and `meta.json`, rotates the previous session away at start, builds
//! `stream_full.mp4` at the end, and repairs sessions a crash left unmerged. Runs on a recorder
//! worker, never on the event loop.

use super::merge::merge_dir;
use super::Sink;
use crate::media::aac::AudioSpecificConfig;
use crate::media::avc::AvcConfig;
use crate::media::{Codec, Frame, Track};
use crate::mux::fmp4::{self, AudioConfig, Fragment, Fragmenter, VideoConfig};
use bytes::Bytes;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const MERGE_DIR: &str = "output_merge";
pub const SEPARATE_DIR: &str = "output_separate";
pub const FULL_NAME: &str = "stream_full.mp4";

/// How long (in media time) to wait for the second sequence header after the first media frame.
const CONFIG_WAIT_MS: i64 = 1000;
/// Frames buffered while waiting for sequence headers, at most.
const MAX_BUFFERED_FRAMES: usize = 2000;
const MAX_BUFFERED_BYTES: usize = 32 << 20;

struct VideoTrack {
    config: VideoConfig,
    codec: String,
}

struct AudioTrack {
    config: AudioConfig,
    codec: String,
}

/// One closed segment as the playlists list it.
#[derive(Clone, Copy)]
struct SegInfo {
    sequence: u32,
    secs: f64,
    bytes: u64,
}

enum State {
    /// Sequence headers not all known yet: media frames wait here (bounded).
    Waiting {
        frames: Vec<Frame>,
        bytes: usize,
        first_dts: Option<u32>,
    },
    Running(Fragmenter),
    Done,
}

pub struct Fmp4Sink {
    merge_dir: PathBuf,
    separate_dir: PathBuf,
    fragment_ms: u32,
    started: String,
    state: State,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    muxed: Vec<SegInfo>,
    video_segs: Vec<SegInfo>,
    audio_segs: Vec<SegInfo>,
    config_changed: bool,
    merged: bool,
}

impl Fmp4Sink {
    /// Starts a session in `stream_dir` (`data_dir/mp4/{app}/{stream}`): the previous session's
    /// folders move into `stream_dir/{its start}/` first, then fresh folders are created.
    pub fn create(
        stream_dir: &Path,
        fragment_ms: u32,
        started: SystemTime,
    ) -> io::Result<Fmp4Sink> {
        fs::create_dir_all(stream_dir)?;
        rotate(stream_dir)?;
        let merge_dir = stream_dir.join(MERGE_DIR);
        let separate_dir = stream_dir.join(SEPARATE_DIR);
        fs::create_dir_all(&merge_dir)?;
        fs::create_dir_all(&separate_dir)?;
        let sink = Fmp4Sink {
            merge_dir,
            separate_dir,
            fragment_ms: fragment_ms.max(100),
            started: stamp(started),
            state: State::Waiting {
                frames: Vec::new(),
                bytes: 0,
                first_dts: None,
            },
            video: None,
            audio: None,
            muxed: Vec::new(),
            video_segs: Vec::new(),
            audio_segs: Vec::new(),
            config_changed: false,
            merged: false,
        };
        // The session start is recorded at once, so a rotation after a crash names it right.
        sink.write_meta(false)?;
        Ok(sink)
    }

    /// Codec payload of a recordable media frame (AVC NAL units, raw AAC), `None` for anything
    /// else: other codecs, end-of-sequence markers, empty frames.
    fn media_payload(frame: &Frame) -> Option<Bytes> {
        let skip = match (frame.codec, frame.data.get(1)) {
            (Codec::Avc, Some(1)) => 5,
            (Codec::Aac, Some(1)) => 2,
            _ => return None,
        };
        let data = frame.data.slice(skip.min(frame.data.len())..);
        (!data.is_empty()).then_some(data)
    }

    fn take_config(&mut self, frame: &Frame) {
        let payload = Bytes::copy_from_slice(frame.payload());
        match frame.codec {
            Codec::Avc => {
                let Some(avc) = AvcConfig::parse(&payload) else {
                    return;
                };
                if let Some(v) = &self.video {
                    if v.config.avcc != payload {
                        self.config_changed = true;
                    }
                    return;
                }
                self.video = Some(VideoTrack {
                    codec: avc.codec_string(),
                    config: VideoConfig {
                        avcc: payload,
                        width: avc.width,
                        height: avc.height,
                    },
                });
            }
            Codec::Aac => {
                let Some(asc) = AudioSpecificConfig::parse(&payload) else {
                    return;
                };
                if let Some(a) = &self.audio {
                    if a.config.asc != payload {
                        self.config_changed = true;
                    }
                    return;
                }
                self.audio = Some(AudioTrack {
                    codec: asc.codec_string(),
                    config: AudioConfig {
                        asc: payload,
                        sample_rate: asc.sample_rate.max(1),
                        channels: if asc.channels == 0 { 2 } else { asc.channels },
                    },
                });
            }
            _ => {}
        }
    }

    /// Leaves `Waiting`: writes the init segments and replays the buffered frames.
    fn start(&mut self, frames: Vec<Frame>) -> io::Result<()> {
        let video = self.video.as_ref().map(|v| &v.config);
        let audio = self.audio.as_ref().map(|a| &a.config);
        write_atomic(
            &self.merge_dir.join("init.mp4"),
            &fmp4::init_segment(video, audio),
        )?;
        if let Some(v) = video {
            write_atomic(
                &self.separate_dir.join("video_init.mp4"),
                &fmp4::init_segment(Some(v), None),
            )?;
        }
        if let Some(a) = audio {
            write_atomic(
                &self.separate_dir.join("audio_init.mp4"),
                &fmp4::init_segment(None, Some(a)),
            )?;
        }
        self.state = State::Running(Fragmenter::new(
            self.fragment_ms,
            video.is_some(),
            audio.map(|a| a.sample_rate),
        ));
        self.write_playlists(false)?;
        for f in frames {
            self.push(&f)?;
        }
        Ok(())
    }

    fn push(&mut self, frame: &Frame) -> io::Result<()> {
        let State::Running(frag) = &mut self.state else {
            return Ok(());
        };
        let Some(data) = Self::media_payload(frame) else {
            return Ok(());
        };
        if let Some(closed) = frag.push(frame.track, frame.dts, frame.cts, frame.key, data) {
            self.write_fragment(&closed)?;
        }
        Ok(())
    }

    fn write_fragment(&mut self, f: &Fragment) -> io::Result<()> {
        let runs = f.runs();
        if runs.is_empty() {
            return Ok(());
        }
        let name = format!("segment_{}.m4s", f.sequence);
        write_atomic(
            &self.merge_dir.join(name),
            &fmp4::media_segment(f.sequence, &runs),
        )?;
        self.muxed.push(SegInfo {
            sequence: f.sequence,
            secs: f.duration_secs(),
            bytes: f.bytes(),
        });
        if let Some(v) = &f.video {
            let name = format!("video_{}.m4s", f.sequence);
            write_atomic(
                &self.separate_dir.join(name),
                &fmp4::media_segment(f.sequence, &[v]),
            )?;
            self.video_segs.push(SegInfo {
                sequence: f.sequence,
                secs: v.duration_secs(),
                bytes: v.bytes(),
            });
        }
        if let Some(a) = &f.audio {
            let name = format!("audio_{}.m4s", f.sequence);
            write_atomic(
                &self.separate_dir.join(name),
                &fmp4::media_segment(f.sequence, &[a]),
            )?;
            self.audio_segs.push(SegInfo {
                sequence: f.sequence,
                secs: a.duration_secs(),
                bytes: a.bytes(),
            });
        }
        self.write_playlists(false)?;
        self.write_meta(false)
    }

    fn target_secs(&self) -> u32 {
        let longest = self
            .muxed
            .iter()
            .chain(&self.video_segs)
            .chain(&self.audio_segs)
            .map(|s| s.secs)
            .fold(0.0, f64::max);
        (longest.ceil() as u32)
            .max(self.fragment_ms.div_ceil(1000))
            .max(1)
    }

    fn write_playlists(&self, ended: bool) -> io::Result<()> {
        let target = self.target_secs();
        write_atomic(
            &self.merge_dir.join("index.m3u8"),
            media_playlist("init.mp4", "segment", &self.muxed, target, ended).as_bytes(),
        )?;
        if self.video.is_some() {
            write_atomic(
                &self.separate_dir.join("video.m3u8"),
                media_playlist("video_init.mp4", "video", &self.video_segs, target, ended)
                    .as_bytes(),
            )?;
        }
        if self.audio.is_some() {
            write_atomic(
                &self.separate_dir.join("audio.m3u8"),
                media_playlist("audio_init.mp4", "audio", &self.audio_segs, target, ended)
                    .as_bytes(),
            )?;
        }
        write_atomic(
            &self.separate_dir.join("master.m3u8"),
            self.master().as_bytes(),
        )
    }

    fn master(&self) -> String {
        let peak = |segs: &[SegInfo]| {
            segs.iter()
                .filter(|s| s.secs > 0.0)
                .map(|s| (s.bytes as f64 * 8.0 / s.secs) as u64)
                .max()
        };
        // Container overhead is small; 10% on top of the payload peak covers it.
        let bandwidth = peak(&self.muxed).map_or(1_000_000, |b| b + b / 10 + 1000);
        let codecs: Vec<&str> = self
            .video
            .iter()
            .map(|v| v.codec.as_str())
            .chain(self.audio.iter().map(|a| a.codec.as_str()))
            .collect();
        let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let mut inf = format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"",
            bandwidth,
            codecs.join(",")
        );
        if let Some(v) = &self.video {
            if v.config.width > 0 && v.config.height > 0 {
                inf.push_str(&format!(
                    ",RESOLUTION={}x{}",
                    v.config.width, v.config.height
                ));
            }
        }
        match (&self.video, &self.audio) {
            (Some(_), Some(_)) => {
                m.push_str("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio.m3u8\"\n");
                m.push_str(&inf);
                m.push_str(",AUDIO=\"audio\"\nvideo.m3u8\n");
            }
            (Some(_), None) => {
                m.push_str(&inf);
                m.push_str("\nvideo.m3u8\n");
            }
            (None, Some(_)) => {
                m.push_str(&inf);
                m.push_str("\naudio.m3u8\n");
            }
            (None, None) => {}
        }
        m
    }

    fn write_meta(&self, complete: bool) -> io::Result<()> {
        let mut common = Json::new();
        common.str("started", &self.started);
        let tracks: Vec<&str> = self
            .video
            .iter()
            .map(|_| "video")
            .chain(self.audio.iter().map(|_| "audio"))
            .collect();
        common.raw(
            "tracks",
            &format!(
                "[{}]",
                tracks
                    .iter()
                    .map(|t| format!("\"{t}\""))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        );
        let codecs: Vec<&str> = self
            .video
            .iter()
            .map(|v| v.codec.as_str())
            .chain(self.audio.iter().map(|a| a.codec.as_str()))
            .collect();
        common.str("codecs", &codecs.join(","));
        if let Some(v) = &self.video {
            common.str("video_codec", &v.codec);
            common.num("width", v.config.width as u64);
            common.num("height", v.config.height as u64);
        }
        if let Some(a) = &self.audio {
            common.str("audio_codec", &a.codec);
            common.num("sample_rate", a.config.sample_rate as u64);
            common.num("channels", a.config.channels as u64);
        }
        common.raw("complete", if complete { "true" } else { "false" });

        let ms =
            |segs: &[SegInfo]| (segs.iter().map(|s| s.secs).sum::<f64>() * 1000.0).round() as u64;
        let mut merge = Json::from(&common);
        merge.num("segments", self.muxed.len() as u64);
        merge.num("duration_ms", ms(&self.muxed));
        merge.str("init", "init.mp4");
        merge.str("playlist", "index.m3u8");
        if self.merged {
            merge.str("full", FULL_NAME);
        }
        write_atomic(&self.merge_dir.join("meta.json"), merge.finish().as_bytes())?;

        let mut sep = Json::from(&common);
        sep.num("segments", self.muxed.len() as u64);
        sep.num("video_segments", self.video_segs.len() as u64);
        sep.num("audio_segments", self.audio_segs.len() as u64);
        sep.num(
            "duration_ms",
            ms(&self.video_segs).max(ms(&self.audio_segs)),
        );
        if self.video.is_some() {
            sep.str("video_init", "video_init.mp4");
            sep.str("video_playlist", "video.m3u8");
        }
        if self.audio.is_some() {
            sep.str("audio_init", "audio_init.mp4");
            sep.str("audio_playlist", "audio.m3u8");
        }
        sep.str("playlist", "master.m3u8");
        write_atomic(
            &self.separate_dir.join("meta.json"),
            sep.finish().as_bytes(),
        )
    }

    fn waiting_should_start(
        &self,
        frames: usize,
        bytes: usize,
        first: Option<u32>,
        dts: u32,
    ) -> bool {
        if self.video.is_some() && self.audio.is_some() {
            return true;
        }
        let waited = first.is_some_and(|f| dts.wrapping_sub(f) as i32 as i64 >= CONFIG_WAIT_MS);
        let full = frames >= MAX_BUFFERED_FRAMES || bytes >= MAX_BUFFERED_BYTES;
        (waited || full) && (self.video.is_some() || self.audio.is_some())
    }
}

impl Sink for Fmp4Sink {
    fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        if frame.track == Track::Meta {
            return Ok(());
        }
        if frame.config {
            self.take_config(frame);
        }
        match &mut self.state {
            State::Done => Ok(()),
            State::Running(_) => self.push(frame),
            State::Waiting {
                frames,
                bytes,
                first_dts,
            } => {
                if !frame.config && Self::media_payload(frame).is_some() {
                    first_dts.get_or_insert(frame.dts);
                    *bytes += frame.data.len();
                    frames.push(frame.clone());
                }
                let (n, b, first) = (frames.len(), *bytes, *first_dts);
                if self.waiting_should_start(n, b, first, frame.dts) {
                    let State::Waiting { frames, .. } =
                        std::mem::replace(&mut self.state, State::Done)
                    else {
                        return Ok(());
                    };
                    return self.start(frames);
                }
                if let State::Waiting {
                    frames,
                    bytes,
                    first_dts,
                } = &mut self.state
                {
                    // No sequence header at all: keep memory bounded by starting over.
                    if frames.len() >= MAX_BUFFERED_FRAMES || *bytes >= MAX_BUFFERED_BYTES {
                        frames.clear();
                        *bytes = 0;
                        *first_dts = None;
                    }
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => return Ok(()),
            State::Waiting { frames, .. } => {
                if self.video.is_none() && self.audio.is_none() {
                    return self.write_meta(true);
                }
                self.start(frames)?;
                return self.finish();
            }
            State::Running(mut frag) => {
                if let Some(last) = frag.finish() {
                    self.write_fragment(&last)?;
                }
            }
        }
        self.write_playlists(true)?;
        if !self.muxed.is_empty() {
            merge_dir(&self.merge_dir)?;
            self.merged = true;
        }
        self.write_meta(true)
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "fmp4 {} ({} segments)",
            self.merge_dir.parent().unwrap_or(&self.merge_dir).display(),
            self.muxed.len()
        );
        if self.config_changed {
            s.push_str(", sequence header changed mid-stream (kept the first)");
        }
        s
    }
}

/// A media playlist with `EXT-X-MAP` for `{prefix}_N.m4s` segments.
fn media_playlist(map: &str, prefix: &str, segs: &[SegInfo], target: u32, ended: bool) -> String {
    let mut p = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{map}\"\n",
        segs.first().map_or(1, |s| s.sequence)
    );
    for s in segs {
        p.push_str(&format!(
            "#EXTINF:{:.3},\n{prefix}_{}.m4s\n",
            s.secs, s.sequence
        ));
    }
    if ended {
        p.push_str("#EXT-X-ENDLIST\n");
    }
    p
}

/// Writes `bytes` to `path` whole or not at all: a temporary name, then a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path)
}

/// A flat JSON object built by hand (keys and values are ours: names, codecs, numbers).
#[derive(Clone)]
struct Json {
    fields: Vec<String>,
}

impl Json {
    fn new() -> Json {
        Json { fields: Vec::new() }
    }
    fn from(other: &Json) -> Json {
        other.clone()
    }
    fn str(&mut self, k: &str, v: &str) {
        let escaped: String = v
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                c if (c as u32) < 0x20 => vec![' '],
                c => vec![c],
            })
            .collect();
        self.fields.push(format!("\"{k}\":\"{escaped}\""));
    }
    fn num(&mut self, k: &str, v: u64) {
        self.fields.push(format!("\"{k}\":{v}"));
    }
    fn raw(&mut self, k: &str, v: &str) {
        self.fields.push(format!("\"{k}\":{v}"));
    }
    fn finish(self) -> String {
        format!("{{\n  {}\n}}\n", self.fields.join(",\n  "))
    }
}

// ---------------------------------------------------------------------------------------------
// Rotation and repair.

/// The `"started"` stamp of a folder's `meta.json`, if present and well-formed.
fn meta_started(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join("meta.json")).ok()?;
    let at = text.find("\"started\":\"")? + "\"started\":\"".len();
    let stamp: String = text[at..].chars().take_while(|c| *c != '"').collect();
    let ok = stamp.len() == 15
        && stamp
            .char_indices()
            .all(|(i, c)| if i == 8 { c == '_' } else { c.is_ascii_digit() });
    ok.then_some(stamp)
}

fn has_files(dir: &Path) -> bool {
    fs::read_dir(dir).map_or(false, |mut d| d.next().is_some())
}

/// Moves the previous session's folders into `stream_dir/{YYYYMMDD_HHMMSS}[_N]/`. Empty folders
/// are simply removed. Returns the folder they went to.
fn rotate(stream_dir: &Path) -> io::Result<Option<PathBuf>> {
    let merge = stream_dir.join(MERGE_DIR);
    let separate = stream_dir.join(SEPARATE_DIR);
    let present: Vec<&PathBuf> = [&merge, &separate]
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    if present.is_empty() {
        return Ok(None);
    }
    if !present.iter().any(|d| has_files(d)) {
        for d in present {
            let _ = fs::remove_dir(d);
        }
        return Ok(None);
    }
    let name = meta_started(&merge)
        .or_else(|| meta_started(&separate))
        .or_else(|| {
            present
                .iter()
                .find_map(|d| fs::metadata(d).and_then(|m| m.modified()).ok())
                .map(stamp)
        })
        .unwrap_or_else(|| stamp(SystemTime::now()));
    let mut target = stream_dir.join(&name);
    let mut n = 1;
    while target.exists() {
        target = stream_dir.join(format!("{name}_{n}"));
        n += 1;
    }
    fs::create_dir_all(&target)?;
    for d in present {
        if let Some(leaf) = d.file_name() {
            fs::rename(d, target.join(leaf))?;
        }
    }
    Ok(Some(target))
}

/// Is this `output_merge/` a session a crash left unmerged (segments, but no full file)?
fn unmerged(dir: &Path) -> bool {
    if dir.join(FULL_NAME).exists() || !dir.join("init.mp4").is_file() {
        return false;
    }
    fs::read_dir(dir).map_or(false, |d| {
        d.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("segment_") && n.ends_with(".m4s")
        })
    })
}

/// Adds `#EXT-X-ENDLIST` to a playlist a crash left open.
fn close_playlist(path: &Path) -> io::Result<()> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if text.contains("#EXT-X-ENDLIST") {
        return Ok(());
    }
    write_atomic(path, format!("{text}#EXT-X-ENDLIST\n").as_bytes())
}

/// Called once at origin start, before any publish: builds `stream_full.mp4` for every session
/// under `data_dir/mp4/` (current or rotated) that a crash left unmerged, closes its playlists,
/// and returns one log line per session handled.
pub fn repair(data_dir: &Path) -> Vec<String> {
    let mut log = Vec::new();
    let mut candidates = Vec::new();
    let subdirs = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for app in subdirs(&data_dir.join("mp4")) {
        for stream in subdirs(&app) {
            candidates.push(stream.join(MERGE_DIR));
            for session in subdirs(&stream) {
                candidates.push(session.join(MERGE_DIR));
            }
        }
    }
    for dir in candidates.into_iter().filter(|d| unmerged(d)) {
        let _ = close_playlist(&dir.join("index.m3u8"));
        if let Some(parent) = dir.parent() {
            for name in ["audio.m3u8", "video.m3u8"] {
                let _ = close_playlist(&parent.join(SEPARATE_DIR).join(name));
            }
        }
        match merge_dir(&dir) {
            Ok(r) => log.push(format!(
                "mp4: rebuilt {} from {} segments ({} samples, {} ms{})",
                r.output.display(),
                r.segments,
                r.samples,
                r.duration_ms,
                if r.dropped_samples > 0 {
                    format!(
                        ", {} samples of damaged segments dropped",
                        r.dropped_samples
                    )
                } else {
                    String::new()
                }
            )),
            Err(e) => log.push(format!("mp4: could not rebuild {}: {e}", dir.display())),
        }
    }
    log
}

// ---------------------------------------------------------------------------------------------
// Local time.

/// `YYYYMMDD_HHMMSS` in local time (UTC where the platform offers no local time).
pub fn stamp(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    if let Some(s) = local_stamp(secs) {
        return s;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}_{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(unix)]
fn local_stamp(secs: i64) -> Option<String> {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which we own; a null return means failure.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(format!(
        "{:04}{:02}{:02}_{:02}{:02}{:02}",
        tm.tm_year as i64 + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    ))
}

#[cfg(not(unix))]
fn local_stamp(_secs: i64) -> Option<String> {
    None
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}
