//! WHEP's HTTP side: `POST /{app}/{stream}/whep` (the SDP offer: access check, limits, the
//! session made and answered 201 with its `Location`), `DELETE /whep/session/{id}`, PATCH (405:
//! no trickle ICE) and OPTIONS (CORS) for WHEP and WHIP paths alike, the offer's body and its
//! `100 Continue`, and a hook's parked verdict. Other WHIP requests go to `whip.rs`. It does not
//! drive sessions after the answer (`session.rs`) nor feed them media (`feed.rs`).

use std::collections::VecDeque;
use std::net::IpAddr;

use log::{debug, info, warn};

use super::feed::{bridged, last_aac_config, FeedReader};
use super::session::drain;
use super::{cors, random_id, reply, text, whep_path, Feed, Sess, WhepPath};
use crate::http::request::Request;
use crate::media::StreamKey;
use crate::server::Server;
use crate::webrtc::{candidate_addrs, Packager, WebRtcError, WhepSession};

/// Sessions answered whose ICE and DTLS are not done yet, in all: over it an offer gets 503.
/// Each holds an `Rtc` and its DTLS state for up to `SessionConfig::connect_timeout` (10 s), and
/// costs a handshake's CPU; offers that never connect (a flood from many addresses, which the
/// per-address cap does not stop) must not hold more. A thousand viewers joining within the
/// ~100 ms a handshake takes is far above any real join rate.
pub const MAX_CONNECTING: usize = 1000;

/// The reason of a PATCH's 405.
const NO_TRICKLE: &str = "trickle ICE is not supported: send all candidates in the offer";

impl Server {
    /// `http_parse` read a WHEP offer's body: `http_request` takes it from here.
    pub(in crate::server) fn whep_set_body(&mut self, token: usize, body: Vec<u8>) {
        if let Some(w) = self.webrtc.as_mut() {
            w.continued.retain(|&t| t != token);
            w.body = Some((token, body));
        }
    }

    /// An offer's head asked `Expect: 100-continue` and its body is not here: `100 Continue`,
    /// once per request (the head is parsed again on every read until the body is whole).
    pub(in crate::server) fn whep_continue(&mut self, token: usize) {
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
    pub(in crate::server) fn whep_request(&mut self, token: usize, req: &Request, path: WhepPath) {
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
    pub(in crate::server) fn whep_judged(
        &mut self,
        token: usize,
        req: &Request,
        key: StreamKey,
        allow: bool,
    ) {
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
            return self.http_reply(token, crate::server::reply::http_limit(&r.hit), false);
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
                    packetizers: Default::default(),
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
}
