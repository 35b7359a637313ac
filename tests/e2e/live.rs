//! Live fan-out (SPEC sections 3-4, issue 2 tests): a published fixture reaches RTMP, HTTP-FLV
//! (1.1 chunked and 1.0 close-delimited) and WS-FLV viewers whole and unchanged: codecs, frame
//! counts, payloads, composition times, monotonic timestamps, a clean start, the FLV header flags
//! of the tracks that exist; audio-only and video-only; timestamps past 0xFFFFFF; FFmpeg and
//! ffprobe pull without errors.

use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::*;

/// How long a viewer may take for one whole fixture (10 s of media, real time, on a busy box).
const WHOLE: Duration = Duration::from_secs(25);
/// How long the HTTP/WS viewers keep retrying while the stream is not live yet.
const WAIT_LIVE: Duration = Duration::from_secs(10);

/// One viewer of each kind, started before the publisher: RTMP plays and waits; HTTP and WS
/// retry their 404 until the stream is live (then join within the first GOP).
struct Viewers {
    what: String,
    rtmp: JoinHandle<RtmpPlay>,
    http11: JoinHandle<HttpResponse>,
    http10: JoinHandle<HttpResponse>,
    ws: JoinHandle<WsFlv>,
}

fn start_viewers(server: &Server, app: &str, name: &str) -> Viewers {
    let path = format!("/{app}/{name}.flv");
    let http = server.http;
    let p = path.clone();
    let http11 = std::thread::spawn(move || http_get_when_live(http, &p, 1, WAIT_LIVE, WHOLE));
    let p = path.clone();
    let http10 = std::thread::spawn(move || http_get_when_live(http, &p, 0, WAIT_LIVE, WHOLE));
    let p = path.clone();
    let ws = std::thread::spawn(move || ws_get_flv_when_live(http, &p, WAIT_LIVE, WHOLE));
    let rtmp = spawn_rtmp_play(server.rtmp, app, name, WHOLE);
    // The RTMP player must be waiting before the publisher comes: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    Viewers {
        what: format!("{app}/{name}"),
        rtmp,
        http11,
        http10,
        ws,
    }
}

fn assert_flv_headers(r: &HttpResponse, what: &str) {
    assert_eq!(r.status, 200, "{what}: status; body {:?}", r.body_text());
    assert_eq!(
        r.header("content-type"),
        Some("video/x-flv"),
        "{what}: Content-Type"
    );
    assert!(
        r.header("cache-control")
            .is_some_and(|v| v.contains("no-cache")),
        "{what}: Cache-Control {:?}",
        r.header("cache-control")
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "{what}: CORS"
    );
}

/// An FLV body that is valid, flags the fixture's tracks and carries the whole fixture shifted
/// by `offset` (None: any constant shift). Returns the shift.
fn check_flv_body(data: &[u8], fixture: &str, offset: Option<i64>, w: &str) -> i64 {
    let (has_audio, has_video) = (!fixture.contains("_video"), !fixture.contains("_audio"));
    let flv = parse_flv(data);
    flv.assert_valid(w, true);
    assert_eq!(
        (flv.has_audio, flv.has_video),
        (has_audio, has_video),
        "{w}: header flags"
    );
    assert_full_stream(&flv.frames, fixture, offset, w)
}

/// Every viewer got the whole fixture, with timestamps shifted by `offset` (None: any constant
/// shift, checked to be the same on every output). Returns the shift.
fn check_viewers(v: Viewers, fixture: &str, offset: Option<i64>) -> i64 {
    let what = v.what;

    let r = v.http11.join().expect("HTTP/1.1 viewer");
    let w = format!("HTTP-FLV/1.1 {what}");
    assert_flv_headers(&r, &w);
    assert!(r.chunked, "{w}: not chunked");
    assert_eq!(
        r.end,
        BodyEnd::LastChunk,
        "{w}: did not end with the last chunk"
    );
    let shift = check_flv_body(&r.body, fixture, offset, &w);
    // Every other output must show the same shift as this one.
    let offset = Some(shift);

    let r = v.http10.join().expect("HTTP/1.0 viewer");
    let w = format!("HTTP-FLV/1.0 {what}");
    assert_flv_headers(&r, &w);
    assert!(!r.chunked, "{w}: chunked for HTTP/1.0");
    assert_eq!(r.end, BodyEnd::Eof, "{w}: not ended by closing");
    check_flv_body(&r.body, fixture, offset, &w);

    let r = v.ws.join().expect("WS-FLV viewer");
    let w = format!("WS-FLV {what}");
    assert_eq!(
        r.end,
        WsEnd::CloseFrame,
        "{w}: no close frame ({:?})",
        r.error
    );
    assert_eq!(r.text_messages, 0, "{w}: text messages");
    check_flv_body(&r.data, fixture, offset, &w);

    let r = v.rtmp.join().expect("RTMP viewer");
    let w = format!("RTMP {what}");
    assert!(r.refused.is_none(), "{w}: play refused: {:?}", r.refused);
    assert!(r.errors.is_empty(), "{w}: errors {:?}", r.errors);
    assert!(
        r.saw("NetStream.Play.Start"),
        "{w}: statuses {:?}",
        r.statuses
    );
    assert!(
        r.saw("NetStream.Play.UnpublishNotify"),
        "{w}: no UnpublishNotify; statuses {:?}",
        r.statuses
    );
    assert_full_stream(&r.frames, fixture, offset, &w);
    shift
}

fn ffmpeg_publish_to_all_outputs(fixture: &str, output_args: &[&str]) -> i64 {
    let server = Server::start();
    let name = unique_stream("ff");
    let viewers = start_viewers(&server, "live", &name);
    let mut publisher = ffmpeg_publish(
        fixture,
        &server.rtmp_url(&format!("live/{name}")),
        output_args,
    );
    let status = publisher.wait_or_panic(Duration::from_secs(25));
    assert!(
        status.success(),
        "ffmpeg publish: {status}: {}",
        publisher.stderr()
    );
    assert_eq!(publisher.stderr(), "", "ffmpeg publish printed errors");
    check_viewers(
        viewers,
        fixture,
        if output_args.is_empty() {
            Some(0)
        } else {
            None
        },
    )
}

fn rust_publish_to_all_outputs(fixture: &str, ts_offset: u32) {
    let server = Server::start();
    let name = unique_stream("rs");
    let viewers = start_viewers(&server, "live", &name);
    let opts = PublishOpts {
        speed: 2.0,
        ts_offset,
        start_delay: Duration::from_millis(700),
        ..PublishOpts::default()
    };
    let publisher =
        RustPublisher::start(server.rtmp, "live", &name, fixture, opts).expect("publish");
    publisher.join().expect("publishing");
    check_viewers(viewers, fixture, Some(ts_offset as i64));
}

/// Several viewers of each form: at every merged flush they hold the same packets, which go
/// out through one shared copy (the splice fan-out on Linux); each must still get the whole
/// stream, byte for byte in order.
#[test]
fn many_viewers_of_one_form_each_get_the_whole_stream() {
    let server = Server::start();
    let name = unique_stream("many");
    let path = format!("/live/{name}.flv");
    let http = server.http;
    let fixture = "fixture.flv";
    let mut https = Vec::new();
    for _ in 0..5 {
        let p = path.clone();
        https.push(std::thread::spawn(move || {
            http_get_when_live(http, &p, 1, WAIT_LIVE, WHOLE)
        }));
    }
    let mut wss = Vec::new();
    for _ in 0..3 {
        let p = path.clone();
        wss.push(std::thread::spawn(move || {
            ws_get_flv_when_live(http, &p, WAIT_LIVE, WHOLE)
        }));
    }
    let rtmps: Vec<_> = (0..3)
        .map(|_| spawn_rtmp_play(server.rtmp, "live", &name, WHOLE))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let opts = PublishOpts {
        speed: 2.0,
        start_delay: Duration::from_millis(700),
        ..PublishOpts::default()
    };
    let publisher =
        RustPublisher::start(server.rtmp, "live", &name, fixture, opts).expect("publish");
    publisher.join().expect("publishing");
    for (i, h) in https.into_iter().enumerate() {
        let r = h.join().expect("HTTP viewer");
        let w = format!("HTTP-FLV viewer {i}");
        assert_eq!(
            r.end,
            BodyEnd::LastChunk,
            "{w}: did not end with the last chunk"
        );
        check_flv_body(&r.body, fixture, Some(0), &w);
    }
    for (i, h) in wss.into_iter().enumerate() {
        let r = h.join().expect("WS viewer");
        let w = format!("WS-FLV viewer {i}");
        assert_eq!(
            r.end,
            WsEnd::CloseFrame,
            "{w}: no close frame ({:?})",
            r.error
        );
        check_flv_body(&r.data, fixture, Some(0), &w);
    }
    for (i, h) in rtmps.into_iter().enumerate() {
        let r = h.join().expect("RTMP viewer");
        let w = format!("RTMP viewer {i}");
        assert!(r.errors.is_empty(), "{w}: errors {:?}", r.errors);
        assert_full_stream(&r.frames, fixture, Some(0), &w);
    }
    // On Linux most of it went through the shared copies.
    if cfg!(target_os = "linux") {
        let r = http_get(server.http, "/metrics", Duration::from_secs(5));
        let text = String::from_utf8_lossy(&r.body).to_string();
        let value = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in /metrics:\n{text}"))
        };
        let (out, shared) = (
            value("rtmpd_bytes_out_total"),
            value("rtmpd_bytes_out_shared_total"),
        );
        assert!(shared > out / 2, "only {shared} of {out} bytes shared");
    }
}

#[test]
fn ffmpeg_publish_reaches_every_output_whole() {
    if !require_tool("ffmpeg") {
        return;
    }
    ffmpeg_publish_to_all_outputs("fixture.flv", &[]);
}

#[test]
fn ffmpeg_publish_audio_only() {
    if !require_tool("ffmpeg") {
        return;
    }
    ffmpeg_publish_to_all_outputs("fixture_audio.flv", &[]);
}

#[test]
fn ffmpeg_publish_video_only() {
    if !require_tool("ffmpeg") {
        return;
    }
    ffmpeg_publish_to_all_outputs("fixture_video.flv", &[]);
}

/// 16770 s = 16,770,000 ms: the 24-bit RTMP/FLV timestamp field overflows 7.2 s into the
/// fixture, so the extended timestamp paths are used on the way in and on every way out.
#[test]
fn ffmpeg_timestamps_past_24_bits_pass_intact() {
    if !require_tool("ffmpeg") {
        return;
    }
    let offset = ffmpeg_publish_to_all_outputs("fixture.flv", &["-output_ts_offset", "16770"]);
    assert!(
        (16_760_000..16_770_001).contains(&offset),
        "offset {offset} is not FFmpeg's 16770 s"
    );
    let last = fixture_media("fixture.flv")
        .iter()
        .map(|f| f.dts)
        .max()
        .unwrap() as i64;
    assert!(
        offset + last > 0xFF_FFFF,
        "the stream never crossed 0xFFFFFF"
    );
}

#[test]
fn rust_publish_reaches_every_output_whole() {
    rust_publish_to_all_outputs("fixture.flv", 0);
}

#[test]
fn rust_publish_audio_only() {
    rust_publish_to_all_outputs("fixture_audio.flv", 0);
}

#[test]
fn rust_publish_video_only() {
    rust_publish_to_all_outputs("fixture_video.flv", 0);
}

/// Starts 2 s below 0xFFFFFF, so the crossing comes early in the stream.
#[test]
fn rust_timestamps_past_24_bits_pass_intact() {
    rust_publish_to_all_outputs("fixture.flv", 0xFF_FFFF - 2000);
}

/// Checks ffprobe's view of `url` against the fixture facts.
fn assert_probe(url: &str, fixture: &str) {
    let facts = Facts::get();
    let mut p = ffprobe_streams(url);
    let status = p.wait_or_panic(Duration::from_secs(15));
    let out = p.stdout();
    assert!(status.success(), "ffprobe {url}: {status}: {}", p.stderr());
    assert_eq!(p.stderr(), "", "ffprobe {url} printed errors");
    let has = |kv: String| out.lines().any(|l| l == kv);
    for (k, key) in [
        ("codec_name", "video_codec"),
        ("profile", "video_profile"),
        ("width", "width"),
        ("height", "height"),
        ("codec_name", "audio_codec"),
        ("sample_rate", "sample_rate"),
        ("channels", "channels"),
    ] {
        let v = facts.str(fixture, key);
        assert!(
            has(format!("{k}={v}")),
            "ffprobe {url}: no {k}={v} in\n{out}"
        );
    }
}

#[test]
fn ffmpeg_and_ffprobe_pull_rtmp_and_http_flv_without_errors() {
    if !require_tool("ffmpeg") || !require_tool("ffprobe") {
        return;
    }
    let server = Server::start();
    let rtmp_url = server.rtmp_url("live/pull");
    let mut publisher = ffmpeg_publish("fixture.flv", &rtmp_url, &[]);
    assert!(
        wait_until_live(server.http, "/live/pull.flv", WAIT_LIVE),
        "the stream never went live: {}",
        publisher.stderr()
    );
    let http_url = server.http_url("live/pull.flv");
    let mut pulls = vec![
        ffmpeg_pull_null(&rtmp_url, 5),
        ffmpeg_pull_null(&http_url, 5),
    ];
    assert_probe(&rtmp_url, "fixture.flv");
    assert_probe(&http_url, "fixture.flv");
    for p in &mut pulls {
        let status = p.wait_or_panic(Duration::from_secs(15));
        assert!(status.success(), "{}: {status}: {}", p.name(), p.stderr());
        assert_eq!(p.stderr(), "", "{} printed errors", p.name());
    }
    assert!(publisher.is_running() || publisher.try_wait().unwrap().success());
}

/// A viewer who joins mid-stream starts at a cached keyframe, with the sequence headers first.
#[test]
fn late_joiner_starts_on_a_keyframe_with_sequence_headers() {
    let server = Server::start();
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "late",
        "fixture.flv",
        PublishOpts {
            limit_ms: Some(7000),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    std::thread::sleep(Duration::from_millis(3000));
    let http = server.http;
    let h = std::thread::spawn(move || http_get(http, "/live/late.flv", WHOLE));
    let w = std::thread::spawn(move || ws_get_flv(http, "/live/late.flv", WHOLE));
    let rtmp = rtmp_play_collect(server.rtmp, "live", "late", WHOLE);
    publisher.join().expect("publishing");
    let check = |frames: &[rtmpd::media::Frame], what: &str| {
        assert_clean_start(frames, what);
        assert_monotonic(frames, what);
        let first_pic = frames
            .iter()
            .find(|f| f.track == rtmpd::media::Track::Video && !f.config)
            .unwrap_or_else(|| panic!("{what}: no pictures"));
        // Joined after 3 s: the GOP cache holds the GOP that started at 2 s, not the first.
        assert!(
            first_pic.dts >= 1900,
            "{what}: started at {} ms",
            first_pic.dts
        );
        assert!(
            count_pictures(frames) > 50,
            "{what}: only {} pictures",
            count_pictures(frames)
        );
    };
    let r = h.join().unwrap();
    assert_flv_headers(&r, "late HTTP-FLV");
    let flv = parse_flv(&r.body);
    flv.assert_valid("late HTTP-FLV", true);
    check(&flv.frames, "late HTTP-FLV");
    let r = w.join().unwrap().expect("WS-FLV connect");
    check(&parse_flv(&r.data).frames, "late WS-FLV");
    assert!(rtmp.refused.is_none(), "{:?}", rtmp.refused);
    check(&rtmp.frames, "late RTMP");
}

/// With --no-gop-cache a joiner gets the sequence headers at once but waits for the next
/// keyframe instead of starting from the cached GOP.
#[test]
fn no_gop_cache_joiner_waits_for_the_next_keyframe() {
    let server = Server::start_args(&["--no-gop-cache"]);
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "nogop",
        "fixture.flv",
        PublishOpts {
            limit_ms: Some(5000),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    // Join at about 2.5 s: between the keyframes at 2 s and 4 s.
    std::thread::sleep(Duration::from_millis(2500));
    let r = http_get(server.http, "/live/nogop.flv", WHOLE);
    publisher.join().expect("publishing");
    assert_eq!(r.end, BodyEnd::LastChunk);
    let flv = parse_flv(&r.body);
    flv.assert_valid("no-gop-cache joiner", true);
    assert_clean_start(&flv.frames, "no-gop-cache joiner");
    let first_pic = flv
        .frames
        .iter()
        .find(|f| f.track == rtmpd::media::Track::Video && !f.config)
        .expect("no pictures");
    assert!(
        first_pic.dts >= 4000,
        "started at {} ms, inside the GOP that began at 2000",
        first_pic.dts
    );
}

/// The stream shows up in /api/streams while live; /metrics is Prometheus text.
#[test]
fn api_streams_and_metrics_while_live() {
    let server = Server::start();
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "apistream",
        "fixture.flv",
        PublishOpts {
            limit_ms: Some(3000),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(
        server.http,
        "/live/apistream.flv",
        WAIT_LIVE
    ));
    let r = http_get(server.http, "/api/streams", Duration::from_secs(5));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type").is_some_and(|v| v.contains("json")),
        "{:?}",
        r.header("content-type")
    );
    assert!(r.body_text().contains("apistream"), "{}", r.body_text());
    let r = http_get(server.http, "/api/server", Duration::from_secs(5));
    assert_eq!(r.status, 200);
    assert!(
        r.body_text().trim_start().starts_with('{'),
        "{}",
        r.body_text()
    );
    let r = http_get(server.http, "/metrics", Duration::from_secs(5));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{:?}",
        r.header("content-type")
    );
    let text = r.body_text();
    assert!(text.contains("# TYPE "), "{text}");
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = l.rsplit(' ').next().unwrap_or("");
        assert!(
            value.parse::<f64>().is_ok(),
            "not a Prometheus sample: {l:?}"
        );
    }
    publisher.join().expect("publishing");
}
