//! Every codec fixture of `tests/data/codecs` (HEVC+AAC, AV1+Opus, VP9+Opus, H.264+MP3,
//! H.264+AC-3, two-track AAC) published by FFmpeg 9 to the real binary: every recording (FLV,
//! HLS, fMP4 muxed and separate, merged MP4) decodes in FFmpeg 9 with no error and the fixture's
//! frame count per track (within one), and `meta.json` names the codecs. FFmpeg 9 comes from
//! `tools/ffmpeg9/ffmpeg` or `$RTMPD_FFMPEG9` (`sh tools/fetch-ffmpeg.sh`); without it the tests
//! skip, or fail when RTMPD_REQUIRE_TOOLS=1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const PUBLISH: Duration = Duration::from_secs(40);
const FINALISE: Duration = Duration::from_secs(20);
const TOOL: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// FFmpeg 9, or `None` after saying why the test is skipped.
fn ffmpeg9() -> Option<PathBuf> {
    let path = std::env::var_os("RTMPD_FFMPEG9")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("tools/ffmpeg9/ffmpeg"));
    if path.is_file() {
        return Some(path);
    }
    let msg = "skipped: FFmpeg 9 not found (sh tools/fetch-ffmpeg.sh)";
    if std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{msg}, and RTMPD_REQUIRE_TOOLS=1 forbids skipping");
    }
    eprintln!("{msg}");
    None
}

/// `name.key=value` from facts.txt.
fn fact(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(root().join("tests/data/codecs/facts.txt")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.trim().parse().ok())
}

/// Frames per stream index of `input` decoded by FFmpeg 9 with `-xerror` (framemd5 lines);
/// panics on any decode error.
fn decoded(ff: &Path, input: &Path, what: &str) -> Vec<u64> {
    let mut c = Command::new(ff);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(input)
        .args(["-f", "framemd5", "-"]);
    let mut p = Proc::spawn(c);
    let status = p.wait_or_panic(TOOL);
    let err = p.stderr();
    assert!(
        status.success() && err.trim().is_empty(),
        "{what}: FFmpeg 9 decode of {} printed:\n{err}",
        input.display()
    );
    let mut counts = Vec::new();
    for line in p.stdout().lines().filter(|l| !l.starts_with('#')) {
        let Some(Ok(i)) = line.split(',').next().map(|s| s.trim().parse::<usize>()) else {
            continue;
        };
        if counts.len() <= i {
            counts.resize(i + 1, 0);
        }
        counts[i] += 1;
    }
    counts
}

fn assert_frames(got: u64, want: u64, what: &str) {
    assert!(
        got.abs_diff(want) <= 1,
        "{what}: {got} frames, fixture has {want}"
    );
}

fn wait_line(server: &Server, parts: &[&str]) {
    let got = server.wait_for_log_where(|l| parts.iter().all(|p| l.contains(p)), FINALISE);
    assert!(got.is_some(), "no log line with {parts:?}");
}

/// Publishes `fixture` with FFmpeg 9 and checks every recording.
fn record_codec_fixture(fixture: &str, video_codec: &str, audio_codec: &str) {
    let Some(ff) = ffmpeg9() else { return };
    let data = TempDir::new("codecs").keep();
    let mut server = Server::builder()
        .args(["--data-dir".to_string(), data.display().to_string()])
        .no_web()
        .start();
    let name = unique_stream("codec");
    let key = format!("live/{name}");
    let mut c = Command::new(&ff);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(root().join("tests/data/codecs").join(fixture))
        .args(["-map", "0", "-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url(&key));
    let mut publisher = Proc::spawn(c);
    let status = publisher.wait_or_panic(PUBLISH);
    assert!(status.success(), "publisher: {}", publisher.stderr());
    wait_line(
        &server,
        &[&format!("FLV recording of {key} ->"), "finished"],
    );
    wait_line(
        &server,
        &[&format!("HLS recording of {key} ->"), "finished"],
    );
    wait_line(&server, &[&format!("/mp4/{key} ("), "finished"]);
    server.assert_running();

    let want_v = fact(&format!("{fixture}.frames.0")).unwrap();
    let want_a = fact(&format!("{fixture}.frames.1")).unwrap();
    let flv_dir = data.join("flv/live").join(&name);
    let flv = std::fs::read_dir(&flv_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "flv"))
        .expect("an FLV file");
    let hls = data.join("hls/live").join(&name);
    let mp4 = data.join("mp4/live").join(&name);
    let both = [
        (flv.clone(), "FLV"),
        (hls.join("index.m3u8"), "HLS"),
        (mp4.join("output_merge/index.m3u8"), "fMP4 muxed"),
        (mp4.join("output_merge/stream_full.mp4"), "merged MP4"),
    ];
    for (input, what) in &both {
        let counts = decoded(&ff, input, what);
        assert!(counts.len() >= 2, "{what}: streams {counts:?}");
        assert_frames(counts[0], want_v, &format!("{what} video"));
        assert_frames(counts[1], want_a, &format!("{what} audio"));
    }
    let v = decoded(&ff, &mp4.join("output_separate/video.m3u8"), "fMP4 video");
    assert_frames(v[0], want_v, "fMP4 separate video");
    let a = decoded(&ff, &mp4.join("output_separate/audio.m3u8"), "fMP4 audio");
    assert_frames(a[0], want_a, "fMP4 separate audio");

    let meta = std::fs::read_to_string(mp4.join("output_merge/meta.json")).unwrap();
    assert!(
        meta.contains(&format!("\"video_codec\":\"{video_codec}")),
        "{meta}"
    );
    assert!(
        meta.contains(&format!("\"audio_codec\":\"{audio_codec}\"")),
        "{meta}"
    );
    let hls_meta = std::fs::read_to_string(hls.join("meta.json")).unwrap();
    assert!(hls_meta.contains("\"format\""), "{hls_meta}");
    if fixture == "h264_mp3.flv" && require_tool("ffprobe") {
        // Debian's FFmpeg 5.1 reads this one too.
        let mut c = Command::new("ffprobe");
        c.args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(mp4.join("output_merge/stream_full.mp4"));
        let mut p = Proc::spawn(c);
        assert!(p.wait_or_panic(TOOL).success());
        let out = p.stdout();
        assert!(out.contains("h264") && out.contains("mp3"), "{out}");
    }
    assert!(
        !server.logs().iter().any(|l| l.contains("[ERROR]")),
        "error lines in the log"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn hevc_aac_is_recorded_by_every_recorder() {
    record_codec_fixture("hevc_aac.flv", "hvc1.", "mp4a.40.2");
}

#[test]
fn av1_opus_is_recorded_by_every_recorder() {
    record_codec_fixture("av1_opus.flv", "av01.", "opus");
}

#[test]
fn vp9_opus_is_recorded_by_every_recorder() {
    record_codec_fixture("vp9_opus.flv", "vp09.", "opus");
}

#[test]
fn h264_mp3_is_recorded_by_every_recorder() {
    record_codec_fixture("h264_mp3.flv", "avc1.", "mp4a.6B");
}

#[test]
fn h264_ac3_is_recorded_by_every_recorder() {
    record_codec_fixture("h264_ac3.flv", "avc1.", "ac-3");
}

/// OBS-style second audio track (multitrack): FLV keeps it as received; HLS and fMP4 record the
/// default tracks, list track 1 as skipped in meta.json, and /metrics counts it.
#[test]
fn second_multitrack_audio_track_is_listed_as_skipped() {
    let Some(ff) = ffmpeg9() else { return };
    let data = TempDir::new("codecs-mt").keep();
    let mut server = Server::builder()
        .args(["--data-dir".to_string(), data.display().to_string()])
        .no_web()
        .start();
    let name = unique_stream("multi");
    let key = format!("live/{name}");
    let mut c = Command::new(&ff);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(root().join("tests/data/codecs/multitrack_aac.flv"))
        .args(["-map", "0", "-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url(&key));
    let mut publisher = Proc::spawn(c);
    let status = publisher.wait_or_panic(PUBLISH);
    assert!(status.success(), "publisher: {}", publisher.stderr());
    wait_line(
        &server,
        &[&format!("HLS recording of {key} ->"), "finished"],
    );
    wait_line(&server, &[&format!("/mp4/{key} ("), "finished"]);
    let hls = data.join("hls/live").join(&name);
    let mp4 = data.join("mp4/live").join(&name);
    for meta in [hls.join("meta.json"), mp4.join("output_merge/meta.json")] {
        let text = std::fs::read_to_string(&meta).unwrap();
        assert!(
            text.contains("\"skipped\":[\"audio track 1 (Aac)\"]"),
            "{}: {text}",
            meta.display()
        );
    }
    let want_v = fact("multitrack_aac.flv.frames.0").unwrap();
    let want_a = fact("multitrack_aac.flv.frames.1").unwrap();
    let counts = decoded(&ff, &mp4.join("output_merge/stream_full.mp4"), "merged MP4");
    assert_frames(counts[0], want_v, "merged video");
    assert_frames(counts[1], want_a, "merged audio (track 0)");
    let metrics = http_get(server.http, "/metrics", Duration::from_secs(5)).body_text();
    let skipped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtmpd_recorder_skipped_tracks_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(skipped >= Some(2), "HLS and fMP4 each count it: {metrics}");
    server.assert_running();
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// Decoded frames of stream `sel` (`v` or `a`) by Debian's `ffprobe -count_frames`.
fn ffprobe_frames(input: &Path, sel: &str) -> u64 {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-v", "error", "-count_frames"])
        .args(["-select_streams", sel])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(input);
    let mut p = Proc::spawn(c);
    let status = p.wait_or_panic(TOOL);
    assert!(status.success(), "ffprobe {}: {}", input.display(), p.stderr());
    p.stdout()
        .lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or(0)
}

/// Issue 14, point 4: `stream_full.mp4` of a 30 fps H.264 source held one video frame fewer
/// than the source (301 of 302). Every recording must hold every frame, the last one included.
#[test]
fn merged_mp4_keeps_the_last_frame_of_a_30fps_source() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    const FRAMES: u64 = 302;
    let data = TempDir::new("lastframe").keep();
    let mut server = Server::builder()
        .args(["--data-dir".to_string(), data.display().to_string()])
        .no_web()
        .start();
    let name = unique_stream("last");
    let key = format!("live/{name}");
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-frames:v", &FRAMES.to_string(), "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-f", "flv"])
        .arg(server.rtmp_url(&key));
    let mut publisher = Proc::spawn(c);
    let status = publisher.wait_or_panic(PUBLISH);
    assert!(status.success(), "publisher: {}", publisher.stderr());
    wait_line(&server, &[&format!("FLV recording of {key} ->"), "finished"]);
    wait_line(&server, &[&format!("HLS recording of {key} ->"), "finished"]);
    wait_line(&server, &[&format!("/mp4/{key} ("), "finished"]);
    let flv_dir = data.join("flv/live").join(&name);
    let flv = std::fs::read_dir(&flv_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "flv"))
        .expect("an FLV file");
    let mp4 = data.join("mp4/live").join(&name);
    let outputs = [
        (flv, "FLV"),
        (data.join("hls/live").join(&name).join("index.m3u8"), "HLS"),
        (mp4.join("output_merge/index.m3u8"), "fMP4 muxed"),
        (mp4.join("output_separate/video.m3u8"), "fMP4 separate"),
        (mp4.join("output_merge/stream_full.mp4"), "merged MP4"),
    ];
    let counts: Vec<(&str, u64)> = outputs
        .iter()
        .map(|(p, what)| (*what, ffprobe_frames(p, "v")))
        .collect();
    eprintln!("video frames per recording (source {FRAMES}): {counts:?}");
    for (what, n) in counts {
        assert_eq!(n, FRAMES, "{what}: video frames");
    }
    // The last sample has a duration (the previous one's), so the track lasts every frame.
    let mut c = Command::new("ffprobe");
    c.args(["-v", "error", "-select_streams", "v"])
        .args(["-show_entries", "stream=duration", "-of", "csv=p=0"])
        .arg(mp4.join("output_merge/stream_full.mp4"));
    let mut p = Proc::spawn(c);
    assert!(p.wait_or_panic(TOOL).success(), "{}", p.stderr());
    let secs: f64 = p.stdout().trim().parse().unwrap_or(0.0);
    let want = FRAMES as f64 / 30.0;
    assert!(
        (secs - want).abs() <= 1.0 / 30.0 + 0.002,
        "merged MP4 video lasts {secs} s, {FRAMES} frames at 30 fps last {want:.3} s"
    );
    server.assert_running();
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
