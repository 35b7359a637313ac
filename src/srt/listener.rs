//! The SRT listener, sans-IO: every datagram of the UDP port and `now` in; datagrams to send,
//! events (a caller asks to publish or play a stream id; payload bytes in order; a connection
//! closed) and the next deadline out. It answers inductions statelessly with a SYN cookie, keeps
//! state only for a conclusion that carries a valid cookie, settles latency and keys, and hands
//! the publish/play decision to the caller of `accept`/`reject` (the server's access policy).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::conn::{CloseReason, Conn, ConnParams, SendFull, Stats, PAYLOAD_SIZE};
use super::crypto::{Keys, KmError};
use super::handshake::{
    Handshake, RejectReason, SrtHs, EXT_CONFIG, EXT_HSREQ, EXT_KMREQ, OPT_HAICRYPT, OPT_NAKREPORT,
    OPT_REXMITFLG, OPT_STREAM, OPT_TLPKTDROP, OPT_TSBPDRCV, OPT_TSBPDSND, REJECT_BASE, SRT_MAGIC,
    SRT_VERSION, TYPE_CONCLUSION, TYPE_INDUCTION, VERSION_5,
};
use super::packet::{ctrl, Packet};
use super::streamid::StreamId;

/// How long a caller waits for `accept`/`reject` before it is refused with a timeout.
const DECISION_TIMEOUT: Duration = Duration::from_secs(5);
/// Rejections remembered (to answer a repeated conclusion the same way without a new decision).
const MAX_REJECTED: usize = 1024;
const REJECTED_TTL: Duration = Duration::from_secs(5);
/// A cookie is good for the minute it was made in and the one after.
const COOKIE_PERIOD: Duration = Duration::from_secs(60);
/// Induction answers: a burst, then a rate (per second). All SRT output shares the server's
/// queue of the port, so a flood of inductions must not crowd out the ACKs and data of open
/// connections; a caller whose induction goes unanswered repeats it (libsrt: every 250 ms).
const INDUCTION_BURST: f64 = 100.0;
const INDUCTION_RATE: f64 = 1000.0;
/// The MTU and flow window we announce.
const MTU: u32 = 1500;
const MIN_BUFFER: usize = 64;
/// Refusal log lines per window.
const LOG_BURST: u32 = 20;
const LOG_WINDOW: Duration = Duration::from_secs(10);
const MAX_BUFFER: usize = 8192;
/// Emptied payload buffers kept for reuse (`recycle`): what one wake-up delivers, up to a
/// keyframe's packets (a sender stamps all of a frame's packets alike, so they fall due at once),
/// at most 340 KB.
const MAX_SPARE: usize = 256;

/// How the listener runs; the server fills it from `--srt-latency`, `--srt-passphrase` and the
/// connection limits.
#[derive(Clone)]
pub struct ListenerConfig {
    /// Our TSBPD latency (the larger of ours and the peer's wins).
    pub latency: Duration,
    /// AES passphrase (libsrt wants 10 to 79 bytes); `None` refuses encrypted callers.
    pub passphrase: Option<Vec<u8>>,
    /// SRT connections (pending and established) in all, and per peer IP address.
    pub max_conns: usize,
    pub max_per_ip: usize,
    /// The bitrate buffers are sized for (bits per second); above it, packets are dropped.
    pub max_bitrate: u64,
    /// Silence after which a peer is gone.
    pub peer_idle: Duration,
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            latency: Duration::from_millis(120),
            passphrase: None,
            max_conns: 1000,
            max_per_ip: 100,
            max_bitrate: 20_000_000,
            peer_idle: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("latency", &self.latency)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .field("max_conns", &self.max_conns)
            .field("max_per_ip", &self.max_per_ip)
            .finish()
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// A connection's handle: our SRT socket id for it.
pub type ConnId = u32;

/// What the server must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A caller passed the handshake and asks for `stream`: answer with `accept` or `reject`.
    Request {
        id: ConnId,
        peer: SocketAddr,
        stream: StreamId,
    },
    /// Payload (MPEG-TS) in order, at its play time.
    Data { id: ConnId, data: Vec<u8> },
    /// The connection is gone (after `Request`, whether or not it was accepted), with its final
    /// counters (all zero when it was never accepted).
    Closed {
        id: ConnId,
        reason: CloseReason,
        stats: Box<Stats>,
    },
}

/// Counters of the listener as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Datagrams that are not SRT, or for no connection of ours.
    pub dropped: u64,
    pub inductions: u64,
    /// Inductions not answered: over the rate (a flood).
    pub inductions_dropped: u64,
    /// Conclusions with a bad or stale cookie (ignored: no state, no answer).
    pub bad_cookies: u64,
    pub rejected: u64,
}

struct Pending {
    peer: SocketAddr,
    peer_id: u32,
    request: Handshake,
    keys: Option<Keys>,
    params: ConnParams,
    deadline: Instant,
}

enum Entry {
    Pending(Box<Pending>),
    Open {
        conn: Box<Conn>,
        /// Our conclusion answer, sent again if the caller repeats its conclusion.
        response: Vec<u8>,
    },
}

/// The listener; see the module doc.
pub struct Listener {
    cfg: ListenerConfig,
    /// Key of the SYN cookies and socket ids.
    secret: [u8; 32],
    epoch: Instant,
    entries: HashMap<ConnId, Entry>,
    by_peer: HashMap<(SocketAddr, u32), ConnId>,
    rejected: HashMap<(SocketAddr, u32), (Vec<u8>, Instant)>,
    id_counter: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: ListenerStats,
    /// Start of the refusal-log window, lines logged and suppressed in it.
    log_window: (Instant, u32, u32),
    /// Induction answers that may go out now, and when it was last topped up.
    induction_tokens: (f64, Instant),
    /// Payload buffers handed back by `recycle`, reused for arriving data packets.
    spare: Vec<Vec<u8>>,
}

impl Listener {
    /// `secret` keys the SYN cookies and socket ids: 32 bytes from the OS random source (a
    /// guessable secret lets anyone forge cookies and so hold state).
    pub fn new(cfg: ListenerConfig, secret: [u8; 32], now: Instant) -> Listener {
        Listener {
            cfg,
            secret,
            epoch: now,
            entries: HashMap::new(),
            by_peer: HashMap::new(),
            rejected: HashMap::new(),
            id_counter: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: ListenerStats::default(),
            log_window: (now, 0, 0),
            induction_tokens: (INDUCTION_BURST, now),
            spare: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn spare_len(&self) -> usize {
        self.spare.len()
    }

    /// Hands back the buffer of an `Event::Data` once its bytes are used: the next data packet
    /// is copied into it instead of a new allocation. Optional; at most `MAX_SPARE` are kept.
    pub fn recycle(&mut self, data: Vec<u8>) {
        if self.spare.len() < MAX_SPARE && data.capacity() <= MAX_DATAGRAM {
            self.spare.push(data);
        }
    }

    pub fn stats(&self) -> &ListenerStats {
        &self.stats
    }

    /// Counters of one connection (established or not yet decided).
    pub fn conn_stats(&self, id: ConnId) -> Option<Stats> {
        match self.entries.get(&id)? {
            Entry::Open { conn, .. } => Some(conn.stats()),
            Entry::Pending(_) => None,
        }
    }

    /// True while `id` waits for `accept`/`reject`.
    pub fn is_pending(&self, id: ConnId) -> bool {
        matches!(self.entries.get(&id), Some(Entry::Pending(_)))
    }

    /// Connections (pending and established).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| match e {
                Entry::Pending(p) => p.deadline,
                Entry::Open { conn, .. } => conn.next_deadline(),
            })
            .min()
    }

    fn cookie(&self, peer: SocketAddr, period: u64) -> u32 {
        let ip = match peer.ip() {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        let mac = hmac_sha256(
            &self.secret,
            &[&ip[..], &peer.port().to_be_bytes(), &period.to_be_bytes()],
        );
        u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]])
    }

    fn cookie_period(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() / COOKIE_PERIOD.as_secs()
    }

    fn cookie_ok(&self, peer: SocketAddr, cookie: u32, now: Instant) -> bool {
        let p = self.cookie_period(now);
        self.cookie(peer, p) == cookie || (p > 0 && self.cookie(peer, p - 1) == cookie)
    }

    fn new_id(&mut self) -> ConnId {
        loop {
            self.id_counter += 1;
            let mac = hmac_sha256(&self.secret, &[&b"id"[..], &self.id_counter.to_be_bytes()]);
            let id = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]) & 0x3FFF_FFFF;
            if id != 0 && !self.entries.contains_key(&id) {
                return id;
            }
        }
    }

    /// One datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok(pkt) = Packet::parse(data) else {
            self.stats.dropped += 1;
            return;
        };
        match pkt {
            Packet::Control(h, body) if h.dest == 0 && h.kind == ctrl::HANDSHAKE => {
                self.on_handshake(now, from, h.timestamp, body)
            }
            _ => self.on_conn_packet(now, from, &pkt),
        }
    }

    fn on_conn_packet(&mut self, now: Instant, from: SocketAddr, pkt: &Packet<'_>) {
        let id = pkt.dest();
        let Some(Entry::Open { conn, .. }) = self.entries.get_mut(&id) else {
            self.stats.dropped += 1;
            return;
        };
        // A socket id is not a secret: only the caller's own address may speak for it.
        if conn.peer != from {
            self.stats.dropped += 1;
            return;
        }
        conn.handle(now, pkt, &mut self.spare);
        self.flush(id);
    }

    fn on_handshake(&mut self, now: Instant, from: SocketAddr, ts: u32, body: &[u8]) {
        let Ok(hs) = Handshake::parse(body) else {
            self.stats.dropped += 1;
            return;
        };
        match hs.hs_type {
            TYPE_INDUCTION => self.on_induction(now, from, hs),
            TYPE_CONCLUSION => self.on_conclusion(now, from, ts, hs),
            _ => self.stats.dropped += 1,
        }
    }

    /// Stateless: the answer carries a cookie bound to the caller's address and the minute.
    fn on_induction(&mut self, now: Instant, from: SocketAddr, req: Handshake) {
        self.stats.inductions += 1;
        let (tokens, at) = &mut self.induction_tokens;
        let refill = now.saturating_duration_since(*at).as_secs_f64() * INDUCTION_RATE;
        *tokens = (*tokens + refill).min(INDUCTION_BURST);
        *at = now;
        if *tokens < 1.0 {
            self.stats.inductions_dropped += 1;
            return;
        }
        *tokens -= 1.0;
        let answer = Handshake {
            version: VERSION_5,
            encryption: 0,
            extension: SRT_MAGIC,
            cookie: self.cookie(from, self.cookie_period(now)),
            srt: None,
            km: None,
            stream_id: None,
            congestion: None,
            ..req
        };
        let data = answer.to_packet(self.ts(now), req.socket_id);
        self.out.push_back(Transmit { to: from, data });
    }

    fn ts(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }

    fn on_conclusion(&mut self, now: Instant, from: SocketAddr, ts: u32, req: Handshake) {
        if !self.cookie_ok(from, req.cookie, now) {
            self.stats.bad_cookies += 1;
            return;
        }
        let key = (from, req.socket_id);
        if let Some(&id) = self.by_peer.get(&key) {
            // A repeated conclusion: our answer was lost, or the decision is still pending.
            if let Some(Entry::Open { response, .. }) = self.entries.get(&id) {
                self.out.push_back(Transmit {
                    to: from,
                    data: response.clone(),
                });
            }
            return;
        }
        if let Some((answer, _)) = self.rejected.get(&key) {
            self.out.push_back(Transmit {
                to: from,
                data: answer.clone(),
            });
            return;
        }
        match self.check(&req, from) {
            Ok((stream, keys, params)) => {
                let id = self.new_id();
                let params = ConnParams {
                    start: now,
                    peer_start: now
                        .checked_sub(Duration::from_micros(u64::from(ts)))
                        .unwrap_or(now),
                    ..params
                };
                self.by_peer.insert(key, id);
                self.entries.insert(
                    id,
                    Entry::Pending(Box::new(Pending {
                        peer: from,
                        peer_id: req.socket_id,
                        request: req,
                        keys,
                        params,
                        deadline: now + DECISION_TIMEOUT,
                    })),
                );
                self.events.push_back(Event::Request {
                    id,
                    peer: from,
                    stream,
                });
            }
            Err(reason) => {
                // One line per attempt (a repeated conclusion is answered from `rejected`), and
                // at most LOG_BURST a window, so a client looping on new sockets cannot flood it.
                if self.may_log(now) {
                    log::warn!(
                        "srt: {from} refused: {reason} (SRT reject {}, stream id {:?})",
                        reason.code(),
                        String::from_utf8_lossy(req.stream_id.as_deref().unwrap_or(b""))
                    );
                }
                self.send_reject(now, from, &req, reason);
            }
        }
    }

    /// Whether a refusal may be logged now (LOG_BURST per LOG_WINDOW).
    pub(crate) fn may_log(&mut self, now: Instant) -> bool {
        let (start, logged, suppressed) = &mut self.log_window;
        if now.saturating_duration_since(*start) >= LOG_WINDOW {
            if *suppressed > 0 {
                log::warn!("srt: {suppressed} more refusals not logged in the last {LOG_WINDOW:?}");
            }
            (*start, *logged, *suppressed) = (now, 0, 0);
        }
        *logged += 1;
        if *logged > LOG_BURST {
            *suppressed += 1;
        }
        *logged <= LOG_BURST
    }

    /// Everything the protocol itself decides; the access policy comes after, in `accept`.
    fn check(
        &self,
        req: &Handshake,
        from: SocketAddr,
    ) -> Result<(StreamId, Option<Keys>, ConnParams), RejectReason> {
        if req.version != VERSION_5 {
            return Err(RejectReason::Version);
        }
        let Some(srt) = req.srt.filter(|_| req.extension & EXT_HSREQ != 0) else {
            return Err(RejectReason::Rogue);
        };
        if srt.flags & OPT_STREAM != 0 {
            return Err(RejectReason::MessageApi);
        }
        if req.unsupported {
            return Err(RejectReason::Filter);
        }
        if req.congestion.as_deref().is_some_and(|c| c != b"live") {
            return Err(RejectReason::Congestion);
        }
        if req.stream_id_too_long {
            return Err(RejectReason::BadRequest);
        }
        let stream = StreamId::parse(req.stream_id.as_deref().unwrap_or(b""))?;
        let keys = match (&self.cfg.passphrase, &req.km) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => return Err(RejectReason::Unsecure),
            (Some(pass), Some(km)) => Some(Keys::from_km(km, pass).map_err(|e| match e {
                KmError::BadSecret => RejectReason::BadSecret,
                KmError::Malformed => RejectReason::Rogue,
                KmError::Unsupported => RejectReason::Unsecure,
            })?),
        };
        if self.entries.len() >= self.cfg.max_conns {
            return Err(RejectReason::Resource);
        }
        let same_ip = self
            .entries
            .values()
            .filter(|e| match e {
                Entry::Pending(p) => p.peer.ip() == from.ip(),
                Entry::Open { conn, .. } => conn.peer.ip() == from.ip(),
            })
            .count();
        if same_ip >= self.cfg.max_per_ip {
            return Err(RejectReason::Resource);
        }
        // Each direction plays out at the larger of what its receiver wants and its sender offers.
        let ours = self.cfg.latency;
        let rcv_latency = ours.max(Duration::from_millis(srt.send_delay_ms.into()));
        let snd_latency = ours.max(Duration::from_millis(srt.recv_delay_ms.into()));
        let params = ConnParams {
            rcv_latency,
            snd_latency,
            rcv_cap: self.buffer_packets(rcv_latency),
            snd_cap: self.buffer_packets(snd_latency),
            peer_idle: self.cfg.peer_idle,
            // Twice the bitrate buffers are sized for: bursts (a cached GOP) drain quickly.
            pace_pps: (self.cfg.max_bitrate / 4 / PAYLOAD_SIZE as u64).clamp(1000, 100_000) as u32,
            // What fits the peer's MTU after IP, UDP and SRT headers (44 bytes), in whole TS
            // packets: libsrt drops larger packets.
            payload_size: (req.mtu.clamp(576, MTU) as usize - 44) / 188 * 188,
            isn: req.isn,
            start: self.epoch,
            peer_start: self.epoch,
        };
        Ok((stream, keys, params))
    }

    /// Packets for `latency` plus a second of slack at the configured bitrate, within bounds.
    fn buffer_packets(&self, latency: Duration) -> usize {
        let window = latency.max(Duration::from_secs(1)) + Duration::from_secs(1);
        let bytes = self.cfg.max_bitrate as f64 / 8.0 * window.as_secs_f64();
        ((bytes / PAYLOAD_SIZE as f64) as usize).clamp(MIN_BUFFER, MAX_BUFFER)
    }

    fn send_reject(&mut self, now: Instant, to: SocketAddr, req: &Handshake, reason: RejectReason) {
        self.stats.rejected += 1;
        let answer = Handshake {
            hs_type: REJECT_BASE + reason.code(),
            srt: None,
            km: None,
            stream_id: None,
            congestion: None,
            request: false,
            ..req.clone()
        };
        let data = answer.to_packet(self.ts(now), req.socket_id);
        if self.rejected.len() >= MAX_REJECTED {
            self.rejected.retain(|_, (_, t)| *t > now);
        }
        if self.rejected.len() < MAX_REJECTED {
            self.rejected
                .insert((to, req.socket_id), (data.clone(), now + REJECTED_TTL));
        }
        self.out.push_back(Transmit { to, data });
    }

    /// The server allows the request: the caller gets our conclusion and the connection opens.
    pub fn accept(&mut self, id: ConnId, now: Instant) {
        let Some(Entry::Pending(p)) = self.entries.remove(&id) else {
            return;
        };
        let encrypted = p.keys.is_some();
        let answer = Handshake {
            version: VERSION_5,
            encryption: 0,
            extension: EXT_HSREQ | if encrypted { EXT_KMREQ } else { 0 } | EXT_CONFIG,
            isn: p.request.isn,
            mtu: p.request.mtu.min(MTU),
            flow_window: p.params.rcv_cap as u32,
            hs_type: TYPE_CONCLUSION,
            socket_id: id,
            cookie: p.request.cookie,
            peer_ip: p.request.peer_ip,
            srt: Some(SrtHs {
                version: SRT_VERSION,
                flags: OPT_TSBPDSND
                    | OPT_TSBPDRCV
                    | OPT_HAICRYPT
                    | OPT_TLPKTDROP
                    | OPT_NAKREPORT
                    | OPT_REXMITFLG,
                recv_delay_ms: p.params.rcv_latency.as_millis().min(65535) as u16,
                send_delay_ms: p.params.snd_latency.as_millis().min(65535) as u16,
            }),
            // KMRSP: libsrt's responder echoes the caller's keying material.
            km: if encrypted {
                p.request.km.clone()
            } else {
                None
            },
            stream_id: None,
            congestion: None,
            unsupported: false,
            stream_id_too_long: false,
            request: false,
        };
        let response = answer.to_packet(self.ts(now), p.peer_id);
        self.out.push_back(Transmit {
            to: p.peer,
            data: response.clone(),
        });
        let conn = Conn::new(
            p.peer,
            p.peer_id,
            p.params,
            p.keys,
            self.cfg.passphrase.clone(),
            now,
        );
        self.entries.insert(
            id,
            Entry::Open {
                conn: Box::new(conn),
                response,
            },
        );
    }

    /// The server refuses the request (access policy, stream busy, no such stream).
    pub fn reject(&mut self, id: ConnId, now: Instant, reason: RejectReason) {
        let Some(Entry::Pending(p)) = self.entries.remove(&id) else {
            return;
        };
        self.by_peer.remove(&(p.peer, p.peer_id));
        self.send_reject(now, p.peer, &p.request, reason);
        self.events.push_back(Event::Closed {
            id,
            reason: CloseReason::Local,
            stats: Box::default(),
        });
    }

    /// Sends MPEG-TS bytes to a player (in 1316-byte packets). `Err(SendFull)` when its send
    /// buffer cannot take them all (nothing queued then); unknown ids are ignored.
    pub fn send(&mut self, id: ConnId, now: Instant, data: &[u8]) -> Result<(), SendFull> {
        let Some(Entry::Open { conn, .. }) = self.entries.get_mut(&id) else {
            return Ok(());
        };
        let r = conn.send(now, data);
        self.flush(id);
        r
    }

    /// Closes a connection from our side (SHUTDOWN to the peer, then `Closed`).
    pub fn close(&mut self, id: ConnId, now: Instant) {
        match self.entries.get_mut(&id) {
            Some(Entry::Open { conn, .. }) => {
                conn.close(now);
                self.flush(id);
            }
            Some(Entry::Pending(_)) => self.reject(id, now, RejectReason::Resource),
            None => {}
        }
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .entries
            .iter()
            .filter(|(_, e)| match e {
                Entry::Pending(p) => p.deadline <= now,
                Entry::Open { conn, .. } => conn.next_deadline() <= now,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            match self.entries.get_mut(&id) {
                Some(Entry::Pending(_)) => self.reject(id, now, RejectReason::Timeout),
                Some(Entry::Open { conn, .. }) => {
                    conn.on_timeout(now);
                    self.flush(id);
                }
                None => {}
            }
        }
        self.rejected.retain(|_, (_, t)| *t > now);
    }

    /// Moves a connection's output and delivered payloads out; removes it once closed.
    fn flush(&mut self, id: ConnId) {
        let Some(Entry::Open { conn, .. }) = self.entries.get_mut(&id) else {
            return;
        };
        let to = conn.peer;
        self.out
            .extend(conn.drain_output().map(|data| Transmit { to, data }));
        self.events
            .extend(conn.drain_delivered().map(|data| Event::Data { id, data }));
        if let Some(reason) = conn.closed() {
            let key = (conn.peer, conn.peer_id);
            let stats = Box::new(conn.stats());
            self.entries.remove(&id);
            self.by_peer.remove(&key);
            self.events.push_back(Event::Closed { id, reason, stats });
        }
    }
}

/// The largest datagram a peer sends (its MTU, at most 1500): the receive buffer size to use.
pub const MAX_DATAGRAM: usize = MTU as usize;

/// HMAC-SHA256 of the concatenated `parts` under `key` (RustCrypto's `hmac`): the SYN cookies and
/// the socket ids, unguessable without the listener's secret.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}
