//! A real browser against `rtmpd::webrtc`, before the server loop has WHEP: one blocking-socket
//! loop serving a page and `POST /whep` on 127.0.0.1, one UDP socket for the media, and an FLV
//! file played in real time (looped) to every viewer. Chromium's WebRTC interop check, not a
//! server: `cargo run --example whep-demo -- FILE.flv HTTP_PORT UDP_PORT SECONDS`, then open
//! http://127.0.0.1:HTTP_PORT/ (tools/whep-browser-check.sh does it headless and reads the
//! page's getStats lines). Prints the session's events and stats; exits after SECONDS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use rtmpd::media::frame::Track;
use rtmpd::mux::flv_demux;
use rtmpd::webrtc::{
    candidate_addrs, MediaUnit, Packager, Proto, SessionConfig, WebRtcEvent, WhepSession,
};

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>whep</title>
<video id="v" autoplay muted playsinline></video>
<script>
(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  const v = document.getElementById('v');
  pc.ontrack = e => { v.srcObject = e.streams[0] || new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch('/whep', {method: 'POST', headers: {'Content-Type': 'application/sdp'},
                                  body: pc.localDescription.sdp});
  const answer = await r.text();
  console.log('WHEP-ANSWER ' + r.status + ' ' + (r.status == 201 ? 'ok' : answer));
  if (r.status != 201) return;
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  setInterval(async () => {
    let line = 'WHEP-STATS state=' + pc.connectionState;
    (await pc.getStats()).forEach(s => {
      if (s.type == 'inbound-rtp' && s.kind == 'video')
        line += ' framesDecoded=' + s.framesDecoded + ' width=' + s.frameWidth +
                ' height=' + s.frameHeight + ' nack=' + s.nackCount + ' pli=' + s.pliCount +
                ' codec=' + s.codecId;
      if (s.type == 'inbound-rtp' && s.kind == 'audio')
        line += ' audioPackets=' + s.packetsReceived + ' audioSamples=' + s.totalSamplesReceived +
                ' audioConcealed=' + s.concealedSamples;
    });
    line += ' videoWidth=' + v.videoWidth + ' currentTime=' + v.currentTime.toFixed(2);
    console.log(line);
  }, 1000);
})().catch(e => console.log('WHEP-ERROR ' + e));
</script>"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: whep-demo FILE.flv HTTP_PORT UDP_PORT SECONDS");
        std::process::exit(2);
    }
    let data = std::fs::read(&args[1]).expect("the FLV file");
    let (_, _, frames) = flv_demux::read_all(&data).expect("an FLV file");
    let mut packager = Packager::new();
    let units: Vec<MediaUnit> = frames
        .iter()
        .filter(|f| f.track != Track::Meta)
        .filter_map(|f| packager.push(f))
        .collect();
    let codecs = packager.codecs().clone();
    let span_ms = units.iter().map(|u| u.pts_ms).max().unwrap_or(0) + 40;
    println!(
        "whep-demo: {} units, stream {}",
        units.len(),
        codecs.describe()
    );

    let http = TcpListener::bind(("127.0.0.1", args[2].parse::<u16>().unwrap())).unwrap();
    http.set_nonblocking(true).unwrap();
    let udp_port: u16 = args[3].parse().unwrap();
    let udp = UdpSocket::bind(("127.0.0.1", udp_port)).unwrap();
    udp.set_nonblocking(true).unwrap();
    let local: SocketAddr = udp.local_addr().unwrap();
    let end = Instant::now() + Duration::from_secs(args[4].parse().unwrap());
    let cfg = SessionConfig::default();

    let mut session: Option<WhepSession> = None;
    // Media clock: when the session connected, and the next unit to send.
    let mut started: Option<Instant> = None;
    let mut next = 0usize;
    let mut loops = 0u64;
    let mut buf = vec![0u8; 2048];
    while Instant::now() < end {
        let now = Instant::now();
        if let Ok((mut conn, _)) = http.accept() {
            conn.set_nonblocking(false).unwrap();
            if let Some(s) = serve(&mut conn, &cfg, local, &codecs, now) {
                println!("whep-demo: session {} answered", s.local_ufrag());
                session = Some(s);
                started = None;
                next = 0;
            }
        }
        let Some(s) = session.as_mut() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            s.handle_datagram(Instant::now(), Proto::Udp, from, local, &buf[..n]);
        }
        if s.next_deadline().is_some_and(|d| d <= Instant::now()) {
            s.handle_timeout(Instant::now());
        }
        while let Some(e) = s.poll_event() {
            println!("whep-demo: event {e:?}");
            match e {
                WebRtcEvent::Connected => started = Some(Instant::now()),
                WebRtcEvent::Closed { .. } => started = None,
                WebRtcEvent::KeyframeRequest(_) => {}
            }
        }
        if let Some(t0) = started {
            // Real time, the file looped: unit i of loop k is due at k * span + its pts.
            let elapsed = t0.elapsed().as_millis() as u64;
            while next < units.len() && loops * span_ms + units[next].pts_ms <= elapsed {
                s.send(&units[next], Instant::now());
                next += 1;
                if next == units.len() {
                    next = 0;
                    loops += 1;
                }
            }
        }
        while let Some(t) = s.poll_transmit() {
            let _ = udp.send_to(&t.contents, t.destination);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some(s) = &session {
        println!("whep-demo: stats {:?}", s.stats());
    }
}

/// One HTTP request: the page, or a WHEP offer answered with a new session.
fn serve(
    conn: &mut std::net::TcpStream,
    cfg: &SessionConfig,
    local: SocketAddr,
    codecs: &rtmpd::webrtc::StreamCodecs,
    now: Instant,
) -> Option<WhepSession> {
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        req.extend_from_slice(&chunk[..n]);
        if let Some(p) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&req[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while req.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        req.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&req[head_end..head_end + len]).to_string();
    let reply = |conn: &mut std::net::TcpStream, status: &str, ctype: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if head.starts_with("GET / ") {
        reply(conn, "200 OK", "text/html", PAGE);
        return None;
    }
    if !head.starts_with("POST /whep ") {
        reply(conn, "404 Not Found", "text/plain", "not found");
        return None;
    }
    let addrs = candidate_addrs(local.ip(), &[], local.port());
    match WhepSession::accept(&body, cfg, &addrs, codecs, now) {
        Ok((s, answer)) => {
            reply(conn, "201 Created", "application/sdp", &answer);
            Some(s)
        }
        Err(e) => {
            println!("whep-demo: offer refused: {e}");
            reply(conn, "400 Bad Request", "text/plain", &e.to_string());
            None
        }
    }
}
