//! What a `ServerSession` does with each received message: control messages, media and data
//! from a publishing stream, and the commands (connect, createStream, publish, play, FCPublish,
//! deleteStream, ...), answered here or raised as events and requests; with the Enhanced RTMP v2
//! connect capability negotiation (`ClientCaps`, the capabilities we answer with). The stream
//! states it moves between are `streams`; the public API and the output are the parent's.

use super::streams::{Request, RequestKind, StreamState};
use super::{
    aggregate_of, command_of, ServerSession, SessionError, SessionEvent, MAX_FC_PUBLISH,
    MAX_STREAMS,
};
use crate::amf::Value;
use crate::codec::chunk::MAX_CHUNK_SIZE;
use crate::media::key::split_query;
use crate::rtmp::command::{self, Command};
use crate::rtmp::control::{self, be_u32, ping_reply};
use crate::rtmp::media_message::to_frame;
use crate::rtmp::message::{self as mt, Message};

impl ServerSession {
    pub(super) fn handle_message(
        &mut self,
        msg: Message,
        allow_aggregate: bool,
    ) -> Result<(), SessionError> {
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
            mt::AUDIO | mt::VIDEO | mt::DATA_AMF0 | mt::DATA_AMF3
                if self.is_publishing(msg.stream_id) =>
            {
                let stream_id = msg.stream_id;
                if let Some(frame) = to_frame(msg) {
                    self.events
                        .push_back(SessionEvent::Media { stream_id, frame });
                }
            }
            mt::COMMAND_AMF0 | mt::COMMAND_AMF3 => {
                let cmd = command_of(&msg)?;
                self.on_command(msg.stream_id, cmd)?;
            }
            mt::AGGREGATE if allow_aggregate && self.is_publishing(msg.stream_id) => {
                for sub in aggregate_of(&msg)? {
                    self.handle_message(sub, false)?;
                }
            }
            // Shared objects and anything unknown: not ours to serve.
            _ => {}
        }
        Ok(())
    }

    pub(super) fn on_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), SessionError> {
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

    pub(super) fn on_connect(&mut self, cmd: &Command) -> Result<(), SessionError> {
        if self.connected {
            self.close = true;
            return Err(SessionError::Protocol("connect sent twice"));
        }
        let app = cmd.object_str("app").unwrap_or("");
        let app = app.strip_suffix('/').unwrap_or(app).to_string();
        let tc_url = cmd.object_str("tcUrl").map(str::to_string);
        let encoding = match cmd.object.get("objectEncoding").and_then(Value::as_f64) {
            Some(3.0) => 3.0,
            _ => 0.0,
        };
        self.send_control(control::window_ack_size_msg(self.config.window_ack_size));
        self.send_control(control::set_peer_bandwidth_msg(
            self.config.peer_bandwidth,
            2,
        ));
        let size = self.config.chunk_size.clamp(128, MAX_CHUNK_SIZE);
        self.send_control(control::set_chunk_size_msg(size));
        self.encoder.set_chunk_size(size);
        let caps = ClientCaps::from_connect(&cmd.object);
        let mut result = command::connect_result(cmd.transaction_id, encoding);
        if caps.is_some() {
            // Only a client that spoke Enhanced RTMP hears it back: a legacy client gets the
            // legacy answer byte for byte.
            add_our_caps(&mut result.object);
        }
        self.send_command(0, &result);
        self.client_caps = caps;
        self.connected = true;
        self.app = app.clone();
        self.events
            .push_back(SessionEvent::Connected { app, tc_url });
        Ok(())
    }

    pub(super) fn on_request(
        &mut self,
        stream_id: u32,
        kind: RequestKind,
        cmd: &Command,
    ) -> Result<(), SessionError> {
        match self.state(stream_id) {
            None => {
                return Err(SessionError::Protocol(
                    "publish or play on an unknown stream",
                ))
            }
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
    pub(super) fn on_fc_unpublish(&mut self, name: &str) {
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
}

/// `FourCcInfoMask` (E-RTMP v2, "Enhancing NetConnection connect Command"); CanEncode (0x02)
/// is not ours to use: we forward, we never encode.
pub const FOURCC_CAN_DECODE: u32 = 0x01;
pub const FOURCC_CAN_FORWARD: u32 = 0x04;
/// `CapsExMask` bits we read or claim (Reconnect is 0x01, TimestampNanoOffset 0x08).
pub const CAPS_EX_MULTITRACK: u32 = 0x02;
pub const CAPS_EX_MOD_EX: u32 = 0x04;
/// The FourCC wildcard: "any codec".
pub const FOURCC_WILDCARD: &str = "*";

/// The video FourCCs we take in and forward (the ones `media::enhanced` names).
pub const OUR_VIDEO_FOURCCS: [&str; 5] = ["avc1", "hvc1", "av01", "vp09", "vp08"];
/// The audio FourCCs we take in and forward.
pub const OUR_AUDIO_FOURCCS: [&str; 6] = ["mp4a", ".mp3", "Opus", "ac-3", "ec-3", "fLaC"];
/// We parse multitrack and ModEx messages (a nano offset is parsed but not kept, so
/// `TimestampNanoOffset` is not claimed) and never send a reconnect request.
pub const OUR_CAPS_EX: u32 = CAPS_EX_MULTITRACK | CAPS_EX_MOD_EX;

/// How many FourCC entries of a client's connect we keep: a real client names about a dozen;
/// the rest of a hostile list is ignored (the AMF decoder already caps the message).
const MAX_CAPS_ENTRIES: usize = 64;

/// What an Enhanced RTMP client declared in its connect command object. `None` from
/// `from_connect` means a legacy client (none of the four properties present).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCaps {
    /// `fourCcList` (E-RTMP v1): FourCCs the client supports, `"*"` for any.
    pub fourcc_list: Vec<String>,
    /// `videoFourCcInfoMap`: FourCC (or `"*"`) and its `FourCcInfoMask` flags.
    pub video: Vec<(String, u32)>,
    /// `audioFourCcInfoMap`.
    pub audio: Vec<(String, u32)>,
    /// `capsEx` (`CapsExMask` flags), 0 when absent.
    pub caps_ex: u32,
}

impl ClientCaps {
    /// Reads the four E-RTMP properties of a connect command object; values of the wrong AMF
    /// type are ignored (a non-string list entry, a non-number flag), never an error.
    pub fn from_connect(object: &Value) -> Option<ClientCaps> {
        let list = object.get("fourCcList");
        let video = object.get("videoFourCcInfoMap");
        let audio = object.get("audioFourCcInfoMap");
        let caps_ex = object.get("capsEx");
        if list.is_none() && video.is_none() && audio.is_none() && caps_ex.is_none() {
            return None;
        }
        let fourcc_list = match list {
            Some(Value::StrictArray(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .take(MAX_CAPS_ENTRIES)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Some(ClientCaps {
            fourcc_list,
            video: info_map(video),
            audio: info_map(audio),
            caps_ex: caps_ex.and_then(Value::as_f64).map_or(0, flags),
        })
    }

    /// True when the client can take (decode or forward) this video FourCC: named in
    /// `fourCcList` or the info map, or covered by the `"*"` wildcard.
    pub fn accepts_video(&self, fourcc: &str) -> bool {
        self.accepts(&self.video, fourcc)
    }

    /// The same for an audio FourCC.
    pub fn accepts_audio(&self, fourcc: &str) -> bool {
        self.accepts(&self.audio, fourcc)
    }

    /// The client declared `CapsExMask.Multitrack`.
    pub fn multitrack(&self) -> bool {
        self.caps_ex & CAPS_EX_MULTITRACK != 0
    }

    fn accepts(&self, map: &[(String, u32)], fourcc: &str) -> bool {
        let usable = FOURCC_CAN_DECODE | FOURCC_CAN_FORWARD;
        // The wildcard overrides the per-codec flags (the spec), so it is looked at first.
        if let Some((_, f)) = map.iter().find(|(k, _)| k == FOURCC_WILDCARD) {
            return f & usable != 0;
        }
        self.fourcc_list
            .iter()
            .any(|c| c == fourcc || c == FOURCC_WILDCARD)
            || map.iter().any(|(k, f)| k == fourcc && f & usable != 0)
    }
}

/// A FourCC info map (Object or ECMA array of numbers), capped.
fn info_map(v: Option<&Value>) -> Vec<(String, u32)> {
    match v {
        Some(Value::Object(props) | Value::EcmaArray(props)) => props
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), flags(v.as_f64()?))))
            .take(MAX_CAPS_ENTRIES)
            .collect(),
        _ => Vec::new(),
    }
}

/// An AMF number as a flag word: anything not a whole number in u32 range is no flags.
fn flags(n: f64) -> u32 {
    if n.is_finite() && n >= 0.0 && n <= u32::MAX as f64 && n.fract() == 0.0 {
        n as u32
    } else {
        0
    }
}

/// Adds what we support to a connect `_result`'s properties object (where the spec says the
/// server states its E-RTMP support): both the v1 `fourCcList` and the v2 maps, since clients
/// read one or the other, and `capsEx`. We forward every codec we name; we decode none.
fn add_our_caps(props: &mut Value) {
    let Value::Object(props) = props else {
        return;
    };
    let list = OUR_VIDEO_FOURCCS
        .iter()
        .chain(OUR_AUDIO_FOURCCS.iter())
        .map(|c| Value::string(c))
        .collect();
    let map = |fourccs: &[&str]| {
        Value::Object(
            fourccs
                .iter()
                .map(|c| (c.to_string(), Value::Number(FOURCC_CAN_FORWARD as f64)))
                .collect(),
        )
    };
    props.push(("fourCcList".into(), Value::StrictArray(list)));
    props.push(("videoFourCcInfoMap".into(), map(&OUR_VIDEO_FOURCCS)));
    props.push(("audioFourCcInfoMap".into(), map(&OUR_AUDIO_FOURCCS)));
    props.push(("capsEx".into(), Value::Number(OUR_CAPS_EX as f64)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0;
    use crate::codec::chunk::{ChunkEncoder, CSID_COMMAND};
    use crate::rtmp::chunk::ChunkDecoder;
    use crate::rtmp::client::ClientSession;
    use crate::rtmp::session::SessionConfig;

    /// A server session past the handshake (done with our client, which then steps aside).
    fn handshaken() -> ServerSession {
        let mut s = ServerSession::new(SessionConfig::default(), 42, 1000);
        let mut c = ClientSession::new(7);
        s.handle_input(&c.take_output()).unwrap();
        c.handle_input(&s.take_output()).unwrap();
        s.handle_input(&c.take_output()).unwrap();
        assert!(s.is_handshake_done());
        s
    }

    /// Feeds one AMF0 command message (its payload as raw bytes) and returns every message
    /// the server answered with.
    fn answer(s: &mut ServerSession, payload: &[u8]) -> Vec<Message> {
        let msg = Message {
            csid: CSID_COMMAND,
            timestamp: 0,
            type_id: mt::COMMAND_AMF0,
            stream_id: 0,
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        let mut wire = Vec::new();
        // The default 128-byte chunks: the connect spans several.
        ChunkEncoder::new().encode(&msg, &mut wire);
        s.handle_input(&wire).unwrap();
        let mut buf = bytes::BytesMut::from(&s.take_output()[..]);
        let mut dec = ChunkDecoder::new();
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut buf).unwrap() {
            out.push(m);
        }
        out
    }

    fn connect_result(msgs: &[Message]) -> &Message {
        msgs.iter()
            .find(|m| m.type_id == mt::COMMAND_AMF0)
            .expect("a command reply")
    }

    /// connect, txn 1, { app: "live", <extra properties> }, hand-encoded AMF0.
    fn connect_bytes(extra: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"\x02\x00\x07connect");
        b.extend_from_slice(b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00");
        b.push(0x03);
        b.extend_from_slice(b"\x00\x03app\x02\x00\x04live");
        b.extend_from_slice(extra);
        b.extend_from_slice(b"\x00\x00\x09");
        b
    }

    #[test]
    fn enhanced_connect_is_answered_with_our_fourccs() {
        // What OBS 30 sends: fourCcList (v1), a video map with the wildcard (v2), capsEx.
        let mut extra = Vec::new();
        extra.extend_from_slice(b"\x00\x0afourCcList\x0a\x00\x00\x00\x02");
        extra.extend_from_slice(b"\x02\x00\x04hvc1\x02\x00\x04av01");
        extra.extend_from_slice(b"\x00\x06capsEx\x00\x40\x00\x00\x00\x00\x00\x00\x00");
        extra.extend_from_slice(b"\x00\x12videoFourCcInfoMap\x03");
        extra.extend_from_slice(b"\x00\x01*\x00\x40\x10\x00\x00\x00\x00\x00\x00\x00\x00\x09");
        let mut s = handshaken();
        let msgs = answer(&mut s, &connect_bytes(&extra));
        let reply =
            Command::parse(amf0::decode_all(&connect_result(&msgs).payload).unwrap()).unwrap();
        assert_eq!(
            (reply.name.as_str(), reply.transaction_id),
            ("_result", 1.0)
        );
        let o = &reply.object;
        assert_eq!(
            o.get("fmsVer").and_then(Value::as_str),
            Some(command::FMS_VERSION)
        );
        let list: Vec<&str> = match o.get("fourCcList") {
            Some(Value::StrictArray(v)) => v.iter().filter_map(Value::as_str).collect(),
            other => panic!("fourCcList: {other:?}"),
        };
        assert_eq!(
            list,
            [
                "avc1", "hvc1", "av01", "vp09", "vp08", "mp4a", ".mp3", "Opus", "ac-3", "ec-3",
                "fLaC"
            ]
        );
        let video = o.get("videoFourCcInfoMap").unwrap();
        for cc in ["avc1", "hvc1", "av01", "vp09"] {
            assert_eq!(video.get(cc), Some(&Value::Number(4.0)), "{cc}");
        }
        let audio = o.get("audioFourCcInfoMap").unwrap();
        for cc in ["mp4a", ".mp3", "Opus", "ac-3", "ec-3", "fLaC"] {
            assert_eq!(audio.get(cc), Some(&Value::Number(4.0)), "{cc}");
        }
        assert_eq!(o.get("capsEx"), Some(&Value::Number(6.0)));
        // The info object is the legacy one.
        assert_eq!(
            reply
                .arg(0)
                .and_then(|i| i.get("code"))
                .and_then(Value::as_str),
            Some("NetConnection.Connect.Success")
        );
        // What the client declared is kept for the outputs to consult.
        let caps = s.client_caps().expect("enhanced client");
        assert_eq!(caps.fourcc_list, ["hvc1", "av01"]);
        assert_eq!(caps.video, [("*".to_string(), 4)]);
        assert_eq!((caps.audio.len(), caps.caps_ex), (0, 2));
        assert!(caps.multitrack());
        assert!(
            caps.accepts_video("vp09"),
            "the wildcard forwards any video"
        );
        assert!(!caps.accepts_audio("Opus"));
    }

    #[test]
    fn legacy_connect_gets_the_legacy_answer_unchanged() {
        // audioCodecs/videoCodecs are legacy properties: no E-RTMP answer for them.
        let extra = b"\x00\x0bvideoCodecs\x00\x40\x6f\xc0\x00\x00\x00\x00\x00";
        let mut s = handshaken();
        let msgs = answer(&mut s, &connect_bytes(extra));
        assert_eq!(
            connect_result(&msgs).payload,
            command::connect_result(1.0, 0.0).encode()
        );
        assert_eq!(s.client_caps(), None);
    }

    #[test]
    fn capsex_alone_makes_an_enhanced_client() {
        let mut s = handshaken();
        let msgs = answer(
            &mut s,
            &connect_bytes(b"\x00\x06capsEx\x00\x40\x10\x00\x00\x00\x00\x00\x00"),
        );
        let reply =
            Command::parse(amf0::decode_all(&connect_result(&msgs).payload).unwrap()).unwrap();
        assert!(reply.object.get("fourCcList").is_some());
        assert_eq!(s.client_caps().map(|c| c.caps_ex), Some(4));
    }

    #[test]
    fn client_caps_from_values() {
        // A v2 map without the wildcard; a flag of 2 (CanEncode only) is not "accepts".
        let o = Value::Object(vec![
            (
                "audioFourCcInfoMap".into(),
                Value::EcmaArray(vec![
                    ("Opus".into(), Value::Number(1.0)),
                    ("fLaC".into(), Value::Number(2.0)),
                ]),
            ),
            (
                "fourCcList".into(),
                Value::StrictArray(vec![Value::string("hvc1")]),
            ),
        ]);
        let c = ClientCaps::from_connect(&o).unwrap();
        assert!(c.accepts_audio("Opus") && !c.accepts_audio("fLaC"));
        assert!(c.accepts_video("hvc1") && !c.accepts_video("av01"));
        assert!(!c.multitrack());
        // A wildcard that forbids overrides a codec that allows.
        let o = Value::object([(
            "videoFourCcInfoMap",
            Value::object([("*", Value::Number(0.0)), ("hvc1", Value::Number(4.0))]),
        )]);
        assert!(!ClientCaps::from_connect(&o).unwrap().accepts_video("hvc1"));
        // Hostile values: wrong types and non-integral flags are ignored, never an error.
        let o = Value::object([
            ("fourCcList", Value::string("hvc1")),
            ("capsEx", Value::Number(f64::NAN)),
            (
                "videoFourCcInfoMap",
                Value::object([
                    ("hvc1", Value::Number(-1.0)),
                    ("av01", Value::string("x")),
                    ("vp09", Value::Number(1e300)),
                ]),
            ),
        ]);
        let c = ClientCaps::from_connect(&o).unwrap();
        assert_eq!(c.fourcc_list, Vec::<String>::new());
        assert_eq!(c.caps_ex, 0);
        assert_eq!(c.video, [("hvc1".into(), 0), ("vp09".into(), 0)]);
        // A huge list is capped.
        let many = Value::StrictArray((0..10_000).map(|_| Value::string("avc1")).collect());
        let c = ClientCaps::from_connect(&Value::object([("fourCcList", many)])).unwrap();
        assert_eq!(c.fourcc_list.len(), MAX_CAPS_ENTRIES);
        assert_eq!(ClientCaps::from_connect(&Value::Null), None);
    }
}
