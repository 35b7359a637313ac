//! `ServerSession`: the server side of one RTMP connection, sans-IO. Bytes in (`handle_input`),
//! events out (`poll_event`), bytes out (`take_output`). It answers the protocol by itself
//! (handshake, control messages, connect, createStream, ...) and raises publish and play as
//! requests that the server answers with `accept_*` / `reject_*`: policy (auth, busy keys) lives
//! outside. It writes only control and command messages; media to players is pre-serialised by
//! the hub on `CSID_AUDIO` / `CSID_VIDEO` / `CSID_DATA`, which this session never uses.
//!
//! This file holds the public API (events, requests and their answers, output) and the input
//! path; what each received message and command does is `commands`, the per-stream
//! publish/play state is `streams`. `feed_handshake` and `SessionError` serve the client too.

mod commands;
mod streams;

use crate::amf::AmfError;
use crate::codec::chunk::{ChunkEncoder, CSID_COMMAND, CSID_CONTROL};
use crate::media::key::split_query;
use crate::media::Frame;
use crate::rtmp::chunk::{ChunkDecoder, ChunkError};
use crate::rtmp::command::{self, Command};
use crate::rtmp::control::{self, AckCounter};
use crate::rtmp::handshake::{HandshakeError, ServerHandshake};
use crate::rtmp::message::{self as mt, Message};
use bytes::BytesMut;
pub use commands::ClientCaps;
use std::collections::VecDeque;
use std::fmt;
use streams::{Request, RequestKind, StreamState};

/// Message streams one connection may have open at once (createStream beyond it gets `_error`).
/// Stream ids only: the server serves one publish or play per connection and refuses a second
/// (`server::rtmp::ONE_STREAM`); clients create a stream or two before their one request.
pub const MAX_STREAMS: usize = 16;
/// FCPublish names remembered until their publish arrives.
const MAX_FC_PUBLISH: usize = 16;
/// Chunk streams the decoder tracks; real clients use fewer than ten.
const MAX_CHUNK_STREAMS: usize = 64;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Chunk size we announce and send with (at least 4096 is what players expect from servers).
    pub chunk_size: u32,
    /// Window Acknowledgement Size we announce to the peer.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth we announce (limit type 2, dynamic).
    pub peer_bandwidth: u32,
    /// Largest message the peer may send; above it the connection fails.
    pub max_message_len: usize,
    /// Largest chunk size the peer may set.
    pub max_chunk_size: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_message_len: 16 << 20,
            max_chunk_size: 16 << 20,
        }
    }
}

#[derive(Clone, Debug)]
pub enum SessionEvent {
    /// connect was received and already answered (Window Ack Size, Set Peer Bandwidth, Set Chunk
    /// Size, `_result`). `app` has a trailing `/` removed but keeps any `?query`.
    Connected {
        app: String,
        tc_url: Option<String>,
    },
    /// publish: answer with `accept_publish` / `reject_publish(request_id, ..)`. `name` is the raw
    /// publish name including any `?query`; `app` is the connect app (may itself have a `?query`).
    PublishRequest {
        request_id: u32,
        stream_id: u32,
        app: String,
        name: String,
    },
    /// play: answer with `accept_play` / `reject_play(request_id, ..)`.
    PlayRequest {
        request_id: u32,
        stream_id: u32,
        app: String,
        name: String,
    },
    /// Audio, video or `onMetaData` (AMF0, `@setDataFrame` removed) from a publishing stream.
    /// Media that arrived in the same input as its `publish` follows the PublishRequest; a
    /// server that refused that request ignores it.
    Media {
        stream_id: u32,
        frame: Frame,
    },
    /// The publish on `stream_id` ended (deleteStream, FCUnpublish, closeStream). Also raised
    /// when the stream ends while its PublishRequest is still unanswered; then a later
    /// accept/reject of that request does nothing, and a server that rejected it ignores this.
    Unpublished {
        stream_id: u32,
    },
    /// A play ended (deleteStream/closeStream); same rule for unanswered requests as above.
    PlayStopped {
        stream_id: u32,
    },
    Pause {
        stream_id: u32,
        paused: bool,
    },
    ReceiveAudio {
        stream_id: u32,
        enabled: bool,
    },
    ReceiveVideo {
        stream_id: u32,
        enabled: bool,
    },
}

/// Why the server refuses a publish or play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Name fails the name rule, or (publish) the key is already being published.
    BadName,
    /// Missing or wrong token.
    Unauthorized,
    /// (play) no such stream; for publish this reads as BadName.
    NotFound,
}

#[derive(Debug)]
pub enum SessionError {
    Handshake(HandshakeError),
    Chunk(ChunkError),
    Amf(AmfError),
    /// The peer broke the command protocol (command before connect, publish on an unknown stream...).
    Protocol(&'static str),
}

impl SessionError {
    /// The per-connection bound this error is (for the `/metrics` counter), if it is one.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            SessionError::Chunk(ChunkError::MessageTooLarge { .. }) => Some("rtmp-message-bytes"),
            SessionError::Chunk(ChunkError::ChunkSizeTooLarge(_)) => Some("rtmp-chunk-size"),
            SessionError::Chunk(ChunkError::TooManyChunkStreams) => Some("rtmp-chunk-streams"),
            SessionError::Chunk(ChunkError::TooMuchBuffered(_)) => Some("rtmp-partial-bytes"),
            _ => None,
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Handshake(e) => write!(f, "RTMP handshake: {e}"),
            SessionError::Chunk(e) => write!(f, "RTMP chunk stream: {e}"),
            SessionError::Amf(e) => write!(f, "RTMP command: {e}"),
            SessionError::Protocol(why) => write!(f, "RTMP protocol: {why}"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<HandshakeError> for SessionError {
    fn from(e: HandshakeError) -> Self {
        SessionError::Handshake(e)
    }
}

impl From<ChunkError> for SessionError {
    fn from(e: ChunkError) -> Self {
        SessionError::Chunk(e)
    }
}

impl From<AmfError> for SessionError {
    fn from(e: AmfError) -> Self {
        SessionError::Amf(e)
    }
}

/// See the module doc. Output is a plain `Vec<u8>` taken whole by `take_output`.
pub struct ServerSession {
    config: SessionConfig,
    /// `Some` until C2 has arrived.
    handshake: Option<ServerHandshake>,
    inbuf: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: Vec<u8>,
    events: VecDeque<SessionEvent>,
    acks: AckCounter,
    connected: bool,
    app: String,
    /// (message stream id, state), in creation order.
    streams: Vec<(u32, StreamState)>,
    next_stream_id: u32,
    requests: Vec<Request>,
    next_request_id: u32,
    /// (FCPublish name, its transaction id): answered with onFCPublish when the publish is accepted.
    fc_publish: Vec<(String, f64)>,
    /// What the client declared in an Enhanced RTMP connect; `None` for a legacy client.
    client_caps: Option<ClientCaps>,
    close: bool,
}

impl ServerSession {
    /// Starts in the handshake; `seed` and `epoch` go to the handshake (random bytes, S1 time).
    pub fn new(config: SessionConfig, seed: u64, epoch: u32) -> ServerSession {
        let decoder = ChunkDecoder::with_limits(
            config.max_message_len,
            config.max_chunk_size,
            MAX_CHUNK_STREAMS,
        );
        let window = config.window_ack_size;
        ServerSession {
            config,
            handshake: Some(ServerHandshake::new(seed, epoch)),
            inbuf: BytesMut::new(),
            decoder,
            encoder: ChunkEncoder::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            acks: AckCounter::new(window),
            connected: false,
            app: String::new(),
            streams: Vec::new(),
            next_stream_id: 1,
            requests: Vec::new(),
            next_request_id: 1,
            fc_publish: Vec::new(),
            client_caps: None,
            close: false,
        }
    }

    /// Feeds received bytes: handshake first, then chunks (the bytes after C2 go straight to the
    /// chunk decoder). An error means the peer broke the protocol: close the connection.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<(), SessionError> {
        self.acks.add(input.len());
        let rest = match feed_handshake(&mut self.handshake, input, &mut self.out, |hs, i, o| {
            hs.handle_input(i, o)
        })? {
            Some(rest) => rest,
            None => return Ok(()),
        };
        self.inbuf.extend_from_slice(rest);
        while let Some(msg) = self.decoder.decode(&mut self.inbuf)? {
            self.handle_message(msg, true)?;
        }
        if let Some(seq) = self.acks.due() {
            self.send_control(control::ack_msg(seq));
        }
        Ok(())
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Bytes to send, in order (handshake replies, control, command replies); empty when none.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// onFCPublish (if FCPublish named this stream) then onStatus NetStream.Publish.Start.
    pub fn accept_publish(&mut self, request_id: u32) {
        let Some(req) = self.take_request(request_id, RequestKind::Publish) else {
            return;
        };
        self.set_state(req.stream_id, StreamState::Publishing(req.name.clone()));
        let bare = split_query(&req.name).0.to_string();
        if let Some(i) = self
            .fc_publish
            .iter()
            .position(|(n, _)| n == &req.name || split_query(n).0 == bare)
        {
            let (_, txn) = self.fc_publish.remove(i);
            self.send_command(0, &command::on_fc_publish(txn, &bare));
        }
        self.send_command(
            req.stream_id,
            &command::on_status(
                "status",
                "NetStream.Publish.Start",
                &format!("{bare} is now published."),
            ),
        );
    }

    /// onStatus NetStream.Publish.BadName (BadName, NotFound) or NetStream.Publish.Unauthorized,
    /// level error; then `wants_close()`.
    pub fn reject_publish(&mut self, request_id: u32, why: Refusal) {
        let Some(req) = self.take_request(request_id, RequestKind::Publish) else {
            return;
        };
        self.set_state(req.stream_id, StreamState::Idle);
        let (code, text) = match why {
            Refusal::BadName | Refusal::NotFound => (
                "NetStream.Publish.BadName",
                "Bad name or already publishing.",
            ),
            Refusal::Unauthorized => ("NetStream.Publish.Unauthorized", "Unauthorized."),
        };
        self.send_command(req.stream_id, &command::on_status("error", code, text));
        self.close = true;
    }

    /// StreamBegin, onStatus Play.Reset, Play.Start, `|RtmpSampleAccess` (nginx-rtmp/SRS order).
    pub fn accept_play(&mut self, request_id: u32) {
        let Some(req) = self.take_request(request_id, RequestKind::Play) else {
            return;
        };
        let sid = req.stream_id;
        self.set_state(sid, StreamState::Playing);
        let bare = split_query(&req.name).0.to_string();
        self.send_control(control::user_control_msg(
            mt::UC_STREAM_BEGIN,
            &sid.to_be_bytes(),
        ));
        self.send_command(
            sid,
            &command::on_status(
                "status",
                "NetStream.Play.Reset",
                &format!("Playing and resetting {bare}."),
            ),
        );
        self.send_command(
            sid,
            &command::on_status(
                "status",
                "NetStream.Play.Start",
                &format!("Started playing {bare}."),
            ),
        );
        let msg = Message {
            csid: CSID_COMMAND,
            timestamp: 0,
            type_id: mt::DATA_AMF0,
            stream_id: sid,
            payload: command::sample_access(),
        };
        self.encoder.encode(&msg, &mut self.out);
    }

    /// onStatus NetStream.Play.StreamNotFound (BadName, NotFound) or NetStream.Play.Failed with
    /// description "Unauthorized." (there is no standard Play.Unauthorized code; Flash and
    /// FFmpeg treat Play.Failed as fatal), level error; then `wants_close()`.
    pub fn reject_play(&mut self, request_id: u32, why: Refusal) {
        let Some(req) = self.take_request(request_id, RequestKind::Play) else {
            return;
        };
        self.set_state(req.stream_id, StreamState::Idle);
        let (code, text) = match why {
            Refusal::BadName | Refusal::NotFound => {
                ("NetStream.Play.StreamNotFound", "No such stream.")
            }
            Refusal::Unauthorized => ("NetStream.Play.Failed", "Unauthorized."),
        };
        self.send_command(req.stream_id, &command::on_status("error", code, text));
        self.close = true;
    }

    /// onStatus NetStream.Play.PublishNotify to a player that waited for the publisher.
    pub fn publish_notify(&mut self, stream_id: u32) {
        if self.state(stream_id).is_some() {
            self.send_command(
                stream_id,
                &command::on_status(
                    "status",
                    "NetStream.Play.PublishNotify",
                    "Start publishing.",
                ),
            );
        }
    }

    /// User Control Stream EOF + onStatus NetStream.Play.UnpublishNotify. Closing the player
    /// afterwards is the server's decision.
    pub fn unpublish_notify(&mut self, stream_id: u32) {
        if self.state(stream_id).is_some() {
            self.send_control(control::user_control_msg(
                mt::UC_STREAM_EOF,
                &stream_id.to_be_bytes(),
            ));
            self.send_command(
                stream_id,
                &command::on_status(
                    "status",
                    "NetStream.Play.UnpublishNotify",
                    "Stopped publishing.",
                ),
            );
        }
    }

    /// True after a refusal: send the pending output, then close.
    pub fn wants_close(&self) -> bool {
        self.close
    }

    /// The chunk size we announced; players' media pieces must be cut at it.
    pub fn out_chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    pub fn is_handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Every byte given to `handle_input`, handshake included.
    pub fn bytes_received(&self) -> u64 {
        self.acks.received
    }

    /// The connect app ("" before connect).
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The Enhanced RTMP capabilities of the client's connect; `None` for a legacy client.
    pub fn client_caps(&self) -> Option<&ClientCaps> {
        self.client_caps.as_ref()
    }

    fn send_control(&mut self, mut msg: Message) {
        msg.csid = CSID_CONTROL;
        self.encoder.encode(&msg, &mut self.out);
    }

    fn send_command(&mut self, stream_id: u32, cmd: &Command) {
        let msg = cmd.message(stream_id);
        self.encoder.encode(&msg, &mut self.out);
    }
}

/// The command in a command message (AMF0 or AMF3), for both session sides.
pub(crate) fn command_of(msg: &Message) -> Result<Command, SessionError> {
    let values = mt::decode_message(msg.type_id, &msg.payload)?;
    Command::parse(values).map_err(|_| SessionError::Protocol("command message without a name"))
}

/// The sub-messages of an aggregate message, for both session sides.
pub(crate) fn aggregate_of(msg: &Message) -> Result<Vec<Message>, SessionError> {
    crate::rtmp::media_message::split_aggregate(msg)
        .ok_or(SessionError::Protocol("truncated aggregate message"))
}

/// Runs a handshake until done. Returns the bytes left after it (`None`: still handshaking).
/// Shared by the server and client sessions.
pub(crate) fn feed_handshake<'a, H: HandshakeState>(
    handshake: &mut Option<H>,
    input: &'a [u8],
    out: &mut Vec<u8>,
    step: impl Fn(&mut H, &[u8], &mut Vec<u8>) -> Result<usize, HandshakeError>,
) -> Result<Option<&'a [u8]>, SessionError> {
    let Some(hs) = handshake.as_mut() else {
        return Ok(Some(input));
    };
    let mut rest = input;
    while !rest.is_empty() && !hs.done() {
        let n = step(hs, rest, out)?;
        if n == 0 {
            // The handshake took nothing and is not done: it cannot make progress on this input.
            return Err(SessionError::Protocol("handshake stalled"));
        }
        rest = rest.get(n..).unwrap_or(&[]);
    }
    if hs.done() {
        *handshake = None;
        Ok(Some(rest))
    } else {
        Ok(None)
    }
}

/// `is_done` of both handshake sides, for `feed_handshake`.
pub(crate) trait HandshakeState {
    fn done(&self) -> bool;
}

impl HandshakeState for ServerHandshake {
    fn done(&self) -> bool {
        self.is_done()
    }
}

impl HandshakeState for crate::rtmp::handshake::ClientHandshake {
    fn done(&self) -> bool {
        self.is_done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::{amf0, Value};
    use crate::codec::chunk::{CSID_AUDIO, CSID_DATA, CSID_VIDEO};
    use crate::media::frame::TAG_SCRIPT;
    use crate::media::{Codec, Track};
    use crate::rtmp::client::{ClientEvent, ClientSession};
    use crate::rtmp::control::be_u32;
    use crate::rtmp::handshake::HANDSHAKE_SIZE;
    use bytes::Bytes;

    /// S0 + S1 + S2: what the server writes before its first chunk.
    const SERVER_HANDSHAKE_LEN: usize = 1 + 2 * HANDSHAKE_SIZE;

    /// A server and a client wired together in memory. `raw` holds every message the server
    /// sent after its handshake, decoded by an independent decoder; `sent` every byte the
    /// client sent, for replays.
    struct Duo {
        s: ServerSession,
        c: ClientSession,
        sev: Vec<SessionEvent>,
        cev: Vec<ClientEvent>,
        raw: Vec<Message>,
        raw_dec: ChunkDecoder,
        raw_buf: BytesMut,
        server_bytes: usize,
        sent: Vec<u8>,
        extra: Vec<u8>,
    }

    impl Duo {
        fn with_config(config: SessionConfig) -> Duo {
            Duo {
                s: ServerSession::new(config, 42, 1000),
                c: ClientSession::new(7),
                sev: Vec::new(),
                cev: Vec::new(),
                raw: Vec::new(),
                raw_dec: ChunkDecoder::new(),
                raw_buf: BytesMut::new(),
                server_bytes: 0,
                sent: Vec::new(),
                extra: Vec::new(),
            }
        }

        /// Handshake and connect to app `live`.
        fn connected() -> Duo {
            let mut d = Duo::with_config(SessionConfig::default());
            d.c.connect("live", "rtmp://127.0.0.1/live");
            d.pump();
            d
        }

        /// Exchanges bytes until both sides are quiet; collects events.
        fn pump(&mut self) {
            for _ in 0..100 {
                let mut co = self.c.take_output();
                co.append(&mut self.extra);
                let so = self.s.take_output();
                if co.is_empty() && so.is_empty() {
                    break;
                }
                if !co.is_empty() {
                    self.sent.extend_from_slice(&co);
                    self.s.handle_input(&co).expect("server input");
                }
                if !so.is_empty() {
                    self.c.handle_input(&so).expect("client input");
                    self.record_raw(&so);
                }
                while let Some(e) = self.s.poll_event() {
                    self.sev.push(e);
                }
                while let Some(e) = self.c.poll_event() {
                    self.cev.push(e);
                }
            }
        }

        fn record_raw(&mut self, bytes: &[u8]) {
            let skip = SERVER_HANDSHAKE_LEN
                .saturating_sub(self.server_bytes)
                .min(bytes.len());
            self.server_bytes += bytes.len();
            self.raw_buf.extend_from_slice(&bytes[skip..]);
            while let Some(m) = self.raw_dec.decode(&mut self.raw_buf).unwrap() {
                self.raw.push(m);
            }
        }

        /// Sends a message the client session has no method for, on its own chunk stream.
        fn inject(&mut self, msg: Message) {
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(4096);
            let mut bytes = Vec::new();
            enc.encode(&msg, &mut bytes);
            self.extra.extend_from_slice(&bytes);
            self.pump();
        }

        fn publish(&mut self, name: &str) -> u32 {
            self.c.create_stream();
            self.pump();
            let sid = self.created();
            self.c.publish(sid, name);
            self.pump();
            let rid = match self.sev.last().cloned() {
                Some(SessionEvent::PublishRequest {
                    request_id,
                    stream_id,
                    app,
                    name: n,
                }) => {
                    assert_eq!((stream_id, app.as_str(), n.as_str()), (sid, "live", name));
                    request_id
                }
                other => panic!("expected a publish request, got {other:?}"),
            };
            self.s.accept_publish(rid);
            self.pump();
            assert_eq!(self.last_status(), (sid, "NetStream.Publish.Start".into()));
            sid
        }

        fn created(&mut self) -> u32 {
            match self.cev.pop() {
                Some(ClientEvent::StreamCreated { stream_id }) => stream_id,
                other => panic!("expected StreamCreated, got {other:?}"),
            }
        }

        fn last_status(&self) -> (u32, String) {
            self.cev
                .iter()
                .rev()
                .find_map(|e| match e {
                    ClientEvent::Status {
                        stream_id, code, ..
                    } => Some((*stream_id, code.clone())),
                    _ => None,
                })
                .expect("a status")
        }

        fn media(&self) -> Vec<Frame> {
            self.sev
                .iter()
                .filter_map(|e| match e {
                    SessionEvent::Media { frame, .. } => Some(frame.clone()),
                    _ => None,
                })
                .collect()
        }

        /// Commands the server sent, decoded.
        fn raw_commands(&self) -> Vec<(u32, Command)> {
            self.raw
                .iter()
                .filter(|m| m.type_id == mt::COMMAND_AMF0)
                .map(|m| {
                    let v = amf0::decode_all(&m.payload).unwrap();
                    (m.stream_id, Command::parse(v).unwrap())
                })
                .collect()
        }
    }

    fn code_of(cmd: &Command) -> Option<&str> {
        cmd.arg(0)?.get("code")?.as_str()
    }

    fn video(dts: u32, key: bool, n: usize) -> Frame {
        let mut data = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        data.extend((0..n).map(|i| i as u8));
        Frame::parse(mt::VIDEO, dts, Bytes::from(data)).unwrap()
    }

    fn metadata_body() -> Bytes {
        command::on_metadata(&Value::EcmaArray(vec![
            ("width".into(), Value::Number(160.0)),
            ("height".into(), Value::Number(120.0)),
            ("encoder".into(), Value::string("Lavf")),
        ]))
    }

    #[test]
    fn connect_is_answered_with_control_then_result() {
        let d = Duo::connected();
        assert!(d.s.is_handshake_done() && d.c.is_handshake_done());
        match &d.sev[..] {
            [SessionEvent::Connected { app, tc_url }] => {
                assert_eq!(app, "live");
                assert_eq!(tc_url.as_deref(), Some("rtmp://127.0.0.1/live"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(d.cev[..], [ClientEvent::Connected]));
        let types: Vec<u8> = d.raw.iter().map(|m| m.type_id).collect();
        assert_eq!(
            types,
            vec![
                mt::WINDOW_ACK_SIZE,
                mt::SET_PEER_BANDWIDTH,
                mt::SET_CHUNK_SIZE,
                mt::COMMAND_AMF0
            ]
        );
        assert_eq!(&d.raw[2].payload[..], &4096u32.to_be_bytes());
        assert_eq!(d.s.out_chunk_size(), 4096);
        assert!(d
            .raw
            .iter()
            .all(|m| m.csid == CSID_CONTROL || m.csid == CSID_COMMAND));
        let (_, result) = &d.raw_commands()[0];
        assert_eq!(result.name, "_result");
        assert_eq!(result.transaction_id, 1.0);
        assert_eq!(result.object_str("fmsVer"), Some(command::FMS_VERSION));
        assert_eq!(code_of(result), Some("NetConnection.Connect.Success"));
        assert_eq!(
            result.arg(0).unwrap().get("objectEncoding"),
            Some(&Value::Number(0.0))
        );
        assert_eq!(d.s.app(), "live");
    }

    #[test]
    fn publish_then_media_flows_with_timestamps_intact() {
        let mut d = Duo::connected();
        let sid = d.publish("key?token=abc");
        assert_eq!(sid, 1);
        let sent = vec![
            Frame::parse(mt::VIDEO, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2])).unwrap(),
            Frame::parse(mt::AUDIO, 0, Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap(),
            video(40, false, 10_000),
            Frame::parse(mt::AUDIO, 23, Bytes::from_static(&[0xaf, 1, 9, 9])).unwrap(),
            video(0xFF_FFFE, true, 300),
            video(0xFF_FFFF, false, 5000),
            video(0x0100_0005, false, 20),
            video(0xFFFF_FFF0, false, 20),
        ];
        for f in &sent {
            d.c.send_frame(sid, f);
        }
        d.pump();
        let got = d.media();
        assert_eq!(got.len(), sent.len());
        for (g, s) in got.iter().zip(&sent) {
            assert_eq!(
                (g.track, g.dts, g.key, g.config),
                (s.track, s.dts, s.key, s.config)
            );
            assert_eq!(g.data, s.data);
        }
        assert!(d
            .sev
            .iter()
            .all(|e| !matches!(e, SessionEvent::Media { stream_id, .. } if *stream_id != sid)));
    }

    #[test]
    fn set_data_frame_is_stripped_and_bare_metadata_kept() {
        let mut d = Duo::connected();
        let sid = d.publish("s");
        let body = metadata_body();
        let meta = Frame::parse(TAG_SCRIPT, 0, body.clone()).unwrap();
        d.c.send_frame(sid, &meta);
        d.pump();
        // Bare onMetaData (what some encoders send), and an AMF3 data message with @setDataFrame.
        d.inject(Message {
            csid: 9,
            timestamp: 5,
            type_id: mt::DATA_AMF0,
            stream_id: sid,
            payload: body.clone(),
        });
        let mut amf3 = vec![0u8];
        amf0::encode(&Value::string("@setDataFrame"), &mut amf3);
        amf3.extend_from_slice(&body);
        d.inject(Message {
            csid: 9,
            timestamp: 6,
            type_id: mt::DATA_AMF3,
            stream_id: sid,
            payload: Bytes::from(amf3),
        });
        // Other data messages are not metadata.
        d.inject(Message {
            csid: 9,
            timestamp: 7,
            type_id: mt::DATA_AMF0,
            stream_id: sid,
            payload: Bytes::from(amf0::encode_all(&[
                Value::string("onCuePoint"),
                Value::Null,
            ])),
        });
        let got = d.media();
        assert_eq!(got.len(), 3);
        for (f, dts) in got.iter().zip([0, 5, 6]) {
            assert_eq!(f.track, Track::Meta);
            assert_eq!(f.codec, Codec::Script);
            assert_eq!(f.dts, dts);
            assert_eq!(f.data, body);
        }
    }

    #[test]
    fn media_on_a_stream_that_is_not_publishing_is_ignored() {
        let mut d = Duo::connected();
        d.c.create_stream();
        d.pump();
        let sid = d.created();
        d.c.send_frame(sid, &video(0, true, 10));
        d.c.send_frame(7, &video(0, true, 10));
        d.pump();
        assert!(d.media().is_empty());
    }

    #[test]
    fn aggregate_messages_are_split_and_rebased() {
        let mut d = Duo::connected();
        let sid = d.publish("s");
        let mut agg = Vec::new();
        for (ts, body) in [
            (1000u32, &[0x17u8, 1, 0, 0, 0, 9][..]),
            (1040, &[0xaf, 1, 5][..]),
        ] {
            let t = if body[0] == 0xaf {
                mt::AUDIO
            } else {
                mt::VIDEO
            };
            agg.push(t);
            agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            agg.extend_from_slice(&ts.to_be_bytes()[1..]);
            agg.push((ts >> 24) as u8);
            agg.extend_from_slice(&[0, 0, 0]);
            agg.extend_from_slice(body);
            agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        }
        d.inject(Message {
            csid: 9,
            timestamp: 5000,
            type_id: mt::AGGREGATE,
            stream_id: sid,
            payload: Bytes::from(agg),
        });
        let got = d.media();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].track, got[0].dts), (Track::Video, 5000));
        assert_eq!((got[1].track, got[1].dts), (Track::Audio, 5040));
        assert_eq!(&got[1].data[..], &[0xaf, 1, 5]);
    }

    #[test]
    fn play_accept_sends_stream_begin_reset_start_sample_access() {
        let mut d = Duo::connected();
        d.c.create_stream();
        d.pump();
        let sid = d.created();
        d.c.play(sid, "cam?token=t");
        d.pump();
        let rid = match d.sev.pop() {
            Some(SessionEvent::PlayRequest {
                request_id,
                stream_id,
                app,
                name,
            }) => {
                assert_eq!(
                    (stream_id, app.as_str(), name.as_str()),
                    (sid, "live", "cam?token=t")
                );
                request_id
            }
            other => panic!("{other:?}"),
        };
        let before = d.raw.len();
        d.s.accept_play(rid);
        d.pump();
        let after = &d.raw[before..];
        assert_eq!(after.len(), 4);
        assert_eq!(after[0].type_id, mt::USER_CONTROL);
        let mut begin = mt::UC_STREAM_BEGIN.to_be_bytes().to_vec();
        begin.extend_from_slice(&sid.to_be_bytes());
        assert_eq!(&after[0].payload[..], &begin[..]);
        let codes: Vec<String> = after[1..3]
            .iter()
            .map(|m| {
                assert_eq!(m.stream_id, sid);
                let c = Command::parse(amf0::decode_all(&m.payload).unwrap()).unwrap();
                assert_eq!(c.name, "onStatus");
                code_of(&c).unwrap().to_string()
            })
            .collect();
        assert_eq!(codes, ["NetStream.Play.Reset", "NetStream.Play.Start"]);
        assert_eq!(after[3].type_id, mt::DATA_AMF0);
        assert_eq!(after[3].stream_id, sid);
        assert_eq!(
            amf0::decode_all(&after[3].payload).unwrap()[0],
            Value::string("|RtmpSampleAccess")
        );
        assert_eq!(d.last_status(), (sid, "NetStream.Play.Start".into()));

        // Media the hub pre-serialises on its own csids interleaves with the session's output.
        let meta = metadata_body();
        let mut hub = Vec::new();
        for (csid, ty, ts, payload) in [
            (CSID_DATA, mt::DATA_AMF0, 0, meta.clone()),
            (
                CSID_VIDEO,
                mt::VIDEO,
                0x0100_0000,
                video(0, true, 9000).data,
            ),
            (
                CSID_AUDIO,
                mt::AUDIO,
                0x0100_0001,
                Bytes::from_static(&[0xaf, 1, 1]),
            ),
        ] {
            crate::codec::chunk::encode_into(
                csid,
                ts,
                ty,
                sid,
                &payload,
                d.s.out_chunk_size(),
                &mut hub,
            );
        }
        d.s.publish_notify(sid);
        let mut so = d.s.take_output();
        so.extend_from_slice(&hub);
        d.c.handle_input(&so).unwrap();
        let mut frames = Vec::new();
        let mut statuses = Vec::new();
        while let Some(e) = d.c.poll_event() {
            match e {
                ClientEvent::Media { stream_id, frame } => {
                    assert_eq!(stream_id, sid);
                    frames.push((frame.track, frame.dts, frame.data.len()));
                }
                ClientEvent::Status { code, .. } => statuses.push(code),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(statuses, ["NetStream.Play.PublishNotify"]);
        assert_eq!(
            frames,
            [
                (Track::Meta, 0, meta.len()),
                (Track::Video, 0x0100_0000, 9005),
                (Track::Audio, 0x0100_0001, 3)
            ]
        );

        d.s.unpublish_notify(sid);
        let n = d.raw.len();
        d.pump();
        let eof = &d.raw[n];
        assert_eq!(eof.type_id, mt::USER_CONTROL);
        assert_eq!(&eof.payload[..2], &mt::UC_STREAM_EOF.to_be_bytes());
        assert_eq!(
            d.last_status(),
            (sid, "NetStream.Play.UnpublishNotify".into())
        );
    }

    #[test]
    fn rejected_publish_gets_bad_name_then_close() {
        for (why, code) in [
            (Refusal::BadName, "NetStream.Publish.BadName"),
            (Refusal::NotFound, "NetStream.Publish.BadName"),
            (Refusal::Unauthorized, "NetStream.Publish.Unauthorized"),
        ] {
            let mut d = Duo::connected();
            d.c.create_stream();
            d.pump();
            let sid = d.created();
            d.c.publish(sid, "bad/name");
            d.pump();
            let Some(SessionEvent::PublishRequest { request_id, .. }) = d.sev.pop() else {
                panic!("no request");
            };
            assert!(!d.s.wants_close());
            d.s.reject_publish(request_id, why);
            d.pump();
            assert!(d.s.wants_close());
            match d.cev.last() {
                Some(ClientEvent::Status {
                    stream_id,
                    level,
                    code: c,
                    ..
                }) => assert_eq!(
                    (*stream_id, level.as_str(), c.as_str()),
                    (sid, "error", code)
                ),
                other => panic!("{other:?}"),
            }
            // Media after a refusal goes nowhere; a second answer is a no-op.
            d.s.accept_publish(request_id);
            d.c.send_frame(sid, &video(0, true, 1));
            d.pump();
            assert!(d.media().is_empty());
        }
    }

    #[test]
    fn rejected_play_codes() {
        for (why, code) in [
            (Refusal::NotFound, "NetStream.Play.StreamNotFound"),
            (Refusal::BadName, "NetStream.Play.StreamNotFound"),
            (Refusal::Unauthorized, "NetStream.Play.Failed"),
        ] {
            let mut d = Duo::connected();
            d.c.create_stream();
            d.pump();
            let sid = d.created();
            d.c.play(sid, "x");
            d.pump();
            let Some(SessionEvent::PlayRequest { request_id, .. }) = d.sev.pop() else {
                panic!("no request");
            };
            d.s.reject_play(request_id, why);
            d.pump();
            assert!(d.s.wants_close());
            assert_eq!(d.last_status(), (sid, code.to_string()));
        }
    }

    #[test]
    fn fc_publish_result_and_on_fc_publish_carry_the_transaction_id() {
        let mut d = Duo::connected();
        d.c.release_stream("key");
        d.c.fc_publish("key");
        d.pump();
        let cmds = d.raw_commands();
        // connect _result (txn 1), releaseStream _result (2), FCPublish _result (3).
        let txns: Vec<(String, f64)> = cmds
            .iter()
            .map(|(_, c)| (c.name.clone(), c.transaction_id))
            .collect();
        assert_eq!(
            txns,
            [
                ("_result".to_string(), 1.0),
                ("_result".to_string(), 2.0),
                ("_result".to_string(), 3.0)
            ]
        );
        let n = cmds.len();
        d.publish("key");
        let cmds = d.raw_commands();
        let later: Vec<(&str, f64, Option<&str>)> = cmds[n..]
            .iter()
            .map(|(_, c)| (c.name.as_str(), c.transaction_id, code_of(c)))
            .collect();
        // createStream _result (4), onFCPublish with FCPublish's txn (3), then Publish.Start.
        assert_eq!(
            later,
            [
                ("_result", 4.0, None),
                ("onFCPublish", 3.0, Some("NetStream.Publish.Start")),
                ("onStatus", 0.0, Some("NetStream.Publish.Start"))
            ]
        );
    }

    #[test]
    fn unknown_commands_get_error_only_with_a_transaction_id() {
        let mut d = Duo::connected();
        d.c.send_command(0, &Command::new("FCSubscribe", 9.0, Value::Null, vec![]));
        d.c.send_command(0, &Command::new("noSuchThing", 0.0, Value::Null, vec![]));
        d.c.send_command(
            0,
            &command::simple_request("getStreamLength", 10.0, Some("s")),
        );
        d.c.send_command(0, &command::simple_request("_checkbw", 11.0, None));
        d.pump();
        let cmds = d.raw_commands();
        let replies: Vec<(&str, f64)> = cmds[1..]
            .iter()
            .map(|(_, c)| (c.name.as_str(), c.transaction_id))
            .collect();
        assert_eq!(
            replies,
            [("_error", 9.0), ("_result", 10.0), ("_result", 11.0)]
        );
        assert_eq!(cmds[2].1.arg(0), Some(&Value::Number(0.0)));
        assert!(matches!(d.cev.last(), Some(ClientEvent::Error(_))));
        assert!(!d.s.wants_close());
    }

    #[test]
    fn acknowledgement_after_each_window_with_real_counts() {
        let config = SessionConfig {
            window_ack_size: 5000,
            ..SessionConfig::default()
        };
        let mut d = Duo::with_config(config.clone());
        d.c.connect("live", "rtmp://h/live");
        d.pump();
        let sid = d.publish("s");
        // One Acknowledgement per input at most: feed the frames one pump each.
        for i in 0..10 {
            d.c.send_frame(sid, &video(i * 40, i == 0, 1500));
            d.pump();
        }
        let acks: Vec<u32> = d
            .raw
            .iter()
            .filter(|m| m.type_id == mt::ACKNOWLEDGEMENT)
            .map(|m| be_u32(&m.payload).unwrap())
            .collect();
        assert!(acks.len() >= 2, "{acks:?}");
        assert!(acks.windows(2).all(|w| w[1] - w[0] >= 5000));
        assert!(*acks.last().unwrap() as u64 <= d.s.bytes_received());
        assert_eq!(d.s.bytes_received(), d.sent.len() as u64);

        // Byte by byte the acks land exactly on the window; the peer's own window wins.
        let mut s = ServerSession::new(config, 42, 1000);
        let mut replay = d.sent.clone();
        let mut enc = ChunkEncoder::new();
        enc.encode(
            &Message {
                csid: 9,
                timestamp: 0,
                type_id: mt::WINDOW_ACK_SIZE,
                stream_id: 0,
                payload: Bytes::copy_from_slice(&3000u32.to_be_bytes()),
            },
            &mut replay,
        );
        let switch_at = replay.len() as u64;
        // Media on stream 0 is ignored but its bytes count.
        for i in 0..80 {
            enc.encode(
                &Message {
                    csid: 9,
                    timestamp: i,
                    type_id: mt::VIDEO,
                    stream_id: 0,
                    payload: Bytes::from(vec![0x27; 120]),
                },
                &mut replay,
            );
        }
        let mut dec = ChunkDecoder::new();
        let mut buf = BytesMut::new();
        let mut seqs = Vec::new();
        let mut server_out = 0usize;
        let mut total = 0u64;
        for b in &replay {
            if s.handle_input(std::slice::from_ref(b)).is_err() {
                break;
            }
            total += 1;
            while let Some(SessionEvent::PublishRequest { request_id, .. }) = s.poll_event() {
                s.accept_publish(request_id);
            }
            let out = s.take_output();
            let skip = SERVER_HANDSHAKE_LEN
                .saturating_sub(server_out)
                .min(out.len());
            server_out += out.len();
            buf.extend_from_slice(&out[skip..]);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                if m.type_id == mt::ACKNOWLEDGEMENT {
                    seqs.push(be_u32(&m.payload).unwrap() as u64);
                }
            }
        }
        assert!(total > switch_at + 6000, "replay too short: {total}");
        for (i, seq) in seqs.iter().enumerate() {
            let prev = if i == 0 { 0 } else { seqs[i - 1] };
            let window = if prev >= switch_at { 3000 } else { 5000 };
            assert!(
                *seq == prev + window || (prev < switch_at && *seq >= switch_at),
                "acks {seqs:?} switch at {switch_at}"
            );
        }
        assert!(seqs.iter().any(|s| *s > switch_at + 3000));
    }

    #[test]
    fn ping_request_is_answered() {
        let mut d = Duo::connected();
        d.inject(control::user_control_msg(
            mt::UC_PING_REQUEST,
            &[1, 2, 3, 4],
        ));
        let pong = d.raw.last().unwrap();
        assert_eq!(pong.type_id, mt::USER_CONTROL);
        assert_eq!(pong.csid, CSID_CONTROL);
        assert_eq!(&pong.payload[..], &[0, 7, 1, 2, 3, 4]);
    }

    #[test]
    fn ending_a_publish_or_play_raises_events() {
        let mut d = Duo::connected();
        let a = d.publish("a");
        d.c.delete_stream(a);
        d.pump();
        assert!(
            matches!(d.sev.last(), Some(SessionEvent::Unpublished { stream_id }) if *stream_id == a)
        );

        let b = d.publish("b?token=1");
        d.c.send_command(0, &command::simple_request("FCUnpublish", 0.0, Some("b")));
        d.pump();
        assert!(
            matches!(d.sev.last(), Some(SessionEvent::Unpublished { stream_id }) if *stream_id == b)
        );
        assert_eq!(d.raw_commands().last().unwrap().1.name, "onFCUnpublish");
        // deleteStream after FCUnpublish (FFmpeg's order) ends nothing twice.
        let n = d.sev.len();
        d.c.delete_stream(b);
        d.pump();
        assert_eq!(d.sev.len(), n);

        let c = d.publish("c");
        d.c.send_command(c, &Command::new("closeStream", 0.0, Value::Null, vec![]));
        d.pump();
        assert!(
            matches!(d.sev.last(), Some(SessionEvent::Unpublished { stream_id }) if *stream_id == c)
        );

        d.c.create_stream();
        d.pump();
        let p = d.created();
        d.c.play(p, "x");
        d.pump();
        let Some(SessionEvent::PlayRequest { request_id, .. }) = d.sev.pop() else {
            panic!()
        };
        d.s.accept_play(request_id);
        let pause = Command::new(
            "pause",
            0.0,
            Value::Null,
            vec![Value::Boolean(true), Value::Number(0.0)],
        );
        d.c.send_command(p, &pause);
        d.c.send_command(
            p,
            &Command::new(
                "receiveVideo",
                0.0,
                Value::Null,
                vec![Value::Boolean(false)],
            ),
        );
        d.c.send_command(
            p,
            &Command::new("receiveAudio", 0.0, Value::Null, vec![Value::Boolean(true)]),
        );
        d.c.delete_stream(p);
        d.pump();
        let tail = &d.sev[d.sev.len() - 4..];
        assert!(
            matches!(tail[0], SessionEvent::Pause { stream_id, paused: true } if stream_id == p)
        );
        assert!(
            matches!(tail[1], SessionEvent::ReceiveVideo { stream_id, enabled: false } if stream_id == p)
        );
        assert!(
            matches!(tail[2], SessionEvent::ReceiveAudio { stream_id, enabled: true } if stream_id == p)
        );
        assert!(matches!(tail[3], SessionEvent::PlayStopped { stream_id } if stream_id == p));

        // A stream ended before its request was answered still reports the end; answers are no-ops.
        d.c.create_stream();
        d.pump();
        let q = d.created();
        d.c.publish(q, "q");
        d.c.delete_stream(q);
        d.pump();
        let tail = &d.sev[d.sev.len() - 2..];
        let SessionEvent::PublishRequest { request_id, .. } = tail[0] else {
            panic!()
        };
        assert!(matches!(tail[1], SessionEvent::Unpublished { stream_id } if stream_id == q));
        let out = d.s.take_output().len();
        d.s.accept_publish(request_id);
        assert_eq!(d.s.take_output().len(), out);
    }

    #[test]
    fn streams_are_capped() {
        let mut d = Duo::connected();
        for _ in 0..MAX_STREAMS + 1 {
            d.c.create_stream();
        }
        d.pump();
        let ids: Vec<u32> = d
            .cev
            .iter()
            .filter_map(|e| match e {
                ClientEvent::StreamCreated { stream_id } => Some(*stream_id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, (1..=MAX_STREAMS as u32).collect::<Vec<_>>());
        assert!(matches!(d.cev.last(), Some(ClientEvent::Error(_))));
    }

    #[test]
    fn byte_by_byte_gives_identical_events() {
        let mut d = Duo::connected();
        d.c.fc_publish("s");
        let sid = d.publish("s");
        d.c.send_frame(sid, &Frame::parse(TAG_SCRIPT, 0, metadata_body()).unwrap());
        for i in 0..20u32 {
            d.c.send_frame(
                sid,
                &video(0xFF_FFF0 + i * 7, i % 10 == 0, 100 + 700 * i as usize),
            );
        }
        d.c.delete_stream(sid);
        d.pump();
        let whole = replay(&d.sent, d.sent.len());
        let expected: Vec<String> = d.sev.iter().map(|e| format!("{e:?}")).collect();
        assert_same(&whole, &expected, 0);
        for step in [1, 2, 3, 7, 128, 1537] {
            assert_same(&replay(&d.sent, step), &expected, step);
        }
    }

    /// Compares event lists without printing megabytes of payload on failure.
    fn assert_same(got: &[String], want: &[String], step: usize) {
        let short = |e: &String| e.chars().take(200).collect::<String>();
        if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
            panic!(
                "step {step}: event {i} differs ({} vs {} events): {:?} vs {:?}",
                got.len(),
                want.len(),
                got.get(i).map(short),
                want.get(i).map(short)
            );
        }
    }

    /// A fresh server fed `input` in pieces of `step` bytes, accepting every request.
    fn replay(input: &[u8], step: usize) -> Vec<String> {
        replay_events(input, step)
            .0
            .iter()
            .map(|e| format!("{e:?}"))
            .collect()
    }

    /// Like `replay`, returning the events and every message the server sent.
    fn replay_events(input: &[u8], step: usize) -> (Vec<SessionEvent>, Vec<Message>) {
        let mut s = ServerSession::new(SessionConfig::default(), 42, 1000);
        let mut events = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            s.handle_input(piece).unwrap();
            while let Some(e) = s.poll_event() {
                match e {
                    SessionEvent::PublishRequest { request_id, .. } => s.accept_publish(request_id),
                    SessionEvent::PlayRequest { request_id, .. } => s.accept_play(request_id),
                    _ => {}
                }
                events.push(e);
            }
            out.extend_from_slice(&s.take_output());
        }
        let mut dec = ChunkDecoder::new();
        let mut buf = BytesMut::from(&out[SERVER_HANDSHAKE_LEN.min(out.len())..]);
        let mut msgs = Vec::new();
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            msgs.push(m);
        }
        (events, msgs)
    }

    fn commands_in(msgs: &[Message]) -> Vec<Command> {
        msgs.iter()
            .filter(|m| m.type_id == mt::COMMAND_AMF0)
            .map(|m| Command::parse(amf0::decode_all(&m.payload).unwrap()).unwrap())
            .collect()
    }

    /// Everything FFmpeg 6 sent to a minimal server while publishing one second of 160x120
    /// H.264 + AAC to `rtmp://127.0.0.1:PORT/live/s?token=abc` (handshake, connect,
    /// releaseStream, FCPublish, createStream, publish, @setDataFrame, media, FCUnpublish,
    /// deleteStream), captured on 127.0.0.1.
    const FFMPEG_PUBLISH: &[u8] = include_bytes!("../../tests/data/ffmpeg_publish.bin");
    /// FFmpeg playing `rtmp://127.0.0.1:PORT/live/s`: connect, createStream, getStreamLength,
    /// play, Set Buffer Length.
    const FFMPEG_PLAY: &[u8] = include_bytes!("../../tests/data/ffmpeg_play.bin");

    #[test]
    fn replays_an_ffmpeg_publish() {
        let (events, msgs) = replay_events(FFMPEG_PUBLISH, 1);
        match &events[..2] {
            [SessionEvent::Connected { app, tc_url }, SessionEvent::PublishRequest {
                stream_id: 1,
                app: papp,
                name,
                ..
            }] => {
                assert_eq!(app, "live");
                assert!(tc_url.as_deref().unwrap().starts_with("rtmp://127.0.0.1:"));
                assert_eq!((papp.as_str(), name.as_str()), ("live", "s?token=abc"));
            }
            other => panic!("{other:?}"),
        }
        let frames: Vec<&Frame> = events
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Media {
                    stream_id: 1,
                    frame,
                } => Some(frame),
                _ => None,
            })
            .collect();
        assert_eq!(frames[0].track, Track::Meta);
        assert_eq!(&frames[0].data[..13], b"\x02\x00\x0aonMetaData");
        let meta = amf0::decode_all(&frames[0].data).unwrap();
        assert_eq!(meta[1].get("width"), Some(&Value::Number(160.0)));
        let video: Vec<&&Frame> = frames.iter().filter(|f| f.track == Track::Video).collect();
        let audio: Vec<&&Frame> = frames.iter().filter(|f| f.track == Track::Audio).collect();
        assert!(video[0].config && video[0].codec == Codec::Avc);
        assert!(video[1].key && !video[1].config);
        assert_eq!(
            video.len(),
            12,
            "sequence header, 10 pictures, end of sequence"
        );
        assert_eq!(video[11].data[1], 2, "AVC end of sequence");
        assert!(audio[0].config && audio[0].codec == Codec::Aac);
        assert!(audio.len() > 20);
        assert!(video.windows(2).all(|w| w[0].dts <= w[1].dts));
        assert!(matches!(
            events.last(),
            Some(SessionEvent::Unpublished { stream_id: 1 })
        ));
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, SessionEvent::Unpublished { .. }))
                .count(),
            1
        );
        let replies: Vec<(String, f64)> = commands_in(&msgs)
            .iter()
            .map(|c| (c.name.clone(), c.transaction_id))
            .collect();
        let expect: Vec<(String, f64)> = [
            ("_result", 1.0),
            ("_result", 2.0),
            ("_result", 3.0),
            ("_result", 4.0),
            ("onFCPublish", 3.0),
            ("onStatus", 0.0),
            ("onFCUnpublish", 6.0),
            ("_result", 6.0),
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), *t))
        .collect();
        assert_eq!(replies, expect);
        let all = replay(FFMPEG_PUBLISH, FFMPEG_PUBLISH.len());
        for step in [1, 5, 1000] {
            assert_same(&replay(FFMPEG_PUBLISH, step), &all, step);
        }
    }

    #[test]
    fn replays_an_ffmpeg_play() {
        let (events, msgs) = replay_events(FFMPEG_PLAY, 1);
        match &events[..] {
            [SessionEvent::Connected { .. }, SessionEvent::PlayRequest {
                stream_id: 1,
                app,
                name,
                ..
            }] => assert_eq!((app.as_str(), name.as_str()), ("live", "s")),
            other => panic!("{other:?}"),
        }
        let cmds = commands_in(&msgs);
        let get_length = cmds.iter().find(|c| c.transaction_id == 3.0).unwrap();
        assert_eq!(get_length.name, "_result");
        assert_eq!(get_length.arg(0), Some(&Value::Number(0.0)));
        let codes: Vec<&str> = cmds.iter().filter_map(code_of).collect();
        assert_eq!(
            codes,
            [
                "NetConnection.Connect.Success",
                "NetStream.Play.Reset",
                "NetStream.Play.Start"
            ]
        );
    }

    #[test]
    fn garbage_after_the_handshake_is_an_error_not_a_panic() {
        // A chunk header on a chunk stream never started.
        let mut d = Duo::connected();
        assert!(d.s.handle_input(&[0xFF; 64]).is_err());

        // A command whose AMF is garbage.
        let mut d = Duo::connected();
        let mut enc = ChunkEncoder::new();
        let mut bytes = Vec::new();
        enc.encode(
            &Message {
                csid: 3,
                timestamp: 0,
                type_id: mt::COMMAND_AMF0,
                stream_id: 0,
                payload: Bytes::from_static(&[0xEE, 1, 2, 3]),
            },
            &mut bytes,
        );
        assert!(matches!(
            d.s.handle_input(&bytes),
            Err(SessionError::Amf(_))
        ));

        // Pseudo-random bytes at every offset: errors or waits, never panics.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..200 {
            let mut d = Duo::connected();
            let junk: Vec<u8> = (0..(round * 7 % 900 + 10))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = d.s.handle_input(&junk);
        }
    }

    #[test]
    fn commands_before_connect_are_a_protocol_error() {
        let mut d = Duo::with_config(SessionConfig::default());
        d.c.create_stream();
        let mut out = Vec::new();
        // Complete the handshake by hand, then send createStream first.
        for _ in 0..4 {
            let co = d.c.take_output();
            out.push(d.s.handle_input(&co));
            let so = d.s.take_output();
            if !so.is_empty() {
                d.c.handle_input(&so).unwrap();
            }
        }
        assert!(out
            .iter()
            .any(|r| matches!(r, Err(SessionError::Protocol(_)))));
        assert!(d.s.wants_close());
    }
}
