//! Moving bytes between sockets and queues: reads until WouldBlock (or a budget, or a held
//! publisher), writes with vectored writes (a merged, spliced flush for viewers; sendfile for
//! file bodies), WRITABLE interest only while output is blocked. No policy: what the bytes mean
//! is for `rtmp`, `http` and the origin core.

use std::io::{self, Read};

use mio::Interest;

use super::conn::{self, ConnState, Listener, RtmpRole};
use super::outq::{self, Outbox};
use super::source::Source;
use super::timers::TimerKind;
use super::tlsio::Sink;
use super::{access_line, Server, FILE_BYTES_PER_TURN, READS_PER_WAKEUP, VIEWER_BYTES_PER_TURN};

/// Private output (replies no one else shares: pongs, `_error`, `_result`, HTTP answers) one
/// connection may have queued before its input stops being read until they drain (issue 13,
/// hole 1: a client that sends requests and never reads the answers).
pub(super) const PRIVATE_OUT_MAX: usize = 64 * 1024;
/// Bytes read per call from a connection that does not publish: small, so that the replies
/// one read can cause stay near the bound (an `_error` is a few times its request).
const SMALL_READ: usize = 4 * 1024;

impl Server {
    /// Private bytes queued for `conn`: its own queue, and the replies in its viewer queue.
    fn private_backlog(conn: &conn::Conn, hub: &crate::hub::Hub) -> usize {
        let replies = conn
            .viewer()
            .and_then(|v| hub.viewer_ref(v))
            .map_or(0, |vw| vw.queue.control_bytes());
        // Under TLS the ciphertext waiting for the socket counts too (`tls::OUT_BATCH` at most).
        let tls = conn.tls.as_ref().map_or(0, |t| t.pending_len());
        conn.out.len() + replies + tls
    }

    /// Reads what connection `token` sent (the TCP connection driver's "readable"), then sets
    /// its timer to the limits of the state the input left it in.
    pub(super) fn on_readable(&mut self, token: usize) {
        self.read_conn(token);
        self.arm_conn(token);
    }

    fn read_conn(&mut self, token: usize) {
        let mut buf = std::mem::take(&mut self.scratch);
        for _ in 0..READS_PER_WAKEUP {
            let Some(conn) = self.conns.get_mut(token) else {
                break;
            };
            if conn.closed {
                break;
            }
            if conn.held || conn.judging {
                // Held back for a recorder (or waiting for a hook's verdict): the kernel
                // buffer fills and TCP slows the client; `ResumeInput` (`judged`) brings it back.
                self.scratch = buf;
                return;
            }
            if Self::private_backlog(conn, &self.core.hub) > PRIVATE_OUT_MAX {
                // It does not read what we answer: stop reading what it asks until that
                // drains (`write_conn` resumes it; the sweep closes it if it never does).
                if conn.out_full_since.is_none() {
                    conn.out_full_since = Some(self.now);
                    self.totals.bound("private-output");
                }
                self.scratch = buf;
                return;
            }
            let publishing = matches!(&conn.state, ConnState::Rtmp(r)
                if matches!(r.role, RtmpRole::Publisher { .. }));
            let cap = if publishing { buf.len() } else { SMALL_READ };
            match conn.socket.read(&mut buf[..cap]) {
                Ok(0) => {
                    self.close(token, "closed by peer");
                    break;
                }
                Ok(n) => {
                    conn.bytes_in += n as u64;
                    conn.last_input = self.now;
                    self.totals.bytes_in += n as u64;
                    if conn.pre.is_some() {
                        // The PROXY header comes before TLS and the protocol.
                        self.proxy_input(token, &buf[..n]);
                        continue;
                    }
                    if conn.tls.is_some() {
                        self.tls_input(token, &buf[..n]);
                        continue;
                    }
                    match conn.listener {
                        Listener::Rtmp => self.rtmp_input(token, &buf[..n]),
                        Listener::Http | Listener::Web => self.http_input(token, &buf[..n]),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.scratch = buf;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let reason = format!("read error: {e}");
                    self.close(token, &reason);
                    break;
                }
            }
        }
        // Budget spent (or closed): edge-triggered readiness will not repeat, so come back.
        if self.conns.get(token).is_some_and(|c| !c.closed) {
            self.pending_read.push(token);
        }
        self.scratch = buf;
    }

    /// Lists a connection for the next merged flush, or writes at once when merging is off.
    pub(super) fn mark_dirty(&mut self, token: usize) {
        if self.viewer_cfg.merge_write.is_zero() {
            self.write_conn(token);
            return;
        }
        if let Some(c) = self.conns.get_mut(token) {
            if !c.dirty && !c.closed {
                c.dirty = true;
                if self.dirty.is_empty() {
                    // Once per flush, never per viewer or frame.
                    let at = self.next_flush;
                    self.arm_loop(TimerKind::Flush, at);
                }
                self.dirty.push(token);
            }
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &t in &dirty {
            if let Some(c) = self.conns.get_mut(t) {
                c.dirty = false;
                // Spliced bytes go to the socket as they are: never for TLS viewers.
                #[cfg(target_os = "linux")]
                if let (Some(sp), Some(v), None) = (self.splice.as_mut(), c.viewer(), &c.tls) {
                    // `viewer` settles a follower of its form's log: the queue noted is the
                    // one written.
                    if self.core.hub.is_following(v) {
                        // Written straight from its log, if it can be (`write_edge`).
                    } else if let Some(vw) = self.core.hub.viewer(v) {
                        sp.note(&vw.queue);
                    }
                }
            }
        }
        for t in dirty {
            self.write_conn(t);
        }
        #[cfg(target_os = "linux")]
        if let Some(sp) = self.splice.as_mut() {
            sp.end_flush();
        }
    }

    /// Writes what the connection has queued (the TCP connection driver's "writable"), then
    /// sets its timer to the limits of the state the output left it in.
    pub(super) fn write_conn(&mut self, token: usize) {
        self.write_queued(token);
        self.arm_conn(token);
    }

    /// Writes what the connection has queued: its own queue first (replies sent before it became
    /// a viewer), then its viewer queue in the hub. Stops at WouldBlock and asks for WRITABLE.
    fn write_queued(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closed {
            return;
        }
        let viewer = conn.viewer();
        let mut written = 0usize;
        // A follower at the live edge with nothing else to send: its packets go straight from
        // its form's log to the socket (`hub::edge`), shared through a pipe where others got
        // the same. Some(result) when it was written so.
        let edge = match viewer {
            Some(v) if conn.out.is_empty() && conn.body.is_none() && conn.tls.is_none() => {
                #[cfg(target_os = "linux")]
                let splice = self.splice.as_mut();
                #[cfg(not(target_os = "linux"))]
                let splice = std::marker::PhantomData;
                write_edge(
                    &mut self.core.hub,
                    splice,
                    v,
                    &mut conn.socket,
                    &mut written,
                    &mut self.totals.bytes_out_shared,
                )
            }
            _ => None,
        };
        if let (Some(v), None) = (viewer, &edge) {
            // A viewer that followed its form's log gets its packets now, written or not:
            // the slow-viewer policy sees them as it would have per packet.
            self.core.hub.viewer(v);
        }
        let edged = edge.is_some();
        if edged && matches!(edge, Some(Ok(false))) && !conn.skip_watched {
            // Behind now: the only kind of viewer that can skip (`Server::log_skips`).
            conn.skip_watched = true;
            self.skip_watch.push((token, conn.generation));
        }
        let mut sink = Sink::new(&mut conn.socket, conn.tls.as_deref_mut());
        let mut result = match edge {
            Some(r) => r,
            None => write_outbox(&mut sink, &mut conn.out, &mut written, usize::MAX),
        };
        let mut body_done = false;
        let mut yielded = false;
        while let (Ok(true), Some(body)) = (&result, conn.body.as_mut()) {
            if written >= FILE_BYTES_PER_TURN {
                yielded = true;
                break;
            }
            // The queue is empty here (result is Ok(true)), so the body may go straight from the
            // file to the socket.
            result = match send_file_step(body, &mut sink, &mut conn.out, &mut written) {
                Ok(None) => {
                    conn.body = None;
                    body_done = true;
                    break;
                }
                Ok(Some(drained)) => Ok(drained),
                Err(e) => Err(e),
            };
        }
        if let (Ok(true), Some(v), false) = (&result, viewer, edged) {
            if let Some(vw) = self.core.hub.viewer(v) {
                let before = written;
                #[cfg(target_os = "linux")]
                let spliced = match (self.splice.as_mut(), sink.plain_socket()) {
                    (Some(sp), Some(socket)) => sp.send(socket, &mut vw.queue, &mut written),
                    _ => None,
                };
                #[cfg(not(target_os = "linux"))]
                let spliced = None;
                let limit = written + VIEWER_BYTES_PER_TURN;
                result = match spliced {
                    Some(r) => {
                        self.totals.bytes_out_shared += (written - before) as u64;
                        r
                    }
                    None => write_outbox(&mut sink, &mut vw.queue, &mut written, limit),
                };
                // Stopped at the budget with more to write: come back after the others.
                yielded |= matches!(result, Ok(true)) && !vw.queue.is_empty();
                if !vw.queue.is_empty() && !conn.skip_watched {
                    // Behind: the only kind of viewer that can skip (`Server::log_skips`).
                    conn.skip_watched = true;
                    self.skip_watch.push((token, conn.generation));
                }
                if vw.queue.is_empty() {
                    // At the live edge: it follows its form's log until it is next written
                    // (no work per frame for it in the hub).
                    self.core.hub.follow(v);
                }
            }
        }
        if let Ok(true) = result {
            // The queues are empty or yielded: what TLS still holds goes out now.
            result = sink.finish();
        }
        conn.bytes_out += written as u64;
        self.totals.bytes_out += written as u64;
        if written > 0 {
            conn.last_output = self.now;
        }
        if yielded {
            // Still writable with body or queue left: come back after the others had their turn.
            self.pending_write.push(token);
            return;
        }
        match result {
            Err(e) => {
                let reason = format!("write error: {e}");
                self.close(token, &reason);
            }
            Ok(drained) => {
                if drained == conn.write_blocked {
                    let interest = if drained {
                        Interest::READABLE
                    } else {
                        Interest::READABLE | Interest::WRITABLE
                    };
                    let _ = self.poll.registry().reregister(
                        &mut conn.socket,
                        Source::Conn(token).token(),
                        interest,
                    );
                    conn.write_blocked = !drained;
                }
                // A live viewer's line waits for its end (`Server::close`); a request still
                // waiting for its answer (a hook's verdict, an LL-HLS part) for the answer.
                let unanswered = matches!(
                    conn.state,
                    ConnState::HttpFlv { .. }
                        | ConnState::WsFlv { .. }
                        | ConnState::Judging { .. }
                        | ConnState::LlhlsWait(_)
                );
                if drained && conn.body.is_none() && !unanswered {
                    if let Some(a) = conn.access.take() {
                        let line = access_line(conn.peer, a);
                        self.write_access(line);
                    }
                }
                let Some(conn) = self.conns.get_mut(token) else {
                    return;
                };
                if conn.out_full_since.is_some()
                    && Self::private_backlog(conn, &self.core.hub) <= PRIVATE_OUT_MAX / 2
                {
                    // Its replies drained: read its requests again.
                    conn.out_full_since = None;
                    self.pending_read.push(token);
                }
                if drained && conn.close_after_flush {
                    self.close(token, "done");
                } else if body_done {
                    // Pipelined requests wait while a body is sent; answer the next one now.
                    self.http_parse(token);
                } else if drained && written > 0 && !conn.head.is_empty() {
                    // Parsing pauses while answers pile up (http::PIPELINE_OUT_MAX); they are out now.
                    self.pending_parse.push(token);
                }
            }
        }
    }
}

/// The splicer an edge write may share a pipe through (`server::splice`, Linux only).
#[cfg(target_os = "linux")]
type EdgeSplice<'a> = Option<&'a mut super::splice::Splicer>;
#[cfg(not(target_os = "linux"))]
type EdgeSplice<'a> = std::marker::PhantomData<&'a ()>;

/// Writes follower `v`'s pending packets straight from its form's log (`Hub::edge`): through
/// the splicer's shared pipe when others have the same packets, else one vectored `sendmsg`.
/// Some(Ok(true)) when all went (it still follows), Some(Ok(false)) when the socket took part
/// (the rest is in its queue now, `Hub::edge_written`), Some(Err) on a socket error; None when
/// it cannot be written so (settle it and write its queue).
fn write_edge(
    hub: &mut crate::hub::Hub,
    splice: EdgeSplice<'_>,
    v: crate::hub::ViewerId,
    socket: &mut mio::net::TcpStream,
    written: &mut usize,
    shared_out: &mut u64,
) -> Option<io::Result<bool>> {
    use std::io::{IoSlice, Write};
    let edge = hub.edge(v)?;
    #[cfg(target_os = "linux")]
    let spliced = splice.and_then(|sp| sp.send_edge(socket, &edge));
    #[cfg(not(target_os = "linux"))]
    let spliced: Option<io::Result<usize>> = {
        let _ = splice;
        None
    };
    let (total, sent) = match spliced {
        Some(r) => {
            let total = edge.bytes();
            if let Ok(n) = r {
                *shared_out += n as u64;
            }
            (total, r)
        }
        None => {
            if edge.count() > crate::hub::queue::WRITE_SLICES {
                return None;
            }
            let mut iov = [IoSlice::new(&[]); crate::hub::queue::WRITE_SLICES];
            let k = edge.slices(&mut iov);
            let total = iov[..k].iter().map(|s| s.len()).sum();
            let r = loop {
                match outq::SocketWriter(socket).write_vectored(&iov[..k]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(0),
                    r => break r,
                }
            };
            (total, r)
        }
    };
    match sent {
        Ok(n) => {
            *written += n;
            hub.edge_written(v, n, total);
            Some(Ok(n == total))
        }
        Err(e) => Some(Err(e)),
    }
}

/// Moves the next part of a file body to the socket; `out` is empty on entry. Ok(None) at the end
/// of the body, Ok(Some(false)) when the socket is full. Linux: sendfile(2), no user-space copy.
#[cfg(target_os = "linux")]
pub(super) fn send_file_step(
    body: &mut conn::FileBody,
    sink: &mut Sink,
    out: &mut outq::OutQueue,
    written: &mut usize,
) -> io::Result<Option<bool>> {
    let Some(socket) = sink.plain_socket() else {
        // TLS: through memory, to be encrypted.
        return send_chunk(body, sink, out, written);
    };
    match body.send_to(socket, FILE_BYTES_PER_TURN) {
        Ok(0) => Ok(None),
        Ok(n) => {
            *written += n;
            Ok(Some(true))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(false)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Some(true)),
        // A file system without sendfile support: copy through memory instead.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
            send_chunk(body, sink, out, written)
        }
        Err(e) => Err(e),
    }
}

/// Elsewhere: one chunk read into memory, then written through the queue.
#[cfg(not(target_os = "linux"))]
pub(super) fn send_file_step(
    body: &mut conn::FileBody,
    sink: &mut Sink,
    out: &mut outq::OutQueue,
    written: &mut usize,
) -> io::Result<Option<bool>> {
    send_chunk(body, sink, out, written)
}

/// One chunk of the body read into memory and written through the queue (and TLS, if on).
fn send_chunk(
    body: &mut conn::FileBody,
    sink: &mut Sink,
    out: &mut outq::OutQueue,
    written: &mut usize,
) -> io::Result<Option<bool>> {
    match body.next_chunk()? {
        Some(chunk) => {
            out.push(chunk);
            write_outbox(sink, out, written, usize::MAX).map(Some)
        }
        None => Ok(None),
    }
}

/// Writes from `out` until it is empty or `*written` reached `limit` (Ok(true)), or the socket
/// would block (Ok(false)).
pub(super) fn write_outbox(
    sink: &mut Sink,
    out: &mut dyn Outbox,
    written: &mut usize,
    limit: usize,
) -> io::Result<bool> {
    loop {
        if out.is_empty() || *written >= limit {
            return Ok(true);
        }
        match out.write_to(sink) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
