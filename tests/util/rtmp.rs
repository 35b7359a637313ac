//! RTMP from the tests, so the core tests run without FFmpeg: `RtmpClient` (a blocking client:
//! one `TcpStream` around the crate's sans-IO `ClientSession`), a player that collects frames
//! and statuses, a publisher that sends a fixture paced by its timestamps, and one that sends
//! prepared frames (odd clocks) and tells how far it got.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtmpd::media::{Frame, Track};
use rtmpd::rtmp::client::{ClientEvent, ClientSession};

use super::{fixture_bytes, is_end_of_sequence};

/// Timeout for connect / publish / play answers.
pub const RTMP_TIMEOUT: Duration = Duration::from_secs(5);

/// A blocking RTMP client: one TCP connection, one `ClientSession`. Every wait is bounded by a
/// timeout; the server closing the connection is `UnexpectedEof`.
pub struct RtmpClient {
    sock: TcpStream,
    session: ClientSession,
    /// Events read while waiting for something else, handed out first by `next_event`.
    backlog: VecDeque<ClientEvent>,
    /// Streams created here, deleted by `close`.
    streams: Vec<u32>,
    timeout: Duration,
    buf: Vec<u8>,
}

impl RtmpClient {
    /// TCP connect, handshake, `connect(app)` with tcUrl `rtmp://ADDR/APP`, wait for `_result`.
    /// `timeout` also bounds every later `publish` / `play` wait.
    pub fn connect(addr: SocketAddr, app: &str, timeout: Duration) -> io::Result<RtmpClient> {
        Self::connect_with(addr, app, timeout, None)
    }

    /// `connect` as an Enhanced RTMP client naming `fourccs` in `fourCcList`.
    pub fn connect_enhanced(
        addr: SocketAddr,
        app: &str,
        timeout: Duration,
        fourccs: &[&str],
    ) -> io::Result<RtmpClient> {
        Self::connect_with(addr, app, timeout, Some(fourccs))
    }

    fn connect_with(
        addr: SocketAddr,
        app: &str,
        timeout: Duration,
        fourccs: Option<&[&str]>,
    ) -> io::Result<RtmpClient> {
        let sock = TcpStream::connect_timeout(&addr, timeout)?;
        sock.set_nodelay(true)?;
        sock.set_write_timeout(Some(timeout.max(Duration::from_secs(1))))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((sock.local_addr()?.port() as u64) << 48);
        let mut session = ClientSession::new(seed);
        let tc_url = format!("rtmp://{addr}/{app}");
        match fourccs {
            Some(list) => session.connect_enhanced(app, &tc_url, list),
            None => session.connect(app, &tc_url),
        }
        let mut client = RtmpClient {
            sock,
            session,
            backlog: VecDeque::new(),
            streams: Vec::new(),
            timeout,
            buf: vec![0; 64 * 1024],
        };
        client.flush()?;
        client.wait_for(timeout, |ev| match ev {
            ClientEvent::Connected => Some(Ok(())),
            ClientEvent::Error(e) => Some(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                e.clone(),
            ))),
            _ => None,
        })?;
        Ok(client)
    }

    /// releaseStream, FCPublish, createStream, publish (FFmpeg's sequence); waits for
    /// NetStream.Publish.Start. An error status fails with its code as the message.
    pub fn publish(&mut self, name: &str) -> io::Result<u32> {
        self.session.release_stream(name);
        self.session.fc_publish(name);
        let id = self.create_stream()?;
        self.session.publish(id, name);
        self.flush()?;
        self.wait_status(id, "NetStream.Publish.Start")?;
        Ok(id)
    }

    /// createStream, play; waits for NetStream.Play.Start (Play.Reset before it stays queued
    /// for `next_event`). An error status fails with its code as the message.
    pub fn play(&mut self, name: &str) -> io::Result<u32> {
        let id = self.create_stream()?;
        self.session.play(id, name);
        self.flush()?;
        self.wait_status(id, "NetStream.Play.Start")?;
        Ok(id)
    }

    pub fn send_frame(&mut self, stream_id: u32, frame: &Frame) -> io::Result<()> {
        self.session.send_frame(stream_id, frame);
        self.flush()
    }

    /// The next event, reading for at most `timeout`; `Ok(None)` when nothing came.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<ClientEvent>> {
        if let Some(ev) = self.backlog.pop_front() {
            return Ok(Some(ev));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.session.poll_event() {
                return Ok(Some(ev));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.read_some(deadline - now)?;
        }
    }

    /// The session, to send commands this type has no method for (flush afterwards).
    pub fn session_mut(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Writes whatever the session has queued.
    pub fn flush(&mut self) -> io::Result<()> {
        let out = self.session.take_output();
        if !out.is_empty() {
            self.sock.write_all(&out)?;
        }
        Ok(())
    }

    /// deleteStream for every stream created here, then shutdown. Errors are ignored: the
    /// server may already have closed.
    pub fn close(mut self) {
        for id in std::mem::take(&mut self.streams) {
            self.session.delete_stream(id);
        }
        let _ = self.flush();
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    fn create_stream(&mut self) -> io::Result<u32> {
        self.session.create_stream();
        self.flush()?;
        let id = self.wait_for(self.timeout, |ev| match ev {
            ClientEvent::StreamCreated { stream_id } => Some(Ok(*stream_id)),
            ClientEvent::Error(e) => Some(Err(io::Error::other(e.clone()))),
            _ => None,
        })?;
        self.streams.push(id);
        Ok(id)
    }

    fn wait_status(&mut self, stream_id: u32, want: &str) -> io::Result<()> {
        self.wait_for(self.timeout, |ev| match ev {
            ClientEvent::Status {
                stream_id: sid,
                level,
                code,
                ..
            } if *sid == stream_id => {
                if code == want {
                    Some(Ok(()))
                } else if level == "error" {
                    Some(Err(io::Error::other(code.clone())))
                } else {
                    None
                }
            }
            ClientEvent::Error(e) => Some(Err(io::Error::other(e.clone()))),
            _ => None,
        })
    }

    /// Reads until `pick` says yes or no about a new event; other events go to the backlog.
    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&ClientEvent) -> Option<io::Result<T>>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(ev) = self.session.poll_event() {
                if let Some(result) = pick(&ev) {
                    return result;
                }
                self.backlog.push_back(ev);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out waiting for the server",
                ));
            }
            self.read_some(deadline - now)?;
        }
    }

    /// One read (at most `timeout`), fed to the session; replies (acks, pongs) are written.
    fn read_some(&mut self, timeout: Duration) -> io::Result<()> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        match self.sock.read(&mut self.buf) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            )),
            Ok(n) => {
                self.session
                    .handle_input(&self.buf[..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                self.flush()
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Default)]
pub struct RtmpPlay {
    pub frames: Vec<Frame>,
    /// onStatus codes in order, including the ones before Play.Start.
    pub statuses: Vec<String>,
    /// `_error` replies and client-side errors.
    pub errors: Vec<String>,
    /// The server closed the connection (after the publisher left).
    pub closed: bool,
    /// The play itself failed (the status code or error text).
    pub refused: Option<String>,
}

impl RtmpPlay {
    pub fn saw(&self, code: &str) -> bool {
        self.statuses.iter().any(|c| c == code)
    }
}

/// Connects, plays `app/name`, and collects everything for at most `max_duration`; stops early
/// when the server closes the connection (or 2 s after Play.UnpublishNotify if it does not).
pub fn rtmp_play_collect(
    addr: SocketAddr,
    app: &str,
    name: &str,
    max_duration: Duration,
) -> RtmpPlay {
    let deadline = Instant::now() + max_duration;
    let mut out = RtmpPlay::default();
    let mut client = match RtmpClient::connect(addr, app, RTMP_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            out.refused = Some(format!("connect: {e}"));
            return out;
        }
    };
    if let Err(e) = client.play(name) {
        out.refused = Some(e.to_string());
        return out;
    }
    // `play` consumed Play.Start while waiting for it; record it (earlier statuses such as
    // Play.Reset stay queued and follow).
    out.statuses.push("NetStream.Play.Start".into());
    collect_events(&mut client, &mut out, deadline);
    client.close();
    out
}

/// Collects events from a client that is already playing, until `deadline` or the end.
pub fn collect_events(client: &mut RtmpClient, out: &mut RtmpPlay, deadline: Instant) {
    let mut unpublished_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        if let Some(t) = unpublished_at {
            // After UnpublishNotify the server closes; do not wait for ever if it does not.
            if now >= t + Duration::from_secs(2) {
                return;
            }
        }
        match client.next_event((deadline - now).min(Duration::from_millis(200))) {
            Ok(Some(ClientEvent::Media { frame, .. })) => out.frames.push(frame),
            Ok(Some(ClientEvent::Status { code, .. })) => {
                if code == "NetStream.Play.UnpublishNotify" {
                    unpublished_at = Some(Instant::now());
                }
                out.statuses.push(code);
            }
            Ok(Some(ClientEvent::Error(e))) => out.errors.push(e),
            Ok(Some(_)) | Ok(None) => {}
            Err(e) => {
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) {
                    out.closed = true;
                } else {
                    out.errors.push(e.to_string());
                }
                return;
            }
        }
    }
}

/// `rtmp_play_collect` in a thread.
pub fn spawn_rtmp_play(
    addr: SocketAddr,
    app: &str,
    name: &str,
    max_duration: Duration,
) -> JoinHandle<RtmpPlay> {
    let (app, name) = (app.to_string(), name.to_string());
    std::thread::spawn(move || rtmp_play_collect(addr, &app, &name, max_duration))
}

/// How a publisher ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishEnd {
    /// deleteStream, then close (a polite encoder).
    Delete,
    /// Close the socket without a word (a crash or a lost network, as far as the server sees).
    Drop,
    /// Stay connected without sending anything until stopped (a dead encoder).
    Stall,
}

#[derive(Clone, Debug)]
pub struct PublishOpts {
    /// Media time per wall time: 1.0 is real time; 0 sends as fast as possible.
    pub speed: f64,
    /// Send the fixture this many times, timestamps continuing across loops.
    pub loops: u32,
    /// Stop after this much media time of the first loop (None: all of it).
    pub limit_ms: Option<u32>,
    pub end: PublishEnd,
    /// Added to every timestamp (e.g. to cross 0xFFFFFF and exercise extended timestamps).
    pub ts_offset: u32,
    /// Wait this long after the publish is accepted before the first frame, so that HTTP and
    /// WS viewers (404 until the publish) can join before any media and get all of it.
    pub start_delay: Duration,
}

impl Default for PublishOpts {
    fn default() -> Self {
        PublishOpts {
            speed: 1.0,
            loops: 1,
            limit_ms: None,
            end: PublishEnd::Delete,
            ts_offset: 0,
            start_delay: Duration::ZERO,
        }
    }
}

/// A fixture publisher in its own thread; stopped (per its `end`) on drop.
pub struct RustPublisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<usize>>>,
}

impl RustPublisher {
    /// Connects and publishes (the answer is awaited here, so an error comes back at once),
    /// then sends the fixture from a thread.
    pub fn start(
        addr: SocketAddr,
        app: &str,
        name: &str,
        fixture: &str,
        opts: PublishOpts,
    ) -> io::Result<RustPublisher> {
        let mut client = RtmpClient::connect(addr, app, RTMP_TIMEOUT)?;
        let stream_id = client.publish(name)?;
        let (_, _, frames) = rtmpd::mux::flv_demux::read_all(&fixture_bytes(fixture))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            send_frames(&mut client, stream_id, &frames, &opts, &stop2)
                .and_then(|n| finish(client, &opts, &stop2).map(|_| n))
        });
        Ok(RustPublisher {
            stop,
            thread: Some(thread),
        })
    }

    /// Waits for the sending to finish; the number of frames sent.
    pub fn join(mut self) -> io::Result<usize> {
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("publisher thread")
    }

    /// Asks the thread to stop now and waits for it.
    pub fn stop(mut self) -> io::Result<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("publisher thread")
    }

    pub fn is_finished(&self) -> bool {
        self.thread
            .as_ref()
            .map(|t| t.is_finished())
            .unwrap_or(true)
    }
}

impl Drop for RustPublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_frames(
    client: &mut RtmpClient,
    stream_id: u32,
    frames: &[Frame],
    opts: &PublishOpts,
    stop: &AtomicBool,
) -> io::Result<usize> {
    let delay_end = Instant::now() + opts.start_delay;
    while Instant::now() < delay_end {
        if stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let first = frames.first().map(|f| f.dts).unwrap_or(0);
    let span = frames.iter().map(|f| f.dts).max().unwrap_or(0) - first + 40;
    let mut sent = 0;
    for l in 0..opts.loops {
        let shift = l * span;
        for f in frames {
            if stop.load(Ordering::Relaxed) {
                return Ok(sent);
            }
            // Later loops repeat the media only; the FLV end-of-sequence belongs at the end.
            if l > 0 && (f.config || f.track == Track::Meta) || is_end_of_sequence(f) {
                continue;
            }
            let rel = f.dts - first;
            if let Some(limit) = opts.limit_ms {
                if rel > limit {
                    return Ok(sent);
                }
            }
            let media_ms = (rel + shift) as f64;
            if opts.speed > 0.0 {
                let due = start + Duration::from_secs_f64(media_ms / 1000.0 / opts.speed);
                // Sleep in short steps so that a stop request is seen promptly.
                while Instant::now() < due {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(sent);
                    }
                    std::thread::sleep((due - Instant::now()).min(Duration::from_millis(50)));
                }
            }
            let mut f = f.clone();
            f.dts = f.dts.wrapping_add(shift).wrapping_add(opts.ts_offset);
            client.send_frame(stream_id, &f)?;
            sent += 1;
        }
    }
    Ok(sent)
}

fn finish(client: RtmpClient, opts: &PublishOpts, stop: &AtomicBool) -> io::Result<()> {
    match opts.end {
        PublishEnd::Delete => client.close(),
        PublishEnd::Drop => drop(client),
        PublishEnd::Stall => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(client);
        }
    }
    Ok(())
}

/// The fixture's frames `loops` times over, each as (media ms from the start, frame with its
/// dts set to that time): sequence headers and metadata only in the first loop, no FLV
/// end-of-sequence. The input of `PacedPublisher`; tests rewrite the dts to make odd clocks.
pub fn looped_fixture_frames(fixture: &str, loops: u32) -> Vec<(u32, Frame)> {
    let (_, _, frames) = rtmpd::mux::flv_demux::read_all(&fixture_bytes(fixture)).expect(fixture);
    let first = frames.first().map(|f| f.dts).unwrap_or(0);
    let span = frames.iter().map(|f| f.dts).max().unwrap_or(0) - first + 40;
    let mut out = Vec::new();
    for l in 0..loops {
        for f in &frames {
            if l > 0 && (f.config || f.track == Track::Meta) || is_end_of_sequence(f) {
                continue;
            }
            let rel = f.dts - first + l * span;
            let mut f = f.clone();
            f.dts = rel;
            out.push((rel, f));
        }
    }
    out
}

/// A publisher of prepared frames, paced by their media time (the first of each pair) at
/// `speed`, that tells how far it got: `sent_ms` is the media time of the last frame written,
/// so a test that kills the server knows what had been published.
pub struct PacedPublisher {
    pub sent_ms: Arc<std::sync::atomic::AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl PacedPublisher {
    /// Connects and publishes (errors come back here), then sends from a thread after
    /// `start_delay`; deleteStream and close at the end.
    pub fn start(
        addr: SocketAddr,
        app: &str,
        name: &str,
        frames: Vec<(u32, Frame)>,
        speed: f64,
        start_delay: Duration,
    ) -> io::Result<PacedPublisher> {
        let mut client = RtmpClient::connect(addr, app, RTMP_TIMEOUT)?;
        let sid = client.publish(name)?;
        let sent_ms = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sent2, stop2) = (sent_ms.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now() + start_delay;
            for (rel, f) in &frames {
                let due = t0 + Duration::from_secs_f64(*rel as f64 / 1000.0 / speed.max(0.01));
                while Instant::now() < due {
                    if stop2.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep((due - Instant::now()).min(Duration::from_millis(20)));
                }
                if stop2.load(Ordering::Relaxed) {
                    return Ok(());
                }
                client.send_frame(sid, f)?;
                sent2.store(*rel, Ordering::Relaxed);
            }
            client.close();
            Ok(())
        });
        Ok(PacedPublisher {
            sent_ms,
            stop,
            thread: Some(thread),
        })
    }

    pub fn join(mut self) -> io::Result<()> {
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("publisher thread")
    }

    /// Stops sending now (the socket is closed without deleteStream) and waits.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("publisher thread")
    }
}

impl Drop for PacedPublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The RTMP handshake by hand (plain, C1 with zero version), for tests that then send
/// hand-made chunks. Returns the connected socket after C2.
pub fn raw_rtmp_handshake(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    use std::io::{Read, Write};
    let mut s = super::raw_connect(addr);
    s.set_read_timeout(Some(RTMP_TIMEOUT))?;
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0; 8]);
    c0c1.extend((0..1528u32).map(|i| (i * 7 + 3) as u8));
    s.write_all(&c0c1)?;
    let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
    s.read_exact(&mut s0s1s2)?;
    // C2 echoes S1.
    s.write_all(&s0s1s2[1..1537])?;
    Ok(s)
}

/// One type-0 chunk on chunk stream 2 carrying a whole protocol control message.
pub fn control_chunk(type_id: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = vec![
        0x02,
        0,
        0,
        0,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        type_id,
        0,
        0,
        0,
        0,
    ];
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    //! The blocking client against a `ServerSession` served on a thread (no binary): the client's
    //! own waits, backlog and EOF handling.
    use super::*;
    use bytes::Bytes;
    use rtmpd::codec::chunk::{encode_into, CSID_VIDEO};
    use rtmpd::rtmp::message as mt;
    use rtmpd::rtmp::session::{Refusal, ServerSession, SessionConfig, SessionEvent};
    use std::net::TcpListener;
    use std::thread;

    /// Serves one connection with a `ServerSession` on a thread. `on_event` answers requests and
    /// may return bytes to write after the session's own (media pieces, as the hub would).
    fn serve_one(
        on_event: impl Fn(&mut ServerSession, &SessionEvent) -> Vec<u8> + Send + 'static,
    ) -> (SocketAddr, thread::JoinHandle<Vec<SessionEvent>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut s = ServerSession::new(SessionConfig::default(), 1, 2);
            let mut events = Vec::new();
            let mut buf = vec![0; 16 * 1024];
            loop {
                let n = match sock.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if s.handle_input(&buf[..n]).is_err() {
                    break;
                }
                let mut extra = Vec::new();
                while let Some(e) = s.poll_event() {
                    extra.extend(on_event(&mut s, &e));
                    events.push(e);
                }
                let mut out = s.take_output();
                out.extend(extra);
                if sock.write_all(&out).is_err() || s.wants_close() {
                    break;
                }
            }
            events
        });
        (addr, handle)
    }

    fn video(dts: u32) -> Frame {
        Frame::parse(mt::VIDEO, dts, Bytes::from(vec![0x17, 1, 0, 0, 0, 7, 7, 7])).unwrap()
    }

    #[test]
    fn blocking_client_publishes_and_plays_on_one_connection() {
        let (addr, server) = serve_one(|s, e| match e {
            SessionEvent::PublishRequest { request_id, .. } => {
                s.accept_publish(*request_id);
                Vec::new()
            }
            SessionEvent::PlayRequest {
                request_id,
                stream_id,
                ..
            } => {
                s.accept_play(*request_id);
                // What the hub does: media pre-serialised on its own csid.
                let payload = video(0x0123_4567).data;
                let size = s.out_chunk_size();
                let mut out = Vec::new();
                let (ts, sid) = (0x0123_4567, *stream_id);
                encode_into(CSID_VIDEO, ts, mt::VIDEO, sid, &payload, size, &mut out);
                out
            }
            _ => Vec::new(),
        });
        let timeout = Duration::from_secs(5);
        let mut c = RtmpClient::connect(addr, "live", timeout).unwrap();
        let pub_id = c.publish("a?token=x").unwrap();
        for i in 0..3 {
            c.send_frame(pub_id, &video(i * 40)).unwrap();
        }
        let play_id = c.play("b").unwrap();
        assert_ne!(pub_id, play_id);
        let mut saw_reset = false;
        let frame = loop {
            match c.next_event(timeout).unwrap() {
                Some(ClientEvent::Media { stream_id, frame }) => {
                    assert_eq!(stream_id, play_id);
                    break frame;
                }
                Some(ClientEvent::Status { code, .. }) => {
                    saw_reset |= code == "NetStream.Play.Reset";
                }
                Some(_) => {}
                None => panic!("no media"),
            }
        };
        assert!(saw_reset, "Play.Reset is kept for next_event");
        assert_eq!((frame.dts, frame.key), (0x0123_4567, true));
        assert_eq!(
            c.next_event(Duration::from_millis(50)).unwrap().map(|_| ()),
            None
        );
        c.close();
        let events = server.join().unwrap();
        let media: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Media { stream_id, frame } if *stream_id == pub_id => Some(frame.dts),
                _ => None,
            })
            .collect();
        assert_eq!(media, [0, 40, 80]);
        assert!(events
            .iter()
            .any(|e| matches!(e, SessionEvent::Unpublished { stream_id } if *stream_id == pub_id)));
        assert!(events.iter().any(
            |e| matches!(e, SessionEvent::PlayStopped { stream_id } if *stream_id == play_id)
        ));
    }

    #[test]
    fn refused_publish_fails_with_the_status_code_then_eof() {
        let (addr, server) = serve_one(|s, e| {
            if let SessionEvent::PublishRequest { request_id, .. } = e {
                s.reject_publish(*request_id, Refusal::Unauthorized);
            }
            Vec::new()
        });
        let timeout = Duration::from_secs(5);
        let mut c = RtmpClient::connect(addr, "live", timeout).unwrap();
        let err = c.publish("a").unwrap_err();
        assert_eq!(err.to_string(), "NetStream.Publish.Unauthorized");
        let eof = loop {
            match c.next_event(timeout) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("server did not close"),
                Err(e) => break e,
            }
        };
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
        server.join().unwrap();
    }

    #[test]
    fn connect_to_nothing_fails_fast() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(RtmpClient::connect(addr, "live", Duration::from_secs(2)).is_err());
    }
}
