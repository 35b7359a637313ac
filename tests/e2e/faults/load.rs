//! Fault tests of connection load and protocol abuse (issue 13 point 3): thousands of idle
//! connections plus a slowloris client next to a playing HTTP-FLV viewer (no stall over 1 s),
//! the slowloris client closed by the header timeout, and RTMP chunk-level abuse (huge chunk
//! size with partial messages on many chunk streams, a trickled 16 MiB message) with the
//! server's memory bounded and a live viewer untouched.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;

/// This process's soft RLIMIT_NOFILE.
#[cfg(unix)]
fn nofile_soft() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    r.rlim_cur
}

/// Sends `head` one byte per second until the server closes the connection or `stop` is set;
/// true when the server closed it, with the time that took.
fn slowloris(addr: SocketAddr, head: &'static [u8], stop: Arc<AtomicBool>) -> (bool, Duration) {
    let mut s = raw_connect(addr);
    let t = Instant::now();
    for b in head.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            return (false, t.elapsed());
        }
        if s.write_all(&[*b]).is_err() {
            return (true, t.elapsed());
        }
        // The read doubles as the one-second pause: EOF means the server closed.
        if closed_within(&mut s, Duration::from_secs(1)) {
            return (true, t.elapsed());
        }
    }
    // Only an empty head gets here.
    (false, t.elapsed())
}

/// 2,000 idle TCP connections (half on the RTMP port, half on the HTTP port; fewer when the fd
/// limit is lower) and a slowloris client arrive while an HTTP-FLV viewer plays: the viewer never
/// waits over 1 s between two reads, and gets a valid, monotonic stream.
#[cfg(unix)]
#[test]
fn idle_connections_and_slowloris_do_not_stall_a_viewer() {
    let mut server = Server::builder()
        .no_web()
        .args(["--max-per-ip", "0"]) // every client here is 127.0.0.1
        .start();
    let name = unique_stream("idle");
    let path = format!("/live/{name}.flv");
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        &name,
        "fixture.flv",
        PublishOpts {
            speed: 1.0,
            loops: 2,
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    assert!(wait_until_live(server.http, &path, Duration::from_secs(10)));
    let addr = server.http;
    let p2 = path.clone();
    let viewer = std::thread::spawn(move || {
        timed_http_read(addr, &p2, Duration::from_secs(5), Duration::from_secs(12))
    });
    std::thread::sleep(Duration::from_millis(500));
    let want = 2000usize;
    let limit = nofile_soft().saturating_sub(200) as usize;
    let n = want.min(limit);
    if n < want {
        eprintln!(
            "idle connections: RLIMIT_NOFILE {} allows {n}, not {want}",
            nofile_soft()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let loris = std::thread::spawn(move || {
        slowloris(
            addr,
            b"GET /live/nothing.flv HTTP/1.1\r\nHost: x\r\n",
            stop2,
        )
    });
    let t = Instant::now();
    let mut idle: Vec<std::net::TcpStream> = Vec::with_capacity(n);
    for i in 0..n {
        let to = if i % 2 == 0 { server.rtmp } else { server.http };
        match std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("idle connection {i}: {e}"),
        }
    }
    eprintln!("idle connections: {} open in {:?}", idle.len(), t.elapsed());
    let r = viewer.join().unwrap().expect("viewer");
    stop.store(true, Ordering::Relaxed);
    let _ = loris.join();
    drop(idle);
    eprintln!(
        "idle connections: viewer got {} bytes, longest gap {:?} at {:?}",
        r.bytes.len(),
        r.max_gap,
        r.max_gap_at
    );
    assert!(
        r.max_gap < Duration::from_secs(1),
        "the viewer stalled {:?} (at {:?} into its run)",
        r.max_gap,
        r.max_gap_at
    );
    let flv = parse_flv(&dechunk_http_body(&r.bytes));
    flv.assert_valid("viewer next to idle connections", false);
    assert_monotonic(&flv.frames, "viewer next to idle connections");
    assert!(
        count_pictures(&flv.frames) > 200,
        "viewer: {} pictures in 12 s",
        count_pictures(&flv.frames)
    );
    drop(publisher);
    server.assert_running();
}

/// A client that sends its request head one byte a second is closed by the header timeout
/// (10 s), not kept for as long as it keeps trickling.
#[test]
fn slowloris_is_closed_by_the_header_timeout() {
    let mut server = Server::builder().no_web().start();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let addr = server.http;
    let loris = std::thread::spawn(move || {
        slowloris(
            addr,
            b"GET /live/nothing.flv HTTP/1.1\r\nHost: x\r\nX-a: b\r\n",
            stop2,
        )
    });
    let t = Instant::now();
    while !loris.is_finished() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let (closed, after) = loris.join().unwrap();
    eprintln!("slowloris: closed {closed} after {after:?}");
    assert!(
        closed && after < Duration::from_secs(20),
        "the slowloris client was still open after {after:?}"
    );
    server.assert_running();
}

/// A type-0 chunk header on chunk stream `csid` (3..=319, one- or two-byte basic header)
/// announcing a message of `len` bytes and `type_id` on message stream 1.
#[cfg(target_os = "linux")]
fn chunk_header(csid: u32, len: u32, type_id: u8) -> Vec<u8> {
    let mut v = if csid < 64 {
        vec![csid as u8]
    } else {
        vec![0, (csid - 64) as u8]
    };
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&len.to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&1u32.to_le_bytes());
    v
}

/// Chunk size the wide abuser sets: far above the default 128, and the size of the one chunk it
/// sends on each chunk stream, so that every message is left partial by a whole chunk.
#[cfg(target_os = "linux")]
const WIDE_CHUNK: usize = 512 * 1024;

/// The wide abuser: chunk size 512 KiB, then on 100 chunk streams a type-0 header announcing a
/// 1 MiB video message and one whole 512 KiB chunk of it (51 MB held if nothing bounds it).
/// Returns the bytes written before the server closed the connection (or all of them).
#[cfg(target_os = "linux")]
fn wide_partial_messages(addr: SocketAddr) -> usize {
    let Ok(mut s) = raw_rtmp_handshake(addr) else {
        return 0;
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let mut sent = 0;
    if s.write_all(&control_chunk(1, &(WIDE_CHUNK as u32).to_be_bytes()))
        .is_err()
    {
        return sent;
    }
    let body = vec![0x17u8; WIDE_CHUNK];
    for csid in 3..103 {
        let mut m = chunk_header(csid, 1 << 20, 9);
        m.extend_from_slice(&body);
        if s.write_all(&m).is_err() {
            return sent;
        }
        sent += m.len();
    }
    // Hold the connection (and whatever the server kept of it) while the test samples VmRSS.
    std::thread::sleep(Duration::from_secs(2));
    sent
}

/// The trickler: a type-0 header announcing a 16 MiB message, then 1 KiB every 100 ms until
/// `stop`.
#[cfg(target_os = "linux")]
fn trickle_16_mib(addr: SocketAddr, stop: Arc<AtomicBool>) -> usize {
    let Ok(mut s) = raw_rtmp_handshake(addr) else {
        return 0;
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let mut sent = 0;
    if s.write_all(&control_chunk(1, &0x00FF_FFFFu32.to_be_bytes()))
        .and_then(|_| s.write_all(&chunk_header(4, 16 << 20, 9)))
        .is_err()
    {
        return sent;
    }
    let kib = [0x27u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        if s.write_all(&kib).is_err() {
            break;
        }
        sent += kib.len();
        std::thread::sleep(Duration::from_millis(100));
    }
    sent
}

/// Per-connection ceiling on partially assembled RTMP messages today: the chunk decoder holds
/// at most twice the largest message (2 x 16 MiB) across all its chunk streams.
#[cfg(target_os = "linux")]
const PARTIAL_CAP_KB: u64 = 32 * 1024;

/// RTMP abuse next to a live RTMP viewer: four clients each set a 512 KiB chunk size then leave 1 MiB
/// messages partial by one chunk on 100 chunk streams (51 MB each if held), eight announce 16 MiB messages and
/// trickle 1 KiB every 100 ms. The server's VmRSS stays under the per-connection cap times the
/// wide clients (a server that held everything would pass 200 MB), the tricklers cost what they
/// sent, not what they announced, and the viewer gets the whole fixture.
#[cfg(target_os = "linux")]
#[test]
fn rtmp_partial_message_floods_hold_bounded_memory() {
    let mut server = Server::builder().no_web().start();
    let name = unique_stream("rtmpflood");
    let viewer = spawn_rtmp_play(server.rtmp, "live", &name, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let publisher = RustPublisher::start(
        server.rtmp,
        "live",
        &name,
        "fixture.flv",
        PublishOpts {
            speed: 1.0,
            start_delay: Duration::from_millis(700),
            ..PublishOpts::default()
        },
    )
    .expect("publish");
    std::thread::sleep(Duration::from_secs(1));
    let pid = server.pid();
    let base = proc_status_kb(pid, "VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..8)
        .map(|_| {
            let (addr, stop) = (server.rtmp, stop.clone());
            std::thread::spawn(move || trickle_16_mib(addr, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let after_tricklers = proc_status_kb(pid, "VmRSS");
    let wide: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.rtmp;
            std::thread::spawn(move || wide_partial_messages(addr))
        })
        .collect();
    let mut peak = base;
    while !wide.iter().all(|w| w.is_finished()) {
        peak = peak.max(proc_status_kb(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let wide_sent: Vec<usize> = wide.into_iter().map(|w| w.join().unwrap()).collect();
    std::thread::sleep(Duration::from_secs(2));
    peak = peak.max(proc_status_kb(pid, "VmRSS"));
    stop.store(true, Ordering::Relaxed);
    let trickled: usize = tricklers.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!(
        "rtmp floods: VmRSS base {base} kB, with tricklers {after_tricklers} kB, peak {peak} kB; \
         wide clients wrote {wide_sent:?} bytes, tricklers {trickled}"
    );
    publisher.join().expect("publisher");
    let p = viewer.join().unwrap();
    assert!(p.refused.is_none(), "{:?}", p.refused);
    assert_full_stream(
        &p.frames,
        "fixture.flv",
        Some(0),
        "RTMP viewer next to floods",
    );
    server.assert_running();
    assert!(
        after_tricklers < base + 8 * 1024,
        "eight 16 MiB announcements took VmRSS from {base} kB to {after_tricklers} kB"
    );
    assert!(
        peak < base + 4 * PARTIAL_CAP_KB + 8 * 1024,
        "partial messages took VmRSS from {base} kB to {peak} kB"
    );
}
