//! The command line (SPEC section 1): --help, --version, bad options exit 2 with a reason,
//! startup lines with the real ports, a busy port is fatal, SIGTERM exits 0.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

fn run(args: &[&str]) -> std::process::Output {
    let mut p = Proc::spawn({
        let mut c = Command::new(binary());
        c.args(args);
        c
    });
    p.wait_or_panic(Duration::from_secs(10));
    // Proc keeps the output; rebuild an Output-like value for the asserts.
    std::process::Output {
        status: p.try_wait().unwrap(),
        stdout: p.stdout().into_bytes(),
        stderr: p.stderr().into_bytes(),
    }
}

#[test]
fn help_lists_every_origin_option_with_defaults() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--bind",
        "--rtmp-port",
        "--http-port",
        "--no-gop-cache",
        "--log-level",
        "--log-file",
        "--help",
        "--version",
    ] {
        assert!(text.contains(opt), "--help does not list {opt}:\n{text}");
    }
    for default in ["1935", "8501", "0.0.0.0"] {
        assert!(
            text.contains(default),
            "--help does not show the default {default}:\n{text}"
        );
    }
}

#[test]
fn version_prints_the_version() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "--version printed {text:?}"
    );
}

#[test]
fn bad_options_and_values_exit_2_with_a_one_line_reason() {
    for args in [
        &["--no-such-option"][..],
        &["--rtmp-port", "70000"],
        &["--http-port", "http"],
        &["--bind", "not-an-address"],
        &["--log-level", "loud"],
        &["stray-argument"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: want one line of reason, got {err:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn startup_lines_show_the_real_ports() {
    let server = Server::start();
    assert_ne!(server.rtmp.port(), 0);
    assert_ne!(server.http.port(), 0);
    assert_ne!(server.rtmp.port(), server.http.port());
    // The listeners really accept.
    raw_connect(server.rtmp);
    raw_connect(server.http);
    let line = server
        .wait_for_log("RTMP listening on ", Duration::ZERO)
        .unwrap();
    assert!(
        line.contains("INFO"),
        "startup line without its level: {line}"
    );
}

#[test]
fn a_busy_port_is_fatal_and_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut p = Proc::spawn({
        let mut c = Command::new(binary());
        c.args([
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--rtmp-port",
            &port,
        ]);
        if binary_knows("--web-port") {
            c.args(["--web-port", "0"]);
        }
        if binary_knows("--webrtc-port") {
            c.args(["--webrtc-port", "0"]);
        }
        if binary_knows("--srt-port") {
            c.args(["--srt-port", "0"]);
        }
        c
    });
    let status = p.wait_or_panic(Duration::from_secs(10));
    assert!(!status.success(), "started on a busy port");
    assert_ne!(status.code(), Some(2), "a busy port is not a usage error");
    let err = p.stderr();
    assert!(
        err.contains(&port),
        "the error does not name port {port}: {err}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_ends_players_and_exits_0_within_5_s() {
    let mut server = Server::start();
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "term",
        "fixture.flv",
        PublishOpts::default(),
    )
    .expect("publish");
    assert!(wait_until_live(
        server.http,
        "/live/term.flv",
        Duration::from_secs(5)
    ));
    let http = server.http;
    let viewer =
        std::thread::spawn(move || http_get(http, "/live/term.flv", Duration::from_secs(15)));
    let ws =
        std::thread::spawn(move || ws_get_flv(http, "/live/term.flv", Duration::from_secs(15)));
    let rtmp = spawn_rtmp_play(server.rtmp, "live", "term", Duration::from_secs(15));
    // Let the viewers start streaming.
    std::thread::sleep(Duration::from_secs(1));
    let status = server.terminate(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM: {status:?}"
    );
    let r = viewer.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.end,
        BodyEnd::LastChunk,
        "the HTTP-FLV player was not ended cleanly"
    );
    let flv = parse_flv(&r.body);
    flv.assert_valid("HTTP-FLV at shutdown", true);
    let r = ws.join().unwrap().expect("WS-FLV connect");
    assert_eq!(
        r.end,
        WsEnd::CloseFrame,
        "WS-FLV at shutdown: {:?}",
        r.error
    );
    parse_flv(&r.data).assert_valid("WS-FLV at shutdown", true);
    let r = rtmp.join().unwrap();
    assert!(r.refused.is_none(), "{:?}", r.refused);
    assert!(r.closed, "the RTMP player was not closed at shutdown");
    assert!(
        r.saw("NetStream.Play.UnpublishNotify"),
        "RTMP player at shutdown: {:?}",
        r.statuses
    );
    drop(publisher);
}

/// Issue 15 point 6: every log line starts with a UTC timestamp of one width (microseconds), so
/// columns line up and `sort` orders lines.
#[test]
fn log_timestamps_have_a_fixed_width() {
    let server = Server::start();
    let _ = http_get(
        server.http,
        "/api/server",
        std::time::Duration::from_secs(5),
    );
    let logs = server.logs();
    assert!(logs.len() >= 3, "{logs:?}");
    for l in &logs {
        let b = l.as_bytes();
        let ok = b.len() > 28
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'.'
            && b[20..26].iter().all(u8::is_ascii_digit)
            && &b[26..28] == b"Z ";
        assert!(ok, "not a fixed-width timestamp: {l}");
    }
}
