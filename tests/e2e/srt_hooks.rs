//! SRT callers and the `--on-publish`/`--on-play` hooks: the caller's handshake waits for the
//! hook's verdict (the caller repeats its conclusion meanwhile), an allowed key publishes and
//! plays, a denied one is refused with SRT's 1403 and one log line, a hook slower than
//! `--hook-timeout` refuses; SRT players and publishers are counted in `/api/streams`,
//! `/api/server` and `/metrics` like every other player.

use std::time::Duration;

use super::access::HookService;
use super::srt_server::{assert_reads, ffmpeg_publish_srt, srt_url, start, READ};
use crate::util::*;

/// The number of the `/metrics` line starting with `prefix`.
fn metric(body: &str, prefix: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn srt_callers_go_through_the_hooks_and_players_are_counted() {
    if !require_tool("ffmpeg") {
        return;
    }
    let hooks = HookService::start();
    let (mut server, port) = start(&[
        "--on-publish",
        &hooks.url("/on_publish"),
        "--on-play",
        &hooks.url("/on_play"),
        "--hook-timeout",
        "1",
    ]);
    // Denied by the hook: refused in the handshake, one refusal line, nothing published.
    let mut bad = ffmpeg_publish_srt(&srt_url(port, "#!::r=live/bad,m=publish", ""));
    assert!(
        !bad.wait_or_panic(Duration::from_secs(20)).success(),
        "a publish the hook denied went through"
    );
    assert!(
        server
            .wait_for_log("refused publish live/bad", Duration::from_secs(5))
            .is_some(),
        "{:?}",
        server.logs()
    );
    // A hook slower (3 s) than --hook-timeout (1 s): refused too.
    let mut slow = ffmpeg_publish_srt(&srt_url(port, "publish:live/slowpoke", ""));
    assert!(!slow.wait_or_panic(Duration::from_secs(20)).success());
    assert!(server
        .wait_for_log("refused publish live/slowpoke", Duration::from_secs(5))
        .is_some());
    assert!(!server.log_contains("SRT publish from"));

    // Allowed: publishes, and an SRT player of it is allowed by the play hook.
    let mut publisher = ffmpeg_publish_srt(&srt_url(port, "#!::r=live/ok1,m=publish", ""));
    assert!(
        server
            .wait_for_log("live/ok1: SRT publish from", Duration::from_secs(10))
            .is_some(),
        "{}",
        publisher.stderr()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let play = srt_url(port, "#!::r=live/ok1,m=request", "");
    let reader = std::thread::spawn(move || assert_reads(&play, "SRT play allowed by the hook"));
    // While it plays: one SRT player and one publisher, wherever players are counted.
    let counted = wait_until(Duration::from_secs(10), || {
        let m = http_get(server.http, "/metrics", READ).body_text();
        metric(&m, "rtmpd_players{protocol=\"srt\"}") == Some(1)
            && metric(&m, "rtmpd_streams ") == Some(1)
    });
    let m = http_get(server.http, "/metrics", READ).body_text();
    assert!(counted, "{m}");
    let v: serde_json::Value =
        serde_json::from_slice(&http_get(server.http, "/api/streams", READ).body).unwrap();
    let s = &v["streams"][0];
    assert_eq!(s["viewers"]["srt"], 1, "{v}");
    assert_eq!(s["viewers"]["total"], 1, "{v}");
    let srt = s["srt"].as_array().expect("srt connections");
    for role in ["publisher", "player"] {
        let c = srt
            .iter()
            .find(|c| c["role"] == role)
            .unwrap_or_else(|| panic!("no {role}: {v}"));
        for field in [
            "rtt_ms",
            "packets_lost",
            "packets_retransmitted",
            "latency_ms",
        ] {
            assert!(c[field].is_number(), "{role} {field}: {v}");
        }
    }
    let v: serde_json::Value =
        serde_json::from_slice(&http_get(server.http, "/api/server", READ).body).unwrap();
    assert_eq!(v["players"]["srt"], 1, "{v}");
    assert_eq!(v["publishers"], 1, "{v}");
    // A play the hook denies: 1403 in the handshake, the refusal logged.
    let mut denied = ffmpeg_pull_null(&srt_url(port, "#!::r=live/nope,m=request", ""), 1);
    assert!(!denied.wait_or_panic(READ).success(), "a denied play");
    assert!(server
        .wait_for_log("refused play live/nope", Duration::from_secs(5))
        .is_some());
    reader.join().unwrap();
    assert!(publisher.wait_or_panic(Duration::from_secs(30)).success());
    // The player is gone from the counts once it left.
    assert!(wait_until(Duration::from_secs(10), || metric(
        &http_get(server.http, "/metrics", READ).body_text(),
        "rtmpd_players{protocol=\"srt\"}"
    ) == Some(0)));
    // The hook saw SRT as the protocol, for publish and play.
    let bodies = hooks.bodies.lock().unwrap().join("\n");
    for want in [
        "POST /on_publish",
        "POST /on_play",
        "\"protocol\":\"srt\"",
        "\"stream\":\"ok1\"",
        "\"stream\":\"bad\"",
    ] {
        assert!(bodies.contains(want), "{want}:\n{bodies}");
    }
    server.assert_running();
}
