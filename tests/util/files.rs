//! Helpers for the static-file tests: `rtmpd file-gateway` on port 0 (killed on drop), temporary
//! roots removed on drop, a pipelining HTTP reader that keeps the bytes after each response, and
//! the process facts the memory and connection checks read from /proc.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rtmpd::codec::http_head::{self, Framing};

use super::proc::Proc;
use super::server::binary;

/// The static-file tests' name for a temporary root: the tests' one `TempDir`.
pub type TempRoot = super::TempDir;

/// `n` bytes that differ at every offset that matters for a slice check (not periodic at 256).
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// `rtmpd file-gateway 127.0.0.1 0 ROOT [extra...]`, waiting for its listening line.
pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Gateway {
    pub fn start(root: &Path, extra: &[&str]) -> Gateway {
        let mut cmd = Command::new(binary());
        cmd.arg("file-gateway")
            .arg("127.0.0.1")
            .arg("0")
            .arg(root)
            .args(extra);
        let mut proc = Proc::spawn(cmd);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let err = proc.stderr();
            if let Some(addr) = listen_addr(&err, "Web listening on ") {
                return Gateway { proc, addr };
            }
            if !proc.is_running() || Instant::now() >= deadline {
                proc.kill();
                panic!(
                    "file gateway on {} did not start; stderr:\n{}",
                    root.display(),
                    proc.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// Waits until stderr holds a line containing `needle`.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.stderr().lines().find(|l| l.contains(needle)) {
                return Some(l.to_string());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn listen_addr(text: &str, marker: &str) -> Option<SocketAddr> {
    let line = text.lines().find(|l| l.contains(marker))?;
    let rest = &line[line.find(marker)? + marker.len()..];
    let mut addr: SocketAddr = rest.split_whitespace().next()?.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    Some(addr)
}

/// One response read by `PipeReader`: head as text, headers, and exactly Content-Length body bytes.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads responses one after another from one connection, keeping whatever follows each one, so
/// pipelined answers can be checked byte for byte. Bodies are framed by Content-Length only (the
/// static service never sends chunked bodies).
pub struct PipeReader {
    pub sock: TcpStream,
    buf: Vec<u8>,
}

impl PipeReader {
    pub fn new(sock: TcpStream) -> PipeReader {
        PipeReader {
            sock,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("sending requests");
    }

    /// Bytes received but not yet consumed by `next`.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response timed out",
            ));
        }
        self.sock
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
        let mut tmp = [0u8; 64 * 1024];
        let n = self.sock.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// The next response; `head_only` when it answers a HEAD request.
    pub fn next(&mut self, head_only: bool, timeout: Duration) -> io::Result<Reply> {
        let deadline = Instant::now() + timeout;
        let (head, parsed) = loop {
            match http_head::parse_response(&self.buf, 64 * 1024) {
                Ok(Some(h)) => break (String::from_utf8_lossy(&self.buf[..h.len]).into_owned(), h),
                Ok(None) => {
                    if self.fill(deadline)? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("closed before a response head ({} bytes)", self.buf.len()),
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{e}: {:?}",
                            String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                        ),
                    ))
                }
            }
        };
        let (status, head_len) = (parsed.status, parsed.len);
        let len: usize = match parsed.framing(head_only) {
            Framing::Empty => 0,
            Framing::Length(n) => usize::try_from(n)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "Content-Length"))?,
            Framing::Chunked | Framing::Close => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no Content-Length",
                ))
            }
        };
        let headers = parsed.headers;
        while self.buf.len() < head_len + len {
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed after {} of {len} body bytes",
                        self.buf.len() - head_len
                    ),
                ));
            }
        }
        let body = self.buf[head_len..head_len + len].to_vec();
        self.buf.drain(..head_len + len);
        Ok(Reply {
            status,
            head,
            headers,
            body,
        })
    }

    /// True when the server closed the connection within `timeout` with nothing more sent.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.fill(deadline) {
                Ok(0) => return self.buf.is_empty(),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return self.buf.is_empty(),
            }
        }
        false
    }
}

/// A field of /proc/PID/status in kB (`VmHWM`, `VmRSS`).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Open descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
