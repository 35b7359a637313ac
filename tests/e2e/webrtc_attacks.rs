//! Hostile input on the WebRTC port and the WHEP endpoint while viewers play (issue 25, Tests):
//! garbage datagrams, a STUN flood with wrong credentials, DTLS and SRTP garbage from a playing
//! viewer's own 5-tuple, huge and malformed SDP, and a thousand half-open sessions (offers
//! POSTed, ICE never done). Throughout, a WebRTC viewer (str0m in this process, `util::whep`), a
//! second WebRTC viewer and an HTTP-FLV viewer (both `rtmpd-load`, whose "full stream" rule
//! catches any stall over 2 s or skipped frames) must keep the full rate; the server's memory
//! must stay bounded and the half-open sessions must be gone after the connect timeout.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::whep::{whep_post, VideoFrame, WhepClient, WhepOffer};
use crate::util::{
    http_exchange, http_get, require_tool, unique_stream, wait_until_live, Proc, Server,
};

/// FFmpeg from lavfi at 25 fps, no B-frames, a keyframe every 2 s, AAC (the WebRTC viewers get
/// the video only), for `secs` seconds.
fn publish(url: &str, secs: u32) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            &secs.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-bf", "0", "-g", "50", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url]);
    Proc::spawn(cmd)
}

/// `rtmpd-load` with one viewer of `url` for `secs`, its report as JSON on stdout.
fn load_viewer(url: &str, secs: u32) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtmpd-load"));
    cmd.args(["--url", url, "--viewers", "1", "--json"])
        .args(["--duration", &secs.to_string()]);
    Proc::spawn(cmd)
}

/// The report of a finished `rtmpd-load`, checked: the viewer got the full stream (first
/// keyframe, no stall over 2 s, no skipped frame, media to the end) and at least `min_frames`.
fn assert_full_rate(mut p: Proc, what: &str, min_frames: u64) {
    let status = p.wait_or_panic(Duration::from_secs(60));
    assert!(
        status.success(),
        "{what}: rtmpd-load failed: {}",
        p.stderr()
    );
    let out = p.stdout();
    let j: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{what}: report {out:?}: {e}"));
    let frames = j["frames_total"].as_u64().unwrap_or(0);
    eprintln!(
        "{what}: full {} frames {frames} bytes {} max stall {} ms max ts gap {} ms errors {}",
        j["viewers_full"],
        j["bytes_total"],
        j["max_stall_ms_max"],
        j["max_ts_gap_ms_max"],
        j["errors"]
    );
    assert_eq!(
        j["viewers_full"], 1,
        "{what} did not get the full stream: {out}"
    );
    assert!(
        frames >= min_frames,
        "{what}: {frames} frames, want {min_frames}: {out}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A `/metrics` value (the first sample of `name`, labels included in `name`).
fn metric(srv: &Server, name: &str) -> Option<f64> {
    let m = http_get(srv.http, "/metrics", Duration::from_secs(5)).body_text();
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A viewer playing on a thread of its own for `dur`; the frames it got come back on join.
fn play_in_background(
    mut viewer: WhepClient,
    dur: Duration,
) -> std::thread::JoinHandle<WhepClient> {
    std::thread::spawn(move || {
        viewer.run_for(dur);
        viewer
    })
}

/// Frames in `[from, to)`, and the longest gap between consecutive frames there.
fn rate_in(frames: &[VideoFrame], from: Instant, to: Instant) -> (usize, Duration) {
    let inside: Vec<Instant> = frames
        .iter()
        .map(|f| f.at)
        .filter(|t| *t >= from && *t < to)
        .collect();
    let gap = inside
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(to - from);
    (inside.len(), gap)
}

/// The viewers watching through an attack were not harmed: the str0m viewer still connected
/// and kept its rate over the attack (at least 2 s of it), and the two load viewers playing for
/// `play` s got 25 fps video (WHEP) and ~47 AAC frames a second plus video (HTTP-FLV), give or
/// take the join.
fn assert_unharmed(
    viewer: &WhepClient,
    (attack_start, attack_end): (Instant, Instant),
    whep: Proc,
    flv: Proc,
    play: u32,
) {
    assert!(
        viewer.connected && viewer.is_alive(),
        "the str0m viewer was cut off"
    );
    assert_kept_rate(
        viewer,
        attack_start,
        attack_end.max(attack_start + Duration::from_secs(2)),
    );
    assert_full_rate(
        whep,
        "rtmpd-load WHEP viewer",
        25 * (play as u64 - 4) * 7 / 10,
    );
    assert_full_rate(
        flv,
        "rtmpd-load HTTP-FLV viewer",
        70 * (play as u64 - 4) * 7 / 10,
    );
}

/// The in-process viewer kept the full rate over the attack: 25 fps give or take a loaded
/// machine, and no gap between frames a viewer would see as a freeze.
fn assert_kept_rate(viewer: &WhepClient, from: Instant, to: Instant) {
    let (n, gap) = rate_in(&viewer.video_frames, from, to);
    let secs = (to - from).as_secs_f64();
    eprintln!(
        "str0m viewer: {n} frames in {secs:.1} s of attack ({:.1} fps), longest gap {gap:?}",
        n as f64 / secs
    );
    assert!(
        n as f64 >= 25.0 * secs * 0.7,
        "{n} frames in {secs:.1} s: the viewer lost its rate"
    );
    assert!(gap < Duration::from_millis(1500), "a {gap:?} freeze");
}

/// A STUN binding request with USERNAME `user` and a MESSAGE-INTEGRITY that is 20 bytes of
/// nonsense (the right length, the wrong key), transaction id from `n`.
fn stun_request(user: &str, n: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    let u = user.as_bytes();
    attrs.extend_from_slice(&[0x00, 0x06]);
    attrs.extend_from_slice(&(u.len() as u16).to_be_bytes());
    attrs.extend_from_slice(u);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    // PRIORITY and ICE-CONTROLLING as a browser sends them.
    attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x7f, 0x1e, 0xff]);
    attrs.extend_from_slice(&[0x80, 0x2a, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
    attrs.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    attrs.extend_from_slice(&[0xab; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&n.to_be_bytes());
    m.extend_from_slice(&[0x5a; 8]);
    m.extend_from_slice(&attrs);
    m
}

/// A small xorshift for garbage: reproducible, no dependency.
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

/// The answer's `a=ice-ufrag`.
fn answer_ufrag(answer: &str) -> String {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("the answer has an ice-ufrag")
        .to_string()
}

/// Sends `n` datagrams made by `make` to `to`, as fast as the socket takes them.
fn flood(sock: &UdpSocket, to: SocketAddr, n: usize, mut make: impl FnMut(usize) -> Vec<u8>) {
    for i in 0..n {
        let _ = sock.send_to(&make(i), to);
        // A pause now and then, so the flood lasts a few seconds rather than one burst the
        // kernel drops for us.
        if i % 500 == 499 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn udp_garbage_stun_floods_dtls_garbage_and_bad_sdp_leave_viewers_at_full_rate() {
    if !require_tool("ffmpeg") {
        return;
    }
    let srv = Server::start();
    let name = unique_stream("whepatk");
    let key = format!("live/{name}");
    let _ffmpeg = publish(&srv.rtmp_url(&key), 60);
    assert!(
        wait_until_live(srv.http, &format!("/{key}.flv"), Duration::from_secs(20)),
        "the publisher never came: {:?}",
        srv.logs()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let port = srv.listener("WebRTC");
    let path = format!("/live/{name}/whep");
    let rss_before = rss_kib(srv.pid());

    // The viewers: two rtmpd-load (WHEP and HTTP-FLV) and one str0m client in this process.
    const PLAY: u32 = 22;
    let flv = load_viewer(&format!("http://{}/{key}.flv", srv.http), PLAY);
    let whep = load_viewer(&format!("whep://{}/{key}", srv.http), PLAY);
    let offer = WhepOffer::new();
    let r = whep_post(
        srv.http,
        &path,
        &["Content-Type: application/sdp"],
        offer.sdp.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body_text());
    let ufrag = answer_ufrag(&r.body_text());
    let viewer = offer.answered(&r.body_text(), r.header("location").unwrap());
    let spoof = viewer.udp_clone().expect("a UDP viewer");
    let viewer = play_in_background(viewer, Duration::from_secs(PLAY as u64 - 2));
    // Joined and playing before the attack starts.
    std::thread::sleep(Duration::from_secs(4));
    let attack_start = Instant::now();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();

    // The UDP attacks go round for ATTACK seconds.
    const ATTACK: Duration = Duration::from_secs(8);
    let strangers: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut rounds = 0;
    while attack_start.elapsed() < ATTACK {
        rounds += 1;
        // 1. Garbage from a stranger: random bytes, random lengths, every first-byte class (STUN,
        //    DTLS, RTP/RTCP and none of them).
        flood(&junk, port, 5000, |_| {
            let n = 1 + rng.next() as usize % 1400;
            rng.bytes(n)
        });
        // 2. A STUN flood with wrong credentials: a stranger's ufrag (dropped without state), and
        //    the live session's own ufrag with a wrong key, from many source ports.
        for (k, s) in strangers.iter().enumerate() {
            flood(s, port, 500, |i| {
                stun_request("nobody:x", (k * 1000 + i) as u32)
            });
            flood(s, port, 500, |i| {
                stun_request(&format!("{ufrag}:evil"), (k * 1000 + i) as u32)
            });
        }
        // 3. DTLS and SRTP/SRTCP garbage on the playing viewer's own 5-tuple: record headers that
        //    look right (handshake, alert, application data) around random bodies; RTP and RTCP
        //    headers with random payloads and no valid auth tag.
        flood(&spoof, port, 3000, |i| {
            let n = 16 + rng.next() as usize % 600;
            let body = rng.bytes(n);
            let mut d = Vec::new();
            match i % 5 {
                0 | 1 => {
                    let ct = [22u8, 21, 23][i % 3];
                    d.extend_from_slice(&[ct, 0xfe, 0xfd, 0, (i % 2) as u8]);
                    d.extend_from_slice(&(i as u64).to_be_bytes()[2..]);
                    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
                }
                2 => d.extend_from_slice(&[0x80, 0x60]),
                3 => d.extend_from_slice(&[0x81, 200]),
                _ => d.extend_from_slice(&[0x81, 206]),
            }
            d.extend_from_slice(&body);
            d
        });
    }
    eprintln!("{rounds} rounds of UDP attacks");
    // 4. On HTTP: huge and malformed offers get their status and a reason.
    let sdp = ["Content-Type: application/sdp"];
    let huge = vec![b'a'; 200 * 1024];
    let r = whep_post(srv.http, &path, &sdp, &huge);
    assert_eq!(r.status, 413, "{}", r.body_text());
    // Announced huge, never sent: refused from the head alone.
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n\
         Content-Length: 1000000000\r\nConnection: close\r\n\r\n"
    );
    let r = http_exchange(srv.http, head.as_bytes(), Duration::from_secs(5), false).unwrap();
    assert_eq!(r.status, 413, "{}", r.body_text());
    let base = WhepOffer::new().sdp;
    let mut many_media = base.clone();
    while many_media.len() < 60 * 1024 {
        many_media.push_str("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n");
    }
    let long_line = format!("{base}a=x-{}\r\n", "z".repeat(50 * 1024));
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("binary", rng.bytes(4000)),
        ("not UTF-8", vec![0xff; 300]),
        (
            "no media",
            b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".to_vec(),
        ),
        ("truncated", base.as_bytes()[..base.len() / 2].to_vec()),
        (
            "no ICE credentials",
            base.replace("a=ice-ufrag:", "a=x-ufrag:").into_bytes(),
        ),
        (
            "no fingerprint",
            base.replace("a=fingerprint:", "a=x-fp:").into_bytes(),
        ),
        (
            "video only VP8",
            base.replace("H264", "VP8")
                .replace("opus", "PCMU")
                .into_bytes(),
        ),
        ("many m-lines", many_media.into_bytes()),
        ("a 50 KiB line", long_line.into_bytes()),
    ];
    for (what, body) in &malformed {
        let r = whep_post(srv.http, &path, &sdp, body);
        let reason = r.body_text();
        eprintln!(
            "{what}: {} {}",
            r.status,
            reason.lines().next().unwrap_or("")
        );
        assert!(
            r.status == 400 || r.status == 201,
            "{what}: {} {reason}",
            r.status
        );
        if r.status == 400 {
            assert!(reason.trim().len() > 10, "{what}: 400 without a reason");
            // No server internals in a reason: str0m's parse error names a pointer.
            assert!(
                !reason.contains("0x"),
                "{what}: the reason leaks an address: {reason}"
            );
        }
    }
    // The most common mistakes must be 400s.
    for (what, body) in &malformed[..4] {
        let r = whep_post(srv.http, &path, &sdp, body);
        assert_eq!(r.status, 400, "{what}: {}", r.body_text());
    }
    let attack_end = Instant::now();
    eprintln!("attack lasted {:?}", attack_end - attack_start);

    let viewer = viewer.join().expect("the viewer thread");
    assert_unharmed(&viewer, (attack_start, attack_end), whep, flv, PLAY);

    let unknown = metric(&srv, "rtmpd_udp_unknown_total{endpoint=\"webrtc\"}").unwrap_or(0.0);
    eprintln!("rtmpd_udp_unknown_total: {unknown}");
    assert!(
        unknown >= 1000.0,
        "the stranger's datagrams were not counted as unknown"
    );
    let rss_after = rss_kib(srv.pid());
    eprintln!("server RSS: {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 48 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

/// `POST path` with `body`; `None` when the server closed the connection without an answer
/// (what it does to a connection over `--max-connections`).
fn try_post(http: SocketAddr, path: &str, body: &[u8]) -> Option<u16> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    http_exchange(http, &req, Duration::from_secs(10), false)
        .ok()
        .map(|r| r.status)
}

/// `rtmpd_webrtc_sessions`, or `None` when the server is at its connection cap and closes the
/// request's connection.
fn try_sessions(srv: &Server) -> Option<f64> {
    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let r = http_exchange(srv.http, req, Duration::from_secs(5), false).ok()?;
    r.body_text().lines().find_map(|l| {
        l.strip_prefix("rtmpd_webrtc_sessions ")?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn a_thousand_half_open_sessions_are_capped_and_expire() {
    if !require_tool("ffmpeg") {
        return;
    }
    // Every session here comes from 127.0.0.1, which the per-address cap exempts: the cap on
    // connections in all (which WHEP sessions count in) bounds them.
    const CAP: f64 = 150.0;
    let srv = Server::start_args(&["--max-connections", "150"]);
    let name = unique_stream("whephalf");
    let key = format!("live/{name}");
    let _ffmpeg = publish(&srv.rtmp_url(&key), 60);
    assert!(
        wait_until_live(srv.http, &format!("/{key}.flv"), Duration::from_secs(20)),
        "the publisher never came: {:?}",
        srv.logs()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let path = format!("/live/{name}/whep");
    let rss_before = rss_kib(srv.pid());

    const PLAY: u32 = 30;
    let flv = load_viewer(&format!("http://{}/{key}.flv", srv.http), PLAY);
    let whep = load_viewer(&format!("whep://{}/{key}", srv.http), PLAY);
    let offer = WhepOffer::new();
    let r = whep_post(
        srv.http,
        &path,
        &["Content-Type: application/sdp"],
        offer.sdp.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body_text());
    let viewer = offer.answered(&r.body_text(), r.header("location").unwrap());
    let viewer = play_in_background(viewer, Duration::from_secs(PLAY as u64 - 2));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        metric(&srv, "rtmpd_webrtc_sessions"),
        Some(2.0),
        "two WebRTC viewers before the flood"
    );

    // One offer (valid, its candidate a port nobody answers on), POSTed a thousand times.
    let attack_start = Instant::now();
    let half = WhepOffer::new().sdp;
    let mut statuses = std::collections::BTreeMap::new();
    let mut most = 0.0f64;
    let mut rss_peak = rss_before;
    for i in 0..1000 {
        let s = try_post(srv.http, &path, half.as_bytes());
        *statuses.entry(s).or_insert(0usize) += 1;
        if i % 50 == 49 {
            if let Some(n) = try_sessions(&srv) {
                most = most.max(n);
            }
            rss_peak = rss_peak.max(rss_kib(srv.pid()));
        }
    }
    let posted = attack_start.elapsed();
    eprintln!("1000 offers in {posted:?}: {statuses:?} (None: closed at the cap); most sessions seen {most}");
    assert!(
        statuses
            .keys()
            .all(|s| matches!(s, None | Some(201) | Some(503))),
        "{statuses:?}"
    );
    let accepted = statuses.get(&Some(201)).copied().unwrap_or(0);
    assert!(accepted < 1000, "nothing was refused: {statuses:?}");
    assert!(most <= CAP, "{most} sessions open, over the cap");
    eprintln!(
        "server RSS: {rss_before} KiB before, peak {rss_peak} KiB with up to {most} sessions ({:.1} KiB each)",
        (rss_peak as f64 - rss_before as f64) / most.max(1.0)
    );

    // ICE and DTLS must complete within 10 s: then they are gone, the real viewers stay.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left = None;
    while Instant::now() < deadline {
        left = try_sessions(&srv);
        if left == Some(2.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "half-open sessions gone {:?} after the flood began (sessions now {left:?})",
        attack_start.elapsed()
    );
    assert_eq!(left, Some(2.0), "the half-open sessions did not expire");
    let api = http_get(srv.http, "/api/streams", Duration::from_secs(5)).body_text();
    assert!(api.contains("\"webrtc\":2"), "{api}");
    assert!(
        srv.log_contains("ICE and DTLS did not complete in time"),
        "the expiry is logged"
    );
    let attack_end = Instant::now().min(attack_start + posted);

    let viewer = viewer.join().expect("the viewer thread");
    assert_unharmed(&viewer, (attack_start, attack_end), whep, flv, PLAY);
    // A new viewer is welcome again once the flood is gone.
    assert_eq!(
        try_post(srv.http, &path, WhepOffer::new().sdp.as_bytes()),
        Some(201)
    );
    let rss_after = rss_kib(srv.pid());
    eprintln!("server RSS after expiry: {rss_after} KiB");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}
