//! WHEP playback in the loop: the glue between HTTP (`POST /{app}/{stream}/whep`, `DELETE
//! /whep/session/{id}`), the UDP endpoint on `--webrtc-port` and the hub, for the sans-IO
//! sessions of `crate::webrtc`.
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{debug, info, warn};

use super::udp::{Datagram, PeerId, UdpCx, UdpPeers, UdpProtocol};
use super::Server;
use crate::access::limits::Limits;
use crate::audio::worker::Wake;
use crate::audio::{Bridge, BridgeOutput};
use crate::http::request::Request;
use crate::hub::reader::{Reader, ReaderState};
use crate::hub::Hub;
use crate::media::frame::{Codec, Track};
use crate::media::{Frame, StreamKey};
use crate::webrtc::{
    candidate_addrs, stun_username_fragment, MediaUnit, Packager, Proto, SessionConfig, UnitKind,
    WebRtcError, WebRtcEvent, WhepSession,
};

/// The largest WHEP request body (an SDP offer) read; a larger one is answered 413.
pub const MAX_OFFER: usize = 64 * 1024;
/// Frames a stream's feed queues between two loop turns; more are dropped (and counted).
const FEED_QUEUE: usize = 4096;
/// The reason of a PATCH's 405.
/// Sessions answered whose ICE and DTLS are not done yet, in all: over it an offer gets 503.
/// Each holds an `Rtc` and its DTLS state for up to `SessionConfig::connect_timeout` (10 s), and
/// costs a handshake's CPU; offers that never connect (a flood from many addresses, which the
/// per-address cap does not stop) must not hold more. A thousand viewers joining within the
/// ~100 ms a handshake takes is far above any real join rate.
pub const MAX_CONNECTING: usize = 1000;

const NO_TRICKLE: &str = "trickle ICE is not supported: send all candidates in the offer";

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
    /// WHIP publishers (`server::whip`), by peer and by the id of their `Location`; their ufrags
    /// are in `by_ufrag` with the viewers'.
    pub(super) whip: HashMap<PeerId, super::whip::Pub>,
    pub(super) whip_by_id: HashMap<String, PeerId>,
    pub(super) whip_counters: super::whip::WhipCounters,
    pub(super) next_whip_conn: usize,
    /// WHIP frames and unpublishes for the hub, applied once this state is not borrowed.
    pub(super) hub_ops: Vec<super::whip::HubOp>,
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
            whip_counters: super::whip::WhipCounters::default(),
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

/// The session whose ICE username fragment is `ufrag`.
pub fn session_by_ufrag(st: &State, ufrag: &str) -> Option<PeerId> {
    st.by_ufrag.get(ufrag).copied()
}

/// Whether the session of `peer` accepts this packet from a new path (its STUN credentials).
pub fn accepts(
    st: &State,
    peer: PeerId,
    proto: Proto,
    from: SocketAddr,
    local: SocketAddr,
    packet: &[u8],
) -> bool {
    if let Some(p) = st.whip.get(&peer) {
        return p.session.accepts(proto, from, local, packet);
    }
    st.sessions
        .get(&peer)
        .is_some_and(|s| s.session.accepts(proto, from, local, packet))
}

/// Whether the session that had `ufrag` is still `peer` (peer ids are reused, ufrags are not).
pub fn session_alive(st: &State, peer: PeerId, ufrag: &str) -> bool {
    st.by_ufrag.get(ufrag) == Some(&peer)
}

/// One packet from an ICE-TCP connection bound to `peer`; false when the session is gone.
pub fn tcp_datagram(
    st: &mut State,
    peer: PeerId,
    (from, local): (SocketAddr, SocketAddr),
    packet: &[u8],
    peers: &mut UdpPeers,
    core: &mut crate::origin::Origin,
    now: Instant,
) -> bool {
    if st.whip.contains_key(&peer) {
        let at = (from, local);
        super::whip::datagram(st, peer, Proto::Tcp, at, packet, peers, core, now);
        // The caller applies the frames (`whip::apply_hub_ops`) once it lets go of `st`.
        return st.whip.contains_key(&peer);
    }
    let Some(s) = st.sessions.get_mut(&peer) else {
        return false;
    };
    s.session
        .handle_datagram(now, Proto::Tcp, from, local, packet);
    drain(st, peer, peers, &core.hub, &mut core.limits, now);
    true
}

/// What sessions queued for ICE-TCP, by destination.
pub fn take_tcp_out(st: &mut State) -> Vec<(SocketAddr, Vec<u8>)> {
    std::mem::take(&mut st.tcp_out)
}

/// The endpoint's protocol: routes datagrams to sessions, runs their timers.
struct WhepUdp(Rc<RefCell<State>>);

impl UdpProtocol for WhepUdp {
    fn route(&mut self, d: &Datagram) -> Option<PeerId> {
        let ufrag = stun_username_fragment(d.data)?;
        self.0.borrow().by_ufrag.get(ufrag).copied()
    }

    fn receive(&mut self, peer: PeerId, d: &Datagram, cx: &mut UdpCx) {
        let mut st = self.0.borrow_mut();
        let now = st.now(cx.now_ms);
        if let Some(p) = st.whip.get_mut(&peer) {
            let local = destination(&p.candidates, d.from);
            let known = cx.peers.peer_of(d.socket, d.from) == Some(peer);
            if !known && !p.session.accepts(Proto::Udp, d.from, local, d.data) {
                return;
            }
            if !known {
                cx.peers.bind(peer, d.socket, d.from);
                p.socket = d.socket;
            }
            let at = (d.from, local);
            super::whip::datagram(
                &mut st,
                peer,
                Proto::Udp,
                at,
                d.data,
                cx.peers,
                cx.core,
                now,
            );
            drop(st);
            return super::whip::apply_hub_ops(&self.0, cx.core, cx.now_ms);
        }
        let Some(s) = st.sessions.get_mut(&peer) else {
            return;
        };
        let local = destination(&s.candidates, d.from);
        let known = cx.peers.peer_of(d.socket, d.from) == Some(peer);
        if !known && !s.session.accepts(Proto::Udp, d.from, local, d.data) {
            return; // a STUN request with our ufrag but not our credentials: no state
        }
        s.session
            .handle_datagram(now, Proto::Udp, d.from, local, d.data);
        if !known && !s.session.is_closed() {
            cx.peers.bind(peer, d.socket, d.from);
            s.socket = d.socket;
        }
        drain(
            &mut st,
            peer,
            cx.peers,
            &cx.core.hub,
            &mut cx.core.limits,
            now,
        );
    }

    fn unknown(&mut self, d: &Datagram, _cx: &mut UdpCx) {
        debug!("webrtc: a datagram from {} that no session claims", d.from);
    }

    fn timeout(&mut self, peer: PeerId, cx: &mut UdpCx) {
        let mut st = self.0.borrow_mut();
        let now = st.now(cx.now_ms);
        if st.whip.contains_key(&peer) {
            super::whip::timeout(&mut st, peer, cx.peers, cx.core, now);
            drop(st);
            return super::whip::apply_hub_ops(&self.0, cx.core, cx.now_ms);
        }
        if let Some(s) = st.sessions.get_mut(&peer) {
            s.session.handle_timeout(now);
        }
        drain(
            &mut st,
            peer,
            cx.peers,
            &cx.core.hub,
            &mut cx.core.limits,
            now,
        );
    }
}

/// Our address a datagram from `from` arrived at, as the session knows it: the socket is bound
/// to the unspecified address, so the candidate of the sender's family stands for it.
pub(super) fn destination(candidates: &[SocketAddr], from: SocketAddr) -> SocketAddr {
    candidates
        .iter()
        .find(|c| c.is_ipv4() == from.is_ipv4())
        .or(candidates.first())
        .copied()
        .unwrap_or(from)
}

/// Everything a session has to say after an input: its datagrams to its peer queue, its events
/// (the GOP on connecting; a closed session is forgotten), its next deadline.
fn drain(
    st: &mut State,
    peer: PeerId,
    peers: &mut UdpPeers,
    hub: &Hub,
    limits: &mut Limits,
    now: Instant,
) {
    let Some(s) = st.sessions.get_mut(&peer) else {
        return;
    };
    let mut closed = None;
    let mut connected = false;
    let mut keyframe_requests = 0;
    let mut tcp = Vec::new();
    loop {
        while let Some(t) = s.session.poll_transmit() {
            if t.proto == Proto::Tcp {
                tcp.push((t.destination, t.contents));
                continue;
            }
            let data = Bytes::from(t.contents);
            if s.session.is_closed() {
                // Its last words (DTLS close_notify) outlive the peer, which goes below.
                peers.reply(s.socket, t.destination, data);
            } else {
                peers.send(peer, s.socket, t.destination, data);
            }
        }
        let Some(e) = s.session.poll_event() else {
            break;
        };
        match e {
            WebRtcEvent::Connected => connected = true,
            WebRtcEvent::KeyframeRequest(_) => keyframe_requests += 1,
            WebRtcEvent::Closed { reason } => closed = Some(reason),
        }
        if connected {
            connected = false;
            info!(
                "{}: WebRTC session {} connected in {} ms",
                s.key,
                s.id,
                now.saturating_duration_since(s.started).as_millis()
            );
            // The cached GOP from its keyframe, through a packager of its own; live units of
            // the frames it held are then skipped for this viewer.
            let mut p = Packager::new();
            let mut last = None;
            for f in hub.cached_frames(&s.key) {
                if let Some(u) = p.push(&f) {
                    s.session.send(&u, now);
                }
                last = Some(last.map_or(f.time, |l: u64| l.max(f.time)));
            }
            s.replayed_until = last;
        }
    }
    st.counters.keyframe_requests += keyframe_requests;
    for t in tcp {
        if st.tcp_out.len() < TCP_OUT_MAX {
            st.tcp_out.push(t);
        } else {
            st.counters.frames_dropped += 1;
        }
    }
    if let Some(reason) = closed {
        let s = st
            .sessions
            .remove(&peer)
            .expect("the session drained above");
        st.by_ufrag.remove(s.session.local_ufrag());
        st.by_id.remove(&s.id);
        if let Some(f) = st.feeds.get_mut(&s.key) {
            f.sessions.retain(|p| *p != peer);
        }
        let stats = s.session.stats().clone();
        add_stats(&mut st.counters, &stats);
        peers.remove_peer(peer);
        limits.release_connection(s.ip);
        info!(
            "{}: WebRTC session {} from {} closed after {} s: {reason}; sent {} frames, {} bytes, \
             {} packets; dropped {} frames; NACKs {}, PLIs {}, FIRs {}",
            s.key,
            s.id,
            s.ip,
            now.saturating_duration_since(s.started).as_secs(),
            stats.frames_sent,
            stats.bytes,
            stats.packets,
            stats.frames_dropped,
            stats.nacks,
            stats.plis,
            stats.firs
        );
        return;
    }
    let at = s.session.next_deadline().map(|d| st.ms(d));
    peers.set_deadline(peer, at);
}

/// The codecs a WHEP offer is answered with: an AAC stream's audio goes out as Opus (the bridge).
fn bridged(codecs: &crate::webrtc::StreamCodecs) -> crate::webrtc::StreamCodecs {
    let mut c = codecs.clone();
    if c.audio == Some(Codec::Aac) {
        c.audio = Some(Codec::Opus);
    }
    c
}

/// The default track's AAC (configuration or coded frame): the bridge's input.
fn is_aac(frame: &Frame) -> bool {
    frame.track == Track::Audio && frame.codec == Codec::Aac && frame.track_id == 0
}

fn last_aac_config(frames: &[Frame]) -> Option<Frame> {
    frames.iter().rev().find(|f| is_aac(f) && f.config).cloned()
}

/// One AAC frame of a feed: kept when it is the configuration, and handed to the stream's
/// bridge, which starts with the first frame that has a viewer to hear it.
fn bridge_frame(
    feed: &mut Feed,
    key: &StreamKey,
    frame: &Frame,
    bitrate: Option<u32>,
    waker: &Arc<mio::Waker>,
    counters: &mut Counters,
) {
    if frame.config {
        feed.aac_config = Some(frame.clone());
    }
    if feed.sessions.is_empty() {
        return;
    }
    if feed.bridge.is_none() {
        let waker = waker.clone();
        let wake: Wake = Arc::new(move || {
            let _ = waker.wake();
        });
        match Bridge::start(key.to_string(), bitrate, wake) {
            Ok(b) => {
                debug!("{key}: audio bridge (AAC to Opus) started for its WebRTC viewers");
                counters.bridges_started += 1;
                if !frame.config {
                    if let Some(c) = &feed.aac_config {
                        b.push(c);
                    }
                }
                feed.bridge = Some(b);
            }
            Err(e) => {
                warn!("{key}: no audio bridge for WebRTC viewers (no thread: {e})");
                return;
            }
        }
    }
    if let Some(b) = &feed.bridge {
        b.push(frame);
    }
}

/// A stopping bridge's counters into the totals.
fn bridge_counts(c: &mut Counters, b: &Bridge) {
    use std::sync::atomic::Ordering::Relaxed;
    let sh = b.shared();
    c.bridge_frames += sh.frames_in.load(Relaxed);
    c.bridge_packets += sh.packets_out.load(Relaxed);
    c.bridge_dropped += sh.dropped_in.load(Relaxed) + sh.dropped_out.load(Relaxed);
}

/// A stream's frames for its feed: queued for the next turn, never blocking the publisher.
struct FeedReader {
    state: Rc<RefCell<State>>,
    key: StreamKey,
    feed: u64,
}

impl Reader for FeedReader {
    fn deliver(&mut self, frame: &Frame) -> ReaderState {
        if frame.bridged {
            // WebRTC viewers get the Opus as published.
            return ReaderState::Ready;
        }
        if let Ok(mut st) = self.state.try_borrow_mut() {
            let mut dropped = false;
            if let Some(f) = st.feeds.get_mut(&self.key).filter(|f| f.id == self.feed) {
                if f.sessions.is_empty() && !frame.config {
                    // No viewer now: only the codec configuration is kept up to date.
                } else if f.frames.len() < FEED_QUEUE {
                    f.frames.push_back(frame.clone());
                } else {
                    dropped = true;
                }
            }
            if dropped {
                st.counters.feed_dropped += 1;
            }
        }
        ReaderState::Ready
    }

    fn poll(&mut self, _now_ms: u64) -> ReaderState {
        ReaderState::Ready
    }

    fn frames_dropped(&self) -> u64 {
        0
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            if let Some(f) = st.feeds.get_mut(&self.key).filter(|f| f.id == self.feed) {
                f.ended = true;
            }
        }
    }
}

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

    /// `http_parse` read a WHEP offer's body: `http_request` takes it from here.
    pub(super) fn whep_set_body(&mut self, token: usize, body: Vec<u8>) {
        if let Some(w) = self.webrtc.as_mut() {
            w.continued.retain(|&t| t != token);
            w.body = Some((token, body));
        }
    }

    /// An offer's head asked `Expect: 100-continue` and its body is not here: `100 Continue`,
    /// once per request (the head is parsed again on every read until the body is whole).
    pub(super) fn whep_continue(&mut self, token: usize) {
        let Some(w) = self.webrtc.as_mut() else {
            return;
        };
        if w.continued.contains(&token) {
            return;
        }
        // Connections that left (or moved on) before their body came go first.
        let conns = &self.conns;
        w.continued.retain(|&t| {
            conns
                .get(t)
                .is_some_and(|c| !c.closed && !c.head.is_empty())
        });
        w.continued.push(token);
        if let Some(conn) = self.conns.get_mut(token) {
            conn.out
                .push(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec().into());
        }
    }

    /// A request on a WHEP path.
    pub(super) fn whep_request(&mut self, token: usize, req: &Request, path: WhepPath) {
        let keep_alive = req.keep_alive();
        let body = self
            .webrtc
            .as_mut()
            .and_then(|w| w.body.take())
            .filter(|(t, _)| *t == token)
            .map(|(_, b)| b);
        let peer = self.conns.get(token).map(|c| c.peer);
        if self.webrtc.is_none() {
            let close = req.has_body;
            return self.http_reply(token, text(404, "WebRTC is off.", !close), !close);
        }
        if path.is_whip() && req.method != "OPTIONS" && req.method != "PATCH" {
            return self.whip_request(token, req, path, body);
        }
        match req.method.as_str() {
            "OPTIONS" => {
                let r = format!(
                    "HTTP/1.1 204 No Content\r\nServer: rtmpd\r\n{}Access-Control-Allow-Methods: \
                     POST, DELETE, PATCH, OPTIONS\r\nAccess-Control-Allow-Headers: Authorization, \
                     Content-Type\r\nAccess-Control-Max-Age: 86400\r\nContent-Length: 0\r\n\
                     Connection: {}\r\n\r\n",
                    cors(),
                    if keep_alive { "keep-alive" } else { "close" }
                );
                self.http_reply(token, r.into_bytes(), keep_alive)
            }
            "PATCH" => {
                let close = req.has_body;
                let r = reply(
                    405,
                    "Allow: POST, DELETE, OPTIONS\r\n",
                    "text/plain; charset=utf-8",
                    NO_TRICKLE,
                    !close,
                );
                self.http_reply(token, r, !close)
            }
            "POST" => {
                let WhepPath::Offer(key) = path else {
                    return self.http_reply(
                        token,
                        text(405, "POST an offer to /{app}/{stream}/whep.", false),
                        false,
                    );
                };
                let Some(body) = body else {
                    return self.http_reply(
                        token,
                        text(400, "The request has no SDP offer.", keep_alive),
                        keep_alive,
                    );
                };
                let sdp_type = req.header("content-type").is_some_and(|t| {
                    t.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .eq_ignore_ascii_case("application/sdp")
                });
                if !sdp_type {
                    warn!("WHEP {peer:?}: offer without Content-Type: application/sdp");
                    return self.http_reply(
                        token,
                        text(
                            415,
                            "The offer must be Content-Type: application/sdp.",
                            keep_alive,
                        ),
                        keep_alive,
                    );
                }
                match self.http_judge_play(token, req, key.clone(), crate::access::Protocol::WebRtc)
                {
                    Some(key) => self.whep_allowed(token, req, key, body),
                    None => {
                        // Refused (answered) or waiting for a hook: keep the offer for the verdict.
                        if let Some(w) = self.webrtc.as_mut() {
                            if self.conns.get(token).is_some_and(|c| c.judging) {
                                // Offers of connections that left while judged go first.
                                let conns = &self.conns;
                                w.parked
                                    .retain(|t, _| conns.get(*t).is_some_and(|c| c.judging));
                                w.parked.insert(token, body);
                            }
                        }
                    }
                }
            }
            "DELETE" => {
                let WhepPath::Session(id) = path else {
                    return self.http_reply(
                        token,
                        text(405, "DELETE a /whep/session/{id}.", keep_alive),
                        keep_alive,
                    );
                };
                let found = self.whep_delete(&id);
                let r = if found {
                    reply(200, "", "text/plain", "", keep_alive)
                } else {
                    text(404, "No such WHEP session.", keep_alive)
                };
                self.http_reply(token, r, keep_alive)
            }
            _ => {
                let close = req.has_body;
                let r = reply(
                    405,
                    "Allow: POST, DELETE, PATCH, OPTIONS\r\n",
                    "text/plain; charset=utf-8",
                    "Method not allowed.",
                    !close,
                );
                self.http_reply(token, r, !close)
            }
        }
    }

    /// The hook allowed a parked WHEP offer.
    pub(super) fn whep_judged(&mut self, token: usize, req: &Request, key: StreamKey, allow: bool) {
        let body = self.webrtc.as_mut().and_then(|w| w.parked.remove(&token));
        if let (true, Some(body)) = (allow, body) {
            if whep_path(req.path()).is_some_and(|p| p.is_whip()) {
                self.whip_allowed(token, req, key, body);
            } else {
                self.whep_allowed(token, req, key, body);
            }
        }
    }

    /// A play the access check allowed: 404 unless live, the limits, then the session.
    fn whep_allowed(&mut self, token: usize, req: &Request, key: StreamKey, body: Vec<u8>) {
        let keep_alive = req.keep_alive();
        let Some((peer, local)) = self
            .conns
            .get(token)
            .map(|c| (c.peer, c.socket.local_addr().ok()))
        else {
            return;
        };
        if !self.core.hub.is_live(&key) {
            debug!("WHEP {peer}: {key} is not live");
            return self.http_reply(
                token,
                text(404, "Stream not found.", keep_alive),
                keep_alive,
            );
        }
        let Some(w) = self.webrtc.as_ref() else {
            return;
        };
        let (state, endpoint, warned_ms) = (w.state.clone(), w.endpoint, w.warned_ms);
        let local_ip = local.map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
        let candidates = candidate_addrs(local_ip, &w.public_ips, w.port);
        let now_ms = self.now_ms;
        let (whep_players, connecting) = {
            let st = state.borrow();
            (st.viewers_of(&key), st.connecting())
        };
        if connecting >= MAX_CONNECTING {
            self.totals.refused += 1;
            // One line per second at most: a flood must not become a log flood.
            if warned_ms == 0 || self.now_ms >= warned_ms + 1000 {
                warn!(
                    "WHEP {peer}: {connecting} sessions are still connecting (at most {MAX_CONNECTING}): offer refused"
                );
                if let Some(w) = self.webrtc.as_mut() {
                    w.warned_ms = self.now_ms;
                }
            }
            let r = reply(
                503,
                "Retry-After: 10\r\n",
                "text/plain; charset=utf-8",
                "503 Service Unavailable: too many WebRTC sessions are connecting.\n",
                false,
            );
            return self.http_reply(token, r, false);
        }
        let limits = &mut self.core.limits;
        let admitted = limits
            .admit_player(self.core.hub.players(&key) + whep_players, now_ms)
            .and_then(|()| limits.admit_connection(peer.ip(), now_ms));
        if let Err(r) = admitted {
            if let Some(line) = r.log {
                warn!("{line}");
            }
            self.totals.refused += 1;
            return self.http_reply(token, super::reply::http_limit(&r.hit), false);
        }
        let offer = String::from_utf8_lossy(&body);
        // The stream's feed: made (and its reader attached) by its first WHEP viewer.
        let cached = self.core.hub.cached_frames(&key);
        let mut st = state.borrow_mut();
        // The stream's feed (one packager, one hub reader per publish) is made by the first
        // offer that is answered; a refused offer leaves nothing behind.
        let live_feed = st.feeds.get(&key).filter(|f| !f.ended).map(|f| f.id);
        let (fresh, codecs) = match live_feed {
            Some(_) => (None, st.feeds[&key].packager.codecs().clone()),
            None => {
                let mut packager = Packager::new();
                for f in &cached {
                    let _ = packager.push(f);
                }
                let codecs = packager.codecs().clone();
                (Some(packager), codecs)
            }
        };
        let accepted =
            WhepSession::accept(&offer, &st.cfg, &candidates, &bridged(&codecs), self.now);
        let id = random_id(22);
        let (session, answer, id) = match (accepted, id) {
            (Ok((s, a)), Some(id)) => (s, a, id),
            (Err(e), _) => {
                drop(st);
                self.core.limits.release_connection(peer.ip());
                let status = match e {
                    WebRtcError::Internal(_) | WebRtcError::NoCandidate => 500,
                    _ => 400,
                };
                warn!("WHEP {peer}: offer for {key} refused: {e}");
                return self.http_reply(
                    token,
                    text(status, &e.to_string(), keep_alive),
                    keep_alive,
                );
            }
            (Ok(_), None) => {
                drop(st);
                self.core.limits.release_connection(peer.ip());
                warn!("WHEP {peer}: no random numbers for a session id");
                return self.http_reply(token, text(500, "No session id.", false), false);
            }
        };
        let Some(port) = self.udp.get_mut(endpoint) else {
            return;
        };
        let mut orphans = Vec::new();
        let feed_id = match (live_feed, fresh) {
            (Some(id), _) => id,
            (None, packager) => {
                let id = st.next_feed;
                st.next_feed += 1;
                let feed = Feed {
                    id,
                    packager: packager.unwrap_or_default(),
                    aac_config: last_aac_config(&cached),
                    bridge: None,
                    frames: VecDeque::new(),
                    ended: false,
                    sessions: Vec::new(),
                    told_b_frames: 0,
                };
                // A feed whose publish ended this turn: its sessions end now, not at the turn's end.
                if let Some(old) = st.feeds.insert(key.clone(), feed) {
                    orphans = old.sessions;
                }
                id
            }
        };
        let fresh = live_feed.is_none();
        for &p in &orphans {
            if let Some(s) = st.sessions.get_mut(&p) {
                s.session.close(self.now, "the publisher left");
            }
            drain(
                &mut st,
                p,
                &mut port.endpoint.peers,
                &self.core.hub,
                &mut self.core.limits,
                self.now,
            );
        }
        let upeer = port.endpoint.peers.add_peer();
        let ufrag = session.local_ufrag().to_string();
        let deadline = session.next_deadline().map(|d| st.ms(d));
        st.by_ufrag.insert(ufrag.clone(), upeer);
        st.by_id.insert(id.clone(), upeer);
        if let Some(f) = st.feeds.get_mut(&key) {
            f.sessions.push(upeer);
        }
        st.counters.sessions_total += 1;
        st.sessions.insert(
            upeer,
            Sess {
                session,
                key: key.clone(),
                id: id.clone(),
                ip: peer.ip(),
                socket: 0,
                candidates,
                feed: feed_id,
                replayed_until: None,
                started: self.now,
            },
        );
        drop(st);
        port.endpoint.peers.set_deadline(upeer, deadline);
        if fresh {
            if let Some(h) = self.core.hub.handle(&key) {
                let reader = FeedReader {
                    state: state.clone(),
                    key: key.clone(),
                    feed: feed_id,
                };
                self.core.hub.add_reader(h, Box::new(reader));
            }
        }
        if let Some(a) = self.conns.get_mut(token).and_then(|c| c.access.as_mut()) {
            a.status = 201;
        }
        info!("{key}: WebRTC player {peer} (session {id})");
        let extra = format!("Location: /whep/session/{id}\r\nETag: \"{ufrag}\"\r\n");
        let r = reply(201, &extra, "application/sdp", &answer, keep_alive);
        self.http_reply(token, r, keep_alive)
    }

    /// Ends the session `id` (a DELETE); false when there is none.
    fn whep_delete(&mut self, id: &str) -> bool {
        let Some(w) = self.webrtc.as_ref() else {
            return false;
        };
        let (state, endpoint) = (w.state.clone(), w.endpoint);
        let mut st = state.borrow_mut();
        let Some(&peer) = st.by_id.get(id) else {
            return false;
        };
        let now = self.now;
        if let Some(s) = st.sessions.get_mut(&peer) {
            s.session.close(now, "the viewer ended it (DELETE)");
        }
        if let Some(port) = self.udp.get_mut(endpoint) {
            drain(
                &mut st,
                peer,
                &mut port.endpoint.peers,
                &self.core.hub,
                &mut self.core.limits,
                now,
            );
            port.endpoint.flush(self.poll.registry(), endpoint);
        }
        true
    }

    /// Once per loop turn: the feeds' frames to their sessions, the end of streams whose
    /// publisher left, and out with what that queued.
    pub(super) fn webrtc_turn(&mut self) {
        self.webrtc_media();
        self.ice_tcp_turn();
    }

    fn webrtc_media(&mut self) {
        let Some(w) = self.webrtc.as_ref() else {
            return;
        };
        let (state, endpoint) = (w.state.clone(), w.endpoint);
        let Some(port) = self.udp.get_mut(endpoint) else {
            return;
        };
        let mut st = state.borrow_mut();
        if st.feeds.is_empty() {
            return;
        }
        let now = self.now;
        let keys: Vec<StreamKey> = st.feeds.keys().cloned().collect();
        let mut touched: Vec<PeerId> = Vec::new();
        for key in keys {
            let Some(mut feed) = st.feeds.remove(&key) else {
                continue;
            };
            if feed.ended || !self.core.hub.is_live(&key) {
                for peer in feed.sessions.clone() {
                    if let Some(s) = st.sessions.get_mut(&peer) {
                        s.session.close(now, "the publisher left");
                    }
                    touched.push(peer);
                }
                feed.sessions.clear();
                feed.frames.clear();
                feed.ended = true;
            }
            let drops_before = feed.packager.reorder_drops();
            let opus_bitrate = st.opus_bitrate;
            while let Some(frame) = feed.frames.pop_front() {
                if is_aac(&frame) {
                    bridge_frame(
                        &mut feed,
                        &key,
                        &frame,
                        opus_bitrate,
                        &self.waker,
                        &mut st.counters,
                    );
                }
                let Some(unit) = feed.packager.push(&frame) else {
                    continue;
                };
                for &peer in &feed.sessions {
                    let Some(s) = st.sessions.get_mut(&peer) else {
                        continue;
                    };
                    if s.feed != feed.id || !s.session.is_connected() {
                        continue;
                    }
                    if s.replayed_until.is_some_and(|t| frame.time <= t) {
                        continue;
                    }
                    s.session.send(&unit, now);
                    touched.push(peer);
                }
            }
            let drops = feed.packager.reorder_drops();
            st.counters.reorder_dropped += drops.pictures - drops_before.pictures;
            if drops.references > drops_before.references && feed.told_b_frames < 2 {
                feed.told_b_frames = 2;
                warn!(
                    "{key}: WebRTC drops reference B-frames (B-pyramid) to keep pictures in order: \
                     WebRTC viewers may see errors until each next keyframe (publish without \
                     B-frames or with b-pyramid off)"
                );
            } else if drops.pictures > drops_before.pictures && feed.told_b_frames < 1 {
                feed.told_b_frames = 1;
                info!(
                    "{key}: the stream has B-frames; WebRTC viewers get the pictures without them \
                     (browsers do not reorder): publish without B-frames for their full frame rate"
                );
            }
            // The bridge's Opus packets, as if published.
            while let Some(BridgeOutput::Packet(p)) = feed.bridge.as_ref().and_then(|b| b.poll()) {
                let unit = MediaUnit {
                    kind: UnitKind::Audio,
                    codec: Codec::Opus,
                    key: true,
                    pts_ms: p.time_ms,
                    data: p.data.into(),
                };
                for &peer in &feed.sessions {
                    let Some(s) = st.sessions.get_mut(&peer) else {
                        continue;
                    };
                    if s.feed == feed.id && s.session.is_connected() {
                        s.session.send(&unit, now);
                        touched.push(peer);
                    }
                }
            }
            // The last viewer left (or the publish ended): the bridge's thread ends with it.
            if feed.sessions.is_empty() || feed.ended {
                if let Some(b) = feed.bridge.take() {
                    bridge_counts(&mut st.counters, &b);
                    debug!("{key}: audio bridge stopped (no WebRTC viewer)");
                }
            }
            // A feed stays with its reader until the publish ends (one reader per publish, however
            // many viewers come and go); without viewers it only follows the codec configuration.
            if !feed.ended {
                st.feeds.insert(key, feed);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for peer in touched {
            drain(
                &mut st,
                peer,
                &mut port.endpoint.peers,
                &self.core.hub,
                &mut self.core.limits,
                now,
            );
        }
        drop(st);
        port.endpoint.flush(self.poll.registry(), endpoint);
    }

    /// WHEP sessions of `key` now (for `/api/streams`).
    pub(super) fn webrtc_viewers(&self, key: &StreamKey) -> usize {
        self.webrtc
            .as_ref()
            .map_or(0, |w| w.state.borrow().viewers_of(key))
    }

    /// `/api/streams`' `webrtc` object of a stream: its open sessions' figures (None when
    /// WebRTC is off).
    pub(super) fn webrtc_stream_stats(&self, key: &StreamKey) -> Option<serde_json::Value> {
        let w = self.webrtc.as_ref()?;
        let c = w.state.borrow().stream_totals(key);
        Some(serde_json::json!({
            "sessions": c.sessions_total,
            "bytes": c.bytes,
            "packets": c.packets,
            "frames": c.frames_sent,
            "nacks": c.nacks,
            "plis": c.plis + c.firs,
            "dropped": c.frames_dropped,
        }))
    }

    /// WHEP sessions now, every stream.
    pub(super) fn webrtc_sessions(&self) -> usize {
        self.webrtc
            .as_ref()
            .map_or(0, |w| w.state.borrow().sessions())
    }

    /// The `/metrics` lines of WHEP (nothing when it is off).
    pub(super) fn webrtc_metrics(&self) -> String {
        use std::fmt::Write;
        let Some(w) = self.webrtc.as_ref() else {
            return String::new();
        };
        let st = w.state.borrow();
        let c = st.totals();
        let mut m = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        metric(
            "rtmpd_webrtc_sessions",
            "gauge",
            "WHEP sessions now.",
            st.sessions() as u64,
        );
        metric(
            "rtmpd_webrtc_sessions_total",
            "counter",
            "WHEP sessions answered since start.",
            c.sessions_total,
        );
        metric(
            "rtmpd_webrtc_bytes_total",
            "counter",
            "RTP and RTCP bytes sent to WHEP viewers.",
            c.bytes,
        );
        metric(
            "rtmpd_webrtc_packets_total",
            "counter",
            "RTP packets sent to WHEP viewers.",
            c.packets,
        );
        metric(
            "rtmpd_webrtc_frames_total",
            "counter",
            "Frames sent to WHEP viewers.",
            c.frames_sent,
        );
        metric(
            "rtmpd_webrtc_nacks_total",
            "counter",
            "NACKs from WHEP viewers.",
            c.nacks,
        );
        metric(
            "rtmpd_webrtc_plis_total",
            "counter",
            "PLIs and FIRs from WHEP viewers.",
            c.plis + c.firs,
        );
        metric(
            "rtmpd_webrtc_keyframe_requests_total",
            "counter",
            "Keyframe requests from WHEP viewers (the next GOP answers).",
            c.keyframe_requests,
        );
        metric(
            "rtmpd_webrtc_dropped_total",
            "counter",
            "Frames not sent to WHEP viewers (before connecting, refused, or a full feed).",
            c.frames_dropped + c.feed_dropped,
        );
        metric(
            "rtmpd_webrtc_reorder_dropped_total",
            "counter",
            "B-frames not sent to WHEP viewers (browsers do not reorder pictures).",
            c.reorder_dropped,
        );
        let mut w = st.whip_counters;
        for p in st.whip.values() {
            w.add(&p.session.stats());
        }
        metric(
            "rtmpd_whip_publishers",
            "gauge",
            "WHIP publishers now.",
            st.whip.len() as u64,
        );
        metric(
            "rtmpd_whip_sessions_total",
            "counter",
            "WHIP offers answered since start.",
            w.sessions_total,
        );
        metric(
            "rtmpd_whip_frames_total",
            "counter",
            "Frames from WHIP publishers into the hub.",
            w.frames,
        );
        metric(
            "rtmpd_whip_bytes_total",
            "counter",
            "RTP payload bytes from WHIP publishers.",
            w.bytes,
        );
        metric(
            "rtmpd_whip_nacks_total",
            "counter",
            "NACKs sent to WHIP publishers.",
            w.nacks,
        );
        metric(
            "rtmpd_whip_keyframe_requests_total",
            "counter",
            "PLIs and FIRs sent to WHIP publishers (the keyframe clock and broken pictures).",
            w.plis,
        );
        metric(
            "rtmpd_whip_dropped_total",
            "counter",
            "WHIP video frames dropped (lost packets until the next keyframe, too large).",
            w.dropped,
        );
        // The running bridges' counters on top of the stopped ones'.
        let mut b = c;
        for f in st.feeds.values() {
            if let Some(br) = &f.bridge {
                bridge_counts(&mut b, br);
            }
        }
        metric(
            "rtmpd_webrtc_bridges_total",
            "counter",
            "Audio bridges (AAC to Opus for WHEP viewers) started.",
            b.bridges_started,
        );
        metric(
            "rtmpd_webrtc_bridge_packets_total",
            "counter",
            "Opus packets the audio bridges made.",
            b.bridge_packets,
        );
        metric(
            "rtmpd_webrtc_bridge_dropped_total",
            "counter",
            "AAC frames and Opus packets the audio bridges' queues dropped.",
            b.bridge_dropped,
        );
        m
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
