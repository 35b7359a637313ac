//! The run: one `mio::Poll` for every viewer, the connect schedule, timeouts, server samples,
//! and the statistics handed to the report at the end.

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token};

use crate::args::{Config, Proto};
use crate::report::Report;
use crate::stats::Stats;
use crate::sys::{own_cpu_seconds, ProcSample};
use crate::viewer::{Phase, Viewer};
use crate::READ_BUF;

pub(crate) fn run(config: &Config) -> Result<Report, String> {
    if config.target.proto == Proto::Whep {
        return crate::whep::run(config);
    }
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUF];
    let mut viewers: Vec<Viewer> = Vec::with_capacity(config.viewers);
    let mut early_failures: Vec<(Stats, String)> = Vec::new();
    let server_start = match config.server_pid {
        Some(pid) => Some(ProcSample::read(pid).map_err(|e| format!("server {pid}: {e}"))?),
        None => None,
    };
    let cpu_start = own_cpu_seconds();
    let seed_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let end = start + config.duration;
    let mut started = 0usize;
    let mut next_sweep = start;
    // VmHWM is the peak of the server's whole life; this is the peak within the run.
    let mut rss_peak_kib = server_start.map_or(0, |s| s.rss_kib);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = config.due(now - start);
        while started < due {
            let token = Token(viewers.len());
            let seed = seed_base ^ (started as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            match Viewer::start(&config.target, token, poll.registry(), seed) {
                Ok(v) => viewers.push(v),
                Err(e) => early_failures.push((Stats::new(now), e)),
            }
            started += 1;
        }
        if now >= next_sweep {
            sweep_timeouts(&mut viewers, config.connect_timeout, now, poll.registry());
            if let Some(sample) = config.server_pid.and_then(|p| ProcSample::read(p).ok()) {
                rss_peak_kib = rss_peak_kib.max(sample.rss_kib);
            }
            next_sweep = now + Duration::from_millis(100);
        }
        let mut wake = end.min(next_sweep);
        if started < config.viewers {
            wake = wake.min(start + config.next_due(now - start));
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for ev in events.iter() {
            if let Some(v) = viewers.get_mut(ev.token().0) {
                v.on_event(ev, &config.target, &mut buf, poll.registry());
            }
        }
    }
    let run_end = Instant::now();
    // Sample before closing: the memory figure is for connected viewers.
    let server_end = match config.server_pid {
        Some(pid) => ProcSample::read(pid).ok(),
        None => None,
    };
    let loadgen_cpu = own_cpu_seconds() - cpu_start;
    let tls_session = viewers.iter().find_map(|v| v.tls_session());
    for v in viewers.iter_mut() {
        v.finish(poll.registry());
    }
    let mut stats: Vec<(Stats, bool)> = viewers
        .into_iter()
        .map(|v| {
            let full = v.stats.full(run_end);
            (v.stats, full)
        })
        .collect();
    for (mut s, e) in early_failures {
        s.error = Some(e);
        stats.push((s, false));
    }
    let mut report = Report::new(
        config,
        &stats,
        run_end - start,
        server_start.zip(server_end),
        rss_peak_kib.max(server_end.map_or(0, |s| s.rss_kib)),
        loadgen_cpu,
    );
    report.tls_session = tls_session;
    Ok(report)
}

/// Viewers that have not started playing within the connect timeout give up.
pub(crate) fn sweep_timeouts(
    viewers: &mut [Viewer],
    limit: Duration,
    now: Instant,
    registry: &Registry,
) {
    for v in viewers.iter_mut() {
        if v.phase != Phase::Done
            && v.stats.ready.is_none()
            && now.saturating_duration_since(v.stats.start) > limit
        {
            let what = if v.phase == Phase::Connecting {
                "timeout connecting"
            } else {
                "timeout waiting to play"
            };
            v.fail(registry, what.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtmpd::codec::ws::server_frame;
    use rtmpd::media::Frame;
    use rtmpd::mux::flv;
    use std::io::Write;
    use std::net::SocketAddr;

    /// A stand-in HTTP-FLV / WS-FLV server on a std thread per viewer: a frame every 20 ms,
    /// a keyframe every 25, until the client goes away (or 10 s). With `tls`, over rustls with
    /// the fixture certificate (https:// and wss://).
    fn stand_in_server(ws: bool, tls: bool) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tls_config = tls.then(|| {
            let pem = |f: &str| {
                std::fs::read(format!("{}/tests/data/tls/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap()
            };
            rtmpd::tls::certs::config_from_pem(
                &pem("cert.pem"),
                &pem("key.pem"),
                "cert".as_ref(),
                "key".as_ref(),
            )
            .unwrap()
        });
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let tls_config = tls_config.clone();
                std::thread::spawn(move || match tls_config {
                    Some(c) => {
                        let tls = rustls::ServerConnection::new(c).unwrap();
                        serve(&mut rustls::StreamOwned::new(tls, conn), ws)
                    }
                    None => serve(&mut conn, ws),
                });
            }
        });
        addr
    }

    fn serve(conn: &mut (impl io::Read + Write), ws: bool) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        let send = |conn: &mut dyn Write, data: &[u8]| -> io::Result<()> {
            if ws {
                conn.write_all(&server_frame(2, data))
            } else {
                conn.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
                conn.write_all(data)?;
                conn.write_all(b"\r\n")
            }
        };
        let head = if ws {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                tungstenite::handshake::derive_accept_key(key.as_bytes())
            )
        } else {
            "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
                .to_string()
        };
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        let _ = send(conn, &flv::file_header(true, true));
        for i in 0..500u32 {
            let video: &[u8] = if i % 25 == 0 {
                &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]
            } else {
                &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]
            };
            let mut tags = Vec::new();
            for (t, body) in [(9u8, video), (8, &[0xaf, 1, 0x21][..])] {
                let f = Frame::parse(t, i * 20, Bytes::copy_from_slice(body)).unwrap();
                flv::write_tag(&mut tags, &f);
            }
            if send(conn, &tags).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn run_against_stand_in(scheme: &str, ws: bool) -> Report {
        let tls = matches!(scheme, "https" | "wss");
        let addr = stand_in_server(ws, tls);
        let args: Vec<String> = vec![
            format!("--url={scheme}://{addr}/live/s.flv"),
            "--viewers=20".into(),
            "--duration=1.2".into(),
        ];
        let config = Config::parse(&args).unwrap().unwrap();
        run(&config).unwrap()
    }

    #[test]
    fn http_flv_viewers_get_the_full_stream() {
        let r = run_against_stand_in("http", false);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.connected, r.full, r.ttfk.count), (20, 20, 20));
        // 1.2 s of 50 video + 50 audio frames per second, give or take scheduling.
        assert!(r.frames > 20 * 80, "{} frames", r.frames);
        assert!(r.stall.max < 1000.0);
    }

    #[test]
    fn ws_flv_viewers_get_the_full_stream() {
        let r = run_against_stand_in("ws", true);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.connected, r.full, r.ttfk.count), (20, 20, 20));
        assert!(r.frames > 20 * 80, "{} frames", r.frames);
    }

    #[test]
    fn https_flv_viewers_get_the_full_stream() {
        let r = run_against_stand_in("https", false);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.connected, r.full, r.ttfk.count), (20, 20, 20));
        assert!(r.frames > 20 * 80, "{} frames", r.frames);
        // Decrypted bytes are counted; the wire carried the records and handshakes on top.
        assert!(r.wire_bytes > r.bytes, "{} / {}", r.wire_bytes, r.bytes);
        assert!(r.tls_session.as_deref().unwrap().starts_with("TLSv1_3"));
    }

    #[test]
    fn wss_flv_viewers_get_the_full_stream() {
        let r = run_against_stand_in("wss", true);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.connected, r.full, r.ttfk.count), (20, 20, 20));
        assert!(r.frames > 20 * 80, "{} frames", r.frames);
    }

    #[test]
    fn refused_connections_are_counted_as_failed() {
        // A port that was just free: bind, learn it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args: Vec<String> = vec![
            format!("--url=http://127.0.0.1:{port}/live/s.flv"),
            "--viewers=3".into(),
            "--duration=0.3".into(),
        ];
        let r = run(&Config::parse(&args).unwrap().unwrap()).unwrap();
        assert_eq!((r.connected, r.full, r.failed), (0, 0, 3));
        assert!(
            r.errors.keys().all(|e| e.starts_with("connect")),
            "{:?}",
            r.errors
        );
    }
}
