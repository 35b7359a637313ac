//! The audio bridge, Opus to AAC, end to end: FFmpeg 9 publishes H.264 + Opus (a 1 kHz stereo
//! tone, Enhanced RTMP) to the real binary; Debian's FFmpeg 5.1, which cannot read Opus in FLV,
//! plays the HTTP-FLV and the RTMP and decodes AAC with no error to the tone (frequency within
//! 1%, level within 1 dB, no gap); an HTTP-FLV player asking `?audio=opus` gets the Opus as
//! published; the recordings decode in FFmpeg 5.1 to `aac (LC)` and the same tone: the HLS
//! recording (MPEG-TS with the AAC), the FLV recording (the AAC instead of the Opus), the fMP4
//! playlists (muxed and separate) and the merged MP4 (the AAC as the default audio track, the
//! Opus beside it, which FFmpeg 9 sees). FFmpeg 9 comes from `tools/ffmpeg9/ffmpeg` or
//! `$RTMPD_FFMPEG9`; without it (or Debian's ffmpeg) the test skips, or fails when
//! RTMPD_REQUIRE_TOOLS=1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rtmpd::media::frame::{Codec, Track};

use crate::util::*;

/// FFmpeg 9, or `None` after saying why the test is skipped.
fn ffmpeg9() -> Option<PathBuf> {
    let path = std::env::var_os("RTMPD_FFMPEG9")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ffmpeg9/ffmpeg"));
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

/// H.264 and an Opus 1 kHz tone (48 kHz, stereo by FFmpeg's upmix) over Enhanced RTMP.
fn publish_opus_tone(ff: &Path, url: &str) -> Proc {
    let mut cmd = Command::new(ff);
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
        .args(["-t", "40", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-bf", "0", "-g", "50", "-pix_fmt", "yuv420p"])
        .args([
            "-c:a", "libopus", "-ac", "2", "-b:a", "128k", "-f", "flv", url,
        ]);
    Proc::spawn(cmd)
}

/// Debian's FFmpeg plays `url` for `secs` and decodes its audio to 48 kHz stereo s16 in `out`,
/// with `-xerror`: its stderr (errors only) and the audio codec it named.
fn play_to_pcm(url: &str, secs: u32, out: &Path) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "info", "-xerror", "-y"])
        .args(["-i", url, "-t", &secs.to_string(), "-map", "0:a"])
        .args(["-ac", "2", "-ar", "48000", "-f", "s16le"])
        .arg(out);
    Proc::spawn(cmd)
}

/// Debian's FFmpeg decodes the audio stream it chooses by default in `input` (no `-map`: the
/// default track of a file with two) to 48 kHz stereo s16 in `out`, with `-xerror`.
fn decode_default_audio(input: &Path, out: &Path) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "info",
        "-xerror",
        "-y",
        "-i",
    ])
    .arg(input)
    .args(["-vn", "-ac", "2", "-ar", "48000", "-f", "s16le"])
    .arg(out);
    Proc::spawn(cmd)
}

/// A recording decoded by FFmpeg 5.1 (its default audio): the input's audio codecs, and the
/// tone after the checks (AAC LC chosen, no error line, 1 kHz within 1%, level within 1 dB of
/// the source, no gap).
fn check_recording(what: &str, input: &Path, out: &Path) -> Tone {
    let mut p = decode_default_audio(input, out);
    let status = p.wait_or_panic(Duration::from_secs(60));
    let err = p.stderr();
    assert!(status.success(), "{what}: FFmpeg 5.1 failed:\n{err}");
    // "Stream #0:1 -> #0:0 (aac (native) -> pcm_s16le (native))": the stream it chose.
    let chosen = err
        .lines()
        .find(|l| l.contains(" -> #0:0 ("))
        .unwrap_or_else(|| panic!("{what}: no stream mapping:\n{err}"));
    assert!(chosen.contains("(aac (native)"), "{what}: {chosen}\n{err}");
    let lc = err
        .lines()
        .any(|l| l.contains("Stream #0:") && l.contains("Audio: aac (LC)"));
    assert!(lc, "{what}: no AAC LC stream:\n{err}");
    for l in err.lines() {
        let l = l.to_ascii_lowercase();
        assert!(
            !(l.contains("error") || l.contains("invalid") || l.contains("corrupt")),
            "{what}: FFmpeg 5.1 said: {l}\n{err}"
        );
    }
    let t = tone_of(&std::fs::read(out).unwrap());
    eprintln!(
        "opus2aac {what}: {:.2} s of AAC, {:.2} Hz at {:.2} dBFS, quietest 10 ms {:.2} dBFS",
        t.secs, t.freq, t.level, t.quietest
    );
    assert!(t.secs > 5.0, "{what}: {:.2} s of audio", t.secs);
    assert!((t.freq - 1000.0).abs() < 10.0, "{what}: {} Hz", t.freq);
    assert!((t.level + 24.08).abs() < 1.0, "{what}: {} dBFS", t.level);
    assert!(t.quietest > -30.0, "{what}: a gap ({} dBFS)", t.quietest);
    t
}

/// The audio streams FFmpeg 9 reads in `input` ("aac", "opus"), each decoded with no error.
fn ffmpeg9_audio(ff9: &Path, input: &Path) -> Vec<String> {
    let out = Command::new(ff9)
        .args(["-hide_banner", "-nostdin", "-v", "info", "-xerror", "-i"])
        .arg(input)
        .args(["-map", "0:a", "-f", "null", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "FFmpeg 9 on {}:\n{err}",
        input.display()
    );
    // The input's streams: those listed before the mapping (the output's come after).
    let input = err.split("Stream mapping:").next().unwrap_or("");
    input
        .lines()
        .filter(|l| l.contains("Stream #0:") && l.contains(": Audio: "))
        .filter_map(|l| l.split(": Audio: ").nth(1)?.split([' ', ',']).next())
        .map(str::to_string)
        .collect()
}

/// Start of the first audio stream minus start of the video, in seconds (ffprobe).
fn audio_video_offset(input: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,start_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(input)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let start = |kind: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{kind},"))?.parse().ok())
            .unwrap_or_else(|| panic!("no {kind} start in {text}"))
    };
    start("audio") - start("video")
}

fn metric(srv: &Server, name: &str) -> u64 {
    let m = http_get(srv.http, "/metrics", Duration::from_secs(5)).body_text();
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {m}"))
}

struct Tone {
    freq: f64,
    /// RMS of the left channel, dBFS.
    level: f64,
    /// The quietest 10 ms window's RMS, dBFS (a gap shows as silence).
    quietest: f64,
    secs: f64,
}

/// The left channel of interleaved s16 stereo, after its first 500 ms and before its last
/// 50 ms: frequency by interpolated upward zero crossings, RMS, and the quietest 10 ms window.
/// (The last AAC frame of a publish is padded with silence past the end of the Opus.)
fn tone_of(raw: &[u8]) -> Tone {
    let x: Vec<f64> = raw
        .chunks_exact(4)
        .map(|s| i16::from_le_bytes([s[0], s[1]]) as f64 / 32768.0)
        .collect();
    let secs = x.len() as f64 / 48_000.0;
    let x = &x[x.len().min(24_000)..x.len().saturating_sub(2_400).max(x.len().min(24_000))];
    assert!(x.len() > 48_000, "{} samples of audio", x.len());
    let mut ups = Vec::new();
    for i in 1..x.len() {
        if x[i - 1] < 0.0 && x[i] >= 0.0 {
            ups.push(i as f64 - 1.0 + x[i - 1] / (x[i - 1] - x[i]));
        }
    }
    let freq = (ups.len() - 1) as f64 * 48_000.0 / (ups[ups.len() - 1] - ups[0]);
    let db = |w: &[f64]| 10.0 * (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).log10();
    let quietest = x.chunks_exact(480).map(db).fold(f64::INFINITY, f64::min);
    Tone {
        freq,
        level: db(x),
        quietest,
        secs,
    }
}

#[test]
fn an_opus_publish_plays_as_aac_in_ffmpeg_5_live_and_in_every_recording() {
    let Some(ff9) = ffmpeg9() else {
        return;
    };
    if !require_tool("ffmpeg") {
        return;
    }
    let srv = Server::start();
    let name = unique_stream("opus2aac");
    let key = format!("live/{name}");
    let mut publisher = publish_opus_tone(&ff9, &srv.rtmp_url(&key));
    let live = wait_until_live(srv.http, &format!("/{key}.flv"), Duration::from_secs(20));
    assert!(live, "the publisher never came: {:?}", srv.logs());
    assert!(
        srv.wait_for_log("bridged to AAC", Duration::from_secs(10))
            .is_some(),
        "no bridge: {:?}",
        srv.logs()
    );
    std::thread::sleep(Duration::from_millis(1000));

    let dir = TempDir::new("opus2aac");
    let flv_url = format!("http://{}/{key}.flv", srv.http);
    let players = [
        ("HTTP-FLV", flv_url.clone(), dir.join("flv.raw")),
        ("RTMP", srv.rtmp_url(&key), dir.join("rtmp.raw")),
    ];
    let mut procs: Vec<Proc> = players
        .iter()
        .map(|(_, url, out)| play_to_pcm(url, 6, out))
        .collect();
    // RTMP players in Rust: one whose connect names Opus in fourCcList gets the Opus as
    // published, a legacy one the AAC.
    let rtmp_addr = srv.rtmp;
    let rtmp_audio = |fourccs: Option<&'static [&'static str]>| {
        let name = name.clone();
        std::thread::spawn(move || {
            let mut c = match fourccs {
                Some(l) => RtmpClient::connect_enhanced(rtmp_addr, "live", RTMP_TIMEOUT, l),
                None => RtmpClient::connect(rtmp_addr, "live", RTMP_TIMEOUT),
            }
            .unwrap();
            c.play(&name).unwrap();
            let mut out = RtmpPlay::default();
            collect_events(&mut c, &mut out, Instant::now() + Duration::from_secs(3));
            c.close();
            out.frames
                .into_iter()
                .filter(|f| f.track == Track::Audio)
                .map(|f| (f.codec, f.config))
                .collect::<Vec<_>>()
        })
    };
    let enhanced = rtmp_audio(Some(&["avc1", "Opus"]));
    let legacy = rtmp_audio(None);
    // FFmpeg 9 asking for Opus over HTTP-FLV gets it as published.
    let mut opus = Command::new(&ff9);
    opus.args(["-hide_banner", "-nostdin", "-v", "info", "-t", "2"])
        .args(["-i", &format!("{flv_url}?audio=opus"), "-map", "0:a"])
        .args(["-f", "null", "-"]);
    let mut opus = Proc::spawn(opus);

    for ((what, _, out), p) in players.iter().zip(procs.iter_mut()) {
        let status = p.wait_or_panic(Duration::from_secs(40));
        let err = p.stderr();
        assert!(status.success(), "{what}: FFmpeg 5.1 failed:\n{err}");
        let audio = err
            .lines()
            .find(|l| l.contains("Stream #0:") && l.contains("Audio:"))
            .unwrap_or_else(|| panic!("{what}: no audio stream:\n{err}"));
        assert!(audio.contains("Audio: aac (LC)"), "{what}: {audio}");
        assert!(audio.contains("48000 Hz"), "{what}: {audio}");
        for l in err.lines() {
            let l = l.to_ascii_lowercase();
            assert!(
                !(l.contains("error") || l.contains("invalid") || l.contains("corrupt")),
                "{what}: FFmpeg 5.1 said: {l}\n{err}"
            );
        }
        let raw = std::fs::read(out).unwrap();
        let t = tone_of(&raw);
        eprintln!(
            "opus2aac {what}: {:.2} s of AAC, {:.2} Hz at {:.2} dBFS, quietest 10 ms {:.2} dBFS",
            t.secs, t.freq, t.level, t.quietest
        );
        assert!(t.secs > 5.5, "{what}: {:.2} s of audio", t.secs);
        assert!((t.freq - 1000.0).abs() < 10.0, "{what}: {} Hz", t.freq);
        // FFmpeg's sine is 1/8 of full scale (-21.07 dBFS RMS); the mono-to-stereo upmix puts
        // each channel 3.01 dB lower.
        assert!((t.level + 24.08).abs() < 1.0, "{what}: {} dBFS", t.level);
        assert!(t.quietest > -30.0, "{what}: a gap ({} dBFS)", t.quietest);
    }

    let status = opus.wait_or_panic(Duration::from_secs(40));
    let err = opus.stderr();
    assert!(status.success(), "?audio=opus: FFmpeg 9 failed:\n{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("Stream #0:") && l.contains("Audio: opus")),
        "?audio=opus did not get Opus:\n{err}"
    );

    for (what, got, codec) in [
        (
            "Enhanced RTMP naming Opus",
            enhanced.join().unwrap(),
            Codec::Opus,
        ),
        ("legacy RTMP", legacy.join().unwrap(), Codec::Aac),
    ] {
        eprintln!(
            "opus2aac {what}: {} audio messages in 3 s, {:?} first",
            got.len(),
            got.first()
        );
        assert!(got.len() > 50, "{what}: {} audio messages", got.len());
        assert!(got.iter().all(|(c, _)| *c == codec), "{what}: {got:?}");
        assert!(got[0].1, "{what}: a sequence header first: {got:?}");
    }

    let started = metric(&srv, "rtmpd_audio_bridge_aac_started_total");
    let frames = metric(&srv, "rtmpd_audio_bridge_aac_frames_total");
    let dropped = metric(&srv, "rtmpd_audio_bridge_aac_dropped_total");
    eprintln!("opus2aac metrics: {started} bridge, {frames} AAC frames, {dropped} dropped");
    assert_eq!(
        started, 1,
        "one bridge for the stream, however many players"
    );
    // About 47 a second (1024 samples at 48 kHz) for the 6 s and more the players took.
    assert!(frames > 250, "{frames} AAC frames");

    // The HLS recording is MPEG-TS with the bridge's AAC (the Opus alone would make it fMP4).
    publisher.kill();
    for recording in [
        format!("HLS recording of {key} ->"),
        format!("FLV recording of {key} ->"),
        format!("/mp4/{key} ("),
    ] {
        let done = srv.wait_for_log_where(
            |l| l.contains(&recording) && l.contains("finished"),
            Duration::from_secs(30),
        );
        assert!(
            done.is_some(),
            "{recording} did not finish: {:?}",
            srv.logs()
        );
    }
    let hls = srv.data_dir.join("hls").join(&key);
    let ts = std::fs::read_dir(&hls)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "ts")
        })
        .count();
    assert!(ts > 0, "no .ts segments in {}", hls.display());
    assert!(!hls.join("init.mp4").exists(), "fMP4 segments");
    let out = dir.join("hls.raw");
    let mut p = play_to_pcm(&hls.join("index.m3u8").display().to_string(), 30, &out);
    let status = p.wait_or_panic(Duration::from_secs(60));
    let err = p.stderr();
    assert!(status.success(), "HLS: FFmpeg 5.1 failed:\n{err}");
    let audio = err
        .lines()
        .find(|l| l.contains("Stream #0:") && l.contains("Audio:"))
        .unwrap_or_else(|| panic!("HLS: no audio stream:\n{err}"));
    assert!(audio.contains("Audio: aac (LC)"), "HLS: {audio}");
    let t = tone_of(&std::fs::read(&out).unwrap());
    eprintln!(
        "opus2aac HLS (MPEG-TS, {ts} segments): {:.2} s of AAC, {:.2} Hz at {:.2} dBFS, quietest 10 ms {:.2} dBFS",
        t.secs, t.freq, t.level, t.quietest
    );
    assert!(t.secs > 5.0, "HLS: {:.2} s of audio", t.secs);
    assert!((t.freq - 1000.0).abs() < 10.0, "HLS: {} Hz", t.freq);
    assert!((t.level + 24.08).abs() < 1.0, "HLS: {} dBFS", t.level);
    assert!(t.quietest > -30.0, "HLS: a gap ({} dBFS)", t.quietest);

    // The FLV recording: the AAC instead of the Opus (FFmpeg 5.1 reads no Opus in FLV).
    let flv_dir = srv.data_dir.join("flv").join(&key);
    let flv = std::fs::read_dir(&flv_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "flv"))
        .expect("an FLV recording");
    check_recording("FLV recording", &flv, &dir.join("rec-flv.raw"));
    // The AAC came some 300 ms behind the video; recorded at its own time all the same.
    let offset = audio_video_offset(&flv);
    eprintln!("opus2aac FLV recording: audio starts {offset:+.3} s from the video");
    assert!(
        offset.abs() < 0.05,
        "FLV: audio starts {offset} s from the video"
    );
    assert_eq!(ffmpeg9_audio(&ff9, &flv), ["aac"], "FLV: the AAC only");
    // fMP4 and MP4: the AAC is the default audio track; the muxed form and the merged MP4
    // hold the Opus beside it, the separate form the AAC alone.
    let mp4 = srv.data_dir.join("mp4").join(&key);
    let merge = mp4.join("output_merge");
    for (what, file, both) in [
        ("fMP4 muxed", merge.join("index.m3u8"), true),
        (
            "fMP4 separate",
            mp4.join("output_separate/audio.m3u8"),
            false,
        ),
        ("MP4", merge.join("stream_full.mp4"), true),
    ] {
        check_recording(what, &file, &dir.join("rec-mp4.raw"));
        let want: &[&str] = if both { &["aac", "opus"] } else { &["aac"] };
        let got = ffmpeg9_audio(&ff9, &file);
        eprintln!("opus2aac {what}: FFmpeg 9 reads audio {got:?}");
        assert_eq!(got, want, "{what}");
    }
    let offset = audio_video_offset(&merge.join("stream_full.mp4"));
    eprintln!("opus2aac MP4: audio starts {offset:+.3} s from the video");
    assert!(
        offset.abs() < 0.05,
        "MP4: audio starts {offset} s from the video"
    );
    let meta = std::fs::read_to_string(merge.join("meta.json")).unwrap();
    assert!(meta.contains("\"audio_codec\":\"mp4a.40.2\""), "{meta}");
    assert!(meta.contains("\"audio_bridged\":true"), "{meta}");
    assert!(
        meta.contains("\"extra_audio\":[{\"track\":0,\"mp4_track_id\":3,\"codec\":\"opus\""),
        "{meta}"
    );
}

/// A free UDP port on 127.0.0.1 for the server's SRT listener.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The players that read MPEG-TS or fMP4 parts get the bridge's AAC too: FFmpeg 5.1 plays the
/// LL-HLS playlist (fMP4 parts) and the stream over SRT (MPEG-TS), and decodes `aac (LC)` to the
/// 1 kHz tone with no error.
#[test]
fn an_opus_publish_plays_as_aac_in_ffmpeg_5_over_llhls_and_srt() {
    let Some(ff9) = ffmpeg9() else {
        return;
    };
    if !require_tool("ffmpeg") {
        return;
    }
    let srt_port = free_udp_port().to_string();
    let mut srv = Server::builder()
        .args([
            "--hls-low-latency",
            "--no-flv-record",
            "--no-hls",
            "--no-mp4",
        ])
        .args(["--srt-port", &srt_port])
        .start();
    let name = unique_stream("opus2aac-ll");
    let key = format!("live/{name}");
    let mut publisher = publish_opus_tone(&ff9, &srv.rtmp_url(&key));
    let live = wait_until_live(srv.http, &format!("/{key}.flv"), Duration::from_secs(20));
    assert!(live, "the publisher never came: {:?}", srv.logs());
    // Two seconds in: the LL-HLS window has parts, and an SRT player joins mid-stream (it
    // starts from the cached headers, the bridge's AAC header among them).
    std::thread::sleep(Duration::from_millis(2000));
    let dir = TempDir::new("opus2aac-ll");
    let players = [
        (
            "LL-HLS",
            srv.http_url(&format!("/llhls/{key}/index.m3u8")),
            dir.join("llhls.raw"),
        ),
        (
            "SRT",
            format!("srt://127.0.0.1:{srt_port}?streamid={key}&latency=200000"),
            dir.join("srt.raw"),
        ),
    ];
    let mut procs: Vec<Proc> = players
        .iter()
        .map(|(_, url, out)| play_to_pcm(url, 6, out))
        .collect();
    for ((what, _, out), p) in players.iter().zip(procs.iter_mut()) {
        let status = p.wait_or_panic(Duration::from_secs(40));
        let err = p.stderr();
        assert!(status.success(), "{what}: FFmpeg 5.1 failed:\n{err}");
        let audio: Vec<&str> = err
            .split("Stream mapping:")
            .next()
            .unwrap_or("")
            .lines()
            .filter(|l| l.contains("Stream #0:") && l.contains("Audio:"))
            .collect();
        assert_eq!(audio.len(), 1, "{what}: one audio stream:\n{err}");
        assert!(audio[0].contains("Audio: aac (LC)"), "{what}: {}", audio[0]);
        for l in err.lines() {
            let l = l.to_ascii_lowercase();
            assert!(
                !(l.contains("error") || l.contains("invalid") || l.contains("corrupt")),
                "{what}: FFmpeg 5.1 said: {l}\n{err}"
            );
        }
        let t = tone_of(&std::fs::read(out).unwrap());
        eprintln!(
            "opus2aac {what}: {:.2} s of AAC, {:.2} Hz at {:.2} dBFS, quietest 10 ms {:.2} dBFS",
            t.secs, t.freq, t.level, t.quietest
        );
        assert!(t.secs > 5.5, "{what}: {:.2} s of audio", t.secs);
        assert!((t.freq - 1000.0).abs() < 10.0, "{what}: {} Hz", t.freq);
        assert!((t.level + 24.08).abs() < 1.0, "{what}: {} dBFS", t.level);
        assert!(t.quietest > -30.0, "{what}: a gap ({} dBFS)", t.quietest);
    }
    publisher.kill();
    srv.assert_running();
}

/// A stereo tone source for the A/V sync checks: silent until exactly 2.000 s of source time,
/// then a 1 kHz sine at 1/4 of full scale (-15.05 dBFS RMS) on both channels.
pub(crate) const LATE_TONE: &str =
    "aevalsrc=exprs='if(gte(t,2),0.25*sin(2*PI*1000*t),0)':channel_layout=stereo:sample_rate=48000";
/// The late tone's RMS, dBFS: 0.25 / sqrt(2).
pub(crate) const LATE_TONE_DB: f64 = -15.05;

/// What a player makes of a recorded or received FLV (`-copyts`: the stream's own timestamps):
/// the first video packet's time (ffprobe), and the audio decoded by `ff` to 48 kHz stereo s16
/// in `raw` with silencedetect (at sample precision): the first audio sample's time and the
/// tone's onset (the first sample above -20 dBFS, 0.083 ms into the sine), all in seconds.
pub(crate) struct AvTimes {
    pub first_video: f64,
    pub first_audio: f64,
    pub onset: f64,
}

pub(crate) fn av_times(ff: &Path, flv: &Path, raw: &Path) -> AvTimes {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .args(["-read_intervals", "%+#1"])
        .arg(flv)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&probe.stdout);
    let first_video: f64 = out
        .lines()
        .next()
        .and_then(|l| l.split(',').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("ffprobe found no video in {}: {out}", flv.display()));
    let mut cmd = Command::new(ff);
    cmd.args(["-hide_banner", "-nostdin", "-v", "info", "-xerror", "-y"])
        .args(["-copyts", "-i"])
        .arg(flv)
        .args(["-map", "0:a", "-af", "silencedetect=noise=-20dB:d=0.5"])
        .args(["-ac", "2", "-ar", "48000", "-f", "s16le"])
        .arg(raw);
    let mut p = Proc::spawn(cmd);
    let status = p.wait_or_panic(Duration::from_secs(60));
    let err = p.stderr();
    assert!(
        status.success(),
        "{} failed on {}:\n{err}",
        ff.display(),
        flv.display()
    );
    let value = |key: &str| -> f64 {
        err.lines()
            .find_map(|l| l.split(key).nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} from {}:\n{err}", ff.display()))
    };
    AvTimes {
        first_video,
        first_audio: value("silence_start: "),
        onset: value("silence_end: "),
    }
}

/// A/V sync, Opus to AAC: FFmpeg 9 publishes H.264 (one GOP of 10 s, so a player joining
/// within it gets the stream from its first frame) and an Opus tone that starts at exactly 2.000 s
/// of source time, to the server and (through a tee) to a file. FFmpeg 9 decoding that file says
/// where the tone starts against the video as published; Debian's FFmpeg 5.1 decoding the
/// HTTP-FLV's bridged AAC (which it does not trim the priming of) must put it within 20 ms of
/// the same place, and so must the HLS recording (MPEG-TS with that AAC).
#[test]
fn the_bridged_aac_stays_within_20_ms_of_the_video() {
    let Some(ff9) = ffmpeg9() else {
        return;
    };
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let srv = Server::start();
    let name = unique_stream("opussync");
    let key = format!("live/{name}");
    let dir = TempDir::new("opussync");
    let published = dir.join("published.flv");
    let mut cmd = Command::new(&ff9);
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", LATE_TONE])
        .args(["-t", "9", "-map", "0:v", "-map", "1:a"])
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-bf", "0", "-g", "250", "-pix_fmt", "yuv420p"])
        .args([
            "-c:a",
            "libopus",
            "-b:a",
            "128k",
            "-flags",
            "+global_header",
        ])
        .args(["-f", "tee"])
        .arg(format!(
            "[f=flv]{}|[f=flv]{}",
            srv.rtmp_url(&key),
            published.display()
        ));
    let mut publisher = Proc::spawn(cmd);
    let live = wait_until_live(srv.http, &format!("/{key}.flv"), Duration::from_secs(20));
    assert!(live, "the publisher never came: {:?}", srv.logs());
    // Joins within the first GOP: the cached GOP gives it everything from the first frame.
    let bytes = http_get_flv(srv.http, &format!("/{key}.flv"), Duration::from_secs(6));
    let flv = crate::util::flv::parse_flv(&bytes);
    assert!(flv.error.is_none(), "{:?}", flv.error);
    let played = dir.write("played.flv", &bytes[..bytes.len() - flv.leftover]);
    let status = publisher.wait_or_panic(Duration::from_secs(30));
    assert!(status.success(), "FFmpeg 9: {}", publisher.stderr());

    let src = av_times(&ff9, &published, &dir.join("published.raw"));
    let out = av_times(Path::new("ffmpeg"), &played, &dir.join("played.raw"));
    // Both sources start at 0: the tone is 2.000 s after the first video frame as published
    // (to the ms of FLV's timestamps; the onset threshold adds 0.083 ms).
    let src_offset = (src.onset - src.first_video - 2.0) * 1000.0;
    let out_offset = (out.onset - out.first_video - 2.0) * 1000.0;
    eprintln!(
        "opus sync: as published (FFmpeg 9 reading the tee's FLV): video from {:.3} s, Opus from \
         {:.3} s, tone at {:.5} s: {src_offset:+.2} ms from video + 2 s",
        src.first_video, src.first_audio, src.onset
    );
    eprintln!(
        "opus sync: as played (FFmpeg 5.1 reading the HTTP-FLV): video from {:.3} s, AAC from \
         {:.5} s, tone at {:.5} s: {out_offset:+.2} ms from video + 2 s, {:+.2} ms from the source",
        out.first_video,
        out.first_audio,
        out.onset,
        out_offset - src_offset
    );
    assert!(
        src_offset.abs() <= 1.5,
        "the source itself: {src_offset} ms"
    );
    assert_eq!(
        out.first_video, src.first_video,
        "the player did not get the stream from its first frame"
    );
    assert!(
        (out_offset - src_offset).abs() <= 20.0,
        "the bridged AAC is {:+.2} ms off the video",
        out_offset - src_offset
    );
    // No negative timestamp (the encoder's priming unit, timed before the first Opus packet,
    // is not sent).
    assert!(out.first_audio >= 0.0, "AAC from {} s", out.first_audio);
    // The same tone checks on what follows the onset.
    let raw = std::fs::read(dir.join("played.raw")).unwrap();
    let at = ((out.onset - out.first_audio) * 48_000.0) as usize * 4;
    let t = tone_of(&raw[at.min(raw.len())..]);
    eprintln!(
        "opus sync: {:.2} s of tone, {:.2} Hz at {:.2} dBFS, quietest 10 ms {:.2} dBFS",
        t.secs, t.freq, t.level, t.quietest
    );
    assert!((t.freq - 1000.0).abs() < 10.0, "{} Hz", t.freq);
    assert!((t.level - LATE_TONE_DB).abs() < 1.0, "{} dBFS", t.level);
    assert!(
        t.quietest > LATE_TONE_DB - 6.0,
        "a gap ({} dBFS)",
        t.quietest
    );

    // The HLS recording (MPEG-TS with the bridged AAC) likewise.
    let done = srv.wait_for_log_where(
        |l| l.contains(&format!("HLS recording of {key} ->")) && l.contains("finished"),
        Duration::from_secs(30),
    );
    assert!(done.is_some(), "no HLS recording: {:?}", srv.logs());
    let m3u8 = srv.data_dir.join("hls").join(&key).join("index.m3u8");
    let hls = av_times(Path::new("ffmpeg"), &m3u8, &dir.join("hls.raw"));
    let hls_offset = (hls.onset - hls.first_video - 2.0) * 1000.0;
    eprintln!(
        "opus sync: HLS recording (MPEG-TS, FFmpeg 5.1): video from {:.3} s, AAC from {:.5} s, \
         tone at {:.5} s: {:+.2} ms from the source",
        hls.first_video,
        hls.first_audio,
        hls.onset,
        hls_offset - src_offset
    );
    assert!(
        (hls_offset - src_offset).abs() <= 20.0,
        "HLS: the AAC is {:+.2} ms off the video",
        hls_offset - src_offset
    );
}
