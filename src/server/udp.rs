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

use super::origin::Origin;
use super::source::{udp_index, Source, UDP_SOCKETS};
use super::timers::{TimerKey, TimerKind};
use super::Server;

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
                    Ok(n) => n.min(batch.len()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // The first datagram is bad (too large, no route to its address): it goes,
                        // the others get their chance.
                        self.counters.errors += 1;
                        log::debug!("udp send to {} failed: {e}", batch[0].to);
                        self.pop_sent(&plan[..1], false);
                        continue;
                    }
                }
            };
            self.pop_sent(&plan[..sent], true);
            if sent == 0 {
                return Ok(false);
            }
        }
    }

    /// Takes the first `plan.len()` datagrams of the batch off their queues.
    fn pop_sent(&mut self, plan: &[Option<PeerId>], counted: bool) {
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
        // Peers that drained leave the turn list; the others go to its back (fair turns).
        let mut turns = self.active.len();
        while turns > 0 {
            turns -= 1;
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
            Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
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
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            0,
        )
    };
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
                let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
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
                let out = unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                out.sin_family = libc::AF_INET as libc::sa_family_t;
                out.sin_port = a.port().to_be();
                out.sin_addr = libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                };
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let out =
                    unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
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
        self.udp.push(UdpPort { endpoint, protocol });
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

    /// A peer's deadline is due: the protocol's timeout, then what it queued goes out.
    pub(super) fn udp_peer_timeout(&mut self, index: usize) {
        let (e, peer) = (index % MAX_ENDPOINTS, index / MAX_ENDPOINTS);
        let Some(port) = self.udp.get_mut(e) else {
            return;
        };
        let peers = &mut port.endpoint.peers;
        let Some(p) = peers.peers.get_mut(peer) else {
            return;
        };
        p.armed = None;
        match p.deadline {
            Some(at) if at <= self.now_ms => p.deadline = None,
            // Moved later since this entry was set: set the entry for when it is due.
            Some(_) => return peers.deadline_set.push(peer),
            None => return,
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
        for (e, port) in self.udp.iter_mut().enumerate() {
            let peers = &mut port.endpoint.peers;
            for id in std::mem::take(&mut peers.deadline_set) {
                let Some(p) = peers.peers.get_mut(id) else {
                    continue;
                };
                let Some(at) = p.deadline else {
                    continue;
                };
                if p.armed.is_some_and(|a| a <= at) {
                    continue;
                }
                p.armed = Some(at);
                let key = TimerKey {
                    token: Source::Peer(peer_index(e, id)).token().0,
                    generation: p.generation,
                    kind: TimerKind::Machine,
                };
                self.timers.schedule(at, key);
            }
        }
    }
}
