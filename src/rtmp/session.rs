//! `ServerSession`: the server side of one RTMP connection, sans-IO. Bytes in (`handle_input`),
//! events out (`poll_event`), bytes out (`take_output`). It answers the protocol by itself
//! (handshake, control messages, connect, createStream, ...) and raises publish and play as
//! requests that the server answers with `accept_*` / `reject_*`: policy (auth, busy keys) lives
//! outside. It writes only control and command messages; media to players is pre-serialised by
//! the hub on `CSID_AUDIO` / `CSID_VIDEO` / `CSID_DATA`, which this session never uses.

use crate::amf::{amf0, AmfError, Value};
use crate::media::frame::TAG_SCRIPT;
use crate::media::key::split_query;
use crate::media::Frame;
use crate::rtmp::chunk::{self, ChunkDecoder, ChunkEncoder, ChunkError};
use crate::rtmp::command::{self, Command};
use crate::rtmp::handshake::{HandshakeError, ServerHandshake};
use crate::rtmp::message::{self as mt, Message};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;

/// Chunk stream for protocol control and user control messages (the spec requires csid 2).
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream for commands, onStatus and `|RtmpSampleAccess`.
pub const CSID_COMMAND: u32 = 3;
/// csids the hub uses for media it pre-serialises with `chunk::encode_pieces` (fmt 0 always);
/// the session's own encoder never uses these, so its header compression cannot be confused.
pub const CSID_AUDIO: u32 = 4;
pub const CSID_VIDEO: u32 = 6;
pub const CSID_DATA: u32 = 5;

/// Message streams one connection may have open at once (createStream beyond it gets `_error`).
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
    Connected { app: String, tc_url: Option<String> },
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
    Media {
        stream_id: u32,
        frame: Frame,
    },
    /// The publish on `stream_id` ended (deleteStream, FCUnpublish, closeStream). Also raised
    /// when the stream ends while its PublishRequest is still unanswered; then a later
    /// accept/reject of that request does nothing, and a server that rejected it ignores this.
    Unpublished { stream_id: u32 },
    /// A play ended (deleteStream/closeStream); same rule for unanswered requests as above.
    PlayStopped { stream_id: u32 },
    Pause { stream_id: u32, paused: bool },
    ReceiveAudio { stream_id: u32, enabled: bool },
    ReceiveVideo { stream_id: u32, enabled: bool },
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

/// Counts received bytes and says when an Acknowledgement is due: every `window` bytes, with the
/// real total (wrapping at 32 bits on the wire).
#[derive(Debug, Clone)]
pub(crate) struct AckCounter {
    pub received: u64,
    pub window: u32,
    last_ack: u64,
}

impl AckCounter {
    pub fn new(window: u32) -> AckCounter {
        AckCounter {
            received: 0,
            window,
            last_ack: 0,
        }
    }

    pub fn add(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// The sequence number to acknowledge, once per passed window.
    pub fn due(&mut self) -> Option<u32> {
        if self.window > 0 && self.received - self.last_ack >= self.window as u64 {
            self.last_ack = self.received;
            Some(self.received as u32)
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum StreamState {
    Idle,
    PublishPending(u32),
    /// The raw publish name, for FCUnpublish matching.
    Publishing(String),
    PlayPending(u32),
    Playing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestKind {
    Publish,
    Play,
}

#[derive(Debug)]
struct Request {
    id: u32,
    kind: RequestKind,
    stream_id: u32,
    name: String,
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
            self.send_control(chunk::ack_msg(seq));
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
            Refusal::BadName | Refusal::NotFound => {
                ("NetStream.Publish.BadName", "Bad name or already publishing.")
            }
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
        self.send_control(chunk::user_control_msg(
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
                &command::on_status("status", "NetStream.Play.PublishNotify", "Start publishing."),
            );
        }
    }

    /// User Control Stream EOF + onStatus NetStream.Play.UnpublishNotify. Closing the player
    /// afterwards is the server's decision.
    pub fn unpublish_notify(&mut self, stream_id: u32) {
        if self.state(stream_id).is_some() {
            self.send_control(chunk::user_control_msg(
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

    // ---- incoming messages ----

    fn handle_message(&mut self, msg: Message, allow_aggregate: bool) -> Result<(), SessionError> {
        match msg.type_id {
            // Set Chunk Size and Abort are applied by the decoder; acks and bandwidth are advisory.
            mt::SET_CHUNK_SIZE | mt::ABORT | mt::ACKNOWLEDGEMENT | mt::SET_PEER_BANDWIDTH => {}
            mt::WINDOW_ACK_SIZE => {
                if let Some(w) = be_u32(&msg.payload) {
                    if w > 0 {
                        self.acks.window = w;
                    }
                }
            }
            mt::USER_CONTROL => {
                if let Some(reply) = ping_reply(&msg.payload) {
                    self.send_control(reply);
                }
            }
            mt::AUDIO | mt::VIDEO => {
                if self.is_publishing(msg.stream_id) {
                    if let Some(frame) = Frame::parse(msg.type_id, msg.timestamp, msg.payload) {
                        self.events.push_back(SessionEvent::Media {
                            stream_id: msg.stream_id,
                            frame,
                        });
                    }
                }
            }
            mt::DATA_AMF0 | mt::DATA_AMF3 => {
                if self.is_publishing(msg.stream_id) {
                    if let Some(data) = metadata_payload(msg.type_id, &msg.payload) {
                        if let Some(frame) = Frame::parse(TAG_SCRIPT, msg.timestamp, data) {
                            self.events.push_back(SessionEvent::Media {
                                stream_id: msg.stream_id,
                                frame,
                            });
                        }
                    }
                }
            }
            mt::COMMAND_AMF0 | mt::COMMAND_AMF3 => {
                let values = amf0::decode_message(msg.type_id, &msg.payload)?;
                let cmd = Command::parse(values)
                    .map_err(|_| SessionError::Protocol("command message without a name"))?;
                self.on_command(msg.stream_id, cmd)?;
            }
            mt::AGGREGATE if allow_aggregate => {
                if self.is_publishing(msg.stream_id) {
                    for sub in split_aggregate(&msg)? {
                        self.handle_message(sub, false)?;
                    }
                }
            }
            // Shared objects and anything unknown: not ours to serve.
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), SessionError> {
        let txn = cmd.transaction_id;
        if !self.connected && cmd.name != "connect" {
            self.close = true;
            return Err(SessionError::Protocol("command before connect"));
        }
        match cmd.name.as_str() {
            "connect" => self.on_connect(&cmd)?,
            "createStream" => {
                if self.streams.len() >= MAX_STREAMS {
                    self.send_command(
                        0,
                        &command::error_reply(
                            txn,
                            "NetConnection.Call.Failed",
                            "Too many streams.",
                        ),
                    );
                } else {
                    let id = self.next_stream_id;
                    self.next_stream_id = self.next_stream_id.wrapping_add(1).max(1);
                    self.streams.push((id, StreamState::Idle));
                    self.send_command(0, &command::create_stream_result(txn, id));
                }
            }
            "releaseStream" | "_checkbw" => {
                if cmd.wants_reply() {
                    self.send_command(0, &command::simple_result(txn));
                }
            }
            "FCPublish" => {
                if let Some(name) = cmd.arg_str(0) {
                    if self.fc_publish.len() >= MAX_FC_PUBLISH {
                        self.fc_publish.remove(0);
                    }
                    self.fc_publish.push((name.to_string(), txn));
                }
                if cmd.wants_reply() {
                    self.send_command(0, &command::simple_result(txn));
                }
            }
            "FCUnpublish" => {
                let name = cmd.arg_str(0).unwrap_or("").to_string();
                self.on_fc_unpublish(&name);
                self.send_command(0, &command::on_fc_unpublish(txn, split_query(&name).0));
                if cmd.wants_reply() {
                    self.send_command(0, &command::simple_result(txn));
                }
            }
            "publish" => self.on_request(stream_id, RequestKind::Publish, &cmd)?,
            "play" => self.on_request(stream_id, RequestKind::Play, &cmd)?,
            "deleteStream" => {
                // The id is an argument; the message itself travels on stream 0 or on the stream.
                let id = match cmd.arg_f64(0) {
                    Some(n) if n >= 0.0 && n <= u32::MAX as f64 => n as u32,
                    _ => stream_id,
                };
                self.end_stream(id, true);
            }
            "closeStream" => self.end_stream(stream_id, false),
            "getStreamLength" => {
                if cmd.wants_reply() {
                    self.send_command(0, &command::value_result(txn, Value::Number(0.0)));
                }
            }
            "pause" => {
                if self.state(stream_id) == Some(&StreamState::Playing) {
                    let paused = cmd.arg_bool(0).unwrap_or(true);
                    let (code, text) = if paused {
                        ("NetStream.Pause.Notify", "Paused.")
                    } else {
                        ("NetStream.Unpause.Notify", "Unpaused.")
                    };
                    self.send_command(stream_id, &command::on_status("status", code, text));
                    self.events
                        .push_back(SessionEvent::Pause { stream_id, paused });
                }
            }
            "receiveAudio" | "receiveVideo" => {
                if self.state(stream_id).is_some() {
                    let enabled = cmd.arg_bool(0).unwrap_or(true);
                    self.events.push_back(if cmd.name == "receiveAudio" {
                        SessionEvent::ReceiveAudio { stream_id, enabled }
                    } else {
                        SessionEvent::ReceiveVideo { stream_id, enabled }
                    });
                }
            }
            // Replies to calls we never make, and notifications: nothing to answer.
            "_result" | "_error" | "onStatus" | "onBWDone" | "_onbwcheck" | "_onbwdone" => {}
            other => {
                if cmd.wants_reply() {
                    let shown: String = other.chars().take(64).collect();
                    self.send_command(
                        0,
                        &command::error_reply(
                            txn,
                            "NetConnection.Call.Failed",
                            &format!("Method not found ({shown})."),
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn on_connect(&mut self, cmd: &Command) -> Result<(), SessionError> {
        if self.connected {
            self.close = true;
            return Err(SessionError::Protocol("connect sent twice"));
        }
        let app = cmd.object_str("app").unwrap_or("");
        let app = app.strip_suffix('/').unwrap_or(app).to_string();
        let tc_url = cmd.object_str("tcUrl").map(str::to_string);
        let encoding = match cmd.object.get("objectEncoding").and_then(Value::as_f64) {
            Some(e) if e == 3.0 => 3.0,
            _ => 0.0,
        };
        self.send_control(chunk::window_ack_size_msg(self.config.window_ack_size));
        self.send_control(chunk::set_peer_bandwidth_msg(self.config.peer_bandwidth, 2));
        let size = self.config.chunk_size.clamp(128, 0x7fff_ffff);
        self.send_control(chunk::set_chunk_size_msg(size));
        self.encoder.set_chunk_size(size);
        self.send_command(0, &command::connect_result(cmd.transaction_id, encoding));
        self.connected = true;
        self.app = app.clone();
        self.events
            .push_back(SessionEvent::Connected { app, tc_url });
        Ok(())
    }

    fn on_request(
        &mut self,
        stream_id: u32,
        kind: RequestKind,
        cmd: &Command,
    ) -> Result<(), SessionError> {
        match self.state(stream_id) {
            None => return Err(SessionError::Protocol("publish or play on an unknown stream")),
            Some(StreamState::Idle) => {}
            Some(_) => return Err(SessionError::Protocol("publish or play on a busy stream")),
        }
        let name = cmd.arg_str(0).unwrap_or("").to_string();
        let request_id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        let state = match kind {
            RequestKind::Publish => StreamState::PublishPending(request_id),
            RequestKind::Play => StreamState::PlayPending(request_id),
        };
        self.set_state(stream_id, state);
        self.requests.push(Request {
            id: request_id,
            kind,
            stream_id,
            name: name.clone(),
        });
        let app = self.app.clone();
        self.events.push_back(match kind {
            RequestKind::Publish => SessionEvent::PublishRequest {
                request_id,
                stream_id,
                app,
                name,
            },
            RequestKind::Play => SessionEvent::PlayRequest {
                request_id,
                stream_id,
                app,
                name,
            },
        });
        Ok(())
    }

    /// FCUnpublish names the stream, not the message stream id: end the publish with that name.
    fn on_fc_unpublish(&mut self, name: &str) {
        let bare = split_query(name).0;
        let matches = |n: &str| n == name || split_query(n).0 == bare;
        let mut ended = Vec::new();
        for (id, state) in &self.streams {
            let hit = match state {
                StreamState::Publishing(n) => matches(n),
                StreamState::PublishPending(rid) => self
                    .requests
                    .iter()
                    .any(|r| r.id == *rid && matches(&r.name)),
                _ => false,
            };
            if hit {
                ended.push(*id);
            }
        }
        for id in ended {
            self.end_stream(id, false);
        }
        self.fc_publish.retain(|(n, _)| !matches(n));
    }

    /// Ends whatever `stream_id` does; `remove` also forgets the stream (deleteStream).
    fn end_stream(&mut self, stream_id: u32, remove: bool) {
        let Some(i) = self.streams.iter().position(|(id, _)| *id == stream_id) else {
            return;
        };
        match std::mem::replace(&mut self.streams[i].1, StreamState::Idle) {
            StreamState::Idle => {}
            StreamState::PublishPending(rid) => {
                self.requests.retain(|r| r.id != rid);
                self.events
                    .push_back(SessionEvent::Unpublished { stream_id });
            }
            StreamState::Publishing(_) => {
                self.events
                    .push_back(SessionEvent::Unpublished { stream_id });
            }
            StreamState::PlayPending(rid) => {
                self.requests.retain(|r| r.id != rid);
                self.events.push_back(SessionEvent::PlayStopped { stream_id });
            }
            StreamState::Playing => {
                self.events.push_back(SessionEvent::PlayStopped { stream_id });
            }
        }
        if remove {
            self.streams.remove(i);
        }
    }

    // ---- helpers ----

    fn state(&self, stream_id: u32) -> Option<&StreamState> {
        self.streams
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, s)| s)
    }

    fn set_state(&mut self, stream_id: u32, state: StreamState) {
        if let Some(slot) = self.streams.iter_mut().find(|(id, _)| *id == stream_id) {
            slot.1 = state;
        }
    }

    fn is_publishing(&self, stream_id: u32) -> bool {
        matches!(self.state(stream_id), Some(StreamState::Publishing(_)))
    }

    fn take_request(&mut self, request_id: u32, kind: RequestKind) -> Option<Request> {
        let i = self
            .requests
            .iter()
            .position(|r| r.id == request_id && r.kind == kind)?;
        Some(self.requests.remove(i))
    }

    fn send_control(&mut self, mut msg: Message) {
        msg.csid = CSID_CONTROL;
        self.encoder.encode(&msg, &mut self.out);
    }

    fn send_command(&mut self, stream_id: u32, cmd: &Command) {
        let msg = Message {
            csid: CSID_COMMAND,
            timestamp: 0,
            type_id: mt::COMMAND_AMF0,
            stream_id,
            payload: cmd.encode(),
        };
        self.encoder.encode(&msg, &mut self.out);
    }
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

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// The Ping Response to a User Control Ping Request (same 4-byte timestamp), if it is one.
pub(crate) fn ping_reply(payload: &[u8]) -> Option<Message> {
    let event = u16::from_be_bytes(payload.get(..2)?.try_into().ok()?);
    if event != mt::UC_PING_REQUEST {
        return None;
    }
    let stamp = payload.get(2..6)?;
    Some(chunk::user_control_msg(mt::UC_PING_RESPONSE, stamp))
}

/// The AMF0 `onMetaData` body of a data message, `@setDataFrame` removed, or `None` when the
/// message is other data (`|RtmpSampleAccess`, cue points...) or malformed. AMF0 messages keep
/// their bytes (sliced, no copy); AMF3 data messages are re-encoded as AMF0.
pub(crate) fn metadata_payload(type_id: u8, payload: &Bytes) -> Option<Bytes> {
    match type_id {
        mt::DATA_AMF0 => {
            let (first, used) = amf0::decode(payload).ok()?;
            let body = match first.as_str()? {
                "@setDataFrame" => payload.slice(used.min(payload.len())..),
                "onMetaData" => payload.clone(),
                _ => return None,
            };
            let values = amf0::decode_all(&body).ok()?;
            (values.len() >= 2 && values[0].as_str() == Some("onMetaData")).then_some(body)
        }
        mt::DATA_AMF3 => {
            let values = amf0::decode_message(type_id, payload).ok()?;
            let start = match values.first()?.as_str()? {
                "@setDataFrame" => 1,
                "onMetaData" => 0,
                _ => return None,
            };
            let rest = values.get(start..)?;
            (rest.len() >= 2 && rest[0].as_str() == Some("onMetaData"))
                .then(|| Bytes::from(amf0::encode_all(rest)))
        }
        _ => None,
    }
}

/// Splits an Aggregate message into its sub-messages (FLV tags: 11-byte header, body, 4-byte
/// back pointer). Sub-message times are re-based on the aggregate's own timestamp.
pub(crate) fn split_aggregate(msg: &Message) -> Result<Vec<Message>, SessionError> {
    let p = &msg.payload;
    let mut pos = 0;
    let mut first_ts = None;
    let mut subs = Vec::new();
    while pos < p.len() {
        let h = p
            .get(pos..pos + 11)
            .ok_or(SessionError::Protocol("truncated aggregate message"))?;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let start = pos + 11;
        let end = start + size;
        if end > p.len() {
            return Err(SessionError::Protocol("truncated aggregate message"));
        }
        let base = *first_ts.get_or_insert(ts);
        subs.push(Message {
            csid: msg.csid,
            timestamp: msg.timestamp.wrapping_add(ts.wrapping_sub(base)),
            type_id: h[0],
            stream_id: msg.stream_id,
            payload: p.slice(start..end),
        });
        // Some encoders leave off the last back pointer.
        pos = (end + 4).min(p.len());
    }
    Ok(subs)
}
