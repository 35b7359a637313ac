//! FLV gateway end to end (SPEC section 7, issue 6): an origin, a gateway of it and a gateway of
//! that gateway, all on port 0, with FFmpeg publishing the fixtures. Whole-stream relay through
//! two levels (raw HTTP-FLV, WS-FLV and FFmpeg decoding at the leaf), one upstream per level for
//! many viewers, viewers that survive a publisher restart and an origin restart with one valid
//! FLV byte stream, the grace period, 404 for unknown streams, audio-only and video-only.

use std::net::SocketAddr;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtmpd::media::Track;

use crate::util::*;

/// How long the gateway binary may take to print its listening line.
const STARTUP: Duration = Duration::from_secs(15);

/// One `rtmpd flv-gateway 0 UPSTREAM` process (killed on drop).
struct Gateway {
    proc: Proc,
    http: SocketAddr,
}

impl Gateway {
    fn start(upstream: SocketAddr) -> Gateway {
        let mut cmd = Command::new(binary());
        cmd.args(["flv-gateway", "0", &format!("http://{upstream}")])
            .args(["--bind", "127.0.0.1"]);
        let mut proc = Proc::spawn(cmd);
        let deadline = Instant::now() + STARTUP;
        loop {
            let log = proc.stderr();
            let marker = "HTTP listening on ";
            if let Some(line) = log.lines().find(|l| l.contains(marker)) {
                let addr = line[line.find(marker).unwrap() + marker.len()..]
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("bad listening line {line:?}"));
                assert!(
                    log.contains(&format!("FLV gateway upstream http://{upstream}")),
                    "upstream line missing:\n{log}"
                );
                return Gateway { proc, http: addr };
            }
            if !proc.is_running() || Instant::now() > deadline {
                panic!("the gateway did not start; log:\n{}", proc.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.proc.stderr()
    }
}

/// Origin, gateway of the origin, gateway of that gateway.
struct Cascade {
    origin: Server,
    mid: Gateway,
    leaf: Gateway,
}

fn cascade() -> Cascade {
    let origin = Server::builder().no_web().start();
    let mid = Gateway::start(origin.http);
    let leaf = Gateway::start(mid.http);
    Cascade { origin, mid, leaf }
}

/// `(http_flv, ws_flv)` viewers of `stream` in `/api/streams` at `addr` (zeros when absent).
fn api_viewers(addr: SocketAddr, stream: &str) -> (u64, u64) {
    let r = http_get(addr, "/api/streams", Duration::from_secs(5));
    assert_eq!(r.status, 200);
    let body = r.body_text();
    let Some(at) = body.find(&format!("\"stream\":\"{stream}\"")) else {
        return (0, 0);
    };
    let obj = &body[at..];
    let field = |name: &str| -> u64 {
        let p = obj.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
        obj[p..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    };
    (field("http_flv"), field("ws_flv"))
}

/// Waits until `cond` holds (checked every 100 ms) or `timeout` passes.
fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_get(addr: SocketAddr, path: &str, secs: u64) -> JoinHandle<HttpResponse> {
    let path = path.to_string();
    std::thread::spawn(move || http_get(addr, &path, Duration::from_secs(secs)))
}

/// `ffmpeg -v error -progress pipe:1 -i URL -t SECS -f null -`: the frames FFmpeg decoded
/// (from its last progress line) and its error output. The output limit makes FFmpeg stop and
/// flush its decoders on its own: a stalled live input never would (a gateway keeps viewers
/// 30 s after its upstream ends, in case it comes back), and a signal makes it exit unflushed.
fn ffmpeg_decode(url: &str, secs: u32) -> JoinHandle<(u64, String)> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let mut cmd = Command::new("ffmpeg");
        cmd.args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-progress",
            "pipe:1",
        ])
        .args(["-i", &url, "-t", &secs.to_string(), "-f", "null", "-"]);
        let mut p = Proc::spawn(cmd);
        p.wait_or_panic(Duration::from_secs(secs as u64 + 20));
        let frames = p
            .stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("frame="))
            .filter_map(|n| n.trim().parse().ok())
            .last()
            .unwrap_or(0);
        (frames, p.stderr())
    })
}

/// The checks for a viewer that stayed connected across an upstream interruption: one FLV
/// header, no parse error, timestamps that never go back, and media after the interruption.
fn assert_one_continuous_flv(r: &HttpResponse, what: &str, min_last_dts: u32) {
    assert_eq!(r.status, 200, "{what}: status; body {:?}", r.body_text());
    assert_eq!(
        r.end,
        BodyEnd::TimeLimit,
        "{what}: the viewer lost its connection"
    );
    let flv = parse_flv(&r.body);
    flv.assert_valid(what, false);
    assert_clean_start(&flv.frames, what);
    assert_monotonic(&flv.frames, what);
    let last = flv
        .frames
        .iter()
        .filter(|f| f.track == Track::Video)
        .map(|f| f.dts)
        .max()
        .unwrap_or(0);
    assert!(
        last >= min_last_dts,
        "{what}: media stopped at {last} ms; nothing came after the interruption"
    );
}

#[test]
fn cascade_relays_the_whole_stream_over_one_upstream_per_level() {
    if !require_tool("ffmpeg") {
        return;
    }
    let c = cascade();
    let name = unique_stream("gw");
    let path = format!("/live/{name}.flv");
    // Viewers first: the leaf parks them until the stream is live upstream.
    let http = spawn_get(c.leaf.http, &path, 15);
    let ws = {
        let (addr, p) = (c.leaf.http, path.clone());
        std::thread::spawn(move || {
            ws_get_flv_when_live(addr, &p, Duration::from_secs(10), Duration::from_secs(15))
        })
    };
    // FFmpeg decodes the first 6 s at the leaf (HTTP-FLV) and at the origin (RTMP, so the
    // origin's HTTP-FLV count below is the mid gateway alone).
    let decode_leaf = ffmpeg_decode(&format!("http://{}{path}", c.leaf.http), 6);
    let decode_origin = ffmpeg_decode(&c.origin.rtmp_url(&format!("live/{name}")), 6);
    std::thread::sleep(Duration::from_millis(300));
    let mut publisher = ffmpeg_publish(
        "fixture.flv",
        &c.origin.rtmp_url(&format!("live/{name}")),
        &[],
    );

    // Three viewers at the leaf, one upstream connection at each level above it.
    assert!(
        eventually(Duration::from_secs(8), || api_viewers(c.leaf.http, &name)
            == (2, 1)),
        "leaf viewers: {:?}",
        api_viewers(c.leaf.http, &name)
    );
    assert_eq!(
        api_viewers(c.mid.http, &name),
        (1, 0),
        "mid: one upstream from the leaf"
    );
    assert_eq!(
        api_viewers(c.origin.http, &name),
        (1, 0),
        "origin: one upstream from the mid"
    );
    let leaf_api = http_get(c.leaf.http, "/api/streams", Duration::from_secs(5)).body_text();
    assert!(leaf_api.contains("\"upstream\":{"), "{leaf_api}");
    let server = http_get(c.leaf.http, "/api/server", Duration::from_secs(5)).body_text();
    assert!(server.contains("\"mode\":\"flv-gateway\""), "{server}");

    publisher.wait_or_panic(Duration::from_secs(30));
    let r = http.join().unwrap();
    assert_eq!(r.status, 200, "leaf HTTP-FLV status");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let flv = parse_flv(&r.body);
    flv.assert_valid("leaf HTTP-FLV", false);
    assert!(flv.has_audio && flv.has_video);
    assert_full_stream(&flv.frames, "fixture.flv", Some(0), "leaf HTTP-FLV");

    let w = ws.join().unwrap();
    let wflv = parse_flv(&w.data);
    wflv.assert_valid("leaf WS-FLV", false);
    assert_full_stream(&wflv.frames, "fixture.flv", Some(0), "leaf WS-FLV");

    let (leaf_frames, errors) = decode_leaf.join().unwrap();
    assert_eq!(
        errors.trim(),
        "",
        "FFmpeg decoding the leaf reported errors"
    );
    let (origin_frames, errors) = decode_origin.join().unwrap();
    assert_eq!(
        errors.trim(),
        "",
        "FFmpeg decoding the origin reported errors"
    );
    assert_eq!(
        leaf_frames, origin_frames,
        "frames FFmpeg decoded: leaf vs origin"
    );
    assert!(
        leaf_frames >= 140,
        "FFmpeg decoded {leaf_frames} frames in 6 s at 25 fps"
    );
    assert!(c.leaf.log().contains(&format!("live/{name}: upstream")));
}

/// Publishes the fixture in a loop (for tests that outlast one pass).
fn publish_loop(server: &Server, name: &str) -> Proc {
    ffmpeg_publish_with(
        "fixture.flv",
        &server.rtmp_url(&format!("live/{name}")),
        &["-stream_loop", "-1"],
        &[],
    )
}

#[test]
fn leaf_viewer_survives_a_publisher_restart() {
    if !require_tool("ffmpeg") {
        return;
    }
    let c = cascade();
    let name = unique_stream("gwpub");
    let mut publisher = publish_loop(&c.origin, &name);
    assert!(wait_until_live(
        c.origin.http,
        &format!("/live/{name}.flv"),
        Duration::from_secs(10)
    ));
    let viewer = spawn_get(c.leaf.http, &format!("/live/{name}.flv"), 14);
    std::thread::sleep(Duration::from_secs(4));
    publisher.kill();
    std::thread::sleep(Duration::from_secs(2));
    let _publisher = publish_loop(&c.origin, &name);
    let r = viewer.join().unwrap();
    // About 4 s before the kill, and about 6 s after the restart, rebased onto one timeline.
    assert_one_continuous_flv(&r, "leaf across a publisher restart", 6500);
    assert!(c.mid.log().contains("is back"), "mid log:\n{}", c.mid.log());
}

#[test]
fn leaf_viewer_survives_an_origin_restart() {
    if !require_tool("ffmpeg") {
        return;
    }
    let c = cascade();
    let Cascade { origin, mid, leaf } = c;
    let name = unique_stream("gworig");
    let (rtmp_port, http_port) = (origin.rtmp.port(), origin.http.port());
    let publisher = publish_loop(&origin, &name);
    assert!(wait_until_live(
        origin.http,
        &format!("/live/{name}.flv"),
        Duration::from_secs(10)
    ));
    let viewer = spawn_get(leaf.http, &format!("/live/{name}.flv"), 16);
    std::thread::sleep(Duration::from_secs(4));
    drop(publisher);
    drop(origin); // SIGKILL
    std::thread::sleep(Duration::from_secs(1));
    let origin = Server::builder()
        .no_web()
        .args([
            "--rtmp-port",
            &rtmp_port.to_string(),
            "--http-port",
            &http_port.to_string(),
        ])
        .start();
    let _publisher = publish_loop(&origin, &name);
    let r = viewer.join().unwrap();
    assert_one_continuous_flv(&r, "leaf across an origin restart", 7000);
    let log = mid.log();
    assert!(
        log.contains("upstream lost") && log.contains("is back"),
        "mid log:\n{log}"
    );
}

#[test]
fn upstream_closes_after_the_grace_period() {
    if !require_tool("ffmpeg") {
        return;
    }
    let origin = Server::builder().no_web().start();
    let gw = Gateway::start(origin.http);
    let name = unique_stream("gwgrace");
    let _publisher = publish_loop(&origin, &name);
    assert!(wait_until_live(
        origin.http,
        &format!("/live/{name}.flv"),
        Duration::from_secs(10)
    ));
    let r = http_get(
        gw.http,
        &format!("/live/{name}.flv"),
        Duration::from_secs(2),
    );
    assert_eq!(r.status, 200);
    let left = Instant::now();
    // A reload within the grace reuses the upstream.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        api_viewers(origin.http, &name),
        (1, 0),
        "upstream kept during the grace"
    );
    assert!(
        eventually(Duration::from_secs(12), || api_viewers(origin.http, &name)
            == (0, 0)),
        "the upstream never closed"
    );
    let took = left.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "closed after {took:?}, before the grace"
    );
    assert!(gw.log().contains("upstream closed"), "{}", gw.log());
}

#[test]
fn unknown_stream_is_404_after_a_short_wait() {
    let origin = Server::builder().no_web().start();
    let gw = Gateway::start(origin.http);
    let leaf = Gateway::start(gw.http);
    for (what, addr) in [("gateway", gw.http), ("gateway of gateway", leaf.http)] {
        let start = Instant::now();
        let r = http_get(addr, "/live/nobody.flv", Duration::from_secs(15));
        let took = start.elapsed();
        assert_eq!(r.status, 404, "{what}: {}", r.body_text());
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(10),
            "{what}: answered after {took:?}"
        );
    }
    // Not a stream name at all: 404 at once, no upstream involved.
    let r = http_get(gw.http, "/live/bad.name.flv", Duration::from_secs(5));
    assert_eq!(r.status, 404);
}

#[test]
fn audio_only_and_video_only_streams_relay() {
    if !require_tool("ffmpeg") {
        return;
    }
    let c = cascade();
    let mut runs = Vec::new();
    for fixture in ["fixture_audio.flv", "fixture_video.flv"] {
        let name = unique_stream("gwtrack");
        let path = format!("/live/{name}.flv");
        let viewer = spawn_get(c.leaf.http, &path, 14);
        runs.push((fixture, name, viewer));
    }
    std::thread::sleep(Duration::from_millis(300));
    let publishers: Vec<Proc> = runs
        .iter()
        .map(|(fixture, name, _)| {
            ffmpeg_publish(fixture, &c.origin.rtmp_url(&format!("live/{name}")), &[])
        })
        .collect();
    for (fixture, _, viewer) in runs {
        let r = viewer.join().unwrap();
        assert_eq!(r.status, 200, "{fixture}");
        let flv = parse_flv(&r.body);
        flv.assert_valid(fixture, false);
        let audio_only = fixture.contains("_audio");
        assert_eq!(
            (flv.has_audio, flv.has_video),
            (audio_only, !audio_only),
            "{fixture}: FLV header flags"
        );
        assert_full_stream(&flv.frames, fixture, Some(0), fixture);
    }
    drop(publishers);
}
