//! Connection limits are timers (`server::drive`): a connection that says nothing is closed when
//! its limit runs out, not before, with one line naming the limit and the peer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

/// Reads until the server closes (Ok(0)) or `within` passes; whether it closed.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn silent_and_trickling_connections_are_closed_at_their_limit_not_before() {
    let server = Server::start();
    let started = Instant::now();
    let mut rtmp = TcpStream::connect(server.rtmp).unwrap();
    let mut http = TcpStream::connect(server.http).unwrap();
    let mut trickle = TcpStream::connect(server.http).unwrap();
    trickle.write_all(b"GET /api/server HT").unwrap();
    let (rtmp_peer, http_peer, trickle_peer) = (
        rtmp.local_addr().unwrap().to_string(),
        http.local_addr().unwrap().to_string(),
        trickle.local_addr().unwrap().to_string(),
    );
    // Well before the 10 s limits: all three are open.
    std::thread::sleep(Duration::from_secs(8));
    for (name, s) in [
        ("rtmp", &mut rtmp),
        ("http", &mut http),
        ("trickle", &mut trickle),
    ] {
        assert!(
            !closed_within(s, Duration::from_millis(300)),
            "{name} closed early"
        );
    }
    // A byte more of the head does not extend its limit (it runs from the first byte).
    trickle.write_all(b"T").unwrap();
    for (name, s) in [
        ("rtmp", &mut rtmp),
        ("http", &mut http),
        ("trickle", &mut trickle),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(6)),
            "{name} still open"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    let line = |peer: &str, what: &str| {
        server.wait_for_log_where(
            |l| l.contains(peer) && l.contains(what),
            Duration::from_secs(2),
        )
    };
    assert!(line(&rtmp_peer, "RTMP handshake timeout").is_some());
    assert!(line(&http_peer, "HTTP request timeout").is_some());
    assert!(line(&trickle_peer, "HTTP request timeout").is_some());
}

/// The value of an unlabelled (or exactly labelled) metric line.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn viewers_keep_no_timer_once_they_play() {
    const PLAYERS: usize = 30;
    let server = Server::start();
    // Players of a stream not live yet: they wait, connected, with nothing to time out.
    let players: Vec<_> = (0..PLAYERS)
        .map(|_| spawn_rtmp_play(server.rtmp, "live", "later", Duration::from_secs(16)))
        .collect();
    // Past every accepted connection's first (handshake) limit.
    std::thread::sleep(Duration::from_secs(12));
    let text = http_get(server.http, "/metrics", Duration::from_secs(5)).body_text();
    assert_eq!(
        metric(&text, "rtmpd_players{protocol=\"rtmp\"}"),
        Some(PLAYERS as u64),
        "{text}"
    );
    let timers = metric(&text, "rtmpd_loop_timers").expect("rtmpd_loop_timers");
    // The sweep, the stats line, this request's own limit: none per player.
    assert!(timers <= 8, "{timers} timers for {PLAYERS} players");
    assert!(!server.log_contains("timeout"));
    for p in players {
        let _ = p.join();
    }
}
