//! Carrying out the origin core's actions on connections (flush, drop a slow viewer, hold or
//! resume a publisher, end a viewer with its protocol's end marker), and the publish glue that
//! every input (RTMP sessions, upstream pulls) shares.

use log::warn;

use super::conn::{ConnState, RtmpRole};
use super::Server;
use crate::hub::{StreamHandle, ViewerId};
use crate::origin::Action;

impl Server {
    /// A frame from the publisher `token` of `h`: into the core (hub, then recorders), then
    /// what it asks for (flushes, slow viewers dropped, the publisher held back).
    pub(crate) fn publish_frame(
        &mut self,
        h: StreamHandle,
        token: usize,
        frame: crate::media::Frame,
    ) {
        self.core.frame(h, token, frame, self.now_ms);
        self.apply_actions();
    }

    /// Carries out what the core asked for, in order.
    pub(super) fn apply_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Flush(t) => self.mark_dirty(t),
                Action::DropSlow(t) => {
                    // Its last skips are reported before the disconnect, so no episode goes unlogged.
                    self.log_skips_of(t);
                    if let Some(c) = self.conns.get(t) {
                        let key = c
                            .viewer()
                            .and_then(|v| self.core.hub.viewer_ref(v))
                            .map(|vw| vw.key.to_string())
                            .unwrap_or_default();
                        warn!(
                            "{key}: {} player {} too far behind; disconnected",
                            c.kind(),
                            c.peer
                        );
                    }
                    self.close(t, "too slow");
                }
                Action::HoldInput(t) => {
                    if let Some(c) = self.conns.get_mut(t) {
                        log::debug!("publisher {} held back: a recorder is behind", c.peer);
                        c.held = true;
                    }
                }
                Action::ResumeInput(t) => {
                    let Some(c) = self.conns.get_mut(t) else {
                        continue;
                    };
                    c.held = false;
                    // Held time is not idle time.
                    c.last_input = self.now;
                    if !c.closed {
                        // Events left in the session when it was held come before new bytes
                        // (they may hold it again at once).
                        if matches!(c.state, ConnState::Rtmp(_)) {
                            self.rtmp_events(t);
                        }
                        self.pending_read.push(t);
                    }
                }
                Action::EndViewer(v) => self.end_viewer(v),
            }
        }
    }

    /// The publisher of `h` is gone: every viewer gets its end marker and is closed once it is
    /// written; its recordings are finalised.
    pub(super) fn end_publish(&mut self, h: StreamHandle, publisher: usize) {
        self.core.unpublish(h, publisher);
        self.apply_actions();
    }

    pub(super) fn end_viewer(&mut self, v: ViewerId) {
        let Some(token) = self.core.hub.viewer(v).map(|vw| vw.token) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let tail: Vec<u8> = match &mut conn.state {
            ConnState::Rtmp(r) => match r.role {
                RtmpRole::Player { stream_id, .. } => {
                    r.session.unpublish_notify(stream_id);
                    r.session.take_output()
                }
                _ => Vec::new(),
            },
            ConnState::HttpFlv { chunked, .. } => {
                if *chunked {
                    crate::http::response::LAST_CHUNK.to_vec()
                } else {
                    Vec::new()
                }
            }
            ConnState::WsFlv { ws, .. } => {
                ws.close();
                ws.take_output()
            }
            ConnState::HttpHead { .. }
            | ConnState::Pending { .. }
            | ConnState::Judging { .. }
            | ConnState::LlhlsWait(_) => Vec::new(),
        };
        conn.close_after_flush = true;
        if let Some(vw) = self.core.hub.viewer(v) {
            if !tail.is_empty() {
                vw.queue.push_control(tail.into());
            }
        }
        self.write_conn(token);
    }

    /// Pushes protocol bytes to a connection: into its viewer queue when it is a viewer (so they
    /// stay in order with media), else into its own queue.
    pub(super) fn push_out(&mut self, token: usize, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match conn.viewer().and_then(|v| self.core.hub.viewer(v)) {
            Some(vw) => vw.queue.push_control(bytes.into()),
            None => conn.out.push(bytes.into()),
        }
    }
}
