//! SRT on the real binary (`--srt-port`): FFmpeg and `srt-live-transmit` publish MPEG-TS over
//! SRT (the `#!::` stream id and the short form, in the clear and with a passphrase); while it
//! publishes, FFmpeg reads the stream back over RTMP, HTTP-FLV and SRT without a decode error;
//! the HLS and FLV recordings decode; a wrong passphrase is refused; `/metrics` and
//! `/api/streams` show the SRT connections.

use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

pub(super) const PASS: &str = "srt-e2e-passphrase";
/// A reader's run: `-t 3` of media, on a busy box.
pub(super) const READ: Duration = Duration::from_secs(20);

/// A UDP port free a moment ago (`--srt-port 0` turns SRT off, so the test picks one).
pub(super) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An origin with SRT on a free port; returns it and the port read from its startup line.
pub(super) fn start(extra: &[&str]) -> (Server, u16) {
    let port = free_udp_port();
    let server = Server::builder()
        .no_web()
        .args(["--srt-port", &port.to_string()])
        .args(extra.iter().copied())
        .start();
    let line = server
        .wait_for_log("SRT listening on ", Duration::from_secs(5))
        .expect("the SRT startup line");
    let shown: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert_eq!(shown, port, "{line}");
    assert!(line.contains("INFO"), "{line}");
    (server, port)
}

pub(super) fn srt_url(port: u16, streamid: &str, extra: &str) -> String {
    format!("srt://127.0.0.1:{port}?streamid={streamid}{extra}")
}

/// `ffmpeg -re -i fixture.flv -c copy -f mpegts srt://...`.
pub(super) fn ffmpeg_publish_srt(url: &str) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
        .arg(fixture_path("fixture.flv"))
        .args(["-c", "copy", "-f", "mpegts", url]);
    Proc::spawn(cmd)
}

/// Reads `url` for 3 s of media: FFmpeg must exit 0 and print nothing.
pub(super) fn assert_reads(url: &str, what: &str) {
    let mut p = ffmpeg_pull_null(url, 3);
    let status = p.wait_or_panic(READ);
    let err = p.stderr();
    assert!(
        status.success() && err.trim().is_empty(),
        "{what}: ffmpeg -i {url} exited {status}, printed:\n{err}"
    );
}

pub(super) fn assert_decodes(path: &Path, what: &str) {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"]);
    let mut p = Proc::spawn(c);
    let status = p.wait_or_panic(Duration::from_secs(60));
    let err = p.stderr();
    assert!(
        status.success() && err.trim().is_empty(),
        "{what}: decoding {} exited {status}, printed:\n{err}",
        path.display()
    );
}

/// The one `.flv` recording of `app/name`.
pub(super) fn flv_recording(data: &Path, app: &str, name: &str) -> PathBuf {
    let dir = data.join("flv").join(app).join(name);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flv"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Waits until the recordings of `key` are finalised (the publisher left).
pub(super) fn wait_recorded(server: &Server, key: &str) {
    for what in ["FLV recording of", "HLS recording of"] {
        let found = server.wait_for_log_where(
            |l| l.contains(&format!("{what} {key}")) && l.contains("finished"),
            Duration::from_secs(15),
        );
        assert!(found.is_some(), "{what} {key} never finished");
    }
}

#[test]
fn srt_publish_reaches_rtmp_http_flv_srt_and_the_recordings() {
    if !require_tool("ffmpeg") {
        return;
    }
    let (mut server, port) = start(&[]);
    let mut publisher = ffmpeg_publish_srt(&srt_url(port, "#!::r=live/s,m=publish", ""));
    assert!(
        server
            .wait_for_log(
                "live/s: SRT publish from 127.0.0.1",
                Duration::from_secs(10)
            )
            .is_some(),
        "no SRT publish: {}",
        publisher.stderr()
    );
    // Let the first GOP arrive, then read it back three ways at once (the fixture lasts 10 s).
    std::thread::sleep(Duration::from_millis(1500));
    let readers: Vec<_> = [
        ("RTMP", server.rtmp_url("live/s")),
        ("HTTP-FLV", server.http_url("live/s.flv")),
        ("SRT", srt_url(port, "#!::r=live/s,m=request", "")),
    ]
    .into_iter()
    .map(|(what, url)| std::thread::spawn(move || assert_reads(&url, what)))
    .collect();
    // While they read: the SRT connections in /metrics and /api/streams.
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = String::from_utf8(http_get(server.http, "/metrics", READ).body).unwrap();
    assert!(
        metrics.contains("rtmpd_srt_connections{role=\"publisher\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rtmpd_srt_connections{role=\"player\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rtmpd_srt_latency_ms{stream=\"live/s\"")
                && l.contains("role=\"publisher\"")
                && l.ends_with(" 120")),
        "{metrics}"
    );
    let api = http_get(server.http, "/api/streams", READ);
    let v: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
    let s = &v["streams"][0];
    assert_eq!(s["stream"], "s", "{v}");
    assert!(
        s["publisher"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{v}"
    );
    let srt = s["srt"].as_array().expect("srt connections");
    assert!(srt.iter().any(|c| c["role"] == "publisher"
        && c["rtt_ms"].is_number()
        && c["packets_lost"].is_number()
        && c["latency_ms"] == 120));
    for r in readers {
        r.join().unwrap();
    }
    let status = publisher.wait_or_panic(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg publish: {}", publisher.stderr());
    assert_eq!(
        publisher.stderr().trim(),
        "",
        "ffmpeg publish printed errors"
    );
    wait_recorded(&server, "live/s");
    assert!(server.log_contains("live/s: SRT publisher 127.0.0.1"));
    let data = server.data_dir.clone();
    assert_decodes(&data.join("hls/live/s/index.m3u8"), "HLS recording");
    assert_decodes(&flv_recording(&data, "live", "s"), "FLV recording");
    server.assert_running();
}

#[test]
fn srt_publish_short_form_with_passphrase_and_a_wrong_one_refused() {
    if !require_tool("ffmpeg") {
        return;
    }
    let (mut server, port) = start(&["--srt-passphrase", PASS]);
    // A wrong passphrase: libsrt gives up on the handshake, nothing is published.
    let mut wrong = ffmpeg_publish_srt(&srt_url(
        port,
        "publish:live/enc",
        "&passphrase=not-the-right-one",
    ));
    let status = wrong.wait_or_panic(Duration::from_secs(20));
    assert!(!status.success(), "a wrong passphrase was let in");
    assert!(!server.log_contains("SRT publish from"));
    // No passphrase at all: refused as well.
    let mut none = ffmpeg_publish_srt(&srt_url(port, "publish:live/enc", ""));
    assert!(!none.wait_or_panic(Duration::from_secs(20)).success());
    assert!(!server.log_contains("SRT publish from"));

    let url = srt_url(port, "publish:live/enc", &format!("&passphrase={PASS}"));
    let mut publisher = ffmpeg_publish_srt(&url);
    assert!(server
        .wait_for_log("live/enc: SRT publish from", Duration::from_secs(10))
        .is_some());
    std::thread::sleep(Duration::from_millis(1500));
    assert_reads(&server.rtmp_url("live/enc"), "RTMP of an encrypted publish");
    let play = srt_url(
        port,
        "#!::r=live/enc,m=request",
        &format!("&passphrase={PASS}"),
    );
    assert_reads(&play, "SRT play with the passphrase");
    let status = publisher.wait_or_panic(Duration::from_secs(30));
    assert!(status.success(), "{}", publisher.stderr());
    wait_recorded(&server, "live/enc");
    assert_decodes(
        &flv_recording(&server.data_dir.clone(), "live", "enc"),
        "FLV recording",
    );
    server.assert_running();
}

#[test]
fn srt_second_publisher_is_refused_and_a_play_of_nothing_too() {
    if !require_tool("ffmpeg") {
        return;
    }
    let (mut server, port) = start(&[]);
    let mut nothing = ffmpeg_pull_null(&srt_url(port, "#!::r=live/none,m=request", ""), 1);
    assert!(
        !nothing.wait_or_panic(READ).success(),
        "a play of no stream"
    );
    let mut first = ffmpeg_publish_srt(&srt_url(port, "publish:live/busy", ""));
    assert!(server
        .wait_for_log("live/busy: SRT publish from", Duration::from_secs(10))
        .is_some());
    let mut second = ffmpeg_publish_srt(&srt_url(port, "publish:live/busy", ""));
    assert!(
        !second.wait_or_panic(Duration::from_secs(20)).success(),
        "a second publisher of a live stream"
    );
    assert!(server.log_contains("publish live/busy refused: stream busy"));
    assert!(first.wait_or_panic(Duration::from_secs(30)).success());
    server.assert_running();
}

#[test]
fn srt_publish_from_srt_live_transmit() {
    if !require_tool("ffmpeg") || !require_tool("srt-live-transmit") {
        return;
    }
    let (mut server, port) = start(&[]);
    let dir = TempDir::new("srt-slt");
    let ts = dir.join("fixture.ts");
    let mut mk = Command::new("ffmpeg");
    mk.args(["-v", "error", "-y", "-i"])
        .arg(fixture_path("fixture.flv"))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&ts);
    assert!(Proc::spawn(mk).wait_or_panic(READ).success());
    let bytes = std::fs::read(&ts).unwrap();
    let url = srt_url(port, "#!::r=live/slt,m=publish", "");
    let mut child = Command::new("srt-live-transmit")
        .args(["-q", "-chunk", "1316", "file://con"])
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("srt-live-transmit runs");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // After the handshake; then about real time (the fixture: 10 s).
        std::thread::sleep(Duration::from_millis(700));
        let per_10ms = (bytes.len() / 1000).div_ceil(1316).max(1) * 1316;
        for chunk in bytes.chunks(per_10ms) {
            if stdin.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(1000));
    });
    let published = server.wait_for_log("live/slt: SRT publish from", Duration::from_secs(10));
    let started = Instant::now();
    if published.is_some() {
        std::thread::sleep(Duration::from_millis(1500));
        assert_reads(&server.rtmp_url("live/slt"), "RTMP of srt-live-transmit");
    }
    writer.join().unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        published.is_some(),
        "srt-live-transmit did not publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("srt-live-transmit published for {:?}", started.elapsed());
    for l in server
        .logs()
        .iter()
        .filter(|l| l.contains("SRT") || l.contains("MPEG"))
    {
        eprintln!("{l}");
    }
    wait_recorded(&server, "live/slt");
    assert_decodes(
        &flv_recording(&server.data_dir.clone(), "live", "slt"),
        "FLV recording",
    );
    server.assert_running();
}

#[test]
fn rtmp_publish_plays_over_srt() {
    if !require_tool("ffmpeg") {
        return;
    }
    let (mut server, port) = start(&[]);
    let mut publisher = ffmpeg_publish("fixture.flv", &server.rtmp_url("live/r"), &[]);
    assert!(server
        .wait_for_log("live/r: publish from", Duration::from_secs(10))
        .is_some());
    std::thread::sleep(Duration::from_millis(1000));
    let started = Instant::now();
    assert_reads(
        &srt_url(port, "play:live/r", ""),
        "SRT play of an RTMP publish",
    );
    // 3 s of media: as it comes, not in bursts a timer lets through late.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(publisher.wait_or_panic(Duration::from_secs(30)).success());
    assert!(server
        .wait_for_log("live/r: SRT player 127.0.0.1", Duration::from_secs(5))
        .is_some());
    server.assert_running();
}
