//! The drivers: what the loop calls for each kind of event source, and the timers. `Server::run`
//! decodes an event's token into a `Source` and hands the readiness to `Server::ready`; a due
//! timer goes to `Server::timeout`. Each kind has the same four parts (sozu's `ProxySession`):
//!
//! | kind | readable / writable | timeout | next deadline (armed into the heap) |
//! |---|---|---|---|
//! | TCP connection | `netio::on_readable` / `write_conn` | `conn_timeout` | `arm_conn` from `conn_deadlines` |
//! | listener | `accept` | - | - |
//! | upstream pull | `upstream_ready` | `upstream_timers` (one loop timer) | `Gateway::next_deadline` |
//! | UDP socket | `udp_ready` (read, route, flush) | - | - |
//! | UDP peer | (its endpoint's datagrams) | `UdpProtocol::timeout` | `UdpPeers::set_deadline` |
//! | ICE-TCP | `ice_tcp_ready` (accept, frames in, write) | its session's, as a UDP peer | - |
//! | the loop | - | flush, sweep, stats, LL-HLS, held publishers | `arm_loop` |
//!
//! Dispatch is a `match` on the `Source` enum: no boxed driver per event. A connection's limits
//! (handshake, request head, keep-alive, send stall, idle publisher, TLS handshake, unread
//! replies) are one heap entry per connection, set when its state changes (`arm_conn` after every
//! read, write and verdict) and re-checked only when it comes due; a viewer has none, so 10,000
//! viewers cost the timers nothing.

use std::time::{Duration, Instant};

use log::info;
use mio::Token;
use slab::Slab;

use super::conn::{Conn, ConnState, RtmpRole};
use super::outq::Outbox;
use super::source::{Ready, Source};
use super::timers::{ms_ceil, TimerKey, TimerKind};
use super::udp::UdpPort;
use super::{
    limits, Server, HANDSHAKE_TIMEOUT, HEADER_TIMEOUT, HELD_RECHECK, KEEPALIVE_IDLE, PRIVATE_STALL,
    PUBLISHER_IDLE, SEND_TIMEOUT, STATS_EVERY, SWEEP_EVERY,
};

/// The loop's own timers, by slot in `Server::loop_armed`.
const LOOP_TIMERS: [TimerKind; 6] = [
    TimerKind::Flush,
    TimerKind::Sweep,
    TimerKind::Stats,
    TimerKind::Gateway,
    TimerKind::Llhls,
    TimerKind::Held,
];

fn loop_slot(kind: TimerKind) -> usize {
    LOOP_TIMERS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The limits a connection is under now, each with the instant it runs out and the reason it is
/// closed for; in the order they are judged (the first that ran out names the close).
pub(super) fn conn_deadlines(c: &Conn) -> [Option<(Instant, &'static str)>; 4] {
    let stall = c.out_full_since.map(|since| {
        (
            since + PRIVATE_STALL,
            "does not read its replies; closed after 10 s",
        )
    });
    // A PROXY header (`proxied`) not finished in time: the same bound as a request head.
    let proxy = c
        .pre
        .is_some()
        .then_some((c.created + HEADER_TIMEOUT, "PROXY header timeout"));
    let tls = c
        .tls
        .as_ref()
        .is_some_and(|s| s.is_handshaking())
        .then_some((c.created + HEADER_TIMEOUT, "TLS handshake timeout"));
    let state = match &c.state {
        ConnState::Rtmp(r) if !r.session.is_handshake_done() => {
            Some((c.created + HANDSHAKE_TIMEOUT, "RTMP handshake timeout"))
        }
        ConnState::Rtmp(r) if matches!(r.role, RtmpRole::Publisher { .. }) && !c.held => {
            Some((c.last_input + PUBLISHER_IDLE, "publisher idle for 30 s"))
        }
        // While an answer is going out (a file body leaves no bytes in `out` with sendfile) the
        // client is reading, not idle: only a stall ends it.
        ConnState::HttpHead { .. } if c.body.is_some() || !c.out.is_empty() => {
            Some((c.last_output + SEND_TIMEOUT, "HTTP send timeout"))
        }
        // A head being received has HEADER_TIMEOUT from its first byte (a slowloris client
        // trickling bytes gets no more); an idle keep-alive connection has KEEPALIVE_IDLE since
        // its last input.
        ConnState::HttpHead { .. } if !c.head.is_empty() => {
            Some((c.head_started + HEADER_TIMEOUT, "HTTP request timeout"))
        }
        ConnState::HttpHead { served } => {
            let limit = if *served == 0 {
                HEADER_TIMEOUT
            } else {
                KEEPALIVE_IDLE
            };
            Some((c.last_input + limit, "HTTP request timeout"))
        }
        _ => None,
    };
    [stall, proxy, tls, state]
}

/// The first limit of `c` that ran out at `now`.
pub(super) fn conn_expired(c: &Conn, now: Instant) -> Option<&'static str> {
    conn_deadlines(c)
        .into_iter()
        .flatten()
        .find(|(at, _)| now >= *at)
        .map(|(_, why)| why)
}

/// Whether a timer is still for what set it (lazy cancellation, `timers`).
pub(super) fn timer_live(conns: &Slab<Conn>, udp: &[UdpPort], key: &TimerKey) -> bool {
    match Source::of(Token(key.token)) {
        Some(Source::Conn(t)) => conns
            .get(t)
            .is_some_and(|c| !c.closed && c.generation == key.generation),
        Some(Source::Peer(p)) => super::udp::peer_live(udp, p, key.generation),
        Some(_) => true,
        None => false,
    }
}

impl Server {
    /// Readiness of one source, to its driver.
    pub(super) fn ready(&mut self, source: Source, ready: Ready) {
        match source {
            Source::Conn(t) => {
                if ready.readable {
                    self.on_readable(t);
                }
                if ready.writable {
                    self.write_conn(t);
                }
            }
            Source::Listener(i) => self.accept(i),
            Source::Upstream(i) => self.upstream_ready(i),
            Source::Udp(i) => self.udp_ready(i, ready),
            Source::IceTcp(i) => self.ice_tcp_ready(i, ready),
            // The waker is the loop's own (`run`); peers and the loop have no sockets.
            Source::Waker | Source::Peer(_) | Source::Loop => {}
        }
    }

    /// Runs every timer due at this turn's `now`, earliest first. Timers set while these run
    /// wait for the next turn (one that is due already makes the next poll return at once).
    pub(super) fn run_timers(&mut self) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        {
            let (conns, udp) = (&self.conns, &self.udp);
            while let Some(k) = self
                .timers
                .pop_due(self.now_ms, |k| timer_live(conns, udp, k))
            {
                due.push(k);
            }
        }
        for &key in &due {
            self.timeout(key);
        }
        due.clear();
        self.due = due;
    }

    /// A due timer, to its driver.
    fn timeout(&mut self, key: TimerKey) {
        match Source::of(Token(key.token)) {
            Some(Source::Conn(t)) => self.conn_timeout(t),
            Some(Source::Peer(p)) => self.udp_peer_timeout(p),
            Some(Source::Loop) => {
                self.loop_armed[loop_slot(key.kind)] = None;
                self.loop_timeout(key.kind);
            }
            _ => {}
        }
    }

    /// The poll timeout: zero while work is pending, else until the earliest live timer.
    pub(super) fn poll_timeout(&mut self) -> Duration {
        if !self.pending_read.is_empty()
            || !self.pending_write.is_empty()
            || !self.pending_parse.is_empty()
            || !self.pending_udp.is_empty()
        {
            return Duration::ZERO;
        }
        let (conns, udp) = (&self.conns, &self.udp);
        match self.timers.next_deadline(|k| timer_live(conns, udp, k)) {
            Some(at) => Duration::from_millis(at.saturating_sub(self.now_ms)),
            None => SWEEP_EVERY,
        }
    }

    /// Sets connection `t`'s timer to its earliest limit, unless an entry at or before it is
    /// pending already (a later limit is found when that one comes due). Cheap when nothing
    /// changed: called after every read and write.
    pub(super) fn arm_conn(&mut self, t: usize) {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        if c.closed {
            return;
        }
        let Some(at) = conn_deadlines(c)
            .into_iter()
            .flatten()
            .map(|(at, _)| at)
            .min()
        else {
            return;
        };
        let at_ms = ms_ceil(self.started, at);
        if c.timer_at.is_some_and(|armed| armed <= at_ms) {
            return;
        }
        c.timer_at = Some(at_ms);
        let key = TimerKey {
            token: Source::Conn(t).token().0,
            generation: c.generation,
            kind: TimerKind::Machine,
        };
        self.timers.schedule(at_ms, key);
    }

    /// Connection `t`'s timer came due: close it if a limit ran out, else set the next one.
    fn conn_timeout(&mut self, t: usize) {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        c.timer_at = None;
        if let Some(reason) = conn_expired(c, self.now) {
            info!("{} {}: {reason}", c.kind(), c.peer);
            self.close(t, reason);
            return;
        }
        self.arm_conn(t);
    }

    /// Sets one of the loop's own timers at `at`, unless it is set at or before it already.
    pub(super) fn arm_loop(&mut self, kind: TimerKind, at: Instant) {
        let at_ms = ms_ceil(self.started, at);
        let slot = &mut self.loop_armed[loop_slot(kind)];
        if slot.is_some_and(|armed| armed <= at_ms) {
            return;
        }
        *slot = Some(at_ms);
        let key = TimerKey {
            token: Source::Loop.token().0,
            generation: 0,
            kind,
        };
        self.timers.schedule(at_ms, key);
    }

    /// The deadlines of machines that keep their own clocks (the gateway's pulls, parked
    /// LL-HLS requests, held publishers), into the heap; once per turn, after the timers ran.
    pub(super) fn arm_machines(&mut self) {
        let now = self.now;
        if let Some(at) = self.gateway.as_ref().map(|g| g.next_deadline(now)) {
            self.arm_loop(TimerKind::Gateway, at);
        }
        if let Some(at) = self.llhls_deadline() {
            self.arm_loop(TimerKind::Llhls, at);
        }
        if self.core.has_held() || self.core.hub.bridges_draining() {
            // Workers wake us when a held recording drains or an ended publish's audio bridge
            // handed over its tail; this bounds a missed or late one.
            self.arm_loop(TimerKind::Held, now + HELD_RECHECK);
        }
        self.arm_udp_peers();
    }

    /// The periodic timers, set once when the loop starts (each sets its next when it runs).
    pub(super) fn start_timers(&mut self) {
        let now = self.now;
        self.arm_loop(TimerKind::Sweep, now + SWEEP_EVERY);
        self.arm_loop(TimerKind::Stats, now + STATS_EVERY);
    }

    fn loop_timeout(&mut self, kind: TimerKind) {
        let now = self.now;
        match kind {
            TimerKind::Flush => {
                if !self.dirty.is_empty() && now >= self.next_flush {
                    // Set first: connections marked during the flush wait for the next one.
                    self.next_flush = now + self.viewer_cfg.merge_write;
                    self.flush_dirty();
                } else if !self.dirty.is_empty() {
                    let at = self.next_flush;
                    self.arm_loop(TimerKind::Flush, at);
                }
            }
            TimerKind::Sweep => {
                self.sweep();
                let (cpu, rss, conns) =
                    (limits::cpu_seconds(), limits::rss_bytes(), self.conns.len());
                let whep = self.webrtc.as_ref().map(|w| w.state.clone());
                let webrtc = |key: &crate::media::StreamKey| {
                    whep.as_ref()
                        .map_or(0, |s| s.borrow().viewers_of(key) as u32)
                };
                self.core
                    .sample_stats(self.now_ms, cpu, rss, conns, &webrtc);
                // Ended LL-HLS windows linger on the sweep's clock.
                self.llhls_timers();
                self.arm_loop(TimerKind::Sweep, now + SWEEP_EVERY);
            }
            TimerKind::Stats => {
                self.log_stats();
                self.arm_loop(TimerKind::Stats, now + STATS_EVERY);
            }
            TimerKind::Gateway => {
                if self.gateway.is_some() {
                    self.upstream_timers(now);
                }
            }
            TimerKind::Llhls => self.llhls_timers(),
            // The turn itself re-checked the held publishers (`run`).
            TimerKind::Held | TimerKind::Machine => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::conn::{Conn, Listener};
    use std::net::SocketAddr;

    /// A real accepted loopback socket for a `Conn` (the rules never touch it).
    fn conn(state: ConnState, now: Instant) -> (Conn, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer): (std::net::TcpStream, SocketAddr) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let socket = mio::net::TcpStream::from_std(s);
        (
            Conn::new(socket, peer, Listener::Http, None, state, now),
            client,
        )
    }

    fn earliest(c: &Conn) -> Option<Instant> {
        conn_deadlines(c)
            .into_iter()
            .flatten()
            .map(|(at, _)| at)
            .min()
    }

    #[test]
    fn a_new_http_connection_has_the_header_timeout() {
        let t0 = Instant::now();
        let (c, _client) = conn(ConnState::HttpHead { served: 0 }, t0);
        assert_eq!(earliest(&c), Some(t0 + HEADER_TIMEOUT));
        assert_eq!(
            conn_expired(&c, t0 + HEADER_TIMEOUT - Duration::from_millis(1)),
            None
        );
        assert_eq!(
            conn_expired(&c, t0 + HEADER_TIMEOUT),
            Some("HTTP request timeout")
        );
    }

    #[test]
    fn keep_alive_head_and_send_limits_follow_the_state() {
        let t0 = Instant::now();
        let (mut c, _client) = conn(ConnState::HttpHead { served: 1 }, t0);
        c.last_input = t0 + Duration::from_secs(5);
        assert_eq!(
            earliest(&c),
            Some(t0 + Duration::from_secs(5) + KEEPALIVE_IDLE)
        );
        // A head trickles in: the header timeout runs from its first byte, whatever comes later.
        c.head.extend_from_slice(b"GET / HT");
        c.head_started = t0 + Duration::from_secs(6);
        c.last_input = t0 + Duration::from_secs(15);
        assert_eq!(
            earliest(&c),
            Some(t0 + Duration::from_secs(6) + HEADER_TIMEOUT)
        );
        // An answer going out: only a stall of the output ends it.
        c.out
            .push(bytes::Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"));
        c.last_output = t0 + Duration::from_secs(20);
        assert_eq!(
            earliest(&c),
            Some(t0 + Duration::from_secs(20) + SEND_TIMEOUT)
        );
        assert_eq!(
            conn_expired(&c, t0 + Duration::from_secs(80)),
            Some("HTTP send timeout")
        );
    }

    #[test]
    fn unread_replies_are_judged_first_and_viewers_have_no_limit() {
        let t0 = Instant::now();
        let viewer = crate::hub::ViewerId::default();
        let (mut c, _client) = conn(
            ConnState::HttpFlv {
                viewer,
                chunked: true,
            },
            t0,
        );
        assert_eq!(earliest(&c), None, "a live viewer has no timer at all");
        c.out_full_since = Some(t0 + Duration::from_secs(1));
        assert_eq!(
            earliest(&c),
            Some(t0 + Duration::from_secs(1) + PRIVATE_STALL)
        );
        assert_eq!(
            conn_expired(&c, t0 + Duration::from_secs(12)),
            Some("does not read its replies; closed after 10 s")
        );
    }
}
