//! Fault tests (issue 13, "What to build" point 3) on the real binary: a publisher that dies
//! mid-GOP, a viewer that stops reading, garbage on the web port, the WS ping flood of hole 1;
//! the recordings under SIGINT, SIGKILL and a full disk (`shutdown`), idle connections, slowloris
//! and RTMP chunk abuse (`load`), a broken publisher clock (`clocks`). Garbage on the RTMP and
//! HTTP ports is in robustness.rs, SIGTERM and RLIMIT_FSIZE in record.rs; this does not repeat them.

mod clocks;
mod load;
// Signals (kill(2)) and a tmpfs mount: Unix only; tools/windows-smoke.sh covers shutdown on Windows.
#[cfg(unix)]
mod shutdown;

use std::path::{Path, PathBuf};
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use crate::util::*;

/// How long the recorders may take to finalise on a loaded 2-core machine.
const FINALISE: Duration = Duration::from_secs(30);

/// The first file under `dir` (not recursive) whose name ends with `ext`.
fn file_with(dir: &Path, ext: &str) -> Option<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v.into_iter().next()
}

/// A publisher whose connection drops without a word in the middle of a GOP: the HTTP-FLV
/// viewer's response ends with the last chunk, the RTMP viewer is closed, and every recording
/// (FLV, HLS, merged MP4) is finalised and reads clean in ffprobe.
#[test]
fn publisher_killed_mid_gop_ends_viewers_and_finalises_recordings() {
    if !require_tool("ffprobe") {
        return;
    }
    let mut server = Server::builder().no_web().start();
    let name = unique_stream("midgop");
    let key = format!("live/{name}");
    let rtmp = spawn_rtmp_play(server.rtmp, "live", &name, Duration::from_secs(40));
    let addr = server.http;
    let path = format!("/{key}.flv");
    let http = spawn_live_get(
        addr,
        &path,
        Duration::from_secs(10),
        Duration::from_secs(40),
    );
    std::thread::sleep(Duration::from_millis(300));
    // 3.3 s of media at 2x, then the socket closes: not on a keyframe boundary.
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        &name,
        "fixture.flv",
        PublishOpts {
            speed: 2.0,
            limit_ms: Some(3300),
            end: PublishEnd::Drop,
            start_delay: Duration::from_millis(700),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    publisher.join().expect("publisher");

    let r = http.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.end,
        BodyEnd::LastChunk,
        "HTTP-FLV viewer not ended cleanly"
    );
    let flv = parse_flv(&r.body);
    flv.assert_valid("HTTP-FLV viewer", true);
    assert_clean_start(&flv.frames, "HTTP-FLV viewer");
    assert_monotonic(&flv.frames, "HTTP-FLV viewer");
    assert!(
        count_pictures(&flv.frames) > 10,
        "HTTP-FLV viewer: too few pictures"
    );
    let p = rtmp.join().unwrap();
    assert!(p.refused.is_none(), "{:?}", p.refused);
    assert!(
        p.closed || p.saw("NetStream.Play.UnpublishNotify"),
        "RTMP viewer not ended"
    );
    assert_monotonic(&p.frames, "RTMP viewer");

    let dd = server.data_dir.clone();
    let flv_dir = dd.join("flv/live").join(&name);
    let hls = dd.join("hls/live").join(&name).join("index.m3u8");
    let full = dd
        .join("mp4/live")
        .join(&name)
        .join("output_merge/stream_full.mp4");
    assert!(
        wait_until(FINALISE, || {
            full.is_file()
                && std::fs::read_to_string(&hls).is_ok_and(|t| t.contains("#EXT-X-ENDLIST"))
        }),
        "recordings not finalised: {} {}",
        hls.display(),
        full.display()
    );
    let flv_file = file_with(&flv_dir, ".flv").expect("FLV recording");
    parse_flv(&std::fs::read(&flv_file).unwrap()).assert_valid("FLV recording", true);
    assert_probes_clean(&flv_file, "FLV recording");
    assert_probes_clean(&hls, "HLS recording");
    assert_probes_clean(&full, "stream_full.mp4");
    server.assert_running();
}

/// A viewer that stops reading: over its soft bound it is skipped, over its hard bound dropped,
/// and the server's memory stays flat while a reading viewer gets the whole stream.
// The never-reading client shrinks its receive buffer with a Unix socket call.
#[cfg(unix)]
#[test]
fn viewer_that_stops_reading_is_dropped_and_memory_stays_flat() {
    use std::io::Read;
    let mut server = Server::builder().no_web().start();
    let name = unique_stream("stall");
    let path = format!("/live/{name}.flv");
    let addr = server.http;
    let good = spawn_live_get(
        addr,
        &path,
        Duration::from_secs(10),
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(300));
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        &name,
        "fixture.flv",
        PublishOpts {
            speed: 4.0,
            loops: 6,
            start_delay: Duration::from_millis(700),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(server.http, &path, Duration::from_secs(10)));
    let base = proc_status_kb(server.pid(), "VmRSS");
    // Twenty viewers with tiny receive buffers that send the request and never read.
    let mut stalled: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut s = raw_connect_small_rcvbuf(server.http, 4096);
            std::io::Write::write_all(
                &mut s,
                &request_bytes("GET", &path, 1, &["Connection: close"]),
            )
            .unwrap();
            s
        })
        .collect();
    publisher.join().expect("publisher");
    let after = proc_status_kb(server.pid(), "VmRSS");
    server.assert_running();
    let r = good.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.end, BodyEnd::LastChunk, "the reading viewer was cut");
    let flv = parse_flv(&r.body);
    flv.assert_valid("reading viewer", true);
    assert_monotonic(&flv.frames, "reading viewer");
    // Bounded: 20 stalled viewers may hold at most their queues, far below 16 MiB each.
    assert!(
        after < base + 64 * 1024,
        "VmRSS grew from {base} kB to {after} kB with stalled viewers"
    );
    // Every stalled viewer was ended: after draining, the connection reaches EOF.
    for s in &mut stalled {
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = vec![0u8; 1 << 16];
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut ended = false;
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => ended = true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => ended = true,
            }
            break;
        }
        assert!(ended, "a stalled viewer was never ended");
    }
}

/// Garbage on the web port (robustness.rs covers the RTMP and HTTP ports): the server lives and
/// an RTMP viewer of a live stream gets the whole fixture.
#[test]
fn web_port_garbage_leaves_a_live_viewer_alone() {
    let mut server = Server::start();
    let Some(web) = server.web else {
        eprintln!("skipped: this build has no web listener");
        return;
    };
    let name = unique_stream("webjunk");
    let viewer = spawn_rtmp_play(server.rtmp, "live", &name, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        &name,
        "fixture.flv",
        PublishOpts {
            speed: 2.0,
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    let mut x: u32 = 0x9e37_79b9;
    let junk: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    for bytes in [
        &junk[..],
        b"GET\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo",
        &[3u8; 1537][..],
    ] {
        let mut s = raw_connect(web);
        let _ = std::io::Write::write_all(&mut s, bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = closed_within(&mut s, Duration::from_secs(2));
    }
    let idle: Vec<std::net::TcpStream> = (0..50).map(|_| raw_connect(web)).collect();
    drop(idle);
    publisher.join().expect("publisher");
    let p = viewer.join().unwrap();
    assert!(p.refused.is_none(), "{:?}", p.refused);
    assert_full_stream(&p.frames, "fixture.flv", Some(0), "RTMP viewer");
    server.assert_running();
    let r = http_get(web, "/index.html", Duration::from_secs(5));
    assert_eq!(r.status, 200, "web port no longer serves");
}

/// Issue 13 hole 1: 200 WS-FLV clients that flood pings and never read must not make the server
/// queue unbounded pongs; RSS stays within a few MiB of the baseline and a normal viewer keeps
/// the whole stream.
#[cfg(unix)]
#[test]
fn private_replies_are_bounded() {
    let mut server = Server::builder()
        .no_web()
        .args(["--max-per-ip", "0"]) // every client here is 127.0.0.1
        .start();
    let name = unique_stream("flood");
    let path = format!("/live/{name}.flv");
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        &name,
        "fixture.flv",
        PublishOpts {
            speed: 1.0,
            loops: 2,
            start_delay: Duration::from_millis(500),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(server.http, &path, Duration::from_secs(10)));
    let addr = server.http;
    let good = spawn_live_get(addr, &path, Duration::from_secs(5), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let base = proc_status_kb(server.pid(), "VmRSS");
    let upgrade = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let mut socks: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut s = raw_connect_small_rcvbuf(server.http, 4096);
            std::io::Write::write_all(&mut s, upgrade.as_bytes()).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // A masked ping with a 125-byte payload, many per write.
    let mut ping = vec![0x89u8, 0x80 | 125, 1, 2, 3, 4];
    ping.extend(std::iter::repeat_n(0u8, 125));
    let burst: Vec<u8> = ping.repeat(32);
    let end = Instant::now() + Duration::from_secs(12);
    let mut peak = base;
    while Instant::now() < end {
        for s in &mut socks {
            let _ = std::io::Write::write(s, &burst);
        }
        peak = peak.max(proc_status_kb(server.pid(), "VmRSS"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = proc_status_kb(server.pid(), "VmRSS");
    eprintln!("private_replies_are_bounded: VmRSS base {base} kB, peak {peak} kB, end {after} kB");
    server.assert_running();
    drop(socks);
    publisher.join().expect("publisher");
    let r = good.join().unwrap();
    assert_eq!(r.status, 200);
    let flv = parse_flv(&r.body);
    flv.assert_valid("normal viewer", true);
    assert_monotonic(&flv.frames, "normal viewer");
    assert!(
        peak < base + 8 * 1024,
        "VmRSS went from {base} kB to {peak} kB under a ping flood"
    );
}
