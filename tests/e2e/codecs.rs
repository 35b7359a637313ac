//! Every codec fixture of `tests/data/codecs` (HEVC+AAC, AV1+Opus, VP9+Opus, H.264+MP3,
//! H.264+AC-3, two-track AAC) published by FFmpeg 9 to the real binary: every recording (FLV,
//! HLS, fMP4 muxed and separate, merged MP4) decodes in FFmpeg 9 with no error and the fixture's
//! frame count per track (within one; the audio bridge's AAC of an Opus track, which the FLV,
//! fMP4 and MP4 recordings hold: the Opus's duration, within 50 ms), and `meta.json`
//! names the codecs. FFmpeg 9 comes from
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

/// Frames per stream index of `input` decoded by FFmpeg 9 with `-xerror` (framemd5 lines; its
/// default streams, one video and one audio); panics on any decode error.
fn decoded(ff: &Path, input: &Path, what: &str) -> Vec<u64> {
    decoded_streams(ff, input, what, false)
}

/// `decoded`, of every stream when `all` (`-map 0`).
fn decoded_streams(ff: &Path, input: &Path, what: &str, all: bool) -> Vec<u64> {
    let mut c = Command::new(ff);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(input)
        .args(if all { &["-map", "0"][..] } else { &[][..] })
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

/// An Opus fixture's audio where the recording holds the audio bridge's AAC (`bridged_aac`).
fn assert_bridged(got: u64, opus: u64, what: &str) {
    let (lo, hi) = bridged_aac(opus);
    assert!(
        (lo..=hi).contains(&got),
        "{what}: {got} AAC frames for the fixture's {opus} Opus packets (want {lo}..={hi})"
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
    // An Opus fixture: the FLV, fMP4 and MP4 recordings hold the audio bridge's AAC (the fMP4
    // muxed form and the MP4 the Opus beside it, as a third track); HLS of AV1/VP9 keeps the
    // Opus in fMP4 segments (docs/codecs.md).
    let opus = audio_codec == "opus";
    for (input, what) in &both {
        let counts = decoded(&ff, input, what);
        assert!(counts.len() >= 2, "{what}: streams {counts:?}");
        assert_frames(counts[0], want_v, &format!("{what} video"));
        if opus && *what != "HLS" {
            assert_bridged(counts[1], want_a, &format!("{what} audio"));
        } else {
            assert_frames(counts[1], want_a, &format!("{what} audio"));
        }
        if opus && (*what == "fMP4 muxed" || *what == "merged MP4") {
            let all = decoded_streams(&ff, input, what, true);
            assert!(all.len() >= 3, "{what}: no Opus beside the AAC: {all:?}");
            assert_frames(all[2], want_a, &format!("{what} Opus"));
        }
    }
    let v = decoded(&ff, &mp4.join("output_separate/video.m3u8"), "fMP4 video");
    assert_frames(v[0], want_v, "fMP4 separate video");
    let a = decoded(&ff, &mp4.join("output_separate/audio.m3u8"), "fMP4 audio");
    if opus {
        assert_bridged(a[0], want_a, "fMP4 separate audio");
    } else {
        assert_frames(a[0], want_a, "fMP4 separate audio");
    }

    let meta = std::fs::read_to_string(mp4.join("output_merge/meta.json")).unwrap();
    assert!(
        meta.contains(&format!("\"video_codec\":\"{video_codec}")),
        "{meta}"
    );
    if opus {
        assert!(
            meta.contains("\"audio_codec\":\"mp4a.40.2\"")
                && meta.contains("\"audio_bridged\":true")
                && meta.contains("\"codec\":\"opus\""),
            "{meta}"
        );
    } else {
        assert!(
            meta.contains(&format!("\"audio_codec\":\"{audio_codec}\"")),
            "{meta}"
        );
    }
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

/// OBS-style second audio track (multitrack): FLV keeps it as received; fMP4 (muxed) and the
/// merged MP4 hold it as a third trak (`extra_audio` in meta.json); HLS records the default
/// tracks, lists track 1 as skipped in its meta.json, and /metrics counts it.
#[test]
fn second_multitrack_audio_track_is_an_mp4_trak_and_skipped_in_hls() {
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
    let text = std::fs::read_to_string(hls.join("meta.json")).unwrap();
    assert!(
        text.contains("\"skipped\":[\"audio track 1 (Aac)\"]"),
        "HLS meta.json: {text}"
    );
    let text = std::fs::read_to_string(mp4.join("output_merge/meta.json")).unwrap();
    assert!(text.contains("\"skipped\":[]"), "fMP4 meta.json: {text}");
    assert!(
        text.contains("\"extra_audio\":[{\"track\":1,\"mp4_track_id\":3,\"codec\":\"mp4a.40.2\""),
        "fMP4 meta.json: {text}"
    );
    let want_v = fact("multitrack_aac.flv.frames.0").unwrap();
    let want_a = fact("multitrack_aac.flv.frames.1").unwrap();
    let want_a1 = fact("multitrack_aac.flv.frames.2").unwrap();
    for (input, what) in [
        (mp4.join("output_merge/stream_full.mp4"), "merged MP4"),
        (mp4.join("output_merge/index.m3u8"), "fMP4 muxed"),
    ] {
        // Every stream (-map 0): FFmpeg would pick one audio stream by itself.
        let p = probe9(&ff, &input.display().to_string());
        assert!(p.ok && p.errors.is_empty(), "{what}: {:?}", p.errors);
        assert_eq!(p.codecs, ["h264", "aac", "aac"], "{what}");
        let counts = p.frames;
        assert_eq!(counts.len(), 3, "{what}: streams {counts:?}");
        assert_frames(counts[0], want_v, &format!("{what} video"));
        assert_frames(counts[1], want_a, &format!("{what} audio (track 0)"));
        assert_frames(counts[2], want_a1, &format!("{what} audio (track 1)"));
    }
    let metrics = http_get(server.http, "/metrics", Duration::from_secs(5)).body_text();
    let skipped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtmpd_recorder_skipped_tracks_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(skipped >= Some(1), "HLS counts it: {metrics}");
    server.assert_running();
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// `?track=N` (issue 14 point 2): FFmpeg 9 reads HTTP-FLV of the multitrack fixture, whose two
/// audio tracks are tones of 440 Hz (track 0) and 660 Hz (track 1). A viewer of `?track=1` hears
/// track 1, a viewer without `?track` (or of a track the stream lacks) track 0; all decode with
/// no error and keep the video; a bad value is a 400.
#[test]
fn flv_viewers_choose_the_audio_track_with_the_track_query() {
    let Some(ff) = ffmpeg9() else { return };
    let dir = TempDir::new("codecs-track").keep();
    let mut server = Server::builder().no_web().start();
    let name = unique_stream("tracks");
    let key = format!("live/{name}");
    let mut c = Command::new(&ff);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(["-stream_loop", "3", "-i"])
        .arg(root().join("tests/data/codecs/multitrack_aac.flv"))
        .args(["-map", "0", "-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url(&key));
    let mut publisher = Proc::spawn(c);
    let flv = format!("/{key}.flv");
    assert!(
        wait_until_live(server.http, &flv, Duration::from_secs(10)),
        "the stream went live: {}",
        publisher.stderr()
    );
    assert_eq!(
        http_get(
            server.http,
            &format!("{flv}?track=x"),
            Duration::from_secs(5)
        )
        .status,
        400
    );
    let readers: Vec<(&str, u32, PathBuf, Proc)> =
        [("", 440), ("?track=1", 660), ("?track=9", 440)]
            .into_iter()
            .enumerate()
            .map(|(i, (query, hz))| {
                let pcm = dir.join(format!("a{i}.pcm"));
                let mut c = Command::new(&ff);
                c.args(["-hide_banner", "-nostdin", "-v", "error", "-xerror"])
                    .args(["-t", "4", "-i"])
                    .arg(format!("http://{}{flv}{query}", server.http))
                    .args(["-map", "0:a", "-ac", "1", "-ar", "48000"])
                    .args(["-f", "s16le", "-y"])
                    .arg(&pcm)
                    .args(["-map", "0:v", "-f", "null", "-"]);
                (query, hz, pcm, Proc::spawn(c))
            })
            .collect();
    for (query, hz, pcm, mut p) in readers {
        let status = p.wait_or_panic(TOOL);
        let err = p.stderr();
        assert!(
            status.success() && err.trim().is_empty(),
            "{flv}{query}: {err}"
        );
        let bytes = std::fs::read(&pcm).unwrap();
        let samples: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert!(
            samples.len() >= 48_000 * 2,
            "{flv}{query}: {} samples",
            samples.len()
        );
        // Rising zero crossings per second: the tone's frequency.
        let rising = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        let got = rising as f64 * 48_000.0 / samples.len() as f64;
        eprintln!("{flv}{query}: {got:.0} Hz over {} samples", samples.len());
        assert!(
            (got - f64::from(hz)).abs() < 30.0,
            "{flv}{query}: {got:.0} Hz, want {hz}"
        );
    }
    publisher.kill();
    server.assert_running();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
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
    assert!(
        status.success(),
        "ffprobe {}: {}",
        input.display(),
        p.stderr()
    );
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
    wait_line(
        &server,
        &[&format!("FLV recording of {key} ->"), "finished"],
    );
    wait_line(
        &server,
        &[&format!("HLS recording of {key} ->"), "finished"],
    );
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

/// What FFmpeg 9 made of one input: the input's codecs (`Stream #0:N: Video: hevc ...`), the
/// frames per stream, and every line it logged at error level or worse (with `-xerror` a decode
/// error also ends the run, so `ok` is false).
struct Probe {
    ok: bool,
    codecs: Vec<String>,
    frames: Vec<u64>,
    errors: Vec<String>,
}

/// Decodes every stream of `input` with FFmpeg 9 (`-loglevel level+info`, so each line says
/// its level and the codec lines come with the errors in one run).
fn probe9(ff: &Path, input: &str) -> Probe {
    let mut c = Command::new(ff);
    c.args([
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "level+info",
        "-xerror",
    ])
    .args(["-i", input, "-map", "0", "-f", "framemd5", "-"]);
    let mut p = Proc::spawn(c);
    let ok = p.wait_or_panic(TOOL).success();
    let err = p.stderr();
    let mut codecs = Vec::new();
    let mut in_input = false;
    let mut errors = Vec::new();
    for line in err.lines() {
        if line.contains("Input #0") {
            in_input = true;
        } else if line.contains("Output #0") || line.contains("Stream mapping") {
            in_input = false;
        }
        if ["[error]", "[fatal]", "[panic]"]
            .iter()
            .any(|l| line.contains(l))
        {
            errors.push(line.to_string());
        }
        if !in_input || !line.contains("Stream #0:") {
            continue;
        }
        for kind in ["Video: ", "Audio: "] {
            if let Some(rest) = line.split(kind).nth(1) {
                let name = rest.split([' ', ',']).next().unwrap_or("");
                codecs.push(name.to_string());
            }
        }
    }
    let mut frames = Vec::new();
    for line in p.stdout().lines().filter(|l| !l.starts_with('#')) {
        let Some(Ok(i)) = line.split(',').next().map(|s| s.trim().parse::<usize>()) else {
            continue;
        };
        if frames.len() <= i {
            frames.resize(i + 1, 0);
        }
        frames[i] += 1;
    }
    Probe {
        ok,
        codecs,
        frames,
        errors,
    }
}

/// The outputs of the table, in its column order. The first four carry every track as received.
const OUTPUTS: [&str; 9] = [
    "live RTMP",
    "HTTP-FLV",
    "WS-FLV",
    "FLV",
    "HLS",
    "fMP4 muxed",
    "fMP4 separate",
    "MP4",
    "meta.json",
];

/// What the table must say for `output` of a fixture with `codecs` (video, audio, second
/// audio...): live RTMP, the FLV recording, fMP4 muxed and the merged MP4 carry every track as
/// published (the extra audio tracks as extra traks); HTTP-FLV and WS-FLV viewers get the
/// default track (track 0; `?track=N` for another); HLS carries one video and one audio track
/// and logs the others as skipped; the separate fMP4 form holds the default tracks; HLS switches
/// AV1, VP9 and Opus to fMP4 segments. The live players get an Opus stream's audio as AAC (the
/// audio bridge: they did not ask for Opus); so does the FLV recording, in place of the Opus,
/// and the fMP4 forms and the MP4 hold it as their audio track, the muxed form and the MP4 with
/// the Opus beside it.
fn expected_cell(output: &str, codecs: &[String]) -> String {
    let all = codecs.join("+");
    let main = codecs[..codecs.len().min(2)].join("+");
    let extra: Vec<String> = (2..codecs.len())
        .map(|i| format!("audio track {} ({})", i - 1, title(&codecs[i])))
        .collect();
    let (skipped, merge_only) = if extra.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!("; skipped {} (logged)", extra.join(", ")),
            format!("; {} in output_merge only", extra.join(", ")),
        )
    };
    // Players that did not ask for Opus (FFmpeg's connect names no FourCC; no `?audio=opus`)
    // get the audio bridge's AAC in its place.
    let bridged = |list: &str| list.replace("opus", "aac");
    let beside = |list: &str| list.replace("opus", "aac+opus");
    match output {
        "live RTMP" | "FLV" => format!("decoded {}", bridged(&all)),
        "fMP4 muxed" | "MP4" => format!("decoded {}", beside(&all)),
        "HTTP-FLV" | "WS-FLV" => format!("decoded {}", bridged(&main)),
        "HLS" => {
            let ts = !codecs
                .iter()
                .any(|c| matches!(c.as_str(), "av1" | "vp9" | "opus"));
            let form = if ts { "MPEG-TS" } else { "fMP4 segments" };
            format!("decoded {main} ({form}){skipped}")
        }
        "fMP4 separate" => format!("decoded {}{merge_only}", bridged(&main)),
        "meta.json" => format!("names {}", beside(&all)),
        _ => format!("decoded {main}"),
    }
}

/// How the recorders name a codec in a skipped-track line ("Aac").
fn title(codec: &str) -> String {
    let mut c = codec.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Cells known not to hold yet, with the reason printed in the table. The test fails when one
/// of them starts to hold too (then delete it here and in docs/codecs.md), so the list can only
/// shrink. Empty since the hub caches and relays every track's sequence header.
const KNOWN_GAPS: [(&str, &str, &str); 0] = [];

/// Frames a track must hold: `(at least, at most)`.
type FrameRange = (u64, u64);

/// The fixture's count, within one.
fn exact(n: u64) -> FrameRange {
    (n.saturating_sub(1), n + 1)
}

/// The audio bridge's AAC of `opus` 20 ms Opus packets: 1024 samples at 48 kHz a frame, over
/// the Opus's duration (less its pre-skip, 6.5 ms; the block the bridge still held when the
/// publish ended is coded and recorded before the recordings end).
fn bridged_aac(opus: u64) -> FrameRange {
    let secs = opus as f64 * 0.02;
    let per_sec = 48_000.0 / 1024.0;
    (
        ((secs - 0.05) * per_sec).floor() as u64,
        ((secs + 0.05) * per_sec).ceil() as u64,
    )
}

/// One cell from FFmpeg 9's view of one input (or several, for fMP4 separate).
fn cell_from(probes: &[Probe], want_frames: Option<&[FrameRange]>) -> String {
    if let Some(p) = probes.iter().find(|p| !p.ok || !p.errors.is_empty()) {
        return format!("FAILED: {:?}", p.errors);
    }
    let codecs: Vec<&str> = probes
        .iter()
        .flat_map(|p| p.codecs.iter().map(String::as_str))
        .collect();
    let frames: Vec<u64> = probes.iter().flat_map(|p| p.frames.clone()).collect();
    if let Some(want) = want_frames {
        let short = frames.len() != want.len()
            || frames
                .iter()
                .zip(want)
                .any(|(g, (min, max))| g < min || g > max);
        if short {
            return format!("FAILED: frames {frames:?}, want (min, max) {want:?}");
        }
    }
    format!("decoded {}", codecs.join("+"))
}

/// One fixture through every output: the table rows `(output, cell)`.
fn table_rows(
    ff: &Path,
    server: &Server,
    data: &Path,
    fixture: &str,
    tmp: &Path,
) -> Vec<(String, String)> {
    let codecs: Vec<String> = std::fs::read_to_string(root().join("tests/data/codecs/facts.txt"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{fixture}.codecs="))
                .map(str::to_string)
        })
        .unwrap()
        .split(' ')
        .map(str::to_string)
        .collect();
    let counts: Vec<u64> = (0..codecs.len())
        .map(|i| fact(&format!("{fixture}.frames.{i}")).unwrap())
        .collect();
    let want: Vec<FrameRange> = counts.iter().map(|n| exact(*n)).collect();
    // The outputs that take the audio bridge's AAC of an Opus track: in its place (the FLV
    // recording, the separate fMP4 form), or before it (the muxed form, the MP4).
    let is_opus = |i: usize| codecs[i] == "opus";
    let instead: Vec<FrameRange> = (0..codecs.len())
        .map(|i| {
            if is_opus(i) {
                bridged_aac(counts[i])
            } else {
                exact(counts[i])
            }
        })
        .collect();
    let beside: Vec<FrameRange> = (0..codecs.len())
        .flat_map(|i| {
            let aac = is_opus(i).then(|| bridged_aac(counts[i]));
            aac.into_iter().chain(std::iter::once(exact(counts[i])))
        })
        .collect();
    let name = unique_stream("table");
    let key = format!("live/{name}");
    let flv_path = format!("/{key}.flv");
    // The players come first and wait, so they see the stream from its start.
    let rtmp_url = server.rtmp_url(&key);
    let rtmp_ff = ff.to_path_buf();
    let rtmp = std::thread::spawn(move || probe9(&rtmp_ff, &rtmp_url));
    let addr = server.http;
    let p = flv_path.clone();
    let http = std::thread::spawn(move || {
        http_get_when_live(addr, &p, 1, Duration::from_secs(20), PUBLISH).body
    });
    let p = flv_path.clone();
    let ws = std::thread::spawn(move || {
        ws_get_flv_when_live(addr, &p, Duration::from_secs(20), PUBLISH).data
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut c = Command::new(ff);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(root().join("tests/data/codecs").join(fixture))
        .args(["-map", "0", "-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url(&key));
    let mut publisher = Proc::spawn(c);
    assert!(
        publisher.wait_or_panic(PUBLISH).success(),
        "publisher: {}",
        publisher.stderr()
    );
    wait_line(server, &[&format!("FLV recording of {key} ->"), "finished"]);
    wait_line(server, &[&format!("HLS recording of {key} ->"), "finished"]);
    wait_line(server, &[&format!("/mp4/{key} ("), "finished"]);

    let mut rows = Vec::new();
    let live_rtmp = rtmp.join().unwrap();
    rows.push(cell_from(&[live_rtmp], None));
    for (bytes, what) in [(http.join().unwrap(), "http"), (ws.join().unwrap(), "ws")] {
        let file = tmp.join(format!("{name}.{what}.flv"));
        std::fs::write(&file, bytes).unwrap();
        rows.push(cell_from(&[probe9(ff, &file.display().to_string())], None));
    }
    let flv = std::fs::read_dir(data.join("flv/live").join(&name))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "flv"))
        .expect("an FLV file");
    let hls = data.join("hls/live").join(&name);
    let mp4 = data.join("mp4/live").join(&name);
    let s = |p: PathBuf| p.display().to_string();
    rows.push(cell_from(&[probe9(ff, &s(flv))], Some(&instead)));
    let main = &want[..want.len().min(2)];
    let hls_cell = cell_from(&[probe9(ff, &s(hls.join("index.m3u8")))], Some(main));
    let hls_meta = std::fs::read_to_string(hls.join("meta.json")).unwrap_or_default();
    let form = if hls_meta.contains("\"format\":\"fmp4\"") {
        " (fMP4 segments)"
    } else if hls_meta.contains("\"format\":\"mpegts\"") {
        " (MPEG-TS)"
    } else {
        " (meta.json without a format)"
    };
    rows.push(format!("{hls_cell}{form}"));
    let merge = mp4.join("output_merge");
    let sep = mp4.join("output_separate");
    rows.push(cell_from(
        &[probe9(ff, &s(merge.join("index.m3u8")))],
        Some(&beside),
    ));
    let separate = [
        probe9(ff, &s(sep.join("video.m3u8"))),
        probe9(ff, &s(sep.join("audio.m3u8"))),
    ];
    rows.push(cell_from(&separate, Some(&instead[..instead.len().min(2)])));
    rows.push(cell_from(
        &[probe9(ff, &s(merge.join("stream_full.mp4")))],
        Some(&beside),
    ));
    // meta.json names the codecs (RFC 6381 strings): video_codec, audio_codec, extra_audio.
    let meta = std::fs::read_to_string(merge.join("meta.json")).unwrap_or_default();
    let rfc = |c: &str| match c {
        "h264" => "avc1.",
        "hevc" => "hvc1.",
        "av1" => "av01.",
        "vp9" => "vp09.",
        "aac" => "mp4a.40.",
        "mp3" => "mp4a.6B",
        "opus" => "opus",
        "ac3" => "ac-3",
        _ => "?",
    };
    let extra_meta = meta
        .split("\"extra_audio\":")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or("");
    let mut named: Vec<&str> = Vec::new();
    for (i, c) in codecs.iter().enumerate() {
        let listed = match i {
            0 => meta.contains(&format!("\"video_codec\":\"{}", rfc(c))),
            // An Opus stream's audio track is the bridge's AAC; the Opus is extra track 0.
            1 if c == "opus" => {
                if meta.contains("\"audio_codec\":\"mp4a.40.")
                    && meta.contains("\"audio_bridged\":true")
                {
                    named.push("aac");
                }
                extra_meta.contains("\"track\":0,\"mp4_track_id\":3,\"codec\":\"opus\"")
            }
            1 => meta.contains(&format!("\"audio_codec\":\"{}", rfc(c))),
            _ => extra_meta.contains(&format!(
                "\"track\":{},\"mp4_track_id\":{},\"codec\":\"{}",
                i - 1,
                i + 1,
                rfc(c)
            )),
        };
        if listed {
            named.push(c.as_str());
        }
    }

    // A skipped track (HLS): logged, and listed in HLS's meta.json. The separate fMP4 form
    // holds the default tracks; output_merge/meta.json lists the others as extra_audio.
    let mut skips = Vec::new();
    let mut merge_only = Vec::new();
    for (i, codec) in codecs.iter().enumerate().skip(2) {
        let track = format!("audio track {} ({})", i - 1, title(codec));
        let logged = server.log_contains(&format!("HLS {key}: {track} is not recorded to HLS"));
        let listed = hls_meta.contains(&format!("\"{track}\""));
        skips.push(if logged && listed {
            format!("skipped {track} (logged)")
        } else {
            format!("skipped {track} SILENTLY (log {logged}, meta.json {listed})")
        });
        merge_only.push(format!("{track} in output_merge only"));
    }
    let tail = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!("; {}", v.join(", "))
        }
    };
    rows[4].push_str(&tail(&skips));
    rows[6].push_str(&tail(&merge_only));
    rows.push(format!("names {}", named.join("+")));
    OUTPUTS
        .iter()
        .zip(rows)
        .map(|(o, cell)| (o.to_string(), cell))
        .chain(std::iter::once(("codecs".to_string(), codecs.join("+"))))
        .collect()
}

/// The codec x output table of issue 14: every fixture published by FFmpeg 9, played live over
/// RTMP, HTTP-FLV and WS-FLV by FFmpeg 9 (no decode error, the fixture's codecs), and every
/// recording decoded (with the fixture's frame count per track, within one). Prints the table
/// (docs/codecs.md holds a copy) and asserts every cell. Ignored by default (about a minute);
/// `.ci/run` runs it: `cargo test --test tests -- --ignored ffmpeg9`.
#[test]
#[ignore = "needs FFmpeg 9: sh tools/fetch-ffmpeg.sh, then cargo test --test tests -- --ignored ffmpeg9"]
fn ffmpeg9_codec_output_table() {
    let Some(ff) = ffmpeg9() else { return };
    let data = TempDir::new("codec-table").keep();
    let tmp = TempDir::new("codec-table-pulls");
    let mut server = Server::builder()
        .args(["--data-dir".to_string(), data.display().to_string()])
        .no_web()
        .start();
    let fixtures = [
        "hevc_aac.flv",
        "av1_opus.flv",
        "vp9_opus.flv",
        "h264_mp3.flv",
        "h264_ac3.flv",
        "multitrack_aac.flv",
    ];
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for fixture in fixtures {
        let mut rows = table_rows(&ff, &server, &data, fixture, tmp.path());
        let (_, codecs) = rows.pop().unwrap();
        let codecs: Vec<String> = codecs.split('+').map(str::to_string).collect();
        for (output, cell) in rows {
            let want = expected_cell(&output, &codecs);
            let gap = KNOWN_GAPS
                .iter()
                .find(|(f, o, _)| *f == fixture && *o == output);
            let shown = match gap {
                Some((_, _, why)) if cell.starts_with("FAILED") => {
                    format!("NOT DECODED, known gap ({why})")
                }
                Some(_) => {
                    wrong.push(format!(
                        "{fixture} {output}: \"{cell}\" holds now: remove it from KNOWN_GAPS"
                    ));
                    cell.clone()
                }
                None => {
                    if cell != want {
                        wrong.push(format!(
                            "{fixture} {output}: got \"{cell}\", want \"{want}\""
                        ));
                    }
                    cell.clone()
                }
            };
            let line = format!("| {fixture:<18} | {output:<13} | {shown} |");
            eprintln!("{line}");
            table.push(line);
        }
    }
    eprintln!(
        "\ncodec x output (FFmpeg 9 decodes each):\n| fixture | output | result |\n|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(wrong.is_empty(), "table cells:\n{}", wrong.join("\n"));
    server.assert_running();
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
