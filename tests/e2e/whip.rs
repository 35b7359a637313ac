//! WHIP ingest end to end: FFmpeg 9's WHIP muxer (`tools/ffmpeg9/ffmpeg -f whip`) publishes
//! H.264 + Opus to `POST /{app}/{stream}/whip`; Debian's FFmpeg reads the stream back over
//! RTMP, HTTP-FLV and HLS with no decode errors and the source's frame count within one GOP;
//! every recording decodes. Bad input (garbage SDP, a second publisher, wild RTP from a hostile
//! str0m publisher: jumping sequence numbers and timestamps, an SSRC not in its SDP, a 10 MB
//! frame) leaves the other stream and its viewer unharmed; a publisher that goes silent is
//! unpublished and its players told.
// The hostile-publisher test stops a process with SIGSTOP (Unix only); what only it uses is
// unused elsewhere.
#![cfg_attr(not(unix), allow(unused_imports, dead_code))]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Input, Output, Rtc, RtcConfig};

use crate::util::whep::whep_post;
use crate::util::*;

/// Source: 25 fps, a keyframe every 50 frames (one GOP = 2 s).
const FPS: u64 = 25;
const GOP: u64 = 50;

/// FFmpeg 9 (the WHIP muxer), or `None` after "skipped: ..." (a panic with
/// RTMPD_REQUIRE_TOOLS=1).
fn ffmpeg9() -> Option<PathBuf> {
    let p = std::env::var_os("RTMPD_FFMPEG9")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ffmpeg9/ffmpeg"));
    if p.is_file() {
        return Some(p);
    }
    let msg = format!(
        "skipped: tools/ffmpeg9/ffmpeg not found (test {})",
        test_name()
    );
    if std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{msg}, and RTMPD_REQUIRE_TOOLS=1 forbids skipping");
    }
    eprintln!("{msg}");
    None
}

/// FFmpeg 9 publishes `secs` of testsrc2 (H.264 baseline, no B-frames) and a sine (Opus) over
/// WHIP to `url`.
fn whip_publish(ffmpeg9: &Path, url: &str, secs: u64) -> Proc {
    let mut cmd = Command::new(ffmpeg9);
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size=640x360:rate={FPS}"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            &secs.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-profile:v", "baseline", "-bf", "0", "-g", &GOP.to_string()])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "libopus", "-ac", "2", "-ar", "48000",
        ])
        .args(["-f", "whip", url]);
    Proc::spawn(cmd)
}

/// Reads `url` to its end with Debian's ffprobe without decoding: video packets, and stderr.
fn count_video_packets(url: &str, timeout: Duration) -> (u64, String) {
    let mut c = Command::new("ffprobe");
    c.args(["-v", "error", "-count_packets", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(url);
    let mut p = Proc::spawn(c);
    let st = p.wait_or_panic(timeout);
    assert!(st.success(), "ffprobe {url}: {st}: {}", p.stderr());
    let out = p.stdout();
    let first = out
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .find(|l| !l.is_empty());
    (first.and_then(|l| l.parse().ok()).unwrap_or(0), p.stderr())
}

/// Decodes `url` (to its end) with Debian's ffprobe: the video frame count, and stderr.
fn count_video_frames(url: &str, timeout: Duration) -> (u64, String) {
    let mut c = Command::new("ffprobe");
    c.args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(url);
    let mut p = Proc::spawn(c);
    let st = p.wait_or_panic(timeout);
    assert!(st.success(), "ffprobe {url}: {st}: {}", p.stderr());
    // HLS lists the stream twice (in its program and alone): the first count.
    let out = p.stdout();
    let first = out
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .find(|l| !l.is_empty());
    let n = first.and_then(|l| l.parse().ok()).unwrap_or(0);
    (n, p.stderr())
}

/// Decodes every track of `url` with `ffmpeg` (FFmpeg 9: Opus in FLV is Enhanced RTMP).
fn assert_decodes_clean(ffmpeg: &Path, url: &str, what: &str) {
    let mut c = Command::new(ffmpeg);
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(url)
        .args(["-f", "null", "-"]);
    let mut p = Proc::spawn(c);
    let st = p.wait_or_panic(Duration::from_secs(60));
    let err = p.stderr();
    assert!(st.success() && err.trim().is_empty(), "{what}: {st}: {err}");
}

fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out
}

fn wait_unpublished(server: &Server, key: &str, timeout: Duration) -> String {
    server
        .wait_for_log_where(
            |l| l.contains(&format!("{key}: WHIP publisher")) && l.contains(" left after "),
            timeout,
        )
        .unwrap_or_else(|| panic!("{key} never left: {:?}", server.logs()))
}

fn wait_recorded(server: &Server, key: &str) {
    for what in ["FLV recording of", "HLS recording of"] {
        let found = server.wait_for_log_where(
            |l| l.contains(&format!("{what} {key}")) && l.contains("finished"),
            Duration::from_secs(15),
        );
        assert!(found.is_some(), "{what} {key} never finished");
    }
    let mp4 = format!("/mp4/{key} (");
    let found = server.wait_for_log_where(
        |l| l.contains(&mp4) && l.contains("finished"),
        Duration::from_secs(15),
    );
    assert!(found.is_some(), "fMP4 {key} never finished");
}

#[test]
fn ffmpeg9_whip_publish_reaches_rtmp_http_flv_hls_and_every_recording() {
    let Some(ff9) = ffmpeg9() else {
        return;
    };
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let mut server = Server::builder().start();
    const SECS: u64 = 12;
    let url = server.http_url("live/w/whip");
    let mut publisher = whip_publish(&ff9, &url, SECS);
    let line = server
        .wait_for_log(
            "live/w: WHIP publish from 127.0.0.1",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| panic!("no WHIP publish: {}", publisher.stderr()));
    assert!(line.contains("video true, audio true"), "{line}");
    assert!(server
        .wait_for_log("live/w: WHIP publisher", Duration::from_secs(10))
        .is_some_and(|l| l.contains("connected in")));
    // No onMetaData over WHIP: /api/streams takes the picture size from the SPS.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let api: serde_json::Value = serde_json::from_slice(
            &http_get(server.http, "/api/streams", Duration::from_secs(5)).body,
        )
        .unwrap();
        let video = &api["streams"][0]["video"];
        if video["width"] == 640 && video["height"] == 360 {
            // The publisher's address is FFmpeg's (it was null for WHIP, which has no TCP
            // connection of its own).
            let publisher = api["streams"][0]["publisher"].as_str().unwrap_or("");
            assert!(publisher.starts_with("127.0.0.1:"), "{api}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "/api/streams: {api}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = http_get(server.http, "/metrics", Duration::from_secs(5)).body_text();
    assert!(
        metrics.lines().any(|l| l == "rtmpd_streams 1"),
        "the WHIP publisher is counted: {metrics}"
    );
    // A reader from the first GOP to the end: the source's frames within one GOP.
    let flv = server.http_url("live/w.flv");
    let whole = std::thread::spawn(move || count_video_frames(&flv, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(2500));
    // Joiners over RTMP and HTTP-FLV decode without an error: Debian's FFmpeg (5.1) the H.264
    // (it has no Opus in FLV, an Enhanced RTMP tag), FFmpeg 9 both tracks.
    let mut readers = Vec::new();
    for (what, url) in [
        ("RTMP", server.rtmp_url("live/w")),
        ("HTTP-FLV", server.http_url("live/w.flv")),
    ] {
        for (ffmpeg, map) in [(PathBuf::from("ffmpeg"), "0:v:0"), (ff9.clone(), "0")] {
            let url = url.clone();
            readers.push(std::thread::spawn(move || {
                let mut c = Command::new(&ffmpeg);
                c.args(["-hide_banner", "-nostdin", "-v", "error", "-i", &url])
                    .args(["-map", map, "-t", "3", "-f", "null", "-"]);
                let mut p = Proc::spawn(c);
                let st = p.wait_or_panic(Duration::from_secs(30));
                let err = p.stderr();
                let who = ffmpeg.display();
                assert!(
                    st.success() && err.trim().is_empty(),
                    "{what} by {who}: {st}: {err}"
                );
            }));
        }
    }
    // A WHEP viewer gets it as published: H.264 from a keyframe with its parameter sets, then
    // live, and Opus (lenient counts: the box may be busy).
    let offer = crate::util::whep::WhepOffer::new();
    let r = whep_post(
        server.http,
        "/live/w/whep",
        &["Content-Type: application/sdp"],
        offer.sdp.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body_text());
    let mut viewer = offer.answered(&r.body_text(), r.header("location").unwrap());
    viewer.run_for(Duration::from_secs(4));
    assert!(viewer.connected, "the WHEP viewer never connected");
    let first = viewer.video_frames.first().expect("WHEP video");
    assert!(first.key && first.parameter_sets, "{first:?}");
    // Live frames follow the cached GOP's burst (frames from a WHIP publisher reach the WHEP
    // feeds, not only the cache).
    let span = viewer.video_frames.last().unwrap().at - first.at;
    assert!(
        span >= Duration::from_secs(2),
        "WHEP video for {span:?} only"
    );
    assert!(
        viewer.video_frames.len() >= 15,
        "{}",
        viewer.video_frames.len()
    );
    assert!(
        viewer.audio_frames >= 60,
        "{} Opus packets",
        viewer.audio_frames
    );
    let metrics = String::from_utf8(http_get(server.http, "/metrics", Duration::from_secs(5)).body);
    assert!(metrics.unwrap().contains("rtmpd_whip_publishers 1"));
    for r in readers {
        r.join().unwrap();
    }
    let st = publisher.wait_or_panic(Duration::from_secs(40));
    assert!(
        st.success(),
        "ffmpeg9 -f whip: {st}: {}",
        publisher.stderr()
    );
    let left = wait_unpublished(&server, "live/w", Duration::from_secs(10));
    assert!(left.contains("(DELETE)"), "{left}");
    let (n, err) = whole.join().unwrap();
    let source = SECS * FPS;
    assert!(err.trim().is_empty(), "HTTP-FLV decode errors: {err}");
    assert!(
        n + GOP >= source && n <= source,
        "HTTP-FLV: {n} frames of {source}"
    );
    wait_recorded(&server, "live/w");
    // HLS over HTTP (the recording's playlist on the web port) and every recording.
    let hls = server.web_url("/hls/live/w/index.m3u8");
    let (n, err) = count_video_frames(&hls, Duration::from_secs(60));
    assert!(err.trim().is_empty(), "HLS decode errors: {err}");
    assert!(
        n + GOP >= source && n <= source,
        "HLS: {n} frames of {source}"
    );
    let data = server.data_dir.clone();
    let mut recordings = files_under(&data.join("flv"), "flv");
    // The fMP4 recordings: the merged MP4 and every playlist of both forms.
    let mp4 = files_under(&data.join("mp4"), "mp4");
    recordings.extend(mp4.into_iter().filter(|p| p.ends_with("stream_full.mp4")));
    recordings.extend(files_under(&data.join("mp4"), "m3u8"));
    assert!(
        recordings.iter().any(|p| p.ends_with("stream_full.mp4")),
        "{recordings:?}"
    );
    assert!(!recordings.is_empty());
    for f in &recordings {
        assert_decodes_clean(&ff9, f.to_str().unwrap(), &f.display().to_string());
    }
    let flv_file = recordings
        .iter()
        .find(|p| p.extension().is_some_and(|x| x == "flv"));
    let (n, _) = count_video_frames(flv_file.unwrap().to_str().unwrap(), Duration::from_secs(60));
    assert!(
        n + GOP >= source && n <= source,
        "FLV recording: {n} frames of {source}"
    );
    server.assert_running();
}

/// An OBS-style offer (session-level credentials, no candidates, `a=group:LS`, capitals).
fn obs_offer() -> String {
    let s = include_str!("../../src/webrtc/ingest_tests.rs");
    let start = s.find("const OBS_OFFER: &str = \"").unwrap() + 25;
    let end = s[start..].find("\";").unwrap() + start;
    s[start..end].replace("\\r\\n\\\n", "\r\n")
}

#[test]
fn whip_http_answers_cors_garbage_a_second_publisher_and_delete() {
    let mut server = Server::builder().no_web().start();
    let http = server.http;
    // OPTIONS: CORS for a page on another origin.
    let r = http_request(
        http,
        "OPTIONS",
        "/live/h/whip",
        1,
        &[
            "Origin: http://example.com",
            "Access-Control-Request-Method: POST",
        ],
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    // Garbage SDP: 400 with the reason; not published.
    let sdp = ["Content-Type: application/sdp"];
    let r = whep_post(http, "/live/h/whip", &sdp, b"this is not SDP");
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert!(r.body_text().contains("SDP offer"), "{}", r.body_text());
    let r = whep_post(http, "/live/h/whip", &["Content-Type: text/plain"], b"v=0");
    assert_eq!(r.status, 415);
    // The OBS offer is answered: 201, Location, the answer.
    let offer = obs_offer();
    assert!(offer.contains("a=group:LS") && !offer.contains("a=candidate"));
    let r = whep_post(http, "/live/h/whip", &sdp, offer.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body_text());
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let location = r.header("location").unwrap().to_string();
    assert!(location.starts_with("/whip/session/"), "{location}");
    assert!(r.body_text().contains("a=candidate:"), "{}", r.body_text());
    // A second publisher of the live key: 409 (the first has not been idle for long).
    let r = whep_post(http, "/live/h/whip", &sdp, offer.as_bytes());
    assert_eq!(r.status, 409, "{}", r.body_text());
    // PATCH: as WHEP (no trickle ICE).
    let r = http_request(http, "PATCH", &location, 1, &[], Duration::from_secs(5));
    assert_eq!(r.status, 405);
    // DELETE ends the publish; a second DELETE finds nothing.
    let r = http_request(http, "DELETE", &location, 1, &[], Duration::from_secs(5));
    assert_eq!(r.status, 200);
    wait_unpublished(&server, "live/h", Duration::from_secs(5));
    let r = http_request(http, "DELETE", &location, 1, &[], Duration::from_secs(5));
    assert_eq!(r.status, 404);
    // The key is free again.
    let r = whep_post(http, "/live/h/whip", &sdp, offer.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body_text());
    server.assert_running();
}

#[test]
fn a_whip_publish_needs_the_publish_token_as_bearer_or_query() {
    let mut server = Server::builder()
        .no_web()
        .args(["--publish-token", "sekrit"])
        .start();
    let http = server.http;
    let offer = obs_offer();
    let sdp = "Content-Type: application/sdp";
    let r = whep_post(http, "/live/t/whip", &[sdp], offer.as_bytes());
    assert_eq!(r.status, 401, "{}", r.body_text());
    let r = whep_post(
        http,
        "/live/t/whip",
        &[sdp, "Authorization: Bearer wrong"],
        offer.as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.body_text());
    let r = whep_post(
        http,
        "/live/t/whip",
        &[sdp, "Authorization: Bearer sekrit"],
        offer.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body_text());
    let r = whep_post(http, "/live/t2/whip?token=sekrit", &[sdp], offer.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body_text());
    server.assert_running();
}

/// A hostile WHIP publisher: str0m in RTP mode over a real UDP socket, writing RTP packets of
/// its own making (any sequence number, timestamp, SSRC and size).
struct Hostile {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    video: Mid,
    video_pt: Pt,
    location: String,
}

impl Hostile {
    fn publish(http: SocketAddr, path: &str) -> Hostile {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(rtmpd::webrtc::crypto::provider())
            .set_rtp_mode(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let sdp = offer.to_sdp_string();
        let r = whep_post(
            http,
            path,
            &["Content-Type: application/sdp"],
            sdp.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body_text());
        let answer = r.body_text();
        let video_pt: u8 = answer
            .lines()
            .find_map(|l| {
                let (pt, codec) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
                codec.starts_with("H264/").then(|| pt.parse().ok())?
            })
            .expect("H.264 in the answer");
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        Hostile {
            rtc,
            sock,
            local,
            video,
            video_pt: video_pt.into(),
            location: r.header("location").unwrap().to_string(),
        }
    }

    /// Datagrams both ways and timers for `dur`.
    fn run_for(&mut self, dur: Duration) {
        let end = Instant::now() + dur;
        let mut buf = vec![0u8; 2048];
        loop {
            let deadline = self.drain();
            if Instant::now() >= end {
                return;
            }
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                if let Ok(contents) = buf[..n].try_into() {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source: from,
                            destination: self.local,
                            contents,
                        },
                    );
                    if self.rtc.accepts(&input) {
                        self.rtc.handle_input(input).unwrap();
                    }
                }
            }
            let now = Instant::now();
            if deadline <= now {
                self.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
        }
    }

    fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Output::Event(_) => {}
            }
        }
    }

    fn connect(&mut self) {
        let end = Instant::now() + Duration::from_secs(10);
        while !self.rtc.is_connected() {
            assert!(
                Instant::now() < end,
                "the hostile publisher never connected"
            );
            self.run_for(Duration::from_millis(20));
        }
    }

    /// One RTP packet on `ssrc` (the video m-line's own when `None`).
    fn rtp(&mut self, ssrc: Option<Ssrc>, seq: u64, time: u32, marker: bool, payload: Vec<u8>) {
        let (video, pt) = (self.video, self.video_pt);
        let mut api = self.rtc.direct_api();
        let tx = match ssrc {
            Some(s) => api.declare_stream_tx(s, None, video, None),
            None => api.stream_tx_by_mid(video, None).expect("the video stream"),
        };
        let w = RtpWrite::new(pt, SeqNo::from(seq), time, Instant::now(), payload).marker(marker);
        tx.write_rtp(w);
        self.drain();
    }
}

// SIGSTOP makes the silent publisher: Unix only.
#[cfg(unix)]
#[test]
fn wild_rtp_and_a_silent_publisher_leave_other_streams_unharmed() {
    let Some(ff9) = ffmpeg9() else {
        return;
    };
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let mut server = Server::builder().no_web().start();
    let mut good = whip_publish(&ff9, &server.http_url("live/good/whip"), 120);
    assert!(
        server
            .wait_for_log("live/good: WHIP publisher", Duration::from_secs(15))
            .is_some(),
        "{}",
        good.stderr()
    );
    std::thread::sleep(Duration::from_millis(2500));
    // A viewer of the good stream from now until its publisher goes silent and is ended.
    let flv = server.http_url("live/good.flv");
    let started = Instant::now();
    let viewer = std::thread::spawn(move || count_video_packets(&flv, Duration::from_secs(90)));
    let rss_before = proc_status_kb(server.pid(), "VmRSS");

    let mut h = Hostile::publish(server.http, "/live/wild/whip");
    h.connect();
    // A keyframe of sorts: SPS, PPS, an IDR slice.
    let sps = vec![
        0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x80, 0x88,
    ];
    h.rtp(None, 1, 9000, false, sps);
    h.rtp(None, 2, 9000, false, vec![0x68, 0xce, 0x3c, 0x80]);
    h.rtp(
        None,
        3,
        9000,
        true,
        [&[0x65u8, 0x88][..], &[0x5a; 500]].concat(),
    );
    // Wild sequence numbers and timestamps.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        h.rtp(
            None,
            x & 0xffff_ffff,
            (x >> 32) as u32,
            x & 1 == 0,
            vec![0x41, 0x9a, x as u8],
        );
    }
    h.run_for(Duration::from_millis(300));
    // An SSRC the SDP never named.
    for i in 0..100 {
        let payload = vec![0x65, 0x88, i as u8, 7, 7, 7];
        h.rtp(
            Some(Ssrc::from(0x0bad_cafe)),
            10 + i,
            90_000 + 3000 * i as u32,
            true,
            payload,
        );
    }
    h.run_for(Duration::from_millis(300));
    // A 10 MB "frame": FU-A fragments with one timestamp.
    let frag = 1100;
    let n = 10 * 1024 * 1024 / frag;
    for i in 0..n {
        let fu_header = match i {
            0 => 0x80 | 5,
            _ if i == n - 1 => 0x40 | 5,
            _ => 5,
        };
        let mut p = vec![0x7c, fu_header];
        p.resize(2 + frag, 0x42);
        h.rtp(None, 1000 + i as u64, 500_000, i == n - 1, p);
        // About 20 Mbit/s: a flood, not a denial of service of the whole port.
        if i % 25 == 0 {
            h.run_for(Duration::from_millis(10));
        }
    }
    h.run_for(Duration::from_millis(1000));
    let rss_after = proc_status_kb(server.pid(), "VmRSS");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    server.assert_running();
    // str0m gives up on a stream whose sequence numbers jumped wildly (the later packets look
    // old), so the wild publisher may already have been ended as silent (no frames for 10 s);
    // else the DELETE ends it.
    let r = http_request(
        server.http,
        "DELETE",
        &h.location,
        1,
        &[],
        Duration::from_secs(5),
    );
    let left = wait_unpublished(&server, "live/wild", Duration::from_secs(5));
    match r.status {
        200 => assert!(left.contains("(DELETE)"), "{left}"),
        404 => assert!(left.contains("no media for 10 s"), "{left}"),
        s => panic!("DELETE of the wild publisher: {s}"),
    }

    // The good publisher goes silent (stopped): unpublished after the media timeout, and its
    // viewer is told (its read ends).
    let stopped = Instant::now();
    let active = stopped.duration_since(started);
    // SAFETY: kill(2) on a pid we spawned.
    unsafe {
        libc::kill(good.pid() as libc::pid_t, libc::SIGSTOP);
    }
    let left = wait_unpublished(&server, "live/good", Duration::from_secs(20));
    // str0m's ICE-lite agent sees the binding requests stop before our media timeout.
    assert!(
        left.contains("no media for 10 s") || left.contains("ICE consent expired"),
        "{left}"
    );
    let waited = stopped.elapsed();
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    let (frames, err) = viewer.join().unwrap();
    good.kill();
    assert!(err.trim().is_empty(), "the good stream's viewer: {err}");
    // The stream kept flowing through the flood (the viewer only counts packets; FFmpeg's
    // encoder on a busy box may run behind real time, so half the nominal rate is the bar).
    let expected = (active.as_secs_f64() - 2.0) * FPS as f64 / 2.0;
    assert!(frames as f64 >= expected, "{frames} frames in {active:?}");
    // Under a flood on the same port the good publisher may lose a packet: then its frames
    // up to the next keyframe were dropped, never passed on broken. Its recording decodes.
    wait_recorded(&server, "live/good");
    let rec = files_under(&server.data_dir.join("flv/live/good"), "flv");
    assert_decodes_clean(
        &ff9,
        rec[0].to_str().unwrap(),
        "the good stream's FLV recording",
    );
    server.assert_running();
}

#[test]
fn an_on_publish_hook_judges_a_whip_offer() {
    // The hook allows streams whose name starts with "ok", after 3 s for "slow" ones
    // (tests/e2e/access.rs): the offer waits for the verdict with its body.
    let hooks = super::access::HookService::start();
    let mut server = Server::builder()
        .no_web()
        .args([
            "--on-publish",
            &hooks.url("/on_publish"),
            "--hook-timeout",
            "6",
        ])
        .start();
    let sdp = "Content-Type: application/sdp";
    let offer = obs_offer();
    let r = whep_post(server.http, "/live/okwhip/whip", &[sdp], offer.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body_text());
    assert!(r.header("location").unwrap().starts_with("/whip/session/"));
    let t = Instant::now();
    let r = whep_post(server.http, "/live/slowwhip/whip", &[sdp], offer.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body_text());
    assert!(t.elapsed() >= Duration::from_secs(3));
    let r = whep_post(server.http, "/live/badwhip/whip", &[sdp], offer.as_bytes());
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert!(!server.log_contains("live/badwhip: WHIP publish"));
    let bodies = hooks.bodies.lock().unwrap().join("\n");
    assert!(
        bodies.contains("\"protocol\":\"webrtc\"") && bodies.contains("okwhip"),
        "{bodies}"
    );
    server.assert_running();
}
