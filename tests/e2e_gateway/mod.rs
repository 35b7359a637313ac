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
        Gateway::start_with(&format!("http://{upstream}"), &[])
    }

    /// `rtmpd flv-gateway 0 URL ARGS...`, once it listens.
    fn start_with(url: &str, args: &[&str]) -> Gateway {
        let mut cmd = Command::new(binary());
        cmd.args(["flv-gateway", "0", url])
            .args(["--bind", "127.0.0.1"])
            .args(args);
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
                    log.contains(&format!("FLV gateway upstream {url}")),
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

    /// The address of a listener from its startup line (`HTTPS listening on ...`).
    fn listener(&self, label: &str) -> SocketAddr {
        let marker = format!("{label} listening on ");
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains(&marker))
            .unwrap_or_else(|| panic!("no {label} listener:\n{log}"));
        line[line.find(&marker).unwrap() + marker.len()..]
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad listening line {line:?}"))
    }

    fn log(&self) -> String {
        self.proc.stderr()
    }

    /// Whether the log holds `needle` within `timeout`: a line the gateway wrote just before a
    /// client saw its effect may still be in the pipe when the client returns.
    fn log_has(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
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
            .rev()
            .filter_map(|l| l.strip_prefix("frame="))
            .find_map(|n| n.trim().parse().ok())
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
    let metrics = http_get(c.leaf.http, "/metrics", Duration::from_secs(5)).body_text();
    assert!(
        metrics.contains("rtmpd_upstreams{state=\"up\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rtmpd_players{protocol=\"http_flv\"} 2"),
        "{metrics}"
    );

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
    // The 10 s stats line: viewers, waiting, upstream state, bytes in and out, uptime.
    let log = c.leaf.log();
    let stats = log
        .lines()
        .find(|l| l.contains(&format!("live/{name}: upstream up")))
        .unwrap_or_else(|| panic!("no stats line in the leaf log:\n{log}"));
    for part in ["viewers", "waiting", "in ", "out ", "uptime"] {
        assert!(stats.contains(part), "stats line without {part:?}: {stats}");
    }
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
    assert!(
        c.mid.log_has("is back", Duration::from_secs(5)),
        "mid log:\n{}",
        c.mid.log()
    );
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
    assert!(
        gw.log_has("upstream closed", Duration::from_secs(5)),
        "{}",
        gw.log()
    );
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

#[test]
fn codec_change_sends_new_sequence_headers_before_the_next_keyframe() {
    if !require_tool("ffmpeg") {
        return;
    }
    let c = cascade();
    let name = unique_stream("gwcodec");
    let mut publisher = publish_loop(&c.origin, &name);
    assert!(wait_until_live(
        c.origin.http,
        &format!("/live/{name}.flv"),
        Duration::from_secs(10)
    ));
    let viewer = spawn_get(c.leaf.http, &format!("/live/{name}.flv"), 14);
    std::thread::sleep(Duration::from_secs(4));
    publisher.kill();
    // The same stream again, encoded differently: other SPS/PPS, other AAC configuration.
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-ac", "1"])
        .args(["-f", "flv", &c.origin.rtmp_url(&format!("live/{name}"))]);
    let _second = Proc::spawn(cmd);
    let r = viewer.join().unwrap();
    assert_one_continuous_flv(&r, "leaf across a codec change", 6000);
    let flv = parse_flv(&r.body);
    let video: Vec<_> = flv
        .frames
        .iter()
        .filter(|f| f.track == Track::Video)
        .collect();
    let configs: Vec<usize> = (0..video.len()).filter(|&i| video[i].config).collect();
    let mut distinct: Vec<&bytes::Bytes> = configs.iter().map(|&i| &video[i].data).collect();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "the new AVC configuration never reached the viewer"
    );
    for &i in &configs {
        if let Some(next) = video[i + 1..].iter().find(|f| !f.config) {
            assert!(
                next.key,
                "a picture after a sequence header is not a keyframe"
            );
        }
    }
    let audio_cfgs: Vec<_> = flv
        .frames
        .iter()
        .filter(|f| f.track == Track::Audio && f.config)
        .map(|f| f.data.clone())
        .collect();
    assert!(
        audio_cfgs.windows(2).any(|w| w[0] != w[1]),
        "the new AAC configuration never reached the viewer"
    );
}

/// A stand-in upstream on a std socket: `/live/{from}.flv` answers 302 to `/live/{to}.flv`,
/// which serves the fixture once (close-delimited, at 4x real time); everything else is 404.
/// Returns its address and, at the end, the request targets it saw.
fn fake_upstream(
    fixture: &'static str,
    from: &str,
    to: &str,
    lifetime: Duration,
) -> (SocketAddr, JoinHandle<Vec<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (from, to) = (format!("/live/{from}.flv"), format!("/live/{to}.flv"));
    let handle = std::thread::spawn(move || {
        let data = fixture_bytes(fixture);
        let mut seen = Vec::new();
        let mut served = false;
        let end = Instant::now() + lifetime;
        while Instant::now() < end {
            let mut sock = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            sock.set_nonblocking(false).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let target = text.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.push(target.clone());
            if target == from {
                let _ = sock.write_all(
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                        .as_bytes(),
                );
            } else if target == to && !served {
                served = true;
                let _ = sock.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: video/x-flv\r\n\r\n");
                let _ = sock.write_all(&data[..13]);
                let start = Instant::now();
                let mut at = 13;
                while at + 11 <= data.len() {
                    let size =
                        u32::from_be_bytes([0, data[at + 1], data[at + 2], data[at + 3]]) as usize;
                    let dts = u32::from_be_bytes([
                        data[at + 7],
                        data[at + 4],
                        data[at + 5],
                        data[at + 6],
                    ]);
                    let due = Duration::from_millis(dts as u64 / 4);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let next = (at + 11 + size + 4).min(data.len());
                    if sock.write_all(&data[at..next]).is_err() {
                        break;
                    }
                    at = next;
                }
            } else {
                let _ = sock.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        }
        seen
    });
    (addr, handle)
}

#[test]
fn redirected_close_delimited_upstream_then_a_clean_end_after_30_s_without_data() {
    let (up, requests) = fake_upstream("fixture.flv", "a", "b", Duration::from_secs(50));
    let gw = Gateway::start(up);
    // A second gateway whose upstream refuses connections: its viewer waits, then gets 503.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw_dead = Gateway::start(dead);
    let unreachable = spawn_get(gw_dead.http, "/live/x.flv", 45);

    let start = Instant::now();
    let r = http_get(gw.http, "/live/a.flv", Duration::from_secs(45));
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.end, BodyEnd::LastChunk, "the viewer got no clean end");
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(42),
        "ended after {took:?}"
    );
    let flv = parse_flv(&r.body);
    flv.assert_valid("redirected upstream", true);
    assert_full_stream(&flv.frames, "fixture.flv", Some(0), "redirected upstream");
    assert!(
        gw.log_has("no data from the upstream", Duration::from_secs(5)),
        "{}",
        gw.log()
    );

    let r = unreachable.join().unwrap();
    assert_eq!(r.status, 503, "unreachable upstream: {}", r.body_text());
    let seen = requests.join().unwrap();
    assert_eq!(
        seen.get(..2),
        Some(&["/live/a.flv".to_string(), "/live/b.flv".to_string()][..]),
        "{seen:?}"
    );
}

/// An origin serving HTTPS with a certificate signed by the test CA; gateways pulling it over
/// https:// verify it (`--upstream-ca ca.pem`: the chain and the name), or pin a self-signed
/// certificate (a second level of TLS), or refuse it (another CA; the system's roots), when
/// waiting viewers get 502 at once instead of 503 after 30 s.
#[test]
fn https_upstream_is_verified_and_relayed_through_two_tls_levels() {
    if !require_tool("ffmpeg") {
        return;
    }
    let tls = |f: &str| fixture_path(&format!("tls/{f}")).display().to_string();
    let origin = Server::builder()
        .no_web()
        .args(["--https-port", "0", "--tls-cert", &tls("leaf-cert.pem")])
        .args(["--tls-key", &tls("leaf-key.pem")])
        .start();
    let up = format!("https://{}", origin.listener("HTTPS"));
    // The gateway's own HTTPS: the self-signed fixture, which the leaf pins.
    let mid = Gateway::start_with(
        &up,
        &[
            "--upstream-ca",
            &tls("ca.pem"),
            "--https-port",
            "0",
            "--tls-cert",
            &tls("cert.pem"),
            "--tls-key",
            &tls("key.pem"),
        ],
    );
    assert!(
        mid.log().contains("against 1 certificate(s) from"),
        "{}",
        mid.log()
    );
    let leaf = Gateway::start_with(
        &format!("https://{}", mid.listener("HTTPS")),
        &["--upstream-ca", &tls("cert.pem")],
    );
    let wrong_ca = Gateway::start_with(&up, &["--upstream-ca", &tls("other-cert.pem")]);
    let system = Gateway::start_with(&up, &[]);
    assert!(
        system.log().contains("system root certificates"),
        "{}",
        system.log()
    );

    let name = unique_stream("gwtls");
    let path = format!("/live/{name}.flv");
    let _publisher = publish_loop(&origin, &name);
    assert!(wait_until_live(origin.http, &path, Duration::from_secs(10)));
    let at_mid = spawn_get(mid.http, &path, 6);
    let at_leaf = spawn_get(leaf.http, &path, 6);
    let over_https = https_get(mid.listener("HTTPS"), &path, Duration::from_secs(6)).unwrap();
    for (what, r) in [
        ("gateway of the https origin", at_mid.join().unwrap()),
        ("gateway of that gateway's https", at_leaf.join().unwrap()),
        ("the gateway's own https", over_https),
    ] {
        assert_eq!(r.status, 200, "{what}: {}", r.body_text());
        let flv = parse_flv(&r.body);
        flv.assert_valid(what, false);
        assert!(flv.has_audio && flv.has_video, "{what}: FLV header flags");
        assert_clean_start(&flv.frames, what);
        assert_monotonic(&flv.frames, what);
        let last = flv.frames.iter().map(|f| f.dts).max().unwrap_or(0);
        assert!(last >= 3000, "{what}: only {last} ms of media");
    }
    for (what, gw) in [("another CA", &wrong_ca), ("the system's roots", &system)] {
        let start = Instant::now();
        let r = http_get(gw.http, &path, Duration::from_secs(15));
        assert_eq!(r.status, 502, "{what}: {}", r.body_text());
        assert!(
            r.body_text().contains("certificate"),
            "{what}: {}",
            r.body_text()
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            start.elapsed()
        );
        let log = gw.log();
        assert_eq!(
            log.matches("certificate not accepted").count(),
            1,
            "{what}: one line for the refusal, not one per retry:\n{log}"
        );
    }
}
