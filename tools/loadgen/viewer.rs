//! One viewer: its socket (mio, non-blocking), the protocol it plays (RTMP client session,
//! HTTP-FLV response, WS-FLV upgrade and frames), and what it feeds into its `Stats`. Over TLS
//! (https://, wss://) a `rustls::ClientConnection` sits between the socket and the same
//! HTTP/WebSocket code: ciphertext in, plaintext to the parsers; requests out through rustls.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rtmpd::codec::http_head;
use rtmpd::rtmp::client::{ClientEvent, ClientSession};

use rustls::ClientConnection;

use crate::args::{Proto, Target};
use crate::body::{ws_frame, Body, WsFrames, WsOutcome};
use crate::flv::FlvReader;
use crate::stats::Stats;
use crate::sys::set_linger_zero;
use crate::tls;
use crate::HEAD_CAP;

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Phase {
    Connecting,
    Active,
    Done,
}

pub(crate) enum ProtoState {
    Rtmp {
        session: ClientSession,
    },
    Http {
        head: Vec<u8>,
        body: Option<Body>,
        flv: FlvReader,
    },
    Ws {
        key: String,
        head: Vec<u8>,
        upgraded: bool,
        frames: WsFrames,
        flv: FlvReader,
    },
}

pub(crate) struct Viewer {
    pub(crate) sock: Option<TcpStream>,
    pub(crate) phase: Phase,
    pub(crate) proto: ProtoState,
    pub(crate) out: Vec<u8>,
    pub(crate) out_pos: usize,
    pub(crate) write_interest: bool,
    pub(crate) token: Token,
    pub(crate) stats: Stats,
    pub(crate) rng: u64,
    /// https:// and wss://: the TLS client between the socket and `proto`.
    pub(crate) tls: Option<Box<ClientConnection>>,
}

impl Viewer {
    pub(crate) fn start(
        target: &Target,
        token: Token,
        registry: &Registry,
        seed: u64,
    ) -> Result<Viewer, String> {
        let mut sock = match TcpStream::connect(target.addr) {
            Ok(s) => s,
            Err(e) => return Err(format!("connect: {e}")),
        };
        if let Err(e) = registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
        {
            return Err(format!("register: {e}"));
        }
        Viewer::new(target, token, seed, Some(sock))
    }

    /// A viewer in `Phase::Connecting` on `sock` (none: driven in memory, by the tests).
    pub(crate) fn new(
        target: &Target,
        token: Token,
        seed: u64,
        sock: Option<TcpStream>,
    ) -> Result<Viewer, String> {
        let now = Instant::now();
        let proto = match target.proto {
            Proto::Rtmp => ProtoState::Rtmp {
                session: ClientSession::new(seed),
            },
            Proto::HttpFlv | Proto::HttpsFlv => ProtoState::Http {
                head: Vec::new(),
                body: None,
                flv: FlvReader::new(),
            },
            Proto::WsFlv | Proto::WssFlv => ProtoState::Ws {
                key: tungstenite::handshake::client::generate_key(),
                head: Vec::new(),
                upgraded: false,
                frames: WsFrames::default(),
                flv: FlvReader::new(),
            },
            Proto::Whep => return Err("whep:// viewers are run by whep.rs".into()),
        };
        let tls = match &target.tls {
            Some(t) => Some(tls::connection(&t.config, &t.name)?),
            None => None,
        };
        Ok(Viewer {
            sock,
            phase: Phase::Connecting,
            proto,
            out: Vec::new(),
            out_pos: 0,
            write_interest: true,
            token,
            stats: Stats::new(now),
            rng: seed | 1,
            tls,
        })
    }

    pub(crate) fn fail(&mut self, registry: &Registry, why: String) {
        if self.stats.error.is_none() {
            self.stats.error = Some(why);
        }
        self.close(registry);
    }

    pub(crate) fn close(&mut self, registry: &Registry) {
        if let Some(mut sock) = self.sock.take() {
            let _ = registry.deregister(&mut sock);
            set_linger_zero(&sock);
        }
        self.phase = Phase::Done;
    }

    pub(crate) fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64: masks only need to vary, not to be secret.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_be_bytes()
    }

    pub(crate) fn on_event(
        &mut self,
        ev: &mio::event::Event,
        target: &Target,
        buf: &mut [u8],
        registry: &Registry,
    ) {
        if self.phase == Phase::Done {
            return;
        }
        if self.phase == Phase::Connecting {
            match self.finish_connect(target) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(registry, e),
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            if let Err(e) = self.read_all(buf, ev.is_read_closed(), target) {
                return self.fail(registry, e);
            }
        }
        if let Err(e) = self.flush() {
            return self.fail(registry, e);
        }
        self.update_interest(registry);
    }

    /// `Ok(false)` while the connect is still in progress (a spurious wakeup).
    pub(crate) fn finish_connect(&mut self, target: &Target) -> Result<bool, String> {
        let Some(sock) = self.sock.as_ref() else {
            return Ok(false);
        };
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            return Err(format!("connect: {e}"));
        }
        match sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(format!("connect: {e}")),
        }
        let _ = sock.set_nodelay(true);
        self.on_connected(target);
        Ok(true)
    }

    /// The TCP connection is up: queue the first request (over TLS: rustls holds it until the
    /// handshake, whose ClientHello it has already queued, has ended).
    pub(crate) fn on_connected(&mut self, target: &Target) {
        self.phase = Phase::Active;
        match &mut self.proto {
            ProtoState::Rtmp { session } => {
                session.connect(
                    &target.app,
                    &format!("rtmp://{}/{}", target.authority, target.app),
                );
                self.out.extend_from_slice(&session.take_output());
            }
            ProtoState::Http { .. } => {
                let req = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rtmpd-load\r\nAccept: */*\r\n\r\n",
                    target.path, target.authority
                );
                self.out.extend_from_slice(req.as_bytes());
            }
            ProtoState::Ws { key, .. } => {
                let req = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rtmpd-load\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    target.path, target.authority
                );
                self.out.extend_from_slice(req.as_bytes());
            }
        }
    }

    pub(crate) fn read_all(
        &mut self,
        buf: &mut [u8],
        peer_closed: bool,
        target: &Target,
    ) -> Result<(), String> {
        // Over TLS, half the buffer for ciphertext and half for the plaintext taken out of
        // rustls piece by piece; otherwise all of it for the socket.
        let split = if self.tls.is_some() {
            buf.len() / 2
        } else {
            buf.len()
        };
        let (buf, plain) = buf.split_at_mut(split);
        loop {
            let Some(sock) = self.sock.as_mut() else {
                return Ok(());
            };
            match sock.read(buf) {
                Ok(0) => return Err(self.eof_reason()),
                Ok(n) => {
                    let now = Instant::now();
                    self.ingest(&buf[..n], plain, now, target)?;
                    self.stats.end_read(now);
                    if self.phase == Phase::Done {
                        return Ok(());
                    }
                    // A short read emptied the socket; epoll reports the next arrival. This
                    // halves the read syscalls, which matters when the loadgen shares the CPU.
                    if n < buf.len() && !peer_closed {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Bytes read from the socket: straight to `feed`, or through TLS (`plain` holds one piece
    /// of plaintext at a time). `stats.bytes` counts what `feed` gets; `stats.wire_bytes`
    /// what the socket gave.
    pub(crate) fn ingest(
        &mut self,
        data: &[u8],
        plain: &mut [u8],
        now: Instant,
        target: &Target,
    ) -> Result<(), String> {
        self.stats.wire_bytes += data.len() as u64;
        let Some(mut conn) = self.tls.take() else {
            self.stats.bytes += data.len() as u64;
            return self.feed(data, now, target);
        };
        let r = tls::feed(&mut conn, data, plain, |p| {
            self.stats.bytes += p.len() as u64;
            self.feed(p, now, target)?;
            Ok(self.phase != Phase::Done)
        });
        self.tls = Some(conn);
        r
    }

    /// The negotiated TLS version and cipher suite, once the handshake has ended.
    pub(crate) fn tls_session(&self) -> Option<String> {
        self.tls.as_deref().and_then(tls::describe)
    }

    pub(crate) fn eof_reason(&self) -> String {
        if self.stats.ready.is_some() {
            "closed by the server while playing".into()
        } else {
            "closed by the server before playing".into()
        }
    }

    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        now: Instant,
        target: &Target,
    ) -> Result<(), String> {
        let stats = &mut self.stats;
        let out = &mut self.out;
        let ws = match &mut self.proto {
            ProtoState::Rtmp { session } => {
                return feed_rtmp(session, data, &target.stream, stats, out, now)
            }
            ProtoState::Http { head, body, flv } => {
                return feed_http(head, body, flv, data, stats, now)
            }
            ProtoState::Ws {
                key,
                head,
                upgraded,
                frames,
                flv,
            } => feed_ws(key, head, upgraded, frames, flv, data, stats, now)?,
        };
        for payload in ws.pongs {
            let mask = self.next_mask();
            self.out.extend_from_slice(&ws_frame(10, &payload, mask));
        }
        if ws.closed {
            return Err("WebSocket close from the server".into());
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> Result<(), String> {
        let Some(mut sock) = self.sock.take() else {
            return Ok(());
        };
        let r = self.write_out(&mut sock);
        self.sock = Some(sock);
        r
    }

    /// Queued output to `sink` until it would block: as it is, or through rustls (which takes
    /// the plaintext, bounded by `tls::BUFFER_LIMIT`, and gives the ciphertext to `sink`).
    pub(crate) fn write_out(&mut self, sink: &mut impl Write) -> Result<(), String> {
        if let Some(conn) = self.tls.as_mut() {
            while self.out_pos < self.out.len() {
                let n = tls::encrypt(conn, &self.out[self.out_pos..])?;
                if n == 0 {
                    break;
                }
                self.out_pos += n;
            }
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
            tls::transmit(conn, sink)?;
            return Ok(());
        }
        while self.out_pos < self.out.len() {
            match sink.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err("write: connection closed".into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }

    /// WRITABLE only while connecting or while output is queued.
    pub(crate) fn update_interest(&mut self, registry: &Registry) {
        let want = self.phase == Phase::Connecting
            || self.out_pos < self.out.len()
            || self.tls.as_ref().is_some_and(|c| c.wants_write());
        if want == self.write_interest {
            return;
        }
        if let Some(sock) = self.sock.as_mut() {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry.reregister(sock, self.token, interest).is_ok() {
                self.write_interest = want;
            }
        }
    }

    /// End of the run: a WebSocket viewer says goodbye with a masked close frame (best effort)
    /// and a FIN, so that the server reads the frame; everyone else resets (see
    /// `set_linger_zero`).
    pub(crate) fn finish(&mut self, registry: &Registry) {
        if let ProtoState::Ws { upgraded: true, .. } = self.proto {
            let mask = self.next_mask();
            let frame = ws_frame(8, &1000u16.to_be_bytes(), mask);
            // After whatever is queued (over TLS it must be: records go in order).
            self.out.extend_from_slice(&frame);
            let _ = self.flush();
            if let Some(mut sock) = self.sock.take() {
                let _ = registry.deregister(&mut sock);
            }
        }
        self.close(registry);
    }
}

pub(crate) fn feed_rtmp(
    session: &mut ClientSession,
    data: &[u8],
    stream: &str,
    stats: &mut Stats,
    out: &mut Vec<u8>,
    now: Instant,
) -> Result<(), String> {
    session
        .handle_input(data)
        .map_err(|e| format!("rtmp: {e}"))?;
    while let Some(ev) = session.poll_event() {
        match ev {
            ClientEvent::Connected => session.create_stream(),
            ClientEvent::StreamCreated { stream_id } => session.play(stream_id, stream),
            ClientEvent::Status { level, code, .. } => {
                if code == "NetStream.Play.Start" {
                    stats.mark_ready(now);
                } else if level == "error" || code == "NetStream.Play.UnpublishNotify" {
                    return Err(format!("rtmp status {code}"));
                }
            }
            ClientEvent::Media { frame, .. } => {
                stats.on_frame(frame.track, frame.key, frame.config, frame.dts, now)
            }
            ClientEvent::Error(e) => return Err(format!("rtmp _error: {e}")),
        }
    }
    out.extend_from_slice(&session.take_output());
    Ok(())
}

pub(crate) fn feed_http(
    head: &mut Vec<u8>,
    body: &mut Option<Body>,
    flv: &mut FlvReader,
    data: &[u8],
    stats: &mut Stats,
    now: Instant,
) -> Result<(), String> {
    let Some(b) = body else {
        head.extend_from_slice(data);
        let Some(h) = parse_head(head)? else {
            return Ok(());
        };
        if h.status != 200 {
            return Err(format!("HTTP {}", h.status));
        }
        stats.mark_ready(now);
        let rest = std::mem::take(head).split_off(h.len);
        *head = Vec::new();
        let b = body.insert(Body::new(h.framing(false)));
        return feed_body(b, flv, &rest, stats, now);
    };
    feed_body(b, flv, data, stats, now)
}

pub(crate) fn feed_body(
    body: &mut Body,
    flv: &mut FlvReader,
    data: &[u8],
    stats: &mut Stats,
    now: Instant,
) -> Result<(), String> {
    if body.feed(data, |part| flv.feed(part, stats, now))? {
        return Err("response ended by the server".into());
    }
    Ok(())
}

/// The response head, once complete, under `HEAD_CAP`.
fn parse_head(buf: &[u8]) -> Result<Option<http_head::ResponseHead>, String> {
    http_head::parse_response(buf, HEAD_CAP).map_err(|e| e.to_string())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn feed_ws(
    key: &str,
    head: &mut Vec<u8>,
    upgraded: &mut bool,
    frames: &mut WsFrames,
    flv: &mut FlvReader,
    data: &[u8],
    stats: &mut Stats,
    now: Instant,
) -> Result<WsOutcome, String> {
    if *upgraded {
        return frames.feed(data, |d| flv.feed(d, stats, now));
    }
    head.extend_from_slice(data);
    let Some(h) = parse_head(head)? else {
        return Ok(WsOutcome::default());
    };
    if h.status != 101 {
        return Err(format!("HTTP {} instead of 101", h.status));
    }
    let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if h.header("sec-websocket-accept") != Some(want.as_str()) {
        return Err("bad Sec-WebSocket-Accept".into());
    }
    *upgraded = true;
    stats.mark_ready(now);
    let rest = std::mem::take(head).split_off(h.len);
    frames.feed(&rest, |d| flv.feed(d, stats, now))
}
