//! Stream hub behaviour (issue 2 "Behaviour" tests): one publisher per key and takeover after
//! the idle time, players before publishers, a killed publisher ends every player cleanly, a
//! viewer that stops reading is dropped while another keeps a full stream, bad names refused.

use std::time::{Duration, Instant};

use rtmpd::media::Frame;

use crate::util::*;

/// Pictures in the fixture up to `ms` of media time (what a publisher with `limit_ms` sends).
fn pictures_until(fixture: &str, ms: u32) -> usize {
    count_pictures(
        &fixture_media(fixture)
            .into_iter()
            .filter(|f| f.dts <= ms)
            .collect::<Vec<Frame>>(),
    )
}

/// Waits for the server to close `client`'s connection (an error or EOF on read).
fn closed_by_server(client: &mut RtmpClient, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match client.next_event(Duration::from_millis(200)) {
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn second_publisher_refused_and_first_untouched() {
    let server = Server::start();
    let first = RustPublisher::start(
        server.rtmp,
        "live",
        "busy",
        "fixture.flv",
        PublishOpts {
            limit_ms: Some(5000),
            ..PublishOpts::default()
        },
    )
    .expect("first publish");
    let http = server.http;
    let viewer = std::thread::spawn(move || {
        http_get_when_live(
            http,
            "/live/busy.flv",
            1,
            Duration::from_secs(5),
            Duration::from_secs(20),
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut second = RtmpClient::connect(server.rtmp, "live", RTMP_TIMEOUT).expect("connect");
    let err = second
        .publish("busy")
        .expect_err("second publisher accepted");
    assert!(
        err.to_string().contains("NetStream.Publish.BadName"),
        "second publisher refused with {err}"
    );
    assert!(
        closed_by_server(&mut second, Duration::from_secs(5)),
        "the refused publisher was not closed"
    );
    first.join().expect("first publisher disturbed");
    let r = viewer.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.end, BodyEnd::LastChunk);
    let flv = parse_flv(&r.body);
    flv.assert_valid("viewer of the first publisher", true);
    assert_clean_start(&flv.frames, "viewer");
    assert_monotonic(&flv.frames, "viewer");
    assert_eq!(
        count_pictures(&flv.frames),
        pictures_until("fixture.flv", 5000),
        "the viewer lost pictures"
    );
}

#[test]
fn ffmpeg_second_publisher_refused_and_first_untouched() {
    if !require_tool("ffmpeg") {
        return;
    }
    let server = Server::start();
    let url = server.rtmp_url("live/busyff");
    let mut first = ffmpeg_publish("fixture.flv", &url, &[]);
    let http = server.http;
    let viewer = std::thread::spawn(move || {
        http_get_when_live(
            http,
            "/live/busyff.flv",
            1,
            Duration::from_secs(10),
            Duration::from_secs(25),
        )
    });
    assert!(wait_until_live(
        server.http,
        "/live/busyff.flv",
        Duration::from_secs(10)
    ));
    std::thread::sleep(Duration::from_secs(1));
    let mut second = ffmpeg_publish("fixture.flv", &url, &[]);
    let status = second.wait_or_panic(Duration::from_secs(10));
    assert!(
        !status.success(),
        "the second ffmpeg publisher was accepted"
    );
    let status = first.wait_or_panic(Duration::from_secs(25));
    assert!(status.success(), "first publisher: {}", first.stderr());
    let r = viewer.join().unwrap();
    assert_eq!(r.end, BodyEnd::LastChunk);
    let flv = parse_flv(&r.body);
    flv.assert_valid("viewer", true);
    assert_full_stream(
        &flv.frames,
        "fixture.flv",
        Some(0),
        "viewer of the first publisher",
    );
}

/// A publisher that has sent nothing for 5 s (a dead encoder behind a dropped network) is taken
/// over by the next one, together with its players.
#[test]
fn idle_publisher_is_taken_over_with_its_players() {
    let server = Server::start();
    let player = spawn_rtmp_play(server.rtmp, "live", "idle", Duration::from_secs(25));
    std::thread::sleep(Duration::from_millis(300));
    let stalled = RustPublisher::start(
        server.rtmp,
        "live",
        "idle",
        "fixture.flv",
        PublishOpts {
            speed: 0.0,
            limit_ms: Some(1000),
            end: PublishEnd::Stall,
            ..PublishOpts::default()
        },
    )
    .expect("first publish");
    let silent_since = Instant::now();
    let http = server.http;
    let viewer = std::thread::spawn(move || {
        http_get_when_live(
            http,
            "/live/idle.flv",
            1,
            Duration::from_secs(5),
            Duration::from_secs(25),
        )
    });
    // Within the idle time the stream is still taken.
    std::thread::sleep(Duration::from_secs(1));
    let mut early = RtmpClient::connect(server.rtmp, "live", RTMP_TIMEOUT).expect("connect");
    let err = early
        .publish("idle")
        .expect_err("publish accepted while the first was live");
    assert!(
        err.to_string().contains("NetStream.Publish.BadName"),
        "{err}"
    );
    early.close();
    // After it, the newcomer takes over.
    let idle = Duration::from_millis(5600);
    if let Some(rest) = idle.checked_sub(silent_since.elapsed()) {
        std::thread::sleep(rest);
    }
    let second = RustPublisher::start(
        server.rtmp,
        "live",
        "idle",
        "fixture.flv",
        PublishOpts {
            limit_ms: Some(3000),
            ..PublishOpts::default()
        },
    )
    .expect("takeover refused");
    second.join().expect("second publisher");
    drop(stalled);
    let first_pictures = pictures_until("fixture.flv", 1000);
    let r = player.join().unwrap();
    assert!(r.refused.is_none(), "{:?}", r.refused);
    assert!(
        count_pictures(&r.frames) > first_pictures + 50,
        "the RTMP player did not follow the takeover: {} pictures, statuses {:?}",
        count_pictures(&r.frames),
        r.statuses
    );
    let r = viewer.join().unwrap();
    assert_eq!(r.status, 200);
    let flv = parse_flv(&r.body);
    flv.assert_valid("HTTP-FLV viewer across the takeover", false);
    assert!(
        count_pictures(&flv.frames) > first_pictures + 50,
        "the HTTP-FLV viewer did not follow the takeover: {} pictures",
        count_pictures(&flv.frames)
    );
}

#[test]
fn player_before_publisher_starts_when_it_arrives() {
    let server = Server::start();
    // HTTP-FLV of a stream nobody publishes is 404 (only RTMP players wait).
    let r = http_get(server.http, "/live/early.flv", Duration::from_secs(5));
    assert_eq!(r.status, 404);
    let mut player = RtmpClient::connect(server.rtmp, "live", RTMP_TIMEOUT).expect("connect");
    player.play("early").expect("play before the publisher");
    std::thread::sleep(Duration::from_millis(1000));
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "early",
        "fixture.flv",
        PublishOpts {
            speed: 2.0,
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    let mut got = RtmpPlay::default();
    collect_events(
        &mut player,
        &mut got,
        Instant::now() + Duration::from_secs(15),
    );
    publisher.join().expect("publishing");
    assert!(
        got.saw("NetStream.Play.PublishNotify"),
        "no PublishNotify: {:?}",
        got.statuses
    );
    assert!(
        got.saw("NetStream.Play.UnpublishNotify"),
        "{:?}",
        got.statuses
    );
    assert_full_stream(
        &got.frames,
        "fixture.flv",
        Some(0),
        "RTMP player that came first",
    );
}

/// Starts the three kinds of viewer on a live stream; returns their threads.
fn viewers_of(
    server: &Server,
    path: &str,
    max: Duration,
) -> (
    std::thread::JoinHandle<HttpResponse>,
    std::thread::JoinHandle<WsFlv>,
) {
    let http = server.http;
    let p = path.to_string();
    let h = std::thread::spawn(move || http_get(http, &p, max));
    let p = path.to_string();
    let w = std::thread::spawn(move || ws_get_flv(http, &p, max).expect("WS-FLV connect"));
    (h, w)
}

/// After the publisher vanished: HTTP-FLV ends with the last chunk, WS-FLV with a close frame,
/// RTMP with UnpublishNotify and a closed connection; all within `within` of `gone`.
fn assert_players_ended(
    h: std::thread::JoinHandle<HttpResponse>,
    w: std::thread::JoinHandle<WsFlv>,
    rtmp: std::thread::JoinHandle<RtmpPlay>,
    gone: Instant,
    within: Duration,
) {
    let r = h.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.end, BodyEnd::LastChunk, "HTTP-FLV did not end cleanly");
    let flv = parse_flv(&r.body);
    flv.assert_valid("HTTP-FLV", true);
    assert!(count_pictures(&flv.frames) > 10, "HTTP-FLV got little");
    let r = w.join().unwrap();
    assert_eq!(r.end, WsEnd::CloseFrame, "WS-FLV: {:?}", r.error);
    parse_flv(&r.data).assert_valid("WS-FLV", true);
    let r = rtmp.join().unwrap();
    assert!(r.refused.is_none(), "{:?}", r.refused);
    assert!(
        r.saw("NetStream.Play.UnpublishNotify"),
        "RTMP: no UnpublishNotify: {:?}",
        r.statuses
    );
    assert!(r.closed, "RTMP: the server did not close the player");
    assert!(
        gone.elapsed() < within,
        "players ended {:?} after the publisher went",
        gone.elapsed()
    );
}

#[test]
fn ffmpeg_publisher_sigkill_ends_every_player_cleanly() {
    if !require_tool("ffmpeg") {
        return;
    }
    let server = Server::start();
    let rtmp = spawn_rtmp_play(server.rtmp, "live", "killed", Duration::from_secs(20));
    let mut publisher = ffmpeg_publish_with(
        "fixture.flv",
        &server.rtmp_url("live/killed"),
        &["-stream_loop", "-1"],
        &[],
    );
    assert!(wait_until_live(
        server.http,
        "/live/killed.flv",
        Duration::from_secs(10)
    ));
    let (h, w) = viewers_of(&server, "/live/killed.flv", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    publisher.kill();
    let gone = Instant::now();
    assert_players_ended(h, w, rtmp, gone, Duration::from_secs(6));
}

#[test]
fn dropped_publisher_connection_ends_every_player_cleanly() {
    let server = Server::start();
    let rtmp = spawn_rtmp_play(server.rtmp, "live", "dropped", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "dropped",
        "fixture.flv",
        PublishOpts {
            limit_ms: Some(4000),
            end: PublishEnd::Drop,
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(
        server.http,
        "/live/dropped.flv",
        Duration::from_secs(5)
    ));
    let (h, w) = viewers_of(&server, "/live/dropped.flv", Duration::from_secs(20));
    publisher.join().expect("publishing");
    let gone = Instant::now();
    assert_players_ended(h, w, rtmp, gone, Duration::from_secs(6));
}

/// A viewer that never reads is skipped and then disconnected, while a normal viewer of the same
/// stream gets every frame. The kernel absorbs about 3 MB for a viewer that does not read (the
/// server's send buffer grows to tcp_wmem's maximum; the client's receive buffer is made tiny),
/// so the fixture is sent at 10x real time (~3 Mbit/s) to reach the server's own queue quickly.
#[cfg(unix)]
#[test]
fn stalled_viewer_is_disconnected_while_another_gets_everything() {
    const LOOPS: u32 = 14;
    let server = Server::start_args(&["--queue-soft-ms", "3000", "--queue-hard-ms", "6000"]);
    let opts = PublishOpts {
        speed: 10.0,
        loops: LOOPS,
        ..PublishOpts::default()
    };
    // The viewer that must get everything plays over RTMP from before the publisher (an HTTP
    // viewer can only join once live, and at 10x one GOP lasts 200 ms).
    let good_rtmp = spawn_rtmp_play(server.rtmp, "live", "stalled", Duration::from_secs(28));
    std::thread::sleep(Duration::from_millis(300));
    let publisher =
        RustPublisher::start(server.rtmp, "live", "stalled", "fixture.flv", opts).expect("publish");
    assert!(wait_until_live(
        server.http,
        "/live/stalled.flv",
        Duration::from_secs(5)
    ));
    let http = server.http;
    let good =
        std::thread::spawn(move || http_get(http, "/live/stalled.flv", Duration::from_secs(28)));
    let mut slow = raw_connect_small_rcvbuf(server.http, 4096);
    {
        use std::io::Write;
        slow.write_all(&request_bytes("GET", "/live/stalled.flv", 1, &[]))
            .unwrap();
    }
    let peer = slow.local_addr().unwrap().to_string();
    // The server logs both steps with the viewer's address: skipped forward, then disconnected.
    let dropped = server.wait_for_log_where(
        |l| l.contains(&peer) && l.contains("disconnect"),
        Duration::from_secs(12),
    );
    let skipped =
        server.wait_for_log_where(|l| l.contains(&peer) && l.contains(" slow"), Duration::ZERO);
    // Disconnected while the stream is still live: reading now reaches EOF quickly (a viewer
    // that was only skipped would keep receiving data).
    assert!(
        !publisher.is_finished(),
        "the publisher ended before the check"
    );
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "the stalled viewer was not disconnected (log: skipped {skipped:?}, dropped {dropped:?})"
    );
    publisher.join().expect("publishing");
    let r = good_rtmp.join().unwrap();
    assert!(r.refused.is_none(), "{:?}", r.refused);
    assert!(r.saw("NetStream.Play.UnpublishNotify"), "{:?}", r.statuses);
    let what = "RTMP viewer beside the stalled one";
    assert_clean_start(&r.frames, what);
    assert_monotonic(&r.frames, what);
    let all_pictures = LOOPS as usize * pictures_until("fixture.flv", u32::MAX);
    assert_eq!(
        count_pictures(&r.frames),
        all_pictures,
        "{what}: lost pictures"
    );
    let all_audio = LOOPS as usize * count_audio(&fixture_media("fixture.flv"));
    assert_eq!(count_audio(&r.frames), all_audio, "{what}: lost audio");
    // The HTTP-FLV viewer joined once live: it may miss the first GOP, never anything later.
    let r = good.join().unwrap();
    let what = "HTTP-FLV viewer beside the stalled one";
    assert_eq!(r.end, BodyEnd::LastChunk, "{what}: did not get to the end");
    let flv = parse_flv(&r.body);
    flv.assert_valid(what, true);
    assert_clean_start(&flv.frames, what);
    assert_monotonic(&flv.frames, what);
    let got = count_pictures(&flv.frames);
    assert!(
        got == all_pictures || got == all_pictures - 50,
        "{what}: {got} of {all_pictures} pictures"
    );
    // Last, so that the checks above report first.
    let metrics = http_get(server.http, "/metrics", Duration::from_secs(5)).body_text();
    let slow_metrics: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("slow") && !l.starts_with('#'))
        .collect();
    assert!(
        skipped.is_some(),
        "no log line says {peer} is slow (skipped forward) before it was dropped; metrics {slow_metrics:?}"
    );
    assert!(
        dropped.is_some(),
        "no log line says {peer} was disconnected"
    );
}

#[test]
fn bad_names_are_refused() {
    let server = Server::start();
    let mut c = RtmpClient::connect(server.rtmp, "live", RTMP_TIMEOUT).expect("connect");
    let err = c.publish("no.dots").expect_err("bad publish name accepted");
    assert!(
        err.to_string().contains("NetStream.Publish.BadName"),
        "{err}"
    );
    let mut c = RtmpClient::connect(server.rtmp, "live", RTMP_TIMEOUT).expect("connect");
    let err = c
        .play(&"x".repeat(65))
        .expect_err("a 65-character name accepted");
    assert!(
        err.to_string().contains("NetStream.Play.StreamNotFound"),
        "{err}"
    );
    // Never a stream; the static file service behind the same port may answer a path that
    // escapes its root with 403 (SPEC section 7).
    for path in [
        "/live/no.dots.flv",
        "/li%20ve/s.flv",
        "/live/a/b.flv",
        "/../live/s.flv",
    ] {
        let r = http_get(server.http, path, Duration::from_secs(5));
        assert!(
            matches!(r.status, 400 | 403 | 404),
            "{path}: {} {:?}",
            r.status,
            r.body_text()
        );
    }
}

/// An unknown command with a transaction id gets `_error`, and the connection stays usable.
#[test]
fn unknown_rtmp_command_gets_error_and_the_connection_goes_on() {
    use rtmpd::rtmp::client::ClientEvent;
    use rtmpd::rtmp::command;
    let server = Server::start();
    let mut c = RtmpClient::connect(server.rtmp, "live", RTMP_TIMEOUT).expect("connect");
    let txn = c.session_mut().txn();
    c.session_mut()
        .send_command(0, &command::simple_request("noSuchCommand", txn, Some("x")));
    c.flush().expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            Instant::now() < deadline,
            "no _error for an unknown command"
        );
        if let Some(ClientEvent::Error(_)) = c.next_event(Duration::from_millis(200)).expect("read")
        {
            break;
        }
    }
    c.publish("after")
        .expect("publish after the unknown command");
}
