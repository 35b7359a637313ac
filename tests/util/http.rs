//! A raw-TCP HTTP client for the tests: exact control over the request bytes and the version,
//! the response head as sent, chunked bodies decoded while streaming, and a clear record of how
//! the body ended (terminating chunk, EOF, or our own time limit). The head and chunk parsing
//! are the library's (`rtmpd::codec`), tested there at every split point.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rtmpd::codec::chunked::ChunkedDecoder;
use rtmpd::codec::http_head::{self, Framing};

/// Cap on what one test response may hold; a live stream of the fixtures is far below it.
const MAX_BODY: usize = 64 << 20;
/// Cap on a response head (the server's are well under 1 KiB).
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Still streaming when our time limit came.
    TimeLimit,
    /// The terminating zero-length chunk arrived (HTTP/1.1 live stream ended cleanly).
    LastChunk,
    /// Content-Length bytes arrived, or no body was expected (HEAD, 204, 304).
    Length,
    /// The server closed the connection (the end of a close-delimited body, or an abort).
    Eof,
    /// The connection was reset.
    Reset,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunk framing removed).
    pub body: Vec<u8>,
    pub chunked: bool,
    pub end: BodyEnd,
    /// Time from sending the request to the end of the head.
    pub head_time: Duration,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
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

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Sends `request` as is and reads the response until it ends or `max_duration` passes.
/// `head_only`: the request was HEAD (no body follows whatever the headers say).
pub fn http_exchange(
    addr: SocketAddr,
    request: &[u8],
    max_duration: Duration,
    head_only: bool,
) -> io::Result<HttpResponse> {
    let start = Instant::now();
    let deadline = start + max_duration;
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_nodelay(true)?;
    sock.write_all(request)?;
    read_response(&mut sock, start, deadline, head_only)
}

/// A byte stream whose reads can be given a timeout: a TCP socket, or TLS over one (`util::tls`).
pub trait TimedRead: Read {
    fn read_timeout_set(&mut self, t: Option<Duration>) -> io::Result<()>;
}

impl TimedRead for TcpStream {
    fn read_timeout_set(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

/// Reads one response from `sock` (already sent a request at `start`).
pub fn read_response(
    sock: &mut impl TimedRead,
    start: Instant,
    deadline: Instant,
    head_only: bool,
) -> io::Result<HttpResponse> {
    let mut raw: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut resp: Option<HttpResponse> = None;
    let mut chunked = ChunkedDecoder::new();
    let mut content_length: Option<u64> = None;
    loop {
        // Parse the head once it is complete.
        if resp.is_none() {
            match http_head::parse_response(&raw, MAX_HEAD) {
                Ok(Some(head)) => {
                    let framing = head.framing(head_only);
                    content_length = match framing {
                        Framing::Empty => Some(0),
                        Framing::Length(n) => Some(n),
                        Framing::Chunked | Framing::Close => None,
                    };
                    resp = Some(HttpResponse {
                        status: head.status,
                        minor_version: head.minor_version,
                        headers: head.headers,
                        body: Vec::new(),
                        chunked: framing == Framing::Chunked,
                        end: BodyEnd::TimeLimit,
                        head_time: start.elapsed(),
                    });
                    raw.drain(..head.len);
                }
                Ok(None) => {}
                Err(e) => return Err(bad(&e.to_string())),
            }
        }
        // Decode what we have of the body.
        if let Some(r) = resp.as_mut() {
            if r.chunked {
                let body = &mut r.body;
                let n = chunked
                    .decode(&raw, |d| body.extend_from_slice(d))
                    .map_err(|e| bad(&e.to_string()))?;
                raw.drain(..n);
                if chunked.is_done() {
                    r.end = BodyEnd::LastChunk;
                    return Ok(resp.unwrap());
                }
            } else {
                r.body.append(&mut raw);
                if let Some(len) = content_length {
                    if r.body.len() as u64 >= len {
                        r.body.truncate(len as usize);
                        r.end = BodyEnd::Length;
                        return Ok(resp.unwrap());
                    }
                }
            }
            if r.body.len() > MAX_BODY {
                return Err(bad("response body over the test cap"));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return match resp {
                Some(r) => Ok(r),
                None => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no complete response head in time",
                )),
            };
        }
        sock.read_timeout_set(Some((deadline - now).min(Duration::from_millis(200))))?;
        let end = match sock.read(&mut buf) {
            Ok(0) => Some(BodyEnd::Eof),
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                None
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Some(BodyEnd::Reset),
            Err(e) => return Err(e),
        };
        if let Some(end) = end {
            return match resp {
                Some(mut r) => {
                    if !r.chunked {
                        r.body.append(&mut raw);
                    }
                    r.end = end;
                    Ok(r)
                }
                None => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection ended before a response head ({} bytes: {:?})",
                        raw.len(),
                        String::from_utf8_lossy(&raw[..raw.len().min(200)])
                    ),
                )),
            };
        }
    }
}

/// `METHOD PATH HTTP/1.x` with Host and the extra header lines.
pub fn request_bytes(method: &str, path: &str, minor: u8, extra_headers: &[&str]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.{minor}\r\nHost: 127.0.0.1\r\n");
    for h in extra_headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// GET over HTTP/1.1, reading until the response ends or `max_duration` passes.
pub fn http_get(addr: SocketAddr, path: &str, max_duration: Duration) -> HttpResponse {
    http_exchange(
        addr,
        &request_bytes("GET", path, 1, &[]),
        max_duration,
        false,
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Any method and version, with extra header lines.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    minor: u8,
    headers: &[&str],
    max_duration: Duration,
) -> HttpResponse {
    http_exchange(
        addr,
        &request_bytes(method, path, minor, headers),
        max_duration,
        method == "HEAD",
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The FLV bytes of `GET path` over HTTP/1.1, for at most `max_duration`.
pub fn http_get_flv(addr: SocketAddr, path: &str, max_duration: Duration) -> Vec<u8> {
    http_get(addr, path, max_duration).body
}

/// GET `path` as soon as the stream is live: retries while the answer is 404 (the publisher is
/// not there yet) for up to `wait`, then streams for at most `max_duration`.
pub fn http_get_when_live(
    addr: SocketAddr,
    path: &str,
    minor: u8,
    wait: Duration,
    max_duration: Duration,
) -> HttpResponse {
    let give_up = Instant::now() + wait;
    loop {
        let start = Instant::now();
        let r = http_exchange(
            addr,
            &request_bytes("GET", path, minor, &[]),
            max_duration,
            false,
        )
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        if r.status != 404 || Instant::now() >= give_up {
            return r;
        }
        let spent = start.elapsed();
        if spent < Duration::from_millis(30) {
            std::thread::sleep(Duration::from_millis(30) - spent);
        }
    }
}

/// `http_get_when_live` on a thread of its own (HTTP/1.1): a viewer that joins as soon as the
/// stream is live, reads it for up to `max_duration`, and hands back what it got.
pub fn spawn_live_get(
    addr: SocketAddr,
    path: &str,
    wait: Duration,
    max_duration: Duration,
) -> std::thread::JoinHandle<HttpResponse> {
    let path = path.to_string();
    std::thread::spawn(move || http_get_when_live(addr, &path, 1, wait, max_duration))
}

/// Waits until `GET path` stops answering 404 (with a short read), or `wait` passes.
pub fn wait_until_live(addr: SocketAddr, path: &str, wait: Duration) -> bool {
    let r = http_get_when_live(addr, path, 1, wait, Duration::from_millis(200));
    r.status == 200
}

/// A TCP connection for hand-made traffic.
pub fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s
}

/// A TCP connection whose receive buffer is set to `rcvbuf` bytes before connecting, so that a
/// client that never reads fills up quickly (the kernel otherwise buffers megabytes).
#[cfg(unix)]
pub fn raw_connect_small_rcvbuf(addr: SocketAddr, rcvbuf: i32) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 expected, got {addr}")
    };
    // SAFETY: plain socket calls on a descriptor we own; the sockaddr is fully initialised and
    // its size passed exactly; the descriptor is handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let r = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &rcvbuf as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = v4.port().to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
        let r = libc::connect(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "connect {addr}: {}", io::Error::last_os_error());
        stream
    }
}

/// Reads and discards until EOF or reset; true if that came within `timeout` (the server closed
/// the connection), false if data kept coming or the socket stayed silent and open.
pub fn closed_within(sock: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let _ = sock.set_read_timeout(Some((deadline - now).min(Duration::from_millis(200))));
        match sock.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return true,
        }
    }
}

/// A TCP connection to `addr` from the local address `src` (any of 127.0.0.0/8 on Linux), so a
/// test can be a client from another loopback address: a trusted proxy at 127.0.0.2 while the
/// rest of the test connects from 127.0.0.1.
#[cfg(unix)]
pub fn connect_from(src: std::net::Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 expected, got {addr}")
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| {
        // SAFETY: sockaddr_in is plain data; zeroed is a valid value to fill.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
        sa
    };
    let (from, to) = (sockaddr(src, 0), sockaddr(*v4.ip(), v4.port()));
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own, handed to TcpStream (which closes it);
    // the sockaddrs are fully initialised and their size passed exactly.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let r = libc::bind(fd, &from as *const _ as *const libc::sockaddr, len);
        assert_eq!(r, 0, "bind {src}: {}", io::Error::last_os_error());
        let r = libc::connect(fd, &to as *const _ as *const libc::sockaddr, len);
        assert_eq!(r, 0, "connect {addr}: {}", io::Error::last_os_error());
        stream.set_nodelay(true).unwrap();
        stream
    }
}
