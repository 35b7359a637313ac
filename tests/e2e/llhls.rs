//! LL-HLS end to end (issue 16 point 3): the binary with `--hls-low-latency` and a publisher;
//! the playlist's LL-HLS tags, init/segment/part bodies, a blocking reload answered as soon as
//! the next part exists, FFmpeg decoding the playlist, the 400/404/503 answers, the parked
//! bound and timeout, a client that leaves, and `--play-token` on the playlist.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::*;

const WAIT_LIVE: Duration = Duration::from_secs(10);

fn llhls_server(extra: &[&str]) -> Server {
    let mut args = vec![
        "--hls-low-latency",
        "--no-flv-record",
        "--no-hls",
        "--no-mp4",
    ];
    args.extend_from_slice(extra);
    Server::start_args(&args)
}

fn publish(server: &Server, name: &str, opts: PublishOpts) -> RustPublisher {
    RustPublisher::start(server.rtmp, "live", name, "fixture.flv", opts).expect("publish")
}

fn path(name: &str, file: &str) -> String {
    format!("/llhls/live/{name}/{file}")
}

/// The playlist once it lists at least one complete segment.
fn playlist_when_ready(addr: SocketAddr, name: &str) -> String {
    let deadline = Instant::now() + WAIT_LIVE;
    loop {
        let r = http_get(addr, &path(name, "index.m3u8"), Duration::from_secs(5));
        if r.status == 200 && r.body_text().contains("#EXTINF:") {
            return r.body_text();
        }
        assert!(
            Instant::now() < deadline,
            "no LL-HLS playlist: {} {}",
            r.status,
            r.body_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The edge of a playlist: (MSN of the open segment, parts listed in it).
fn open_segment(text: &str) -> (u64, u64) {
    let media_sequence: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .expect("MEDIA-SEQUENCE")
        .parse()
        .unwrap();
    let complete = text.lines().filter(|l| l.starts_with("#EXTINF:")).count() as u64;
    let after_last = text.rsplit("#EXTINF:").next().unwrap();
    let parts = after_last
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .count() as u64;
    (media_sequence + complete, parts)
}

fn hint(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .expect("PRELOAD-HINT");
    line.split("URI=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_string()
}

fn top_box(body: &[u8], at: usize) -> &[u8] {
    &body[at + 4..at + 8]
}

/// A GET sent on a socket of its own, for requests that are meant to wait.
fn send_get(addr: SocketAddr, target: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&request_bytes("GET", target, 1, &[])).unwrap();
    s
}

fn read_answer(s: &mut TcpStream, within: Duration) -> HttpResponse {
    let start = Instant::now();
    read_response(s, start, start + within, false).expect("an answer")
}

fn metric(server: &Server, name: &str) -> Option<u64> {
    let m = http_get(server.http, "/metrics", Duration::from_secs(5)).body_text();
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn playlist_media_and_blocking_reload() {
    let mut server = llhls_server(&[]);
    let name = unique_stream("ll");
    let _p = publish(
        &server,
        &name,
        PublishOpts {
            loops: 5,
            ..PublishOpts::default()
        },
    );
    let text = playlist_when_ready(server.http, &name);
    for tag in [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MAP:URI=\"init.mp4\"",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=",
        "#EXT-X-PART-INF:PART-TARGET=0.333",
        "#EXT-X-PROGRAM-DATE-TIME:",
        "#EXT-X-PART:DURATION=",
        "INDEPENDENT=YES",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part",
    ] {
        assert!(text.contains(tag), "{tag} missing:\n{text}");
    }
    assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
    let r = http_get(
        server.http,
        &path(&name, "index.m3u8"),
        Duration::from_secs(5),
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(r.header("cache-control"), Some("max-age=1"));

    // Init, the first listed segment and a part are fMP4 with the right top boxes.
    let init = http_get(
        server.http,
        &path(&name, "init.mp4"),
        Duration::from_secs(5),
    );
    assert_eq!((init.status, top_box(&init.body, 0)), (200, &b"ftyp"[..]));
    assert_eq!(init.header("cache-control"), Some("max-age=60"));
    let seg = text
        .lines()
        .find(|l| l.starts_with("seg"))
        .expect("a segment URI");
    let seg = http_get(server.http, &path(&name, seg), Duration::from_secs(5));
    assert_eq!((seg.status, top_box(&seg.body, 0)), (200, &b"styp"[..]));
    let part = text
        .lines()
        .filter_map(|l| l.split("URI=\"").nth(1))
        .find(|u| u.starts_with("part"))
        .map(|u| u.split('"').next().unwrap())
        .expect("a part URI");
    let part = http_get(server.http, &path(&name, part), Duration::from_secs(5));
    assert_eq!(part.status, 200);
    assert!(part.body.windows(4).any(|w| w == b"moof"));

    // A blocking reload for the next part returns as soon as it exists: well under the 6 s
    // timeout, about one part (333 ms) at most after the request.
    let text = http_get(
        server.http,
        &path(&name, "index.m3u8"),
        Duration::from_secs(5),
    )
    .body_text();
    let (msn, parts) = open_segment(&text);
    let hinted = hint(&text);
    let target = format!(
        "{}?_HLS_msn={msn}&_HLS_part={parts}",
        path(&name, "index.m3u8")
    );
    let start = Instant::now();
    let r = http_get(server.http, &target, Duration::from_secs(10));
    let waited = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        r.body_text().contains(&format!("URI=\"{hinted}\"")),
        "the answer lists the part that was hinted ({hinted}):\n{}",
        r.body_text()
    );
    assert!(
        waited < Duration::from_millis(1500),
        "blocking reload took {waited:?}"
    );
    eprintln!("blocking reload for the next part answered after {waited:?}");

    // The hinted part itself: parked, then its bytes.
    let text = r.body_text();
    let hinted = hint(&text);
    let start = Instant::now();
    let r = http_get(server.http, &path(&name, &hinted), Duration::from_secs(10));
    assert_eq!(r.status, 200);
    assert!(r.body.windows(4).any(|w| w == b"moof"));
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );

    // Bad and too-far queries: 400 at once; unknown names and streams: 404.
    for q in ["_HLS_part=1", "_HLS_msn=x", "_HLS_msn=1&_HLS_msn=2"] {
        let r = http_get(
            server.http,
            &format!("{}?{q}", path(&name, "index.m3u8")),
            Duration::from_secs(5),
        );
        assert_eq!(r.status, 400, "{q}");
    }
    let far = format!("{}?_HLS_msn={}", path(&name, "index.m3u8"), msn + 10);
    assert_eq!(
        http_get(server.http, &far, Duration::from_secs(5)).status,
        400
    );
    for p in [
        path(&name, "seg999999.m4s"),
        path(&name, "part999999.m4s"),
        path(&name, "init7.mp4"),
        path(&name, "other.txt"),
        path("nosuchstream", "index.m3u8"),
        path("nosuchstream", "init.mp4"),
    ] {
        assert_eq!(
            http_get(server.http, &p, Duration::from_secs(5)).status,
            404,
            "{p}"
        );
    }
    server.assert_running();
}

#[test]
fn ffmpeg_decodes_the_llhls_playlist() {
    if !require_tool("ffmpeg") {
        return;
    }
    let mut server = llhls_server(&[]);
    let name = unique_stream("llff");
    let _p = publish(
        &server,
        &name,
        PublishOpts {
            loops: 5,
            ..PublishOpts::default()
        },
    );
    playlist_when_ready(server.http, &name);
    let url = server.http_url(&path(&name, "index.m3u8"));
    let mut ff = ffmpeg_pull_null(&url, 3);
    let status = ff.wait_or_panic(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed: {}", ff.stderr());
    assert_eq!(ff.stderr().trim(), "", "decode errors");
    server.assert_running();
}

#[test]
fn parked_requests_are_bounded_time_out_with_503_and_leave_when_the_client_does() {
    // Segment target 1 s: a blocking request waits at most 3 s.
    let mut server = llhls_server(&["--llhls-segment-ms", "1000", "--llhls-max-waiting", "2"]);
    let name = unique_stream("llpark");
    // Three seconds of media, then a publisher that stays connected and sends nothing.
    let _p = publish(
        &server,
        &name,
        PublishOpts {
            limit_ms: Some(3000),
            end: PublishEnd::Stall,
            ..PublishOpts::default()
        },
    );
    playlist_when_ready(server.http, &name);
    std::thread::sleep(Duration::from_millis(3500));
    let text = http_get(
        server.http,
        &path(&name, "index.m3u8"),
        Duration::from_secs(5),
    )
    .body_text();
    let (msn, parts) = open_segment(&text);
    let next = format!(
        "{}?_HLS_msn={msn}&_HLS_part={parts}",
        path(&name, "index.m3u8")
    );
    let started = Instant::now();
    let mut a = send_get(server.http, &next);
    let b = send_get(server.http, &path(&name, &hint(&text)));
    let deadline = Instant::now() + Duration::from_secs(2);
    while metric(&server, "rtmpd_llhls_waiting") != Some(2) {
        assert!(Instant::now() < deadline, "two requests never parked");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Over the bound: 503 at once.
    let start = Instant::now();
    let c = http_get(server.http, &next, Duration::from_secs(5));
    assert_eq!(c.status, 503);
    assert!(start.elapsed() < Duration::from_secs(1));
    // A client that leaves frees its place.
    drop(b.shutdown(std::net::Shutdown::Both));
    let deadline = Instant::now() + Duration::from_secs(2);
    while metric(&server, "rtmpd_llhls_waiting") != Some(1) {
        assert!(Instant::now() < deadline, "the closed client still parked");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing more comes: 503 after three target durations (3 s), not before.
    let r = read_answer(&mut a, Duration::from_secs(10));
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(5),
        "timed out after {waited:?}"
    );
    assert_eq!(metric(&server, "rtmpd_llhls_waiting"), Some(0));
    server.assert_running();
}

#[test]
fn the_end_of_the_stream_answers_waiters_with_endlist() {
    let mut server = llhls_server(&[]);
    let name = unique_stream("llend");
    let p = publish(
        &server,
        &name,
        PublishOpts {
            limit_ms: Some(4000),
            ..PublishOpts::default()
        },
    );
    let text = playlist_when_ready(server.http, &name);
    let (msn, _) = open_segment(&text);
    // Two segments ahead: still waiting when the publisher leaves.
    let target = format!("{}?_HLS_msn={}", path(&name, "index.m3u8"), msn + 2);
    let mut waiter = send_get(server.http, &target);
    p.join().expect("publisher");
    let r = read_answer(&mut waiter, Duration::from_secs(10));
    assert_eq!(r.status, 200);
    assert!(
        r.body_text().contains("#EXT-X-ENDLIST"),
        "{}",
        r.body_text()
    );
    assert!(!r.body_text().contains("PRELOAD-HINT"));
    server.assert_running();
}

#[test]
fn play_token_guards_the_playlist_and_off_means_404() {
    let mut server = llhls_server(&["--play-token", "llTok42"]);
    let name = unique_stream("lltok");
    let _p = publish(
        &server,
        &name,
        PublishOpts {
            loops: 5,
            ..PublishOpts::default()
        },
    );
    let plain = path(&name, "index.m3u8");
    let with = format!("{plain}?token=llTok42");
    let deadline = Instant::now() + WAIT_LIVE;
    loop {
        let r = http_get(server.http, &with, Duration::from_secs(5));
        if r.status == 200 && r.body_text().contains("#EXT-X-PART:") {
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, r.body_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = http_get(server.http, &plain, Duration::from_secs(5));
    assert!(r.status == 401 || r.status == 403, "{}", r.status);
    let wrong = format!("{plain}?token=nope&_HLS_msn=0");
    let r = http_get(server.http, &wrong, Duration::from_secs(5));
    assert!(r.status == 401 || r.status == 403, "{}", r.status);
    server.assert_running();

    // Without --hls-low-latency there is no LL-HLS output.
    let mut off = Server::start_args(&["--no-flv-record", "--no-hls", "--no-mp4"]);
    let name = unique_stream("lloff");
    let _p = RustPublisher::start(
        off.rtmp,
        "live",
        &name,
        "fixture.flv",
        PublishOpts::default(),
    )
    .expect("publish");
    assert!(wait_until_live(
        off.http,
        &format!("/live/{name}.flv"),
        WAIT_LIVE
    ));
    let r = http_get(off.http, &path(&name, "index.m3u8"), Duration::from_secs(5));
    assert_eq!(r.status, 404);
    assert!(
        r.body_text().contains("--hls-low-latency"),
        "{}",
        r.body_text()
    );
    off.assert_running();
}
