//! The sockets of a UDP endpoint: one mio `UdpSocket` per bound address, read in batches
//! (`recvmmsg` on Linux, `recv_from` elsewhere; a datagram over `SLOT` dropped whole) and
//! written in batches (`sendmmsg`), WRITABLE asked for only while a socket refused datagrams, a
//! large receive buffer. Every datagram read goes to `UdpPeers::dispatch`; what is sent comes
//! from the peers' queues (`peers.rs`). It decides nothing about routing or meaning.

use std::io;
use std::net::SocketAddr;

use log::warn;
use mio::net::UdpSocket;
use mio::{Interest, Registry};

use super::{
    Datagram, Outgoing, UdpPeers, UdpProtocol, BATCH, BATCHES_PER_WAKEUP, PEER_QUEUE, SLOT,
};
use crate::origin::Origin;
use crate::server::source::{udp_index, Source, UDP_SOCKETS};

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
            // On Linux a short recvmmsg means the queue was empty: the next call would only
            // say so (it was half the calls of an SRT ingest), and every datagram that arrives
            // from now on raises the edge again. Elsewhere readiness is only re-armed by
            // WouldBlock (mio on Windows), so the loop reads until it.
            #[cfg(target_os = "linux")]
            if n < BATCH {
                return Ok(false);
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
