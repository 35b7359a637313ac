//! WebRTC in the loop (WHEP playback, WHIP ingest): the glue between HTTP (`POST
//! /{app}/{stream}/whep`, `DELETE /whep/session/{id}`, the same for `whip`), the UDP endpoint on
//! `--webrtc-port` and the hub, for the sans-IO sessions of `crate::webrtc`. This file is the
//! shared core: the `State` every part borrows (sessions, feeds, WHIP publishers, counters), the
//! paths and their reply heads, and the port's set-up; it drives no session itself.
//!
//! - `whep.rs`: WHEP's HTTP (offer and answer, DELETE, PATCH, OPTIONS);
//! - `session.rs`: datagrams, ICE-TCP packets and timers into the sessions, their output out;
//! - `feed.rs`: the stream's frames to the viewers (hub reader, packager, audio bridge);
//! - `metrics.rs`: the `/api/streams` and `/metrics` figures;
//! - `whip.rs`: WHIP's HTTP and its publishers' sessions.
//!
//! How a WHEP viewer is served:
//!
//! - One `WebRtc` per origin (`Server::webrtc`), its state shared (`Rc<RefCell<State>>`) with the
//!   `UdpProtocol` the endpoint owns: sessions by UDP peer, by ICE ufrag and by the id of their
//!   `Location`.
//! - Media: one `Feed` per stream with WHEP viewers: a hub `Reader` (`FeedReader`) queues the
//!   stream's normalised frames (bounded), and once per loop turn (`Server::webrtc_turn`) one
//!   `Packager` turns them into units that every connected session of the stream `send`s. A
//!   session that connects first gets the cached GOP (through a packager of its own), then the
//!   live units that follow it.
//! - Audio bridge: an AAC stream's viewers are answered with Opus; while the feed has sessions,
//!   its AAC frames go to a `crate::audio::Bridge` (a thread, bounded queues both ways, the loop
//!   woken when packets are ready) whose Opus packets every connected session `send`s. It stops
//!   when the last session leaves and starts again with the next one.
//! - Datagrams: a STUN request from a new address is routed by its ufrag to a live session
//!   (anything else from a stranger is dropped without state); the session's output goes to its
//!   peer queue; its `next_deadline` is the peer's timer.
//! - Policy: every session counts as a connection of its address (`--max-connections`,
//!   `--max-per-ip`) and as a player of its stream (`--max-players-per-stream`); when the
//!   publisher leaves, every session of the stream is closed.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::info;

mod feed;
mod metrics;
pub(super) mod session;
mod whep;
pub(super) mod whip;

use self::session::WhepUdp;
use super::udp::PeerId;
use super::Server;
use crate::audio::Bridge;
use crate::http::request::Request;
use crate::media::{Frame, StreamKey};
use crate::webrtc::{Packager, SessionConfig, WhepSession};

/// The largest WHEP request body (an SDP offer) read; a larger one is answered 413.
pub const MAX_OFFER: usize = 64 * 1024;

/// The WHEP (playback) and WHIP (publish) paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WhepPath {
    /// `/{app}/{stream}/whep`
    Offer(StreamKey),
    /// `/whep/session/{id}`
    Session(String),
    /// `/{app}/{stream}/whip`
    WhipOffer(StreamKey),
    /// `/whip/session/{id}`
    WhipSession(String),
}

impl WhepPath {
    pub fn is_whip(&self) -> bool {
        matches!(self, WhepPath::WhipOffer(_) | WhepPath::WhipSession(_))
    }
}

/// Which WHEP or WHIP path `path` is, if any.
pub fn whep_path(path: &str) -> Option<WhepPath> {
    let session_id = |id: &str| {
        (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| id.to_string())
    };
    if let Some(id) = path.strip_prefix("/whep/session/") {
        return session_id(id).map(WhepPath::Session);
    }
    if let Some(id) = path.strip_prefix("/whip/session/") {
        return session_id(id).map(WhepPath::WhipSession);
    }
    let mut parts = path.strip_prefix('/')?.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(app), Some(stream), Some(what @ ("whep" | "whip")), None)
            if crate::media::key::valid_name(app) && crate::media::key::valid_name(stream) =>
        {
            let key = StreamKey::new(app, stream).ok()?;
            Some(if what == "whep" {
                WhepPath::Offer(key)
            } else {
                WhepPath::WhipOffer(key)
            })
        }
        _ => None,
    }
}

/// For a request head: `None` when it is no WHEP offer with a body; else the body's length, or
/// the status and reason to refuse it with (too large, not framed by Content-Length).
pub fn offer_body(req: &Request) -> Option<Result<usize, (u16, &'static str)>> {
    if req.method != "POST"
        || !req.has_body
        || !matches!(
            whep_path(req.path()),
            Some(WhepPath::Offer(_) | WhepPath::WhipOffer(_))
        )
    {
        return None;
    }
    let Some(len) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return Some(Err((411, "A Content-Length is required.")));
    };
    if len > MAX_OFFER {
        return Some(Err((
            413,
            "The SDP offer is too large (the limit is 64 KiB).",
        )));
    }
    Some(Ok(len))
}

/// Counters since start, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub sessions_total: u64,
    pub bytes: u64,
    pub packets: u64,
    pub nacks: u64,
    pub plis: u64,
    pub firs: u64,
    pub frames_sent: u64,
    pub frames_dropped: u64,
    /// Frames the feeds dropped (a queue over `FEED_QUEUE` between two turns).
    pub feed_dropped: u64,
    /// Keyframe requests from viewers (answered by the next GOP: the publisher cannot be asked).
    pub keyframe_requests: u64,
    /// Pictures the feeds dropped because they came out of presentation order (B-frames).
    pub reorder_dropped: u64,
    /// Audio bridges (AAC to Opus) started, and what their queues dropped (`bridge_counts`).
    pub bridges_started: u64,
    pub bridge_frames: u64,
    pub bridge_packets: u64,
    pub bridge_dropped: u64,
}

struct Sess {
    session: WhepSession,
    key: StreamKey,
    id: String,
    ip: IpAddr,
    /// The socket of the endpoint the viewer's datagrams came in on.
    socket: usize,
    candidates: Vec<SocketAddr>,
    /// The feed it plays from (`Feed::id`).
    feed: u64,
    /// Live units of frames at or before this stream time were sent in its GOP replay.
    replayed_until: Option<u64>,
    started: Instant,
}

struct Feed {
    id: u64,
    packager: Packager,
    /// Its units' RTP payloads, made once for every viewer (`crate::webrtc::rtp`).
    packetizers: crate::webrtc::Packetizers,
    /// The last AAC sequence header (a bridge started later begins with it).
    aac_config: Option<Frame>,
    /// The AAC to Opus bridge, while the stream is AAC and has viewers.
    bridge: Option<Bridge>,
    frames: VecDeque<Frame>,
    /// Its reader was dropped: the publish ended.
    ended: bool,
    sessions: Vec<PeerId>,
    /// The log said that B-frames (1), or reference B-frames (2), are dropped.
    told_b_frames: u8,
}

/// What the HTTP side, the UDP side and the hub's reader share.
pub struct State {
    started: Instant,
    pub(super) cfg: SessionConfig,
    sessions: HashMap<PeerId, Sess>,
    pub(super) by_ufrag: HashMap<String, PeerId>,
    by_id: HashMap<String, PeerId>,
    feeds: HashMap<StreamKey, Feed>,
    next_feed: u64,
    /// `--opus-bitrate`.
    opus_bitrate: Option<u32>,
    /// Packets sessions sent over ICE-TCP since the loop last took them (`take_tcp_out`).
    tcp_out: Vec<(SocketAddr, Vec<u8>)>,
    pub counters: Counters,
    /// WHIP publishers (`whip.rs`), by peer and by the id of their `Location`; their ufrags
    /// are in `by_ufrag` with the viewers'.
    pub(super) whip: HashMap<PeerId, whip::Pub>,
    pub(super) whip_by_id: HashMap<String, PeerId>,
    pub(super) whip_counters: whip::WhipCounters,
    pub(super) next_whip_conn: usize,
    /// WHIP frames and unpublishes for the hub, applied once this state is not borrowed.
    pub(super) hub_ops: Vec<whip::HubOp>,
}

impl State {
    fn new(started: Instant) -> State {
        State {
            started,
            cfg: SessionConfig::default(),
            sessions: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_id: HashMap::new(),
            feeds: HashMap::new(),
            next_feed: 1,
            opus_bitrate: None,
            tcp_out: Vec::new(),
            counters: Counters::default(),
            whip: HashMap::new(),
            whip_by_id: HashMap::new(),
            whip_counters: whip::WhipCounters::default(),
            next_whip_conn: 0,
            hub_ops: Vec::new(),
        }
    }

    fn now(&self, now_ms: u64) -> Instant {
        self.started + Duration::from_millis(now_ms)
    }

    /// Queues a packet for ICE-TCP (dropped past `TCP_OUT_MAX`).
    pub(super) fn tcp_out_push(&mut self, to: SocketAddr, packet: Vec<u8>) {
        if self.tcp_out.len() < TCP_OUT_MAX {
            self.tcp_out.push((to, packet));
        }
    }

    pub(super) fn forget_ufrag(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
    }

    /// The loop's ms of an instant, rounded up (a timer set earlier would fire before it).
    pub(super) fn ms(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.started);
        let ms = d.as_millis() as u64;
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    /// Sessions answered whose ICE and DTLS are not done yet.
    pub fn connecting(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| !s.session.is_connected())
            .count()
    }

    /// Sessions now, and sessions of `key`.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn viewers_of(&self, key: &StreamKey) -> usize {
        self.feeds.get(key).map_or(0, |f| f.sessions.len())
    }

    /// What the stream's sessions (those open now) sent, dropped and were asked for.
    pub fn stream_totals(&self, key: &StreamKey) -> Counters {
        let mut c = Counters::default();
        for s in self.sessions.values().filter(|s| &s.key == key) {
            add_stats(&mut c, s.session.stats());
        }
        c.sessions_total = self.sessions.values().filter(|s| &s.key == key).count() as u64;
        c
    }

    /// The counters with the live sessions' own added.
    pub fn totals(&self) -> Counters {
        let mut c = self.counters;
        for s in self.sessions.values() {
            add_stats(&mut c, s.session.stats());
        }
        c
    }
}

fn add_stats(c: &mut Counters, s: &crate::webrtc::SessionStats) {
    c.bytes += s.bytes;
    c.packets += s.packets;
    c.nacks += s.nacks;
    c.plis += s.plis;
    c.firs += s.firs;
    c.frames_sent += s.frames_sent;
    c.frames_dropped += s.frames_dropped + s.transmits_dropped;
}

/// The origin's WHEP service (`Server::webrtc`).
pub struct WebRtc {
    pub state: Rc<RefCell<State>>,
    /// Its UDP endpoint's index in `Server::udp`.
    pub(super) endpoint: usize,
    pub(super) port: u16,
    pub(super) public_ips: Vec<IpAddr>,
    /// The offer of the request just parsed (`http_parse` reads it before `http_request`).
    body: Option<(usize, Vec<u8>)>,
    /// Offers waiting for a hook's verdict, by connection.
    pub(super) parked: HashMap<usize, Vec<u8>>,
    /// Connections told `100 Continue` whose offer has not arrived yet.
    continued: Vec<usize>,
    /// The ICE-TCP listener and its connections.
    pub tcp: Option<super::ice_tcp::IceTcp>,
    /// When the last "still connecting" refusal was logged (loop ms).
    warned_ms: u64,
}

impl WebRtc {
    pub fn endpoint(&self) -> usize {
        self.endpoint
    }
}

/// Packets queued for ICE-TCP between two turns at most; more are dropped (counted).
const TCP_OUT_MAX: usize = 16 * 1024;

pub(super) fn random_id(n: usize) -> Option<String> {
    use ring::rand::SecureRandom;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(
        bytes
            .iter()
            .map(|b| CHARS[*b as usize % CHARS.len()] as char)
            .collect(),
    )
}

fn cors() -> &'static str {
    "Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: Location, ETag\r\n"
}

pub(super) fn reply(
    status: u16,
    extra: &str,
    ctype: &str,
    body: &str,
    keep_alive: bool,
) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nServer: rtmpd\r\n{}{extra}Content-Type: {ctype}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n\r\n{body}",
        crate::http::response::reason(status),
        cors(),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes()
}

pub(super) fn text(status: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    reply(status, "", "text/plain; charset=utf-8", body, keep_alive)
}

impl Server {
    /// Opens the WebRTC port (UDP) for WHEP: the origin's `--webrtc-port`.
    pub(super) fn open_webrtc(
        &mut self,
        cfg: &crate::config::WebRtcConfig,
        bind: IpAddr,
    ) -> Result<(), super::ServerError> {
        let state = Rc::new(RefCell::new(State::new(self.started)));
        state.borrow_mut().cfg.keyframe_interval = cfg.keyframe_interval;
        state.borrow_mut().opus_bitrate = cfg.opus_bitrate;
        // One number for UDP and TCP. With port 0 the TCP listener takes a free port first (TCP's
        // ephemeral ports are the crowded ones: every outgoing connection holds one, so a free UDP
        // port was often taken for TCP under load), then UDP is tried on that number, a few times.
        let mut tries = if cfg.port == 0 { 20 } else { 1 };
        let (endpoint, tcp, port) = loop {
            tries -= 1;
            let tcp_addr = SocketAddr::new(bind, cfg.port);
            let tcp = match Server::ice_tcp_bind(tcp_addr) {
                Ok(t) => t,
                Err(e) => {
                    return Err(super::ServerError(format!(
                        "cannot listen for WebRTC ICE-TCP on {tcp_addr} (--webrtc-port): {e}"
                    )))
                }
            };
            let port = if cfg.port == 0 {
                tcp.local_port().map_err(|e| {
                    super::ServerError(format!("cannot listen for WebRTC ICE-TCP: {e}"))
                })?
            } else {
                cfg.port
            };
            let addr = SocketAddr::new(bind, port);
            match self.open_udp("webrtc", &[addr], Box::new(WhepUdp(state.clone()))) {
                Ok(e) => break (e, tcp, port),
                Err(_) if tries > 0 => continue,
                Err(e) => {
                    return Err(super::ServerError(format!(
                        "WebRTC on udp {addr} (--webrtc-port): {}",
                        e.0
                    )));
                }
            }
        };
        let mut tcp = tcp;
        tcp.register(self.poll.registry())
            .map_err(|e| super::ServerError(format!("cannot listen for WebRTC ICE-TCP: {e}")))?;
        info!(
            "WebRTC listening on {} (UDP and TCP)",
            SocketAddr::new(bind, port)
        );
        self.webrtc = Some(Box::new(WebRtc {
            state,
            endpoint,
            port,
            public_ips: cfg.public_ips.clone(),
            warned_ms: 0,
            body: None,
            parked: HashMap::new(),
            continued: Vec::new(),
            tcp: Some(tcp),
        }));
        Ok(())
    }

    /// Once per loop turn: the feeds' frames to their sessions, the end of streams whose
    /// publisher left, and out with what that queued.
    pub(super) fn webrtc_turn(&mut self) {
        self.webrtc_media();
        self.ice_tcp_turn();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whep_paths() {
        let key = |a: &str, s: &str| Some(WhepPath::Offer(StreamKey::new(a, s).unwrap()));
        let cases: &[(&str, Option<WhepPath>)] = &[
            ("/live/cam/whep", key("live", "cam")),
            (
                "/whep/session/AbC123",
                Some(WhepPath::Session("AbC123".into())),
            ),
            ("/live/cam/whep/", None),
            ("/live/whep", None),
            ("/a/b/c/whep", None),
            ("/whep/session/", None),
            ("/whep/session/a-b", None),
            ("/whep/session/a/b", None),
            ("/live/../whep", None),
            ("/live/cam.flv", None),
            (
                "/live/cam/whip",
                Some(WhepPath::WhipOffer(StreamKey::new("live", "cam").unwrap())),
            ),
            (
                "/whip/session/AbC123",
                Some(WhepPath::WhipSession("AbC123".into())),
            ),
            ("/whip/session/a-b", None),
            ("/live/cam/whip/x", None),
            ("/whip/cam/whap", None),
        ];
        for (path, want) in cases {
            assert_eq!(&whep_path(path), want, "{path}");
        }
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        crate::http::request::parse(head.as_bytes())
            .unwrap()
            .unwrap()
            .0
    }

    #[test]
    fn offer_bodies_are_bounded() {
        let cl = |n: &str| req("POST", "/live/cam/whep", &[("Content-Length", n)]);
        assert_eq!(offer_body(&cl("100")), Some(Ok(100)));
        let whip = req("POST", "/live/cam/whip", &[("Content-Length", "100")]);
        assert_eq!(offer_body(&whip), Some(Ok(100)));
        assert_eq!(offer_body(&cl("65536")), Some(Ok(MAX_OFFER)));
        assert_eq!(
            offer_body(&cl("65537")).map(|r| r.map_err(|e| e.0)),
            Some(Err(413))
        );
        let chunked = req(
            "POST",
            "/live/cam/whep",
            &[("Transfer-Encoding", "chunked")],
        );
        assert_eq!(
            offer_body(&chunked).map(|r| r.map_err(|e| e.0)),
            Some(Err(411))
        );
        // Not a WHEP offer: the server's usual handling (no body read).
        assert_eq!(
            offer_body(&req("POST", "/live/cam.flv", &[("Content-Length", "5")])),
            None
        );
        assert_eq!(offer_body(&req("POST", "/live/cam/whep", &[])), None);
        let patch = req("PATCH", "/whep/session/abc", &[("Content-Length", "5")]);
        assert_eq!(offer_body(&patch), None);
    }

    #[test]
    fn deadlines_round_up_to_the_loop_ms() {
        let started = Instant::now();
        let st = State::new(started);
        assert_eq!(st.ms(started + Duration::from_micros(10_400)), 11);
        assert_eq!(st.ms(started + Duration::from_millis(10)), 10);
        assert_eq!(st.ms(started), 0);
        assert_eq!(st.now(25), started + Duration::from_millis(25));
    }
}
