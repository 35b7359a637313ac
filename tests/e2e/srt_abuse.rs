//! Hostile SRT input against the real server while a stream is live (issue 28, "bad input"):
//! garbage datagrams, a handshake flood (inductions from many sockets, conclusions with forged
//! cookies), stream id bombs (too long, too many keys, not UTF-8, unknown modes), a wrong
//! passphrase, and a player that is accepted and then never ACKs nor answers. The live stream's
//! HTTP-FLV viewer keeps getting media without a gap, the publisher finishes cleanly, every bomb
//! is refused with an SRT code, the stalled player is timed out, the refusal log stays bounded,
//! and the server's memory stays flat.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rtmpd::media::Track;
use rtmpd::srt::handshake::*;
use rtmpd::srt::packet::{ctrl, Packet};

use super::srt_server::{ffmpeg_publish_srt, srt_url, start, READ};
use crate::util::*;

/// A scripted SRT caller on its own socket: just enough to get a cookie and send a conclusion.
struct RawCaller {
    sock: UdpSocket,
    server: SocketAddr,
    id: u32,
    t0: Instant,
}

impl RawCaller {
    fn new(server: SocketAddr, id: u32) -> RawCaller {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        RawCaller {
            sock,
            server,
            id,
            t0: Instant::now(),
        }
    }

    fn ts(&self) -> u32 {
        self.t0.elapsed().as_micros() as u32
    }

    fn induction(&self) -> Vec<u8> {
        Handshake {
            version: VERSION_4,
            extension: UDT_DGRAM,
            isn: 1000,
            mtu: 1500,
            flow_window: 8192,
            hs_type: TYPE_INDUCTION,
            socket_id: self.id,
            ..Handshake::default()
        }
        .to_packet(self.ts(), 0)
    }

    fn conclusion(&self, cookie: u32, sid: &[u8]) -> Vec<u8> {
        Handshake {
            version: VERSION_5,
            extension: EXT_HSREQ | EXT_CONFIG,
            isn: 1000,
            mtu: 1500,
            flow_window: 8192,
            hs_type: TYPE_CONCLUSION,
            socket_id: self.id,
            cookie,
            srt: Some(SrtHs {
                version: 0x0001_0501,
                flags: OPT_TSBPDSND | OPT_TSBPDRCV | OPT_TLPKTDROP | OPT_NAKREPORT | OPT_REXMITFLG,
                recv_delay_ms: 120,
                send_delay_ms: 120,
            }),
            stream_id: Some(sid.to_vec()),
            request: true,
            ..Handshake::default()
        }
        .to_packet(self.ts(), 0)
    }

    /// The next handshake answered to us (other packets skipped), within `wait`.
    fn answer(&self, wait: Duration) -> Option<Handshake> {
        let end = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            if let Ok(Packet::Control(h, body)) = Packet::parse(&buf[..n]) {
                if h.kind == ctrl::HANDSHAKE {
                    return Handshake::parse(body).ok();
                }
            }
        }
        None
    }

    /// Induction, then a conclusion with `sid`: the answer's type (a conclusion when accepted,
    /// 1000 + code when refused), or `None` when nothing came.
    fn connect(&self, sid: &[u8]) -> Option<u32> {
        // The induction repeats every 250 ms for 3 s, as libsrt's does.
        let mut cookie = None;
        for _ in 0..12 {
            self.sock.send_to(&self.induction(), self.server).ok()?;
            if let Some(a) = self.answer(Duration::from_millis(250)) {
                cookie = Some(a.cookie);
                break;
            }
        }
        let cookie = cookie?;
        for _ in 0..3 {
            self.sock
                .send_to(&self.conclusion(cookie, sid), self.server)
                .ok()?;
            if let Some(a) = self.answer(Duration::from_secs(1)) {
                return Some(a.hs_type);
            }
        }
        None
    }
}

/// A small xorshift for reproducible garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn rss(server: &Server) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(&http_get(server.http, "/api/server", READ).body).unwrap();
    v["rss_bytes"].as_u64().expect("rss_bytes (Linux)")
}

fn metric(server: &Server, prefix: &str) -> u64 {
    let body = http_get(server.http, "/metrics", READ).body_text();
    body.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing:\n{body}"))
}

#[test]
fn srt_garbage_floods_bombs_and_a_stalled_player_leave_a_live_stream_alone() {
    if !require_tool("ffmpeg") {
        return;
    }
    let (mut server, port) = start(&[
        "--srt-passphrase",
        "abuse-test-passphrase",
        "--max-per-ip",
        "0",
    ]);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut publisher = ffmpeg_publish_srt(&srt_url(
        port,
        "#!::r=live/good,m=publish",
        "&passphrase=abuse-test-passphrase",
    ));
    assert!(
        server
            .wait_for_log("live/good: SRT publish from", Duration::from_secs(10))
            .is_some(),
        "{}",
        publisher.stderr()
    );
    assert!(wait_until_live(
        server.http,
        "/live/good.flv",
        Duration::from_secs(10)
    ));
    let viewer = spawn_live_get(
        server.http,
        "/live/good.flv",
        Duration::from_secs(5),
        Duration::from_secs(7),
    );
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss(&server);
    let mut rng = Rng(0x0bad_5eed);
    let started = Instant::now();

    // Garbage: random bytes of random lengths, and well-formed data and control headers for
    // socket ids nobody has.
    let socks: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for i in 0..20_000usize {
        let len = 1 + (rng.next() % 1500) as usize;
        let mut d = rng.bytes(len);
        if i % 4 == 0 && d.len() >= 16 {
            d[0] &= 0x7f; // a data packet for a random socket id
        }
        let _ = socks[i % socks.len()].send_to(&d, target);
        if i % 1000 == 999 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // A handshake flood: inductions from 64 sockets (each answered, none remembered), then
    // conclusions with forged cookies (ignored: no state, no answer).
    let flood: Vec<RawCaller> = (0..64).map(|i| RawCaller::new(target, 0x100 + i)).collect();
    for round in 0..100 {
        for c in &flood {
            let _ = c.sock.send_to(&c.induction(), target);
        }
        if round % 10 == 9 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for (i, c) in flood.iter().enumerate() {
        for k in 0..50u32 {
            let forged = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(k);
            let _ = c
                .sock
                .send_to(&c.conclusion(forged, b"publish:live/flood"), target);
        }
    }
    // Stream id bombs, each from a new caller with a valid cookie: refused with a code.
    let long = vec![b'a'; 1200];
    let many_keys = format!(
        "#!::r=live/x,m=publish,{}",
        (0..120)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let bombs: Vec<(&str, Vec<u8>)> = vec![
        ("too long", long),
        ("many keys", many_keys.into_bytes()),
        ("not UTF-8", vec![0xff, 0xfe, b'#', b'!', 0x00, 0xc3]),
        ("bad mode", b"#!::r=live/x,m=bomb".to_vec()),
        ("bad name", b"#!::r=live/../../etc,m=publish".to_vec()),
        ("empty", Vec::new()),
    ];
    for (i, (what, sid)) in bombs.iter().enumerate() {
        let c = RawCaller::new(target, 0x1000 + i as u32);
        let answer = c.connect(sid);
        assert!(
            answer.is_some_and(|t| t > REJECT_BASE && t != TYPE_CONCLUSION),
            "{what}: {answer:?}"
        );
    }
    // A caller without the passphrase (the server has one): refused with 11 (unsecure).
    let clear = RawCaller::new(target, 0x2000);
    assert_eq!(
        clear.connect(b"#!::r=live/good,m=request"),
        Some(REJECT_BASE + 11)
    );
    // The flood again in the middle of all that, a last time.
    for c in &flood {
        let _ = c.sock.send_to(&c.induction(), target);
    }
    let abuse_took = started.elapsed();

    // The stream was not disturbed: the viewer's media has no gap over half a second.
    let got = viewer.join().unwrap();
    assert_eq!(got.status, 200);
    let video: Vec<u32> = parse_flv(&got.body)
        .frames
        .iter()
        .filter(|f| f.track == Track::Video && !f.config)
        .map(|f| f.dts)
        .collect();
    let span = video.last().copied().unwrap_or(0) - video.first().copied().unwrap_or(0);
    assert!(span >= 5000, "the viewer got {span} ms of video");
    let holes: Vec<(u32, u32)> = video
        .windows(2)
        .filter(|w| w[1] - w[0] > 100)
        .map(|w| (w[0], w[1] - w[0]))
        .collect();
    eprintln!(
        "video {} frames from {:?}; holes (at, ms): {holes:?}",
        video.len(),
        video.first()
    );
    let worst = video.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(worst <= 500, "a {worst} ms hole in the viewer's video");
    assert!(publisher.wait_or_panic(Duration::from_secs(30)).success());
    assert_eq!(publisher.stderr().trim(), "", "the publisher saw errors");

    // Bounded: memory flat, refusals counted, their log lines capped (20 per 10 s + a count).
    let rss_after = rss(&server);
    eprintln!(
        "abuse took {abuse_took:?}; rss {} -> {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < rss_before + (16 << 20),
        "rss grew from {rss_before} to {rss_after}"
    );
    assert!(metric(&server, "rtmpd_srt_rejected_total ") > bombs.len() as u64);
    assert!(
        metric(&server, "rtmpd_srt_inductions_dropped_total ") > 1000,
        "the flood was answered in full"
    );
    assert_eq!(
        metric(&server, "rtmpd_srt_connections{role=\"player\"} "),
        0
    );
    let refusal_lines = server
        .logs()
        .iter()
        .filter(|l| l.contains("srt: ") && l.contains(" refused: "))
        .count();
    assert!(
        (bombs.len()..=20).contains(&refusal_lines),
        "{refusal_lines} refusal lines"
    );
    server.assert_running();
}

/// A player that is accepted, then never ACKs, never answers a keep-alive: its send buffer stays
/// capped, it is timed out after 5 s of silence with one line, and the stream goes on.
#[test]
fn srt_player_that_stops_acking_is_timed_out() {
    if !require_tool("ffmpeg") {
        return;
    }
    let (mut server, port) = start(&[]);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut publisher = ffmpeg_publish_srt(&srt_url(port, "publish:live/mute", ""));
    assert!(server
        .wait_for_log("live/mute: SRT publish from", Duration::from_secs(10))
        .is_some());
    std::thread::sleep(Duration::from_millis(1000));
    let rss_before = rss(&server);
    let c = RawCaller::new(target, 0x3000);
    assert_eq!(
        c.connect(b"#!::r=live/mute,m=request"),
        Some(TYPE_CONCLUSION),
        "the silent player is accepted"
    );
    // It never reads: what the server sends piles up in our socket buffer, or is dropped.
    let accepted = Instant::now();
    let line = server.wait_for_log_where(
        |l| l.contains("live/mute: SRT player 127.0.0.1") && l.contains("peer timed out"),
        Duration::from_secs(12),
    );
    let took = accepted.elapsed();
    assert!(line.is_some(), "the silent player was never timed out");
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_secs(9),
        "timed out after {took:?}"
    );
    let rss_after = rss(&server);
    assert!(
        rss_after < rss_before + (16 << 20),
        "rss grew from {rss_before} to {rss_after}"
    );
    // The stream went on: an RTMP reader gets it now.
    let mut reader = ffmpeg_pull_null(&server.rtmp_url("live/mute"), 1);
    assert!(reader.wait_or_panic(READ).success(), "{}", reader.stderr());
    let _ = publisher.wait_or_panic(Duration::from_secs(30));
    server.assert_running();
}
