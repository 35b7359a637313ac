//! Recordings (SPEC section 5, issues 3 and 4) checked on the real binary: FFmpeg publishes a
//! fixture, then FFmpeg/ffprobe and our own parsers read what landed under `--data-dir`: the FLV
//! file, the HLS playlist and TS segments, both fMP4 forms, the merged `stream_full.mp4`. Also
//! audio-only and video-only streams, re-publish archives, SIGKILL + restart repair and merge,
//! `rtmpd merge` byte-identity, and a full disk (file-size limit) that stops a recorder while an
//! HTTP-FLV viewer keeps the whole stream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::*;

/// A publisher of a 10 s fixture in real time, with slack for a loaded 2-core machine.
const PUBLISH: Duration = Duration::from_secs(40);
/// How long the workers may take to finalise (merge included) after the publisher left.
const FINALISE: Duration = Duration::from_secs(20);
/// Any FFmpeg/ffprobe run on a 10 s file.
const TOOL: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers: tools, files, parsers.

/// A data dir the test owns (the server helper removes only the one it made itself), so that a
/// second server can start on the files the first one left. Removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> DataDir {
        DataDir(TempDir::new("rec").keep())
    }
    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool to its end (at most `TOOL`): (success, stdout, stderr).
fn run(cmd: Command) -> (bool, String, String) {
    let mut p = Proc::spawn(cmd);
    let status = p.wait_or_panic(TOOL);
    (status.success(), p.stdout(), p.stderr())
}

/// `ffmpeg -v error -i INPUT -f null -` (with `pre` before `-i`): must exit 0 and print nothing.
fn assert_decodes(input: &Path, pre: &[&str], what: &str) {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(pre)
        .arg("-i")
        .arg(input)
        .args(["-f", "null", "-"]);
    let (ok, _, err) = run(c);
    assert!(
        ok && err.trim().is_empty(),
        "{what}: ffmpeg decode of {} (ok {ok}) printed:\n{err}",
        input.display()
    );
}

/// `ffprobe -v error -show_format -show_streams INPUT`: must exit 0 and print no errors. Returns
/// stdout.
fn assert_probes(input: &Path, pre: &[&str], what: &str) -> String {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-v", "error"])
        .args(pre)
        .args(["-show_format", "-show_streams"])
        .arg(input);
    let (ok, out, err) = run(c);
    assert!(
        ok && err.trim().is_empty(),
        "{what}: ffprobe {} (ok {ok}) printed:\n{err}",
        input.display()
    );
    out
}

/// Decoded frames of stream `sel` (`v` or `a`) by `ffprobe -count_frames`.
fn decoded_frames(input: &Path, pre: &[&str], sel: &str) -> u64 {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-v", "error"])
        .args(pre)
        .args(["-count_frames", "-select_streams", sel])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(input);
    let (ok, out, err) = run(c);
    assert!(ok, "ffprobe -count_frames {}: {err}", input.display());
    // HLS input lists the stream under its program too: the first figure is the stream's.
    out.lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse::<u64>().ok())
        .unwrap_or(0)
}

/// Presentation times (seconds) of every packet of stream `sel`, in file order.
fn packet_pts(input: &Path, pre: &[&str], sel: &str) -> Vec<f64> {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-v", "error"])
        .args(pre)
        .args(["-select_streams", sel])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(input);
    let (ok, out, err) = run(c);
    assert!(ok, "ffprobe packets {}: {err}", input.display());
    out.lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .collect()
}

/// Media span of a track: last minus first presentation time plus one frame (the median step).
fn span(pts: &[f64]) -> (f64, f64, f64) {
    let mut s = pts.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(s.len() > 2, "too few packets to measure a duration");
    let mut steps: Vec<f64> = s.windows(2).map(|w| w[1] - w[0]).collect();
    steps.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let step = steps[steps.len() / 2];
    (s[s.len() - 1] - s[0] + step, s[0], step)
}

fn data(server_dir: &Path, kind: &str, app: &str, name: &str) -> PathBuf {
    server_dir.join(kind).join(app).join(name)
}

/// The files directly in `dir` whose name ends with `ext`, sorted.
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Sub-folders of `dir` named like a session start (`YYYYMMDD_HHMMSS`).
fn session_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir() && is_session_name(&p.file_name().unwrap().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn is_session_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 15
        && b[8] == b'_'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..15].iter().all(u8::is_ascii_digit)
}

/// A media playlist as read from disk.
#[derive(Debug)]
struct Playlist {
    target: f64,
    media_sequence: u64,
    /// (EXTINF seconds, URI).
    segments: Vec<(f64, String)>,
    endlist: bool,
    map: Option<String>,
}

/// Parses a media playlist; Err says what makes it not a whole valid playlist.
fn parse_playlist(text: &str) -> Result<Playlist, String> {
    if !text.starts_with("#EXTM3U\n") {
        return Err("does not start with #EXTM3U".into());
    }
    if !text.ends_with('\n') {
        return Err("does not end with a newline (partial write?)".into());
    }
    let mut target = None;
    let mut media_sequence = 0;
    let mut segments = Vec::new();
    let mut endlist = false;
    let mut map = None;
    let mut pending: Option<f64> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if endlist {
            return Err(format!("{line:?} after #EXT-X-ENDLIST"));
        }
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = Some(v.parse::<f64>().map_err(|_| format!("bad {line:?}"))?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_sequence = v.parse().map_err(|_| format!("bad {line:?}"))?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            if pending.is_some() {
                return Err("two #EXTINF without a URI".into());
            }
            let d = v.split(',').next().unwrap_or("");
            pending = Some(d.parse().map_err(|_| format!("bad {line:?}"))?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:URI=") {
            map = Some(v.trim_matches('"').to_string());
        } else if line == "#EXT-X-ENDLIST" {
            endlist = true;
        } else if !line.starts_with('#') {
            let d = pending
                .take()
                .ok_or(format!("URI {line:?} without #EXTINF"))?;
            segments.push((d, line.to_string()));
        }
    }
    if pending.is_some() {
        return Err("#EXTINF without its URI at the end".into());
    }
    let target = target.ok_or("no #EXT-X-TARGETDURATION")?;
    for (d, uri) in &segments {
        // EXTINF is rounded to milliseconds; TARGETDURATION is the rounded-up whole second.
        if *d > target + 1e-9 {
            return Err(format!("EXTINF {d} of {uri} > TARGETDURATION {target}"));
        }
    }
    Ok(Playlist {
        target,
        media_sequence,
        segments,
        endlist,
        map,
    })
}

fn read_playlist(path: &Path) -> Playlist {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_playlist(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// Segment URIs are `{prefix}1{ext}`, `{prefix}2{ext}`... from the media sequence on, no gap.
fn assert_contiguous(p: &Playlist, prefix: &str, ext: &str, what: &str) {
    assert!(!p.segments.is_empty(), "{what}: no segments");
    for (i, (_, uri)) in p.segments.iter().enumerate() {
        let want = format!("{prefix}{}{ext}", p.media_sequence + i as u64);
        assert_eq!(uri, &want, "{what}: segment {i} of {:?}", p.segments);
    }
    assert!(p.media_sequence >= 1, "{what}: media sequence starts at 1");
}

/// A loop reading playlists while the stream runs: every read must be a whole valid playlist
/// whose segments all exist (closed segments only). Returns the number of reads that saw one.
struct PlaylistWatcher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<usize, String>>,
}

impl PlaylistWatcher {
    fn start(paths: Vec<PathBuf>) -> PlaylistWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut reads = 0;
            while !s.load(Ordering::Relaxed) {
                for p in &paths {
                    let Ok(text) = std::fs::read_to_string(p) else {
                        continue; // not written yet
                    };
                    let pl = parse_playlist(&text)
                        .map_err(|e| format!("{} read {reads}: {e}\n{text}", p.display()))?;
                    let dir = p.parent().unwrap();
                    for (_, uri) in &pl.segments {
                        if !dir.join(uri).is_file() {
                            return Err(format!(
                                "{} lists {uri}, which does not exist",
                                p.display()
                            ));
                        }
                    }
                    reads += 1;
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            Ok(reads)
        });
        PlaylistWatcher { stop, handle }
    }

    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join().expect("playlist watcher") {
            Ok(n) => n,
            Err(e) => panic!("live playlist: {e}"),
        }
    }
}

/// TS: the PIDs of the first packets and the NAL types of the first video PES.
fn check_ts_segment(bytes: &[u8], video: bool, what: &str) {
    assert!(
        !bytes.is_empty() && bytes.len().is_multiple_of(188),
        "{what}: {} bytes is not whole 188-byte packets",
        bytes.len()
    );
    let pkts: Vec<&[u8]> = bytes.chunks(188).collect();
    for (i, p) in pkts.iter().enumerate() {
        assert_eq!(p[0], 0x47, "{what}: packet {i} sync byte");
    }
    let pid = |p: &[u8]| ((p[1] as u16 & 0x1f) << 8) | p[2] as u16;
    let payload = |p: &[u8]| -> Vec<u8> {
        let afc = (p[3] >> 4) & 3;
        let start = if afc & 2 != 0 { 5 + p[4] as usize } else { 4 };
        if afc & 1 == 0 || start >= 188 {
            return Vec::new();
        }
        p[start..].to_vec()
    };
    // PAT first: program 1's PMT PID.
    assert_eq!(pid(pkts[0]), 0, "{what}: first packet is not the PAT");
    let pat = payload(pkts[0]);
    let sec = &pat[1 + pat[0] as usize..];
    assert_eq!(sec[0], 0, "{what}: PAT table id");
    let pmt_pid = ((sec[10] as u16 & 0x1f) << 8) | sec[11] as u16;
    assert_eq!(
        pid(pkts[1]),
        pmt_pid,
        "{what}: second packet is not the PMT"
    );
    let pmt = payload(pkts[1]);
    let sec = &pmt[1 + pmt[0] as usize..];
    assert_eq!(sec[0], 2, "{what}: PMT table id");
    // Elementary streams: stream type 0x1b = H.264.
    let section_len = (((sec[1] as usize) & 0x0f) << 8) | sec[2] as usize;
    let info_len = (((sec[10] as usize) & 0x0f) << 8) | sec[11] as usize;
    let mut i = 12 + info_len;
    let end = 3 + section_len - 4;
    let mut video_pid = None;
    while i + 5 <= end {
        let st = sec[i];
        let epid = ((sec[i + 1] as u16 & 0x1f) << 8) | sec[i + 2] as u16;
        if st == 0x1b {
            video_pid = Some(epid);
        }
        i += 5 + ((((sec[i + 3] as usize) & 0x0f) << 8) | sec[i + 4] as usize);
    }
    assert_eq!(video_pid.is_some(), video, "{what}: H.264 in the PMT");
    let Some(vpid) = video_pid else { return };
    // The first video PES, whole.
    let mut pes = Vec::new();
    let mut started = false;
    for p in pkts.iter().filter(|p| pid(p) == vpid) {
        let pusi = p[1] & 0x40 != 0;
        if pusi && started {
            break;
        }
        if pusi {
            started = true;
        }
        if started {
            pes.extend_from_slice(&payload(p));
        }
    }
    assert!(
        pes.len() > 9 && pes[..3] == [0, 0, 1],
        "{what}: first video PES"
    );
    let es = &pes[9 + pes[8] as usize..];
    let mut types = Vec::new();
    let mut k = 0;
    while k + 3 < es.len() {
        if es[k] == 0 && es[k + 1] == 0 && es[k + 2] == 1 {
            types.push(es[k + 3] & 0x1f);
            k += 3;
        } else {
            k += 1;
        }
    }
    assert!(
        types.contains(&5) && !types.contains(&1),
        "{what}: first video access unit is not a keyframe (NAL types {types:?})"
    );
    assert!(
        types.contains(&7) && types.contains(&8),
        "{what}: keyframe without SPS/PPS (NAL types {types:?})"
    );
}

/// Top-level ISO BMFF box types in order.
fn top_boxes(bytes: &[u8]) -> Vec<String> {
    let mut v = Vec::new();
    let mut i = 0usize;
    while i + 8 <= bytes.len() {
        let mut size = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&bytes[i + 4..i + 8]).into_owned();
        if size == 1 && i + 16 <= bytes.len() {
            size = u64::from_be_bytes(bytes[i + 8..i + 16].try_into().unwrap());
        } else if size == 0 {
            size = (bytes.len() - i) as u64;
        }
        v.push(kind);
        if size < 8 {
            break;
        }
        i += size as usize;
    }
    v
}

/// `parts` concatenated into `out`.
fn concat(parts: &[PathBuf], out: &Path) {
    let mut all = Vec::new();
    for p in parts {
        all.extend(std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
    }
    std::fs::write(out, all).unwrap();
}

/// `segment_N.m4s` style files sorted by N.
fn numbered(dir: &Path, prefix: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<(u64, PathBuf)> = files_with(dir, ext)
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let n = name.strip_prefix(prefix)?.strip_suffix(ext)?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

fn has(fixture: &str) -> (bool, bool) {
    (!fixture.contains("_video"), !fixture.contains("_audio"))
}

/// Publishes `fixture` to `app/name` in real time and waits for FFmpeg to finish.
fn publish(server: &Server, fixture: &str, path: &str, input_args: &[&str]) {
    let mut ff = ffmpeg_publish_with(fixture, &server.rtmp_url(path), input_args, &[]);
    let status = ff.wait_or_panic(PUBLISH);
    assert!(status.success(), "publisher: {}", ff.stderr());
}

/// Waits for the `finished` log line of every recorder of `key` that is on.
fn wait_finished(server: &Server, key: &str, flv: bool, hls: bool, mp4: bool) {
    let flv_line = format!("FLV recording of {key} ->");
    let hls_line = format!("HLS recording of {key} ->");
    for (on, what) in [(flv, &flv_line), (hls, &hls_line)] {
        if on {
            let w = what.clone();
            let got =
                server.wait_for_log_where(|l| l.contains(&w) && l.contains("finished"), FINALISE);
            assert!(got.is_some(), "no '{what} ... finished' line");
        }
    }
    if mp4 {
        let w = format!("/mp4/{key} (");
        let got = server.wait_for_log_where(|l| l.contains(&w) && l.contains("finished"), FINALISE);
        assert!(got.is_some(), "no 'fmp4 {key} finished' line");
    }
}

// ---------------------------------------------------------------------------------------------
// Per-recorder checks of one session that ran to its end.

/// The FLV file: ffprobe/ffmpeg clean, our parser sees the fixture's media unchanged, the header
/// flags match the tracks, decoded video frames equal the fixture's.
fn check_flv_file(file: &Path, fixture: &str) {
    let what = format!("FLV {}", file.display());
    assert_probes(file, &[], &what);
    assert_decodes(file, &[], &what);
    let s = parse_flv(&std::fs::read(file).unwrap());
    s.assert_valid(&what, true);
    let (a, v) = has(fixture);
    assert_eq!(
        (s.has_audio, s.has_video),
        (a, v),
        "{what}: header track flags"
    );
    assert_full_stream(&s.frames, fixture, None, &what);
    let facts = Facts::get();
    if v {
        assert_eq!(
            decoded_frames(file, &[], "v"),
            facts.num(fixture, "video_frames"),
            "{what}: decoded video frames"
        );
    }
}

/// Audio duration of `input` within one AAC frame of the fixture's.
fn check_audio_span(input: &Path, pre: &[&str], fixture: &str, what: &str) {
    let (want, _, step) = span(&packet_pts(&fixture_path(fixture), &[], "a"));
    let (got, _, _) = span(&packet_pts(input, pre, "a"));
    assert!(
        (got - want).abs() <= step + 1e-3,
        "{what}: audio lasts {got:.3} s, the fixture's {want:.3} s (one frame {step:.4} s)"
    );
}

/// Video duration of `input` within one frame of the fixture's.
fn check_video_span(input: &Path, pre: &[&str], fixture: &str, what: &str) {
    let (want, _, step) = span(&packet_pts(&fixture_path(fixture), &[], "v"));
    let (got, _, _) = span(&packet_pts(input, pre, "v"));
    assert!(
        (got - want).abs() <= step + 1e-3,
        "{what}: video lasts {got:.3} s, the fixture's {want:.3} s (one frame {step:.4} s)"
    );
}

/// The HLS folder of a finished session: playlist rules, segments, FFmpeg plays it whole.
fn check_hls_dir(dir: &Path, fixture: &str) {
    let (a, v) = has(fixture);
    let index = dir.join("index.m3u8");
    let what = format!("HLS {}", index.display());
    let p = read_playlist(&index);
    assert!(p.endlist, "{what}: no #EXT-X-ENDLIST");
    assert!(p.target >= 1.0, "{what}: TARGETDURATION {}", p.target);
    assert_contiguous(&p, "segment_", ".ts", &what);
    for (_, uri) in &p.segments {
        check_ts_segment(
            &std::fs::read(dir.join(uri)).unwrap(),
            v,
            &format!("{what} {uri}"),
        );
    }
    assert_probes(&index, &[], &what);
    assert_decodes(&index, &[], &what);
    let facts = Facts::get();
    if v {
        assert_eq!(
            decoded_frames(&index, &[], "v"),
            facts.num(fixture, "video_frames"),
            "{what}: decoded video frames"
        );
    }
    if a {
        check_audio_span(&index, &[], fixture, &what);
    }
}

/// Both fMP4 forms and the merged MP4 of a finished session.
fn check_mp4_dir(stream_dir: &Path, fixture: &str, scratch: &Path) {
    let (a, v) = has(fixture);
    let facts = Facts::get();
    let merge = stream_dir.join("output_merge");
    let sep = stream_dir.join("output_separate");

    // Muxed: init + segments concatenated, and the playlist.
    let index = merge.join("index.m3u8");
    let p = read_playlist(&index);
    assert!(p.endlist, "{}: no ENDLIST", index.display());
    assert_eq!(p.map.as_deref(), Some("init.mp4"), "EXT-X-MAP");
    assert_contiguous(&p, "segment_", ".m4s", "output_merge/index.m3u8");
    let mut parts = vec![merge.join("init.mp4")];
    parts.extend(numbered(&merge, "segment_", ".m4s"));
    assert_eq!(
        parts.len() - 1,
        p.segments.len(),
        "segments on disk vs playlist"
    );
    let cat = scratch.join("merge_concat.mp4");
    concat(&parts, &cat);
    assert_decodes(&cat, &[], "init.mp4 + segment_N.m4s");
    assert_decodes(&index, &[], "output_merge/index.m3u8");
    if v {
        assert_eq!(
            decoded_frames(&index, &[], "v"),
            facts.num(fixture, "video_frames"),
            "output_merge/index.m3u8: decoded video frames"
        );
    }

    // Separate: one concatenation per track, the playlists, master.m3u8.
    for (on, kind) in [(a, "audio"), (v, "video")] {
        let pl = sep.join(format!("{kind}.m3u8"));
        if !on {
            assert!(!pl.exists(), "{} for a stream without {kind}", pl.display());
            continue;
        }
        let p = read_playlist(&pl);
        assert!(p.endlist, "{}: no ENDLIST", pl.display());
        assert_contiguous(&p, &format!("{kind}_"), ".m4s", &pl.display().to_string());
        let mut parts = vec![sep.join(format!("{kind}_init.mp4"))];
        parts.extend(numbered(&sep, &format!("{kind}_"), ".m4s"));
        let cat = scratch.join(format!("{kind}_concat.mp4"));
        concat(&parts, &cat);
        assert_decodes(&cat, &[], &format!("{kind}_init.mp4 + {kind}_N.m4s"));
        assert_decodes(&pl, &[], &format!("output_separate/{kind}.m3u8"));
    }
    let master = sep.join("master.m3u8");
    assert_decodes(&master, &[], "output_separate/master.m3u8");
    if v {
        assert_eq!(
            decoded_frames(&master, &[], "v"),
            facts.num(fixture, "video_frames"),
            "master.m3u8: decoded video frames"
        );
    }
    for m in [merge.join("meta.json"), sep.join("meta.json")] {
        let text = std::fs::read_to_string(&m).unwrap();
        assert!(
            text.contains("\"complete\":true"),
            "{}: {text}",
            m.display()
        );
        for (on, kind) in [(a, "\"audio\""), (v, "\"video\"")] {
            let tracks = text
                .split("\"tracks\":")
                .nth(1)
                .and_then(|t| t.split(']').next());
            assert_eq!(
                tracks.is_some_and(|t| t.contains(kind)),
                on,
                "{}: tracks {kind}",
                m.display()
            );
        }
    }

    check_full_mp4(&merge.join("stream_full.mp4"), fixture);
}

/// `stream_full.mp4`: faststart, decodes clean, every frame, right duration, tracks start
/// together.
fn check_full_mp4(full: &Path, fixture: &str) {
    let (a, v) = has(fixture);
    let facts = Facts::get();
    let what = full.display().to_string();
    let bytes = std::fs::read(full).unwrap_or_else(|e| panic!("{what}: {e}"));
    let boxes = top_boxes(&bytes);
    let moov = boxes.iter().position(|b| b == "moov");
    let mdat = boxes.iter().position(|b| b == "mdat");
    assert!(
        matches!((moov, mdat), (Some(m), Some(d)) if m < d),
        "{what}: top-level boxes {boxes:?} (moov must come before mdat)"
    );
    assert_probes(full, &[], &what);
    assert_decodes(full, &[], &what);
    let mut starts = Vec::new();
    if v {
        assert_eq!(
            decoded_frames(full, &[], "v"),
            facts.num(fixture, "video_frames"),
            "{what}: decoded video frames"
        );
        check_video_span(full, &[], fixture, &what);
        let (_, first, step) = span(&packet_pts(full, &[], "v"));
        starts.push((first, step));
    }
    if a {
        check_audio_span(full, &[], fixture, &what);
        let (_, first, step) = span(&packet_pts(full, &[], "a"));
        starts.push((first, step));
    }
    if let [(fv, sv), (fa, _)] = starts[..] {
        assert!(
            (fv - fa).abs() <= sv + 1e-3,
            "{what}: first video at {fv:.3} s, first audio at {fa:.3} s"
        );
    }
}

/// `rtmpd merge` on a copy of `output_merge`'s init and segments rebuilds `stream_full.mp4` byte
/// for byte.
fn check_merge_cli_identical(merge_dir: &Path, scratch: &Path) {
    let copy = scratch.join("merge-copy");
    std::fs::create_dir_all(&copy).unwrap();
    let mut n = 0;
    for p in files_with(merge_dir, ".m4s")
        .into_iter()
        .chain([merge_dir.join("init.mp4")])
    {
        std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        n += 1;
    }
    assert!(n > 1, "no segments to merge in {}", merge_dir.display());
    let mut c = Command::new(binary());
    c.arg("merge").arg(&copy);
    let (ok, out, err) = run(c);
    assert!(ok, "rtmpd merge {}: {out}{err}", copy.display());
    let a =
        std::fs::read(copy.join("stream_full.mp4")).expect("rtmpd merge wrote no stream_full.mp4");
    let b = std::fs::read(merge_dir.join("stream_full.mp4")).unwrap();
    assert!(
        a == b,
        "rtmpd merge gave {} bytes, the server's stream_full.mp4 has {} (or different content)",
        a.len(),
        b.len()
    );
}

/// Publishes `fixture` and checks every recorder's files; the live playlists are read in a loop
/// meanwhile.
fn record_fixture(fixture: &str, extra: &[&str]) {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let dd = DataDir::new();
    let mut server = Server::builder()
        .args([
            "--data-dir".to_string(),
            dd.arg(),
            "--hls-fragment".into(),
            "2".into(),
        ])
        .args(extra.iter().copied())
        .no_web()
        .start();
    let name = unique_stream("rec");
    let key = format!("live/{name}");
    let hls = data(&dd.0, "hls", "live", &name);
    let mp4 = data(&dd.0, "mp4", "live", &name);
    let watcher = PlaylistWatcher::start(vec![
        hls.join("index.m3u8"),
        mp4.join("output_merge/index.m3u8"),
        mp4.join("output_separate/audio.m3u8"),
        mp4.join("output_separate/video.m3u8"),
    ]);
    publish(&server, fixture, &key, &[]);
    wait_finished(&server, &key, true, true, true);
    let reads = watcher.finish();
    assert!(
        reads > 20,
        "the live playlists were read only {reads} times"
    );
    server.assert_running();

    let flvs = files_with(&data(&dd.0, "flv", "live", &name), ".flv");
    assert_eq!(flvs.len(), 1, "FLV files: {flvs:?}");
    check_flv_file(&flvs[0], fixture);
    check_hls_dir(&hls, fixture);
    let scratch = dd.0.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    check_mp4_dir(&mp4, fixture, &scratch);
    check_merge_cli_identical(&mp4.join("output_merge"), &scratch);
    assert!(
        !server.logs().iter().any(|l| l.contains("[ERROR]")),
        "error lines in the log"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// Issue 3 + 4 main case: the H.264 High (B-frames) + AAC fixture recorded as FLV, HLS and both
/// fMP4 forms plus the merged MP4; `rtmpd merge` on a copy is byte-identical.
#[test]
fn b_frame_fixture_is_recorded_by_every_recorder() {
    record_fixture("fixture.flv", &[]);
}

#[test]
fn audio_only_is_recorded_by_every_recorder() {
    record_fixture("fixture_audio.flv", &[]);
}

#[test]
fn video_only_is_recorded_by_every_recorder() {
    record_fixture("fixture_video.flv", &[]);
}

/// Publishing again archives the first session: `hls/live/s/YYYYMMDD_HHMMSS/` complete with
/// ENDLIST, `mp4/live/s/YYYYMMDD_HHMMSS/output_{merge,separate}/`, two FLV files; the second
/// session is whole at the documented paths.
#[test]
fn republish_keeps_the_first_session() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let dd = DataDir::new();
    let mut server = Server::builder()
        .args([
            "--data-dir".to_string(),
            dd.arg(),
            "--hls-fragment".into(),
            "1".into(),
        ])
        .no_web()
        .start();
    let name = unique_stream("rep");
    let key = format!("live/{name}");
    publish(&server, "fixture.flv", &key, &["-t", "4"]);
    wait_finished(&server, &key, true, true, true);
    // Session names have one-second resolution; the next publish must not share the first's.
    std::thread::sleep(Duration::from_millis(1100));
    publish(&server, "fixture.flv", &key, &["-t", "4"]);
    let deadline = Instant::now() + FINALISE;
    while Instant::now() < deadline
        && server
            .logs()
            .iter()
            .filter(|l| l.contains(&format!("/mp4/{key} (")) && l.contains("finished"))
            .count()
            < 2
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_finished(&server, &key, true, true, true);
    std::thread::sleep(Duration::from_millis(300));
    server.assert_running();

    let flvs = files_with(&data(&dd.0, "flv", "live", &name), ".flv");
    assert_eq!(flvs.len(), 2, "FLV files: {flvs:?}");
    for f in &flvs {
        assert_decodes(f, &[], "FLV");
        assert!(
            decoded_frames(f, &[], "v") > 50,
            "{}: too few frames",
            f.display()
        );
    }

    let hls = data(&dd.0, "hls", "live", &name);
    let old = session_dirs(&hls);
    assert_eq!(
        old.len(),
        1,
        "archived HLS sessions under {}",
        hls.display()
    );
    for dir in [&old[0], &hls] {
        let p = read_playlist(&dir.join("index.m3u8"));
        assert!(p.endlist, "{}: no ENDLIST", dir.display());
        assert_contiguous(&p, "segment_", ".ts", &dir.display().to_string());
        assert!(p.segments.len() >= 3, "{}: {:?}", dir.display(), p.segments);
        assert_decodes(&dir.join("index.m3u8"), &[], "HLS session");
    }

    let mp4 = data(&dd.0, "mp4", "live", &name);
    let old = session_dirs(&mp4);
    assert_eq!(
        old.len(),
        1,
        "archived mp4 sessions under {}",
        mp4.display()
    );
    for dir in [&old[0], &mp4] {
        for sub in ["output_merge", "output_separate"] {
            assert!(dir.join(sub).is_dir(), "{}/{sub} missing", dir.display());
        }
        let full = dir.join("output_merge/stream_full.mp4");
        assert_decodes(&full, &[], "stream_full.mp4 of a session");
        assert_decodes(&dir.join("output_separate/master.m3u8"), &[], "master.m3u8");
    }
}

/// SIGKILL mid-stream: FLV, HLS and the fMP4 segments FFmpeg can read; the next start closes the
/// playlist (logged), merges the unmerged session (logged) into a clean MP4, and `rtmpd merge`
/// on a copy of the segments gives the same bytes.
#[test]
#[cfg(unix)] // SIGKILL: Windows has no kill(2); tools/windows-smoke.sh covers shutdown there
fn sigkill_leaves_readable_files_and_restart_repairs() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let dd = DataDir::new();
    let args = [
        "--data-dir".to_string(),
        dd.arg(),
        "--hls-fragment".into(),
        "1".into(),
        "--mp4-fragment".into(),
        "1".into(),
    ];
    let mut server = Server::builder().args(args.clone()).no_web().start();
    let name = unique_stream("kill");
    let key = format!("live/{name}");
    let hls = data(&dd.0, "hls", "live", &name);
    let mp4 = data(&dd.0, "mp4", "live", &name);
    let mut ff = ffmpeg_publish("fixture.flv", &server.rtmp_url(&key), &[]);
    // Until a few segments exist in every form.
    let deadline = Instant::now() + PUBLISH;
    loop {
        let n_ts = files_with(&hls, ".ts").len();
        let n_m4s = files_with(&mp4.join("output_merge"), ".m4s").len();
        if n_ts >= 3 && n_m4s >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "segments did not appear ({n_ts} ts, {n_m4s} m4s)"
        );
        assert!(ff.is_running(), "publisher ended early: {}", ff.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the server process this test spawned.
    unsafe {
        libc::kill(server.pid() as libc::pid_t, libc::SIGKILL);
    }
    let t = Instant::now();
    while server.is_running() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!server.is_running(), "server survived SIGKILL");
    ff.kill();

    // What the crash left, read by FFmpeg before any repair.
    let flvs = files_with(&data(&dd.0, "flv", "live", &name), ".flv");
    assert_eq!(flvs.len(), 1, "FLV files: {flvs:?}");
    let s = parse_flv(&std::fs::read(&flvs[0]).unwrap());
    // The recorder writes whole tags only, so the file ends on a tag boundary.
    s.assert_valid("FLV after SIGKILL", true);
    assert!(
        count_pictures(&s.frames) > 50,
        "FLV after SIGKILL: {} pictures",
        count_pictures(&s.frames)
    );
    assert_decodes(&flvs[0], &[], "FLV after SIGKILL");
    let p = read_playlist(&hls.join("index.m3u8"));
    assert!(!p.endlist, "ENDLIST already there before the restart");
    assert_contiguous(&p, "segment_", ".ts", "HLS after SIGKILL");
    // Without ENDLIST FFmpeg treats the playlist as live and waits for more: read the listed
    // segments as one TS stream instead.
    let listed: Vec<PathBuf> = p.segments.iter().map(|(_, u)| hls.join(u)).collect();
    let scratch = dd.0.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    concat(&listed, &scratch.join("crash.ts"));
    assert_decodes(&scratch.join("crash.ts"), &[], "HLS segments after SIGKILL");
    let merge = mp4.join("output_merge");
    assert!(
        !merge.join("stream_full.mp4").exists(),
        "stream_full.mp4 before the restart"
    );
    let scratch = dd.0.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut parts = vec![merge.join("init.mp4")];
    parts.extend(numbered(&merge, "segment_", ".m4s"));
    concat(&parts, &scratch.join("crash_concat.mp4"));
    assert_decodes(
        &scratch.join("crash_concat.mp4"),
        &[],
        "fMP4 segments after SIGKILL",
    );
    drop(server);

    // Restart on the same data dir: repairs logged, results whole.
    let server = Server::builder().args(args).no_web().start();
    let line = server.wait_for_log("ENDLIST", Duration::from_secs(5));
    assert!(
        line.as_deref().is_some_and(|l| l.contains(&name)),
        "no repair line for the playlist: {line:?}"
    );
    let line = server.wait_for_log("rebuilt", Duration::from_secs(5));
    assert!(
        line.as_deref().is_some_and(|l| l.contains(&name)),
        "no merge line for the session: {line:?}"
    );
    let p = read_playlist(&hls.join("index.m3u8"));
    assert!(p.endlist, "no ENDLIST after the restart");
    assert_decodes(&hls.join("index.m3u8"), &[], "HLS after repair");
    let full = merge.join("stream_full.mp4");
    let bytes = std::fs::read(&full).expect("stream_full.mp4 after the restart");
    let boxes = top_boxes(&bytes);
    assert!(
        boxes.iter().position(|b| b == "moov") < boxes.iter().position(|b| b == "mdat"),
        "moov after mdat: {boxes:?}"
    );
    assert_decodes(&full, &[], "stream_full.mp4 merged at start");
    let frames = decoded_frames(&full, &[], "v");
    assert!(
        frames >= 100,
        "stream_full.mp4 after the crash: only {frames} frames"
    );
    for m in [
        merge.join("index.m3u8"),
        mp4.join("output_separate/video.m3u8"),
    ] {
        let p = read_playlist(&m);
        assert!(p.endlist, "{}: no ENDLIST after the restart", m.display());
    }
    check_merge_cli_identical(&merge, &scratch);
}

/// A file-size limit (RLIMIT_FSIZE via prlimit) makes the FLV recording fail mid-stream: the
/// recorder stops with an error line naming the stream and the path, the server lives, and an
/// HTTP-FLV viewer gets the whole stream.
#[test]
fn full_disk_stops_the_recorder_not_the_viewer() {
    if !require_tool("ffmpeg") || !require_tool("prlimit") {
        return;
    }
    const LIMIT: usize = 100_000;
    let dd = DataDir::new();
    let mut server = Server::builder()
        .args(["--data-dir".to_string(), dd.arg()])
        .no_web()
        .start();
    // 100 kB: the FLV file (400 kB), the first 4 s TS segment (200 kB) and fMP4 segment
    // (155 kB) all hit it.
    let mut c = Command::new("prlimit");
    c.arg(format!("--pid={}", server.pid()))
        .arg(format!("--fsize={LIMIT}:{LIMIT}"));
    let (ok, out, err) = run(c);
    assert!(ok, "prlimit: {out}{err}");
    let name = unique_stream("full");
    let key = format!("live/{name}");
    let http = server.http;
    let path = format!("/{key}.flv");
    let viewer = spawn_live_get(
        http,
        &path,
        Duration::from_secs(10),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(300));
    publish(&server, "fixture.flv", &key, &[]);
    let r = viewer.join().expect("viewer");
    assert_eq!(r.status, 200, "viewer status");
    let s = parse_flv(&r.body);
    s.assert_valid("HTTP-FLV viewer", true);
    assert_full_stream(
        &s.frames,
        "fixture.flv",
        None,
        "HTTP-FLV viewer with a full disk",
    );
    // One error line per recorder, naming the stream and the file.
    let flv_dir = data(&dd.0, "flv", "live", &name);
    let hls = data(&dd.0, "hls", "live", &name);
    let mp4 = data(&dd.0, "mp4", "live", &name);
    for (kind, dir) in [("FLV", &flv_dir), ("HLS", &hls), ("fmp4", &mp4)] {
        let line = server.wait_for_log_where(
            |l| l.contains("[ERROR]") && l.contains(kind) && l.contains("stopped"),
            FINALISE,
        );
        let line = line.unwrap_or_else(|| panic!("no {kind} error line"));
        assert!(
            line.contains(&key),
            "error line does not name the stream: {line}"
        );
        assert!(
            line.contains(&dir.display().to_string()) && line.contains("File too large"),
            "error line does not name the path under {} and the cause: {line}",
            dir.display()
        );
    }
    // The end of the session (the fMP4 recorder merges then) writes nothing more either.
    std::thread::sleep(Duration::from_millis(500));
    server.assert_running();

    // What was written up to the limit is still a readable FLV, cut at a whole tag.
    let flvs = files_with(&flv_dir, ".flv");
    assert_eq!(flvs.len(), 1);
    let bytes = std::fs::read(&flvs[0]).unwrap();
    assert!(bytes.len() <= LIMIT, "{} bytes past the limit", bytes.len());
    let s = parse_flv(&bytes);
    s.assert_valid("FLV cut by the size limit", true);
    assert!(
        count_pictures(&s.frames) > 10,
        "FLV cut by the limit: too few frames"
    );
    assert_decodes(&flvs[0], &[], "FLV cut by the size limit");
    // HLS and fMP4 list nothing they did not write whole, and leave no partial temp files.
    for dir in [
        &hls,
        &mp4.join("output_merge"),
        &mp4.join("output_separate"),
    ] {
        let tmps = files_with(dir, ".tmp");
        assert!(tmps.is_empty(), "temp files left: {tmps:?}");
        for pl in files_with(dir, ".m3u8")
            .into_iter()
            .filter(|p| !p.ends_with("master.m3u8"))
        {
            let p = read_playlist(&pl);
            assert!(p.endlist, "{}: no ENDLIST", pl.display());
            for (_, uri) in &p.segments {
                assert!(
                    dir.join(uri).is_file(),
                    "{} lists missing {uri}",
                    pl.display()
                );
            }
        }
    }
    // The fMP4 recorder stopped at its first segment: no later segment, no merged file made of
    // the tail passing for the whole.
    let merge = mp4.join("output_merge");
    assert!(
        numbered(&merge, "segment_", ".m4s").is_empty(),
        "segments written after the failure: {:?}",
        numbered(&merge, "segment_", ".m4s")
    );
    assert!(
        !merge.join("stream_full.mp4").exists(),
        "stream_full.mp4 from after the failure"
    );
}

/// SIGTERM (as Ctrl-C) while a stream is live finalises every open recording before the exit:
/// the playlists get ENDLIST, the FLV metadata is patched, `stream_full.mp4` is built.
#[test]
#[cfg(unix)] // SIGTERM: Windows has no kill(2); tools/windows-smoke.sh covers shutdown there
fn sigterm_finalises_open_recordings() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let dd = DataDir::new();
    let mut server = Server::builder()
        .args(["--data-dir".to_string(), dd.arg()])
        .no_web()
        .start();
    let name = unique_stream("term");
    let key = format!("live/{name}");
    let hls = data(&dd.0, "hls", "live", &name);
    let mp4 = data(&dd.0, "mp4", "live", &name);
    let mut ff = ffmpeg_publish("fixture.flv", &server.rtmp_url(&key), &[]);
    let deadline = Instant::now() + PUBLISH;
    while files_with(&hls, ".ts").len() < 2 {
        assert!(Instant::now() < deadline, "no HLS segments");
        assert!(ff.is_running(), "publisher ended early: {}", ff.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = server.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "rtmpd did not exit 0 after SIGTERM: {status:?}"
    );
    ff.kill();
    assert!(
        server
            .wait_for_log("finalising recordings", Duration::from_secs(5))
            .is_some(),
        "no finalising line"
    );

    let flvs = files_with(&data(&dd.0, "flv", "live", &name), ".flv");
    assert_eq!(flvs.len(), 1, "FLV files: {flvs:?}");
    let bytes = std::fs::read(&flvs[0]).unwrap();
    parse_flv(&bytes).assert_valid("FLV after SIGTERM", true);
    assert_decodes(&flvs[0], &[], "FLV after SIGTERM");
    // onMetaData's `filesize` and `duration` (AMF0 numbers after their names) patched at the end.
    let number_after = |name: &[u8]| -> Option<f64> {
        let at = bytes.windows(name.len()).position(|w| w == name)? + name.len();
        (bytes.get(at) == Some(&0)).then_some(())?;
        Some(f64::from_be_bytes(
            bytes.get(at + 1..at + 9)?.try_into().ok()?,
        ))
    };
    assert_eq!(
        number_after(b"filesize"),
        Some(bytes.len() as f64),
        "FLV metadata filesize"
    );
    let duration = number_after(b"duration").unwrap_or(0.0);
    assert!(duration > 2.0, "FLV metadata duration {duration}");
    for pl in [
        hls.join("index.m3u8"),
        mp4.join("output_merge/index.m3u8"),
        mp4.join("output_separate/video.m3u8"),
        mp4.join("output_separate/audio.m3u8"),
    ] {
        assert!(read_playlist(&pl).endlist, "{}: no ENDLIST", pl.display());
    }
    assert_decodes(&hls.join("index.m3u8"), &[], "HLS after SIGTERM");
    let full = mp4.join("output_merge/stream_full.mp4");
    assert_decodes(&full, &[], "stream_full.mp4 after SIGTERM");
    let boxes = top_boxes(&std::fs::read(&full).unwrap());
    assert!(
        boxes.iter().position(|b| b == "moov") < boxes.iter().position(|b| b == "mdat"),
        "moov after mdat: {boxes:?}"
    );
}

/// Issue 11: FFmpeg publishing as fast as it can (no `-re`) used to end the recording after a
/// tenth of a second ("disk too slow"). Now each recording is a hub reader that holds the
/// publisher back while it is behind, so every recorder keeps every frame. A small
/// `--record-queue` makes the hold-back engage however fast the disk is.
#[test]
fn fast_publisher_is_held_back_and_every_recorder_keeps_every_frame() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let dd = DataDir::new();
    let mut server = Server::builder()
        .args([
            "--data-dir".to_string(),
            dd.arg(),
            "--hls-fragment".into(),
            "2".into(),
            "--record-queue".into(),
            "16".into(),
            "--workers".into(),
            "1".into(),
        ])
        .no_web()
        .start();
    let name = unique_stream("fast");
    let key = format!("live/{name}");
    // What FFmpeg sends: the fixture six times over (60 s of media), as one FLV.
    let reference = dd.0.join("reference.flv");
    let loops = ["-stream_loop", "5", "-i"];
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args(loops)
        .arg(fixture_path("fixture.flv"))
        .args(["-c", "copy", "-f", "flv"])
        .arg(&reference);
    let (ok, _, err) = run(c);
    assert!(ok, "making the reference: {err}");
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(loops)
        .arg(fixture_path("fixture.flv"))
        .args(["-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url(&key));
    let started = Instant::now();
    let mut ff = Proc::spawn(c);
    let status = ff.wait_or_panic(PUBLISH);
    assert!(status.success(), "publisher: {}", ff.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "60 s of media without -re took {:?}: not faster than real time",
        started.elapsed()
    );
    wait_finished(&server, &key, true, true, true);
    server.assert_running();

    let count = |input: &Path, sel: &str| packet_pts(input, &[], sel).len();
    let (want_v, want_a) = (count(&reference, "v"), count(&reference, "a"));
    assert!(want_v >= 6 * 250 && want_a >= 6 * 400, "{want_v} {want_a}");
    let flvs = files_with(&data(&dd.0, "flv", "live", &name), ".flv");
    assert_eq!(flvs.len(), 1, "FLV files: {flvs:?}");
    let hls = data(&dd.0, "hls", "live", &name).join("index.m3u8");
    let mp4 = data(&dd.0, "mp4", "live", &name).join("output_merge/stream_full.mp4");
    for file in [&flvs[0], &hls, &mp4] {
        assert_eq!(
            count(file, "v"),
            want_v,
            "video packets in {}",
            file.display()
        );
        assert_eq!(
            count(file, "a"),
            want_a,
            "audio packets in {}",
            file.display()
        );
    }
    let metrics = http_get(server.http, "/metrics", Duration::from_secs(5)).body_text();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in /metrics:\n{metrics}"))
    };
    assert!(
        value("rtmpd_publisher_holds_total ") > 0,
        "the publisher was never held back: the test did not test the hold-back"
    );
    assert_eq!(value("rtmpd_recorder_dropped_frames_total "), 0);
    let logs = server.logs();
    assert!(
        !logs
            .iter()
            .any(|l| l.contains("[ERROR]") || l.contains("stopped")),
        "error lines in the log: {:?}",
        logs.iter()
            .filter(|l| l.contains("[ERROR]") || l.contains("stopped"))
            .collect::<Vec<_>>()
    );
}
