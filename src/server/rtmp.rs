//! Glue from RTMP session events to the origin core: publish and play requests go to
//! `origin::Origin` (which decides), media goes to the hub by handle, and session output is
//! queued in order. One publish or play per RTMP connection (`ONE_STREAM`).

use log::{info, warn};

use super::conn::{ConnState, RtmpRole};
use super::glue::{self, Effect};
use super::Server;
use crate::access::{self, Action};
use crate::media::key::split_query;
use crate::origin::{Judged, PlayRequest, Proto, PublishRequest};
use crate::rtmp::session::{Refusal, SessionEvent};

/// Why a second `publish`/`play` on a connection is refused: the server serves one stream per
/// RTMP connection, whatever the session lets a client create (`createStream` ids are cheap;
/// OBS, FFmpeg and players use one).
const ONE_STREAM: &str = "one publish or play per RTMP connection";

impl Server {
    /// The RTMP role of `token`'s connection and its peer (`None` for another kind).
    fn rtmp_role(&mut self, token: usize) -> Option<(&mut RtmpRole, std::net::SocketAddr)> {
        let conn = self.conns.get_mut(token)?;
        let peer = conn.peer;
        match &mut conn.state {
            ConnState::Rtmp(r) => Some((&mut r.role, peer)),
            _ => None,
        }
    }

    pub(super) fn rtmp_input(&mut self, token: usize, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let ConnState::Rtmp(r) = &mut conn.state else {
            return;
        };
        if let Err(e) = r.session.handle_input(data) {
            warn!(
                "RTMP {}: {e}; closing{}",
                conn.peer,
                super::proxied::hint(data)
            );
            if let Some(bound) = e.limit() {
                self.totals.bound(bound);
            }
            self.close(token, "protocol error");
            return;
        }
        self.rtmp_events(token);
    }

    /// Handles the session's events until there are none, or until the publisher is held back
    /// for a recorder: the rest wait in the session (at most one read's worth) and are taken
    /// first when it resumes, so a held publisher adds nothing to the recorder's queue.
    pub(super) fn rtmp_events(&mut self, token: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            if conn.closed || conn.held || conn.judging {
                break;
            }
            let ConnState::Rtmp(r) = &mut conn.state else {
                return;
            };
            let Some(event) = r.session.poll_event() else {
                break;
            };
            self.rtmp_event(token, event);
        }
        self.rtmp_flush_session(token);
    }

    /// Moves the session's pending output to the connection and writes at once: command replies
    /// are latency-critical (a player waits for Play.Start).
    fn rtmp_flush_session(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let ConnState::Rtmp(r) = &mut conn.state else {
            return;
        };
        let out = r.session.take_output();
        if r.session.wants_close() {
            conn.close_after_flush = true;
        }
        self.push_out(token, out);
        self.write_conn(token);
    }

    fn rtmp_event(&mut self, token: usize, event: SessionEvent) {
        match event {
            SessionEvent::Connected { app, tc_url } => {
                if let Some(ConnState::Rtmp(r)) = self.conns.get_mut(token).map(|c| &mut c.state) {
                    r.app = app;
                    r.tc_url = tc_url;
                }
            }
            SessionEvent::PublishRequest {
                request_id,
                stream_id,
                name,
                ..
            } => self.rtmp_request(token, true, request_id, stream_id, name),
            SessionEvent::PlayRequest {
                request_id,
                stream_id,
                name,
                ..
            } => self.rtmp_request(token, false, request_id, stream_id, name),
            SessionEvent::Media { stream_id, frame } => {
                let Some(conn) = self.conns.get(token) else {
                    return;
                };
                let ConnState::Rtmp(r) = &conn.state else {
                    return;
                };
                let RtmpRole::Publisher {
                    handle,
                    stream_id: sid,
                } = r.role
                else {
                    return;
                };
                if sid != stream_id {
                    return;
                }
                self.publish_frame(handle, token, frame);
            }
            SessionEvent::Unpublished { stream_id } => {
                let Some((role, peer)) = self.rtmp_role(token) else {
                    return;
                };
                let RtmpRole::Publisher {
                    handle,
                    stream_id: sid,
                } = *role
                else {
                    return;
                };
                if sid == stream_id {
                    *role = RtmpRole::Idle;
                    if let Some(key) = self.core.hub.key(handle) {
                        info!("{key}: publisher {peer} unpublished");
                    }
                    self.end_publish(handle, token);
                }
            }
            SessionEvent::PlayStopped { stream_id } => {
                let Some((role, _)) = self.rtmp_role(token) else {
                    return;
                };
                let RtmpRole::Player {
                    viewer,
                    stream_id: sid,
                } = *role
                else {
                    return;
                };
                if sid == stream_id {
                    // Flush what the viewer queue holds into nothing: the player asked to stop.
                    *role = RtmpRole::Idle;
                    self.core.hub.remove_viewer(viewer);
                }
            }
            SessionEvent::Pause { stream_id, paused } => {
                self.rtmp_player_toggle(token, stream_id, |hub, v| hub.set_paused(v, paused))
            }
            SessionEvent::ReceiveAudio { stream_id, enabled } => {
                self.rtmp_player_toggle(token, stream_id, |hub, v| {
                    hub.set_receive_audio(v, enabled)
                })
            }
            SessionEvent::ReceiveVideo { stream_id, enabled } => {
                self.rtmp_player_toggle(token, stream_id, |hub, v| {
                    hub.set_receive_video(v, enabled)
                })
            }
        }
    }

    fn rtmp_player_toggle(
        &mut self,
        token: usize,
        stream_id: u32,
        f: impl FnOnce(&mut crate::hub::Hub, crate::hub::ViewerId),
    ) {
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let ConnState::Rtmp(r) = &conn.state else {
            return;
        };
        if let RtmpRole::Player {
            viewer,
            stream_id: sid,
        } = r.role
        {
            if sid == stream_id {
                f(&mut self.core.hub, viewer);
            }
        }
    }

    /// A publish or play request: one per connection, then the access check (`Origin::judge`);
    /// a hook's verdict comes back through `rtmp_judged`.
    fn rtmp_request(
        &mut self,
        token: usize,
        publish: bool,
        request_id: u32,
        stream_id: u32,
        name: String,
    ) {
        let unix_now = super::unix_now();
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let peer = conn.peer;
        let ConnState::Rtmp(r) = &mut conn.state else {
            return;
        };
        let what = if publish { "publish" } else { "play" };
        if !matches!(r.role, RtmpRole::Idle) {
            warn!("RTMP {peer}: {what} refused: {ONE_STREAM}");
            if publish {
                r.session.reject_publish(request_id, Refusal::BadName);
            } else {
                r.session.reject_play(request_id, Refusal::NotFound);
            }
            self.totals.refused += 1;
            return;
        }
        let action = if publish {
            Action::Publish
        } else {
            Action::Play
        };
        let req = access::Request::rtmp(action, &r.app, r.tc_url.as_deref(), &name, peer);
        match self.core.judge(token, &req, unix_now) {
            Judged::Allow => self.rtmp_allowed(token, publish, request_id, stream_id, &name),
            Judged::Refuse(_) => self.rtmp_refuse(token, publish, request_id),
            Judged::Pending => {
                let Some(conn) = self.conns.get_mut(token) else {
                    return;
                };
                conn.judging = true;
                if let ConnState::Rtmp(r) = &mut conn.state {
                    r.role = RtmpRole::Judging {
                        publish,
                        request_id,
                        stream_id,
                        name,
                    };
                }
            }
        }
    }

    /// The access check refused: `NetStream.Publish.Unauthorized` or `NetStream.Play.Failed`
    /// (encoders stop retrying on these), then the session closes.
    fn rtmp_refuse(&mut self, token: usize, publish: bool, request_id: u32) {
        let Some(ConnState::Rtmp(r)) = self.conns.get_mut(token).map(|c| &mut c.state) else {
            return;
        };
        if publish {
            r.session.reject_publish(request_id, Refusal::Unauthorized);
        } else {
            r.session.reject_play(request_id, Refusal::Unauthorized);
        }
        self.totals.refused += 1;
    }

    /// The hook's verdict on a waiting RTMP request: answer it, then read the connection again
    /// (events the session kept meanwhile come first).
    pub(super) fn rtmp_judged(&mut self, token: usize, verdict: &Judged) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let ConnState::Rtmp(r) = &mut conn.state else {
            return;
        };
        let RtmpRole::Judging {
            publish,
            request_id,
            stream_id,
            name,
        } = std::mem::replace(&mut r.role, RtmpRole::Idle)
        else {
            return;
        };
        conn.judging = false;
        conn.last_input = self.now;
        match verdict {
            Judged::Allow => self.rtmp_allowed(token, publish, request_id, stream_id, &name),
            _ => self.rtmp_refuse(token, publish, request_id),
        }
        self.rtmp_events(token);
        self.pending_read.push(token);
    }

    fn rtmp_allowed(
        &mut self,
        token: usize,
        publish: bool,
        request_id: u32,
        stream_id: u32,
        name: &str,
    ) {
        let Some(ConnState::Rtmp(r)) = self.conns.get(token).map(|c| &c.state) else {
            return;
        };
        // The app and name without their queries: what is judged, keyed, logged and recorded.
        let app = split_query(&r.app).0.to_string();
        let name = split_query(name).0;
        if publish {
            self.rtmp_publish(token, request_id, stream_id, &app, name);
        } else {
            self.rtmp_play(token, request_id, stream_id, &app, name);
        }
    }

    fn rtmp_publish(
        &mut self,
        token: usize,
        request_id: u32,
        stream_id: u32,
        app: &str,
        name: &str,
    ) {
        let (now_ms, wall) = (self.now_ms(), std::time::SystemTime::now());
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let peer = conn.peer;
        let ConnState::Rtmp(r) = &mut conn.state else {
            return;
        };
        let req = PublishRequest {
            conn: token,
            peer: Some(peer),
            proto: Proto::Rtmp,
            app,
            name,
        };
        let mut fx = std::mem::take(&mut self.effects);
        glue::rtmp_publish(
            &mut self.core,
            r,
            &req,
            request_id,
            stream_id,
            now_ms,
            wall,
            &mut fx,
        );
        self.apply_effects(&mut fx);
        self.effects = fx;
    }

    /// A waiting RTMP player learns that the publisher has arrived.
    fn notify_publish(&mut self, v: crate::hub::ViewerId) {
        let Some(token) = self.core.hub.viewer(v).map(|vw| vw.token) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let ConnState::Rtmp(r) = &mut conn.state else {
            self.mark_dirty(token);
            return;
        };
        if let RtmpRole::Player { stream_id, .. } = r.role {
            r.session.publish_notify(stream_id);
            let out = r.session.take_output();
            self.push_out(token, out);
        }
        self.write_conn(token);
    }

    fn rtmp_play(&mut self, token: usize, request_id: u32, stream_id: u32, app: &str, name: &str) {
        let now_ms = self.now_ms();
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let peer = conn.peer;
        let ConnState::Rtmp(r) = &mut conn.state else {
            return;
        };
        let req = PlayRequest {
            conn: token,
            peer: Some(peer),
            proto: Proto::Rtmp,
            app,
            name,
        };
        let mut fx = std::mem::take(&mut self.effects);
        glue::rtmp_play(
            &mut self.core,
            r,
            &mut conn.out,
            &req,
            request_id,
            stream_id,
            now_ms,
            &mut fx,
        );
        self.apply_effects(&mut fx);
        self.effects = fx;
    }

    /// Carries out what a glue function listed (`glue::Effect`), in order; leaves `fx` empty.
    pub(super) fn apply_effects(&mut self, fx: &mut Vec<Effect>) {
        for effect in fx.drain(..) {
            match effect {
                Effect::Refused => self.totals.refused += 1,
                Effect::TakenOver { old, key, by } => {
                    if let Some(c) = self.conns.get_mut(old) {
                        if let ConnState::Rtmp(r) = &mut c.state {
                            // The stream and its players now belong to the newcomer.
                            r.role = RtmpRole::Idle;
                        }
                        info!(
                            "{key}: previous publisher {} sent nothing for 5 s; taken over by {by}",
                            c.peer
                        );
                    }
                    self.close(old, "taken over");
                }
                Effect::PublisherArrived(v) => self.notify_publish(v),
                Effect::Write(t) => self.write_conn(t),
            }
        }
    }
}
