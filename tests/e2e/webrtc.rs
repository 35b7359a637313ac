//! WHEP playback end to end: FFmpeg publishes a B-frame-free H.264 + AAC stream over RTMP, a
//! str0m viewer (`util::whep`) POSTs its offer to `/{app}/{stream}/whep` and receives the video
//! over real UDP; DELETE ends it; bad offers, unknown streams, large bodies and hostile datagrams
//! get their answers without hurting a viewer that plays.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::whep::{whep_post, WhepOffer};
use crate::util::{chromium_run_page, page_field};
use crate::util::{
    http_exchange, http_get, require_tool, unique_stream, wait_until_live, Proc, Server,
};

/// `ffmpeg -re` from lavfi: 640x360 at 25 fps, x264 without B-frames, a keyframe every 2 s,
/// AAC audio, to `url`.
fn publish_testsrc(url: &str) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "60", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-bf", "0", "-g", "50", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url]);
    Proc::spawn(cmd)
}

fn wait_live(srv: &Server, key: &str) {
    let live = wait_until_live(srv.http, &format!("/{key}.flv"), Duration::from_secs(20));
    assert!(live, "the publisher never came: {:?}", srv.logs());
    // The first GOP cached: a joiner starts from its keyframe.
    std::thread::sleep(Duration::from_millis(1500));
}

fn webrtc_port(srv: &Server) -> SocketAddr {
    srv.listener("WebRTC")
}

/// A viewer: offer POSTed, 201 checked, answer taken.
fn join(srv: &Server, path: &str) -> crate::util::whep::WhepClient {
    join_with(srv, path, WhepOffer::new())
}

fn join_with(srv: &Server, path: &str, offer: WhepOffer) -> crate::util::whep::WhepClient {
    let r = whep_post(
        srv.http,
        path,
        &["Content-Type: application/sdp"],
        offer.sdp.as_bytes(),
    );
    assert_eq!(r.status, 201, "POST {path}: {}", r.body_text());
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("etag").is_some());
    let location = r.header("location").expect("a Location").to_string();
    assert!(location.starts_with("/whep/session/"), "{location}");
    offer.answered(&r.body_text(), &location)
}

#[test]
fn a_whep_viewer_receives_h264_over_udp_and_delete_ends_it() {
    if !require_tool("ffmpeg") {
        return;
    }
    let srv = Server::start();
    let name = unique_stream("whep");
    let key = format!("live/{name}");
    let _ffmpeg = publish_testsrc(&srv.rtmp_url(&key));
    wait_live(&srv, &key);
    let port = webrtc_port(&srv);
    assert_ne!(port.port(), 8189, "tests must not take the default port");

    let mut viewer = join(&srv, &format!("/live/{name}/whep"));
    viewer.run_for(Duration::from_secs(3));
    assert!(viewer.connected, "ICE and DTLS did not complete");
    let frames = &viewer.video_frames;
    eprintln!(
        "whep: {} video frames in 3 s ({} keyframes), {} audio frames, first {:?}",
        frames.len(),
        frames.iter().filter(|f| f.key).count(),
        viewer.audio_frames,
        frames.first()
    );
    assert!(frames.len() > 25, "video frames in 3 s: {}", frames.len());
    assert!(
        frames[0].key && frames[0].parameter_sets,
        "the first frame is a keyframe with SPS and PPS: {:?}",
        frames[0]
    );
    // The stream is seen as a WebRTC viewer by the API and counted in /metrics.
    let api = http_get(srv.http, "/api/streams", Duration::from_secs(5)).body_text();
    assert!(api.contains("\"webrtc\":1"), "{api}");
    // With the stream's WebRTC figures: its session, what it was sent.
    let streams: serde_json::Value = serde_json::from_str(&api).unwrap();
    let entry = streams["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stream"] == name.as_str()))
        .unwrap_or_else(|| panic!("{api}"));
    let w = &entry["webrtc"];
    assert_eq!(w["sessions"], 1, "{api}");
    assert!(w["bytes"].as_u64().unwrap_or(0) > 10_000, "{api}");
    assert!(
        w["frames"].as_u64().unwrap_or(0) >= frames.len() as u64,
        "{api}"
    );
    for k in ["packets", "nacks", "plis", "dropped"] {
        assert!(w[k].is_u64(), "{k} in {api}");
    }
    let metrics = http_get(srv.http, "/metrics", Duration::from_secs(5)).body_text();
    assert!(
        metrics.lines().any(|l| l == "rtmpd_webrtc_sessions 1"),
        "{metrics}"
    );

    // DELETE ends it: 200 (RFC 9725 and MediaMTX as a client want 200), the server logs the close with its stats, a second DELETE is 404.
    let del = format!(
        "DELETE {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        viewer.location
    );
    let r = http_exchange(srv.http, del.as_bytes(), Duration::from_secs(5), false).unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let line = srv
        .wait_for_log("closed after", Duration::from_secs(5))
        .expect("the server logs the session's end");
    assert!(line.contains("DELETE") && line.contains("sent "), "{line}");
    let r = http_exchange(srv.http, del.as_bytes(), Duration::from_secs(5), false).unwrap();
    assert_eq!(r.status, 404);
    // What was on its way before the DELETE arrives in the first half second (a loaded machine
    // holds several frames in the socket); after that, nothing.
    viewer.run_for(Duration::from_millis(500));
    let before = viewer.video_frames.len();
    viewer.run_for(Duration::from_secs(1));
    assert_eq!(
        viewer.video_frames.len(),
        before,
        "media stopped after DELETE"
    );
    // The stream's feed outlives its last viewer: the next one plays from it.
    let mut again = join(&srv, &format!("/live/{name}/whep"));
    again.run_for(Duration::from_secs(3));
    let frames = &again.video_frames;
    eprintln!("whep: second viewer {} frames in 3 s", frames.len());
    assert!(frames.len() > 25, "second viewer: {} frames", frames.len());
    assert!(frames[0].key, "{:?}", frames[0]);
}

#[test]
fn bad_whep_requests_get_their_status_and_a_playing_viewer_is_unharmed() {
    if !require_tool("ffmpeg") {
        return;
    }
    let srv = Server::start();
    let name = unique_stream("whepbad");
    let key = format!("live/{name}");
    let _ffmpeg = publish_testsrc(&srv.rtmp_url(&key));
    wait_live(&srv, &key);
    let path = format!("/live/{name}/whep");
    let sdp = ["Content-Type: application/sdp"];

    // Garbage SDP: 400 with the reason.
    let r = whep_post(srv.http, &path, &sdp, b"this is not SDP");
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert!(
        r.body_text().contains("SDP offer is not valid"),
        "{}",
        r.body_text()
    );
    // An unknown stream: 404.
    let offer = WhepOffer::new();
    let r = whep_post(srv.http, "/live/nobody/whep", &sdp, offer.sdp.as_bytes());
    assert_eq!(r.status, 404);
    assert_eq!(r.body_text().trim(), "Stream not found.");
    // 70 KiB: 413.
    let big = vec![b'v'; 70 * 1024];
    let r = whep_post(srv.http, &path, &sdp, &big);
    assert_eq!(r.status, 413, "{}", r.body_text());
    // Expect: 100-continue (curl's way for a body over 1 KiB): told to go on before the body.
    {
        use std::io::{Read, Write};
        let body = WhepOffer::new().sdp;
        let mut sock = std::net::TcpStream::connect(srv.http).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).unwrap();
        let mut got = [0u8; 25];
        sock.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
        sock.write_all(body.as_bytes()).unwrap();
        let mut rest = String::new();
        let _ = sock.read_to_string(&mut rest);
        assert!(rest.starts_with("HTTP/1.1 201 "), "{rest}");
    }
    // PATCH: 405 with the reason; OPTIONS: 204 with CORS.
    let patch = format!("PATCH {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = http_exchange(srv.http, patch.as_bytes(), Duration::from_secs(5), false).unwrap();
    assert_eq!(r.status, 405);
    assert!(r.body_text().contains("trickle ICE"), "{}", r.body_text());
    let options = format!("OPTIONS {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = http_exchange(srv.http, options.as_bytes(), Duration::from_secs(5), false).unwrap();
    assert_eq!(r.status, 204);
    let methods = r.header("access-control-allow-methods").unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );

    // A viewer plays while garbage and STUN with a stranger's ufrag hit the port.
    let mut viewer = join(&srv, &path);
    viewer.run_for(Duration::from_secs(1));
    assert!(viewer.connected);
    let port = srv.listener("WebRTC");
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut stun = vec![0x00, 0x01, 0x00, 0x10, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    // USERNAME "nobody:x" (8 bytes).
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x08]);
    stun.extend_from_slice(b"nobody:x");
    stun.extend_from_slice(&[0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4]);
    let before = viewer.video_frames.len();
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(2) {
        for i in 0..20u8 {
            let _ = junk.send_to(&[i; 200], port);
            let _ = junk.send_to(&stun, port);
            sent += 2;
        }
        viewer.run_for(Duration::from_millis(50));
    }
    assert!(sent > 100);
    eprintln!(
        "whep: {} frames in 2 s while {sent} hostile datagrams arrived",
        viewer.video_frames.len() - before
    );
    let got = viewer.video_frames.len() - before;
    assert!(got > 25, "the viewer kept receiving: {got} frames in 2 s");
    let metrics = http_get(srv.http, "/metrics", Duration::from_secs(5)).body_text();
    let unknown: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtmpd_udp_unknown_total{endpoint=\"webrtc\"} "))
        .and_then(|v| v.parse().ok())
        .expect("the unknown-datagram counter");
    assert!(unknown >= 100, "stranger datagrams counted: {unknown}");
    assert!(viewer.is_alive());
}

#[test]
fn a_whep_viewer_receives_h264_over_ice_tcp() {
    if !require_tool("ffmpeg") {
        return;
    }
    let srv = Server::start();
    let name = unique_stream("wheptcp");
    let key = format!("live/{name}");
    let _ffmpeg = publish_testsrc(&srv.rtmp_url(&key));
    wait_live(&srv, &key);
    // A connection that names no session is closed; one from the viewer is kept.
    let port = webrtc_port(&srv);
    let mut stranger = std::net::TcpStream::connect(port).unwrap();
    std::io::Write::write_all(&mut stranger, &[0, 4, 1, 2, 3, 4]).unwrap();
    let offer = WhepOffer::new_tcp(port);
    let mut viewer = join_with(&srv, &format!("/live/{name}/whep"), offer);
    viewer.run_for(Duration::from_secs(3));
    assert!(viewer.connected, "ICE-TCP and DTLS did not complete");
    let frames = &viewer.video_frames;
    eprintln!("whep over TCP: {} video frames in 3 s", frames.len());
    assert!(frames.len() > 25, "video frames in 3 s: {}", frames.len());
    assert!(frames[0].key && frames[0].parameter_sets, "{:?}", frames[0]);
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 16];
    let n = std::io::Read::read(&mut stranger, &mut b).unwrap_or(0);
    assert_eq!(n, 0, "the stranger's connection is closed");
}

#[test]
fn the_publisher_leaving_closes_its_whep_sessions() {
    if !require_tool("ffmpeg") {
        return;
    }
    let srv = Server::start();
    let name = unique_stream("whepend");
    let key = format!("live/{name}");
    let mut ffmpeg = publish_testsrc(&srv.rtmp_url(&key));
    wait_live(&srv, &key);
    let mut viewer = join(&srv, &format!("/live/{name}/whep"));
    viewer.run_for(Duration::from_secs(1));
    assert!(viewer.connected);
    ffmpeg.kill();
    let line = srv
        .wait_for_log("closed after", Duration::from_secs(10))
        .expect("the session ends with the publish");
    assert!(line.contains("the publisher left"), "{line}");
    viewer.run_for(Duration::from_millis(500));
    let metrics = http_get(srv.http, "/metrics", Duration::from_secs(5)).body_text();
    assert!(
        metrics.lines().any(|l| l == "rtmpd_webrtc_sessions 0"),
        "{metrics}"
    );
}

/// The page Chromium opens (from a file: a cross-origin WHEP POST, so CORS is exercised): it
/// POSTs its offer to `WHEP_URL`, plays what comes, counts the frames it presents
/// (requestVideoFrameCallback) and decodes (getStats) over 5 s of connected play, and logs one
/// `WHEP-DONE` line.
const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>whep</title>
<video id="v" autoplay muted playsinline></video>
<script>
(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  const v = document.getElementById('v');
  const ms = new MediaStream();
  pc.ontrack = e => { ms.addTrack(e.track); v.srcObject = ms; };
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch('WHEP_URL', {method: 'POST', headers: {'Content-Type': 'application/sdp'},
                                     body: pc.localDescription.sdp});
  const answer = await r.text();
  console.log('WHEP-ANSWER ' + r.status + ' location=' + r.headers.get('Location'));
  if (r.status != 201) { console.log('WHEP-DONE error=' + answer); return; }
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  let presented = 0;
  const count = () => { presented++; v.requestVideoFrameCallback(count); };
  v.requestVideoFrameCallback(count);
  const sleep = ms => new Promise(ok => setTimeout(ok, ms));
  for (let i = 0; i < 100 && pc.connectionState != 'connected'; i++) await sleep(100);
  const t0 = presented;
  await sleep(5000);
  let decoded = 0;
  (await pc.getStats()).forEach(s => {
    if (s.type == 'inbound-rtp' && s.kind == 'video') decoded = s.framesDecoded;
  });
  console.log('WHEP-DONE state=' + pc.connectionState + ' decoded=' + decoded + ' presented=' +
              (presented - t0) + ' width=' + v.videoWidth + ' height=' + v.videoHeight);
})().catch(e => console.log('WHEP-DONE error=' + e));
</script>"#;

#[test]
fn chromium_plays_from_the_whep_endpoint() {
    if !require_tool("ffmpeg") || !require_tool("chromium") {
        return;
    }
    let srv = Server::start();
    let name = unique_stream("whepchrome");
    let key = format!("live/{name}");
    let _ffmpeg = publish_testsrc(&srv.rtmp_url(&key));
    wait_live(&srv, &key);
    let page = PAGE.replace("WHEP_URL", &srv.http_url(&format!("/live/{name}/whep")));
    let done = chromium_run_page(&page, "WHEP-DONE", Duration::from_secs(30));
    let field = |k: &str| page_field(&done, k);
    // 5 s at 25 fps is 125 frames; a loaded machine decodes fewer, a broken stream none.
    assert!(field("decoded=") >= 60, "{done}");
    assert!(field("presented=") >= 30, "{done}");
    assert_eq!((field("width="), field("height=")), (640, 360), "{done}");
    assert!(srv.log_contains("WebRTC session"), "{:?}", srv.logs());
}

#[test]
fn a_whep_offer_is_judged_like_an_http_flv_play() {
    if !require_tool("ffmpeg") {
        return;
    }
    let srv = Server::start_args(&["--play-token", "sesame"]);
    let name = unique_stream("whepauth");
    let key = format!("live/{name}");
    let _ffmpeg = publish_testsrc(&srv.rtmp_url(&key));
    let live = wait_until_live(
        srv.http,
        &format!("/{key}.flv?token=sesame"),
        Duration::from_secs(20),
    );
    assert!(live, "the publisher never came: {:?}", srv.logs());
    let path = format!("/live/{name}/whep");
    let sdp = "Content-Type: application/sdp";
    // No credential, a wrong one: refused before anything says whether the stream is live.
    let r = whep_post(srv.http, &path, &[sdp], WhepOffer::new().sdp.as_bytes());
    assert!(matches!(r.status, 401 | 403), "{}", r.status);
    let r = whep_post(
        srv.http,
        "/live/nobody/whep",
        &[sdp, "Authorization: Bearer wrong"],
        WhepOffer::new().sdp.as_bytes(),
    );
    assert!(matches!(r.status, 401 | 403), "{}", r.status);
    // The Bearer token WHEP clients send, and the ?token= of the other plays.
    let bearer = whep_post(
        srv.http,
        &path,
        &[sdp, "Authorization: Bearer sesame"],
        WhepOffer::new().sdp.as_bytes(),
    );
    assert_eq!(bearer.status, 201, "{}", bearer.body_text());
    let query = whep_post(
        srv.http,
        &format!("{path}?token=sesame"),
        &[sdp],
        WhepOffer::new().sdp.as_bytes(),
    );
    assert_eq!(query.status, 201, "{}", query.body_text());
    let line = srv
        .wait_for_log("refused", Duration::from_secs(2))
        .expect("a refusal is logged");
    assert!(line.contains("webrtc"), "{line}");
}

#[test]
fn an_on_play_hook_judges_a_whep_offer() {
    if !require_tool("ffmpeg") {
        return;
    }
    // The hook allows streams whose name starts with "ok" (tests/e2e/access.rs).
    let hooks = super::access::HookService::start();
    let srv = Server::start_args(&["--on-play", &hooks.url("/on_play")]);
    let name = unique_stream("okwhep");
    let key = format!("live/{name}");
    let _ffmpeg = publish_testsrc(&srv.rtmp_url(&key));
    wait_live(&srv, &key);
    let sdp = "Content-Type: application/sdp";
    // The offer waits for the verdict with its body, then is answered.
    let mut viewer = join(&srv, &format!("/live/{name}/whep"));
    viewer.run_for(Duration::from_secs(2));
    assert!(viewer.connected && viewer.video_frames.len() > 10);
    let r = whep_post(
        srv.http,
        "/live/badwhep/whep",
        &[sdp],
        WhepOffer::new().sdp.as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.body_text());
    let bodies = hooks.bodies.lock().unwrap().join("\n");
    assert!(
        bodies.contains("\"protocol\":\"webrtc\"") && bodies.contains(&name),
        "{bodies}"
    );
}

/// FFmpeg's FLV muxer with no extradata (behind `-f tee` without `-flags +global_header`) sends
/// an empty AVC configuration record and every picture in Annex B with SPS/PPS in-band. The
/// server makes the stream whole at ingest (`origin::avc_repair`): a WHEP viewer gets H.264
/// from a keyframe with its parameter sets (before: no video at all), an FLV player decodes
/// without an error, and the fMP4 recording holds every picture.
#[test]
fn an_h264_stream_with_no_record_and_annex_b_pictures_plays_everywhere() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let data = crate::util::TempDir::new("annexb").keep();
    let srv = Server::builder()
        .args(["--data-dir".to_string(), data.display().to_string()])
        .start();
    let name = unique_stream("annexb");
    let key = format!("live/{name}");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-t", "8", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-bf", "0", "-g", "25", "-pix_fmt", "yuv420p", "-map", "0:v"])
        .args(["-f", "tee"])
        .arg(format!("[f=flv]{}", srv.rtmp_url(&key)));
    let mut ffmpeg = Proc::spawn(cmd);
    wait_live(&srv, &key);
    assert!(
        srv.log_contains("H.264 with an empty configuration record"),
        "{:?}",
        srv.logs()
    );
    let mut viewer = join(&srv, &format!("/live/{name}/whep"));
    viewer.run_for(Duration::from_secs(3));
    let frames = &viewer.video_frames;
    eprintln!(
        "annexb: WHEP {} video frames in 3 s, first {:?}",
        frames.len(),
        frames.first()
    );
    assert!(frames.len() > 25, "video frames in 3 s: {}", frames.len());
    assert!(frames[0].key && frames[0].parameter_sets, "{:?}", frames[0]);
    // An FLV player (Debian's FFmpeg) decodes 2 s with no error.
    let mut c = Command::new("ffmpeg");
    c.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-xerror",
        "-t",
        "2",
    ])
    .arg("-i")
    .arg(srv.http_url(&format!("{key}.flv")))
    .args(["-f", "null", "-"]);
    let mut p = Proc::spawn(c);
    assert!(
        p.wait_or_panic(Duration::from_secs(30)).success() && p.stderr().trim().is_empty(),
        "HTTP-FLV: {}",
        p.stderr()
    );
    assert!(ffmpeg.wait_or_panic(Duration::from_secs(30)).success());
    let mp4 = data
        .join("mp4/live")
        .join(&name)
        .join("output_merge/stream_full.mp4");
    assert!(
        crate::util::wait_until(Duration::from_secs(20), || mp4.exists()),
        "no merged MP4: {:?}",
        srv.logs()
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&mp4)
        .output()
        .unwrap();
    let n: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    eprintln!("annexb: the merged MP4 holds {n} of 200 pictures");
    assert!(
        out.stderr.is_empty() && (199..=201).contains(&n),
        "{n} pictures: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&data);
}
