//! The per-stream state of a `ServerSession`: what each message stream does (idle, publish or
//! play, pending or accepted), the requests waiting for the server's answer, and ending a stream
//! with the event that says so. No command parsing, no output.

use super::{ServerSession, SessionEvent};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum StreamState {
    Idle,
    PublishPending(u32),
    /// The raw publish name, for FCUnpublish matching.
    Publishing(String),
    PlayPending(u32),
    Playing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestKind {
    Publish,
    Play,
}

#[derive(Debug)]
pub(super) struct Request {
    pub(super) id: u32,
    pub(super) kind: RequestKind,
    pub(super) stream_id: u32,
    pub(super) name: String,
}

impl ServerSession {
    /// Ends whatever `stream_id` does; `remove` also forgets the stream (deleteStream).
    pub(super) fn end_stream(&mut self, stream_id: u32, remove: bool) {
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
                self.events
                    .push_back(SessionEvent::PlayStopped { stream_id });
            }
            StreamState::Playing => {
                self.events
                    .push_back(SessionEvent::PlayStopped { stream_id });
            }
        }
        if remove {
            self.streams.remove(i);
        }
    }

    pub(super) fn state(&self, stream_id: u32) -> Option<&StreamState> {
        self.streams
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, s)| s)
    }

    pub(super) fn set_state(&mut self, stream_id: u32, state: StreamState) {
        if let Some(slot) = self.streams.iter_mut().find(|(id, _)| *id == stream_id) {
            slot.1 = state;
        }
    }

    /// Media is taken from an accepted publish, and from one whose request is still queued:
    /// events are ordered, so the server has answered the request before it sees that media
    /// (and ignores media for a stream it refused). Encoders that send media right behind
    /// `publish` thus lose nothing when both arrive in one read.
    pub(super) fn is_publishing(&self, stream_id: u32) -> bool {
        matches!(
            self.state(stream_id),
            Some(StreamState::Publishing(_) | StreamState::PublishPending(_))
        )
    }

    pub(super) fn take_request(&mut self, request_id: u32, kind: RequestKind) -> Option<Request> {
        let i = self
            .requests
            .iter()
            .position(|r| r.id == request_id && r.kind == kind)?;
        Some(self.requests.remove(i))
    }
}
