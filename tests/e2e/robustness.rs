//! Bad input on both ports (garbage, truncated handshakes, an oversized Set Chunk Size, broken
//! HTTP) is refused or ignored, and a running stream and its viewers never notice.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::*;

/// A published fixture (2x real time, ~5 s) with one HTTP-FLV and one RTMP viewer from the start.
struct Watched {
    server: Server,
    publisher: RustPublisher,
    http: JoinHandle<HttpResponse>,
    rtmp: JoinHandle<RtmpPlay>,
}

fn watched_stream() -> Watched {
    let server = Server::start();
    let rtmp = spawn_rtmp_play(server.rtmp, "live", "watched", Duration::from_secs(25));
    let addr = server.http;
    let http = std::thread::spawn(move || {
        http_get_when_live(
            addr,
            "/live/watched.flv",
            1,
            Duration::from_secs(5),
            Duration::from_secs(25),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        "watched",
        "fixture.flv",
        PublishOpts {
            speed: 2.0,
            start_delay: Duration::from_millis(700),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(
        server.http,
        "/live/watched.flv",
        Duration::from_secs(5)
    ));
    Watched {
        server,
        publisher,
        http,
        rtmp,
    }
}

impl Watched {
    /// The publisher and both viewers saw the whole fixture; the server still serves.
    fn assert_untouched(self) {
        let Watched {
            mut server,
            publisher,
            http,
            rtmp,
        } = self;
        server.assert_running();
        publisher.join().expect("the publisher was disturbed");
        let r = http.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.end, BodyEnd::LastChunk, "the HTTP-FLV viewer was cut");
        let flv = parse_flv(&r.body);
        flv.assert_valid("HTTP-FLV viewer", true);
        assert_full_stream(&flv.frames, "fixture.flv", Some(0), "HTTP-FLV viewer");
        let r = rtmp.join().unwrap();
        assert!(r.refused.is_none(), "{:?}", r.refused);
        assert_full_stream(&r.frames, "fixture.flv", Some(0), "RTMP viewer");
        // Still accepting and answering.
        let r = http_get(server.http, "/live/gone.flv", Duration::from_secs(5));
        assert_eq!(r.status, 404);
        server.assert_running();
    }
}

/// Deterministic junk.
/// `rtmpd_connection_bound_total{bound="NAME"}` from `/metrics` (issue 13: every bound that bites
/// is counted).
fn bound_hits(addr: SocketAddr, name: &str) -> u64 {
    let m = http_get(addr, "/metrics", Duration::from_secs(5)).body_text();
    let prefix = format!("rtmpd_connection_bound_total{{bound=\"{name}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing:\n{m}"))
}

fn junk(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes `bytes` (ignoring errors: the server may close mid-way) and closes.
fn send_and_close(addr: SocketAddr, bytes: &[u8]) {
    let mut s = raw_connect(addr);
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    // Read what the server says, briefly, so the close is orderly from our side.
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
}

#[test]
fn rtmp_port_garbage_truncated_handshakes_and_huge_chunk_size_leave_the_stream_alone() {
    let w = watched_stream();
    let rtmp = w.server.rtmp;

    // Garbage, an HTTP request and a TLS hello where C0 should be.
    send_and_close(rtmp, &junk(4096, 1));
    send_and_close(rtmp, b"GET /live/watched.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    send_and_close(
        rtmp,
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
    );
    // A valid C0 with garbage after it (C1, C2, then "chunks").
    let mut v = vec![3u8];
    v.extend(junk(8192, 2));
    send_and_close(rtmp, &v);

    // Truncated handshakes: C0 alone, half a C1, a whole C1 but no C2, and one left hanging
    // open (the server's handshake timer deals with it; we do not wait for that).
    send_and_close(rtmp, &[3]);
    let mut half = vec![3u8];
    half.extend(junk(700, 3));
    send_and_close(rtmp, &half);
    let mut c1 = vec![3u8];
    c1.extend(junk(1536, 4));
    send_and_close(rtmp, &c1);
    let mut hanging = raw_connect(rtmp);
    hanging.write_all(&[3, 0, 0]).unwrap();

    // Set Chunk Size with the top bit set (forbidden) and with zero: both are refused.
    for size in [0xFFFF_FFFFu32, 0] {
        let mut s = raw_rtmp_handshake(rtmp).expect("handshake");
        let _ = s.write_all(&control_chunk(1, &size.to_be_bytes()));
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "Set Chunk Size {size:#x} did not close the connection"
        );
    }
    // The largest legal chunk size, then a message header announcing 16 MB that never comes:
    // the server must not allocate ahead of the bytes or stall anyone else.
    let mut s = raw_rtmp_handshake(rtmp).expect("handshake");
    let _ = s.write_all(&control_chunk(1, &0x7FFF_FFFFu32.to_be_bytes()));
    let mut big = vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0];
    big.extend(junk(1000, 5));
    let _ = s.write_all(&big);

    // Many connections opened and dropped at once.
    let conns: Vec<TcpStream> = (0..50).map(|_| raw_connect(rtmp)).collect();
    drop(conns);
    assert!(
        bound_hits(w.server.http, "rtmp-chunk-size") >= 1,
        "the chunk size cap is counted"
    );

    w.assert_untouched();
    drop(hanging);
    drop(s);
}

#[test]
fn http_port_garbage_and_broken_requests_leave_the_stream_alone() {
    let w = watched_stream();
    let http = w.server.http;

    // Binary garbage, a broken request line, an oversized head, a bad WebSocket upgrade, a
    // request cut in the middle, an RTMP handshake on the HTTP port.
    send_and_close(http, &junk(4096, 7));
    send_and_close(http, b"GET\r\n\r\n");
    let mut big = b"GET /live/watched.flv HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    send_and_close(http, &big);
    send_and_close(
        http,
        b"GET /live/watched.flv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 99\r\n\r\n",
    );
    send_and_close(http, b"GET /live/watched.flv HTTP/1.1\r\nHo");
    let mut c0c1 = vec![3u8];
    c0c1.extend(junk(1536, 8));
    send_and_close(http, &c0c1);
    let mut hanging = raw_connect(http);
    hanging
        .write_all(b"GET /live/watched.flv HTTP/1.1\r\n")
        .unwrap();
    // A WebSocket viewer that sends garbage frames after the upgrade.
    let mut s = raw_connect(http);
    s.write_all(
        b"GET /live/watched.flv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let _ = s.write_all(&junk(2000, 9));
    let conns: Vec<TcpStream> = (0..50).map(|_| raw_connect(http)).collect();
    drop(conns);
    let heads = bound_hits(http, "http-pending-input") + bound_hits(http, "http-head-bytes");
    assert!(heads >= 1, "the oversized head is counted");

    w.assert_untouched();
    drop(hanging);
    drop(s);
}

/// Issue 13 hole 1 (private replies are unbounded): clients that send requests the server must
/// answer (unknown commands, each answered with an `_error` several times its size) and never
/// read the answers. Each one's replies are bounded (the server stops reading it until they
/// drain), so memory stays flat; the watched stream's viewers get every frame; and a client
/// that never drains is closed after 10 s, with a line saying why.
// Reads VmRSS from /proc and shrinks receive buffers with a Unix socket call.
#[cfg(target_os = "linux")]
#[test]
fn private_replies_are_bounded_for_clients_that_never_read() {
    const FLOODERS: usize = 8;
    let w = watched_stream();
    let rtmp = w.server.rtmp;
    let pid = w.server.pid();
    let before = proc_status_kb(pid, "VmRSS");
    let mut connect = amf_str("connect");
    connect.extend(amf_num(1.0));
    connect.extend([3, 0, 3]);
    connect.extend(b"app");
    connect.extend(amf_str("live"));
    connect.extend([0, 0, 9]);
    let mut unknown = amf_str("x");
    unknown.extend(amf_num(2.0));
    unknown.push(5);
    let requests: Vec<u8> = (0..200).flat_map(|_| command_chunk(&unknown)).collect();
    let flooders: Vec<JoinHandle<(TcpStream, usize)>> = (0..FLOODERS)
        .map(|_| {
            let (connect, requests) = (connect.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut s = raw_rtmp_handshake(rtmp).expect("handshake");
                small_receive_buffer(&s);
                s.write_all(&command_chunk(&connect)).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let end = std::time::Instant::now() + Duration::from_secs(6);
                let mut sent = 0;
                while std::time::Instant::now() < end {
                    match s.write(&requests) {
                        Ok(n) => sent += n,
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
                (s, sent)
            })
        })
        .collect();
    let flooders: Vec<(TcpStream, usize)> =
        flooders.into_iter().map(|h| h.join().unwrap()).collect();
    let sent: usize = flooders.iter().map(|(_, n)| n).sum();
    let after = proc_status_kb(pid, "VmRSS");
    let metrics = http_get(w.server.http, "/metrics", Duration::from_secs(5)).body_text();
    let read = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtmpd_bytes_in_total ")?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} kB to {after} kB while {FLOODERS} clients sent {sent} bytes of \
         commands (the server read {read}) and read no reply"
    );
    // Still unread: closed once the bound's 10 s are up, one line each.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let closed = |w: &Watched| {
        w.server
            .logs()
            .iter()
            .filter(|l| l.contains("does not read its replies"))
            .count()
    };
    while closed(&w) < FLOODERS && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        closed(&w),
        FLOODERS,
        "each flooder closed with one line (the server read {read} bytes)"
    );
    assert!(bound_hits(w.server.http, "private-output") >= FLOODERS as u64);
    w.assert_untouched();
    drop(flooders);
}

#[cfg(target_os = "linux")]
fn amf_str(s: &str) -> Vec<u8> {
    let mut v = vec![2];
    v.extend((s.len() as u16).to_be_bytes());
    v.extend(s.as_bytes());
    v
}

#[cfg(target_os = "linux")]
fn amf_num(n: f64) -> Vec<u8> {
    let mut v = vec![0];
    v.extend(n.to_be_bytes());
    v
}

/// One type-0 chunk on chunk stream 3 carrying a whole AMF0 command (at most 128 bytes).
#[cfg(target_os = "linux")]
fn command_chunk(body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= 128);
    let len = body.len() as u32;
    let mut v = vec![
        3,
        0,
        0,
        0,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        20,
        0,
        0,
        0,
        0,
    ];
    v.extend_from_slice(body);
    v
}

#[cfg(target_os = "linux")]
/// A few KiB of receive buffer, so the kernel does not absorb megabytes of unread replies and
/// the server's own bound is what is tested.
fn small_receive_buffer(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF");
}
