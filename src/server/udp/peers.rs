//! The peers of one UDP endpoint, sans-IO: routing a datagram in (by its 5-tuple, else by a key
//! the protocol finds in its bytes: a STUN ufrag, an SRT socket id, else to the protocol's
//! `unknown`), each peer's bounded output queue and the stateless replies, the order peers take
//! turns in a send batch, and the peers' deadlines for the loop's timer heap. It has no socket
//! (`endpoint.rs` reads and sends) and does not know what a datagram means (the `UdpProtocol`).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use slab::Slab;

use super::{
    Datagram, PeerId, UdpCounters, UdpCx, UdpProtocol, BATCH, PEER_QUEUE, REPLY_QUEUE,
    ROUTES_PER_PEER,
};
use crate::origin::Origin;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::udp::tests::{addr, core, dgram, Echo};
    use crate::server::udp::{peer_index, MAX_ENDPOINTS};

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
}
