//! `Conn`: one accepted socket and what it is doing. The state is an enum named for what the
//! connection expects next; the loop in `server` drives it.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::TcpStream;

use super::outq::OutQueue;
use crate::http::ws::WsSession;
use crate::hub::{StreamHandle, ViewerId};
use crate::media::StreamKey;
use crate::rtmp::session::ServerSession;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Rtmp,
    /// Live FLV, the API and static files.
    Http,
    /// Static files only.
    Web,
}

/// What an RTMP connection has become after `publish` or `play`.
#[derive(Debug)]
pub enum RtmpRole {
    /// Connected, no stream yet.
    Idle,
    /// Publishes the hub stream `handle` (the hub knows its key).
    Publisher {
        handle: StreamHandle,
        stream_id: u32,
    },
    Player {
        viewer: ViewerId,
        stream_id: u32,
    },
    /// A publish or play waiting for the `--on-publish`/`--on-play` hook (input not read).
    Judging {
        publish: bool,
        request_id: u32,
        stream_id: u32,
        /// The raw publish/play name (with its query; never logged).
        name: String,
    },
}

pub struct RtmpConn {
    pub session: ServerSession,
    /// The connect command's app and tcUrl, raw (a `?query` may carry a token; never logged).
    pub app: String,
    pub tc_url: Option<String>,
    pub role: RtmpRole,
}

pub enum ConnState {
    Rtmp(Box<RtmpConn>),
    /// Waiting for (the next) request head; `served` counts requests on this connection.
    HttpHead {
        served: u32,
    },
    /// A live request waiting for the `--on-play` hook; answered by `Server::judged`.
    Judging {
        key: StreamKey,
        req: Box<crate::http::request::Request>,
    },
    /// An HTTP-FLV viewer; input is read and dropped.
    HttpFlv {
        viewer: ViewerId,
        chunked: bool,
    },
    /// A WS-FLV viewer.
    WsFlv {
        viewer: ViewerId,
        ws: Box<WsSession>,
    },
    /// FLV gateway: asked for a stream whose upstream pull has not answered yet; the request
    /// is answered (as a viewer, or 404/503) once it has. Input is dropped meanwhile.
    Pending {
        key: StreamKey,
        req: Box<crate::http::request::Request>,
        since: Instant,
        /// The access-log entry, logged once the request is answered.
        access: Option<Access>,
    },
    /// An LL-HLS request parked until what it asks for exists (`server::llhls`, `origin::llhls`): answered when
    /// its stream's window wakes it, 503 at its deadline. Input is kept in `head` meanwhile.
    LlhlsWait(Box<crate::origin::llhls::Waiting>),
}

/// A response body read from a file as the socket drains: one chunk in memory at a time, or on
/// Linux none at all (sendfile).
pub struct FileBody {
    pub file: std::fs::File,
    /// Where the next byte comes from (positioned reads: no seek, the file position is unused).
    pub offset: u64,
    pub remaining: u64,
}

/// Bytes of a file body read per chunk.
pub const FILE_CHUNK: usize = 64 * 1024;

impl FileBody {
    /// The next chunk, or None at the end. A file that shrank under us ends the body early,
    /// which the caller turns into a closed connection (the length was promised).
    pub fn next_chunk(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let want = (self.remaining as usize).min(FILE_CHUNK);
        let mut buf = vec![0u8; want];
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&self.file, &mut buf, self.offset)?;
        #[cfg(not(unix))]
        let n = {
            use std::io::{Read, Seek, SeekFrom};
            self.file.seek(SeekFrom::Start(self.offset))?;
            self.file.read(&mut buf)?
        };
        if n == 0 {
            return Err(shrank());
        }
        buf.truncate(n);
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(Some(buf.into()))
    }

    /// Copies up to `max` bytes of the file straight to `socket` in the kernel (sendfile(2)): no
    /// copy through user space, no buffer. Ok(0) at the end of the body; WouldBlock when the
    /// socket is full. Only when nothing else is queued before the body on this socket.
    #[cfg(target_os = "linux")]
    pub fn send_to(
        &mut self,
        socket: &impl std::os::fd::AsRawFd,
        max: usize,
    ) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        if self.remaining == 0 {
            return Ok(0);
        }
        let count = (self.remaining as usize).min(max);
        let mut off = self.offset as libc::off_t;
        // SAFETY: two descriptors we own for the duration of the call and a valid offset pointer;
        // the kernel moves the bytes and updates `off`.
        let n =
            unsafe { libc::sendfile(socket.as_raw_fd(), self.file.as_raw_fd(), &mut off, count) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n == 0 {
            return Err(shrank());
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n as usize)
    }
}

fn shrank() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "file shrank while being sent",
    )
}

impl FileBody {}

pub struct Conn {
    pub socket: TcpStream,
    /// The client: the socket's peer, or the address a trusted proxy named for it (a PROXY
    /// header; for HTTP, the current request's forwarded-for header). What limits, logs, hooks
    /// and the API see.
    pub peer: SocketAddr,
    /// Who sent the bytes: the socket's peer, or the client a PROXY header named. Its
    /// forwarded-for headers count only when it is a trusted proxy.
    pub hop: SocketAddr,
    /// The PROXY-protocol pre-stage (`--proxy-protocol`): Some until the header is settled;
    /// bytes read meanwhile go to it, not to TLS or the protocol.
    pub pre: Option<Box<super::proxied::Pre>>,
    pub listener: Listener,
    /// TLS between the socket and the protocol (RTMPS, HTTPS): ciphertext is read and written
    /// through it, and the zero-copy paths (splice, sendfile) are never taken.
    pub tls: Option<Box<crate::tls::Session>>,
    pub state: ConnState,
    /// HTTP head bytes not yet parsed.
    pub head: BytesMut,
    /// Output of a connection that is not (yet) a viewer. A viewer's output goes through the hub.
    pub out: OutQueue,
    /// The rest of a static file response, sent after `out` drains.
    pub body: Option<FileBody>,
    /// WRITABLE is registered: the socket refused bytes, the loop waits for it to drain.
    pub write_blocked: bool,
    /// Already listed for the next merged flush.
    pub dirty: bool,
    /// Close once the output is written (an error reply, an ended stream).
    pub close_after_flush: bool,
    /// Closed in this turn of the loop; the slab slot is freed at its end.
    pub closed: bool,
    pub created: Instant,
    pub last_input: Instant,
    /// When the first byte of the HTTP head now in `head` arrived: the header timeout runs from
    /// there, so a head trickled a byte at a time cannot hold the connection open.
    pub head_started: Instant,
    /// When an HTTP answer was queued or last made progress on the socket (send timeout).
    pub last_output: Instant,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Slow-viewer skips already logged.
    pub skips_logged: u64,
    /// A publisher held back for a recorder that is behind: its socket is not read.
    pub held: bool,
    /// Waiting for a hook's verdict on its publish or play: its socket is not read.
    pub judging: bool,
    /// Since when its input is not read because its private replies are over the bound.
    pub out_full_since: Option<Instant>,
    /// The access-log entry of the response being sent, written once it is all out.
    pub access: Option<Access>,
    /// Tells this connection from an earlier one in the same slab slot (its timers carry it).
    pub generation: u64,
    /// When its earliest pending timer entry fires (ms on the loop's clock), if one is set.
    pub timer_at: Option<u64>,
    /// In the sweep's list of viewers that fell behind (`Server::log_skips`).
    pub skip_watched: bool,
}

/// What the access log needs about one request.
pub struct Access {
    pub request_line: String,
    pub status: u16,
    pub bytes: u64,
    pub wall: std::time::SystemTime,
    pub started: Instant,
}

impl Conn {
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        listener: Listener,
        tls: Option<Box<crate::tls::Session>>,
        state: ConnState,
        now: Instant,
    ) -> Conn {
        Conn {
            socket,
            peer,
            hop: peer,
            pre: None,
            listener,
            tls,
            state,
            head: BytesMut::new(),
            out: OutQueue::default(),
            body: None,
            write_blocked: false,
            dirty: false,
            close_after_flush: false,
            closed: false,
            created: now,
            last_input: now,
            head_started: now,
            last_output: now,
            bytes_in: 0,
            bytes_out: 0,
            skips_logged: 0,
            held: false,
            judging: false,
            out_full_since: None,
            access: None,
            generation: 0,
            timer_at: None,
            skip_watched: false,
        }
    }

    /// The hub viewer this connection feeds, if it is a player.
    pub fn viewer(&self) -> Option<ViewerId> {
        match &self.state {
            ConnState::Rtmp(r) => match r.role {
                RtmpRole::Player { viewer, .. } => Some(viewer),
                _ => None,
            },
            ConnState::HttpFlv { viewer, .. } | ConnState::WsFlv { viewer, .. } => Some(*viewer),
            ConnState::HttpHead { .. }
            | ConnState::Pending { .. }
            | ConnState::Judging { .. }
            | ConnState::LlhlsWait(_) => None,
        }
    }

    /// A label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        let tls = self.tls.is_some();
        match &self.state {
            ConnState::Rtmp(r) => match (&r.role, tls) {
                (RtmpRole::Idle | RtmpRole::Judging { .. }, false) => "rtmp",
                (RtmpRole::Idle | RtmpRole::Judging { .. }, true) => "rtmps",
                (RtmpRole::Publisher { .. }, false) => "rtmp-publisher",
                (RtmpRole::Publisher { .. }, true) => "rtmps-publisher",
                (RtmpRole::Player { .. }, false) => "rtmp-player",
                (RtmpRole::Player { .. }, true) => "rtmps-player",
            },
            ConnState::HttpHead { .. } if tls => "https",
            ConnState::HttpHead { .. } => "http",
            ConnState::Pending { .. } => "http-pending",
            ConnState::Judging { .. } => "http-judging",
            ConnState::LlhlsWait(_) => "llhls-waiting",
            ConnState::HttpFlv { .. } if tls => "https-flv",
            ConnState::HttpFlv { .. } => "http-flv",
            ConnState::WsFlv { .. } if tls => "wss-flv",
            ConnState::WsFlv { .. } => "ws-flv",
        }
    }
}
