//! WHEP viewers (`whep://HOST:PORT/app/stream`): each one a str0m `Rtc` (the browser's side, on
//! the crypto backend the server runs on) with its own UDP socket. The offer is POSTed to
//! `http://HOST:PORT/app/stream/whep` over a non-blocking TCP connection, the 201's answer
//! accepted, then ICE, DTLS and SRTP run over UDP and str0m depacketizes the media; every frame
//! goes into the same `Stats` as an FLV viewer's (so the same "full stream" rule applies), its
//! payload bytes into `bytes` and the datagrams' bytes into `wire_bytes`.
//!
//! The viewers are split over `--threads` threads (viewer `i` on thread `i % threads`), each with
//! its own `mio::Poll`; one DTLS certificate serves them all (a browser makes one per page, and
//! making thousands would measure the load generator). At the end every session is ended with a
//! `DELETE` of its `Location`, so the next run does not pay for this one's leftovers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Registry, Token};
use rtmpd::codec::http_head::parse_response;
use rtmpd::media::Track;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use crate::args::{Config, Target};
use crate::report::Report;
use crate::stats::Stats;
use crate::sys::{own_cpu_seconds, ProcSample};
use crate::HEAD_CAP;

/// The largest answer body taken (the server's own limit on SDP).
const ANSWER_CAP: usize = 64 * 1024;
/// Each viewer's socket receive buffer: a load generator that falls behind for a moment (it
/// shares the machine) must not lose datagrams the server sent; the kernel caps it at
/// net.core.rmem_max. Losses still show as the server's bytes over the viewers'.
const UDP_RCVBUF: usize = 1 << 20;
/// Bounds on how long the loop sleeps: str0m's timers are served at least this often.
const TICK: Duration = Duration::from_millis(10);

enum Phase {
    /// The POST is being written or its answer read.
    Signal {
        tcp: TcpStream,
        out: Vec<u8>,
        out_pos: usize,
        inbuf: Vec<u8>,
        pending: Option<SdpPendingOffer>,
    },
    Media,
    Done,
}

struct WhepViewer {
    rtc: Rtc,
    udp: UdpSocket,
    local: SocketAddr,
    video: Mid,
    phase: Phase,
    next: Instant,
    location: Option<String>,
    stats: Stats,
}

/// `Token(2 * i)`: viewer `i`'s TCP connection; `Token(2 * i + 1)`: its UDP socket.
fn tokens(i: usize) -> (Token, Token) {
    (Token(2 * i), Token(2 * i + 1))
}

impl WhepViewer {
    fn start(
        target: &Target,
        i: usize,
        registry: &Registry,
        cert: &DtlsCert,
    ) -> Result<WhepViewer, String> {
        let now = Instant::now();
        let bind: SocketAddr = if target.addr.is_ipv4() {
            "127.0.0.1:0".parse().expect("an address")
        } else {
            "[::1]:0".parse().expect("an address")
        };
        let bind = if target.addr.ip().is_loopback() {
            bind
        } else {
            SocketAddr::new(
                if target.addr.is_ipv4() {
                    [0, 0, 0, 0].into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                },
                0,
            )
        };
        let mut udp = UdpSocket::bind(bind).map_err(|e| format!("udp bind: {e}"))?;
        let local = udp.local_addr().map_err(|e| format!("udp: {e}"))?;
        set_receive_buffer(&udp, UDP_RCVBUF);
        let (tcp_token, udp_token) = tokens(i);
        registry
            .register(&mut udp, udp_token, Interest::READABLE)
            .map_err(|e| format!("register: {e}"))?;
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(rtmpd::webrtc::crypto::provider())
            .set_dtls_cert(cert.clone())
            .build(now);
        let cand = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().ok_or("no offer")?;
        let sdp = offer.to_sdp_string();
        let mut tcp = TcpStream::connect(target.addr).map_err(|e| format!("connect: {e}"))?;
        registry
            .register(&mut tcp, tcp_token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        let mut out = format!(
            "POST {}/whep HTTP/1.1\r\nHost: {}\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            target.path,
            target.authority,
            sdp.len()
        )
        .into_bytes();
        out.extend_from_slice(sdp.as_bytes());
        Ok(WhepViewer {
            rtc,
            udp,
            local,
            video,
            phase: Phase::Signal {
                tcp,
                out,
                out_pos: 0,
                inbuf: Vec::new(),
                pending: Some(pending),
            },
            next: now + TICK,
            location: None,
            stats: Stats::new(now),
        })
    }

    fn fail(&mut self, registry: &Registry, why: String) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        if let Phase::Signal { tcp, .. } = &mut self.phase {
            let _ = registry.deregister(tcp);
        }
        let _ = registry.deregister(&mut self.udp);
        self.phase = Phase::Done;
        if self.stats.error.is_none() {
            self.stats.error = Some(why);
        }
    }

    /// The signalling connection: write the POST, read the answer, hand it to str0m.
    fn on_tcp(&mut self, registry: &Registry, buf: &mut [u8]) {
        let Phase::Signal {
            tcp,
            out,
            out_pos,
            inbuf,
            pending,
        } = &mut self.phase
        else {
            return;
        };
        while *out_pos < out.len() {
            match tcp.write(&out[*out_pos..]) {
                Ok(0) => return self.fail(registry, "POST: connection closed".into()),
                Ok(n) => *out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Still connecting: the next WRITABLE event comes.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => return self.fail(registry, format!("POST: {e}")),
            }
        }
        let mut eof = false;
        loop {
            match tcp.read(buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    inbuf.extend_from_slice(&buf[..n]);
                    if inbuf.len() > HEAD_CAP + ANSWER_CAP {
                        return self.fail(registry, "answer too large".into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => return self.fail(registry, format!("answer: {e}")),
            }
        }
        let head = match parse_response(inbuf, HEAD_CAP) {
            Ok(Some(h)) => h,
            Ok(None) if eof => return self.fail(registry, "answer: connection closed".into()),
            Ok(None) => return,
            Err(e) => return self.fail(registry, format!("answer: {e:?}")),
        };
        if head.status != 201 {
            return self.fail(registry, format!("HTTP {}", head.status));
        }
        let want = head.content_length().unwrap_or(0) as usize;
        if want > ANSWER_CAP {
            return self.fail(registry, "answer too large".into());
        }
        if inbuf.len() < head.len + want {
            if eof {
                return self.fail(registry, "answer: connection closed".into());
            }
            return;
        }
        let body = String::from_utf8_lossy(&inbuf[head.len..head.len + want]).into_owned();
        self.location = head.header("location").map(str::to_string);
        let Some(pending) = pending.take() else {
            return;
        };
        let answer = match SdpAnswer::from_sdp_string(&body) {
            Ok(a) => a,
            Err(e) => return self.fail(registry, format!("answer: {e}")),
        };
        if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
            return self.fail(registry, format!("answer: {e}"));
        }
        let _ = registry.deregister(tcp);
        self.phase = Phase::Media;
        self.drain();
    }

    /// Datagrams until WouldBlock, each into str0m; then its output.
    fn on_udp(&mut self, registry: &Registry, buf: &mut [u8]) {
        if !matches!(self.phase, Phase::Media) {
            // Nothing comes before the answer is taken (the server has no session yet).
            return;
        }
        loop {
            let (n, from) = match self.udp.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors (port unreachable) surface here on Linux: not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return self.fail(registry, format!("udp: {e}")),
            };
            self.stats.wire_bytes += n as u64;
            let now = Instant::now();
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            let input = Input::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: self.local,
                    contents,
                },
            );
            if !self.rtc.accepts(&input) {
                continue;
            }
            if let Err(e) = self.rtc.handle_input(input) {
                return self.fail(registry, format!("str0m: {e}"));
            }
            self.drain();
            self.stats.end_read(now);
        }
        if !self.rtc.is_alive() {
            self.fail(registry, "session ended".into());
        }
    }

    fn on_timeout(&mut self, registry: &Registry, now: Instant) {
        if !matches!(self.phase, Phase::Media) || now < self.next {
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            return self.fail(registry, format!("str0m: {e}"));
        }
        self.drain();
        if !self.rtc.is_alive() {
            self.fail(registry, "session ended".into());
        }
    }

    /// What str0m has for us: datagrams to send, events, and its next deadline.
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    // A datagram the kernel refuses now is lost, as on any network.
                    let _ = self.udp.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => self.stats.mark_ready(Instant::now()),
                Ok(Output::Event(Event::MediaData(m))) => {
                    let now = Instant::now();
                    let video = m.mid == self.video;
                    let ms = (m.time.as_seconds() * 1000.0) as u64 as u32;
                    let key = !video || has_idr(&m.data);
                    let track = if video { Track::Video } else { Track::Audio };
                    self.stats.bytes += m.data.len() as u64;
                    self.stats.on_frame(track, key, false, ms, now);
                }
                Ok(Output::Event(_)) => {}
                Err(e) => {
                    self.stats.error.get_or_insert(format!("str0m: {e}"));
                    self.next = Instant::now() + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }
}

#[cfg(unix)]
fn set_receive_buffer(sock: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt reads the int we pass, on a socket we own; failure only leaves the
    // default size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(unix))]
fn set_receive_buffer(_sock: &UdpSocket, _bytes: usize) {}

/// An H.264 access unit (Annex B) with an IDR slice; for other codecs, any frame after a
/// keyframe gap would do, and H.264 is what the benchmark publishes.
fn has_idr(au: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            if au[i + 3] & 0x1f == 5 {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// One thread's share of the run: viewers `first, first + step, ...` below `config.viewers`.
fn run_share(
    config: &Config,
    first: usize,
    step: usize,
    start: Instant,
    cert: &DtlsCert,
) -> Result<Vec<(Stats, bool)>, String> {
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 64 * 1024];
    let mut viewers: Vec<WhepViewer> = Vec::new();
    let mut early: Vec<Stats> = Vec::new();
    let end = start + config.duration;
    let mut started = first;
    let mut next_sweep = start;
    let mut next_timer = start;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = config.due(now - start);
        while started < due {
            match WhepViewer::start(&config.target, viewers.len(), poll.registry(), cert) {
                Ok(v) => viewers.push(v),
                Err(e) => {
                    let mut s = Stats::new(now);
                    s.error = Some(e);
                    early.push(s);
                }
            }
            started += step;
        }
        if now >= next_sweep {
            for v in viewers.iter_mut() {
                if !matches!(v.phase, Phase::Done)
                    && v.stats.ready.is_none()
                    && now.saturating_duration_since(v.stats.start) > config.connect_timeout
                {
                    let what = if matches!(v.phase, Phase::Signal { .. }) {
                        "timeout waiting for the answer"
                    } else {
                        "timeout connecting (ICE/DTLS)"
                    };
                    v.fail(poll.registry(), what.into());
                }
            }
            next_sweep = now + Duration::from_millis(100);
        }
        let mut wake = end.min(next_sweep).min(next_timer);
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
            let i = ev.token().0 / 2;
            let Some(v) = viewers.get_mut(i) else {
                continue;
            };
            if ev.token().0 % 2 == 0 {
                v.on_tcp(poll.registry(), &mut buf);
            } else {
                v.on_udp(poll.registry(), &mut buf);
            }
        }
        // str0m's timers: a pass over the viewers only when the earliest is due (or a tick
        // passed, for viewers that just started), not on every datagram.
        let now = Instant::now();
        if now >= next_timer {
            next_timer = now + TICK;
            for v in viewers.iter_mut() {
                v.on_timeout(poll.registry(), now);
                if matches!(v.phase, Phase::Media) {
                    next_timer = next_timer.min(v.next);
                }
            }
        }
    }
    let run_end = Instant::now();
    let mut out: Vec<(Stats, bool)> = Vec::with_capacity(viewers.len() + early.len());
    let locations: Vec<String> = viewers.iter().filter_map(|v| v.location.clone()).collect();
    for v in viewers {
        let full = v.stats.full(run_end);
        out.push((v.stats, full));
    }
    out.extend(early.into_iter().map(|s| (s, false)));
    for loc in locations {
        delete(config.target.addr, &config.target.authority, &loc);
    }
    Ok(out)
}

/// `DELETE location`, blocking and short: the session's end, best effort.
fn delete(addr: SocketAddr, authority: &str, location: &str) {
    let Ok(mut s) = StdTcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req =
        format!("DELETE {location} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_ok() {
        let mut b = [0u8; 512];
        let _ = s.read(&mut b);
    }
}

pub(crate) fn run(config: &Config) -> Result<Report, String> {
    let cert =
        rtmpd::webrtc::crypto::self_signed_certificate().ok_or("cannot make a DTLS certificate")?;
    let server_start = match config.server_pid {
        Some(pid) => Some(ProcSample::read(pid).map_err(|e| format!("server {pid}: {e}"))?),
        None => None,
    };
    let cpu_start = own_cpu_seconds();
    let threads = config.threads.max(1).min(config.viewers);
    let start = Instant::now();
    let end = start + config.duration;
    let mut rss_peak_kib = server_start.map_or(0, |s| s.rss_kib);
    let (results, server_end, loadgen_cpu, run_end) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cert = &cert;
                scope.spawn(move || run_share(config, t, threads, start, cert))
            })
            .collect();
        // This thread samples the server's memory while the others play.
        while Instant::now() < end {
            if let Some(s) = config.server_pid.and_then(|p| ProcSample::read(p).ok()) {
                rss_peak_kib = rss_peak_kib.max(s.rss_kib);
            }
            std::thread::sleep(Duration::from_millis(100).min(end - Instant::now().min(end)));
        }
        // Sampled at the end of the run, before the sessions are deleted.
        let server_end = config.server_pid.and_then(|p| ProcSample::read(p).ok());
        let loadgen_cpu = own_cpu_seconds() - cpu_start;
        let run_end = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect();
        (results, server_end, loadgen_cpu, run_end)
    });
    let mut stats = Vec::new();
    for r in results {
        stats.extend(r?);
    }
    Ok(Report::new(
        config,
        &stats,
        run_end - start,
        server_start.zip(server_end),
        rss_peak_kib.max(server_end.map_or(0, |s| s.rss_kib)),
        loadgen_cpu,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idr_is_found_in_annex_b() {
        assert!(has_idr(&[
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 0, 0, 1, 0x65, 9
        ]));
        assert!(!has_idr(&[0, 0, 0, 1, 0x41, 0x65, 0x65, 0, 0, 1]));
        assert!(!has_idr(&[0, 0, 1]));
        assert_eq!(tokens(3), (Token(6), Token(7)));
    }
}
