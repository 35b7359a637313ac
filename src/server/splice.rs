//! Zero-copy fan-out on Linux. At a merged flush, the viewers of one form that are at the live
//! edge hold the same packets. Those bytes are written once into a pipe, and each such viewer
//! gets them with `tee(2)` into a scratch pipe and `splice(2)` from there to its socket: the
//! kernel hands the same pipe pages to every socket instead of copying the bytes into new
//! buffers for each viewer. Viewers written straight from their form's log (`hub::edge`) share
//! a pipe by log and cursor (`send_edge`); queued viewers by equal queues (`note`, `send`).
//! Anything else (a lone viewer, control bytes queued, a partly written packet, a queue larger
//! than a pipe) goes the ordinary way, one vectored `sendmsg`.
//!
//! Measured with tools/bench.sh-style runs (1,000 HTTP-FLV viewers of a 2 Mbps stream), see
//! the README's performance section.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use mio::net::TcpStream;

use crate::hub::queue::{Run, ViewerQueue};
use crate::hub::{Edge, EdgeKey};

/// Pipe size asked for (the default per-user limit for unprivileged processes, 1 MiB); a run
/// larger than the size granted is written the ordinary way.
const PIPE_BYTES: usize = 1 << 20;
/// Pipes loaded at once (one per group of viewers with equal queues, usually one per stream
/// and form); groups beyond it are written the ordinary way.
const MAX_PIPES: usize = 32;
/// Packets in one run: writing it into a pipe takes one `writev` of this many slices.
const MAX_RUN_PACKETS: usize = 512;
/// Distinct edge writes per flush that may get a pipe (usually one per stream and form).
const MAX_EDGE_GROUPS: usize = 2 * MAX_PIPES;

struct Pipe {
    read: File,
    write: File,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills the two descriptors, which we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own descriptor; a refused size leaves the default.
        let capacity = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BYTES as libc::c_int,
            );
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        if capacity <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe {
            read,
            write,
            capacity: capacity as usize,
        })
    }

    /// Reads and drops `n` bytes (or whatever is there).
    fn discard(&mut self, mut n: usize, junk: &mut [u8]) {
        while n > 0 {
            let want = n.min(junk.len());
            match self.read.read(&mut junk[..want]) {
                Ok(0) | Err(_) => return,
                Ok(k) => n -= k,
            }
        }
    }
}

/// Viewers with equal queues at this flush.
struct Group {
    /// The packets, from the first viewer seen (each later one is checked against them).
    addrs: Vec<usize>,
    viewers: usize,
    /// The loaded pipe, once the first viewer of the group is sent.
    pipe: Option<usize>,
    /// Loading failed: the group is written the ordinary way.
    failed: bool,
}

/// Runs hash themselves (`Run` feeds one u64 already mixed from its packets): the map keeps it.
#[derive(Default)]
struct RunHasher(u64);

impl Hasher for RunHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

pub struct Splicer {
    pipes: Vec<Pipe>,
    /// Pipes of `pipes` loaded at this flush.
    loaded: usize,
    scratch: Pipe,
    groups: HashMap<Run, Group, BuildHasherDefault<RunHasher>>,
    /// Edge writes of this flush (`send_edge`): the packets' key, and the pipe loaded with
    /// them and their bytes (None: not shared, write the ordinary way). A few per flush.
    edges: Vec<(EdgeKey, Option<(usize, usize)>)>,
    junk: Vec<u8>,
}

impl Splicer {
    pub fn new() -> io::Result<Splicer> {
        Ok(Splicer {
            pipes: Vec::new(),
            loaded: 0,
            scratch: Pipe::new()?,
            groups: HashMap::default(),
            edges: Vec::new(),
            junk: vec![0; 64 * 1024],
        })
    }

    /// Counts a viewer's queue before a flush; viewers seen here more than once per run are
    /// the ones `send` serves.
    pub fn note(&mut self, queue: &ViewerQueue) {
        let Some(run) = queue.run() else {
            return;
        };
        if run.bytes > self.scratch.capacity {
            return;
        }
        let group = self.groups.entry(run).or_insert_with(|| {
            let mut addrs = Vec::new();
            queue.packet_addrs(&mut addrs);
            Group {
                addrs,
                viewers: 0,
                pipe: None,
                failed: false,
            }
        });
        group.viewers += 1;
    }

    /// Sends `queue` to `socket` through a shared pipe when its group (noted for the flush in
    /// progress) has other viewers:
    /// Some(Ok(true)) when all of it went, Some(Ok(false)) when the socket took part or
    /// nothing (the rest stays queued), Some(Err) on a socket error. None: not eligible, use
    /// the ordinary write.
    pub fn send(
        &mut self,
        socket: &TcpStream,
        queue: &mut ViewerQueue,
        written: &mut usize,
    ) -> Option<io::Result<bool>> {
        // Groups exist only during a merged flush (`note` .. `end_flush`).
        if self.groups.is_empty() {
            return None;
        }
        let run = queue.run()?;
        let group = self.groups.get_mut(&run)?;
        if group.viewers < 2 || group.failed || !queue.holds_packets(&group.addrs) {
            return None;
        }
        let index = match group.pipe {
            Some(i) => i,
            None => match load_queue(&mut self.pipes, &mut self.loaded, queue, run.bytes) {
                Some(i) => {
                    group.pipe = Some(i);
                    i
                }
                None => {
                    group.failed = true;
                    return None;
                }
            },
        };
        match self.tee_splice(index, socket, run.bytes)? {
            Ok(sent) => {
                queue.advance(sent);
                *written += sent;
                Some(Ok(sent == run.bytes))
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// Sends a follower's packets straight from its form's log (`Hub::edge`) through the pipe
    /// loaded with them at this flush (loaded now if this is the first follower of these exact
    /// packets): Some(Ok(n)) with the bytes the socket took (0 when full), Some(Err) on a socket
    /// error, None when not eligible (write them the ordinary way).
    pub fn send_edge(&mut self, socket: &TcpStream, edge: &Edge<'_>) -> Option<io::Result<usize>> {
        let (index, bytes) = match self.edges.iter().find(|(k, _)| *k == edge.key) {
            Some(&(_, loaded)) => loaded?,
            None => {
                if self.edges.len() == MAX_EDGE_GROUPS || !edge.shared {
                    return None;
                }
                let bytes = edge.bytes();
                let loaded = if bytes > self.scratch.capacity || edge.count() > MAX_RUN_PACKETS {
                    None
                } else {
                    let mut slices = vec![IoSlice::new(&[]); edge.count()];
                    let k = edge.slices(&mut slices);
                    load(&mut self.pipes, &mut self.loaded, &slices[..k], bytes).map(|i| (i, bytes))
                };
                self.edges.push((edge.key, loaded));
                loaded?
            }
        };
        self.tee_splice(index, socket, bytes)
    }

    /// `bytes` (all the pipe holds) from loaded pipe `index` to `socket`: tee into the scratch
    /// pipe, splice from there. Some(Ok(n)) with the bytes sent (0 when the socket is full),
    /// Some(Err) on a socket error, None when the tee fell short (send the ordinary way).
    fn tee_splice(
        &mut self,
        index: usize,
        socket: &TcpStream,
        bytes: usize,
    ) -> Option<io::Result<usize>> {
        let pipe = &self.pipes[index];
        // SAFETY: tee and splice on descriptors we own (the socket lives for the call).
        let teed = unsafe {
            libc::tee(
                pipe.read.as_raw_fd(),
                self.scratch.write.as_raw_fd(),
                bytes,
                libc::SPLICE_F_NONBLOCK,
            )
        };
        if teed != bytes as isize {
            if teed > 0 {
                self.scratch.discard(teed as usize, &mut self.junk);
            }
            return None;
        }
        let sent = unsafe {
            libc::splice(
                self.scratch.read.as_raw_fd(),
                std::ptr::null_mut(),
                socket.as_raw_fd(),
                std::ptr::null_mut(),
                bytes,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            )
        };
        if sent < 0 {
            let e = io::Error::last_os_error();
            self.scratch.discard(bytes, &mut self.junk);
            return Some(match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                // EINTR: nothing was sent; the rest stays queued for the next turn.
                io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            });
        }
        let sent = sent as usize;
        if sent < bytes {
            self.scratch.discard(bytes - sent, &mut self.junk);
        }
        Some(Ok(sent))
    }

    /// Ends a flush: the loaded pipes are emptied for the next one.
    pub fn end_flush(&mut self) {
        for pipe in &mut self.pipes[..self.loaded] {
            let n = pipe.capacity;
            pipe.discard(n, &mut self.junk);
        }
        self.loaded = 0;
        self.groups.clear();
        self.edges.clear();
    }
}

/// Writes the queue's bytes into the next free pipe of the pool (see `load`).
fn load_queue(
    pipes: &mut Vec<Pipe>,
    loaded: &mut usize,
    queue: &ViewerQueue,
    bytes: usize,
) -> Option<usize> {
    let mut slices = Vec::with_capacity(16);
    queue.each_queued(|s| slices.push(IoSlice::new(s)));
    if slices.len() > MAX_RUN_PACKETS {
        return None;
    }
    load(pipes, loaded, &slices, bytes)
}

/// Writes `slices` (`bytes` in all) into the next free pipe of the pool (made when needed).
fn load(
    pipes: &mut Vec<Pipe>,
    loaded: &mut usize,
    slices: &[IoSlice],
    bytes: usize,
) -> Option<usize> {
    if *loaded == MAX_PIPES {
        return None;
    }
    if *loaded == pipes.len() {
        match Pipe::new() {
            Ok(p) => pipes.push(p),
            Err(e) => {
                log::debug!("zero-copy fan-out: no pipe: {e}");
                return None;
            }
        }
    }
    let pipe = &mut pipes[*loaded];
    if bytes > pipe.capacity {
        return None;
    }
    // The pipe is empty and large enough, so one write takes it all; anything else is a
    // failure, and the pipe is emptied again.
    *loaded += 1;
    match pipe.write.write_vectored(slices) {
        Ok(n) if n == bytes => Some(*loaded - 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::packet::Packet;
    use crate::hub::queue::QueueLimits;
    use crate::media::Track;
    use bytes::Bytes;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::Duration;

    fn packet(i: u8, len: usize) -> Arc<Packet> {
        Arc::new(Packet {
            data: Bytes::from(
                (0..len)
                    .map(|k| i.wrapping_add(k as u8))
                    .collect::<Vec<u8>>(),
            ),
            dts: i as u32 * 40,
            time: i as u64 * 40,
            track: Track::Video,
            key: i == 0,
            header: false,
        })
    }

    /// A connected pair: the server end as the loop has it (non-blocking mio), the client end
    /// blocking with a read timeout.
    fn pair() -> (TcpStream, std::net::TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (TcpStream::from_std(server), client)
    }

    fn read_exact(c: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        c.read_exact(&mut v).unwrap();
        v
    }

    fn queue_of(packets: &[Arc<Packet>]) -> ViewerQueue {
        let mut q = ViewerQueue::new(QueueLimits::default());
        for p in packets {
            let _ = q.push_media(p.clone());
        }
        q
    }

    fn contents(q: &ViewerQueue) -> Vec<u8> {
        let mut v = Vec::new();
        q.each_queued(|s| v.extend_from_slice(s));
        v
    }

    #[test]
    fn equal_queues_share_a_pipe_and_others_go_the_ordinary_way() {
        let run: Vec<_> = (0..8).map(|i| packet(i, 1000 + i as usize * 300)).collect();
        let mut queues = vec![
            queue_of(&run),
            queue_of(&run),
            queue_of(&run),
            // Same count and size, other packets: must not be taken for the run.
            queue_of(
                &(0..8)
                    .map(|i| packet(i, 1000 + i as usize * 300))
                    .collect::<Vec<_>>(),
            ),
            // A lone queue.
            queue_of(&run[2..]),
        ];
        let want: Vec<Vec<u8>> = queues.iter().map(contents).collect();
        let mut sp = Splicer::new().unwrap();
        for q in &queues {
            sp.note(q);
        }
        let mut sent_by_pipe = 0;
        for (q, want) in queues.iter_mut().zip(&want) {
            let (server, mut client) = pair();
            let mut written = 0;
            match sp.send(&server, q, &mut written) {
                Some(r) => {
                    assert!(r.unwrap(), "a fresh socket takes it all");
                    assert!(q.is_empty());
                    assert_eq!(written, want.len());
                    sent_by_pipe += 1;
                }
                None => assert_eq!(contents(q), *want, "untouched when not eligible"),
            }
            if q.is_empty() {
                assert_eq!(read_exact(&mut client, want.len()), *want);
            }
        }
        assert_eq!(sent_by_pipe, 3);
        sp.end_flush();
        // The next flush starts from empty pipes: the same run goes again, whole.
        let mut again = [queue_of(&run), queue_of(&run)];
        for q in &again {
            sp.note(q);
        }
        for q in &mut again {
            let (server, mut client) = pair();
            let mut written = 0;
            assert!(sp.send(&server, q, &mut written).unwrap().unwrap());
            assert_eq!(read_exact(&mut client, want[0].len()), want[0]);
        }
        sp.end_flush();
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_signal() {
        let run: Vec<_> = (0..4).map(|i| packet(i, 4000)).collect();
        let (server, client) = pair();
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        let mut error = None;
        for _ in 0..20 {
            let mut sp = Splicer::new().unwrap();
            let (mut mine, other) = (queue_of(&run), queue_of(&run));
            sp.note(&mine);
            sp.note(&other);
            let mut written = 0;
            match sp.send(&server, &mut mine, &mut written) {
                Some(Err(e)) => {
                    error = Some(e);
                    break;
                }
                Some(Ok(_)) => {}
                None => panic!("not sent through the pipe"),
            }
            sp.end_flush();
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = error.expect("writing to a closed peer never failed");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }

    #[test]
    fn a_full_socket_keeps_the_rest_queued_and_the_byte_stream_whole() {
        // Runs large enough to fill a socket whose peer does not read.
        let run: Vec<_> = (0..16).map(|i| packet(i, 60_000)).collect();
        let (server, mut client) = pair();
        let mut stream = Vec::new();
        let mut received = Vec::new();
        let mut blocked = false;
        for _round in 0..20 {
            let mut mine = queue_of(&run);
            let other = queue_of(&run);
            stream.extend(contents(&mine));
            let mut sp = Splicer::new().unwrap();
            sp.note(&mine);
            sp.note(&other);
            let mut written = 0;
            match sp.send(&server, &mut mine, &mut written) {
                Some(Ok(true)) => assert!(mine.is_empty()),
                Some(Ok(false)) => {
                    blocked = true;
                    // Drain the peer, then the rest goes the ordinary way, exactly.
                    while !mine.is_empty() {
                        let mut buf = vec![0; 1 << 20];
                        let n = client.read(&mut buf).unwrap();
                        received.extend_from_slice(&buf[..n]);
                        let mut w = &server;
                        let _ = mine.write_to(&mut w);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
            sp.end_flush();
            if blocked {
                break;
            }
        }
        assert!(blocked, "the socket never filled");
        while received.len() < stream.len() {
            let mut buf = vec![0; 1 << 20];
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0);
            received.extend_from_slice(&buf[..n]);
        }
        assert_eq!(received.len(), stream.len());
        assert!(received == stream, "bytes differ");
    }

    #[test]
    fn followers_with_the_same_packets_share_one_pipe_from_the_log() {
        use crate::hub::{Hub, HubConfig, OutputForm};
        use crate::media::frame::{Frame, TAG_AUDIO, TAG_VIDEO};
        use crate::media::StreamKey;
        let flv = OutputForm::HttpFlv {
            chunked: false,
            track: 0,
            aac: false,
        };
        let f = |tag, t: u32, data: Vec<u8>| Frame::parse(tag, t, Bytes::from(data)).unwrap();
        let key = StreamKey::new("live", "s").unwrap();
        let mut hub = Hub::new(HubConfig::default());
        let h = hub.publish(&key, 1, 0).unwrap().handle;
        hub.frame(h, 1, f(TAG_VIDEO, 0, vec![0x17, 0, 0, 0, 0, 1, 0x64]), 0);
        hub.frame(h, 1, f(TAG_VIDEO, 0, vec![0x17, 1, 0, 0, 0, 0xaa]), 0);
        // Three followers at the live edge, each with a socket.
        let mut viewers = Vec::new();
        for token in 0..3 {
            let (id, _) = hub.add_viewer(&key, flv, token, 0);
            hub.start_viewer(id);
            let q = &mut hub.viewer(id).unwrap().queue;
            let mut primed = Vec::new();
            while q.write_to(&mut primed).unwrap() > 0 {}
            hub.follow(id);
            let (server, client) = pair();
            viewers.push((id, server, client));
        }
        let mut packets = Vec::new();
        for i in 1..=6u32 {
            let frame = if i % 2 == 0 {
                f(TAG_AUDIO, i * 40, vec![0xaf, 1, i as u8, 2, 3])
            } else {
                f(
                    TAG_VIDEO,
                    i * 40,
                    [0x27, 1, 0, 0, 0]
                        .into_iter()
                        .chain([i as u8; 300])
                        .collect(),
                )
            };
            let out = hub.frame(h, 1, frame, u64::from(i * 40));
            assert!(out.too_slow.is_empty());
        }
        let mut sp = Splicer::new().unwrap();
        for (id, server, client) in &mut viewers {
            let before = hub.viewer_ref(*id).unwrap().stats().bytes_sent;
            let edge = hub.edge(*id).expect("a follower with packets pending");
            if packets.is_empty() {
                // The first one: the others have the same packets pending.
                assert!(edge.shared);
            }
            let total = edge.bytes();
            let n = sp.send_edge(server, &edge).expect("shared").unwrap();
            assert_eq!(n, total, "a fresh socket takes it all");
            hub.edge_written(*id, n, total);
            assert!(hub.is_following(*id) && hub.edge(*id).is_none());
            let sent = hub.viewer_ref(*id).unwrap().stats().bytes_sent - before;
            assert_eq!(sent as usize, total, "counted as sent");
            let got = read_exact(client, total);
            if packets.is_empty() {
                packets = got;
            } else {
                assert_eq!(got, packets);
            }
        }
        assert_eq!(sp.loaded, 1, "one pipe for the three");
        sp.end_flush();
        assert!(sp.edges.is_empty() && sp.loaded == 0);
    }
}
