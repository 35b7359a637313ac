//! The client side of RTMP: `ClientSession`, sans-IO, the mirror of `ServerSession`, used by the
//! load generator (and, wrapped in a blocking socket client, by the integration tests under
//! `tests/util/rtmp.rs`). Not a general-purpose client: no reconnects, no digest checks.

use crate::amf::{amf0, Value};
use crate::codec::chunk::{ChunkEncoder, CSID_AUDIO, CSID_CONTROL, CSID_DATA, CSID_VIDEO};
use crate::media::{Frame, Track};
use crate::rtmp::chunk::ChunkDecoder;
use crate::rtmp::command::{self, Command};
use crate::rtmp::control::{self, ping_reply, AckCounter};
use crate::rtmp::handshake::ClientHandshake;
use crate::rtmp::media_message::to_frame;
use crate::rtmp::message::{self as mt, Message};
use crate::rtmp::session::{aggregate_of, command_of, feed_handshake, SessionError};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

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
            self.send(control::ack_msg(seq), CSID_CONTROL);
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
        self.send(control::set_chunk_size_msg(CLIENT_CHUNK_SIZE), CSID_CONTROL);
        self.encoder.set_chunk_size(CLIENT_CHUNK_SIZE);
    }

    /// `connect` as an Enhanced RTMP client: its command object names `fourccs` in
    /// `fourCcList` (what it can take: the server may then send those codecs as published).
    pub fn connect_enhanced(&mut self, app: &str, tc_url: &str, fourccs: &[&str]) {
        let txn = self.call(Call::Connect);
        let mut c = command::connect(txn, app, tc_url);
        if let crate::amf::Value::Object(props) = &mut c.object {
            let list = fourccs
                .iter()
                .map(|f| crate::amf::Value::string(f))
                .collect();
            props.push(("fourCcList".into(), crate::amf::Value::StrictArray(list)));
        }
        self.send_command(0, &c);
        self.send(control::set_chunk_size_msg(CLIENT_CHUNK_SIZE), CSID_CONTROL);
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
            control::user_control_msg(mt::UC_SET_BUFFER_LENGTH, &data),
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
        let msg = cmd.message(stream_id);
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
            mt::AUDIO | mt::VIDEO | mt::DATA_AMF0 | mt::DATA_AMF3 => {
                let stream_id = msg.stream_id;
                if let Some(frame) = to_frame(msg) {
                    self.events
                        .push_back(ClientEvent::Media { stream_id, frame });
                }
            }
            mt::COMMAND_AMF0 | mt::COMMAND_AMF3 => {
                let cmd = command_of(&msg)?;
                self.on_command(msg.stream_id, cmd);
            }
            mt::AGGREGATE if allow_aggregate => {
                for sub in aggregate_of(&msg)? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::handshake::HANDSHAKE_SIZE;
    use crate::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

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
