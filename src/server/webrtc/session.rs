//! The WebRTC port's sessions driven: the endpoint's `UdpProtocol` (`WhepUdp`) routes each
//! datagram by peer or STUN ufrag to its WHEP session (handled here) or WHIP publisher
//! (`whip.rs`), and runs their timers; ICE-TCP's packets (`server::ice_tcp`) come in through
//! `tcp_datagram` and the lookups beside it. After every input `drain` takes a WHEP session's
//! output: datagrams to its peer queue, ICE-TCP packets, events (the cached GOP on connecting,
//! the end of a closed session), its next deadline. It does not answer HTTP (`whep.rs`) nor send
//! live media (`feed.rs`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use log::{debug, info};

use super::{add_stats, whip, State, TCP_OUT_MAX};
use crate::access::limits::Limits;
use crate::hub::Hub;
use crate::server::udp::{Datagram, PeerId, UdpCx, UdpPeers, UdpProtocol};
use crate::webrtc::{stun_username_fragment, Packager, Packetizers, Proto, WebRtcEvent};

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
        whip::datagram(st, peer, Proto::Tcp, at, packet, peers, core, now);
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
pub(super) struct WhepUdp(pub(super) Rc<RefCell<State>>);

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
            whip::datagram(
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
            return whip::apply_hub_ops(&self.0, cx.core, cx.now_ms);
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

    fn peer_of_conn(&self, conn: usize) -> Option<SocketAddr> {
        let st = self.0.borrow();
        st.whip.values().find(|p| p.conn == conn).map(|p| p.addr)
    }

    fn publishers(&self) -> usize {
        self.0.borrow().whip.len()
    }

    fn timeout(&mut self, peer: PeerId, cx: &mut UdpCx) {
        let mut st = self.0.borrow_mut();
        let now = st.now(cx.now_ms);
        if st.whip.contains_key(&peer) {
            whip::timeout(&mut st, peer, cx.peers, cx.core, now);
            drop(st);
            return whip::apply_hub_ops(&self.0, cx.core, cx.now_ms);
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
pub(super) fn drain(
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
            let mut rtp = Packetizers::new();
            let mut last = None;
            for f in hub.cached_frames(&s.key) {
                if let Some(u) = p.push(&f) {
                    s.session.send_rtp(&rtp.packetize(u), now);
                }
                last = Some(last.map_or(f.time, |l: u64| l.max(f.time)));
            }
            s.session.flush_next_turn(now);
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
