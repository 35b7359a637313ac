//! WHIP ingest in the loop: `POST /{app}/{stream}/whip` (an SDP offer from OBS, FFmpeg or a
//! browser), `DELETE /whip/session/{id}`, and the publisher's datagrams on the WebRTC port, for
//! the sans-IO `crate::webrtc::WhipSession`.
//!
//! - The WHIP sessions live in the WebRTC glue's `State` (`super`: `whip`, `whip_by_id`) and
//!   share its ICE ufrag index, UDP endpoint and ICE-TCP listener: one port for both directions;
//!   `session.rs` hands them their datagrams and timers.
//! - Policy is RTMP's: the offer is judged by `Origin::judge` (action publish, protocol
//!   `webrtc`, the token as `Authorization: Bearer T` or `?token=`; a hook may park it), then
//!   `Origin::publish` (one publisher per key, an idle one taken over, `--max-streams`,
//!   `--max-publishers-per-ip`). A bad offer is a 400 before anything is published; a live
//!   publisher is a 409. The session counts as a connection of its address.
//! - Frames go into the hub with `Origin::frame`, through the one ingest normaliser, like an
//!   SRT publisher's. When the session ends (DELETE, timeouts, a silent publisher, a takeover)
//!   the publish ends with `Origin::unpublish`: players are told, recordings finalised.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use log::{info, warn};

use super::State;
use crate::hub::StreamHandle;
use crate::media::StreamKey;
use crate::origin::{Origin, Proto as OriginProto, PublishRequest, Refused};
use crate::server::udp::{PeerId, UdpPeers};
use crate::webrtc::{IngestStats, Proto, WhipEvent, WhipSession};

/// Origin connection ids of WHIP publishers: above SRT's (`srt::SRT_CONN_BASE`, 2^27 wide), so
/// an action the core lists for one never touches a TCP or SRT connection.
pub const WHIP_CONN_BASE: usize = 1 << 28;

/// One WHIP publisher.
pub struct Pub {
    pub session: WhipSession,
    pub key: StreamKey,
    pub id: String,
    pub ip: IpAddr,
    /// Where its offer came from, then where its media last came from (what `/api/streams`
    /// and the stats line show as the stream's publisher).
    pub addr: SocketAddr,
    /// The socket of the endpoint its datagrams came in on.
    pub socket: usize,
    pub candidates: Vec<SocketAddr>,
    /// Its id in the origin core, and its publish.
    pub conn: usize,
    pub handle: StreamHandle,
    pub started: Instant,
}

/// What a publisher's drain leaves for the hub. The hub's readers include the WHEP feeds, which
/// borrow the shared `State`: so the hub is called only once that borrow is released
/// (`apply_hub_ops`), never from inside a drain.
pub enum HubOp {
    Frame(StreamHandle, usize, crate::media::Frame),
    Unpublish(StreamHandle, usize),
}

/// Hands the frames and ends of publishes the drains queued to the hub, in order. Call with
/// no borrow of `state` held.
pub fn apply_hub_ops(state: &std::cell::RefCell<State>, core: &mut Origin, now_ms: u64) {
    let ops = std::mem::take(&mut state.borrow_mut().hub_ops);
    for op in ops {
        match op {
            HubOp::Frame(h, conn, f) => core.frame(h, conn, f, now_ms),
            HubOp::Unpublish(h, conn) => core.unpublish(h, conn),
        }
    }
}

/// Counters of ended WHIP publishes, for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct WhipCounters {
    pub sessions_total: u64,
    pub frames: u64,
    pub bytes: u64,
    pub nacks: u64,
    pub plis: u64,
    pub dropped: u64,
}

impl WhipCounters {
    pub fn add(&mut self, s: &IngestStats) {
        self.frames += s.depack.video_frames + s.depack.audio_frames;
        self.bytes += s.bytes;
        self.nacks += s.nacks;
        self.plis += s.plis + s.firs;
        self.dropped += s.depack.video_dropped + s.frames_dropped;
    }
}

/// One datagram (or ICE-TCP frame) for the publisher `peer`, then its output.
#[allow(clippy::too_many_arguments)]
pub fn datagram(
    st: &mut State,
    peer: PeerId,
    proto: Proto,
    (from, local): (SocketAddr, SocketAddr),
    data: &[u8],
    peers: &mut UdpPeers,
    core: &mut Origin,
    now: Instant,
) {
    let Some(p) = st.whip.get_mut(&peer) else {
        return;
    };
    p.addr = from;
    p.session.handle_datagram(now, proto, from, local, data);
    drain(st, peer, peers, core, now);
}

/// The publisher's timer.
pub fn timeout(
    st: &mut State,
    peer: PeerId,
    peers: &mut UdpPeers,
    core: &mut Origin,
    now: Instant,
) {
    if let Some(p) = st.whip.get_mut(&peer) {
        p.session.handle_timeout(now);
    }
    drain(st, peer, peers, core, now);
}

/// Everything a publisher's session has after an input: datagrams out, frames and its end
/// (unpublish) queued for the hub (`apply_hub_ops`), its next deadline.
pub fn drain(st: &mut State, peer: PeerId, peers: &mut UdpPeers, core: &mut Origin, now: Instant) {
    let Some(p) = st.whip.get_mut(&peer) else {
        return;
    };
    if !p.session.is_closed() && core.hub.publisher_of(p.handle) != Some(p.conn) {
        info!(
            "{}: WHIP publisher {} was taken over; closing it",
            p.key, p.id
        );
        p.session.close(now, "taken over by another publisher");
    }
    while let Some(f) = p.session.poll_frame() {
        st.hub_ops.push(HubOp::Frame(p.handle, p.conn, f));
    }
    let mut closed = None;
    let mut tcp = Vec::new();
    loop {
        while let Some(t) = p.session.poll_transmit() {
            if t.proto == Proto::Tcp {
                tcp.push((t.destination, t.contents));
                continue;
            }
            let data = Bytes::from(t.contents);
            if p.session.is_closed() {
                peers.reply(p.socket, t.destination, data);
            } else {
                peers.send(peer, p.socket, t.destination, data);
            }
        }
        match p.session.poll_event() {
            None => break,
            Some(WhipEvent::Connected) => info!(
                "{}: WHIP publisher {} ({}) connected in {} ms",
                p.key,
                p.id,
                p.ip,
                now.saturating_duration_since(p.started).as_millis()
            ),
            Some(WhipEvent::Closed { reason }) => closed = Some(reason),
        }
    }
    let next = p.session.next_deadline();
    for (to, packet) in tcp {
        st.tcp_out_push(to, packet);
    }
    if let Some(reason) = closed {
        let Some(p) = st.whip.remove(&peer) else {
            return;
        };
        st.forget_ufrag(p.session.local_ufrag());
        st.whip_by_id.remove(&p.id);
        let s = p.session.stats();
        st.whip_counters.add(&s);
        peers.remove_peer(peer);
        core.limits.release_connection(p.ip);
        st.hub_ops.push(HubOp::Unpublish(p.handle, p.conn));
        info!(
            "{}: WHIP publisher {} from {} left after {} s: {reason}; {} video and {} audio \
             frames, {} bytes; {} video frames dropped ({} gaps, {} too large); NACKs {}, PLIs {}",
            p.key,
            p.id,
            p.ip,
            now.saturating_duration_since(p.started).as_secs(),
            s.depack.video_frames,
            s.depack.audio_frames,
            s.bytes,
            s.depack.video_dropped,
            s.depack.gaps,
            s.depack.too_large,
            s.nacks,
            s.plis + s.firs
        );
        return;
    }
    let at = next.map(|d| st.ms(d));
    peers.set_deadline(peer, at);
}

/// Why an offer could not be published, as the HTTP status and body.
pub fn refused_status(why: &Refused) -> (u16, String) {
    match why {
        Refused::BadName(e) => (400, format!("{e}.\n")),
        Refused::Busy => (409, "The stream already has a publisher.\n".into()),
        Refused::Limit(hit) => (503, format!("{hit}.\n")),
    }
}

/// Publishes `key` for the session `peer` will be: `Origin::publish` with WHIP's connection id.
pub fn publish(
    core: &mut Origin,
    conn: usize,
    peer: SocketAddr,
    key: &StreamKey,
    now_ms: u64,
) -> Result<crate::origin::Published, Refused> {
    let req = PublishRequest {
        conn,
        peer: Some(peer),
        proto: OriginProto::Whip,
        app: &key.app,
        name: &key.stream,
    };
    let ok = core.publish(&req, now_ms, std::time::SystemTime::now());
    if let Ok(ok) = &ok {
        if let Some(old) = ok.took_over_from {
            warn!("{key}: previous publisher (connection {old}) taken over by WHIP from {peer}");
        }
    }
    ok
}

use super::{random_id, reply, text, WhepPath};
use crate::http::request::Request;
use crate::server::glue::Effect;
use crate::server::Server;
use crate::webrtc::{candidate_addrs, WebRtcError};

impl Server {
    /// A request on a WHIP path (OPTIONS and PATCH are answered as WHEP's).
    pub(super) fn whip_request(
        &mut self,
        token: usize,
        req: &Request,
        path: WhepPath,
        body: Option<Vec<u8>>,
    ) {
        let keep_alive = req.keep_alive();
        let peer = self.conns.get(token).map(|c| c.peer);
        match (req.method.as_str(), path) {
            ("POST", WhepPath::WhipOffer(key)) => {
                let Some(body) = body else {
                    return self.http_reply(
                        token,
                        text(400, "The request has no SDP offer.", keep_alive),
                        keep_alive,
                    );
                };
                let sdp = req.header("content-type").is_some_and(|t| {
                    let t = t.split(';').next().unwrap_or("").trim();
                    t.eq_ignore_ascii_case("application/sdp")
                });
                if !sdp {
                    warn!("WHIP {peer:?}: offer without Content-Type: application/sdp");
                    let t = text(
                        415,
                        "The offer must be Content-Type: application/sdp.",
                        keep_alive,
                    );
                    return self.http_reply(token, t, keep_alive);
                }
                let action = crate::access::Action::Publish;
                let proto = crate::access::Protocol::WebRtc;
                match self.http_judge(token, req, key, proto, action) {
                    Some(key) => self.whip_allowed(token, req, key, body),
                    None => {
                        // Refused (answered) or waiting for a hook: the offer waits for it.
                        if self.conns.get(token).is_some_and(|c| c.judging) {
                            let conns = &self.conns;
                            if let Some(w) = self.webrtc.as_mut() {
                                w.parked
                                    .retain(|t, _| conns.get(*t).is_some_and(|c| c.judging));
                                w.parked.insert(token, body);
                            }
                        }
                    }
                }
            }
            ("DELETE", WhepPath::WhipSession(id)) => {
                let r = if self.whip_delete(&id) {
                    reply(200, "", "text/plain", "", keep_alive)
                } else {
                    text(404, "No such WHIP session.", keep_alive)
                };
                self.http_reply(token, r, keep_alive)
            }
            (_, WhepPath::WhipOffer(_)) => {
                let r = text(405, "POST an SDP offer to /{app}/{stream}/whip.", false);
                self.http_reply(token, r, false)
            }
            _ => {
                let r = text(405, "DELETE a /whip/session/{id}.", false);
                self.http_reply(token, r, false)
            }
        }
    }

    /// A publish the access check allowed: the offer answered, then the publish (409 when the
    /// stream has a live publisher), then the session.
    pub(super) fn whip_allowed(
        &mut self,
        token: usize,
        req: &Request,
        key: StreamKey,
        body: Vec<u8>,
    ) {
        let keep_alive = req.keep_alive();
        let Some((peer, local)) = self
            .conns
            .get(token)
            .map(|c| (c.peer, c.socket.local_addr().ok()))
        else {
            return;
        };
        let Some(w) = self.webrtc.as_ref() else {
            return;
        };
        let (state, endpoint) = (w.state.clone(), w.endpoint);
        let local_ip = local.map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
        let candidates = candidate_addrs(local_ip, &w.public_ips, w.port);
        if let Err(r) = self.core.limits.admit_connection(peer.ip(), self.now_ms) {
            if let Some(line) = r.log {
                warn!("{line}");
            }
            self.totals.refused += 1;
            return self.http_reply(token, crate::server::reply::http_limit(&r.hit), false);
        }
        let offer = String::from_utf8_lossy(&body);
        let accepted = {
            let st = state.borrow();
            WhipSession::accept(&offer, &st.cfg, &candidates, self.now)
        };
        let (session, answer, id) = match (accepted, random_id(22)) {
            (Ok((s, a)), Some(id)) => (s, a, id),
            (Err(e), _) => {
                self.core.limits.release_connection(peer.ip());
                let status = match e {
                    WebRtcError::Internal(_) | WebRtcError::NoCandidate => 500,
                    _ => 400,
                };
                warn!("WHIP {peer}: offer for {key} refused: {e}");
                return self.http_reply(
                    token,
                    text(status, &e.to_string(), keep_alive),
                    keep_alive,
                );
            }
            (Ok(_), None) => {
                self.core.limits.release_connection(peer.ip());
                warn!("WHIP {peer}: no random numbers for a session id");
                return self.http_reply(token, text(500, "No session id.", false), false);
            }
        };
        let conn = {
            let mut st = state.borrow_mut();
            let n = st.next_whip_conn;
            st.next_whip_conn = (n + 1) % (1 << 27);
            WHIP_CONN_BASE + n
        };
        let ok = match publish(&mut self.core, conn, peer, &key, self.now_ms) {
            Ok(ok) => ok,
            Err(why) => {
                self.core.limits.release_connection(peer.ip());
                self.totals.refused += 1;
                warn!("WHIP {peer}: publish {key} refused: {why}");
                let (status, body) = refused_status(&why);
                return self.http_reply(token, text(status, &body, keep_alive), keep_alive);
            }
        };
        let Some(port) = self.udp.get_mut(endpoint) else {
            return;
        };
        let mut st = state.borrow_mut();
        // A WHIP publisher taken over ends now (an RTMP one is closed by the effect below).
        if let Some(old) = ok.took_over_from {
            let olds: Vec<PeerId> = st
                .whip
                .iter()
                .filter(|(_, p)| p.conn == old)
                .map(|(k, _)| *k)
                .collect();
            for p in olds {
                if let Some(x) = st.whip.get_mut(&p) {
                    x.session.close(self.now, "taken over by another publisher");
                }
                drain(
                    &mut st,
                    p,
                    &mut port.endpoint.peers,
                    &mut self.core,
                    self.now,
                );
            }
        }
        let upeer = port.endpoint.peers.add_peer();
        let ufrag = session.local_ufrag().to_string();
        let deadline = session.next_deadline().map(|d| st.ms(d));
        let (video, audio) = (session.has_video(), session.has_audio());
        st.by_ufrag.insert(ufrag.clone(), upeer);
        st.whip_by_id.insert(id.clone(), upeer);
        st.whip_counters.sessions_total += 1;
        st.whip.insert(
            upeer,
            Pub {
                session,
                key: ok.key.clone(),
                id: id.clone(),
                ip: peer.ip(),
                addr: peer,
                socket: 0,
                candidates,
                conn,
                handle: ok.handle,
                started: self.now,
            },
        );
        drop(st);
        apply_hub_ops(&state, &mut self.core, self.now_ms);
        port.endpoint.peers.set_deadline(upeer, deadline);
        port.endpoint.flush(self.poll.registry(), endpoint);
        if let Some(a) = self.conns.get_mut(token).and_then(|c| c.access.as_mut()) {
            a.status = 201;
        }
        info!("{key}: WHIP publish from {peer} (session {id}; video {video}, audio {audio})");
        let mut fx = Vec::new();
        if let Some(old) = ok.took_over_from.filter(|o| *o < WHIP_CONN_BASE) {
            fx.push(Effect::TakenOver {
                old,
                key: ok.key,
                by: peer,
            });
        }
        fx.extend(ok.waiting_viewers.into_iter().map(Effect::PublisherArrived));
        self.apply_effects(&mut fx);
        let extra = format!("Location: /whip/session/{id}\r\nETag: \"{ufrag}\"\r\n");
        let r = reply(201, &extra, "application/sdp", &answer, keep_alive);
        self.http_reply(token, r, keep_alive)
    }

    /// Ends the WHIP session `id` (a DELETE) and its publish; false when there is none.
    fn whip_delete(&mut self, id: &str) -> bool {
        let Some(w) = self.webrtc.as_ref() else {
            return false;
        };
        let (state, endpoint) = (w.state.clone(), w.endpoint);
        let mut st = state.borrow_mut();
        let Some(&peer) = st.whip_by_id.get(id) else {
            return false;
        };
        if let Some(p) = st.whip.get_mut(&peer) {
            p.session.close(self.now, "the publisher ended it (DELETE)");
        }
        if let Some(port) = self.udp.get_mut(endpoint) {
            drain(
                &mut st,
                peer,
                &mut port.endpoint.peers,
                &mut self.core,
                self.now,
            );
            drop(st);
            apply_hub_ops(&state, &mut self.core, self.now_ms);
            port.endpoint.flush(self.poll.registry(), endpoint);
        }
        true
    }
}
