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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use log::{info, warn};
use mio::net::UdpSocket;
use mio::{Interest, Registry};
use slab::Slab;

use super::source::{udp_index, Source, UDP_SOCKETS};
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

/// An endpoint's counters since start (for `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    /// Datagrams out dropped because their peer's queue (or the reply queue) was full.
    pub dropped_out: u64,
    /// Datagrams in that no peer claimed (answered or not).
    pub unknown: u64,
    /// Datagrams in larger than `SLOT`, dropped.
    pub truncated: u64,
    /// Receive or send errors (a datagram each).
    pub errors: u64,
    /// System calls that read or sent a batch.
    pub recv_calls: u64,
    pub send_calls: u64,
}

/// One datagram out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub socket: usize,
    pub to: SocketAddr,
    pub data: Bytes,
}

struct Peer {
    generation: u64,
    queue: VecDeque<Outgoing>,
    routes: Vec<(usize, SocketAddr)>,
    /// Listed in `UdpPeers::active`.
    active: bool,
    /// What the protocol set, and what the loop's heap has (`Server::arm_udp_peers`).
    deadline: Option<u64>,
    armed: Option<u64>,
}

/// The peers of one endpoint: routes, output queues, deadlines, counters. No sockets, so it is
/// tested in memory.
pub struct UdpPeers {
    peers: Slab<Peer>,
    routes: HashMap<(usize, SocketAddr), PeerId>,
    /// Peers with queued output, each once, in the order they take turns.
    active: VecDeque<PeerId>,
    replies: VecDeque<Outgoing>,
    /// Peers whose deadline was set since the loop last looked.
    deadline_set: Vec<PeerId>,
    next_generation: u64,
    pub counters: UdpCounters,
}

impl Default for UdpPeers {
    fn default() -> Self {
        UdpPeers {
            peers: Slab::new(),
            routes: HashMap::new(),
            active: VecDeque::new(),
            replies: VecDeque::new(),
            deadline_set: Vec::new(),
            next_generation: 1,
            counters: UdpCounters::default(),
        }
    }
}

impl UdpPeers {
    /// A new peer, with no route yet.
    pub fn add_peer(&mut self) -> PeerId {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.peers.insert(Peer {
            generation,
            queue: VecDeque::new(),
            routes: Vec::new(),
            active: false,
            deadline: None,
            armed: None,
        })
    }

    /// Forgets a peer: its routes, its queued output and its timers (they are skipped when due).
    pub fn remove_peer(&mut self, peer: PeerId) {
        if !self.peers.contains(peer) {
            return;
        }
        let p = self.peers.remove(peer);
        for r in p.routes {
            if self.routes.get(&r) == Some(&peer) {
                self.routes.remove(&r);
            }
        }
        if p.active {
            self.active.retain(|&a| a != peer);
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The generation of `peer` (its timers carry it), if it exists.
    pub fn generation(&self, peer: PeerId) -> Option<u64> {
        self.peers.get(peer).map(|p| p.generation)
    }

    /// Datagrams from `from` on `socket` go to `peer` from now on (a 5-tuple belongs to one peer:
    /// a later bind takes it over). A peer keeps its last `ROUTES_PER_PEER` routes.
    pub fn bind(&mut self, peer: PeerId, socket: usize, from: SocketAddr) {
        if !self.peers.contains(peer) {
            return;
        }
        let route = (socket, from);
        if let Some(old) = self.routes.insert(route, peer) {
            if old != peer {
                if let Some(o) = self.peers.get_mut(old) {
                    o.routes.retain(|r| *r != route);
                }
            }
        }
        let p = match self.peers.get_mut(peer) {
            Some(p) => p,
            None => return,
        };
        if p.routes.contains(&route) {
            return;
        }
        p.routes.push(route);
        if p.routes.len() > ROUTES_PER_PEER {
            let gone = p.routes.remove(0);
            if self.routes.get(&gone) == Some(&peer) {
                self.routes.remove(&gone);
            }
        }
    }

    /// The peer a 5-tuple is bound to.
    pub fn peer_of(&self, socket: usize, from: SocketAddr) -> Option<PeerId> {
        self.routes.get(&(socket, from)).copied()
    }

    /// Queues a datagram for `peer` to `to` through `socket`. False (and counted) when the peer
    /// is gone or its queue is full: the datagram is dropped, as the network would.
    pub fn send(&mut self, peer: PeerId, socket: usize, to: SocketAddr, data: Bytes) -> bool {
        let Some(p) = self.peers.get_mut(peer) else {
            self.counters.dropped_out += 1;
            return false;
        };
        if p.queue.len() >= PEER_QUEUE {
            self.counters.dropped_out += 1;
            return false;
        }
        p.queue.push_back(Outgoing { socket, to, data });
        if !p.active {
            p.active = true;
            self.active.push_back(peer);
        }
        true
    }

    /// Queues a stateless answer to a sender that is no peer (bounded; dropped and counted).
    pub fn reply(&mut self, socket: usize, to: SocketAddr, data: Bytes) -> bool {
        if self.replies.len() >= REPLY_QUEUE {
            self.counters.dropped_out += 1;
            return false;
        }
        self.replies.push_back(Outgoing { socket, to, data });
        true
    }

    /// Datagrams queued for `peer`.
    pub fn queued(&self, peer: PeerId) -> usize {
        self.peers.get(peer).map_or(0, |p| p.queue.len())
    }

    /// Datagrams queued in all (replies included).
    pub fn queued_total(&self) -> usize {
        self.replies.len() + self.peers.iter().map(|(_, p)| p.queue.len()).sum::<usize>()
    }

    /// Sets (or clears) `peer`'s next deadline, in ms on the loop's clock.
    pub fn set_deadline(&mut self, peer: PeerId, at_ms: Option<u64>) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.deadline = at_ms;
            if at_ms.is_some() {
                self.deadline_set.push(peer);
            }
        }
    }

    /// The deadlines set since the last call that need a timer entry, as `arm(peer, at_ms,
    /// generation)`: a deadline earlier than the peer's pending entry (or with none pending). A
    /// later one waits for the pending entry, which `timer_fired` finds early and lists again.
    pub fn deadlines_to_arm(&mut self, mut arm: impl FnMut(PeerId, u64, u64)) {
        for id in std::mem::take(&mut self.deadline_set) {
            let Some(p) = self.peers.get_mut(id) else {
                continue;
            };
            let Some(at) = p.deadline else {
                continue;
            };
            if p.armed.is_some_and(|a| a <= at) {
                continue;
            }
            p.armed = Some(at);
            arm(id, at, p.generation);
        }
    }

    /// `peer`'s timer entry came due at `now_ms`: true when its deadline is due (the protocol's
    /// `timeout` is called, the deadline cleared); false when there is none or it moved later
    /// (then it is listed for `deadlines_to_arm` again).
    pub fn timer_fired(&mut self, peer: PeerId, now_ms: u64) -> bool {
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        p.armed = None;
        match p.deadline {
            Some(at) if at <= now_ms => {
                p.deadline = None;
                true
            }
            Some(_) => {
                self.deadline_set.push(peer);
                false
            }
            None => false,
        }
    }

    /// Routes one datagram in and hands it to the protocol.
    pub fn dispatch(
        &mut self,
        d: &Datagram,
        proto: &mut dyn UdpProtocol,
        core: &mut Origin,
        now_ms: u64,
    ) {
        self.counters.datagrams_in += 1;
        self.counters.bytes_in += d.data.len() as u64;
        let peer = match self.peer_of(d.socket, d.from) {
            Some(p) => Some(p),
            None => proto.route(d).filter(|p| self.peers.contains(*p)),
        };
        let mut cx = UdpCx {
            peers: self,
            core,
            now_ms,
        };
        match peer {
            Some(p) => proto.receive(p, d, &mut cx),
            None => {
                cx.peers.counters.unknown += 1;
                proto.unknown(d, &mut cx);
            }
        }
    }

    /// Sends what is queued for `socket` through `send`, which takes a batch, sends a prefix of
    /// it and says how long. Replies first, then the peers in turn, at most `per_peer` of each
    /// peer's datagrams per batch. Ok(true) when nothing for `socket` is left; Ok(false) when
    /// `send` would block (the rest stays queued). A datagram the system refuses (too large, no
    /// route) is dropped and counted; a batch is never retried forever.
    pub fn flush(
        &mut self,
        socket: usize,
        per_peer: usize,
        send: &mut dyn FnMut(&[&Outgoing]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        loop {
            // Which queue each datagram of the batch comes from: None for the replies.
            let mut plan: Vec<Option<PeerId>> = Vec::with_capacity(BATCH);
            // Peers at the front of `active` looked at for this batch (they take their turn).
            let mut scanned = 0;
            let sent = {
                let mut batch: Vec<&Outgoing> = Vec::with_capacity(BATCH);
                for o in self.replies.iter().take_while(|o| o.socket == socket) {
                    if batch.len() == BATCH {
                        break;
                    }
                    batch.push(o);
                    plan.push(None);
                }
                for &id in &self.active {
                    if batch.len() == BATCH {
                        break;
                    }
                    scanned += 1;
                    let Some(p) = self.peers.get(id) else {
                        continue;
                    };
                    let room = (BATCH - batch.len()).min(per_peer.max(1));
                    for o in p.queue.iter().take_while(|o| o.socket == socket).take(room) {
                        batch.push(o);
                        plan.push(Some(id));
                    }
                }
                if batch.is_empty() {
                    return Ok(true);
                }
                match send(&batch) {
                    Ok(n) => {
                        self.counters.send_calls += 1;
                        n.min(batch.len())
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // The first datagram is bad (too large, no route to its address): it goes,
                        // the others get their chance.
                        self.counters.errors += 1;
                        log::debug!("udp send to {} failed: {e}", batch[0].to);
                        self.pop_sent(&plan[..1], false, 0);
                        continue;
                    }
                }
            };
            self.pop_sent(&plan[..sent], true, scanned);
            if sent == 0 {
                return Ok(false);
            }
        }
    }

    /// Takes the first `plan.len()` datagrams of the batch off their queues; the first
    /// `scanned` peers of the turn list had their turn.
    fn pop_sent(&mut self, plan: &[Option<PeerId>], counted: bool, scanned: usize) {
        for from in plan {
            let o = match from {
                None => self.replies.pop_front(),
                Some(id) => self.peers.get_mut(*id).and_then(|p| p.queue.pop_front()),
            };
            if let (Some(o), true) = (o, counted) {
                self.counters.datagrams_out += 1;
                self.counters.bytes_out += o.data.len() as u64;
            }
        }
        // Those that drained leave the turn list; the others go to its back (fair turns). Only
        // they are touched: a batch costs its size, not the number of peers.
        for _ in 0..scanned {
            let Some(id) = self.active.pop_front() else {
                break;
            };
            match self.peers.get_mut(id) {
                Some(p) if !p.queue.is_empty() => self.active.push_back(id),
                Some(p) => p.active = false,
                None => {}
            }
        }
    }
}

/// The datagrams of one read: `SLOT` bytes each, with their lengths and senders.
pub struct RecvBatch {
    buf: Vec<u8>,
    len: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    truncated: [bool; BATCH],
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            buf: vec![0; BATCH * SLOT],
            len: [0; BATCH],
            from: [None; BATCH],
            truncated: [false; BATCH],
        }
    }
}

/// One UDP port of a protocol: its sockets and its peers.
pub struct UdpEndpoint {
    sockets: Vec<UdpSocket>,
    locals: Vec<SocketAddr>,
    pub peers: UdpPeers,
    rx: RecvBatch,
    /// WRITABLE is registered for the socket (it refused datagrams).
    write_blocked: Vec<bool>,
}

impl UdpEndpoint {
    /// Binds one socket per address (at most `UDP_SOCKETS`). On Linux `[::]` alone takes IPv4
    /// too (as `::ffff:a.b.c.d`); `0.0.0.0` and `[::]` on one port collide there.
    pub fn bind(addrs: &[SocketAddr]) -> io::Result<UdpEndpoint> {
        if addrs.is_empty() || addrs.len() > UDP_SOCKETS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a UDP endpoint takes 1 to {UDP_SOCKETS} addresses"),
            ));
        }
        let mut sockets = Vec::new();
        let mut locals = Vec::new();
        for a in addrs {
            let s = UdpSocket::bind(*a)?;
            grow_receive_buffer(&s);
            locals.push(s.local_addr()?);
            sockets.push(s);
        }
        Ok(UdpEndpoint {
            write_blocked: vec![false; sockets.len()],
            sockets,
            locals,
            peers: UdpPeers::default(),
            rx: RecvBatch::default(),
        })
    }

    /// The bound addresses (a port 0 resolved), by socket index.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    /// Registers every socket for READABLE as `Source::Udp(udp_index(endpoint, socket))`.
    pub fn register(&mut self, registry: &Registry, endpoint: usize) -> io::Result<()> {
        for (i, s) in self.sockets.iter_mut().enumerate() {
            registry.register(
                s,
                Source::Udp(udp_index(endpoint, i)).token(),
                Interest::READABLE,
            )?;
        }
        Ok(())
    }

    /// Reads socket `socket` until WouldBlock or the budget, and routes every datagram. Ok(true)
    /// when the budget ran out with datagrams maybe left (read again next turn: readiness is
    /// edge-triggered and will not repeat).
    pub fn read(
        &mut self,
        socket: usize,
        proto: &mut dyn UdpProtocol,
        core: &mut Origin,
        now_ms: u64,
    ) -> io::Result<bool> {
        let Some(s) = self.sockets.get(socket) else {
            return Ok(false);
        };
        for _ in 0..BATCHES_PER_WAKEUP {
            let n = match recv_batch(s, &mut self.rx) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error reported on the socket (Windows), a bad datagram: one is
                    // gone, the socket stays.
                    self.peers.counters.errors += 1;
                    log::debug!("udp receive on {}: {e}", self.locals[socket]);
                    continue;
                }
            };
            self.peers.counters.recv_calls += 1;
            for i in 0..n {
                let Some(from) = self.rx.from[i] else {
                    continue;
                };
                if self.rx.truncated[i] {
                    self.peers.counters.truncated += 1;
                    continue;
                }
                let data = &self.rx.buf[i * SLOT..i * SLOT + self.rx.len[i]];
                let d = Datagram { socket, from, data };
                self.peers.dispatch(&d, proto, core, now_ms);
            }
        }
        Ok(true)
    }

    /// Sends what is queued on every socket until it is out or the socket would block; a
    /// blocked socket asks for WRITABLE, a drained one stops asking.
    pub fn flush(&mut self, registry: &Registry, endpoint: usize) {
        for (i, s) in self.sockets.iter_mut().enumerate() {
            let drained = match self
                .peers
                .flush(i, PEER_QUEUE, &mut |batch| send_batch(s, batch))
            {
                Ok(d) => d,
                Err(e) => {
                    warn!("udp send on {}: {e}", self.locals[i]);
                    true
                }
            };
            if drained == self.write_blocked[i] {
                let interest = if drained {
                    Interest::READABLE
                } else {
                    Interest::READABLE | Interest::WRITABLE
                };
                let token = Source::Udp(udp_index(endpoint, i)).token();
                if registry.reregister(s, token, interest).is_ok() {
                    self.write_blocked[i] = !drained;
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn recv_batch(socket: &UdpSocket, rx: &mut RecvBatch) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, slot) in rx.buf.chunks_exact_mut(SLOT).enumerate() {
        iov[i] = libc::iovec {
            iov_base: slot.as_mut_ptr().cast(),
            iov_len: SLOT,
        };
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: every header points into `names`, `iov` and `rx.buf`, which outlive the call; the
    // kernel writes at most `SLOT` bytes per buffer and one address per name.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            BATCH as libc::c_uint,
            0,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for i in 0..n {
        rx.len[i] = (msgs[i].msg_len as usize).min(SLOT);
        rx.truncated[i] = msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        rx.from[i] = sockaddr::decode(&names[i]);
    }
    Ok(n)
}

#[cfg(not(target_os = "linux"))]
fn recv_batch(socket: &UdpSocket, rx: &mut RecvBatch) -> io::Result<usize> {
    let mut n = 0;
    for slot in rx.buf.chunks_exact_mut(SLOT) {
        match socket.recv_from(slot) {
            Ok((len, from)) => {
                rx.len[n] = len.min(SLOT);
                // Elsewhere a datagram larger than the buffer is cut to it: taken as whole
                // only if it did not fill the slot.
                rx.truncated[n] = len >= SLOT;
                rx.from[n] = Some(from);
                n += 1;
            }
            // What came before an error (WouldBlock: the socket is empty) is delivered first.
            Err(_) if n > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(target_os = "linux")]
fn send_batch(socket: &UdpSocket, batch: &[&Outgoing]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = batch.len().min(BATCH);
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, o) in batch.iter().take(n).enumerate() {
        iov[i] = libc::iovec {
            iov_base: o.data.as_ptr() as *mut libc::c_void,
            iov_len: o.data.len(),
        };
        let len = sockaddr::encode(&o.to, &mut names[i]);
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = len;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: the headers point into `names`, `iov` and the datagrams' bytes, all alive for the
    // call; the kernel only reads them.
    let sent =
        unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

#[cfg(not(target_os = "linux"))]
fn send_batch(socket: &UdpSocket, batch: &[&Outgoing]) -> io::Result<usize> {
    let mut n = 0;
    for o in batch {
        match socket.send_to(&o.data, o.to) {
            Ok(_) => n += 1,
            Err(e) => {
                if n > 0 {
                    break;
                }
                return Err(e);
            }
        }
    }
    Ok(n)
}

/// `SocketAddr` to and from the C socket address (for `recvmmsg` and `sendmmsg`).
#[cfg(target_os = "linux")]
mod sockaddr {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    pub fn decode(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in, which it is large
                // and aligned enough for.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let a =
                    unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    pub fn encode(addr: &SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
                let out =
                    unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                out.sin_family = libc::AF_INET as libc::sa_family_t;
                out.sin_port = a.port().to_be();
                out.sin_addr = libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                };
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let out = unsafe {
                    &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                out.sin6_port = a.port().to_be();
                out.sin6_flowinfo = a.flowinfo();
                out.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                out.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

/// A UDP endpoint and the protocol it serves, as the loop holds them.
pub struct UdpPort {
    /// The protocol's name in logs and metrics (`webrtc`, `srt`).
    pub label: String,
    pub endpoint: UdpEndpoint,
    pub protocol: Box<dyn UdpProtocol>,
}

/// The endpoints' counters in the Prometheus text format (nothing without endpoints).
pub fn metrics(ports: &[UdpPort]) -> String {
    use std::fmt::Write;
    let mut m = String::new();
    if ports.is_empty() {
        return m;
    }
    let mut metric = |name: &str, kind: &str, help: &str, value: &dyn Fn(&UdpPort) -> String| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in ports {
            let _ = writeln!(m, "{name}{{endpoint=\"{}\"}} {}", p.label, value(p));
        }
    };
    let c = |p: &UdpPort| p.endpoint.peers.counters;
    metric(
        "rtmpd_udp_peers",
        "gauge",
        "Peers of a UDP endpoint.",
        &|p| p.endpoint.peers.len().to_string(),
    );
    metric(
        "rtmpd_udp_datagrams_in_total",
        "counter",
        "Datagrams received.",
        &|p| c(p).datagrams_in.to_string(),
    );
    metric(
        "rtmpd_udp_datagrams_out_total",
        "counter",
        "Datagrams sent.",
        &|p| c(p).datagrams_out.to_string(),
    );
    metric(
        "rtmpd_udp_bytes_in_total",
        "counter",
        "Bytes received (UDP payloads).",
        &|p| c(p).bytes_in.to_string(),
    );
    metric(
        "rtmpd_udp_bytes_out_total",
        "counter",
        "Bytes sent (UDP payloads).",
        &|p| c(p).bytes_out.to_string(),
    );
    metric(
        "rtmpd_udp_dropped_out_total",
        "counter",
        "Datagrams out dropped: their peer's queue was full.",
        &|p| c(p).dropped_out.to_string(),
    );
    metric(
        "rtmpd_udp_unknown_total",
        "counter",
        "Datagrams in that no peer claimed (answered statelessly or dropped).",
        &|p| c(p).unknown.to_string(),
    );
    metric(
        "rtmpd_udp_truncated_total",
        "counter",
        "Datagrams in too large for a read slot, dropped.",
        &|p| c(p).truncated.to_string(),
    );
    metric(
        "rtmpd_udp_errors_total",
        "counter",
        "Datagrams lost to a receive or send error.",
        &|p| c(p).errors.to_string(),
    );
    for p in ports {
        p.protocol.metrics(&mut m);
    }
    m
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

/// Asks for a receive buffer of `UDP_RCVBUF` (the kernel caps it at `net.core.rmem_max`): the
/// default 208 KiB is 50 ms of a few publishers' video, and a loop turn that runs long (a
/// recorder, a burst from one peer) must not cost every other peer on the port its packets.
#[cfg(unix)]
fn grow_receive_buffer(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = UDP_RCVBUF;
    // SAFETY: setsockopt on a socket we own, with a c_int option value of the right length.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        log::debug!("udp: SO_RCVBUF not set: {}", io::Error::last_os_error());
    }
}

#[cfg(not(unix))]
fn grow_receive_buffer(_s: &UdpSocket) {}

/// The receive buffer every UDP socket asks for (bytes).
#[cfg(unix)]
const UDP_RCVBUF: libc::c_int = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;

    /// A protocol for the tests: a datagram "K<n>..." names peer n; every datagram a peer gets is
    /// recorded and echoed; an unknown "PING" is answered "PONG" statelessly, the rest dropped.
    #[derive(Default)]
    struct Echo {
        got: Vec<(PeerId, SocketAddr, Vec<u8>)>,
        unknown: usize,
        timeouts: Vec<(PeerId, u64)>,
        learn: bool,
    }

    impl UdpProtocol for Echo {
        fn route(&mut self, d: &Datagram) -> Option<PeerId> {
            let rest = d.data.strip_prefix(b"K")?;
            let digits: Vec<u8> = rest
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            std::str::from_utf8(&digits).ok()?.parse().ok()
        }
        fn receive(&mut self, peer: PeerId, d: &Datagram, cx: &mut UdpCx) {
            self.got.push((peer, d.from, d.data.to_vec()));
            if self.learn {
                cx.peers.bind(peer, d.socket, d.from);
            }
            let data = Bytes::copy_from_slice(d.data);
            cx.peers.send(peer, d.socket, d.from, data);
        }
        fn unknown(&mut self, d: &Datagram, cx: &mut UdpCx) {
            self.unknown += 1;
            if d.data == b"PING" {
                cx.peers
                    .reply(d.socket, d.from, Bytes::from_static(b"PONG"));
            }
        }
        fn timeout(&mut self, peer: PeerId, cx: &mut UdpCx) {
            self.timeouts.push((peer, cx.now_ms));
        }
    }

    fn core() -> Origin {
        Origin::new(HubConfig::default(), None)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn dgram(from: SocketAddr, data: &[u8]) -> Datagram<'_> {
        Datagram {
            socket: 0,
            from,
            data,
        }
    }

    #[test]
    fn routes_by_five_tuple_then_by_key_then_to_unknown() {
        let (mut peers, mut proto, mut core) = (UdpPeers::default(), Echo::default(), core());
        let a = peers.add_peer();
        let b = peers.add_peer();
        peers.bind(a, 0, addr(1000));
        // Bound 5-tuple: whatever the bytes say.
        peers.dispatch(&dgram(addr(1000), b"K99 data"), &mut proto, &mut core, 0);
        // Unbound sender naming peer b by key.
        let key_b = format!("K{b} hello");
        peers.dispatch(
            &dgram(addr(2000), key_b.as_bytes()),
            &mut proto,
            &mut core,
            0,
        );
        // A key naming no peer, and no key at all: unknown; the PING is answered.
        peers.dispatch(&dgram(addr(3000), b"K77"), &mut proto, &mut core, 0);
        peers.dispatch(&dgram(addr(3000), b"PING"), &mut proto, &mut core, 0);
        let got: Vec<(PeerId, SocketAddr)> = proto.got.iter().map(|g| (g.0, g.1)).collect();
        assert_eq!(got, vec![(a, addr(1000)), (b, addr(2000))]);
        assert_eq!(proto.unknown, 2);
        assert_eq!(peers.counters.unknown, 2);
        assert_eq!(peers.counters.datagrams_in, 4);
        assert_eq!(peers.queued(a), 1, "the echo");
        assert_eq!(peers.queued_total(), 3, "two echoes and the PONG");
        // The key did not bind the new path: the protocol decides that.
        assert_eq!(peers.peer_of(0, addr(2000)), None);
        // On another socket the same sender is another 5-tuple.
        assert_eq!(peers.peer_of(1, addr(1000)), None);
    }

    #[test]
    fn a_learned_path_routes_later_datagrams_without_a_key() {
        let (mut peers, mut proto, mut core) = (UdpPeers::default(), Echo::default(), core());
        proto.learn = true;
        let a = peers.add_peer();
        let key = format!("K{a}");
        peers.dispatch(&dgram(addr(5), key.as_bytes()), &mut proto, &mut core, 0);
        peers.dispatch(&dgram(addr(5), b"media"), &mut proto, &mut core, 0);
        assert_eq!(proto.got.len(), 2);
        assert_eq!(proto.got[1].0, a);
        assert_eq!(peers.counters.unknown, 0);
    }

    #[test]
    fn a_peer_keeps_its_last_routes_and_a_tuple_has_one_peer() {
        let mut peers = UdpPeers::default();
        let a = peers.add_peer();
        let b = peers.add_peer();
        for port in 0..(ROUTES_PER_PEER as u16 + 3) {
            peers.bind(a, 0, addr(port));
        }
        assert_eq!(peers.peer_of(0, addr(0)), None, "the oldest went");
        assert_eq!(peers.peer_of(0, addr(ROUTES_PER_PEER as u16 + 2)), Some(a));
        assert_eq!(peers.routes.len(), ROUTES_PER_PEER);
        // b takes over a's newest 5-tuple.
        peers.bind(b, 0, addr(ROUTES_PER_PEER as u16 + 2));
        assert_eq!(peers.peer_of(0, addr(ROUTES_PER_PEER as u16 + 2)), Some(b));
        assert_eq!(peers.peers[a].routes.len(), ROUTES_PER_PEER - 1);
        peers.remove_peer(b);
        assert_eq!(peers.peer_of(0, addr(ROUTES_PER_PEER as u16 + 2)), None);
        assert_eq!(peers.routes.len(), ROUTES_PER_PEER - 1);
    }

    #[test]
    fn a_full_peer_queue_drops_and_counts_and_never_grows() {
        let mut peers = UdpPeers::default();
        let a = peers.add_peer();
        let mut accepted = 0;
        for i in 0..PEER_QUEUE + 10 {
            if peers.send(a, 0, addr(1), Bytes::from(vec![i as u8; 10])) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, PEER_QUEUE);
        assert_eq!(peers.counters.dropped_out, 10);
        assert_eq!(peers.queued(a), PEER_QUEUE);
        // A gone peer's datagram is dropped too; so is a reply over its bound.
        peers.remove_peer(a);
        assert!(!peers.send(a, 0, addr(1), Bytes::from_static(b"x")));
        for _ in 0..REPLY_QUEUE + 1 {
            peers.reply(0, addr(2), Bytes::from_static(b"r"));
        }
        assert_eq!(peers.counters.dropped_out, 12);
        assert_eq!(peers.queued_total(), REPLY_QUEUE);
    }

    /// A socket in memory: takes up to `room` datagrams, then would block.
    fn sender(room: &mut usize, out: &mut Vec<Outgoing>, batch: &[&Outgoing]) -> io::Result<usize> {
        if *room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = batch.len().min(*room);
        *room -= n;
        out.extend(batch[..n].iter().map(|o| (*o).clone()));
        Ok(n)
    }

    #[test]
    fn flush_keeps_the_rest_on_would_block_and_peers_take_turns() {
        let mut peers = UdpPeers::default();
        let a = peers.add_peer();
        let b = peers.add_peer();
        for i in 0..5u8 {
            peers.send(a, 0, addr(1), Bytes::from(vec![b'a', i]));
            peers.send(b, 0, addr(2), Bytes::from(vec![b'b', i]));
        }
        peers.reply(0, addr(3), Bytes::from_static(b"r"));
        let (mut room, mut out) = (4, Vec::new());
        let drained = peers.flush(0, 2, &mut |batch| sender(&mut room, &mut out, batch));
        assert!(!drained.unwrap(), "blocked with datagrams left");
        let firsts: Vec<&[u8]> = out.iter().map(|o| &o.data[..]).collect();
        // The reply first, then two of a's, then b's: turns, not a's whole queue.
        assert_eq!(firsts, vec![&b"r"[..], b"a\x00", b"a\x01", b"b\x00"]);
        assert_eq!(peers.queued_total(), 7);
        assert_eq!(peers.counters.datagrams_out, 4);
        // Writable again: the rest goes, each peer's in order.
        let (mut room, mut out) = (100, Vec::new());
        assert!(peers
            .flush(0, 2, &mut |batch| sender(&mut room, &mut out, batch))
            .unwrap());
        let a_rest: Vec<u8> = out
            .iter()
            .filter(|o| o.data[0] == b'a')
            .map(|o| o.data[1])
            .collect();
        let b_rest: Vec<u8> = out
            .iter()
            .filter(|o| o.data[0] == b'b')
            .map(|o| o.data[1])
            .collect();
        assert_eq!(a_rest, vec![2, 3, 4]);
        assert_eq!(b_rest, vec![1, 2, 3, 4]);
        assert_eq!(peers.queued_total(), 0);
        assert!(peers.active.is_empty());
    }

    #[test]
    fn many_peers_go_out_in_full_batches() {
        let mut peers = UdpPeers::default();
        let ids: Vec<PeerId> = (0..1000).map(|_| peers.add_peer()).collect();
        for &id in &ids {
            peers.send(id, 0, addr(1), Bytes::from(id.to_le_bytes().to_vec()));
        }
        let (mut calls, mut order) = (0, Vec::new());
        let drained = peers.flush(0, 4, &mut |batch| {
            calls += 1;
            order.extend(batch.iter().map(|o| o.data[0]));
            Ok(batch.len())
        });
        assert!(drained.unwrap());
        assert_eq!(calls, 1000usize.div_ceil(BATCH));
        assert_eq!(order.len(), 1000);
        let want: Vec<u8> = ids.iter().map(|id| id.to_le_bytes()[0]).collect();
        assert_eq!(order, want, "in the order they queued");
        assert!(peers.active.is_empty());
    }

    #[test]
    fn a_refused_datagram_is_dropped_and_the_others_go() {
        let mut peers = UdpPeers::default();
        let a = peers.add_peer();
        peers.send(a, 0, addr(1), Bytes::from_static(b"bad"));
        peers.send(a, 0, addr(1), Bytes::from_static(b"good"));
        let mut out = Vec::new();
        let drained = peers.flush(0, 8, &mut |batch| {
            if &batch[0].data[..] == b"bad" {
                return Err(io::Error::other("message too long"));
            }
            out.extend(batch.iter().map(|o| (*o).clone()));
            Ok(batch.len())
        });
        assert!(drained.unwrap());
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], b"good");
        assert_eq!(peers.counters.errors, 1);
        assert_eq!(peers.counters.datagrams_out, 1);
    }

    #[test]
    fn datagrams_for_another_socket_wait_for_its_flush() {
        let mut peers = UdpPeers::default();
        let a = peers.add_peer();
        peers.send(a, 1, addr(1), Bytes::from_static(b"v6"));
        let mut n = 0;
        assert!(peers
            .flush(0, 8, &mut |b| {
                n += b.len();
                Ok(b.len())
            })
            .unwrap());
        assert_eq!(n, 0);
        assert_eq!(peers.queued(a), 1);
        assert!(peers
            .flush(1, 8, &mut |b| {
                n += b.len();
                Ok(b.len())
            })
            .unwrap());
        assert_eq!(n, 1);
    }

    #[test]
    fn a_reused_peer_slot_has_a_new_generation() {
        let mut peers = UdpPeers::default();
        let a = peers.add_peer();
        let g = peers.generation(a).unwrap();
        peers.set_deadline(a, Some(40));
        peers.remove_peer(a);
        let b = peers.add_peer();
        assert_eq!(a, b, "the slab reuses the slot");
        assert_ne!(peers.generation(b), Some(g));
        assert_eq!(peer_index(2, 5) % MAX_ENDPOINTS, 2);
        assert_eq!(peer_index(2, 5) / MAX_ENDPOINTS, 5);
    }

    #[test]
    fn peer_deadlines_are_armed_once_and_a_later_one_waits_for_the_pending_entry() {
        let mut peers = UdpPeers::default();
        let a = peers.add_peer();
        let g = peers.generation(a).unwrap();
        let armed = |peers: &mut UdpPeers| {
            let mut v = Vec::new();
            peers.deadlines_to_arm(|id, at, generation| v.push((id, at, generation)));
            v
        };
        peers.set_deadline(a, Some(50));
        assert_eq!(armed(&mut peers), vec![(a, 50, g)]);
        assert_eq!(armed(&mut peers), vec![], "listed once");
        // Later: no new entry; the one at 50 comes first and finds it moved.
        peers.set_deadline(a, Some(80));
        assert_eq!(armed(&mut peers), vec![]);
        assert!(!peers.timer_fired(a, 50), "not due: 80 is");
        assert_eq!(armed(&mut peers), vec![(a, 80, g)]);
        assert!(peers.timer_fired(a, 80));
        assert!(!peers.timer_fired(a, 90), "done: no deadline left");
        // Earlier than a pending entry: a new one.
        peers.set_deadline(a, Some(200));
        assert_eq!(armed(&mut peers), vec![(a, 200, g)]);
        peers.set_deadline(a, Some(120));
        assert_eq!(armed(&mut peers), vec![(a, 120, g)]);
        // A removed peer's deadline is never armed; its fired entry does nothing.
        peers.set_deadline(a, Some(300));
        peers.remove_peer(a);
        assert_eq!(armed(&mut peers), vec![]);
        assert!(!peers.timer_fired(a, 400));
    }

    /// Receives on `client` until `want` datagrams came or 5 s passed.
    fn recv_all(client: &std::net::UdpSocket, want: usize) -> Vec<Vec<u8>> {
        client
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < want && std::time::Instant::now() < deadline {
            if let Ok((n, _)) = client.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        got
    }

    #[test]
    fn loopback_datagrams_in_batches_out_in_batches_oversized_dropped() {
        let mut ep = UdpEndpoint::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
        let server = ep.local_addrs()[0];
        let poll = mio::Poll::new().unwrap();
        ep.register(poll.registry(), 0).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = ep.peers.add_peer();
        ep.peers.bind(a, 0, client.local_addr().unwrap());
        const N: usize = 100;
        for i in 0..N {
            client
                .send_to(format!("datagram {i}").as_bytes(), server)
                .unwrap();
        }
        // One too large for a slot: dropped whole, counted.
        client.send_to(&vec![7u8; SLOT + 100], server).unwrap();
        let (mut proto, mut core) = (Echo::default(), core());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proto.got.len() < N && std::time::Instant::now() < deadline {
            ep.read(0, &mut proto, &mut core, 0).unwrap();
            ep.flush(poll.registry(), 0);
        }
        assert_eq!(proto.got.len(), N);
        for (i, g) in proto.got.iter().enumerate() {
            assert_eq!(g.2, format!("datagram {i}").as_bytes(), "in order, whole");
        }
        // The oversized one may come after the last read above.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while ep.peers.counters.truncated == 0 && std::time::Instant::now() < deadline {
            ep.read(0, &mut proto, &mut core, 0).unwrap();
        }
        assert_eq!(ep.peers.counters.truncated, 1);
        assert_eq!(proto.got.len(), N, "never delivered in part");
        ep.flush(poll.registry(), 0);
        let echoes = recv_all(&client, N);
        assert_eq!(echoes.len(), N);
        assert_eq!(echoes[N - 1], format!("datagram {}", N - 1).as_bytes());
        let c = ep.peers.counters;
        assert_eq!((c.datagrams_in, c.datagrams_out), (N as u64, N as u64));
        if cfg!(target_os = "linux") {
            // recvmmsg and sendmmsg: many datagrams per system call.
            assert!(c.send_calls <= (N / BATCH + 2) as u64, "{c:?}");
            assert!(c.recv_calls < N as u64 / 2, "{c:?}");
        }
    }

    #[test]
    fn loopback_ipv4_and_ipv6_sockets_answer_on_their_own_family() {
        let v6: SocketAddr = "[::1]:0".parse().unwrap();
        if std::net::UdpSocket::bind(v6).is_err() {
            eprintln!("skipped: no IPv6 loopback");
            return;
        }
        let mut ep = UdpEndpoint::bind(&["127.0.0.1:0".parse().unwrap(), v6]).unwrap();
        let poll = mio::Poll::new().unwrap();
        ep.register(poll.registry(), 1).unwrap();
        let (s4, s6) = (ep.local_addrs()[0], ep.local_addrs()[1]);
        let c4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c6 = std::net::UdpSocket::bind(v6).unwrap();
        c4.send_to(b"PING", s4).unwrap();
        c6.send_to(b"PING", s6).unwrap();
        let (mut proto, mut core) = (Echo::default(), core());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proto.unknown < 2 && std::time::Instant::now() < deadline {
            ep.read(0, &mut proto, &mut core, 0).unwrap();
            ep.read(1, &mut proto, &mut core, 0).unwrap();
        }
        ep.flush(poll.registry(), 1);
        assert_eq!(recv_all(&c4, 1), vec![b"PONG".to_vec()]);
        assert_eq!(recv_all(&c6, 1), vec![b"PONG".to_vec()]);
        assert_eq!(ep.peers.counters.unknown, 2);
        let port = UdpPort {
            label: "test".into(),
            endpoint: ep,
            protocol: Box::new(proto),
        };
        let text = metrics(std::slice::from_ref(&port));
        assert!(
            text.contains("rtmpd_udp_unknown_total{endpoint=\"test\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("rtmpd_udp_datagrams_out_total{endpoint=\"test\"} 2\n"),
            "{text}"
        );
        assert!(metrics(&[]).is_empty());
    }
}
