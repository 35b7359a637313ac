//! The client side of RTMP: `ClientSession` (sans-IO, the mirror of `ServerSession`) and
//! `RtmpClient`, a small blocking client over `std::net::TcpStream` for integration tests, tools
//! and the load generator. Not a general-purpose client: no reconnects, no digest checks.

use crate::amf::{amf0, Value};
use crate::media::{Frame, Track};
use crate::rtmp::chunk::{self, ChunkDecoder, ChunkEncoder};
use crate::rtmp::command::{self, Command};
use crate::rtmp::handshake::ClientHandshake;
use crate::rtmp::message::{self as mt, Message};
use crate::rtmp::session::{
    feed_handshake, metadata_payload, ping_reply, split_aggregate, AckCounter, SessionError,
    CSID_AUDIO, CSID_COMMAND, CSID_CONTROL, CSID_DATA, CSID_VIDEO,
};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Chunk size the client announces after connect.
pub const CLIENT_CHUNK_SIZE: u32 = 4096;
/// Acknowledgement window until the server sets one.
const DEFAULT_WINDOW: u32 = 2_500_000;

#[derive(Clone, Debug)]
pub enum ClientEvent {
    /// connect got its `_result`.
    Connected,
    /// createStream got its `_result`.
    StreamCreated { stream_id: u32 },
    /// onStatus on `stream_id`.
    Status {
        stream_id: u32,
        level: String,
        code: String,
        description: String,
    },
    /// Audio, video, or `onMetaData` (AMF0) from a played stream.
    Media { stream_id: u32, frame: Frame },
    /// An `_error` reply: its description (or code).
    Error(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    Connect,
    CreateStream,
}

pub struct ClientSession {
    handshake: Option<ClientHandshake>,
    inbuf: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: Vec<u8>,
    /// Messages issued before the handshake completed, already chunked, sent after C2.
    pending: Vec<u8>,
    events: VecDeque<ClientEvent>,
    acks: AckCounter,
    next_txn: f64,
    calls: Vec<(f64, Call)>,
}

impl ClientSession {
    /// Queues C0 and C1.
    pub fn new(seed: u64) -> ClientSession {
        let mut out = Vec::new();
        let handshake = ClientHandshake::new(seed, 0, &mut out);
        ClientSession {
            handshake: Some(handshake),
            inbuf: BytesMut::new(),
            decoder: ChunkDecoder::new(),
            encoder: ChunkEncoder::new(),
            out,
            pending: Vec::new(),
            events: VecDeque::new(),
            acks: AckCounter::new(DEFAULT_WINDOW),
            next_txn: 1.0,
            calls: Vec::new(),
        }
    }

    pub fn handle_input(&mut self, input: &[u8]) -> Result<(), SessionError> {
        self.acks.add(input.len());
        let was_handshaking = self.handshake.is_some();
        let rest = feed_handshake(&mut self.handshake, input, &mut self.out, |hs, i, o| {
            hs.handle_input(i, o)
        })?;
        if was_handshaking && self.handshake.is_none() {
            let pending = std::mem::take(&mut self.pending);
            self.out.extend_from_slice(&pending);
        }
        let Some(rest) = rest else {
            return Ok(());
        };
        self.inbuf.extend_from_slice(rest);
        while let Some(msg) = self.decoder.decode(&mut self.inbuf)? {
            self.handle_message(msg, true)?;
        }
        if let Some(seq) = self.acks.due() {
            self.send(chunk::ack_msg(seq), CSID_CONTROL);
        }
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn is_handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// connect, then Set Chunk Size 4096 for everything after it.
    pub fn connect(&mut self, app: &str, tc_url: &str) {
        let txn = self.call(Call::Connect);
        self.send_command(0, &command::connect(txn, app, tc_url));
        self.send(chunk::set_chunk_size_msg(CLIENT_CHUNK_SIZE), CSID_CONTROL);
        self.encoder.set_chunk_size(CLIENT_CHUNK_SIZE);
    }

    pub fn create_stream(&mut self) {
        let txn = self.call(Call::CreateStream);
        self.send_command(0, &command::simple_request("createStream", txn, None));
    }

    /// releaseStream(name), as FFmpeg sends before FCPublish.
    pub fn release_stream(&mut self, name: &str) {
        let txn = self.txn();
        self.send_command(
            0,
            &command::simple_request("releaseStream", txn, Some(name)),
        );
    }

    /// FCPublish(name) with a transaction id, as FFmpeg and OBS send.
    pub fn fc_publish(&mut self, name: &str) {
        let txn = self.txn();
        self.send_command(0, &command::simple_request("FCPublish", txn, Some(name)));
    }

    pub fn publish(&mut self, stream_id: u32, name: &str) {
        let txn = self.txn();
        self.send_command(stream_id, &command::publish(txn, name));
    }

    /// play(name), then Set Buffer Length 1000 ms for the stream, like FFmpeg.
    pub fn play(&mut self, stream_id: u32, name: &str) {
        let txn = self.txn();
        self.send_command(stream_id, &command::play(txn, name));
        let mut data = stream_id.to_be_bytes().to_vec();
        data.extend_from_slice(&1000u32.to_be_bytes());
        self.send(
            chunk::user_control_msg(mt::UC_SET_BUFFER_LENGTH, &data),
            CSID_CONTROL,
        );
    }

    /// Audio and video as they are; metadata as `@setDataFrame` + the frame's `onMetaData` body.
    pub fn send_frame(&mut self, stream_id: u32, frame: &Frame) {
        let (csid, payload) = match frame.track {
            Track::Audio => (CSID_AUDIO, frame.data.clone()),
            Track::Video => (CSID_VIDEO, frame.data.clone()),
            Track::Meta => {
                let mut v = Vec::with_capacity(16 + frame.data.len());
                amf0::encode(&Value::string("@setDataFrame"), &mut v);
                v.extend_from_slice(&frame.data);
                (CSID_DATA, Bytes::from(v))
            }
        };
        let msg = Message {
            csid,
            timestamp: frame.dts,
            type_id: frame.tag_type(),
            stream_id,
            payload,
        };
        self.queue(&msg);
    }

    pub fn delete_stream(&mut self, stream_id: u32) {
        let txn = self.txn();
        self.send_command(0, &command::delete_stream(txn, stream_id));
    }

    /// Any command (tests use it for FCUnpublish, unknown commands, ...).
    pub fn send_command(&mut self, stream_id: u32, cmd: &Command) {
        let msg = Message {
            csid: CSID_COMMAND,
            timestamp: 0,
            type_id: mt::COMMAND_AMF0,
            stream_id,
            payload: cmd.encode(),
        };
        self.queue(&msg);
    }

    /// A fresh transaction id for a caller-built command.
    pub fn txn(&mut self) -> f64 {
        let t = self.next_txn;
        self.next_txn += 1.0;
        t
    }

    fn call(&mut self, call: Call) -> f64 {
        let txn = self.txn();
        // Bounded: an unanswered call is dropped once 64 newer ones are waiting.
        if self.calls.len() >= 64 {
            self.calls.remove(0);
        }
        self.calls.push((txn, call));
        txn
    }

    fn send(&mut self, mut msg: Message, csid: u32) {
        msg.csid = csid;
        self.queue(&msg);
    }

    fn queue(&mut self, msg: &Message) {
        if self.handshake.is_some() {
            self.encoder.encode(msg, &mut self.pending);
        } else {
            self.encoder.encode(msg, &mut self.out);
        }
    }

    fn handle_message(&mut self, msg: Message, allow_aggregate: bool) -> Result<(), SessionError> {
        match msg.type_id {
            mt::WINDOW_ACK_SIZE => {
                if let Some(w) = msg.payload.get(..4) {
                    let w = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
                    if w > 0 {
                        self.acks.window = w;
                    }
                }
            }
            mt::USER_CONTROL => {
                if let Some(reply) = ping_reply(&msg.payload) {
                    self.send(reply, CSID_CONTROL);
                }
            }
            mt::AUDIO | mt::VIDEO => {
                if let Some(frame) = Frame::parse(msg.type_id, msg.timestamp, msg.payload) {
                    self.events.push_back(ClientEvent::Media {
                        stream_id: msg.stream_id,
                        frame,
                    });
                }
            }
            mt::DATA_AMF0 | mt::DATA_AMF3 => {
                if let Some(data) = metadata_payload(msg.type_id, &msg.payload) {
                    if let Some(frame) = Frame::parse(mt::DATA_AMF0, msg.timestamp, data) {
                        self.events.push_back(ClientEvent::Media {
                            stream_id: msg.stream_id,
                            frame,
                        });
                    }
                }
            }
            mt::COMMAND_AMF0 | mt::COMMAND_AMF3 => {
                let values = amf0::decode_message(msg.type_id, &msg.payload)?;
                let cmd = Command::parse(values)
                    .map_err(|_| SessionError::Protocol("command message without a name"))?;
                self.on_command(msg.stream_id, cmd);
            }
            mt::AGGREGATE if allow_aggregate => {
                for sub in split_aggregate(&msg)? {
                    self.handle_message(sub, false)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, stream_id: u32, cmd: Command) {
        let call = self
            .calls
            .iter()
            .position(|(t, _)| *t == cmd.transaction_id);
        match cmd.name.as_str() {
            "_result" => match call.map(|i| self.calls.remove(i).1) {
                Some(Call::Connect) => self.events.push_back(ClientEvent::Connected),
                Some(Call::CreateStream) => {
                    let id = cmd.arg_f64(0).unwrap_or(0.0);
                    let stream_id = if id > 0.0 && id <= u32::MAX as f64 {
                        id as u32
                    } else {
                        0
                    };
                    self.events
                        .push_back(ClientEvent::StreamCreated { stream_id });
                }
                None => {}
            },
            "_error" => {
                if let Some(i) = call {
                    self.calls.remove(i);
                }
                let info = cmd.arg(0);
                let text = info
                    .and_then(|v| v.get("description").or_else(|| v.get("code")))
                    .and_then(Value::as_str)
                    .unwrap_or("_error")
                    .to_string();
                self.events.push_back(ClientEvent::Error(text));
            }
            "onStatus" => {
                let info = cmd.arg(0);
                let field = |k: &str| {
                    info.and_then(|v| v.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                self.events.push_back(ClientEvent::Status {
                    stream_id,
                    level: field("level"),
                    code: field("code"),
                    description: field("description"),
                });
            }
            _ => {}
        }
    }
}

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
        let sock = TcpStream::connect_timeout(&addr, timeout)?;
        sock.set_nodelay(true)?;
        sock.set_write_timeout(Some(timeout.max(Duration::from_secs(1))))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((sock.local_addr()?.port() as u64) << 48);
        let mut session = ClientSession::new(seed);
        session.connect(app, &format!("rtmp://{addr}/{app}"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::handshake::HANDSHAKE_SIZE;
    use crate::rtmp::session::{Refusal, ServerSession, SessionConfig, SessionEvent};
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
                chunk::encode_into(CSID_VIDEO, ts, mt::VIDEO, sid, &payload, size, &mut out);
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

    #[test]
    fn commands_wait_for_the_handshake() {
        let mut c = ClientSession::new(3);
        c.connect("live", "rtmp://h/live");
        c.create_stream();
        assert_eq!(c.take_output().len(), 1 + HANDSHAKE_SIZE);
        let mut s = ServerSession::new(SessionConfig::default(), 4, 5);
        // Nothing but C0C1 went out, so the server has no command yet.
        let s_out = {
            let mut c2 = ClientSession::new(3);
            s.handle_input(&c2.take_output()).unwrap();
            s.take_output()
        };
        c.handle_input(&s_out).unwrap();
        assert!(c.is_handshake_done());
        let out = c.take_output();
        assert!(
            out.len() > HANDSHAKE_SIZE,
            "C2 followed by the queued commands"
        );
        s.handle_input(&out).unwrap();
        let mut got = Vec::new();
        while let Some(e) = s.poll_event() {
            got.push(e);
        }
        assert!(matches!(got[..], [SessionEvent::Connected { .. }]));
        c.handle_input(&s.take_output()).unwrap();
        let mut cev = Vec::new();
        while let Some(e) = c.poll_event() {
            cev.push(e);
        }
        assert!(matches!(
            cev[..],
            [
                ClientEvent::Connected,
                ClientEvent::StreamCreated { stream_id: 1 }
            ]
        ));
    }
}
