//! ICE-TCP (RFC 6544, passive) for WHEP: a TCP listener on the WebRTC port number, for viewers
//! that cannot reach the UDP port. Each connection carries RFC 4571 frames
//! (`webrtc::tcp_framing`); its first packet must be a STUN request naming a live session's
//! username fragment with that session's credentials, or nothing is kept of it; from then on the
//! connection belongs to that session, which also sends through it (`Transmit::proto` is TCP).
//!
//! Bounds: `MAX_PENDING` connections without a session, each closed after `UNBOUND_MS`; one
//! RFC 4571 frame of input held (64 KiB); `OUT_MAX` bytes of output queued per connection, past
//! which packets are dropped (and counted) as UDP would lose them. A connection whose session
//! ended is closed at the next sweep.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};
use slab::Slab;

use super::source::{Ready, Source};
use super::udp::PeerId;
use super::webrtc::session as glue;
use super::Server;
use crate::webrtc::tcp_framing::{self, Deframer};
use crate::webrtc::{stun_username_fragment, Proto};

/// Connections not (yet) bound to a session; newcomers over it are closed at once.
const MAX_PENDING: usize = 256;
/// A connection must name a session within this long.
const UNBOUND_MS: u64 = 10_000;
/// Output queued per connection (bytes, framed).
const OUT_MAX: usize = 1 << 20;
/// ICE-TCP connections one session may have (ICE tries a few pairs; more is abuse).
const PER_SESSION: usize = 4;
/// Reads per connection per wakeup.
const READS_PER_WAKEUP: usize = 16;

struct TcpPeer {
    socket: TcpStream,
    from: SocketAddr,
    local: SocketAddr,
    deframer: Deframer,
    out: Vec<u8>,
    out_pos: usize,
    peer: Option<PeerId>,
    /// The ICE username fragment of its session (a reused peer id is another session).
    ufrag: String,
    since_ms: u64,
    /// WRITABLE is registered (output is waiting).
    write_blocked: bool,
}

/// The listener and its connections.
pub struct IceTcp {
    listener: TcpListener,
    conns: Slab<TcpPeer>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Connections bound to each session.
    per_session: HashMap<PeerId, usize>,
    last_sweep_ms: u64,
    /// Packets dropped because a connection's output was full.
    pub dropped: u64,
}

impl IceTcp {
    /// The port the listener got (`--webrtc-port 0`).
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    pub fn new(listener: TcpListener) -> IceTcp {
        IceTcp {
            listener,
            conns: Slab::new(),
            by_addr: HashMap::new(),
            per_session: HashMap::new(),
            last_sweep_ms: 0,
            dropped: 0,
        }
    }

    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(
            &mut self.listener,
            Source::IceTcp(0).token(),
            Interest::READABLE,
        )
    }

    fn close(&mut self, registry: &Registry, c: usize, why: &str) {
        if let Some(mut p) = self.conns.try_remove(c) {
            let _ = registry.deregister(&mut p.socket);
            if self.by_addr.get(&p.from) == Some(&c) {
                self.by_addr.remove(&p.from);
            }
            if let Some(peer) = p.peer {
                if let Some(n) = self.per_session.get_mut(&peer) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_session.remove(&peer);
                    }
                }
            }
            debug!("ICE-TCP {}: closed: {why}", p.from);
        }
    }

    /// Queues one packet to `to` (framed); false when no connection has that address.
    fn queue(&mut self, to: SocketAddr, packet: &[u8]) -> Option<usize> {
        let &c = self.by_addr.get(&to)?;
        let p = self.conns.get_mut(c)?;
        let Some(framed) = tcp_framing::frame(packet) else {
            self.dropped += 1;
            return None;
        };
        if p.out.len() - p.out_pos + framed.len() > OUT_MAX {
            self.dropped += 1;
            return None;
        }
        if p.out_pos > 0 && p.out_pos == p.out.len() {
            p.out.clear();
            p.out_pos = 0;
        }
        p.out.extend_from_slice(&framed);
        Some(c)
    }

    /// Writes what connection `c` has queued until it is out or the socket would block.
    fn write(&mut self, registry: &Registry, c: usize) {
        let Some(p) = self.conns.get_mut(c) else {
            return;
        };
        while p.out_pos < p.out.len() {
            match p.socket.write(&p.out[p.out_pos..]) {
                Ok(0) => break,
                Ok(n) => p.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let why = format!("write: {e}");
                    return self.close(registry, c, &why);
                }
            }
        }
        if p.out_pos == p.out.len() {
            p.out.clear();
            p.out_pos = 0;
        }
        let blocked = p.out_pos < p.out.len();
        if blocked != p.write_blocked {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut p.socket, Source::IceTcp(c + 1).token(), interest)
                .is_ok()
            {
                p.write_blocked = blocked;
            }
        }
    }
}

impl Server {
    /// Binds the ICE-TCP listener on `addr` (the WebRTC UDP port's number).
    pub(super) fn ice_tcp_bind(addr: SocketAddr) -> io::Result<IceTcp> {
        Ok(IceTcp::new(TcpListener::bind(addr)?))
    }

    /// Readiness of the listener (index 0) or of a connection (its slab key + 1).
    pub(super) fn ice_tcp_ready(&mut self, index: usize, ready: Ready) {
        if index == 0 {
            return self.ice_tcp_accept();
        }
        let c = index - 1;
        if ready.readable {
            self.ice_tcp_read(c);
        }
        if ready.writable {
            let registry = self.poll.registry();
            if let Some(t) = self.webrtc.as_mut().and_then(|w| w.tcp.as_mut()) {
                t.write(registry, c);
            }
        }
    }

    fn ice_tcp_accept(&mut self) {
        let registry = self.poll.registry();
        let now_ms = self.now_ms;
        let Some(t) = self.webrtc.as_mut().and_then(|w| w.tcp.as_mut()) else {
            return;
        };
        loop {
            let (mut socket, from) = match t.listener.accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("ICE-TCP accept failed: {e}");
                    return;
                }
            };
            let pending = t.conns.iter().filter(|(_, p)| p.peer.is_none()).count();
            if pending >= MAX_PENDING {
                debug!("ICE-TCP {from}: {MAX_PENDING} connections wait for a session; closed");
                continue;
            }
            let Ok(local) = socket.local_addr() else {
                continue;
            };
            let _ = socket.set_nodelay(true);
            let entry = t.conns.vacant_entry();
            let c = entry.key();
            if registry
                .register(
                    &mut socket,
                    Source::IceTcp(c + 1).token(),
                    Interest::READABLE,
                )
                .is_err()
            {
                continue;
            }
            entry.insert(TcpPeer {
                socket,
                from,
                local,
                deframer: Deframer::new(),
                out: Vec::new(),
                out_pos: 0,
                peer: None,
                ufrag: String::new(),
                since_ms: now_ms,
                write_blocked: false,
            });
            t.by_addr.insert(from, c);
        }
    }

    fn ice_tcp_read(&mut self, c: usize) {
        let registry = self.poll.registry();
        let now = self.now;
        let Some(w) = self.webrtc.as_mut() else {
            return;
        };
        let (state, endpoint) = (w.state.clone(), w.endpoint());
        let Some(t) = w.tcp.as_mut() else {
            return;
        };
        let Some(port) = self.udp.get_mut(endpoint) else {
            return;
        };
        let mut st = state.borrow_mut();
        let mut buf = [0u8; 16 * 1024];
        let mut close = None;
        'reads: for _ in 0..READS_PER_WAKEUP {
            let Some(p) = t.conns.get_mut(c) else {
                return;
            };
            match p.socket.read(&mut buf) {
                Ok(0) => {
                    close = Some("closed by the viewer".to_string());
                    break;
                }
                Ok(n) => p.deframer.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    close = Some(format!("read: {e}"));
                    break;
                }
            }
            loop {
                let packet = match p.deframer.next_packet() {
                    Ok(Some(packet)) => packet,
                    Ok(None) => break,
                    Err(e) => {
                        close = Some(e.to_string());
                        break 'reads;
                    }
                };
                let peer = match p.peer {
                    Some(peer) if glue::session_alive(&st, peer, &p.ufrag) => peer,
                    Some(_) => {
                        close = Some("its session ended".into());
                        break 'reads;
                    }
                    None => {
                        // Not bound yet: only a STUN request with a live session's credentials.
                        let ufrag = stun_username_fragment(&packet).unwrap_or("");
                        let found = glue::session_by_ufrag(&st, ufrag).filter(|&peer| {
                            glue::accepts(&st, peer, Proto::Tcp, p.from, p.local, &packet)
                        });
                        let bound =
                            found.map_or(0, |peer| t.per_session.get(&peer).copied().unwrap_or(0));
                        match found {
                            Some(_) if bound >= PER_SESSION => {
                                close = Some(format!("{PER_SESSION} connections for one session"));
                                break 'reads;
                            }
                            Some(peer) => {
                                p.peer = Some(peer);
                                p.ufrag = ufrag.to_string();
                                *t.per_session.entry(peer).or_insert(0) += 1;
                                peer
                            }
                            None => {
                                close = Some("not a STUN request for a session".into());
                                break 'reads;
                            }
                        }
                    }
                };
                let alive = glue::tcp_datagram(
                    &mut st,
                    peer,
                    (p.from, p.local),
                    &packet,
                    &mut port.endpoint.peers,
                    &mut self.core,
                    now,
                );
                if !alive {
                    close = Some("its session ended".into());
                    break 'reads;
                }
            }
        }
        let out = glue::take_tcp_out(&mut st);
        drop(st);
        // WHIP frames wait until the state is let go (the hub's WHEP feeds borrow it).
        super::webrtc::whip::apply_hub_ops(&state, &mut self.core, self.now_ms);
        if let Some(why) = close {
            t.close(registry, c, &why);
        }
        let mut touched = Vec::new();
        for (to, packet) in out {
            touched.extend(t.queue(to, &packet));
        }
        touched.sort_unstable();
        touched.dedup();
        for c in touched {
            t.write(registry, c);
        }
        port.endpoint.flush(registry, endpoint);
    }

    /// What sessions queued for TCP since the last call goes out; once a second, connections
    /// that never named a session, or whose session ended, are closed.
    pub(super) fn ice_tcp_turn(&mut self) {
        let registry = self.poll.registry();
        let now_ms = self.now_ms;
        let Some(w) = self.webrtc.as_mut() else {
            return;
        };
        let state = w.state.clone();
        let Some(t) = w.tcp.as_mut() else {
            return;
        };
        let mut st = state.borrow_mut();
        let out = glue::take_tcp_out(&mut st);
        let mut touched = Vec::new();
        for (to, packet) in out {
            touched.extend(t.queue(to, &packet));
        }
        touched.sort_unstable();
        touched.dedup();
        for c in touched {
            t.write(registry, c);
        }
        if now_ms.saturating_sub(t.last_sweep_ms) < 1000 {
            return;
        }
        t.last_sweep_ms = now_ms;
        let stale: Vec<usize> = t
            .conns
            .iter()
            .filter(|(_, p)| match p.peer {
                Some(peer) => !glue::session_alive(&st, peer, &p.ufrag),
                None => now_ms.saturating_sub(p.since_ms) > UNBOUND_MS,
            })
            .map(|(c, _)| c)
            .collect();
        drop(st);
        for c in stale {
            t.close(registry, c, "no session");
        }
    }
}
