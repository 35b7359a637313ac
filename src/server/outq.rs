//! `OutQueue`: the output of a connection that is not a viewer (RTMP publishers, HTTP answers):
//! whole `Bytes` in order, with exact partial-write bookkeeping. Viewers use the hub's queue,
//! which adds the slow-viewer policy; both are written through the `Outbox` trait.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;

/// Something the loop can write to a socket with vectored writes.
pub trait Outbox {
    /// One vectored write of what is queued; returns the bytes written (0 when empty).
    fn write_to(&mut self, w: &mut dyn Write) -> io::Result<usize>;
    fn is_empty(&self) -> bool;
}

/// A socket seen as a `Write` whose vectored writes are one `sendmsg(2)` on Unix: the socket
/// layer directly, without the file layer `writev(2)` goes through, and `MSG_NOSIGNAL` where
/// the system has it so a closed peer is an error, never a signal (Rust programs also ignore
/// SIGPIPE from the start). Elsewhere, the stream's own vectored write.
pub struct SocketWriter<'a>(pub &'a mut mio::net::TcpStream);

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(all(
    unix,
    not(any(target_os = "linux", target_os = "android", target_os = "freebsd"))
))]
const SEND_FLAGS: libc::c_int = 0;

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    #[cfg(unix)]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix (std documents it); the
        // slices outlive the call, and msghdr is plain data, zeroed then filled.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len().min(libc::c_int::MAX as usize) as _;
            libc::sendmsg(self.0.as_raw_fd(), &msg, SEND_FLAGS)
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    #[cfg(not(unix))]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Slices per vectored write (well under IOV_MAX).
const MAX_IOV: usize = 64;

#[derive(Default)]
pub struct OutQueue {
    items: VecDeque<Bytes>,
    /// Bytes of the front item already written.
    offset: usize,
    len: usize,
}

impl OutQueue {
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.items.push_back(b);
        }
    }

    /// Bytes still to write (`Outbox::is_empty` says whether anything is queued).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len - self.offset
    }
}

impl OutQueue {
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut k = 0;
        for (i, b) in self.items.iter().take(out.len()).enumerate() {
            let skip = if i == 0 { self.offset } else { 0 };
            out[k] = IoSlice::new(&b[skip..]);
            k += 1;
        }
        k
    }

    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.items.front() else {
                return;
            };
            let left = front.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.len -= front.len();
            self.offset = 0;
            self.items.pop_front();
        }
    }
}

impl Outbox for OutQueue {
    fn write_to(&mut self, w: &mut dyn Write) -> io::Result<usize> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let k = self.slices(&mut iov);
        if k == 0 {
            return Ok(0);
        }
        let n = w.write_vectored(&iov[..k])?;
        self.consume(n);
        Ok(n)
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Outbox for crate::hub::queue::ViewerQueue {
    fn write_to(&mut self, w: &mut dyn Write) -> io::Result<usize> {
        crate::hub::queue::ViewerQueue::write_to(self, w)
    }

    fn is_empty(&self) -> bool {
        crate::hub::queue::ViewerQueue::is_empty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most `step` bytes per write.
    struct Short {
        step: usize,
        got: Vec<u8>,
    }

    impl Write for Short {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.step);
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_reproduce_the_stream() {
        let parts: Vec<Bytes> = (0..20u8)
            .map(|i| Bytes::from(vec![i; i as usize % 7 + 1]))
            .collect();
        let whole: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        for step in 1..9 {
            let mut q = OutQueue::default();
            parts.iter().for_each(|p| q.push(p.clone()));
            let mut w = Short {
                step,
                got: Vec::new(),
            };
            while !q.is_empty() {
                q.write_to(&mut w).unwrap();
            }
            assert_eq!(w.got, whole, "step {step}");
            assert_eq!(q.len(), 0);
        }
    }
}
