//! What a `ServerSession` does with each received message: control messages, media and data
//! from a publishing stream, and the commands (connect, createStream, publish, play, FCPublish,
//! deleteStream, ...), answered here or raised as events and requests. The stream states it
//! moves between are `streams`; the public API and the output are the parent's.

use super::streams::{Request, RequestKind, StreamState};
use super::{ServerSession, SessionError, SessionEvent, MAX_FC_PUBLISH, MAX_STREAMS};
use crate::amf::Value;
use crate::codec::chunk::MAX_CHUNK_SIZE;
use crate::media::key::split_query;
use crate::rtmp::command::{self, Command};
use crate::rtmp::control::{self, be_u32, ping_reply};
use crate::rtmp::media_message::{split_aggregate, to_frame};
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
                let values = mt::decode_message(msg.type_id, &msg.payload)?;
                let cmd = Command::parse(values)
                    .map_err(|_| SessionError::Protocol("command message without a name"))?;
                self.on_command(msg.stream_id, cmd)?;
            }
            mt::AGGREGATE if allow_aggregate && self.is_publishing(msg.stream_id) => {
                let subs = split_aggregate(&msg)
                    .ok_or(SessionError::Protocol("truncated aggregate message"))?;
                for sub in subs {
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
        self.send_command(0, &command::connect_result(cmd.transaction_id, encoding));
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
