//! The FLV recorder: `flv/{app}/{stream}/YYYYMMDD_HHMMSS.flv` per session. Header flags from the
//! tracks present (after a short prelude), onMetaData rewritten with room for `duration` and
//! `filesize` (patched in place at the end), then every tag as it arrives, stamped with the
//! stream time (`Frame::time`, continuous across publisher clock jumps) counted from 0. Flushed to the file every second of media, so a killed process leaves a file
//! that is readable up to its last whole tag. Tag bytes come from `mux::flv`.
//!
//! An Opus stream is recorded with the audio bridge's AAC instead of the Opus
//! (`hub::bridge::PreferAac`): classic FLV readers (FFmpeg 5.1, VLC 3, Flash-era tools) read one
//! legacy audio track and no Opus; `onMetaData`'s `audiocodecid` says 10 (AAC) then. Without a
//! bridge (no AAC header within the bounded wait) the Opus is recorded as published.

use super::paths::{self, with_path};
use super::{Prelude, Sink};
use crate::amf::{amf0, Value};
use crate::hub::bridge::{AudioChoice, PreferAac};
use crate::media::{meta, Frame, StreamKey, Track};
use crate::mux::flv as flvmux;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Flush to the file after this much media time.
const FLUSH_MS: i64 = 1000;

pub struct FlvSink {
    dir: PathBuf,
    /// File name stem: the local publish start time.
    stem: String,
    key: String,
    prelude: Prelude,
    out: Option<FlvOut>,
    /// Set once the file exists.
    path: Option<PathBuf>,
    /// The audio bridge's AAC of an Opus stream instead of the Opus.
    audio: PreferAac,
    /// Reused: the frames `audio` passes on.
    passed: Vec<Frame>,
}

struct FlvOut {
    file: File,
    /// Whole tags not yet written. Our own buffer rather than a BufWriter, which would spill a
    /// tag header without its body when full: the file only ever grows by whole tags, so a
    /// SIGKILL or a full disk leaves it ending on a tag boundary, which FFmpeg reads cleanly.
    buf: Vec<u8>,
    /// Bytes of the file known to be on disk (always a tag boundary).
    on_disk: u64,
    /// A write failed: the file was cut back to `on_disk`; nothing more is written.
    failed: bool,
    path: PathBuf,
    /// The session's time 0 on the stream time.
    base: u64,
    written: u64,
    /// File offsets of the two 8-byte doubles patched at the end.
    duration_at: u64,
    filesize_at: u64,
    /// Per track: last time written and last step, to know where the media ends.
    audio_end: TrackEnd,
    video_end: TrackEnd,
    last_flush_t: i64,
    /// The audio is the bridge's AAC: mid-stream metadata says so too.
    aac: bool,
}

/// Buffered bytes that trigger a write (plus at most one tag past it).
const BUF_LEN: usize = 64 * 1024;

#[derive(Default, Clone, Copy)]
struct TrackEnd {
    last: Option<i64>,
    step: i64,
}

impl TrackEnd {
    fn update(&mut self, t: i64) {
        if let Some(l) = self.last {
            if t > l && t - l <= 1000 {
                self.step = t - l;
            }
        }
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
    }

    fn end(&self) -> i64 {
        self.last.map_or(0, |l| l + self.step)
    }
}

impl FlvSink {
    /// A recorder for one session into `dir` (created when the first tag is written).
    pub fn create(dir: &Path, key: &StreamKey, started: SystemTime) -> io::Result<FlvSink> {
        Ok(FlvSink {
            dir: dir.to_path_buf(),
            stem: paths::local_stamp(started),
            key: key.to_string(),
            prelude: Prelude::default(),
            out: None,
            path: None,
            audio: PreferAac::new(false),
            passed: Vec::new(),
        })
    }

    /// The recording's path once the file exists.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes the header, the metadata and the buffered frames.
    fn release(&mut self) -> io::Result<()> {
        let pre = self.prelude.take();
        let (file, path) = paths::create_unique_file(&self.dir, &self.stem, "flv")?;
        self.path = Some(path.clone());
        let header = flvmux::file_header(pre.has_audio, pre.has_video);
        // The publisher's metadata (the latest one sent before the media), if any.
        let meta = pre
            .frames
            .iter()
            .rev()
            .filter(|f| f.track == Track::Meta)
            .find_map(|f| metadata_props(&f.data));
        let aac = self.audio.choice() == AudioChoice::Aac;
        if aac {
            log::info!(
                "FLV recording of {}: Opus audio, recorded as the audio bridge's AAC",
                self.key
            );
        }
        let (body, duration_in_body, filesize_in_body) =
            metadata_body(meta.unwrap_or_default(), pre.has_audio, pre.has_video, aac);
        let mut head = Vec::with_capacity(header.len() + body.len() + 32);
        head.extend_from_slice(&header);
        head.extend_from_slice(&flvmux::tag_header(
            crate::media::frame::TAG_SCRIPT,
            body.len(),
            0,
        ));
        let body_at = head.len() as u64;
        head.extend_from_slice(&body);
        head.extend_from_slice(&flvmux::tag_trailer(body.len()));
        let mut buf = Vec::with_capacity(BUF_LEN + head.len());
        buf.extend_from_slice(&head);
        let mut out = FlvOut {
            file,
            buf,
            on_disk: 0,
            failed: false,
            path,
            base: pre.first_time,
            written: head.len() as u64,
            duration_at: body_at + duration_in_body as u64,
            filesize_at: body_at + filesize_in_body as u64,
            audio_end: TrackEnd::default(),
            video_end: TrackEnd::default(),
            last_flush_t: 0,
            aac,
        };
        // onMetaData went into the header tag; other script data (cue points...) stays in order.
        let other = |f: &&Frame| f.track != Track::Meta || metadata_props(&f.data).is_none();
        for f in pre.frames.iter().filter(other) {
            out.write(f)?;
        }
        let r = out.flush();
        self.out = Some(out);
        r
    }
}

impl FlvOut {
    fn write(&mut self, frame: &Frame) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        let (t, body) = match frame.track {
            Track::Meta => {
                // Mid-stream metadata: kept as a tag at the current time, as `onMetaData`.
                let t = self.audio_end.last.max(self.video_end.last).unwrap_or(0);
                let body = meta::on_metadata(&frame.data).unwrap_or_else(|| frame.data.clone());
                (t, if self.aac { says_aac(body) } else { body })
            }
            track => {
                // Stamped a little before the session's first frame (interleaving): at 0.
                let t = (frame.time.wrapping_sub(self.base) as i64).max(0);
                if track == Track::Audio {
                    self.audio_end.update(t);
                } else {
                    self.video_end.update(t);
                }
                (t, frame.data.clone())
            }
        };
        let header = flvmux::tag_header(frame.tag_type(), body.len(), t as u32);
        let trailer = flvmux::tag_trailer(body.len());
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(&body);
        self.buf.extend_from_slice(&trailer);
        self.written += (header.len() + body.len() + trailer.len()) as u64;
        if t - self.last_flush_t >= FLUSH_MS || self.buf.len() >= BUF_LEN {
            self.last_flush_t = t;
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered whole tags. On failure the file is cut back to the last whole tag
    /// (a short write before ENOSPC/EFBIG leaves part of one) and the recording stops.
    fn flush(&mut self) -> io::Result<()> {
        if self.failed || self.buf.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.on_disk += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                let _ = self.file.set_len(self.on_disk);
                Err(with_path(e, &self.path))
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.failed {
            // Already cut back to whole tags; patching would describe tags that are not there.
            return Ok(());
        }
        self.flush()?;
        let path = &self.path;
        let end_ms = self.audio_end.end().max(self.video_end.end());
        let f = &mut self.file;
        let patch = |f: &mut File, at: u64, v: f64| -> io::Result<()> {
            f.seek(SeekFrom::Start(at))?;
            f.write_all(&v.to_be_bytes())
        };
        patch(f, self.duration_at, end_ms as f64 / 1000.0)
            .and_then(|_| patch(f, self.filesize_at, self.written as f64))
            .and_then(|_| f.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| with_path(e, path))
    }
}

impl FlvSink {
    /// A frame as the file takes it (after `PreferAac`).
    fn take(&mut self, frame: &Frame) -> io::Result<()> {
        if let Some(out) = &mut self.out {
            return out.write(frame);
        }
        if self.prelude.push(frame) {
            self.release()?;
        }
        Ok(())
    }

    fn take_passed(&mut self) -> io::Result<()> {
        let mut passed = std::mem::take(&mut self.passed);
        let mut r = Ok(());
        for f in passed.drain(..) {
            if r.is_ok() {
                r = self.take(&f);
            }
        }
        self.passed = passed;
        r
    }
}

impl Sink for FlvSink {
    fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.audio.push(frame, &mut self.passed);
        self.take_passed()
    }

    fn takes_bridged(&self) -> bool {
        true
    }

    fn finish(&mut self) -> io::Result<()> {
        self.audio.finish(&mut self.passed);
        self.take_passed()?;
        if self.out.is_none() && !self.prelude.is_empty() {
            self.release()?;
        }
        match &mut self.out {
            Some(out) => out.finish(),
            // No media at all: no file.
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("FLV recording of {} -> {}", self.key, p.display()),
            None => format!("FLV recording of {} -> {}", self.key, self.dir.display()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

/// The properties of an `onMetaData` script body (`media::meta` says what that is).
fn metadata_props(data: &bytes::Bytes) -> Option<Vec<(String, Value)>> {
    meta::properties(&meta::on_metadata(data)?)
}

/// An `onMetaData` body: `duration` and `filesize` first (placeholders, patched at the end), then
/// the publisher's properties. Returns the body and the offsets of the two doubles in it.
fn metadata_body(
    props: Vec<(String, Value)>,
    has_audio: bool,
    has_video: bool,
    aac: bool,
) -> (Vec<u8>, usize, usize) {
    let mut all: Vec<(String, Value)> = vec![
        ("duration".into(), Value::Number(0.0)),
        ("filesize".into(), Value::Number(0.0)),
    ];
    let have = |name: &str| props.iter().any(|(k, _)| k == name);
    if !have("hasAudio") {
        all.push(("hasAudio".into(), Value::Boolean(has_audio)));
    }
    if !have("hasVideo") {
        all.push(("hasVideo".into(), Value::Boolean(has_video)));
    }
    all.extend(
        props
            .into_iter()
            .filter(|(k, _)| k != "duration" && k != "filesize")
            .map(|(k, v)| match k.as_str() {
                "audiocodecid" if aac => (k, Value::Number(AAC_CODEC_ID)),
                _ => (k, v),
            }),
    );
    let mut out = Vec::new();
    amf0::encode(&Value::string("onMetaData"), &mut out);
    let array_at = out.len();
    amf0::encode(&Value::EcmaArray(all), &mut out);
    // marker (1) + count (4) + name length (2) + "duration" (8) + number marker (1).
    let duration_at = array_at + 1 + 4 + 2 + 8 + 1;
    let filesize_at = duration_at + 8 + 2 + 8 + 1;
    (out, duration_at, filesize_at)
}

/// FLV's sound format number for AAC, as `onMetaData` names it.
const AAC_CODEC_ID: f64 = 10.0;

/// An `onMetaData` body whose `audiocodecid` (the publisher's Opus) says AAC; unchanged when it
/// has none or cannot be read.
fn says_aac(body: bytes::Bytes) -> bytes::Bytes {
    let Some(props) = meta::properties(&body) else {
        return body;
    };
    if !props.iter().any(|(k, _)| k == "audiocodecid") {
        return body;
    }
    let props = props
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "audiocodecid" => (k, Value::Number(AAC_CODEC_ID)),
            _ => (k, v),
        })
        .collect();
    let mut out = Vec::new();
    amf0::encode(&Value::string("onMetaData"), &mut out);
    amf0::encode(&Value::EcmaArray(props), &mut out);
    out.into()
}

/// Called once at origin start, before any publish: every `flv/{app}/{stream}/*.flv` a killed
/// process left with the `duration` and `filesize` placeholders still 0 is cut back to its last
/// whole tag and patched as a clean stop would. One log line per file repaired.
pub fn repair(data_dir: &Path) -> Vec<String> {
    let mut log = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    for app in dirs(&data_dir.join("flv")) {
        for stream in dirs(&app) {
            for file in dirs(&stream) {
                if file.extension().is_none_or(|e| e != "flv") || !file.is_file() {
                    continue;
                }
                match repair_file(&file) {
                    Ok(Some((ms, size))) => log.push(format!(
                        "FLV crash repair: {} duration {:.3} s, {size} bytes",
                        file.display(),
                        ms as f64 / 1000.0
                    )),
                    Ok(None) => {}
                    Err(e) => log.push(format!("FLV crash repair of {}: {e}", file.display())),
                }
            }
        }
    }
    log
}

/// Where our `onMetaData` keeps a number named `name`: the offset of its 8 bytes in `body`.
fn number_slot(body: &[u8], name: &[u8]) -> Option<usize> {
    let mut key = (name.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(name);
    key.push(0); // number marker
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    (at.checked_add(8)? <= body.len()).then_some(at)
}

/// Repairs one file; `Some((duration_ms, filesize))` when it patched it, `None` when the file is
/// not ours or was closed cleanly.
fn repair_file(path: &Path) -> io::Result<Option<(u64, u64)>> {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 9 + 4 + 11];
    if len < head.len() as u64 {
        return Ok(None);
    }
    f.read_exact(&mut head)?;
    let header_len = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) as u64;
    if &head[..3] != b"FLV" || header_len != 9 || head[13] != TAG_SCRIPT_TYPE {
        return Ok(None);
    }
    let meta_len = u32::from_be_bytes([0, head[14], head[15], head[16]]) as u64;
    // Our own onMetaData is small; a large one is not ours.
    if meta_len > 64 * 1024 || 24 + meta_len > len {
        return Ok(None);
    }
    let mut body = vec![0u8; meta_len as usize];
    f.read_exact(&mut body)?;
    let (Some(d), Some(s)) = (
        number_slot(&body, b"duration"),
        number_slot(&body, b"filesize"),
    ) else {
        return Ok(None);
    };
    let value = |at: usize| f64::from_be_bytes(body[at..at + 8].try_into().unwrap_or([0; 8]));
    if value(d) != 0.0 || value(s) != 0.0 {
        return Ok(None);
    }
    // Walk the tags; the end is the last whole one (tag + PreviousTagSize).
    let mut pos: u64 = 13;
    let mut ends = [TrackEnd::default(), TrackEnd::default()];
    let mut tag = [0u8; 11];
    while pos + 11 <= len {
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut tag)?;
        let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as u64;
        let Some(end) = pos.checked_add(11 + size + 4).filter(|e| *e <= len) else {
            break;
        };
        let ts = u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]) as i64;
        match tag[0] {
            8 => ends[0].update(ts),
            9 => ends[1].update(ts),
            _ => {}
        }
        pos = end;
    }
    if pos < len {
        f.set_len(pos)?;
    }
    let end_ms = ends[0].end().max(ends[1].end()).max(0) as u64;
    f.seek(SeekFrom::Start(24 + d as u64))?;
    f.write_all(&(end_ms as f64 / 1000.0).to_be_bytes())?;
    f.seek(SeekFrom::Start(24 + s as u64))?;
    f.write_all(&(pos as f64).to_be_bytes())?;
    f.sync_all()?;
    Ok(Some((end_ms, pos)))
}

const TAG_SCRIPT_TYPE: u8 = 18;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::temp_dir;
    use bytes::Bytes;

    fn meta_frame(with_sdf: bool) -> Frame {
        let mut b = Vec::new();
        if with_sdf {
            amf0::encode(&Value::string("@setDataFrame"), &mut b);
        }
        amf0::encode(&Value::string("onMetaData"), &mut b);
        amf0::encode(
            &Value::EcmaArray(vec![
                ("duration".into(), Value::Number(0.0)),
                ("width".into(), Value::Number(320.0)),
                ("encoder".into(), Value::string("Lavf")),
                (
                    "nested".into(),
                    Value::object([("a", Value::StrictArray(vec![Value::Null]))]),
                ),
            ]),
            &mut b,
        );
        Frame::parse(18, 0, Bytes::from(b)).unwrap()
    }

    #[test]
    fn metadata_is_rewritten_with_placeholders() {
        let props = metadata_props(&meta_frame(true).data).unwrap();
        assert_eq!(props.len(), 4);
        let (body, d, f) = metadata_body(props, true, false, false);
        assert_eq!(&body[d - 9..d - 1], b"duration");
        assert_eq!(&body[f - 9..f - 1], b"filesize");
        let values = amf0::decode_all(&body).unwrap();
        assert_eq!(values.len(), 2);
        assert_eq!(values[0], Value::string("onMetaData"));
        let v = values[1].clone();
        assert_eq!(v.get("width"), Some(&Value::Number(320.0)));
        assert_eq!(v.get("hasVideo"), Some(&Value::Boolean(false)));
        // One duration only: the publisher's was replaced.
        let Value::EcmaArray(p) = v else { panic!() };
        assert_eq!(p.iter().filter(|(k, _)| k == "duration").count(), 1);
    }

    #[test]
    fn bad_metadata_is_ignored() {
        let mut data = meta_frame(false).data.to_vec();
        data.truncate(data.len() - 5);
        assert!(metadata_props(&Bytes::from(data)).is_none());
        assert!(metadata_props(&Bytes::from_static(&[2, 0, 3, b'a', b'b', b'c'])).is_none());
        // Deep nesting is refused, not a stack overflow.
        let mut deep = vec![2, 0, 10];
        deep.extend_from_slice(b"onMetaData");
        deep.extend(std::iter::repeat_n(3u8, 10_000).flat_map(|m| [m, 0, 1, b'x']));
        assert!(metadata_props(&Bytes::from(deep)).is_none());
    }

    fn video(dts: u32, config: bool, key: bool) -> Frame {
        let first = if key { 0x17 } else { 0x27 };
        let b = if config { 0 } else { 1 };
        Frame::parse(9, dts, Bytes::from(vec![first, b, 0, 0, 0, 1, 2, 3])).unwrap()
    }

    fn audio(dts: u32, config: bool) -> Frame {
        let b = if config { 0 } else { 1 };
        Frame::parse(8, dts, Bytes::from(vec![0xaf, b, 0x12, 0x10])).unwrap()
    }

    /// (type, timestamp, body) of every tag, checking the back pointers.
    fn tags(file: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 13;
        while pos + 11 <= file.len() {
            let len = u32::from_be_bytes([0, file[pos + 1], file[pos + 2], file[pos + 3]]) as usize;
            let ts =
                u32::from_be_bytes([file[pos + 7], file[pos + 4], file[pos + 5], file[pos + 6]]);
            let body = file[pos + 11..pos + 11 + len].to_vec();
            let back = &file[pos + 11 + len..pos + 15 + len];
            assert_eq!(
                u32::from_be_bytes(back.try_into().unwrap()) as usize,
                len + 11
            );
            out.push((file[pos], ts, body));
            pos += 15 + len;
        }
        assert_eq!(pos, file.len());
        out
    }

    #[test]
    fn file_layout_flags_metadata_and_patch() {
        let dir = temp_dir("flv-layout");
        let key = StreamKey::new("live", "cam").unwrap();
        let started = paths::from_unix_ms(1_795_482_509_000);
        let mut sink = FlvSink::create(&dir, &key, started).unwrap();
        sink.frame(&meta_frame(true)).unwrap();
        sink.frame(&video(1000, true, true)).unwrap();
        assert!(sink.path().is_none(), "waits for the audio header");
        sink.frame(&video(1000, false, true)).unwrap();
        sink.frame(&audio(1000, true)).unwrap();
        let path = sink.path().unwrap().to_path_buf();
        assert!(path.starts_with(&dir));
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("{}.flv", paths::local_stamp(started))
        );
        for i in 1..=50u32 {
            sink.frame(&video(1000 + i * 40, false, i % 25 == 0))
                .unwrap();
            sink.frame(&audio(1000 + i * 40, false)).unwrap();
        }
        // Flushed every second of media: the file already holds tags before the end.
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
        sink.finish().unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(&file[..5], b"FLV\x01\x05");
        let tags = tags(&file);
        assert_eq!(tags.len(), 1 + 3 + 100);
        assert_eq!(tags[0].0, 18);
        let props = metadata_props(&Bytes::from(tags[0].2.clone())).unwrap();
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("duration"), Some(Value::Number(2.04)));
        assert_eq!(get("filesize"), Some(Value::Number(file.len() as f64)));
        assert_eq!(get("encoder"), Some(Value::string("Lavf")));
        // The timeline starts at 0.
        assert_eq!(tags[1].1, 0);
        assert_eq!(tags.last().unwrap().1, 2000);
        // A second session in the same second gets its own file.
        let mut again = FlvSink::create(&dir, &key, started).unwrap();
        again.frame(&audio(0, false)).unwrap();
        again.finish().unwrap();
        let p2 = again.path().unwrap();
        assert!(p2.to_str().unwrap().ends_with("_1.flv"));
        assert_eq!(std::fs::read(p2).unwrap()[4], 4, "audio only");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn opus(time: u32, config: bool) -> Frame {
        let data: &'static [u8] = if config {
            b"\x90OpusOpusHead"
        } else {
            b"\x91Opus\xfc\x00"
        };
        Frame::parse(8, time, Bytes::from_static(data)).unwrap()
    }

    fn bridged(time: u32, config: bool) -> Frame {
        let mut f = audio(time, config);
        f.bridged = true;
        f
    }

    /// Publisher metadata naming Opus (FFmpeg 9 writes the FourCC as a number).
    fn opus_meta() -> Frame {
        let mut b = Vec::new();
        amf0::encode(&Value::string("onMetaData"), &mut b);
        let opus = u32::from_be_bytes(*b"Opus") as f64;
        amf0::encode(
            &Value::EcmaArray(vec![
                ("audiocodecid".into(), Value::Number(opus)),
                ("videocodecid".into(), Value::Number(7.0)),
            ]),
            &mut b,
        );
        Frame::parse(18, 1000, Bytes::from(b)).unwrap()
    }

    /// An Opus stream whose bridge's AAC arrives 300 ms behind: video and Opus from 1000 ms,
    /// then the AAC header and the AAC of the same times. Fed as the pool feeds a recorder.
    fn opus_stream(sink: &mut FlvSink, with_bridge: bool) {
        sink.frame(&opus_meta()).unwrap();
        sink.frame(&video(1000, true, true)).unwrap();
        sink.frame(&opus(1000, true)).unwrap();
        let mut aac_sent = 0;
        for i in 0..100u32 {
            let t = 1000 + i * 20;
            if i % 2 == 0 {
                sink.frame(&video(t, false, i % 50 == 0)).unwrap();
            }
            sink.frame(&opus(t, false)).unwrap();
            if with_bridge && t >= 1300 {
                if aac_sent == 0 {
                    sink.frame(&bridged(1000, true)).unwrap();
                }
                // 1024 samples at 48 kHz: 21.33 ms, timed from the Opus.
                while 1000 + aac_sent * 64 / 3 <= t - 300 {
                    sink.frame(&bridged(1000 + aac_sent * 64 / 3, false))
                        .unwrap();
                    aac_sent += 1;
                }
            }
        }
    }

    #[test]
    fn an_opus_stream_is_recorded_with_the_bridges_aac_instead() {
        let dir = temp_dir("flv-bridged");
        let key = StreamKey::new("live", "cam").unwrap();
        let mut sink = FlvSink::create(&dir, &key, SystemTime::now()).unwrap();
        assert!(sink.takes_bridged());
        opus_stream(&mut sink, true);
        // Metadata sent again mid-stream says AAC too.
        sink.frame(&opus_meta()).unwrap();
        sink.finish().unwrap();
        let file = std::fs::read(sink.path().unwrap()).unwrap();
        assert_eq!(file[4], 5, "audio and video");
        let tags = tags(&file);
        let metas: Vec<&(u8, u32, Vec<u8>)> = tags.iter().filter(|t| t.0 == 18).collect();
        assert_eq!(metas.len(), 2);
        for m in metas {
            let props = metadata_props(&Bytes::from(m.2.clone())).unwrap();
            let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            assert_eq!(get("audiocodecid"), Some(Value::Number(10.0)));
            assert_eq!(get("videocodecid"), Some(Value::Number(7.0)));
        }
        let audio: Vec<&(u8, u32, Vec<u8>)> = tags.iter().filter(|t| t.0 == 8).collect();
        assert!(audio.iter().all(|t| t.2[0] == 0xaf), "AAC only");
        assert_eq!(audio[0].2[1], 0, "the AAC sequence header first");
        // The AAC up to 2680 ms (made up to 300 ms behind the 2980 ms of Opus), each at its own
        // time from the session's start.
        let times: Vec<u32> = audio[1..].iter().map(|t| t.1).collect();
        let expect: Vec<u32> = (0..79).map(|n| n * 64 / 3).collect();
        assert_eq!(times, expect);
        let video: Vec<u32> = tags.iter().filter(|t| t.0 == 9).map(|t| t.1).collect();
        assert_eq!(video.len(), 51);
        assert_eq!(&video[..3], [0, 0, 40]);
        assert_eq!(*video.last().unwrap(), 1960);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_opus_stream_without_a_bridge_is_recorded_with_its_opus() {
        let dir = temp_dir("flv-unbridged");
        let key = StreamKey::new("live", "cam").unwrap();
        let mut sink = FlvSink::create(&dir, &key, SystemTime::now()).unwrap();
        opus_stream(&mut sink, false);
        // Within the bounded wait nothing is written; at the end, everything as published.
        assert!(sink.path().is_none());
        sink.finish().unwrap();
        let tags = tags(&std::fs::read(sink.path().unwrap()).unwrap());
        let props = metadata_props(&Bytes::from(tags[0].2.clone())).unwrap();
        assert!(props
            .iter()
            .any(|(k, v)| k == "audiocodecid" && *v != Value::Number(10.0)));
        let audio: Vec<&(u8, u32, Vec<u8>)> = tags.iter().filter(|t| t.0 == 8).collect();
        assert_eq!(audio.len(), 101);
        assert!(
            audio.iter().all(|t| t.2[0] >> 4 == 9),
            "Opus (Enhanced RTMP) only"
        );
        assert_eq!(tags.iter().filter(|t| t.0 == 9).count(), 51);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue 14: after `kill -9` and restart the FLV kept `duration=0` and `filesize=0`.
    #[test]
    fn killed_flv_is_repaired_with_duration_and_filesize() {
        let data = temp_dir("flv-crash");
        let key = StreamKey::new("live", "cam").unwrap();
        let dir = data.join("flv").join("live").join("cam");
        let mut sink = FlvSink::create(&dir, &key, SystemTime::now()).unwrap();
        sink.frame(&meta_frame(false)).unwrap();
        sink.frame(&video(0, true, true)).unwrap();
        sink.frame(&audio(0, true)).unwrap();
        for i in 0..=75u32 {
            sink.frame(&video(i * 40, false, i % 25 == 0)).unwrap();
            sink.frame(&audio(i * 40, false)).unwrap();
        }
        sink.flush().unwrap();
        let path = sink.path().unwrap().to_path_buf();
        // kill -9: no finish, and a tag cut in the middle of its body.
        std::mem::forget(sink);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(&[9, 0, 0, 40, 0, 0x0b, 0xb8, 0, 0, 0, 0, 0x27, 1]);
        std::fs::write(&path, &torn).unwrap();
        let before = metadata_props(&Bytes::from(tags(&whole)[0].2.clone())).unwrap();
        assert!(before.contains(&("duration".into(), Value::Number(0.0))));

        let log = repair(&data);
        assert_eq!(log.len(), 1, "{log:?}");
        let file = std::fs::read(&path).unwrap();
        let t = tags(&file); // also checks that the torn tail is gone
        let last = t.last().unwrap().1;
        let props = metadata_props(&Bytes::from(t[0].2.clone())).unwrap();
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("filesize"), Some(Value::Number(file.len() as f64)));
        assert_eq!(
            get("duration"),
            Some(Value::Number((last + 40) as f64 / 1000.0)),
            "last tag at {last} ms plus one frame"
        );
        // A second start finds nothing to do.
        assert!(repair(&data).is_empty());
        std::fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn late_track_is_recorded_and_empty_session_makes_no_file() {
        let dir = temp_dir("flv-late");
        let key = StreamKey::new("live", "late").unwrap();
        let mut sink = FlvSink::create(&dir, &key, SystemTime::now()).unwrap();
        sink.finish().unwrap();
        assert!(sink.path().is_none());
        let mut sink = FlvSink::create(&dir, &key, SystemTime::now()).unwrap();
        sink.frame(&video(0, true, true)).unwrap();
        for i in 0..=30 {
            sink.frame(&video(i * 40, false, i == 0)).unwrap();
        }
        let path = sink.path().unwrap().to_path_buf();
        sink.frame(&audio(1300, true)).unwrap();
        sink.frame(&audio(1323, false)).unwrap();
        sink.finish().unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(file[4], 1, "video only when the header was written");
        let tags = tags(&file);
        assert_eq!(tags.iter().filter(|t| t.0 == 8).count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn killed_mid_stream_leaves_a_readable_file() {
        use crate::record::testutil::{decode_errors, have_tool, make_flv, read_flv, AV_ARGS};
        if !have_tool("ffmpeg") {
            return;
        }
        let dir = temp_dir("flv-kill");
        let input = make_flv(&dir, "in.flv", AV_ARGS);
        let frames = read_flv(&std::fs::read(&input).unwrap());
        let key = StreamKey::new("live", "kill").unwrap();
        let mut sink = FlvSink::create(&dir.join("out"), &key, SystemTime::now()).unwrap();
        for f in &frames[..frames.len() / 2] {
            sink.frame(f).unwrap();
        }
        // What is on disk now is what a SIGKILL would leave (the sink is never finished).
        let snapshot = dir.join("snapshot.flv");
        std::fs::copy(sink.path().unwrap(), &snapshot).unwrap();
        let len = std::fs::metadata(&snapshot).unwrap().len();
        assert!(len > 10_000, "flushed every second of media: {len} bytes");
        assert_eq!(decode_errors(&snapshot), "");
        drop(sink);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
