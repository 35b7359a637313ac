//! Glue from RTMP session events to the hub: publish and play requests are decided here (name
//! rules, one publisher per key), media goes to the hub, and session output is queued in order.

use log::{info, warn};

use super::conn::{ConnState, RtmpRole};
use super::Server;
use crate::hub::{OutputForm, PublishError};
use crate::media::StreamKey;
use crate::rtmp::session::{Refusal, SessionEvent};

impl Server {
    pub(super) fn rtmp_input(&mut self, token: usize, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let ConnState::Rtmp(r) = &mut conn.state else {
            return;
        };
        if let Err(e) = r.session.handle_input(data) {
            warn!("RTMP {}: {e}; closing", conn.peer);
            self.close(token, "protocol error");
            return;
        }
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            if conn.closed {
                return;
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
            SessionEvent::Connected { app, .. } => {
                if let Some(ConnState::Rtmp(r)) = self.conns.get_mut(token).map(|c| &mut c.state) {
                    r.app = app;
                }
            }
            SessionEvent::PublishRequest {
                request_id,
                stream_id,
                app,
                name,
            } => self.rtmp_publish(token, request_id, stream_id, &app, &name),
            SessionEvent::PlayRequest {
                request_id,
                stream_id,
                app,
                name,
            } => self.rtmp_play(token, request_id, stream_id, &app, &name),
            SessionEvent::Media { stream_id, frame } => {
                let Some(conn) = self.conns.get(token) else {
                    return;
                };
                let ConnState::Rtmp(r) = &conn.state else {
                    return;
                };
                let RtmpRole::Publisher {
                    key,
                    stream_id: sid,
                } = &r.role
                else {
                    return;
                };
                if *sid != stream_id {
                    return;
                }
                let key = key.clone();
                self.publish_frame(&key, token, frame);
            }
            SessionEvent::Unpublished { stream_id } => {
                let Some(conn) = self.conns.get_mut(token) else {
                    return;
                };
                let peer = conn.peer;
                let ConnState::Rtmp(r) = &mut conn.state else {
                    return;
                };
                if let RtmpRole::Publisher {
                    key,
                    stream_id: sid,
                } = &r.role
                {
                    if *sid == stream_id {
                        let key = key.clone();
                        r.role = RtmpRole::Idle;
                        info!("{key}: publisher {peer} unpublished");
                        self.end_publish(&key, token);
                    }
                }
            }
            SessionEvent::PlayStopped { stream_id } => {
                let Some(conn) = self.conns.get_mut(token) else {
                    return;
                };
                let ConnState::Rtmp(r) = &mut conn.state else {
                    return;
                };
                if let RtmpRole::Player {
                    viewer,
                    stream_id: sid,
                } = r.role
                {
                    if sid == stream_id {
                        // Flush what the viewer queue holds into nothing: the player asked to stop.
                        r.role = RtmpRole::Idle;
                        self.hub.remove_viewer(viewer);
                    }
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
                f(&mut self.hub, viewer);
            }
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
        let now_ms = self.now_ms();
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let peer = conn.peer;
        let ConnState::Rtmp(r) = &mut conn.state else {
            return;
        };
        let key = match requested_key(&r.role, peer, "publish", app, name) {
            Ok(k) => k,
            Err(()) => {
                r.session.reject_publish(request_id, Refusal::BadName);
                self.totals.refused += 1;
                return;
            }
        };
        match self.hub.publish(&key, token, now_ms) {
            Ok(ok) => {
                r.session.accept_publish(request_id);
                r.role = RtmpRole::Publisher {
                    key: key.clone(),
                    stream_id,
                };
                info!("{key}: publish from {peer}");
                if let Some(old) = ok.took_over_from {
                    self.stop_recording(old);
                    if let Some(c) = self.conns.get_mut(old) {
                        if let ConnState::Rtmp(r) = &mut c.state {
                            // The stream and its players now belong to the newcomer.
                            r.role = RtmpRole::Idle;
                        }
                        info!("{key}: previous publisher {} sent nothing for 5 s; taken over by {peer}", c.peer);
                    }
                    self.close(old, "taken over");
                }
                self.start_recording(&key, token);
                for v in ok.waiting_viewers {
                    self.notify_publish(v);
                }
            }
            Err(PublishError::Busy) => {
                warn!("{key}: second publisher {peer} refused (stream busy)");
                r.session.reject_publish(request_id, Refusal::BadName);
                self.totals.refused += 1;
            }
        }
    }

    /// A waiting RTMP player learns that the publisher has arrived.
    fn notify_publish(&mut self, v: crate::hub::ViewerId) {
        let Some(token) = self.hub.viewer(v).map(|vw| vw.token) else {
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
        let key = match requested_key(&r.role, peer, "play", app, name) {
            Ok(k) => k,
            Err(()) => {
                r.session.reject_play(request_id, Refusal::NotFound);
                return;
            }
        };
        // Replies queued so far go out before the player's own queue takes over.
        let before = r.session.take_output();
        conn.out.push(before.into());
        let form = OutputForm::Rtmp {
            chunk_size: r.session.out_chunk_size(),
            stream_id,
        };
        let (viewer, live) = self.hub.add_viewer(&key, form, token, now_ms);
        r.role = RtmpRole::Player { viewer, stream_id };
        r.session.accept_play(request_id);
        let reply = r.session.take_output();
        if let Some(vw) = self.hub.viewer(viewer) {
            vw.queue.push_control(reply.into());
        }
        self.hub.start_viewer(viewer);
        info!(
            "{key}: RTMP player {peer}{}",
            if live {
                ""
            } else {
                " (waiting for the publisher)"
            }
        );
        self.write_conn(token);
    }
}

/// The stream a `publish` or `play` asks for, if it may: one stream per connection, and a name
/// that follows the rule. A refusal is logged here; the caller answers it.
fn requested_key(
    role: &RtmpRole,
    peer: std::net::SocketAddr,
    what: &str,
    app: &str,
    name: &str,
) -> Result<StreamKey, ()> {
    if !matches!(role, RtmpRole::Idle) {
        warn!("RTMP {peer}: {what} on a connection that already publishes or plays; refused");
        return Err(());
    }
    StreamKey::new(app, name).map_err(|e| warn!("RTMP {peer}: {what} refused: {e}"))
}
