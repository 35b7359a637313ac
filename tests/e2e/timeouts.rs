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
