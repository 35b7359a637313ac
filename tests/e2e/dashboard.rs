//! The dashboard's server side end to end: `/api/streams` carries each live stream's `health`
//! (keyframe interval, frame rate, drift, recorders) computed from what the publisher sent, and
//! `/api/streams/history` its 10-minute rings. The fixture's facts are known: 25 fps H.264 with
//! a keyframe every 50 frames (2 s) and AAC, published in real time (twice: 20 s).

use std::time::{Duration, Instant};

use crate::util::*;

const WAIT_LIVE: Duration = Duration::from_secs(10);

/// The number after `"name":` in `json` (the first one), or `None` for `null` / missing.
fn number(json: &str, name: &str) -> Option<f64> {
    let pat = format!("\"{name}\":");
    let rest = &json[json.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn health_of(body: &str) -> &str {
    let at = body.find("\"health\":").expect("a health field");
    &body[at..]
}

#[test]
fn api_health_and_history_describe_the_live_stream() {
    let server = Server::start();
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "dash",
        "fixture.flv",
        PublishOpts {
            loops: 2,
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(server.http, "/live/dash.flv", WAIT_LIVE));

    // Two keyframes (4 s of media) and a sample of the recorders' bytes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let r = http_get(server.http, "/api/streams", Duration::from_secs(5));
        assert_eq!(r.status, 200);
        let body = r.body_text();
        let h = health_of(&body);
        let ready = number(h, "keyframe_interval_ms").is_some_and(|k| k >= 2000.0)
            && number(h, "bytes").is_some_and(|b| b > 0.0)
            && number(h, "fps_in").is_some();
        if ready || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let h = health_of(&body);
    assert_eq!(number(h, "keyframe_interval_ms"), Some(2000.0), "{h}");
    let fps = number(h, "fps_in").expect("fps_in");
    assert!((fps - 25.0).abs() < 1.5, "fps_in {fps}: {h}");
    assert_eq!(number(h, "fps_declared"), Some(25.0), "{h}");
    // Published in real time from one clock: the tracks stay within a second of each other.
    let av = number(h, "av").expect("av drift");
    assert!(av.abs() < 1000.0, "av drift {av}: {h}");
    assert!(h.contains("\"level\":\"green\""), "{h}");
    for rec in ["\"name\":\"flv\"", "\"name\":\"hls\""] {
        assert!(h.contains(rec), "{rec} missing: {h}");
    }
    assert!(h.contains("\"state\":\"writing\""), "{h}");
    assert_eq!(number(h, "timestamp_jumps"), Some(0.0), "{h}");

    // The history keeps one sample per 5 s: after 6 s of publishing there is at least one,
    // with the stream's input bitrate (the fixture is about 320 kbps).
    let deadline = Instant::now() + Duration::from_secs(15);
    let hist = loop {
        let r = http_get(server.http, "/api/streams/history", Duration::from_secs(5));
        assert_eq!(r.status, 200);
        let t = r.body_text();
        if t.contains("\"stream\":\"dash\"") && !t.contains("\"bitrate_in_kbps\":[]") {
            break t;
        }
        assert!(Instant::now() < deadline, "no history: {t}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(number(&hist, "interval_s"), Some(5.0), "{hist}");
    let kbps = hist
        .split("\"bitrate_in_kbps\":[")
        .nth(1)
        .and_then(|r| r.split([',', ']']).next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("a bitrate sample");
    assert!(
        kbps > 100.0 && kbps < 1000.0,
        "bitrate_in_kbps {kbps}: {hist}"
    );
    assert!(hist.contains("\"cpu_percent\":["), "{hist}");
    publisher.join().expect("publishing");
}

/// Issue 15 point 6: a live HTTP-FLV request is logged once, when the player leaves, with its
/// real status and the bytes it was sent (it used to be logged at once with status 0, 0 bytes).
#[test]
fn live_flv_access_line_has_status_and_bytes_when_the_player_leaves() {
    let dir = std::env::temp_dir().join(format!("rtmpd-live-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("access.log");
    let server = Server::builder()
        .args(["--access-log", file.to_str().unwrap()])
        .start();
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "logged",
        "fixture.flv",
        PublishOpts::default(),
    )
    .expect("publish");
    assert!(wait_until_live(server.http, "/live/logged.flv", WAIT_LIVE));
    let r = http_get(server.http, "/live/logged.flv", Duration::from_millis(1500));
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // wait_until_live's probes are logged too: take the line of the 1.5 s read.
        let found = text
            .lines()
            .filter(|l| l.contains("GET /live/logged.flv"))
            .find(|l| l.split(' ').nth(9).and_then(|b| b.parse::<u64>().ok()) > Some(20_000))
            .map(str::to_string);
        if let Some(l) = found {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "no live access line with its bytes: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[8], "200", "{line}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.lines().any(|l| l.contains("\" 0 0 ")),
        "a line with status 0: {text}"
    );
    drop(publisher);
    let _ = std::fs::remove_dir_all(&dir);
}
