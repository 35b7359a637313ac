//! Zero-copy fan-out on Linux. At a merged flush, the viewers of one form that are at the live
//! edge hold the same packets. Those bytes are written once into a pipe, and each such viewer
//! gets them with `tee(2)` into a scratch pipe and `splice(2)` from there to its socket: the
//! kernel hands the same pipe pages to every socket instead of copying the bytes into new
//! buffers for each viewer. Anything else (a lone viewer, control bytes queued, a partly
//! written packet, a queue larger than a pipe) goes the ordinary way, one vectored `sendmsg`.
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

/// Pipe size asked for (the default per-user limit for unprivileged processes, 1 MiB); a run
/// larger than the size granted is written the ordinary way.
const PIPE_BYTES: usize = 1 << 20;
/// Pipes loaded at once (one per group of viewers with equal queues, usually one per stream
/// and form); groups beyond it are written the ordinary way.
const MAX_PIPES: usize = 32;
/// Packets in one run: writing it into a pipe takes one `writev` of this many slices.
const MAX_RUN_PACKETS: usize = 512;

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
    junk: Vec<u8>,
}

impl Splicer {
    pub fn new() -> io::Result<Splicer> {
        Ok(Splicer {
            pipes: Vec::new(),
            loaded: 0,
            scratch: Pipe::new()?,
            groups: HashMap::default(),
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
            None => match load(&mut self.pipes, &mut self.loaded, queue, run.bytes) {
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
        let pipe = &self.pipes[index];
        // SAFETY: tee and splice on descriptors we own (the socket lives for the call).
        let teed = unsafe {
            libc::tee(
                pipe.read.as_raw_fd(),
                self.scratch.write.as_raw_fd(),
                run.bytes,
                libc::SPLICE_F_NONBLOCK,
            )
        };
        if teed != run.bytes as isize {
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
                run.bytes,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            )
        };
        if sent < 0 {
            let e = io::Error::last_os_error();
            self.scratch.discard(run.bytes, &mut self.junk);
            return Some(match e.kind() {
                io::ErrorKind::WouldBlock => Ok(false),
                // EINTR: nothing was sent; the rest stays queued for the next turn.
                io::ErrorKind::Interrupted => Ok(false),
                _ => Err(e),
            });
        }
        let sent = sent as usize;
        if sent < run.bytes {
            self.scratch.discard(run.bytes - sent, &mut self.junk);
        }
        queue.advance(sent);
        *written += sent;
        Some(Ok(sent == run.bytes))
    }

    /// Ends a flush: the loaded pipes are emptied for the next one.
    pub fn end_flush(&mut self) {
        for pipe in &mut self.pipes[..self.loaded] {
            let n = pipe.capacity;
            pipe.discard(n, &mut self.junk);
        }
        self.loaded = 0;
        self.groups.clear();
    }
}

/// Writes the queue's bytes into the next free pipe of the pool (made when needed).
fn load(
    pipes: &mut Vec<Pipe>,
    loaded: &mut usize,
    queue: &ViewerQueue,
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
    let mut slices = Vec::with_capacity(16);
    queue.each_queued(|s| slices.push(IoSlice::new(s)));
    if slices.len() > MAX_RUN_PACKETS {
        return None;
    }
    // The pipe is empty and large enough, so one write takes it all; anything else is a
    // failure, and the pipe is emptied again.
    *loaded += 1;
    match pipe.write.write_vectored(&slices) {
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
}
