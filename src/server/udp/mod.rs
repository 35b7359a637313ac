//! The UDP endpoint: one socket per bound address (an IPv4 and an IPv6 one when bound to
//! both), datagrams in routed to the sans-IO peers of one protocol, datagrams out from a bounded
//! queue per peer. It owns sockets and queues only; what a datagram means is the protocol's
//! (`UdpProtocol`: WebRTC's sessions, later SRT's).
//!
//! In: `UdpEndpoint::read` takes a batch per system call (`recvmmsg` on Linux, `recv_from`
//! elsewhere) and `UdpPeers::dispatch` routes each datagram: by its 5-tuple (the socket it came
//! in on and its source address, `UdpPeers::bind`), else by a key in its bytes that the protocol
//! finds (`UdpProtocol::route`: a STUN username fragment, an SRT socket id), else to
//! `UdpProtocol::unknown`, which may answer statelessly (`UdpPeers::reply`: a STUN binding
//! response) or drop it; every kind is counted. A datagram larger than `SLOT` is dropped and
//! counted, never read in part.
//!
//! Out: whole datagrams, `UdpPeers::send` into the peer's queue (`PEER_QUEUE` datagrams at most:
//! over it the datagram is dropped and counted, the loop never blocks on a peer), sent by
//! `UdpEndpoint::flush` in batches (`sendmmsg` on Linux), peers taking turns. On WouldBlock the
//! rest stays queued and the socket asks for WRITABLE until it drains.
//!
//! Timers: a protocol sets a peer's next deadline with `UdpPeers::set_deadline`; the loop puts it
//! in its timer heap keyed by (`Source::Peer`, the peer's generation) and calls
//! `UdpProtocol::timeout` when it is due (`Server::udp_peer_timeout`).
//!
//! This file holds what a protocol sees (`Datagram`, `UdpProtocol`, `UdpCx`, the limits) and the
//! loop's side (`UdpPort`, `Server::open_udp`, the socket and peer-timer drivers). The parts:
//! `endpoint.rs` (the sockets, `recvmmsg`/`sendmmsg`), `peers.rs` (routing, per-peer bounded
//! queues, deadlines; no sockets), `metrics.rs` (the counters and their `/metrics` lines).

use std::io;
use std::net::SocketAddr;

use log::{info, warn};

mod endpoint;
mod metrics;
mod peers;
#[cfg(test)]
mod tests;

pub use endpoint::UdpEndpoint;
pub use metrics::{metrics, UdpCounters};
pub use peers::{Outgoing, UdpPeers};

use super::source::{Source, UDP_SOCKETS};
use super::timers::{TimerKey, TimerKind};
use super::Server;
use crate::origin::Origin;

/// A peer of one endpoint (its key in `UdpPeers`).
pub type PeerId = usize;

/// Datagrams read per system call.
pub const BATCH: usize = 32;
/// Bytes read per datagram: more than any path MTU; a larger datagram is dropped.
pub const SLOT: usize = 2048;
/// Batches read per socket per wakeup before other sources get their turn.
const BATCHES_PER_WAKEUP: usize = 8;
/// Datagrams one peer may have queued; the next one is dropped (and counted).
pub const PEER_QUEUE: usize = 256;
/// Stateless replies (to senders that are no peer) queued at most.
pub const REPLY_QUEUE: usize = 256;
/// 5-tuples one peer may be reached by (ICE tries a few candidate pairs); the oldest goes.
const ROUTES_PER_PEER: usize = 8;
/// Endpoints a process may have (peer timer tokens carry the endpoint).
pub const MAX_ENDPOINTS: usize = 4;

/// One datagram in: the socket it came in on (an index into the endpoint's sockets), its
/// sender, its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub socket: usize,
    pub from: SocketAddr,
    pub data: &'a [u8],
}

/// What a protocol on a UDP endpoint does with datagrams and timers (sans-IO: it never sees a
/// socket; it answers through `UdpPeers`). Its session events go to the origin core here, and
/// what the core asks for comes back to the loop as `origin::Action`s.
pub trait UdpProtocol {
    /// The peer a datagram from an unbound 5-tuple belongs to, by a key in its bytes (a STUN
    /// username fragment, an SRT socket id); `None` if it has none or names no peer. A protocol
    /// that trusts the new path calls `UdpPeers::bind` when it handles the datagram.
    fn route(&mut self, d: &Datagram) -> Option<PeerId>;
    /// A datagram for `peer`.
    fn receive(&mut self, peer: PeerId, d: &Datagram, cx: &mut UdpCx);
    /// A datagram no peer claims: answer it with `UdpPeers::reply`, or ignore it (it is counted).
    fn unknown(&mut self, d: &Datagram, cx: &mut UdpCx);
    /// The deadline `peer` set is due.
    fn timeout(&mut self, peer: PeerId, cx: &mut UdpCx);
    /// The protocol's own `/metrics` lines.
    fn metrics(&self, _out: &mut String) {}
    /// The address of a connection of this protocol by its id in the origin core.
    fn peer_of_conn(&self, _conn: usize) -> Option<SocketAddr> {
        None
    }
    /// Its connections of one stream, for `/api/streams`.
    fn stream_json(&self, _key: &crate::media::StreamKey) -> Vec<serde_json::Value> {
        Vec::new()
    }
    /// Its players now, of one stream or (`None`) of every stream.
    fn players(&self, _key: Option<&crate::media::StreamKey>) -> usize {
        0
    }
    /// Its publishers now.
    fn publishers(&self) -> usize {
        0
    }
    /// A hook's verdict on the request of origin connection `conn`; false when `conn` is not
    /// one of this protocol's.
    fn judged(&mut self, _conn: usize, _verdict: &crate::origin::Judged, _cx: &mut UdpCx) -> bool {
        false
    }
}

/// What a protocol's call may use: the peers and their queues, the origin core, the loop's clock.
pub struct UdpCx<'a> {
    pub peers: &'a mut UdpPeers,
    pub core: &'a mut Origin,
    /// Milliseconds on the loop's clock (`Server::now_ms`).
    pub now_ms: u64,
}

/// A UDP endpoint and the protocol it serves, as the loop holds them.
pub struct UdpPort {
    /// The protocol's name in logs and metrics (`webrtc`, `srt`).
    pub label: String,
    pub endpoint: UdpEndpoint,
    pub protocol: Box<dyn UdpProtocol>,
}

/// The `Source::Peer` index of `peer` of endpoint `endpoint`.
pub fn peer_index(endpoint: usize, peer: PeerId) -> usize {
    peer * MAX_ENDPOINTS + endpoint
}

/// Whether a timer set for `generation` of the peer `index` (`peer_index`) is still current.
pub fn peer_live(ports: &[UdpPort], index: usize, generation: u64) -> bool {
    let (endpoint, peer) = (index % MAX_ENDPOINTS, index / MAX_ENDPOINTS);
    ports
        .get(endpoint)
        .and_then(|p| p.endpoint.peers.generation(peer))
        == Some(generation)
}

impl Server {
    /// The address of a connection of the origin core: a TCP one's, or a UDP protocol's.
    pub(super) fn peer_of(&self, conn: usize) -> Option<SocketAddr> {
        self.conns
            .get(conn)
            .map(|c| c.peer)
            .or_else(|| self.udp.iter().find_map(|p| p.protocol.peer_of_conn(conn)))
    }

    /// Opens a UDP endpoint on `addrs` for `protocol` ("`label` listening on udp ADDR" for each
    /// socket) and registers it with the loop. Its index names it in `Source::Udp` and peer
    /// timers.
    pub fn open_udp(
        &mut self,
        label: &str,
        addrs: &[SocketAddr],
        protocol: Box<dyn UdpProtocol>,
    ) -> Result<usize, super::ServerError> {
        let index = self.udp.len();
        if index >= MAX_ENDPOINTS {
            return Err(super::ServerError(format!(
                "{label}: at most {MAX_ENDPOINTS} UDP endpoints"
            )));
        }
        let fail = |e: io::Error| super::ServerError(format!("cannot listen for {label}: {e}"));
        let mut endpoint = UdpEndpoint::bind(addrs).map_err(fail)?;
        endpoint
            .register(self.poll.registry(), index)
            .map_err(fail)?;
        for a in endpoint.local_addrs() {
            info!("{label} listening on udp {a}");
        }
        self.udp.push(UdpPort {
            label: label.to_string(),
            endpoint,
            protocol,
        });
        Ok(index)
    }

    /// The UDP socket driver: read and route (within the budget), then send what the protocol
    /// queued, then carry out what the core asked for.
    pub(super) fn udp_ready(&mut self, index: usize, ready: super::source::Ready) {
        let (e, s) = (index / UDP_SOCKETS, index % UDP_SOCKETS);
        let Some(port) = self.udp.get_mut(e) else {
            return;
        };
        if ready.readable {
            let proto = &mut *port.protocol;
            match port.endpoint.read(s, proto, &mut self.core, self.now_ms) {
                Ok(true) => self.pending_udp.push(index),
                Ok(false) => {}
                Err(err) => warn!("udp read: {err}"),
            }
        }
        port.endpoint.flush(self.poll.registry(), e);
        self.apply_actions();
    }

    /// A hook's verdict for a connection of a UDP protocol (an SRT caller waiting in its
    /// handshake): the protocol that owns `conn` answers it, then what it queued goes out.
    pub(super) fn udp_judged(&mut self, conn: usize, verdict: &crate::origin::Judged) {
        for (e, port) in self.udp.iter_mut().enumerate() {
            let mut cx = UdpCx {
                peers: &mut port.endpoint.peers,
                core: &mut self.core,
                now_ms: self.now_ms,
            };
            if port.protocol.judged(conn, verdict, &mut cx) {
                port.endpoint.flush(self.poll.registry(), e);
                break;
            }
        }
        self.apply_actions();
    }

    /// A peer's deadline is due: the protocol's timeout, then what it queued goes out.
    pub(super) fn udp_peer_timeout(&mut self, index: usize) {
        let (e, peer) = (index % MAX_ENDPOINTS, index / MAX_ENDPOINTS);
        let Some(port) = self.udp.get_mut(e) else {
            return;
        };
        if !port.endpoint.peers.timer_fired(peer, self.now_ms) {
            return;
        }
        let mut cx = UdpCx {
            peers: &mut port.endpoint.peers,
            core: &mut self.core,
            now_ms: self.now_ms,
        };
        port.protocol.timeout(peer, &mut cx);
        port.endpoint.flush(self.poll.registry(), e);
        self.apply_actions();
    }

    /// Peer deadlines set since the last turn, into the heap (an earlier one than the pending
    /// entry adds one; a later one waits for the pending entry, which re-asks the protocol).
    pub(super) fn arm_udp_peers(&mut self) {
        let timers = &mut self.timers;
        for (e, port) in self.udp.iter_mut().enumerate() {
            port.endpoint.peers.deadlines_to_arm(|id, at, generation| {
                let key = TimerKey {
                    token: Source::Peer(peer_index(e, id)).token().0,
                    generation,
                    kind: TimerKind::Machine,
                };
                timers.schedule(at, key);
            });
        }
    }
}
