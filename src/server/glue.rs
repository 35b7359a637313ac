//! Glue as functions: a protocol event and the origin core in, effects on other connections
//! out. A glue function touches only what it is given (the core, the one connection's protocol
//! state and queue) and lists what the loop must do elsewhere as `Effect`s, which
//! `Server::apply_effects` carries out; so the decisions are unit-tested in memory, without a
//! socket or a `Server`. RTMP's publish and play are written this way; a new protocol's glue
//! (WHEP, SRT) should be too: `fn(event, &mut Origin, &mut its state, &mut Vec<Effect>)`.
//!
//! Logs are written here, with the peer, as in the rest of the glue.

use std::net::SocketAddr;
use std::time::SystemTime;

use log::{info, warn};

use super::conn::{RtmpConn, RtmpRole};
use super::outq::OutQueue;
use crate::hub::{OutputForm, ViewerId};
use crate::media::StreamKey;
use crate::origin::{Origin, PlayRequest, PublishRequest, Refused};
use crate::rtmp::session::Refusal;

/// What the loop does after a glue function, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A request was refused (`Totals::refused`).
    Refused,
    /// Connection `old` published `key` and sent nothing for a while; `by` took the stream
    /// over: `old` is no longer its publisher and is closed.
    TakenOver {
        old: usize,
        key: StreamKey,
        by: SocketAddr,
    },
    /// A viewer that waited for its publisher: an RTMP one gets Play.PublishNotify, any one
    /// is written.
    PublisherArrived(ViewerId),
    /// The connection's output goes out now.
    Write(usize),
}

/// An RTMP publish the access check allowed: the core decides; the session answers
/// Publish.Start (the connection becomes the publisher) or Publish.BadName.
#[allow(clippy::too_many_arguments)]
pub fn rtmp_publish(
    core: &mut Origin,
    r: &mut RtmpConn,
    req: &PublishRequest,
    request_id: u32,
    stream_id: u32,
    now_ms: u64,
    wall: SystemTime,
    fx: &mut Vec<Effect>,
) {
    let peer = req.peer.map_or_else(|| "-".to_string(), |p| p.to_string());
    let ok = match core.publish(req, now_ms, wall) {
        Ok(ok) => ok,
        Err(why) => {
            match &why {
                Refused::Busy => warn!(
                    "{}/{}: second publisher {peer} refused (stream busy)",
                    req.app, req.name
                ),
                _ => warn!("RTMP {peer}: publish refused: {why}"),
            }
            r.session.reject_publish(request_id, Refusal::BadName);
            fx.push(Effect::Refused);
            return;
        }
    };
    r.session.accept_publish(request_id);
    r.role = RtmpRole::Publisher {
        handle: ok.handle,
        stream_id,
    };
    info!("{}: publish from {peer}", ok.key);
    if let (Some(old), Some(by)) = (ok.took_over_from, req.peer) {
        fx.push(Effect::TakenOver {
            old,
            key: ok.key,
            by,
        });
    }
    fx.extend(ok.waiting_viewers.into_iter().map(Effect::PublisherArrived));
}

/// An RTMP play the access check allowed: the core adds the viewer (live, or waiting for its
/// publisher); the session's replies so far go to `out` and Play.Start into the viewer's queue
/// (so it is in order with the media), or Play.StreamNotFound when refused.
#[allow(clippy::too_many_arguments)]
pub fn rtmp_play(
    core: &mut Origin,
    r: &mut RtmpConn,
    out: &mut OutQueue,
    req: &PlayRequest,
    request_id: u32,
    stream_id: u32,
    now_ms: u64,
    fx: &mut Vec<Effect>,
) {
    let peer = req.peer.map_or_else(|| "-".to_string(), |p| p.to_string());
    // Replies queued so far go out before the player's own queue takes over.
    out.push(r.session.take_output().into());
    // Of an Opus stream, a player gets the audio bridge's AAC unless its connect named Opus
    // (Enhanced RTMP `fourCcList` or `audioFourCcInfoMap`).
    let takes_opus = r
        .session
        .client_caps()
        .is_some_and(|c| c.accepts_audio("Opus"));
    let form = OutputForm::Rtmp {
        chunk_size: r.session.out_chunk_size(),
        stream_id,
        aac: !takes_opus,
    };
    let playing = match core.play(req, form, now_ms) {
        Ok(p) => p,
        Err(why) => {
            warn!("RTMP {peer}: play refused: {why}");
            r.session.reject_play(request_id, Refusal::NotFound);
            return;
        }
    };
    let viewer = playing.viewer;
    r.role = RtmpRole::Player { viewer, stream_id };
    r.session.accept_play(request_id);
    let reply = r.session.take_output();
    if let Some(vw) = core.hub.viewer(viewer) {
        vw.queue.push_control(reply.into());
    }
    core.start_viewer(viewer);
    info!(
        "{}: RTMP player {peer}{}",
        playing.key,
        if playing.live {
            ""
        } else {
            " (waiting for the publisher)"
        }
    );
    fx.push(Effect::Write(req.conn));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;
    use crate::origin::Proto;
    use crate::rtmp::client::{ClientEvent, ClientSession};
    use crate::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

    /// One RTMP connection in memory: a client session against the server's.
    struct Pair {
        c: ClientSession,
        r: RtmpConn,
        peer: SocketAddr,
        token: usize,
    }

    impl Pair {
        fn connected(token: usize) -> Pair {
            let mut p = Pair {
                c: ClientSession::new(token as u64),
                r: RtmpConn {
                    session: ServerSession::new(SessionConfig::default(), 42, 0),
                    app: String::new(),
                    tc_url: None,
                    role: RtmpRole::Idle,
                },
                peer: SocketAddr::from(([192, 0, 2, token as u8], 5000)),
                token,
            };
            p.c.connect("live", "rtmp://127.0.0.1/live");
            p.pump();
            p
        }

        /// Moves bytes both ways until quiet; the server's events and the client's.
        fn pump(&mut self) -> (Vec<SessionEvent>, Vec<ClientEvent>) {
            let (mut sev, mut cev) = (Vec::new(), Vec::new());
            for _ in 0..50 {
                let co = self.c.take_output();
                let so = self.r.session.take_output();
                if co.is_empty() && so.is_empty() {
                    break;
                }
                self.r.session.handle_input(&co).unwrap();
                self.c.handle_input(&so).unwrap();
                sev.extend(std::iter::from_fn(|| self.r.session.poll_event()));
                cev.extend(std::iter::from_fn(|| self.c.poll_event()));
            }
            (sev, cev)
        }

        /// createStream then publish or play `name`: the server's request id and stream id.
        fn request(&mut self, publish: bool, name: &str) -> (u32, u32) {
            self.c.create_stream();
            let (_, cev) = self.pump();
            let sid = cev
                .iter()
                .find_map(|e| match e {
                    ClientEvent::StreamCreated { stream_id } => Some(*stream_id),
                    _ => None,
                })
                .expect("stream created");
            if publish {
                self.c.publish(sid, name);
            } else {
                self.c.play(sid, name);
            }
            let (sev, _) = self.pump();
            let rid = sev
                .iter()
                .find_map(|e| match e {
                    SessionEvent::PublishRequest { request_id, .. }
                    | SessionEvent::PlayRequest { request_id, .. } => Some(*request_id),
                    _ => None,
                })
                .expect("a request");
            (rid, sid)
        }

        fn req<'a>(&self, proto: Proto, name: &'a str) -> PublishRequest<'a> {
            PublishRequest {
                conn: self.token,
                peer: Some(self.peer),
                proto,
                app: "live",
                name,
            }
        }

        /// The onStatus codes the client got.
        fn statuses(&mut self) -> Vec<String> {
            let (_, cev) = self.pump();
            cev.into_iter()
                .filter_map(|e| match e {
                    ClientEvent::Status { code, .. } => Some(code),
                    _ => None,
                })
                .collect()
        }
    }

    fn core() -> Origin {
        Origin::new(HubConfig::default(), None)
    }

    #[test]
    fn a_publish_makes_the_connection_the_publisher_and_answers_start() {
        let mut core = core();
        let mut p = Pair::connected(1);
        let (rid, sid) = p.request(true, "cam");
        let mut fx = Vec::new();
        let req = p.req(Proto::Rtmp, "cam");
        rtmp_publish(
            &mut core,
            &mut p.r,
            &req,
            rid,
            sid,
            0,
            SystemTime::now(),
            &mut fx,
        );
        assert!(fx.is_empty(), "{fx:?}");
        assert!(matches!(p.r.role, RtmpRole::Publisher { stream_id, .. } if stream_id == sid));
        assert_eq!(p.statuses(), vec!["NetStream.Publish.Start".to_string()]);
        assert!(core.hub.streams().any(|s| s.key.to_string() == "live/cam"));
    }

    #[test]
    fn a_second_publisher_is_refused_with_bad_name_and_counted() {
        let mut core = core();
        let mut fx = Vec::new();
        let mut a = Pair::connected(1);
        let (rid, sid) = a.request(true, "cam");
        let req = a.req(Proto::Rtmp, "cam");
        rtmp_publish(
            &mut core,
            &mut a.r,
            &req,
            rid,
            sid,
            0,
            SystemTime::now(),
            &mut fx,
        );
        let mut b = Pair::connected(2);
        let (rid, sid) = b.request(true, "cam");
        let req = b.req(Proto::Rtmp, "cam");
        // 1 s later: the first publisher is not idle long enough to be taken over.
        rtmp_publish(
            &mut core,
            &mut b.r,
            &req,
            rid,
            sid,
            1000,
            SystemTime::now(),
            &mut fx,
        );
        assert_eq!(fx, vec![Effect::Refused]);
        assert!(matches!(b.r.role, RtmpRole::Idle));
        assert_eq!(b.statuses(), vec!["NetStream.Publish.BadName".to_string()]);
        assert!(b.r.session.wants_close());
    }

    #[test]
    fn an_idle_publisher_is_taken_over_and_a_waiting_player_learns_of_the_newcomer() {
        let mut core = core();
        let mut fx = Vec::new();
        // A player first: it waits for the stream.
        let mut v = Pair::connected(3);
        let (rid, sid) = v.request(false, "cam");
        let mut out = OutQueue::default();
        let req = v.req(Proto::Rtmp, "cam");
        rtmp_play(&mut core, &mut v.r, &mut out, &req, rid, sid, 0, &mut fx);
        assert_eq!(fx, vec![Effect::Write(3)]);
        let RtmpRole::Player { viewer, .. } = v.r.role else {
            panic!("not a player: {:?}", v.r.role);
        };
        let queued = core.hub.viewer_ref(viewer).unwrap().queue.control_bytes();
        assert!(
            queued > 0,
            "Play.Start waits in the viewer's queue, in order with media"
        );
        fx.clear();
        let mut a = Pair::connected(1);
        let (rid, sid) = a.request(true, "cam");
        let req = a.req(Proto::Rtmp, "cam");
        rtmp_publish(
            &mut core,
            &mut a.r,
            &req,
            rid,
            sid,
            0,
            SystemTime::now(),
            &mut fx,
        );
        assert_eq!(fx, vec![Effect::PublisherArrived(viewer)]);
        fx.clear();
        // Nothing from the first publisher for 10 s: the second takes the stream over.
        let mut b = Pair::connected(2);
        let (rid, sid) = b.request(true, "cam");
        let req = b.req(Proto::Rtmp, "cam");
        rtmp_publish(
            &mut core,
            &mut b.r,
            &req,
            rid,
            sid,
            10_000,
            SystemTime::now(),
            &mut fx,
        );
        assert_eq!(
            fx,
            vec![Effect::TakenOver {
                old: 1,
                key: StreamKey::new("live", "cam").unwrap(),
                by: b.peer,
            }]
        );
        assert!(matches!(b.r.role, RtmpRole::Publisher { .. }));
    }

    #[test]
    fn a_refused_play_answers_not_found_and_adds_no_viewer() {
        let mut core = core();
        let mut fx = Vec::new();
        let mut v = Pair::connected(3);
        let (rid, sid) = v.request(false, "bad name!");
        let mut out = OutQueue::default();
        let req = v.req(Proto::Rtmp, "bad name!");
        rtmp_play(&mut core, &mut v.r, &mut out, &req, rid, sid, 0, &mut fx);
        assert!(fx.is_empty());
        assert!(matches!(v.r.role, RtmpRole::Idle));
        assert_eq!(
            v.statuses(),
            vec!["NetStream.Play.StreamNotFound".to_string()]
        );
    }
}
